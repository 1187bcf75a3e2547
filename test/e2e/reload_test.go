//go:build e2e

package e2e

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	toml "github.com/pelletier/go-toml/v2"
	"google.golang.org/grpc/codes"
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
	writeConfig(t, d)
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

// writeConfig writes d.Config to the daemon's config file.
func writeConfig(t *testing.T, d *framework.Daemon) {
	t.Helper()
	data, err := toml.Marshal(map[string]any(d.Config))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.ConfigPath, data, 0o644); err != nil {
		t.Fatal(err)
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
// the log verbosity, and names keys that need a restart, with the
// reason; the running pod is untouched throughout.
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
		// Another value than the framework's, which EnvSlow scales.
		"cni.plugin_timeout":           (framework.Slow(time.Minute) + time.Minute).String(),
		"runtime.max_exec_sync_output": 1 << 20,
	}, "Reloaded the config")
	log := d.Log()
	for _, want := range []string{
		`"Config key reloaded" key="runtime.handlers.reloaded.binary"`,
		`"Config key reloaded" key="cni.conf_dir"`,
		`"Config key changed; it takes effect at the next start" key="cni.plugin_timeout" reason="the CNI manager is built with it at start"`,
		`"Config key changed; it takes effect at the next start" key="runtime.max_exec_sync_output" reason=`,
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

// podStillRunning fails unless the daemon is the same process and the
// pod and its container run as before the reloads.
func podStillRunning(t *testing.T, d *framework.Daemon, pid int, pod, ctr string) {
	t.Helper()
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

// TestReloadTracing: SIGHUP turns tracing on, moves it to another
// collector (the first one gets nothing more once the reload is logged:
// what it held was flushed to it) and turns it off (calls made then reach
// no collector), also away from a collector that is gone, while a pod
// runs.
func TestReloadTracing(t *testing.T) {
	_, d := podEnv(t)
	a, addrA := startCollector(t)
	b, addrB := startCollector(t)
	pc := framework.PodConfig("reload-trace")
	pod := d.RunPod(t, pc)
	ctr := d.CreateStarted(t, pod, sleeper("c"), pc)
	pid := d.Pid()
	const call = "runtime.v1.RuntimeService/PodSandboxStatus"
	waitSpans := func(c *otlpCollector, what string) {
		t.Helper()
		framework.Eventually(t, 30*time.Second, func() (bool, string) {
			d.PodStatus(t, pod)
			return len(c.find(call)) > 0, "no " + call + " span at " + what
		})
	}

	rewriteConfig(t, d, map[string]any{"tracing.endpoint": addrA, "tracing.insecure": true}, "Reloaded the config")
	if !strings.Contains(d.Log(), `"Config key reloaded" key="tracing.endpoint"`) {
		t.Error("tracing.endpoint not reloaded")
	}
	waitSpans(a, "the first collector")

	d.PodStatus(t, pod) // a span batched for a, flushed by the switch
	rewriteConfig(t, d, map[string]any{"tracing.endpoint": addrB}, "Reloaded the config")
	nA := len(a.find(call))
	waitSpans(b, "the second collector")
	if n := len(a.find(call)); n != nA {
		t.Errorf("the first collector got %d more spans after the switch", n-nA)
	}

	rewriteConfig(t, d, map[string]any{"tracing.endpoint": ""}, "Reloaded the config")
	nB := len(b.find(call))
	for range 3 {
		d.PodStatus(t, pod)
	}
	// Switching to a collector flushes whatever the previous exporter
	// still holds, before the reload is logged: had the calls above been
	// traced to b, b has their spans now.
	rewriteConfig(t, d, map[string]any{"tracing.endpoint": addrA}, "Reloaded the config")
	if n := len(b.find(call)); n != nB {
		t.Errorf("%d spans exported after tracing was turned off", n-nB)
	}

	// A collector that is gone, with spans held for it: turning tracing
	// off still applies (the flush gives up after its grace, the spans
	// are lost).
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	rewriteConfig(t, d, map[string]any{"tracing.endpoint": dead}, "Reloaded the config")
	d.PodStatus(t, pod)
	reloaded := strings.Count(d.Log(), `"Config key reloaded" key="tracing.endpoint"`)
	rewriteConfig(t, d, map[string]any{"tracing.endpoint": ""}, "Reloaded the config")
	if strings.Count(d.Log(), `"Config key reloaded" key="tracing.endpoint"`) != reloaded+1 || strings.Contains(d.Log(), `"Config key not applied" key="tracing.endpoint"`) {
		t.Error("tracing not turned off away from a collector that is gone")
	}
	podStillRunning(t, d, pid, pod, ctr)
}

// TestReloadNRI: SIGHUP applies NRI's timeouts without disturbing the
// plugins; moving the socket restarts NRI (connected plugins are
// dropped, the old socket is gone, a plugin on the new one is
// synchronized with the running pod); disabling it removes the socket and
// pods still run; enabling it starts the plugins of plugin_path, which
// see every pod; settings NRI cannot start with are refused and NRI runs
// on as before. The running pod is untouched throughout.
func TestReloadNRI(t *testing.T) {
	_, d := podEnv(t)
	pc := framework.PodConfig("reload-nri")
	pod := d.RunPod(t, pc)
	ctr := d.CreateStarted(t, pod, sleeper("c"), pc)
	pid := d.Pid()
	oldSock := d.Config.String("nri.socket_path")
	first, _ := startRecorder(t, d, "10")
	synced := func(out string, pods ...string) {
		t.Helper()
		sync := findRecord(readNRIRecords(t, out), "Synchronize", "")
		if sync == nil {
			t.Fatal("no Synchronize")
		}
		for _, want := range pods {
			if !slices.ContainsFunc(sync.Pods, func(p *api.PodSandbox) bool { return p.GetId() == want }) {
				t.Errorf("pod %s not synchronized", want)
			}
		}
		if want := ctr; !slices.ContainsFunc(sync.Containers, func(c *api.Container) bool {
			return c.GetId() == want && c.GetState() == api.ContainerState_CONTAINER_RUNNING
		}) {
			t.Errorf("running container %s not synchronized", want)
		}
	}
	gone := func(path string) {
		t.Helper()
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there (%v)", path, err)
		}
	}
	restarts := func() int { return strings.Count(d.Log(), `"NRI restarted"`) }

	rewriteConfig(t, d, map[string]any{"nri.plugin_request_timeout": "3s"}, "Reloaded the config")
	if !strings.Contains(d.Log(), `"Config key reloaded" key="nri.plugin_request_timeout"`) || restarts() != 0 {
		t.Error("the request timeout was not applied, or NRI restarted for it")
	}
	select {
	case <-first.Exited():
		t.Error("a timeout's reload dropped the plugin")
	default:
	}

	newSock := filepath.Join(d.Dir, "nri-moved", "nri.sock")
	rewriteConfig(t, d, map[string]any{"nri.socket_path": newSock}, `"NRI restarted"`)
	select {
	case <-first.Exited():
	case <-time.After(15 * time.Second):
		t.Error("the plugin of the old socket is still connected")
	}
	gone(oldSock)
	_, out := startRecorder(t, d, "20") // on the new socket
	synced(out, pod)
	pod2 := d.RunPod(t, framework.PodConfig("reload-nri-2"))
	if ev := eventsOf(readNRIRecords(t, out), pod2); !slices.Contains(ev, "RunPodSandbox") {
		t.Errorf("the new plugin saw %q of a new pod", ev)
	}

	rewriteConfig(t, d, map[string]any{"nri.disable": true}, `"NRI restarted"`)
	gone(newSock)
	pod3 := d.RunPod(t, framework.PodConfig("reload-nri-3"))

	out3 := filepath.Join(d.Dir, "nri-preinstalled.jsonl")
	d.InstallNRIPlugin(t, "30", "recorder", map[string]any{"role": "recorder", "out": out3})
	rewriteConfig(t, d, map[string]any{"nri.disable": false}, `"NRI restarted"`)
	synced(out3, pod, pod2, pod3)
	if _, err := os.Stat(newSock); err != nil {
		t.Errorf("NRI enabled again, but its socket: %v", err)
	}

	// A socket NRI cannot create: refused, NRI runs on as it was (its
	// plugin started again and synchronized once more).
	before := len(readNRIRecords(t, out3))
	n := restarts()
	rewriteConfig(t, d, map[string]any{"nri.socket_path": "/dev/null/nri.sock"}, "Reloaded the config")
	if !strings.Contains(d.Log(), `"Config key not applied" key="nri.socket_path"`) || restarts() != n {
		t.Error("an NRI that cannot start was not refused")
	}
	if _, err := os.Stat(newSock); err != nil {
		t.Errorf("after the refusal, NRI's socket: %v", err)
	}
	if recs := readNRIRecords(t, out3); !slices.ContainsFunc(recs[before:], func(r nriRecord) bool { return r.Event == "Synchronize" }) {
		t.Error("the plugin of plugin_path did not come back after the refused reload")
	}
	podStillRunning(t, d, pid, pod, ctr)
}

// TestReloadNRIDefaultValidator: SIGHUP turns NRI's default validator on
// (a required plugin that is not there: new containers are refused, the
// running one is untouched) and off again (new containers run).
func TestReloadNRIDefaultValidator(t *testing.T) {
	_, d := podEnv(t)
	pc := framework.PodConfig("reload-validator")
	pod := d.RunPod(t, pc)
	ctr := d.CreateStarted(t, pod, sleeper("c"), pc)
	pid := d.Pid()

	rewriteConfig(t, d, map[string]any{
		"nri.default_validator.enable":           true,
		"nri.default_validator.required_plugins": []string{"must-have"},
	}, `"NRI restarted"`)
	_, err := d.Runtime().CreateContainer(testCtx(t), pod, sleeper("refused"), pc)
	wantCode(t, "CreateContainer with the validator reloaded on and its required plugin missing", err, codes.FailedPrecondition, "default-validator", "must-have")

	rewriteConfig(t, d, map[string]any{"nri.default_validator.enable": false}, `"NRI restarted"`)
	d.CreateStarted(t, pod, sleeper("accepted"), pc)
	podStillRunning(t, d, pid, pod, ctr)
}

// TestRemovedHandlerKeepsItsPods: a pod whose runtime handler was
// removed from the config (by a reload, then a restart) keeps the
// handler's name and the runtime it started with: it runs on, takes new
// containers, and is removed cleanly; new pods cannot name the handler.
func TestRemovedHandlerKeepsItsPods(t *testing.T) {
	_, d := podEnv(t)
	runc := d.Config.String("runtime.handlers.runc.binary")
	if runc == "" {
		runc = "runc"
	}
	rewriteConfig(t, d, map[string]any{"runtime.handlers.alt.binary": runc}, "Reloaded the config")
	pc := framework.PodConfig("alt-pod")
	ctx := testCtx(t)
	resp, err := d.RuntimeClient().RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc, RuntimeHandler: "alt"})
	if err != nil {
		t.Fatal(err)
	}
	pod := resp.PodSandboxId
	ctr := d.CreateStarted(t, pod, sleeper("before"), pc)

	handlers, _ := d.Config.Get("runtime.handlers")
	delete(handlers.(map[string]any), "alt")
	writeConfig(t, d)
	d.Restart(t)
	if !strings.Contains(d.Log(), `"Runtime handler of a pod is no longer configured; the pod keeps the runtime it started with" pod="`+pod+`" handler="alt"`) {
		t.Error("the recovery does not say the pod's handler is gone")
	}
	st := d.PodStatus(t, pod).GetStatus()
	if st.GetRuntimeHandler() != "alt" || st.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("recovered pod: handler %q state %v, want alt and ready", st.GetRuntimeHandler(), st.GetState())
	}
	if st := d.ContainerStatus(t, ctr).GetStatus().GetState(); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container %v after the restart", st)
	}
	d.CreateStarted(t, pod, sleeper("after"), pc)
	if _, err := d.RuntimeClient().RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: framework.PodConfig("alt-new"), RuntimeHandler: "alt"}); err == nil {
		t.Error("a new pod ran with the removed handler")
	}
	if err := d.Runtime().StopPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := d.Runtime().RemovePodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
}
