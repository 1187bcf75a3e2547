//go:build e2e

package framework

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim/crilog"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

// PodNamespace is the metadata namespace of the pods PodConfig builds.
const PodNamespace = "e2e"

// logDirPrefix names the log directories PodConfig creates (under
// os.TempDir), so RunPod knows which ones it may remove.
const logDirPrefix = "e2e-podlogs-"

// CallTimeout bounds the helper RPCs of this file.
var CallTimeout = Slow(2 * time.Minute)

// ShortStateDir makes a state directory short enough for the daemon's
// per-pod unix sockets (<state>/pods/<64 hex>/shim/shim.sock must stay
// under 108 bytes, which a state under NewDaemon's temporary directory
// does not) and removes it, unmounting what is left, when the test ends.
// Call it before NewEnv/NewDaemon so its cleanup runs after the daemon's.
func ShortStateDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/run", "e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := UnmountAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return dir
}

// NewPodEnv is NewEnv for tests that run pods: the daemon's state is in a
// ShortStateDir and its default cgroup parent is its own
// (IsolatedCgroupParent), so Leaks sees only this daemon's cgroups.
func NewPodEnv(t testing.TB, opts ...Option) *Env {
	t.Helper()
	RequireRoot(t)
	state := ShortStateDir(t)
	cgroups, _ := IsolatedCgroupParent(t)
	network := NewTestNetwork(t)
	return NewEnv(t, append([]Option{WithConfig("state", state), cgroups, network.Option()}, opts...)...)
}

// PodOpt changes a pod config built by PodConfig.
type PodOpt func(*runtimeapi.PodSandboxConfig)

// RandomID returns n random bytes as hex.
func RandomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// PodConfig is a pod config as kubelet sends it: metadata with a unique
// uid in namespace PodNamespace, hostname name, a fresh log directory
// (created here, removed by RunPod's cleanup) and a linux section with
// the namespace options kubelet sets by default (network, pid and ipc
// per pod).
func PodConfig(name string, opts ...PodOpt) *runtimeapi.PodSandboxConfig {
	uid := RandomID(8)
	logDir := filepath.Join(os.TempDir(), logDirPrefix+uid)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		panic(fmt.Sprintf("pod log directory: %v", err))
	}
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{
			Name:      name,
			Uid:       uid,
			Namespace: PodNamespace,
		},
		Hostname:     name,
		LogDirectory: logDir,
		Labels:       map[string]string{"e2e-pod": name},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_POD,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
	for _, o := range opts {
		o(cfg)
	}
	return cfg
}

// WithPodLabels adds labels to the pod.
func WithPodLabels(labels map[string]string) PodOpt {
	return func(c *runtimeapi.PodSandboxConfig) {
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		for k, v := range labels {
			c.Labels[k] = v
		}
	}
}

// WithHostname sets the pod's hostname.
func WithHostname(h string) PodOpt {
	return func(c *runtimeapi.PodSandboxConfig) { c.Hostname = h }
}

// WithDNS sets the pod's DNS config (resolv.conf).
func WithDNS(servers, searches, options []string) PodOpt {
	return func(c *runtimeapi.PodSandboxConfig) {
		c.DnsConfig = &runtimeapi.DNSConfig{Servers: servers, Searches: searches, Options: options}
	}
}

// WithPodNamespaces sets the pod's network, pid and ipc namespace modes.
func WithPodNamespaces(network, pid, ipc runtimeapi.NamespaceMode) PodOpt {
	return func(c *runtimeapi.PodSandboxConfig) {
		ns := c.GetLinux().GetSecurityContext().GetNamespaceOptions()
		ns.Network, ns.Pid, ns.Ipc = network, pid, ipc
	}
}

// WithCgroupParent sets linux.cgroup_parent.
func WithCgroupParent(parent string) PodOpt {
	return func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = parent }
}

// ContainerConfig is a container config as kubelet sends it: metadata
// name, image, command (empty: the image's), log path <name>.log relative
// to the pod's log directory. Change its fields for anything else.
func ContainerConfig(name, image string, cmd ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image},
		Command:  cmd,
		LogPath:  name + ".log",
		Labels:   map[string]string{"e2e-container": name},
		Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_POD,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
}

// Shell is ContainerConfig running `sh -c script`.
func Shell(name, image, script string) *runtimeapi.ContainerConfig {
	return ContainerConfig(name, image, "sh", "-c", script)
}

// LogPath is where a container of podCfg writes its CRI log.
func LogPath(podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	if filepath.IsAbs(cfg.GetLogPath()) {
		return cfg.GetLogPath()
	}
	return filepath.Join(podCfg.GetLogDirectory(), cfg.GetLogPath())
}

func callCtx(t testing.TB) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), CallTimeout)
}

// PushImage builds a busybox image with opts, pushes it as ref and pulls
// it into the daemon; it returns the image (its ID is img.ID()).
func (e *Env) PushImage(t testing.TB, ref string, opts ...images.Option) *images.Image {
	t.Helper()
	img, err := images.Busybox(opts...)
	if err != nil {
		t.Fatal(err)
	}
	e.Push(t, ref, img)
	e.Daemon.Pull(t, ref)
	return img
}

// Pull pulls ref and returns the image ref the daemon answered.
func (d *Daemon) Pull(t testing.TB, ref string) string {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	got, err := d.Images().PullImage(ctx, &runtimeapi.ImageSpec{Image: ref}, nil, nil)
	if err != nil {
		t.Fatalf("PullImage(%q): %v", ref, err)
	}
	return got
}

// RunPod runs cfg and returns the pod ID. At the end of the test the pod
// is stopped and removed (errors are reported) and the log directory
// PodConfig made is removed.
func (d *Daemon) RunPod(t testing.TB, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	if dir := cfg.GetLogDirectory(); strings.HasPrefix(filepath.Base(dir), logDirPrefix) {
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	ctx, cancel := callCtx(t)
	defer cancel()
	id, err := d.Runtime().RunPodSandbox(ctx, cfg, "")
	if err != nil {
		t.Fatalf("RunPodSandbox(%s): %v", cfg.GetMetadata().GetName(), err)
	}
	t.Cleanup(func() { d.RemovePodAtCleanup(t, id) })
	return id
}

// RemovePodAtCleanup stops and removes pod id if the daemon still serves;
// an unknown pod is fine.
func (d *Daemon) RemovePodAtCleanup(t testing.TB, id string) {
	rs := d.Runtime()
	if rs == nil {
		return
	}
	select {
	case <-d.Exited():
		return
	default:
	}
	ctx, cancel := callCtx(t)
	defer cancel()
	if err := rs.StopPodSandbox(ctx, id); err != nil && status.Code(err) != codes.NotFound {
		t.Errorf("cleanup: StopPodSandbox(%s): %v", id, err)
	}
	if err := rs.RemovePodSandbox(ctx, id); err != nil && status.Code(err) != codes.NotFound {
		t.Errorf("cleanup: RemovePodSandbox(%s): %v", id, err)
	}
}

// CreateContainer creates cfg in pod podID and returns its ID; it is
// removed at the end of the test (if the pod's removal has not already).
func (d *Daemon) CreateContainer(t testing.TB, podID string, cfg *runtimeapi.ContainerConfig, podCfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	id, err := d.Runtime().CreateContainer(ctx, podID, cfg, podCfg)
	if err != nil {
		t.Fatalf("CreateContainer(%s): %v", cfg.GetMetadata().GetName(), err)
	}
	t.Cleanup(func() {
		rs := d.Runtime()
		if rs == nil {
			return
		}
		select {
		case <-d.Exited():
			return
		default:
		}
		ctx, cancel := callCtx(t)
		defer cancel()
		if err := rs.RemoveContainer(ctx, id); err != nil && status.Code(err) != codes.NotFound {
			t.Errorf("cleanup: RemoveContainer(%s): %v", id, err)
		}
	})
	return id
}

// StartContainer starts id, failing the test on error.
func (d *Daemon) StartContainer(t testing.TB, id string) {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	if err := d.Runtime().StartContainer(ctx, id); err != nil {
		t.Fatalf("StartContainer(%s): %v", id, err)
	}
}

// CreateStarted creates and starts cfg in pod podID and returns its ID.
func (d *Daemon) CreateStarted(t testing.TB, podID string, cfg *runtimeapi.ContainerConfig, podCfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	id := d.CreateContainer(t, podID, cfg, podCfg)
	d.StartContainer(t, id)
	return id
}

// ContainerStatus returns the status of id (verbose info too).
func (d *Daemon) ContainerStatus(t testing.TB, id string) *runtimeapi.ContainerStatusResponse {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	resp, err := d.Runtime().ContainerStatus(ctx, id, true)
	if err != nil {
		t.Fatalf("ContainerStatus(%s): %v", id, err)
	}
	if resp.GetStatus() == nil {
		t.Fatalf("ContainerStatus(%s): no status", id)
	}
	return resp
}

// PodStatus returns the status of pod id (verbose info too).
func (d *Daemon) PodStatus(t testing.TB, id string) *runtimeapi.PodSandboxStatusResponse {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	resp, err := d.Runtime().PodSandboxStatus(ctx, id, true)
	if err != nil {
		t.Fatalf("PodSandboxStatus(%s): %v", id, err)
	}
	if resp.GetStatus() == nil {
		t.Fatalf("PodSandboxStatus(%s): no status", id)
	}
	return resp
}

// WaitContainerState polls ContainerStatus until id is in state and
// returns that status.
func (d *Daemon) WaitContainerState(t testing.TB, id string, state runtimeapi.ContainerState, timeout time.Duration) *runtimeapi.ContainerStatus {
	t.Helper()
	var st *runtimeapi.ContainerStatus
	Eventually(t, timeout, func() (bool, string) {
		ctx, cancel := callCtx(t)
		defer cancel()
		resp, err := d.Runtime().ContainerStatus(ctx, id, false)
		if err != nil {
			return false, fmt.Sprintf("ContainerStatus(%s): %v", id, err)
		}
		st = resp.GetStatus()
		return st.GetState() == state, fmt.Sprintf("container %s is %s (reason %q, message %q), want %s",
			id, st.GetState(), st.GetReason(), st.GetMessage(), state)
	})
	return st
}

// WaitExited waits until id has exited and returns its status.
func (d *Daemon) WaitExited(t testing.TB, id string, timeout time.Duration) *runtimeapi.ContainerStatus {
	t.Helper()
	return d.WaitContainerState(t, id, runtimeapi.ContainerState_CONTAINER_EXITED, timeout)
}

// ExecResult is what ExecSync returned.
type ExecResult struct {
	Stdout, Stderr string
	ExitCode       int
}

// Exec runs cmd in container id with ExecSync and fails the test if the
// RPC fails (a non-zero exit code is not a failure: check ExitCode).
func (d *Daemon) Exec(t testing.TB, id string, timeout time.Duration, cmd ...string) ExecResult {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	stdout, stderr, err := d.Runtime().ExecSync(ctx, id, cmd, timeout)
	var exit interface{ ExitStatus() int }
	if errors.As(err, &exit) {
		return ExecResult{Stdout: string(stdout), Stderr: string(stderr), ExitCode: exit.ExitStatus()}
	}
	if err != nil {
		t.Fatalf("ExecSync(%s, %q): %v", id, cmd, err)
	}
	return ExecResult{Stdout: string(stdout), Stderr: string(stderr)}
}

// ExecOK is Exec that also requires exit code 0, and returns stdout.
func (d *Daemon) ExecOK(t testing.TB, id string, cmd ...string) string {
	t.Helper()
	r := d.Exec(t, id, 30*time.Second, cmd...)
	if r.ExitCode != 0 {
		t.Fatalf("exec %q in %s: exit code %d, stdout %q, stderr %q", cmd, id, r.ExitCode, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// ReadCRILog parses every record of a CRI log file; a malformed record
// fails the test.
func ReadCRILog(t testing.TB, path string) []crilog.Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("read CRI log: %v", err)
	}
	defer f.Close()
	r := crilog.NewReader(f)
	var out []crilog.Entry
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("CRI log %s, record %d: %v", path, len(out)+1, err)
		}
		out = append(out, e)
	}
}

// ReadCRILines reads a CRI log file as logical lines (partial records
// joined), as kubelet shows them.
func ReadCRILines(t testing.TB, path string) []crilog.Line {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read CRI log: %v", err)
	}
	lines, err := crilog.ReadLines(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("CRI log %s: %v", path, err)
	}
	return lines
}

// StreamText is the content of the complete lines of one stream, joined
// with newlines.
func StreamText(lines []crilog.Line, s crilog.Stream) string {
	var b strings.Builder
	for _, l := range lines {
		if l.Stream == s {
			b.Write(l.Content)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Snapshot lists the system resources a daemon's pods and containers
// hold, by kind, so that a test can check nothing is left behind once its
// pods are removed.
type Snapshot map[string][]string

// Leak kinds.
const (
	LeakMounts     = "mounts"
	LeakNetNS      = "netns pins"
	LeakCgroups    = "cgroups"
	LeakShims      = "shim processes"
	LeakRuncState  = "runc state"
	LeakPodDirs    = "pod directories"
	LeakContainers = "container processes"
	LeakSnapshots  = "snapshots"
)

// Leaks takes a Snapshot: mounts under the daemon's directories (and
// root/state if elsewhere), netns pins, cgroup directories under the
// default cgroup parent in every hierarchy, shim processes of this
// daemon (cmdline " shim "), runc state directories of every handler root,
// per-pod state directories and snapshot directories (a container's
// rootfs snapshot must go with it; take the first Snapshot after pulling).
func (d *Daemon) Leaks(t testing.TB) Snapshot {
	t.Helper()
	s := Snapshot{}
	seen := map[string]bool{}
	// The netns directory is made a mount point once (as `ip netns`
	// does) and stays while the daemon runs: it is not a pod's.
	seen[filepath.Join(d.State, "netns")] = true
	for _, dir := range []string{d.Dir, d.Root, d.State} {
		m, err := Mounts(dir)
		if err != nil {
			t.Fatalf("leaks: %v", err)
		}
		for _, p := range m {
			if !seen[p] {
				seen[p] = true
				s[LeakMounts] = append(s[LeakMounts], p)
			}
		}
	}
	s[LeakNetNS] = listDir(filepath.Join(d.State, "netns"))
	s[LeakPodDirs] = listDir(filepath.Join(d.State, "pods"))
	for _, root := range d.handlerRoots() {
		for _, e := range listDir(root) {
			s[LeakRuncState] = append(s[LeakRuncState], filepath.Join(root, e))
		}
	}
	s[LeakCgroups] = d.cgroupDirs()
	s[LeakSnapshots] = d.SnapshotDirs()
	s[LeakShims], s[LeakContainers] = d.markedProcesses()
	for k := range s {
		sort.Strings(s[k])
	}
	return s
}

// New returns what after holds that s does not, by kind ("kind: item").
func (s Snapshot) New(after Snapshot) []string {
	var out []string
	for kind, items := range after {
		for _, it := range items {
			if !slices.Contains(s[kind], it) {
				out = append(out, kind+": "+it)
			}
		}
	}
	sort.Strings(out)
	return out
}

// CheckNoLeaks polls (cleanup may finish asynchronously) until nothing
// is held beyond before, then fails listing what is left.
func (d *Daemon) CheckNoLeaks(t testing.TB, before Snapshot, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() (bool, string) {
		left := before.New(d.Leaks(t))
		return len(left) == 0, fmt.Sprintf("left behind:\n  %s", strings.Join(left, "\n  "))
	})
}

func listDir(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func (d *Daemon) handlerRoots() []string {
	roots := map[string]bool{}
	for _, e := range listDir(filepath.Join(d.State, "runtime")) {
		roots[filepath.Join(d.State, "runtime", e)] = true
	}
	if hs, ok := d.Config.Get("runtime.handlers"); ok {
		if m, ok := hs.(map[string]any); ok {
			for _, h := range m {
				if hm, ok := h.(map[string]any); ok {
					if r, ok := hm["root"].(string); ok && r != "" {
						roots[r] = true
					}
				}
			}
		}
	}
	out := make([]string, 0, len(roots))
	for r := range roots {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// cgroupDirs lists the directories below the daemon's default cgroup
// parent in every hierarchy (NewPodEnv gives each daemon its own).
func (d *Daemon) cgroupDirs() []string {
	parent := d.Config.String("runtime.default_cgroup_parent")
	if parent == "" {
		parent = cgroups.DefaultCgroupfsParent
		if CgroupDriver() == cgroups.SystemdName {
			parent = cgroups.DefaultSystemdParent
		}
	}
	return CgroupDirs(parent)
}

// markedProcesses lists the shims of this daemon ("pid cmdline") and the other
// processes carrying its instance marker that are not the daemon itself
// (containers inherit no environment from the shim, so this is mostly
// runc and shims).
func (d *Daemon) markedProcesses() (shims, others []string) {
	marker := []byte("\x00" + envInstance + "=" + d.Dir + "\x00")
	self, daemon := os.Getpid(), d.Pid()
	for _, e := range listDir("/proc") {
		pid, err := strconv.Atoi(e)
		if err != nil || pid == self || pid == daemon {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e, "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		line := strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		env, _ := os.ReadFile(filepath.Join("/proc", e, "environ"))
		mine := bytes.Contains(append(append([]byte{0}, env...), 0), marker)
		switch {
		case strings.Contains(" "+line+" ", " shim ") && (mine || strings.Contains(line, d.Dir)):
			shims = append(shims, e+" "+line)
		case mine:
			others = append(others, e+" "+line)
		}
	}
	return shims, others
}

// IsCode reports whether err is a gRPC status error with code c.
func IsCode(err error, c codes.Code) bool { return status.Code(err) == c }
