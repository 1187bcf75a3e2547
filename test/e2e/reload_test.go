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
