//go:build e2e && kubelet

// Package kubelet_test is the kubelet end-to-end suite: cri-runtimed
// driven by a real, standalone kubelet (test/kubeletnode) running static
// pods, checked through kubelet's own API and from inside the containers.
// Run it with `make e2e-kubelet` (which builds the kubelets), or by hand:
//
//	CRI_RUNTIMED_KUBELET=/var/cache/cri-runtimed-test/kubelet/v1.34.4/kubelet \
//	  go test -tags e2e,kubelet -count=1 -v ./test/e2e/kubelet
//
// Environment: CRI_RUNTIMED_KUBELET (the kubelet binary, required),
// CRI_RUNTIMED_BIN (a built daemon; else it is built),
// CRI_RUNTIMED_E2E_GRPCHEALTH (a built ./grpchealth; else it is built),
// CRI_RUNTIMED_E2E_CONFIG (a TOML file of daemon config keys laid over
// the test daemon's, e.g. runtime.cgroup_driver) and the other variables
// of test/e2e/framework. The kubelet's cgroupDriver is the one the daemon
// reports in RuntimeConfig, so the suite runs unchanged on cgroup v1 with
// cgroupfs and on cgroup v2 with systemd.
package kubelet_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	toml "github.com/pelletier/go-toml/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
	"github.com/cri-runtimed/cri-runtimed/test/kubeletnode"
)

const (
	envKubelet = "CRI_RUNTIMED_KUBELET"
	envConfig  = "CRI_RUNTIMED_E2E_CONFIG"

	// busybox is the image of most pods; grpcImage adds a gRPC health
	// server (grpchealth) to it.
	busybox   = "busybox:1.36"
	grpcImage = "grpc-health:1"

	// podTimeout bounds a pod's way to Running (image pull included)
	// and most other waits on kubelet: its PLEG relists every second,
	// its status manager and probes add seconds more, on a loaded CI
	// machine.
	podTimeout = 90 * time.Second
)

func TestMain(m *testing.M) { framework.Main(m) }

// node is the daemon and the kubelet driving it.
type node struct {
	env     *framework.Env
	net     *framework.TestNetwork
	kubelet *kubeletnode.Node
	// driver is the cgroup driver the daemon reports and kubelet uses.
	driver string
	// cgroup2 says the host runs the unified hierarchy only.
	cgroup2 bool
	// gates are the kubelet's feature gates.
	gates map[string]bool
}

// newNode starts a registry with the suite's images, a daemon on a test
// network and a standalone kubelet with the given feature gates, and
// registers their teardown: pods removed through kubelet, kubelet stopped
// and the host restored, then the daemon's usual cleanup.
func newNode(t *testing.T, gates map[string]bool) *node {
	t.Helper()
	framework.RequireRoot(t)
	bin := os.Getenv(envKubelet)
	if bin == "" {
		t.Fatalf("%s is not set: point it at a kubelet binary (`make kubelet` builds them into /var/cache/cri-runtimed-test/kubelet)", envKubelet)
	}
	// No HostFree check here: kubeletnode.New makes it once it holds the
	// host's kubelet lock. Made before, it failed this suite at once
	// while another kubelet test (or a cluster) held the host, instead
	// of waiting for the lock.
	opts := daemonOptions(t)
	n := &node{gates: gates}
	state := framework.ShortStateDir(t)
	// kubelet names every pod's cgroup parent; the daemon's own default
	// parent is isolated so that its leak check sees no other daemon's.
	cgroups, _ := framework.IsolatedCgroupParent(t)
	n.net = framework.NewTestNetwork(t)
	n.env = framework.NewEnv(t, append([]framework.Option{framework.WithConfig("state", state), cgroups, n.net.Option()}, opts...)...)
	pushImages(t, n.env)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc, err := n.env.Daemon.RuntimeClient().RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	if err != nil {
		t.Fatalf("RuntimeConfig: %v", err)
	}
	n.driver = "cgroupfs"
	if rc.GetLinux().GetCgroupDriver() == runtimeapi.CgroupDriver_SYSTEMD {
		n.driver = "systemd"
	}
	_, err = os.Stat("/sys/fs/cgroup/cgroup.controllers")
	n.cgroup2 = err == nil

	dir, err := os.MkdirTemp("", "kubelet-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	n.kubelet, err = kubeletnode.New(kubeletnode.Options{
		Binary:       bin,
		Endpoint:     n.env.Daemon.Endpoint,
		CgroupDriver: n.driver,
		Dir:          dir,
		FeatureGates: gates,
	})
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kubelet log %s (tail):\n%s", n.kubelet.LogPath, n.kubelet.LogTail(60))
			if os.Getenv(framework.EnvKeep) != "" {
				cp := filepath.Join(os.TempDir(), "kubelet-e2e-failed.log")
				_ = exec.Command("cp", n.kubelet.LogPath, cp).Run()
				t.Logf("kubelet log kept in %s", cp)
			}
		}
		if err := n.kubelet.Close(framework.Slow(2 * time.Minute)); err != nil {
			t.Errorf("kubelet teardown: %v", err)
		}
	})
	n.startKubelet(t)
	t.Logf("kubelet %s, cgroup driver %s, cgroup v2 %v", bin, n.driver, n.cgroup2)
	return n
}

func (n *node) startKubelet(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), framework.Slow(2*time.Minute))
	defer cancel()
	if err := n.kubelet.Start(ctx); err != nil {
		t.Fatal(err)
	}
}

// daemonOptions reads CRI_RUNTIMED_E2E_CONFIG: daemon config keys, as
// TOML, laid over the test daemon's config.
func daemonOptions(t *testing.T) []framework.Option {
	t.Helper()
	p := os.Getenv(envConfig)
	if p == "" {
		return nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%s: %v", envConfig, err)
	}
	var m map[string]any
	if err := toml.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", envConfig, err)
	}
	var opts []framework.Option
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			opts = append(opts, framework.WithConfig(prefix+k, v))
		}
	}
	walk("", m)
	return opts
}

var grpcHealth struct {
	once sync.Once
	path string
	err  error
}

// envGRPCHealth names a prebuilt ./grpchealth, for a host without Go
// (the test guest).
const envGRPCHealth = "CRI_RUNTIMED_E2E_GRPCHEALTH"

// grpcHealthBinary builds ./grpchealth statically, once per test binary,
// unless CRI_RUNTIMED_E2E_GRPCHEALTH names one.
func grpcHealthBinary() (string, error) {
	if p := os.Getenv(envGRPCHealth); p != "" {
		return p, nil
	}
	grpcHealth.once.Do(func() {
		dir, err := os.MkdirTemp("", "grpchealth-")
		if err != nil {
			grpcHealth.err = err
			return
		}
		grpcHealth.path = filepath.Join(dir, "grpchealth")
		cmd := exec.Command("go", "build", "-o", grpcHealth.path, "./grpchealth")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			grpcHealth.err = fmt.Errorf("go build ./grpchealth: %v\n%s", err, out)
		}
	})
	return grpcHealth.path, grpcHealth.err
}

func pushImages(t *testing.T, env *framework.Env) {
	t.Helper()
	img, err := images.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	env.Push(t, busybox, img)
	bin, err := grpcHealthBinary()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := images.NewLayer().Dir("usr/local", 0o755).Dir("usr/local/bin", 0o755).
		HostFile("usr/local/bin/grpchealth", bin, 0o755).Build()
	if err != nil {
		t.Fatal(err)
	}
	gimg, err := images.Busybox(images.WithLayers(layer), images.WithCmd("/usr/local/bin/grpchealth"))
	if err != nil {
		t.Fatal(err)
	}
	env.Push(t, grpcImage, gimg)
	data, err := images.NewLayer().
		Dir("data", 0o755).File("data/hello", []byte("hello from the image\n"), 0o644).
		Dir("data/nested", 0o755).File("data/nested/deep", []byte("deep\n"), 0o644).
		File("top", []byte("top level\n"), 0o644).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	dimg, err := images.Busybox(images.WithoutBase(), images.WithLayers(data))
	if err != nil {
		t.Fatal(err)
	}
	env.Push(t, dataImage, dimg)
	bundle, err := images.NewLayer().Dir("model", 0o755).File("model/README", []byte("a model\n"), 0o644).Build()
	if err != nil {
		t.Fatal(err)
	}
	art, err := images.NewArtifact("application/vnd.cri-runtimed.test.data.v1",
		images.ArtifactLayer{Blob: images.LayerBlob("application/vnd.cri-runtimed.test.bundle.v1.tar+gzip", bundle)},
		images.ArtifactLayer{Blob: images.FileBlob("application/json", []byte(`{"threshold": 3}`+"\n")), Title: "config.json"})
	if err != nil {
		t.Fatal(err)
	}
	env.Push(t, dataArtifact, art)
}

// Pod and container builders for manifests.

func newPod(name string, containers ...corev1.Container) *corev1.Pod {
	grace := int64(2)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "e2e", Labels: map[string]string{"e2e": name}},
		Spec: corev1.PodSpec{
			Containers:                    containers,
			TerminationGracePeriodSeconds: &grace,
			RestartPolicy:                 corev1.RestartPolicyAlways,
		},
	}
}

func shell(name, script string) corev1.Container {
	return corev1.Container{
		Name:            name,
		Image:           busybox,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         []string{"sh", "-c", script},
	}
}

func limits(cpu, memory string) corev1.ResourceRequirements {
	l := corev1.ResourceList{}
	if cpu != "" {
		l[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if memory != "" {
		l[corev1.ResourceMemory] = resource.MustParse(memory)
	}
	return corev1.ResourceRequirements{Limits: l, Requests: l}
}

// Waiting on kubelet.

// add writes the manifest and removes it (waiting for the pod to be gone)
// when the test ends.
func (n *node) add(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if err := n.kubelet.AddPod(pod); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.remove(t, pod.Name) })
}

// remove removes the manifest and waits until kubelet has torn the pod
// down: the pod gone from /pods and its cgroup removed.
func (n *node) remove(t *testing.T, name string) {
	t.Helper()
	p, ok, err := n.kubelet.Pod(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	uid := string(p.UID)
	if err := n.kubelet.RemovePod(name); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, podTimeout, func() (bool, string) {
		p, ok, err := n.kubelet.Pod(context.Background(), name)
		if err != nil {
			return false, err.Error()
		}
		if ok {
			return false, fmt.Sprintf("kubelet still has pod %s (%s)", p.Name, p.Status.Phase)
		}
		return true, ""
	})
	if ok {
		framework.Eventually(t, podTimeout, func() (bool, string) {
			cg := n.podCgroups(uid)
			return len(cg) == 0, fmt.Sprintf("pod cgroups left: %v", cg)
		})
	}
}

// podCgroups lists the cgroups of the pod with uid (every hierarchy).
func (n *node) podCgroups(uid string) []string {
	var out []string
	for _, p := range kubeletnode.PodCgroups(n.driver) {
		base := filepath.Base(p)
		if strings.Contains(base, uid) || strings.Contains(base, strings.ReplaceAll(uid, "-", "_")) {
			out = append(out, p)
		}
	}
	return out
}

// waitPod polls kubelet's /pods until cond holds for the pod of manifest
// name, and returns that pod.
func (n *node) waitPod(t *testing.T, name string, timeout time.Duration, cond func(p *corev1.Pod) (bool, string)) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	framework.Eventually(t, timeout, func() (bool, string) {
		p, ok, err := n.kubelet.Pod(context.Background(), name)
		if err != nil {
			return false, err.Error()
		}
		if !ok {
			return false, fmt.Sprintf("kubelet has no pod %s", n.kubelet.PodName(name))
		}
		pod = p
		ok, msg := cond(&pod)
		return ok, msg + "\n" + describe(&pod)
	})
	return &pod
}

// waitReady waits for the pod to be Running with every container ready.
func (n *node) waitReady(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	return n.waitPod(t, name, podTimeout, func(p *corev1.Pod) (bool, string) {
		return p.Status.Phase == corev1.PodRunning && podReady(p), "not running and ready"
	})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// describe is a pod's status in a few lines, for failure messages.
func describe(p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pod %s: phase %s, reason %q, message %q, podIP %s", p.Name, p.Status.Phase, p.Status.Reason, p.Status.Message, p.Status.PodIP)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, "\n  condition %s=%s %s", c.Type, c.Status, c.Reason)
	}
	all := append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...)
	for _, c := range all {
		fmt.Fprintf(&b, "\n  container %s: ready %v, restarts %d, %s", c.Name, c.Ready, c.RestartCount, stateString(c.State))
		if c.LastTerminationState.Terminated != nil {
			fmt.Fprintf(&b, ", last %s", stateString(c.LastTerminationState))
		}
	}
	return b.String()
}

func stateString(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running since " + s.Running.StartedAt.String()
	case s.Waiting != nil:
		return fmt.Sprintf("waiting (%s: %s)", s.Waiting.Reason, s.Waiting.Message)
	case s.Terminated != nil:
		return fmt.Sprintf("terminated (exit %d, %s: %s)", s.Terminated.ExitCode, s.Terminated.Reason, s.Terminated.Message)
	}
	return "unknown"
}

func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// containerID is the runtime's ID of a container kubelet reports
// ("<runtime>://<id>").
func containerID(t *testing.T, p *corev1.Pod, name string) string {
	t.Helper()
	cs := containerStatus(p, name)
	if cs == nil || cs.ContainerID == "" {
		t.Fatalf("no container ID for %s:\n%s", name, describe(p))
	}
	_, id, ok := strings.Cut(cs.ContainerID, "://")
	if !ok {
		t.Fatalf("container ID %q of %s has no runtime prefix", cs.ContainerID, name)
	}
	return id
}

// exec runs cmd in container name of pod p through the runtime and
// returns stdout; a non-zero exit fails the test.
func (n *node) exec(t *testing.T, p *corev1.Pod, name string, cmd ...string) string {
	t.Helper()
	return n.env.Daemon.ExecOK(t, containerID(t, p, name), cmd...)
}

// kubeletErrors returns kubelet log lines (klog severity E) that contain
// any of words, from the kubelet's start #from on.
func (n *node) kubeletErrors(words ...string) []string {
	var out []string
	for _, l := range strings.Split(n.kubelet.Log(), "\n") {
		if !strings.HasPrefix(l, "E") {
			continue
		}
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}
