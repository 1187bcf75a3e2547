package telemetry

import (
	"context"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// phaseServer runs a pod-start phase inside a gRPC call, as the pod
// controller does.
type phaseServer struct {
	healthpb.UnimplementedHealthServer
	r *Recorder
}

func (s phaseServer) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	now := time.Now()
	s.r.PodStartPhase(ctx, "shim", now.Add(-time.Millisecond), now)
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// TestTracing: with tracing on, every call is a server span, phases are
// its children with the phase's own times, and a caller's trace context
// is continued.
func TestTracing(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	r := New(WithTracing(exp, 1), withSyncExport())
	g := grpc.NewServer(grpc.StatsHandler(r.StatsHandler()))
	healthpb.RegisterHealthServer(g, phaseServer{r: r})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// A caller whose own span is sampled: the server span is its child.
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3},
		SpanID:     trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), parent)
	ctx = injectTraceparent(ctx, parent)
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	// The server span ends after the reply is sent: wait for the call to
	// be over. (The in-memory exporter forgets its spans at Close.)
	g.GracefulStop()
	spans := exp.GetSpans()
	defer r.Close(context.Background())
	var server, phase *tracetest.SpanStub
	for i := range spans {
		switch spans[i].Name {
		case "grpc.health.v1.Health/Check":
			server = &spans[i]
		case "pod_start.shim":
			phase = &spans[i]
		}
	}
	if server == nil || phase == nil {
		t.Fatalf("spans %v: want the call's and the phase's", names(spans))
	}
	if server.SpanKind != trace.SpanKindServer {
		t.Errorf("call span kind %v", server.SpanKind)
	}
	if server.SpanContext.TraceID() != parent.TraceID() || server.Parent.SpanID() != parent.SpanID() {
		t.Errorf("call span does not continue the caller's trace: trace %s parent %s", server.SpanContext.TraceID(), server.Parent.SpanID())
	}
	if phase.Parent.SpanID() != server.SpanContext.SpanID() {
		t.Errorf("phase span's parent %s, want the call's span %s", phase.Parent.SpanID(), server.SpanContext.SpanID())
	}
	if d := phase.EndTime.Sub(phase.StartTime); d != time.Millisecond {
		t.Errorf("phase span lasts %v, want the phase's 1ms", d)
	}
	if got := server.Resource.Attributes(); len(got) == 0 {
		t.Error("no resource attributes")
	}
}

// TestTracingOff: without an exporter there is no handler and phases cost
// no span.
func TestTracingOff(t *testing.T) {
	r := New()
	if r.StatsHandler() != nil {
		t.Fatal("a stats handler without tracing")
	}
	r.PodStartPhase(context.Background(), "shim", time.Now(), time.Now())
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// injectTraceparent sends sc as W3C trace context, as kubelet does.
func injectTraceparent(ctx context.Context, sc trace.SpanContext) context.Context {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(ctx, sc), carrier)
	return metadata.AppendToOutgoingContext(ctx, "traceparent", carrier.Get("traceparent"))
}
