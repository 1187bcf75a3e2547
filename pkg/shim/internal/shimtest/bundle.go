package shimtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Busybox is the static busybox copied into every rootfs.
const Busybox = "/bin/busybox"

// Applets are linked to busybox in the rootfs.
var Applets = []string{"sh", "echo", "sleep", "cat", "head", "tr", "printf", "seq", "true", "kill", "stty"}

// Requirements skips the test unless it runs as root with runc and busybox.
func Requirements(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, p := range []string{Busybox, "/usr/sbin/runc"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("needs %s", p)
		}
	}
}

// ID returns a fresh container id.
func ID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

// BundleOptions tune Bundle.
type BundleOptions struct {
	Terminal bool
	// NoPidNS runs the container in the host pid namespace, so its init is
	// not a namespace init and default signal actions apply.
	NoPidNS bool
}

// Bundle writes an OCI bundle running args and returns its directory. The
// container's cgroup is removed when the test ends.
func Bundle(t *testing.T, id string, args []string, o BundleOptions) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "rootfs", "bin")
	for _, d := range []string{bin, filepath.Join(dir, "rootfs", "proc"), filepath.Join(dir, "rootfs", "dev"), filepath.Join(dir, "rootfs", "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, Busybox, filepath.Join(bin, "busybox"))
	for _, a := range Applets {
		if err := os.Symlink("busybox", filepath.Join(bin, a)); err != nil {
			t.Fatal(err)
		}
	}
	cgroup := "/crirt-shimtest/" + id
	t.Cleanup(func() {
		// runc removes the container's cgroup; the shared parent it made
		// goes once the last test's is gone (rmdir fails while not empty).
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/crirt-shimtest")
		for _, d := range dirs {
			_ = os.Remove(d)
		}
	})
	ns := []specs.LinuxNamespace{
		{Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
		{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace},
	}
	if !o.NoPidNS {
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	spec := specs.Spec{
		// The oldest version every installed runtime accepts (crun 1.8
		// rejects newer ones).
		Version: "1.0.2",
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Terminal: o.Terminal,
			Args:     args,
			Env:      []string{"PATH=/bin", "TERM=xterm"},
			Cwd:      "/",
		},
		Hostname: "shimtest",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs"},
		},
		Linux: &specs.Linux{
			Namespaces:  ns,
			CgroupsPath: cgroup,
			MaskedPaths: []string{"/proc/kcore"},
		},
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { RemoveCgroup(cgroup) })
	return dir
}

// RemoveCgroup removes a test cgroup from every v1 controller (the runtime
// normally does this on delete; this catches failed tests).
func RemoveCgroup(path string) {
	ctrls, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, c := range ctrls {
		_ = os.Remove(filepath.Join(c, path))
		_ = os.Remove(filepath.Join(c, filepath.Dir(path))) // only if empty
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// HasCrun reports whether crun is installed.
func HasCrun() (string, bool) {
	p, err := exec.LookPath("crun")
	return p, err == nil
}
