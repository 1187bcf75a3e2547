package preflight

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/pkg/checkpoint"
	"github.com/cri-runtimed/cri-runtimed/pkg/cni"
	"github.com/cri-runtimed/cri-runtimed/pkg/config"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/hosts"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox/pause"
	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
)

// Disk space below which the node cannot hold images (fail) or will soon
// not (warn), on the filesystem of the root directory.
const (
	minFreeBytes  = 512 << 20
	warnFreeBytes = 5 << 30
)

// Checks are the needs of a daemon running with cfg, in the order worth
// reading them.
func Checks(cfg *config.Config) []Check {
	checks := []Check{
		{"directories", func(context.Context) (Status, string) { return writableDirs(cfg.Root, cfg.State) }},
		{"disk space", func(context.Context) (Status, string) { return diskSpace(cfg.Root) }},
		{"openat2", func(context.Context) (Status, string) { return openat2() }},
		{"overlay", func(context.Context) (Status, string) { return overlay(cfg) }},
		{"pidfd", func(context.Context) (Status, string) { return pidfd() }},
		{"pause", func(context.Context) (Status, string) { return builtinPause(cfg) }},
		{"user namespaces", func(context.Context) (Status, string) { return userNamespaces() }},
		{"idmapped mounts", func(context.Context) (Status, string) { return idmappedMounts() }},
		{"cgroups", func(context.Context) (Status, string) { return cgroupLayout(cfg) }},
		{"inotify", func(context.Context) (Status, string) { return inotifyLimit() }},
	}
	names := make([]string, 0, len(cfg.Runtime.Handlers))
	for name := range cfg.Runtime.Handlers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		h := cfg.Runtime.Handlers[name]
		def := name == cfg.Runtime.DefaultHandler
		checks = append(checks, Check{"runtime " + name, func(ctx context.Context) (Status, string) { return ociRuntime(ctx, h.Binary, def) }})
	}
	checks = append(checks,
		Check{"cni", func(ctx context.Context) (Status, string) { return cniNetwork(ctx, cfg) }},
		Check{"hosts.toml", func(context.Context) (Status, string) { return hostsFiles(cfg.Image.RegistryConfigPath) }},
		Check{"nri", func(context.Context) (Status, string) { return nriSocket(cfg.NRI, live(cfg.AdminSocketPath())) }},
		Check{"criu", func(ctx context.Context) (Status, string) { return criu(ctx) }},
	)
	return checks
}

func writableDirs(dirs ...string) (Status, string) {
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return Fail, fmt.Sprintf("cannot create %s: %v", dir, err)
		}
		f, err := os.CreateTemp(dir, ".check-")
		if err != nil {
			return Fail, fmt.Sprintf("%s is not writable: %v", dir, err)
		}
		f.Close()
		os.Remove(f.Name())
	}
	return OK, strings.Join(dirs, " and ") + " are writable"
}

func diskSpace(dir string) (Status, string) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Fail, fmt.Sprintf("statfs %s: %v", dir, err)
	}
	free := int64(st.Bavail) * st.Bsize
	msg := fmt.Sprintf("%.1f GiB free under %s", float64(free)/(1<<30), dir)
	switch {
	case free < minFreeBytes:
		return Fail, msg + ": too little for any image"
	case free < warnFreeBytes:
		return Warn, msg + ": pulls will soon fail"
	}
	return OK, msg
}

// openat2 with RESOLVE_BENEATH is how layers are unpacked safely: no
// image can be pulled without it.
func openat2() (Status, string) {
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Fail, err.Error()
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH})
	if err != nil {
		return Fail, fmt.Sprintf("openat2(2) failed (%v): layers cannot be unpacked safely; Linux 5.6 or newer is needed", err)
	}
	unix.Close(fd)
	return OK, "openat2 RESOLVE_BENEATH works (safe layer unpacking)"
}

func overlay(cfg *config.Config) (Status, string) {
	if cfg.Image.Snapshotter != "overlayfs" {
		return Info, "image.snapshotter is " + cfg.Image.Snapshotter + "; overlay not needed"
	}
	dir := cfg.SnapshotDir("overlayfs")
	if err := snapshot.OverlaySupported(dir); err != nil {
		return Warn, fmt.Sprintf("overlay cannot back %s (%v): the native snapshotter will copy every image for every container", dir, err)
	}
	return OK, "overlay mounts with whiteouts on " + dir
}

// pidfd: the shim holds a pidfd of each container process so that a
// kill never reaches a recycled pid.
func pidfd() (Status, string) {
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return Warn, fmt.Sprintf("pidfd_open(2) failed (%v): Linux 5.3 or newer is needed for race-free kills", err)
	}
	unix.Close(fd)
	return OK, "pidfd_open works"
}

// builtinPause: pods run the daemon's own executable as their pause in
// an empty root, where only a static executable can start.
func builtinPause(cfg *config.Config) (Status, string) {
	if cfg.Runtime.SandboxImage != "" {
		return OK, "pods run the sandbox image " + cfg.Runtime.SandboxImage
	}
	self, err := os.Executable()
	if err != nil {
		return Fail, err.Error()
	}
	if err := pause.CheckStatic(self); err != nil {
		return Fail, err.Error()
	}
	return OK, "the built-in pause is a static executable"
}

func userNamespaces() (Status, string) {
	b, err := os.ReadFile("/proc/sys/user/max_user_namespaces")
	if err != nil {
		return Warn, fmt.Sprintf("cannot tell (%v): pods with hostUsers: false may fail", err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if n == 0 {
		return Warn, "user.max_user_namespaces is 0: pods with hostUsers: false fail"
	}
	return OK, fmt.Sprintf("enabled (max_user_namespaces %d)", n)
}

// idmapped mounts of overlay and tmpfs, which pods with user namespaces
// need, came in Linux 5.19 and 6.3.
func idmappedMounts() (Status, string) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return Warn, err.Error()
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var major, minor int
	fmt.Sscanf(rel, "%d.%d", &major, &minor)
	if major < 5 || major == 5 && minor < 19 {
		return Warn, "kernel " + rel + ": idmapped overlay mounts need 5.19 or newer; pods with hostUsers: false fail"
	}
	return OK, "kernel " + rel + " has idmapped mounts for overlay"
}

func cgroupLayout(cfg *config.Config) (Status, string) {
	layout, err := cgroups.HostLayout()
	if err != nil {
		return Fail, fmt.Sprintf("cannot read the cgroup mounts: %v", err)
	}
	version := "v1"
	switch {
	case layout.Unified():
		version = "v2"
	case layout.V1Root == "":
		return Fail, "no cgroup hierarchy with resource controllers is mounted"
	case layout.V2Root != "":
		version = "v1 (hybrid, with an empty v2 hierarchy)"
	}
	d, err := cgroups.New(cfg.Runtime.CgroupDriver, cgroups.WithDefaultParent(cfg.Runtime.DefaultCgroupParent))
	if err != nil {
		return Fail, fmt.Sprintf("cgroup %s: driver: %v", version, err)
	}
	name := d.Name()
	d.Close()
	if name == cgroups.SystemdName && !cgroups.SystemdRuns() {
		return Fail, fmt.Sprintf("cgroup %s: runtime.cgroup_driver is systemd but systemd does not run this node; use cgroupfs", version)
	}
	msg := fmt.Sprintf("cgroup %s, driver %s (kubelet's cgroupDriver must be %s)", version, name, name)
	if !layout.Unified() {
		return Warn, msg + "; kubelet 1.35 and newer refuse cgroup v1 unless failCgroupV1 is false"
	}
	return OK, msg
}

// minInotifyV2 is the fs.inotify.max_user_instances below which a full
// cgroup v2 node runs out: every shim watches its pod's memory.events
// for OOM kills with an instance of its own, kubelet takes about 40, and
// the limit counts every process of root together. 110 pods and kubelet
// need about 150; the kernel's default is 128.
const minInotifyV2 = 512

func inotifyLimit() (Status, string) {
	b, err := os.ReadFile("/proc/sys/fs/inotify/max_user_instances")
	if err != nil {
		return Warn, fmt.Sprintf("cannot read fs.inotify.max_user_instances (%v)", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return Warn, fmt.Sprintf("fs.inotify.max_user_instances: %v", err)
	}
	layout, err := cgroups.HostLayout()
	return inotifyVerdict(n, err == nil && layout.Unified())
}

// inotifyVerdict judges max_user_instances n on a cgroup v2 node or not.
func inotifyVerdict(n int, v2 bool) (Status, string) {
	if v2 && n < minInotifyV2 {
		return Warn, fmt.Sprintf("fs.inotify.max_user_instances is %d: each pod's shim takes one on cgroup v2 and kubelet about 40, so a node of 110 pods runs out (kubelet then fails to start); set it to 8192 (sysctl.d)", n)
	}
	return OK, fmt.Sprintf("fs.inotify.max_user_instances %d", n)
}

func ociRuntime(ctx context.Context, binary string, isDefault bool) (Status, string) {
	missing := Info
	if isDefault {
		missing = Fail
	}
	path, err := exec.LookPath(binary)
	if err != nil {
		what := "pods naming this handler fail"
		if isDefault {
			what = "it is runtime.default_handler: no pod can run"
		}
		return missing, fmt.Sprintf("%s not found: %s", binary, what)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return missing, fmt.Sprintf("%s --version failed: %v: %s", path, err, bytes.TrimSpace(out))
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return OK, path + ": " + strings.TrimSpace(first)
}

func cniNetwork(ctx context.Context, cfg *config.Config) (Status, string) {
	m, err := cni.New(ctx, cni.Options{
		ConfDir:  cfg.CNI.ConfDir,
		BinDirs:  cfg.CNI.BinDirs,
		CacheDir: cfg.CNICacheDir(),
		// Only the first load matters here.
		PollInterval: time.Hour,
	})
	if err != nil {
		return Fail, err.Error()
	}
	defer m.Close()
	if err := m.Status(); err != nil {
		return Warn, fmt.Sprintf("%v: pods on the pod network wait (kubelet waits for NetworkReady); host-network pods run", err)
	}
	return OK, "network config in " + cfg.CNI.ConfDir + " loads and its plugins are in " + strings.Join(cfg.CNI.BinDirs, ", ")
}

// hostsFiles parses every <dir>/<host>/hosts.toml.
func hostsFiles(dir string) (Status, string) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return OK, dir + " does not exist: registries are reached at their own address"
	}
	if err != nil {
		return Warn, err.Error()
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "hosts.toml")); err != nil {
			continue
		}
		host := e.Name()
		if host == "_default" {
			host = "example.invalid"
		}
		if _, err := hosts.Load(dir, host); err != nil {
			return Warn, fmt.Sprintf("%s: %v: pulls from %s fail", filepath.Join(dir, e.Name(), "hosts.toml"), err, e.Name())
		}
		n++
	}
	return OK, fmt.Sprintf("%d hosts.toml file(s) in %s parse", n, dir)
}

func criu(ctx context.Context) (Status, string) {
	a := checkpoint.Probe(ctx)
	if !a.Usable {
		return Info, a.Reason + ": container checkpoints unavailable"
	}
	return Info, a.Path + " works: container checkpoints possible"
}

// nriSocket checks where NRI will listen: its directory can be made, and
// no one else already serves NRI there (NRI replaces a socket it finds,
// which would cut another runtime's plugins off). daemonRunning says this
// config's daemon answers on its admin socket: the NRI socket is its own.
func nriSocket(n config.NRI, daemonRunning bool) (Status, string) {
	switch {
	case n.Disable:
		return Info, "NRI is disabled (nri.disable)"
	case n.DisableConnections:
		return OK, "NRI runs the plugins of " + n.PluginPath + " only (nri.disable_connections)"
	}
	dir := filepath.Dir(n.SocketPath)
	if err := creatableDir(dir); err != nil {
		return Fail, fmt.Sprintf("nri.socket_path %s: %v", n.SocketPath, err)
	}
	if live(n.SocketPath) && !daemonRunning {
		return Warn, fmt.Sprintf("something already accepts connections on %s (another runtime's NRI?): the daemon would take it over; set nri.socket_path apart", n.SocketPath)
	}
	return OK, fmt.Sprintf("plugins can connect on %s", n.SocketPath)
}

// creatableDir says whether dir exists as a writable directory or can be
// created: its nearest existing ancestor is one.
func creatableDir(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if errors.Is(err, os.ErrNotExist) && d != "/" {
			continue
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", d)
		}
		return unix.Access(d, unix.W_OK|unix.X_OK)
	}
}

// live says whether a unix socket at path accepts connections.
func live(path string) bool {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.Connect(fd, &unix.SockaddrUnix{Name: path}) == nil
}
