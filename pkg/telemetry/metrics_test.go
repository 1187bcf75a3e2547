package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// value is the value of the series name{labels} in r's registry, or -1.
func value(t *testing.T, r *Recorder, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := r.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return sampleValue(m)
		}
	}
	return -1
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

func TestInterceptorsCountByMethodAndCode(t *testing.T) {
	r := New()
	unary, stream := r.Interceptors()
	calls := []struct {
		method string
		err    error
	}{
		{"/runtime.v1.RuntimeService/RunPodSandbox", nil},
		{"/runtime.v1.RuntimeService/RunPodSandbox", nil},
		{"/runtime.v1.RuntimeService/RunPodSandbox", status.Error(codes.NotFound, "x")},
		{"/runtime.v1.ImageService/PullImage", errors.New("not a status")},
	}
	for _, c := range calls {
		_, _ = unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: c.method},
			func(context.Context, any) (any, error) { return nil, c.err })
	}
	_ = stream(nil, nil, &grpc.StreamServerInfo{FullMethod: "/runtime.v1.RuntimeService/GetContainerEvents"},
		func(any, grpc.ServerStream) error { return status.Error(codes.Canceled, "gone") })

	for _, c := range []struct {
		method, code string
		want         float64
	}{
		{"RunPodSandbox", "OK", 2},
		{"RunPodSandbox", "NotFound", 1},
		{"PullImage", "Unknown", 1},
		{"GetContainerEvents", "Canceled", 1},
	} {
		if got := value(t, r, "cri_runtimed_grpc_requests_total", map[string]string{"method": c.method, "code": c.code}); got != c.want {
			t.Errorf("requests_total{%s,%s} = %v, want %v", c.method, c.code, got, c.want)
		}
	}
	if got := value(t, r, "cri_runtimed_grpc_request_duration_seconds", map[string]string{"method": "RunPodSandbox"}); got != 3 {
		t.Errorf("RunPodSandbox latency samples = %v, want 3", got)
	}
}

func TestEventsAndStates(t *testing.T) {
	r := New()
	now := time.Now()
	r.PodStartPhase(context.Background(), "shim", now, now.Add(3*time.Millisecond))
	r.ShimDied()
	r.PullDone(time.Second, "")
	r.PullDone(time.Second, "NotFound")
	r.PulledBytes(1000)
	r.PulledBytes(24)
	r.GCDone(0)
	r.GCDone(4096)
	r.NRIPluginRequest("10-logger", "CreateContainer", nil)
	r.NRIPluginRequest("10-logger", "CreateContainer", errors.New("timeout"))
	r.NRIPluginLatency("CreateContainer", 2*time.Millisecond)
	r.NRIPlugins(1)
	ready := 2
	r.WatchStates(States{
		Pods:       func() map[string]int { return map[string]int{"ready": ready, "notready": 0} },
		Containers: func() map[string]int { return map[string]int{"running": 3} },
		Shims:      func() int { return ready },
	})
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"cri_runtimed_pod_start_phase_duration_seconds", map[string]string{"phase": "shim"}, 1},
		{"cri_runtimed_shim_deaths_total", nil, 1},
		{"cri_runtimed_image_pulls_total", nil, 2},
		{"cri_runtimed_image_pull_failures_total", map[string]string{"reason": "NotFound"}, 1},
		{"cri_runtimed_image_pull_duration_seconds", nil, 1},
		{"cri_runtimed_image_pull_bytes_total", nil, 1024},
		{"cri_runtimed_image_gc_runs_total", nil, 2},
		{"cri_runtimed_image_gc_reclaimed_bytes_total", nil, 4096},
		{"cri_runtimed_pods", map[string]string{"state": "ready"}, 2},
		{"cri_runtimed_pods", map[string]string{"state": "notready"}, 0},
		{"cri_runtimed_containers", map[string]string{"state": "running"}, 3},
		{"cri_runtimed_shims", nil, 2},
		{"cri_runtimed_nri_plugin_requests_total", map[string]string{"plugin": "10-logger", "request": "CreateContainer"}, 2},
		{"cri_runtimed_nri_plugin_failures_total", map[string]string{"plugin": "10-logger", "request": "CreateContainer"}, 1},
		{"cri_runtimed_nri_plugin_request_duration_seconds", map[string]string{"request": "CreateContainer"}, 1},
		{"cri_runtimed_nri_plugins", nil, 1},
	} {
		if got := value(t, r, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// States are read at each scrape.
	ready = 5
	if got := value(t, r, "cri_runtimed_shims", nil); got != 5 {
		t.Errorf("shims after a change = %v, want 5", got)
	}
}

func TestNilRecorderRecordsNothing(t *testing.T) {
	var r *Recorder
	r.PodStartPhase(context.Background(), "x", time.Now(), time.Now())
	r.ShimDied()
	r.PullDone(0, "x")
	r.PulledBytes(1)
	r.GCDone(1)
	r.NRIPluginRequest("p", "r", errors.New("x"))
	r.NRIPluginLatency("r", time.Second)
	r.NRIPlugins(1)
	r.WatchStates(States{})
}

func TestServeMetrics(t *testing.T) {
	r := New()
	r.PulledBytes(77)
	ms, err := r.ServeMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close(context.Background())
	resp, err := http.Get("http://" + ms.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"cri_runtimed_image_pull_bytes_total 77", "go_goroutines ", "process_resident_memory_bytes "} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// BenchmarkUnaryInterceptor is the cost the metrics add to each CRI call.
func BenchmarkUnaryInterceptor(b *testing.B) {
	r := New()
	unary, _ := r.Interceptors()
	info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/ContainerStatus"}
	h := func(context.Context, any) (any, error) { return nil, nil }
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = unary(ctx, nil, info, h)
	}
}
