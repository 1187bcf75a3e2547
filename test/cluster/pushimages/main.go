//go:build e2e

// Command pushimages builds the images of a kubeadm cluster and pushes
// them to a local registry that stands in for registry.k8s.io (the
// cluster test points registry.k8s.io at it with hosts.toml): nothing can
// be pulled from the internet where the test runs. Each image is the
// end-to-end tests' busybox base layer (test/e2e/images) plus a layer
// holding the program built from its Go module (make cluster-bins, in
// --bin-dir) where upstream's image has it, so kubeadm's static pods and
// add-ons run unchanged:
//
//	kube-apiserver, kube-controller-manager, kube-scheduler  /usr/local/bin/<name>
//	kube-proxy   /usr/local/bin/kube-proxy and Debian's iptables (nft) with its libraries
//	etcd         /usr/local/bin/etcd
//	coredns      /coredns (the entrypoint)
//	pause        a stand-in that sleeps (cri-runtimed has its own pause; containerd needs one)
//
// and the images of the e2e specs (test/cluster/conformance.sh passes
// what `e2e.test --list-images` names; others are not built):
//
//	e2e-test-images/agnhost   /agnhost (built from k8s.io/kubernetes/test/images/agnhost), as upstream's entrypoint,
//	                          every busybox applet and the host's curl (the lifecycle hook specs curl from it)
//	e2e-test-images/busybox   the busybox base with every applet in /bin (/bin/sysctl...), sh
//	e2e-test-images/nginx     a stand-in: busybox's httpd on port 80
//	e2e-test-images/kitten    agnhost's plus upstream's kitten.jpg and data.json (from --kubernetes-src), the image volume spec's volume
//	e2e-test-images/nonewprivs  /usr/local/bin/nnp, set-user-ID root (built from k8s.io/kubernetes/test/images/nonewprivs)
//
// Which images, under which tags, is what `kubeadm config images list`
// prints: the references are the arguments. The test's own workload image
// (--web, busybox's httpd) is pushed twice, as :v1 and :v2, which differ
// only by a label and a variable so that a rolling update has something
// to roll to.
//
//	go run -tags e2e ./test/cluster/pushimages --registry http://127.0.0.1:5057 \
//	    --bin-dir /var/cache/cri-runtimed-test/cluster/v1.37.2 $(kubeadm config images list)
package main

import (
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/registry"
)

// Registry is the registry whose images are built here.
const Registry = "registry.k8s.io"

// pauseCommand: busybox's sleep takes whole seconds; 2^31-1 of them is
// forever for a test and fits every time_t.
var pauseCommand = []string{"/bin/sleep", "2147483647"}

func main() {
	url := flag.String("registry", "http://127.0.0.1:5057", "base URL of the local registry")
	binDir := flag.String("bin-dir", "", "directory of the built programs (kube-apiserver, etcd, coredns...)")
	k8sSrc := flag.String("kubernetes-src", "", "source of the k8s.io/kubernetes module (the kitten image's files)")
	web := flag.String("web", "cri-runtimed-test/web", "repository of the test's web server image (tags v1 and v2)")
	flag.Parse()
	if err := run(*url, sources{bin: *binDir, k8s: *k8sSrc}, *web, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "pushimages:", err)
		os.Exit(1)
	}
}

// sources are where the images' files come from.
type sources struct {
	bin string // the built programs (make cluster-bins, conformance-bins)
	k8s string // k8s.io/kubernetes' module source
}

func run(url string, src sources, web string, refs []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	push := func(repo, tag string, img *images.Image) error {
		if err := registry.Push(ctx, url, repo, tag, img); err != nil {
			return fmt.Errorf("push %s:%s: %w", repo, tag, err)
		}
		fmt.Printf("pushed %s/%s:%s as %s/%s:%s\n", url, repo, tag, Registry, repo, tag)
		return nil
	}
	for _, ref := range refs {
		repo, tag, err := split(ref)
		if err != nil {
			return err
		}
		img, err := build(src, repo)
		if err != nil {
			return fmt.Errorf("build %s: %w", ref, err)
		}
		if err := push(repo, tag, img); err != nil {
			return err
		}
	}
	for _, v := range []string{"v1", "v2"} {
		img, err := images.Busybox(
			images.WithLabels(map[string]string{"cri-runtimed.test/web": v}),
			images.WithEnv("WEB_VERSION="+v),
			images.WithExposedPorts("8080/tcp"),
			images.WithCmd("sh", "-c", `echo "web $WEB_VERSION starting"; mkdir -p /www && echo "$WEB_VERSION $(hostname)" > /www/index.html && exec httpd -f -v -p 8080 -h /www`))
		if err != nil {
			return fmt.Errorf("build web %s: %w", v, err)
		}
		if err := push(web, v, img); err != nil {
			return err
		}
	}
	return nil
}

// split parses "registry.k8s.io/repo/path:tag".
func split(ref string) (repo, tag string, err error) {
	rest, ok := strings.CutPrefix(ref, Registry+"/")
	if !ok {
		return "", "", fmt.Errorf("%s is not an image of %s", ref, Registry)
	}
	i := strings.LastIndex(rest, ":")
	if i < 0 {
		return "", "", fmt.Errorf("%s has no tag", ref)
	}
	return rest[:i], rest[i+1:], nil
}

// build makes the image of repo (registry.k8s.io/<repo>), named after its
// last path element.
func build(src sources, repo string) (*images.Image, error) {
	name := path.Base(repo)
	bin := filepath.Join(src.bin, name)
	switch name {
	case "kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd":
		l, err := programLayer().Dir("usr/local", 0o755).Dir("usr/local/bin", 0o755).
			HostFile("usr/local/bin/"+name, bin, 0o755).Build()
		if err != nil {
			return nil, err
		}
		return images.Busybox(images.WithLayers(l), images.WithCmd())
	case "kube-proxy":
		return kubeProxy(bin)
	case "coredns":
		l, err := programLayer().HostFile("coredns", bin, 0o755).Build()
		if err != nil {
			return nil, err
		}
		return images.Busybox(images.WithLayers(l), images.WithEntrypoint("/coredns"), images.WithCmd(), images.WithExposedPorts("53/tcp", "53/udp"))
	case "pause":
		return images.Busybox(images.WithEntrypoint(pauseCommand...), images.WithCmd())
	case "agnhost":
		return agnhost(bin)
	case "kitten":
		return kitten(filepath.Join(src.bin, "agnhost"), src.k8s)
	case "nonewprivs":
		l, err := programLayer().Dir("usr/local", 0o755).Dir("usr/local/bin", 0o755).
			HostFile("usr/local/bin/nnp", filepath.Join(src.bin, "nnp"), 0o755|os.ModeSetuid).Build()
		if err != nil {
			return nil, err
		}
		return images.Busybox(images.WithLayers(l), images.WithCmd("nnp"))
	case "busybox":
		b := images.NewLayer()
		if err := addApplets(b); err != nil {
			return nil, err
		}
		l, err := b.Build()
		if err != nil {
			return nil, err
		}
		return images.Busybox(images.WithLayers(l), images.WithCmd("sh"))
	case "nginx":
		return images.Busybox(images.WithExposedPorts("80/tcp"), images.WithCmd("sh", "-c",
			`mkdir -p /usr/share/nginx/html && echo "nginx stand-in" > /usr/share/nginx/html/index.html && exec httpd -f -p 80 -h /usr/share/nginx/html`))
	}
	return nil, fmt.Errorf("no recipe for an image named %s", name)
}

// agnhost is upstream's e2e test image as far as the specs look: /agnhost
// as the entrypoint with "pause" as the command, /agnhost-2 linking to it
// (the entrypoint specs), /uploads, and the user and group the
// supplemental-groups specs expect in the image (uid 1000
// user-defined-in-image, in gid 50000 group-defined-in-image) in place of
// the busybox base's "user".
func agnhost(bin string) (*images.Image, error) {
	l, err := agnhostLayer(bin)
	if err != nil {
		return nil, err
	}
	return images.Busybox(images.WithLayers(l), images.WithEntrypoint("/agnhost"), images.WithCmd("pause"))
}

// addApplets links every applet of the host's busybox in /bin that the
// base layer's fixed list leaves out, as upstream's busybox image (and
// agnhost's Alpine base) has them: specs run /bin/sysctl and others.
func addApplets(b *images.LayerBuilder) error {
	out, err := exec.Command(images.BusyboxPath, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %w", images.BusyboxPath, err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !slices.Contains(images.BusyboxApplets, a) {
			b.Symlink("bin/"+a, "busybox")
		}
	}
	return nil
}

func agnhostLayer(bin string) (images.Layer, error) {
	passwd := strings.Replace(images.Passwd, "user:x:1000:1000:user:/home/user:", "user-defined-in-image:x:1000:1000::/home/user:", 1)
	group := strings.Replace(images.Group, "user:x:1000:", "user-defined-in-image:x:1000:", 1) +
		"group-defined-in-image:x:50000:user-defined-in-image\n"
	b := programLayer().HostFile("agnhost", bin, 0o755).Symlink("agnhost-2", "agnhost").
		Dir("uploads", 0o755).Dir("etc", 0o755).
		File("etc/passwd", []byte(passwd), 0o644).File("etc/group", []byte(group), 0o644)
	if err := addApplets(b); err != nil {
		return images.Layer{}, err
	}
	if err := addHostFiles(b, map[string]bool{"usr": true, "usr/bin": true}, curl); err != nil {
		return images.Layer{}, err
	}
	return b.Build()
}

// curl is the host's curl (Debian's), which the lifecycle hook specs run
// in agnhost ("sh -c curl http://...") as upstream's Alpine base has it.
const curl = "/usr/bin/curl"

// kitten is upstream's kitten image (test/images/kitten: agnhost with a
// picture and a JSON file at the root). The image volume spec mounts it
// and reads data.json and etc/os-release, expecting "Alpine Linux" there
// as upstream's images are Alpine based; the stand-in's os-release says
// what it is and carries that name for the spec.
func kitten(agnhostBin, k8sSrc string) (*images.Image, error) {
	if k8sSrc == "" {
		return nil, fmt.Errorf("kitten needs --kubernetes-src")
	}
	html := filepath.Join(k8sSrc, "test/images/kitten/html")
	osRelease := "NAME=\"cri-runtimed test image (stands in for Alpine Linux)\"\nID=busybox\n"
	l, err := images.NewLayer().HostFile("kitten.jpg", filepath.Join(html, "kitten.jpg"), 0o644).
		HostFile("data.json", filepath.Join(html, "data.json"), 0o644).
		File("etc/os-release", []byte(osRelease), 0o644).Build()
	if err != nil {
		return nil, err
	}
	a, err := agnhostLayer(agnhostBin)
	if err != nil {
		return nil, err
	}
	return images.Busybox(images.WithLayers(a, l), images.WithEntrypoint("/agnhost"), images.WithCmd("test-webserver"))
}

// programLayer starts a layer for large programs: gzip's fastest level,
// which on a loaded two-core machine builds the cluster's images in a
// fraction of the default level's time; they only travel over loopback.
func programLayer() *images.LayerBuilder {
	return images.NewLayer().GzipLevel(gzip.BestSpeed)
}

// iptablesNFT is Debian's iptables in its nft flavour (this project's
// hosts use nft), which kube-proxy runs as iptables, iptables-save and
// iptables-restore (and the ip6tables ones).
const iptablesNFT = "/usr/sbin/xtables-nft-multi"

// xtablesDir holds iptables' match and target extensions (-m comment,
// -j MARK...), loaded at run time.
const xtablesDir = "/usr/lib/x86_64-linux-gnu/xtables"

// kubeProxy is kube-proxy plus iptables: the binary, the shared libraries
// ldd names for it, its extensions, and the tool names as links.
func kubeProxy(proxy string) (*images.Image, error) {
	b := programLayer().Dir("usr/local", 0o755).Dir("usr/local/bin", 0o755).
		HostFile("usr/local/bin/kube-proxy", proxy, 0o755).
		Dir("usr/sbin", 0o755)
	for _, tool := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"} {
		b.Symlink("usr/sbin/"+tool, "xtables-nft-multi")
	}
	exts, err := filepath.Glob(xtablesDir + "/*.so")
	if err != nil || len(exts) == 0 {
		return nil, fmt.Errorf("no iptables extensions in %s (Debian's iptables package)", xtablesDir)
	}
	// The extensions need libraries of their own (-m statistic: libm).
	dirs := map[string]bool{"usr": true, "usr/sbin": true, "usr/local": true, "usr/local/bin": true}
	if err := addHostFiles(b, dirs, append([]string{iptablesNFT}, exts...)...); err != nil {
		return nil, err
	}
	l, err := b.Build()
	if err != nil {
		return nil, err
	}
	return images.Busybox(images.WithLayers(l), images.WithCmd())
}

// addHostFiles adds files of this machine at their own paths, with the
// shared libraries ldd resolves for each, and the directories above them
// that dirs (those the layer has) does not hold yet.
func addHostFiles(b *images.LayerBuilder, dirs map[string]bool, files ...string) error {
	all := slices.Clone(files)
	for _, f := range files {
		libs, err := sharedLibraries(f)
		if err != nil {
			return err
		}
		for _, l := range libs {
			if !slices.Contains(all, l) {
				all = append(all, l)
			}
		}
	}
	for _, f := range all {
		rel := strings.TrimPrefix(f, "/")
		for _, d := range parents(path.Dir(rel)) {
			if !dirs[d] {
				dirs[d] = true
				b.Dir(d, 0o755)
			}
		}
		b.HostFile(rel, f, 0o755)
	}
	return nil
}

// parents lists "a", "a/b", "a/b/c" for "a/b/c".
func parents(dir string) []string {
	var out []string
	parts := strings.Split(dir, "/")
	for i := range parts {
		out = append(out, strings.Join(parts[:i+1], "/"))
	}
	return out
}

var lddLine = regexp.MustCompile(`(?m)^\s*(?:\S+ => )?(/\S+) \(0x`)

// sharedLibraries are the files ldd resolves for binary, the dynamic
// loader included, at the paths it resolves them to (on merged-/usr
// Debian /lib is a link to usr/lib; the image has real directories).
func sharedLibraries(binary string) ([]string, error) {
	out, err := exec.Command("ldd", binary).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", binary, err)
	}
	var libs []string
	for _, m := range lddLine.FindAllStringSubmatch(string(out), -1) {
		libs = append(libs, m[1])
	}
	return libs, nil
}
