package kubeletnode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
)

// The kubelet's ports, all bound on 127.0.0.1. They are kubelet's
// defaults: a second kubelet on the host would want the same ones.
const (
	Port         = 10250
	ReadOnlyPort = 10255
	HealthzPort  = 10248
)

// Options configure a Node.
type Options struct {
	// Binary is the kubelet to run (required).
	Binary string
	// Endpoint is the CRI endpoint, "unix:///path" (required).
	Endpoint string
	// CgroupDriver is "cgroupfs" or "systemd", the driver the runtime
	// reports in RuntimeConfig (required).
	CgroupDriver string
	// Dir holds the node's files (required; created if missing, removed
	// by Close).
	Dir string
	// NodeName is the kubelet's --hostname-override; static pods are
	// named "<manifest name>-<NodeName>". Default "kubeletnode".
	NodeName string
	// FeatureGates go to the config's featureGates.
	FeatureGates map[string]bool
	// Config sets or overrides KubeletConfiguration keys (v1beta1 JSON
	// names, e.g. "containerLogMaxSize") on top of the defaults of
	// DefaultConfig.
	Config map[string]any
	// Verbosity is kubelet's -v; default 2.
	Verbosity int
}

// Node is one standalone kubelet process (and its restarts) with its
// files under Options.Dir.
type Node struct {
	opts Options
	// Manifests is the static pod directory; RootDir kubelet's
	// --root-dir; PodLogsDir its podLogsDir (the /var/log/pods layout);
	// ConfigPath its config file; LogPath where its output goes.
	Manifests, RootDir, PodLogsDir, ConfigPath, LogPath string

	lock   *HostLock
	host   *hostState
	client *http.Client

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

// New takes the host's kubelet lock (HostLockPath, waiting up to
// HostLockWait for another holder), checks that no other kubelet holds
// the host, records what the kubelet is going to change on it, and writes
// the config. It does not start the kubelet: call Start. Call Close when
// done, also after errors of Start.
func New(opts Options) (n *Node, err error) {
	if opts.Binary == "" || opts.Endpoint == "" || opts.CgroupDriver == "" || opts.Dir == "" {
		return nil, errors.New("kubeletnode: Binary, Endpoint, CgroupDriver and Dir are required")
	}
	if _, err := os.Stat(opts.Binary); err != nil {
		return nil, fmt.Errorf("kubeletnode: kubelet binary: %w", err)
	}
	if opts.NodeName == "" {
		opts.NodeName = "kubeletnode"
	}
	if opts.Verbosity == 0 {
		opts.Verbosity = 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), HostLockWait)
	lock, err := LockHost(ctx, "test/kubeletnode ("+filepath.Base(os.Args[0])+")")
	cancel()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = lock.Unlock()
		}
	}()
	if err := HostFree(); err != nil {
		return nil, err
	}
	n = &Node{
		lock:       lock,
		opts:       opts,
		Manifests:  filepath.Join(opts.Dir, "manifests"),
		RootDir:    filepath.Join(opts.Dir, "root"),
		PodLogsDir: filepath.Join(opts.Dir, "pods"),
		ConfigPath: filepath.Join(opts.Dir, "kubelet.json"),
		LogPath:    filepath.Join(opts.Dir, "kubelet.log"),
		client:     &http.Client{Timeout: 30 * time.Second},
	}
	for _, d := range []string{n.Manifests, n.RootDir, n.PodLogsDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	host, err := recordHost(opts.CgroupDriver)
	if err != nil {
		return nil, err
	}
	n.host = host
	if err := n.WriteConfig(nil); err != nil {
		return nil, err
	}
	return n, nil
}

// NodeName is the kubelet's node name.
func (n *Node) NodeName() string { return n.opts.NodeName }

// CgroupDriver is the kubelet's cgroup driver.
func (n *Node) CgroupDriver() string { return n.opts.CgroupDriver }

// DefaultConfig is the kubelet configuration a Node starts from: a
// standalone kubelet serving static pods from Manifests (checked every
// second; kubelet also watches the directory with inotify), its ports on
// 127.0.0.1 without authentication, QoS cgroups, the runtime's cgroup
// driver, pod logs under PodLogsDir rotated at 64 KiB into 3 files every
// 3 s (so tests can see ReopenContainerLog), no swap check, no eviction
// or image GC short of a full disk (the tests must not race them), no
// graceful node shutdown (it needs systemd-logind), and on a cgroup v1
// host failCgroupV1: false so releases from 1.35 on start there (on a
// cgroup v2 host kubelet keeps its default).
func (n *Node) DefaultConfig() map[string]any {
	cfg := map[string]any{
		"apiVersion":                  "kubelet.config.k8s.io/v1beta1",
		"kind":                        "KubeletConfiguration",
		"staticPodPath":               n.Manifests,
		"fileCheckFrequency":          "1s",
		"syncFrequency":               "10s",
		"address":                     "127.0.0.1",
		"port":                        Port,
		"readOnlyPort":                ReadOnlyPort,
		"healthzBindAddress":          "127.0.0.1",
		"healthzPort":                 HealthzPort,
		"authentication":              map[string]any{"anonymous": map[string]any{"enabled": true}, "webhook": map[string]any{"enabled": false}},
		"authorization":               map[string]any{"mode": "AlwaysAllow"},
		"containerRuntimeEndpoint":    n.opts.Endpoint,
		"imageServiceEndpoint":        n.opts.Endpoint,
		"cgroupDriver":                n.opts.CgroupDriver,
		"cgroupsPerQOS":               true,
		"enforceNodeAllocatable":      []string{"pods"},
		"failSwapOn":                  false,
		"podLogsDir":                  n.PodLogsDir,
		"containerLogMaxSize":         "64Ki",
		"containerLogMaxFiles":        3,
		"containerLogMonitorInterval": "3s",
		"evictionHard": map[string]string{
			"memory.available": "1Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%",
			"imagefs.available": "1%", "imagefs.inodesFree": "1%",
		},
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"serializeImagePulls":         false,
		"shutdownGracePeriod":         "0s",
		"rotateCertificates":          false,
		"featureGates":                n.opts.FeatureGates,
	}
	if !cgroup2() {
		cfg["failCgroupV1"] = false
	}
	return cfg
}

// cgroup2 reports whether the host runs the unified cgroup v2 hierarchy
// alone (a hybrid host's v2 tree is not at the root).
func cgroup2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// WriteConfig writes DefaultConfig with Options.Config and then override
// applied; it takes effect at the next Start.
func (n *Node) WriteConfig(override map[string]any) error {
	cfg := n.DefaultConfig()
	for _, m := range []map[string]any{n.opts.Config, override} {
		for k, v := range m {
			cfg[k] = v
		}
	}
	if cfg["featureGates"] == nil {
		delete(cfg, "featureGates")
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(n.ConfigPath, data, 0o644)
}

// Start starts the kubelet and waits until its healthz and read-only
// port answer.
func (n *Node) Start(ctx context.Context) error {
	if err := n.startProcess(); err != nil {
		return err
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		body, err := n.get(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", HealthzPort))
		if err == nil && string(body) == "ok" {
			if _, err = n.Pods(ctx); err == nil {
				return nil
			}
		}
		select {
		case <-n.Exited():
			return fmt.Errorf("kubelet exited before serving (%s); log tail:\n%s", n.exitState(), n.LogTail(40))
		case <-ctx.Done():
			return fmt.Errorf("kubelet not healthy: %v (last error %v); log tail:\n%s", ctx.Err(), err, n.LogTail(40))
		case <-tick.C:
		}
	}
}

func (n *Node) startProcess() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil && !isClosed(n.exited) {
		return errors.New("kubelet already runs")
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	n.starts++
	fmt.Fprintf(logf, "=== kubeletnode: start #%d at %s\n", n.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(n.opts.Binary,
		"--config", n.ConfigPath,
		"--root-dir", n.RootDir,
		"--cert-dir", filepath.Join(n.RootDir, "pki"),
		"--hostname-override", n.opts.NodeName,
		"--v", strconv.Itoa(n.opts.Verbosity),
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group keeps terminal signals away; Pdeathsig ends
	// it with the test process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start kubelet: %w", err)
	}
	exited := make(chan struct{})
	n.cmd, n.exited = cmd, exited
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	return nil
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Exited is closed when the current kubelet process has exited (at once
// if none was started).
func (n *Node) Exited() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.exited == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return n.exited
}

func (n *Node) exitState() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.ProcessState == nil {
		return "running"
	}
	return n.cmd.ProcessState.String()
}

// Pid is the current kubelet process's pid (0 if none runs).
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || isClosed(n.exited) {
		return 0
	}
	return n.cmd.Process.Pid
}

func (n *Node) signal(sig syscall.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil && !isClosed(n.exited) {
		_ = n.cmd.Process.Signal(sig)
	}
}

// Stop sends SIGTERM and waits for the exit (SIGKILL after 30 s). The
// kubelet leaves its pods running, as on a real node.
func (n *Node) Stop() error {
	n.signal(syscall.SIGTERM)
	select {
	case <-n.Exited():
		return nil
	case <-time.After(30 * time.Second):
		n.Kill()
		return errors.New("kubelet did not exit within 30s of SIGTERM; killed")
	}
}

// Kill sends SIGKILL and waits for the exit.
func (n *Node) Kill() {
	n.signal(syscall.SIGKILL)
	<-n.Exited()
}

// Log is the kubelet's output of all its starts.
func (n *Node) Log() string {
	b, _ := os.ReadFile(n.LogPath)
	return string(b)
}

// LogTail is the last lines of Log.
func (n *Node) LogTail(lines int) string {
	l := strings.Split(strings.TrimRight(n.Log(), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// PodName is the name kubelet gives the static pod of a manifest named
// name.
func (n *Node) PodName(name string) string { return name + "-" + strings.ToLower(n.opts.NodeName) }

// AddPod writes pod as a static pod manifest (<name>.json; written to a
// hidden file first, which kubelet ignores, then renamed, so kubelet
// never reads half a manifest). A manifest of the same name is replaced.
func (n *Node) AddPod(pod *corev1.Pod) error {
	if pod.APIVersion == "" {
		pod.APIVersion, pod.Kind = "v1", "Pod"
	}
	data, err := json.MarshalIndent(pod, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(n.Manifests, "."+pod.Name+".json")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(n.Manifests, pod.Name+".json"))
}

// RemovePod removes the manifest of the static pod named name (the
// manifest's name, not PodName); kubelet then kills and removes the pod.
func (n *Node) RemovePod(name string) error {
	err := os.Remove(filepath.Join(n.Manifests, name+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// RemoveAllPods removes every manifest.
func (n *Node) RemoveAllPods() error {
	entries, err := os.ReadDir(n.Manifests)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.Remove(filepath.Join(n.Manifests, e.Name())))
	}
	return errors.Join(errs...)
}

func (n *Node) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// ReadOnly GETs path from the read-only port ("/pods", "/metrics"...).
func (n *Node) ReadOnly(ctx context.Context, path string) ([]byte, error) {
	return n.get(ctx, fmt.Sprintf("http://127.0.0.1:%d%s", ReadOnlyPort, path))
}

// Pods is kubelet's /pods: its pods with the statuses it computed.
func (n *Node) Pods(ctx context.Context) ([]corev1.Pod, error) {
	body, err := n.ReadOnly(ctx, "/pods")
	if err != nil {
		return nil, err
	}
	var list corev1.PodList
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("decode /pods: %w", err)
	}
	return list.Items, nil
}

// Pod is the static pod of the manifest named name; ok is false if
// kubelet does not have it.
func (n *Node) Pod(ctx context.Context, name string) (pod corev1.Pod, ok bool, err error) {
	pods, err := n.Pods(ctx)
	if err != nil {
		return pod, false, err
	}
	i := slices.IndexFunc(pods, func(p corev1.Pod) bool { return p.Name == n.PodName(name) })
	if i < 0 {
		return pod, false, nil
	}
	return pods[i], true, nil
}

// StatsSummary is kubelet's /stats/summary.
func (n *Node) StatsSummary(ctx context.Context) (*statsapi.Summary, error) {
	body, err := n.ReadOnly(ctx, "/stats/summary")
	if err != nil {
		return nil, err
	}
	var s statsapi.Summary
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("decode /stats/summary: %w", err)
	}
	return &s, nil
}

// HostFree fails, naming what is taken, if another kubelet holds the
// host: a kubelet process, one of its ports, or a live device-plugin
// socket.
func HostFree() error {
	if pids := kubeletPids(); len(pids) > 0 {
		return fmt.Errorf("kubeletnode: a kubelet already runs on this host (pid %v); only one can run at a time", pids)
	}
	for _, p := range []int{Port, ReadOnlyPort, HealthzPort} {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return fmt.Errorf("kubeletnode: kubelet's port %d is taken (%v); only one kubelet can run at a time", p, err)
		}
		l.Close()
	}
	if c, err := net.Dial("unix", devicePluginSocket); err == nil {
		c.Close()
		return fmt.Errorf("kubeletnode: %s accepts connections: another kubelet runs", devicePluginSocket)
	}
	return nil
}

// kubeletPids lists processes whose command name is "kubelet".
func kubeletPids() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err == nil && strings.TrimSpace(string(comm)) == "kubelet" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Close removes every manifest and waits (up to timeout) until kubelet
// has removed the pods, stops the kubelet, undoes what it changed on the
// host and removes Dir. It returns what it could not clean up. Pods
// kubelet did not remove are left to the runtime's owner.
func (n *Node) Close(timeout time.Duration) error {
	var errs []error
	if n.Pid() != 0 {
		if err := n.RemoveAllPods(); err != nil {
			errs = append(errs, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := n.waitNoPods(ctx)
		cancel()
		if err != nil {
			errs = append(errs, err)
		}
		if err := n.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.host != nil {
		errs = append(errs, n.host.restore(n.PodLogsDir))
	}
	errs = append(errs, snapshot.UnmountUnder(n.opts.Dir), os.RemoveAll(n.opts.Dir))
	// Last: the next kubelet test may start once the host is restored.
	errs = append(errs, n.lock.Unlock())
	return errors.Join(errs...)
}

// waitNoPods waits until kubelet lists no pod and no pod cgroup is left
// (kubelet removes a pod's cgroup once its containers and sandbox are
// gone).
func (n *Node) waitNoPods(ctx context.Context) error {
	for {
		pods, err := n.Pods(ctx)
		cgroups := PodCgroups(n.opts.CgroupDriver)
		if err == nil && len(pods) == 0 && len(cgroups) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			names := make([]string, 0, len(pods))
			for _, p := range pods {
				names = append(names, p.Name)
			}
			return fmt.Errorf("kubelet still has pods %v, pod cgroups %v (err %v)", names, cgroups, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
