//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// otlpCollector receives spans as an OpenTelemetry collector would.
type otlpCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu       sync.Mutex
	spans    []*tracepb.Span
	services map[string]bool
}

func (c *otlpCollector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				c.services[a.GetValue().GetStringValue()] = true
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// find returns the spans named name.
func (c *otlpCollector) find(name string) []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range c.spans {
		if s.GetName() == name {
			out = append(out, s)
		}
	}
	return out
}

func startCollector(t *testing.T) (*otlpCollector, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &otlpCollector{services: map[string]bool{}}
	g := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(g, c)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return c, lis.Addr().String()
}

// TestTracing: with tracing.endpoint set, the daemon exports a span per
// CRI call to an OTLP collector, with the phases of pulls and pod starts
// as children of the call that ran them.
func TestTracing(t *testing.T) {
	col, addr := startCollector(t)
	_, d := podEnv(t, framework.WithConfig("tracing.endpoint", addr), framework.WithConfig("tracing.insecure", true))
	podCfg := framework.PodConfig("traced")
	d.RunPod(t, podCfg)

	// Spans leave in batches (every 5s).
	children := []struct{ call, phase string }{
		{"runtime.v1.ImageService/PullImage", "image_pull.resolve"},
		{"runtime.v1.ImageService/PullImage", "image_pull.layers"},
		{"runtime.v1.RuntimeService/RunPodSandbox", "pod_start.shim"},
		{"runtime.v1.RuntimeService/RunPodSandbox", "pod_start.runc_create"},
		{"runtime.v1.RuntimeService/RunPodSandbox", "pod_start.network"},
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range children {
		for len(col.find(c.call)) == 0 || len(col.find(c.phase)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no %s span, or no %s span, within 30s", c.call, c.phase)
			}
			time.Sleep(200 * time.Millisecond)
		}
		calls, phase := col.find(c.call), col.find(c.phase)[0]
		parented := false
		for _, call := range calls {
			if call.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
				t.Errorf("%s span kind %v", c.call, call.GetKind())
			}
			if bytes.Equal(phase.GetParentSpanId(), call.GetSpanId()) && bytes.Equal(phase.GetTraceId(), call.GetTraceId()) {
				parented = true
				if phase.GetStartTimeUnixNano() < call.GetStartTimeUnixNano() || phase.GetEndTimeUnixNano() > call.GetEndTimeUnixNano() {
					t.Errorf("%s lies outside its call", c.phase)
				}
			}
		}
		if !parented {
			t.Errorf("%s is not a child of a %s span", c.phase, c.call)
		}
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if !col.services["cri-runtimed"] {
		t.Errorf("service names %v, want cri-runtimed", col.services)
	}
}
