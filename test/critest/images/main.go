//go:build e2e

// Command images builds stand-ins for every image critest (cri-tools'
// CRI validation suite) pulls and pushes them to a local registry under
// the repository paths critest names, so that critest runs without the
// internet: registry hosts files point gcr.io, registry.k8s.io,
// k8s.gcr.io and docker.io at that registry.
//
//	go run -tags e2e ./test/critest/images --registry http://127.0.0.1:PORT
//
// Every image is built from Debian's busybox-static with the end-to-end
// tests' image builder (test/e2e/images) and pushed with their registry
// client (test/e2e/registry). The base layer imitates the busybox images
// the upstream ones are built from: every applet of the static busybox
// hard-linked in /bin, busybox's /etc/passwd and /etc/group (root, daemon, ...,
// www-data 33, nobody 65534). One difference: /bin/sh is another shell
// (--shell; run.sh gives Debian's dynamically linked busybox, the default
// is dash), with the libraries it needs, which runs ls & co. as external
// commands, so that masking /bin/ls is visible (see baseLayer).
//
// What cannot be rebuilt: gcr.io/k8s-staging-cri-tools/test-image-digest
// is pulled by an exact upstream manifest digest; the stand-in is pushed
// under :latest but the spec pulling it by digest fails.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/registry"
)

// Repository paths inside the registry. gcr.io/k8s-staging-cri-tools/x
// is served at /v2/k8s-staging-cri-tools/x, registry.k8s.io/x and
// k8s.gcr.io/x both at /v2/x.
const (
	criTools = "k8s-staging-cri-tools/"
	e2e      = "e2e-test-images/"
)

// Upstream busybox image's /etc/passwd and /etc/group.
const (
	passwd = "root:x:0:0:root:/root:/bin/sh\n" +
		"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n" +
		"bin:x:2:2:bin:/bin:/bin/false\n" +
		"sys:x:3:3:sys:/dev:/bin/false\n" +
		"sync:x:4:100:sync:/bin:/bin/sync\n" +
		"mail:x:8:8:mail:/var/spool/mail:/bin/false\n" +
		"www-data:x:33:33:www-data:/var/www:/bin/false\n" +
		"operator:x:37:37:Operator:/var:/bin/false\n" +
		"nobody:x:65534:65534:nobody:/home:/bin/false\n"
	group = "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\n" +
		"disk:x:6:\nlp:x:7:\nmail:x:8:\nkmem:x:9:\nwheel:x:10:root\ncdrom:x:11:\n" +
		"dialout:x:18:\nfloppy:x:19:\nvideo:x:28:\naudio:x:29:\ntape:x:32:\n" +
		"www-data:x:33:\noperator:x:37:\nutmp:x:43:\nplugdev:x:46:\nstaff:x:50:\n" +
		"lock:x:54:\nnetdev:x:82:\nusers:x:100:\nnogroup:x:65534:\n"
)

// ipcs stands in for util-linux ipcs, which Debian's busybox lacks:
// critest's HostIpc specs run `ipcs -m` and look for a segment ID. It
// prints the shared memory segments of the caller's IPC namespace.
const ipcs = `#!/bin/sh
echo
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch     status"
awk 'NR > 1 { printf "0x%08x %-10s %-10s %-10s %-10s %-10s\n", $1, $2, $8, $3, $4, $7 }' /proc/sysvipc/shm
echo
`

// pgrep stands in for procps pgrep, which Debian's busybox lacks:
// critest checks that an ExecSync past its timeout was killed with
// `pgrep sleep`. It prints the PIDs whose process name matches the
// extended regular expression and exits 1 when there is none.
const pgrep = `#!/bin/sh
[ $# -eq 1 ] || { echo "usage: pgrep PATTERN" >&2; exit 2; }
found=1
for d in /proc/[0-9]*; do
	pid=${d#/proc/}
	[ "$pid" = "$$" ] && continue
	read -r comm 2>/dev/null <"$d/comm" || continue
	if echo "$comm" | grep -Eq -- "$1"; then
		echo "$pid"
		found=0
	fi
done
exit $found
`

// webServer is a busybox httpd in the foreground as a child, so that the
// shell (pid 1 of the container) can stop it on SIGTERM/SIGQUIT: pid 1
// without handlers ignores them.
func webServer(pre, listen, docroot string) string {
	return "#!/bin/sh\n" + pre +
		"trap 'kill $child 2>/dev/null; exit 0' TERM INT QUIT\n" +
		"httpd -f -p " + listen + " -h " + docroot + " &\n" +
		"child=$!\n" +
		"wait $child\n"
}

// nginx is the nginx stand-in, /usr/sbin/nginx. As a script its process
// name (comm) is "nginx", so `pidof nginx` finds it; its command line
// (interpreter, script, arguments) carries "master process" as the real
// nginx master's does, and it writes /var/run/nginx.pid.
var nginx = webServer("echo $$ > /var/run/nginx.pid\n", "80", "/usr/share/nginx/html")

const indexHTML = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n" +
	"<body>\n<h1>Welcome to nginx!</h1>\n<p>cri-runtimed critest stand-in (busybox httpd).</p>\n</body>\n</html>\n"

func main() {
	url := flag.String("registry", "", "base URL of the registry, e.g. http://127.0.0.1:5000")
	flag.StringVar(&shellPath, "shell", defaultShell, "dynamically or statically linked shell installed as /bin/sh in the images (with the libraries ldd lists); it must run ls & co. as external commands")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "images: --registry is required")
		os.Exit(2)
	}
	if err := run(strings.TrimSuffix(*url, "/")); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

type push struct {
	repo string
	tags []string
	img  *images.Image
}

func run(url string) error {
	base, err := baseLayer()
	if err != nil {
		return fmt.Errorf("base layer: %w", err)
	}
	// image is the base layer plus layers, config changed by opts.
	image := func(extra []images.Layer, opts ...images.Option) (*images.Image, error) {
		return images.Busybox(append([]images.Option{images.WithoutBase(), images.WithLayers(append([]images.Layer{base}, extra...)...)}, opts...)...)
	}
	// file is an image with one more file, /<name> (cri-tools'
	// images/image-test: ADD ${TEST} ${TEST}).
	file := func(name, content string) (*images.Image, error) {
		l, err := images.NewLayer().File(name, []byte(content), 0o644).Build()
		if err != nil {
			return nil, err
		}
		return image([]images.Layer{l})
	}

	var pushes []push
	add := func(repo string, tags []string, img *images.Image, err error) error {
		if err != nil {
			return fmt.Errorf("build %s: %w", repo, err)
		}
		pushes = append(pushes, push{repo, tags, img})
		return nil
	}

	// The default test container image and docker.io's busybox.
	busybox, err := image(nil)
	if err := add(e2e+"busybox", []string{"1.29-2"}, busybox, err); err != nil {
		return err
	}
	if err := add("library/busybox", []string{"latest", "1.37.0"}, busybox, nil); err != nil {
		return err
	}

	// cri-tools' test images: different images per name, one image
	// under the three tags of test-image-tags.
	for _, name := range []string{"test-image-1", "test-image-2", "test-image-3", "test-image-latest", "test-image-digest"} {
		img, err := file(name, "")
		if err := add(criTools+name, []string{"latest"}, img, err); err != nil {
			return err
		}
	}
	img, err := file("same-image", "")
	if err := add(criTools+"test-image-tags", []string{"1", "2", "3"}, img, err); err != nil {
		return err
	}
	for _, tag := range []string{"test", "all"} {
		img, err := file("test-image-tag", tag+"\n")
		if err := add(criTools+"test-image-tag", []string{tag}, img, err); err != nil {
			return err
		}
	}

	// Image users (cri-tools images/image-user: USER ${USER}).
	for name, user := range map[string]string{
		"test-image-user-uid":            "1002",
		"test-image-user-username":       "www-data",
		"test-image-user-uid-group":      "1003:1004",
		"test-image-user-username-group": "www-data:1004",
	} {
		img, err := image(nil, images.WithUser(user))
		if err := add(criTools+name, []string{"latest"}, img, err); err != nil {
			return err
		}
	}

	// images/image-predefined-group: adduser -u 1000 default-user,
	// addgroup -g 50000 group-defined-in-image, default-user a member of
	// it, USER 1000.
	l, err := images.NewLayer().
		Dir("etc", 0o755).
		File("etc/passwd", []byte(passwd+"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n"), 0o644).
		File("etc/group", []byte(group+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"), 0o644).
		Dir("home", 0o755).
		DirOwned("home/default-user", 0o755, 1000, 1000).
		Build()
	if err != nil {
		return err
	}
	img, err = image([]images.Layer{l}, images.WithUser("1000"))
	if err := add(criTools+"test-image-predefined-group", []string{"latest"}, img, err); err != nil {
		return err
	}

	// nginx:1.14-2: a web server on port 80 named nginx.
	l, err = images.NewLayer().
		Dir("usr/sbin", 0o755).
		File("usr/sbin/nginx", []byte(nginx), 0o755).
		Dir("usr/share/nginx/html", 0o755).
		File("usr/share/nginx/html/index.html", []byte(indexHTML), 0o644).
		Build()
	if err != nil {
		return err
	}
	img, err = image([]images.Layer{l},
		images.WithCmd("nginx", "master process nginx -g daemon off;"),
		images.WithExposedPorts("80/tcp"), images.WithStopSignal("SIGTERM"))
	if err := add(e2e+"nginx", []string{"1.14-2"}, img, err); err != nil {
		return err
	}

	// hostnet-nginx-<arch>: the same on port 12003 (cri-tools
	// images/hostnet-nginx), in the host network namespace: it listens
	// on loopback only.
	l, err = images.NewLayer().
		Dir("usr/sbin", 0o755).
		File("usr/sbin/nginx", []byte(webServer("", "127.0.0.1:12003", "/usr/share/nginx/html")), 0o755).
		Dir("usr/share/nginx/html", 0o755).
		File("usr/share/nginx/html/index.html", []byte(indexHTML), 0o644).
		Build()
	if err != nil {
		return err
	}
	img, err = image([]images.Layer{l},
		images.WithCmd("nginx", "master process nginx -g daemon off;"),
		images.WithExposedPorts("12003/tcp"))
	if err := add(criTools+"hostnet-nginx-"+runtime.GOARCH, []string{"latest"}, img, err); err != nil {
		return err
	}
	if err := add(criTools+"hostnet-nginx", []string{"latest"}, img, nil); err != nil {
		return err
	}

	// httpd:2.4.39-4: a web server on port 80 whose log says "httpd".
	l, err = images.NewLayer().
		Dir("usr/local/apache2/bin", 0o755).
		File("usr/local/apache2/bin/httpd-foreground", []byte(webServer(
			"echo 'httpd: cri-runtimed critest stand-in (busybox httpd) listening on port 80' >&2\n",
			"80", "/usr/local/apache2/htdocs")), 0o755).
		Dir("usr/local/apache2/htdocs", 0o755).
		File("usr/local/apache2/htdocs/index.html", []byte("<html><body><h1>It works!</h1></body></html>\n"), 0o644).
		Build()
	if err != nil {
		return err
	}
	img, err = image([]images.Layer{l},
		images.WithEnv("PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
		images.WithCmd("httpd-foreground"), images.WithExposedPorts("80/tcp"),
		images.WithWorkingDir("/usr/local/apache2"), images.WithStopSignal("SIGWINCH"))
	if err := add(e2e+"httpd", []string{"2.4.39-4"}, img, err); err != nil {
		return err
	}

	// nonewprivs:1.3: a setuid-root program printing its effective uid.
	nnp, err := buildNNP()
	if err != nil {
		return err
	}
	l, err = images.NewLayer().
		Dir("usr/local/bin", 0o755).
		File("usr/local/bin/nnp", nnp, 0o755|os.ModeSetuid).
		Build()
	if err != nil {
		return err
	}
	img, err = image([]images.Layer{l}, images.WithEntrypoint("/usr/local/bin/nnp"), images.WithCmd())
	if err := add(e2e+"nonewprivs", []string{"1.3"}, img, err); err != nil {
		return err
	}

	// pause:3.9 (registry.k8s.io and k8s.gcr.io): one image under both
	// names, which is what the "same image from different registries"
	// specs need. The daemon's own pause is built in; this one only runs
	// as an ordinary container.
	img, err = image(nil, images.WithEntrypoint("/bin/sleep", "2147483647"), images.WithCmd())
	if err := add("pause", []string{"3.9"}, img, err); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, p := range pushes {
		for _, tag := range p.tags {
			if err := registry.Push(ctx, url, p.repo, tag, p.img); err != nil {
				return fmt.Errorf("push %s:%s: %w", p.repo, tag, err)
			}
			fmt.Printf("pushed %s:%s %s\n", p.repo, tag, p.img.Digest())
		}
	}
	return nil
}

// baseLayer is a busybox image's root: every applet of Debian's static
// busybox hard-linked in /bin except sh (--shell, see below), busybox's
// users and groups, the usual directories and ipcs and pgrep stand-ins.
//
// Hard links, as in the busybox images: a masked path (/dev/null bound
// over /bin/ls) must hide that name only, not the busybox binary a
// symlink would lead to. The tar stream is written here rather than with
// images.LayerBuilder because a hard link entry must carry its target's
// mode (0755): containerd applies the mode of a hard link entry to the
// shared inode, and the builder writes 0644.
func baseLayer() (images.Layer, error) {
	out, err := exec.Command(images.BusyboxPath, "--list").Output()
	if err != nil {
		return images.Layer{}, fmt.Errorf("%s --list: %w", images.BusyboxPath, err)
	}
	bb, err := os.ReadFile(images.BusyboxPath)
	if err != nil {
		return images.Layer{}, err
	}
	type entry struct {
		name, link string
		typ        byte
		mode       int64
		data       []byte
	}
	dir := func(name string, mode int64) entry { return entry{name: name + "/", typ: tar.TypeDir, mode: mode} }
	file := func(name string, data []byte, mode int64) entry {
		return entry{name: name, typ: tar.TypeReg, mode: mode, data: data}
	}
	entries := []entry{dir("bin", 0o755), file("bin/busybox", bb, 0o755)}
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		entries = append(entries, entry{name: "bin/" + a, link: "bin/busybox", typ: tar.TypeLink, mode: 0o755})
	}
	entries = append(entries, file("bin/ipcs", []byte(ipcs), 0o755), file("bin/pgrep", []byte(pgrep), 0o755))

	// /bin/sh is not the static busybox: that one runs its applets, ls
	// included, in-process (FEATURE_SH_STANDALONE), so a masked /bin/ls
	// would still "work" and critest's MaskedPaths spec, which runs
	// `/bin/sh -c ls` with /bin/ls masked, could not see the mask. The
	// shell given with --shell is installed instead: run.sh passes
	// Debian's dynamically linked busybox (package busybox, built without
	// FEATURE_SH_STANDALONE), whose ash runs ls from /bin and words the
	// error as the spec expects ("/bin/sh: ls: Permission denied"); the
	// default, dash, runs ls from /bin too but says "/bin/sh: 1: ls: ...".
	// Its shared libraries are copied to the paths ldd reports.
	shell, err := sharedBinary(shellPath)
	if err != nil {
		return images.Layer{}, err
	}
	// Replace the sh hard link with dash.
	for i := range entries {
		if entries[i].name == "bin/sh" {
			entries = append(entries[:i], entries[i+1:]...)
			break
		}
	}
	entries = append(entries, file("bin/sh", shell.binary, 0o755))
	seenDir := map[string]bool{"bin": true}
	for _, lib := range shell.libs {
		rel := strings.TrimPrefix(lib.path, "/")
		// Parent directories first (lib, lib/x86_64-linux-gnu, lib64).
		parts := strings.Split(filepath.Dir(rel), "/")
		for j := range parts {
			d := strings.Join(parts[:j+1], "/")
			if d == "." || seenDir[d] {
				continue
			}
			seenDir[d] = true
			entries = append(entries, dir(d, 0o755))
		}
		entries = append(entries, file(rel, lib.data, 0o755))
	}
	for _, d := range []string{"dev", "proc", "sys", "etc", "home", "usr", "usr/bin", "usr/sbin", "usr/local", "usr/local/bin", "var", "var/run", "var/spool", "var/spool/mail", "var/www"} {
		entries = append(entries, dir(d, 0o755))
	}
	entries = append(entries,
		file("etc/passwd", []byte(passwd), 0o644),
		file("etc/group", []byte(group), 0o644),
		dir("root", 0o700),
		dir("tmp", 0o1777))

	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	mtime := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, e := range entries {
		hdr := &tar.Header{Typeflag: e.typ, Name: e.name, Linkname: e.link, Mode: e.mode, Size: int64(len(e.data)), ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return images.Layer{}, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return images.Layer{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return images.Layer{}, err
	}
	var blob bytes.Buffer
	gz := gzip.NewWriter(&blob)
	if _, err := gz.Write(raw.Bytes()); err != nil {
		return images.Layer{}, err
	}
	if err := gz.Close(); err != nil {
		return images.Layer{}, err
	}
	return images.Layer{
		Data:             blob.Bytes(),
		Digest:           digest.FromBytes(blob.Bytes()),
		DiffID:           digest.FromBytes(raw.Bytes()),
		UncompressedSize: int64(raw.Len()),
		Compression:      images.Gzip,
	}, nil
}

// defaultShell is the shell installed as /bin/sh in the images when
// --shell is not given: Debian's dash (Essential: always present).
const defaultShell = "/bin/dash"

// shellPath is --shell.
var shellPath = defaultShell

type sharedLib struct {
	path string // absolute path in the image, as ldd prints it
	data []byte // content (symlinks followed)
}

type dynBinary struct {
	binary []byte
	libs   []sharedLib
}

// sharedBinary reads a dynamically linked binary and the shared
// libraries it needs, as listed by ldd: "name => /path (addr)" and the
// interpreter "/lib64/ld-linux-x86-64.so.2 (addr)". The vDSO has no file.
func sharedBinary(path string) (dynBinary, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return dynBinary{}, fmt.Errorf("shell %s: %w", path, err)
	}
	res := dynBinary{binary: bin}
	out, err := exec.Command("ldd", path).CombinedOutput()
	if strings.Contains(string(out), "not a dynamic executable") || strings.Contains(string(out), "statically linked") {
		return res, nil
	}
	if err != nil {
		return dynBinary{}, fmt.Errorf("ldd %s: %w: %s", path, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		var lib string
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			lib = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			lib = f[0]
		default:
			continue
		}
		data, err := os.ReadFile(lib)
		if err != nil {
			return dynBinary{}, fmt.Errorf("%s needs %s: %w", path, lib, err)
		}
		res.libs = append(res.libs, sharedLib{path: filepath.Clean(lib), data: data})
	}
	if len(res.libs) == 0 {
		return dynBinary{}, fmt.Errorf("ldd %s lists no shared library: %q", path, out)
	}
	return res, nil
}

// buildNNP compiles ./nnp (next to this file) as a static binary.
func buildNNP() ([]byte, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return nil, fmt.Errorf("cannot locate the nnp source")
	}
	dir, err := os.MkdirTemp("", "critest-nnp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "nnp")
	cmd := exec.Command("go", "build", "-tags", "e2e", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	cmd.Dir = filepath.Join(filepath.Dir(self), "nnp")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build nnp: %v: %s", err, stderr.String())
	}
	return os.ReadFile(bin)
}
