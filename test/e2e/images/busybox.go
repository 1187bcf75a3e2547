//go:build e2e

package images

import (
	"fmt"
	"os"
	"sync"
)

// BusyboxPath is Debian's busybox-static binary; being static, it runs in an
// image that holds nothing else.
const BusyboxPath = "/bin/busybox"

// BusyboxApplets are linked to /bin/busybox in the base layer. The list is
// fixed (not read from `busybox --list`) so the layer is the same on every
// machine with the same busybox binary.
var BusyboxApplets = []string{
	"sh", "ash", "ls", "cat", "echo", "sleep", "id", "true", "false", "env",
	"ps", "mkdir", "rm", "rmdir", "touch", "wc", "head", "tail", "grep",
	"sed", "awk", "hostname", "whoami", "stat", "test", "[", "printf", "mount",
	"umount", "nc", "wget", "ip", "kill", "pwd", "uname", "date", "df", "du",
	"sync", "find", "chmod", "chown", "ln", "cp", "mv", "tee", "seq", "dd",
	"readlink", "realpath", "md5sum", "sha256sum", "xargs", "yes", "top",
	"ping", "nslookup", "timeout", "basename", "dirname", "groups", "nproc",
	"mkfifo", "stty", "tty", "free", "uptime", "cut", "sort", "uniq", "tr",
	"expr", "vi", "less", "more", "gzip", "gunzip", "tar", "diff", "ifconfig",
	"netstat", "route", "arp", "httpd", "su", "setsid", "nsenter", "unshare",
}

// Users of the base layer's /etc/passwd and /etc/group, so that tests can
// refer to them by name (User "user", "nobody") or by ID.
const (
	UserUID    = 1000
	UserGID    = 1000
	NobodyUID  = 65534
	NobodyGID  = 65534
	UsersGroup = 100 // supplementary group of "user"
)

// Passwd and Group are the base layer's /etc/passwd and /etc/group.
const (
	Passwd = "root:x:0:0:root:/root:/bin/sh\n" +
		"user:x:1000:1000:user:/home/user:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	Group = "root:x:0:\n" +
		"users:x:100:user\n" +
		"user:x:1000:\n" +
		"nogroup:x:65534:\n"
)

// AddBusybox adds the busybox userland to b: /bin/busybox, an applet
// symlink per BusyboxApplets (relative, "busybox"), /etc/passwd,
// /etc/group and the usual empty directories.
func AddBusybox(b *LayerBuilder) *LayerBuilder {
	b.Dir("bin", 0o755).
		HostFile("bin/busybox", BusyboxPath, 0o755)
	for _, a := range BusyboxApplets {
		b.Symlink("bin/"+a, "busybox")
	}
	return b.
		Dir("etc", 0o755).
		File("etc/passwd", []byte(Passwd), 0o644).
		File("etc/group", []byte(Group), 0o644).
		Dir("root", 0o700).
		Dir("home", 0o755).
		DirOwned("home/user", 0o755, UserUID, UserGID).
		Dir("tmp", 0o777|os.ModeSticky).
		Dir("var", 0o755).
		Dir("usr", 0o755).
		Dir("usr/bin", 0o755)
}

var busybox struct {
	once  sync.Once
	layer Layer
	err   error
}

// BusyboxLayer is the base layer (AddBusybox on an empty layer). It is
// built once per process: it is the same for every image.
func BusyboxLayer() (Layer, error) {
	busybox.once.Do(func() {
		busybox.layer, busybox.err = AddBusybox(NewLayer()).Build()
		if busybox.err != nil {
			busybox.err = fmt.Errorf("busybox layer: %w", busybox.err)
		}
	})
	return busybox.layer, busybox.err
}
