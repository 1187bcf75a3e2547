//go:build e2e

package e2e

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	toml "github.com/pelletier/go-toml/v2"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

// rewriteConfig sets keys in the daemon's config file and sends SIGHUP,
// then waits for the reload's log line.
func rewriteConfig(t *testing.T, d *framework.Daemon, set map[string]any, wantLog string) {
	t.Helper()
	for k, v := range set {
		d.Config.Set(k, v)
	}
	data, err := toml.Marshal(map[string]any(d.Config))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.ConfigPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	before := strings.Count(d.Log(), wantLog)
	if err := syscall.Kill(d.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(d.Log(), wantLog) == before {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the daemon's log 20s after SIGHUP", wantLog)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReload: SIGHUP applies the keys that can change live (metrics
// turned on, pull limits), names each key that needs a restart, refuses
// an invalid file as a whole, and never disturbs a running pod.
func TestReload(t *testing.T) {
	env, d := podEnv(t)
	l, err := images.NewLayer().File("data", make([]byte, 64<<10), 0o644).Build()
	if err != nil {
		t.Fatal(err)
	}
	img, err := images.Busybox(images.WithoutBase(), images.WithLayers(l))
	if err != nil {
		t.Fatal(err)
	}
	const other = "reload-img"
	env.Push(t, other, img)
	podCfg := framework.PodConfig("reload")
	pod := d.RunPod(t, podCfg)
	ctr := d.CreateStarted(t, pod, sleeper("r"), podCfg)
	pid := d.Pid()

	// Metrics on, a pull limit no image fits, and a key that needs a
	// restart.
	rewriteConfig(t, d, map[string]any{
		"metrics.address":               "127.0.0.1:0",
		"image.max_uncompressed_size":   1024,
		"streaming.stream_idle_timeout": "1h",
	}, "Reloaded the config")
	log := d.Log()
	for _, want := range []string{
		`"Config key reloaded" key="metrics.address"`,
		`"Config key reloaded" key="image.max_uncompressed_size"`,
		`"Config key changed; it takes effect at the next start" key="streaming.stream_idle_timeout"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	if s := scrapeMetrics(t, d); s.get("cri_runtimed_pods", "state", "ready") != 1 {
		t.Errorf("metrics after reload: %v ready pods, want 1", s.get("cri_runtimed_pods", "state", "ready"))
	}
	// The limit applies to the next pull.
	ctx := testCtx(t)
	if _, err := d.Images().PullImage(ctx, spec(other), nil, nil); err == nil || !strings.Contains(err.Error(), "max_uncompressed_size") {
		t.Errorf("pull past the reloaded limit: %v, want a refusal naming image.max_uncompressed_size", err)
	}

	// An invalid file changes nothing.
	rewriteConfig(t, d, map[string]any{"image.max_uncompressed_size": 0, "image.max_concurrent_downloads": 0}, "Reload refused")
	if _, err := d.Images().PullImage(ctx, spec(other), nil, nil); err == nil {
		t.Error("a refused reload applied its pull limit")
	}
	// Fixed, it applies.
	rewriteConfig(t, d, map[string]any{"image.max_concurrent_downloads": 2}, "Reloaded the config")
	if _, err := d.Images().PullImage(ctx, spec(other), nil, nil); err != nil {
		t.Errorf("pull after the limit was lifted: %v", err)
	}

	if d.Pid() != pid {
		t.Fatal("the daemon restarted")
	}
	if st := d.PodStatus(t, pod).GetStatus().GetState(); st != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod %v after reloads", st)
	}
	if st := d.ContainerStatus(t, ctr).GetStatus().GetState(); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container %v after reloads", st)
	}
}

// networkReady is Status's NetworkReady condition.
func networkReady(t *testing.T, d *framework.Daemon) bool {
	t.Helper()
	st, err := d.RuntimeClient().Status(testCtx(t), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.GetStatus().GetConditions() {
		if c.Type == runtimeapi.NetworkReady {
			return c.Status
		}
	}
	t.Fatal("no NetworkReady condition")
	return false
}

// TestReloadRuntimeNetworkVerbosity: SIGHUP adds a runtime handler that
// new pods can use at once (and Status lists), moves the CNI conf dir
// (an empty one: the network is not ready; back: ready again), raises
// the log verbosity, and names tracing and NRI keys as needing a
// restart, with the reason; the running pod is untouched throughout.
func TestReloadRuntimeNetworkVerbosity(t *testing.T) {
	_, d := podEnv(t)
	podCfg := framework.PodConfig("reload-rt")
	pod := d.RunPod(t, podCfg)
	ctr := d.CreateStarted(t, pod, sleeper("r"), podCfg)
	confDir := d.Config.String("cni.conf_dir")
	runc := d.Config.String("runtime.handlers.runc.binary")
	if runc == "" {
		runc = "runc"
	}
	if !networkReady(t, d) {
		t.Fatal("network not ready before the reload")
	}
	// A pod naming the handler before it exists is refused.
	hostPod := func(name string) *runtimeapi.PodSandboxConfig {
		return framework.PodConfig(name, framework.WithPodNamespaces(runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD))
	}
	if _, err := d.RuntimeClient().RunPodSandbox(testCtx(t), &runtimeapi.RunPodSandboxRequest{Config: hostPod("early"), RuntimeHandler: "reloaded"}); err == nil {
		t.Fatal("a pod ran with a handler not configured yet")
	}

	rewriteConfig(t, d, map[string]any{
		"runtime.handlers.reloaded.binary": runc,
		"cni.conf_dir":                     t.TempDir(),
		"log_verbosity":                    2,
		"tracing.endpoint":                 "127.0.0.1:4317",
		"nri.plugin_request_timeout":       "3s",
	}, "Reloaded the config")
	log := d.Log()
	for _, want := range []string{
		`"Config key reloaded" key="runtime.handlers.reloaded.binary"`,
		`"Config key reloaded" key="cni.conf_dir"`,
		`"Config key changed; it takes effect at the next start" key="tracing.endpoint" reason=`,
		`"Config key changed; it takes effect at the next start" key="nri.plugin_request_timeout" reason=`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	explicitV := strings.Contains(log, "Config key not applied\" key=\"log_verbosity\"")
	if !explicitV && !strings.Contains(log, `"Config key reloaded" key="log_verbosity"`) {
		t.Error("log_verbosity neither reloaded nor refused")
	}
	if networkReady(t, d) {
		t.Error("network still ready with an empty conf dir")
	}
	st, err := d.RuntimeClient().Status(testCtx(t), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, h := range st.GetRuntimeHandlers() {
		listed = listed || h.Name == "reloaded"
	}
	if !listed {
		t.Errorf("Status does not list the reloaded handler: %v", st.GetRuntimeHandlers())
	}
	// The new handler runs a pod (on the host network: the pod network
	// is not ready), and at verbosity 2 its start is logged.
	pc := hostPod("late")
	resp, err := d.RuntimeClient().RunPodSandbox(testCtx(t), &runtimeapi.RunPodSandboxRequest{Config: pc, RuntimeHandler: "reloaded"})
	if err != nil {
		t.Fatalf("pod with the reloaded handler: %v", err)
	}
	t.Cleanup(func() { d.RemovePodAtCleanup(t, resp.PodSandboxId) })
	if got := d.PodStatus(t, resp.PodSandboxId).GetStatus().GetRuntimeHandler(); got != "reloaded" {
		t.Errorf("pod's runtime handler %q", got)
	}
	if !explicitV && !strings.Contains(d.Log(), `"Pod sandbox running" pod="`+resp.PodSandboxId) {
		t.Error("no V(2) line for the pod after log_verbosity = 2")
	}

	rewriteConfig(t, d, map[string]any{"cni.conf_dir": confDir}, "Reloaded the config")
	if !networkReady(t, d) {
		t.Error("network not ready after the conf dir came back")
	}
	if st := d.PodStatus(t, pod).GetStatus().GetState(); st != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod %v after reloads", st)
	}
	if st := d.ContainerStatus(t, ctr).GetStatus().GetState(); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container %v after reloads", st)
	}
}
