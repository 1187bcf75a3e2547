package telemetry

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
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

// TestTracingOff: without an exporter the handler starts no span and
// phases cost none.
func TestTracingOff(t *testing.T) {
	r := New()
	if r.Tracing() {
		t.Fatal("tracing on without an exporter")
	}
	ctx := r.StatsHandler().TagRPC(context.Background(), &stats.RPCTagInfo{FullMethodName: "/x/Y"})
	if trace.SpanFromContext(ctx).SpanContext().IsValid() {
		t.Error("a span for a call with tracing off")
	}
	r.PodStartPhase(ctx, "shim", time.Now(), time.Now())
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// recordingExporter keeps the names of the spans it exported, and past
// its Shutdown (the in-memory exporter forgets them there).
type recordingExporter struct {
	mu    sync.Mutex
	names []string
	shut  bool
}

func (e *recordingExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.shut {
		return errors.New("exporter shut down")
	}
	for _, s := range spans {
		e.names = append(e.names, s.Name())
	}
	return nil
}

func (e *recordingExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.shut = true
	return nil
}

func (e *recordingExporter) got() ([]string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.names), e.shut
}

// blockingServer holds each call until release is closed.
type blockingServer struct {
	healthpb.UnimplementedHealthServer
	r       *Recorder
	entered chan struct{}
	release chan struct{}
}

func (s *blockingServer) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	s.entered <- struct{}{}
	<-s.release
	now := time.Now()
	s.r.PodStartPhase(ctx, "shim", now.Add(-time.Millisecond), now)
	return &healthpb.HealthCheckResponse{}, nil
}

// endSignal tells of the end of each call.
type endSignal chan struct{}

func (e endSignal) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (e endSignal) HandleRPC(_ context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.End); ok {
		e <- struct{}{}
	}
}
func (e endSignal) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (e endSignal) HandleConn(context.Context, stats.ConnStats)                       {}

// TestSetTracing: switching exporters while the server runs flushes the
// old exporter's batched spans to it and shuts it down, sends the span of
// a call in flight across the switch to the new one, and tracing off
// traces nothing more.
func TestSetTracing(t *testing.T) {
	a, b := &recordingExporter{}, &recordingExporter{}
	r := New(WithTracing(a, 1)) // batched: the switch must flush
	srv := &blockingServer{r: r, entered: make(chan struct{}, 1), release: make(chan struct{})}
	ended := endSignal(make(chan struct{}, 3))
	// Handlers run in order: once ended hears of a call's end, its span
	// has ended.
	g := grpc.NewServer(grpc.StatsHandler(r.StatsHandler()), grpc.StatsHandler(ended))
	healthpb.RegisterHealthServer(g, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	call := func() chan error {
		done := make(chan error, 1)
		go func() {
			_, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{})
			done <- err
		}()
		<-srv.entered
		return done
	}

	// One call ends under a (its span waits in the batch), a second is
	// in flight at the switch.
	first := call()
	srv.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	waitSpanEnded := func() { <-ended }
	waitSpanEnded()
	srv.release = make(chan struct{})
	second := call()
	if err := r.SetTracing(context.Background(), b, 1); err != nil {
		t.Fatal(err)
	}
	if names, shut := a.got(); !shut || len(names) != 2 || !slices.Contains(names, "grpc.health.v1.Health/Check") || !slices.Contains(names, "pod_start.shim") {
		t.Errorf("old exporter after the switch: spans %v, shut down %v; want the first call's and its phase, flushed, and shut down", names, shut)
	}
	close(srv.release)
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	waitSpanEnded()
	if err := r.SetTracing(context.Background(), nil, 0); err != nil {
		t.Fatal(err)
	}
	if names, shut := b.got(); !shut || !slices.Contains(names, "grpc.health.v1.Health/Check") || !slices.Contains(names, "pod_start.shim") {
		t.Errorf("new exporter: spans %v, shut down %v; want the call in flight at the switch and its phase", names, shut)
	}
	if r.Tracing() {
		t.Error("tracing still on")
	}
	third := call()
	if err := <-third; err != nil {
		t.Fatal(err)
	}
	waitSpanEnded()
	ctx := r.StatsHandler().TagRPC(context.Background(), &stats.RPCTagInfo{FullMethodName: "/x/Y"})
	if trace.SpanFromContext(ctx).SpanContext().IsValid() {
		t.Error("a span for a call after tracing was turned off")
	}
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

// stuckExporter never gets a span through: its export waits for release,
// as one to a collector that is gone waits for its own timeout.
type stuckExporter struct{ release chan struct{} }

func (e *stuckExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error {
	<-e.release
	return errors.New("collector unreachable")
}

func (e *stuckExporter) Shutdown(context.Context) error { return nil }

// TestSetTracingStuckExporter: an exporter that cannot send what it
// holds delays the switch by the flush grace only (without it, this test
// hangs); the switch is made, and its error says the spans were lost.
func TestSetTracingStuckExporter(t *testing.T) {
	stuck := &stuckExporter{release: make(chan struct{})}
	defer close(stuck.release)
	r := New(WithTracing(stuck, 1), withFlushGrace(50*time.Millisecond))
	_, sp := r.tracing.tracer.Start(context.Background(), "held")
	sp.End() // waits in the batch for the switch's flush
	err := r.SetTracing(context.Background(), nil, 0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("SetTracing = %v, want the flush's deadline exceeded", err)
	}
	if r.Tracing() {
		t.Error("tracing still on after the switch")
	}
}
