//go:build e2e

package e2e

import (
	"net/http"
	"regexp"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// scrape is one reading of the daemon's /metrics.
type scrape map[string]*dto.MetricFamily

// get is the value of name{labels} (a histogram's sample count), or 0
// when there is no such series.
func (s scrape) get(name string, labels ...string) float64 {
	mf := s[name]
	if mf == nil {
		return 0
	}
next:
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if got[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

var metricsAddrRe = regexp.MustCompile(`"Serving metrics" address="([^"]+)"`)

func scrapeMetrics(t *testing.T, d *framework.Daemon) scrape {
	t.Helper()
	m := metricsAddrRe.FindStringSubmatch(d.Log())
	if m == nil {
		t.Fatal("the daemon's log does not say where it serves metrics")
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// TestMetrics: with metrics.address set, /metrics follows the work done:
// RPC counts and codes, pulls (bytes, failures by reason), pod start
// phases, pods, containers and shims by state, and GC after a removal.
func TestMetrics(t *testing.T) {
	_, d := podEnv(t, framework.WithConfig("metrics.address", "127.0.0.1:0"))
	before := scrapeMetrics(t, d)
	if n := before.get("cri_runtimed_image_pull_bytes_total"); n <= 0 {
		t.Errorf("pull_bytes_total = %v after pulling busybox, want > 0", n)
	}
	if before.get("process_resident_memory_bytes") <= 0 || before.get("go_goroutines") <= 0 {
		t.Error("no Go runtime or process metrics")
	}

	_, err := d.Images().PullImage(testCtx(t), spec("no/such-image:1"), nil, nil)
	if err == nil {
		t.Fatal("pulling a missing image succeeded")
	}
	reason := status.Code(err).String()
	// A malformed auth fails the pull before any registry is asked.
	_, err = d.Images().PullImage(testCtx(t), spec("busybox"), &runtimeapi.AuthConfig{Auth: "%%%"}, nil)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("pull with a malformed auth: %v", err)
	}
	podCfg := framework.PodConfig("metrics")
	pod := d.RunPod(t, podCfg)
	ctr := d.CreateStarted(t, pod, sleeper("m"), podCfg)

	after := scrapeMetrics(t, d)
	moved := []struct {
		name   string
		labels []string
		delta  float64
	}{
		{"cri_runtimed_grpc_requests_total", []string{"method", "RunPodSandbox", "code", "OK"}, 1},
		{"cri_runtimed_grpc_requests_total", []string{"method", "CreateContainer", "code", "OK"}, 1},
		{"cri_runtimed_grpc_requests_total", []string{"method", "PullImage", "code", reason}, 1},
		{"cri_runtimed_grpc_request_duration_seconds", []string{"method", "StartContainer"}, 1},
		{"cri_runtimed_image_pulls_total", nil, 2},
		{"cri_runtimed_image_pull_failures_total", []string{"reason", reason}, 1},
		{"cri_runtimed_image_pull_failures_total", []string{"reason", "InvalidArgument"}, 1},
		{"cri_runtimed_pod_start_phase_duration_seconds", []string{"phase", "total"}, 1},
		{"cri_runtimed_pod_start_phase_duration_seconds", []string{"phase", "shim"}, 1},
		{"cri_runtimed_pod_start_phase_duration_seconds", []string{"phase", "runc_create"}, 1},
		{"cri_runtimed_pod_start_phase_duration_seconds", []string{"phase", "network"}, 1},
		{"cri_runtimed_pods", []string{"state", "ready"}, 1},
		{"cri_runtimed_containers", []string{"state", "running"}, 1},
		{"cri_runtimed_shims", nil, 1},
	}
	for _, m := range moved {
		if got := after.get(m.name, m.labels...) - before.get(m.name, m.labels...); got != m.delta {
			t.Errorf("%s%v moved by %v, want %v", m.name, m.labels, got, m.delta)
		}
	}

	// Removing everything and then the image leaves garbage that the
	// debounced GC reclaims.
	ctx := testCtx(t)
	rs := d.Runtime()
	if err := rs.StopContainer(ctx, ctr, 0); err != nil {
		t.Fatal(err)
	}
	if err := rs.RemoveContainer(ctx, ctr); err != nil {
		t.Fatal(err)
	}
	if err := rs.StopPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := rs.RemovePodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := d.Images().RemoveImage(ctx, spec(bb)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := scrapeMetrics(t, d)
		if s.get("cri_runtimed_image_gc_reclaimed_bytes_total") > after.get("cri_runtimed_image_gc_reclaimed_bytes_total") {
			if s.get("cri_runtimed_image_gc_runs_total") <= after.get("cri_runtimed_image_gc_runs_total") {
				t.Error("bytes reclaimed without a GC run counted")
			}
			if s.get("cri_runtimed_pods", "state", "ready") != 0 || s.get("cri_runtimed_shims") != 0 {
				t.Errorf("after removal: %v ready pods, %v shims", s.get("cri_runtimed_pods", "state", "ready"), s.get("cri_runtimed_shims"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no GC reclaimed the removed image's content within 30s")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestMetricsUserNamespacePod: a pod with a user namespace sets its
// network up after its sandbox runs (the netns is the sandbox's), and
// that phase is recorded too.
func TestMetricsUserNamespacePod(t *testing.T) {
	_, d := podEnv(t, framework.WithConfig("metrics.address", "127.0.0.1:0"))
	parityTraversable(t, d.State)
	before := scrapeMetrics(t, d)
	mapping := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1000, Length: 100000}}
	d.RunPod(t, framework.PodConfig("metrics-userns", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: mapping, Gids: mapping}
	}))
	after := scrapeMetrics(t, d)
	for _, phase := range []string{"network", "total"} {
		m := "cri_runtimed_pod_start_phase_duration_seconds"
		if got := after.get(m, "phase", phase) - before.get(m, "phase", phase); got != 1 {
			t.Errorf("%s{phase=%s} moved by %v for a user-namespace pod, want 1", m, phase, got)
		}
	}
}

// TestMetricsOffByDefault: without metrics.address nothing listens.
func TestMetricsOffByDefault(t *testing.T) {
	d := framework.NewDaemon(t)
	if metricsAddrRe.MatchString(d.Log()) {
		t.Fatal("the daemon serves metrics without metrics.address")
	}
}

// TestMetricsNRI: with real NRI plugins connected, the NRI figures follow
// the work: plugins registered, requests per plugin and event, a plugin's
// refusal counted as its failure, latency per event, and a plugin gone
// no longer counted.
func TestMetricsNRI(t *testing.T) {
	_, d := podEnv(t, framework.WithConfig("metrics.address", "127.0.0.1:0"))
	recorder, _ := startRecorder(t, d, "10")
	d.StartNRIPlugin(t, "40", "rejecter", "-role", "fault", "-event", "CreateContainer", "-match", "rejected", "-mode", "error")
	const (
		reqs     = "cri_runtimed_nri_plugin_requests_total"
		fails    = "cri_runtimed_nri_plugin_failures_total"
		latency  = "cri_runtimed_nri_plugin_request_duration_seconds"
		plugins  = "cri_runtimed_nri_plugins"
		rec, rej = "10-recorder", "40-rejecter"
	)
	s0 := scrapeMetrics(t, d)
	if got := s0.get(plugins); got != 2 {
		t.Errorf("%s = %v, want 2", plugins, got)
	}
	if got := s0.get(reqs, "plugin", rec, "request", "Synchronize"); got != 1 {
		t.Errorf("Synchronize requests to the recorder: %v, want 1", got)
	}

	pc := framework.PodConfig("nri-metrics")
	pod := d.RunPod(t, pc)
	d.CreateStarted(t, pod, sleeper("c"), pc)
	_, err := d.Runtime().CreateContainer(testCtx(t), pod, sleeper("rejected"), pc)
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("CreateContainer refused by a plugin: %v", err)
	}
	s1 := scrapeMetrics(t, d)
	for _, c := range []struct {
		plugin, request string
		want            float64
	}{
		{rec, "RunPodSandbox", 1},
		{rec, "CreateContainer", 2}, // c, and rejected (the recorder runs first)
		{rec, "StartContainer", 1},
		{rej, "CreateContainer", 2},
	} {
		if got := s1.get(reqs, "plugin", c.plugin, "request", c.request) - s0.get(reqs, "plugin", c.plugin, "request", c.request); got != c.want {
			t.Errorf("%s requests of %s: %v more, want %v", c.request, c.plugin, got, c.want)
		}
	}
	if got := s1.get(fails, "plugin", rej, "request", "CreateContainer") - s0.get(fails, "plugin", rej, "request", "CreateContainer"); got != 1 {
		t.Errorf("CreateContainer failures of the rejecter: %v more, want 1", got)
	}
	if got := s1.get(fails, "plugin", rec, "request", "CreateContainer"); got != 0 {
		t.Errorf("failures of the recorder: %v, want 0", got)
	}
	if got := s1.get(latency, "request", "RunPodSandbox") - s0.get(latency, "request", "RunPodSandbox"); got != 2 {
		t.Errorf("RunPodSandbox latency samples: %v more, want 2 (one per plugin)", got)
	}

	// A plugin gone is dropped at the next request.
	recorder.Kill()
	d.RunPod(t, framework.PodConfig("nri-metrics-2"))
	if got := scrapeMetrics(t, d).get(plugins); got != 1 {
		t.Errorf("%s after a plugin died = %v, want 1", plugins, got)
	}
}
