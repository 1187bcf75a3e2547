package telemetry

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"
)

// serviceName names the daemon in traces (the OpenTelemetry resource's
// service.name).
const serviceName = "cri-runtimed"

// flushGrace bounds how long a replaced exporter may take to send the
// spans it still holds and shut down: a collector that is gone must not
// hold a reload (the OTLP exporter itself retries for up to 10 s per
// batch).
const flushGrace = 5 * time.Second

// Option sets an optional Recorder setting.
type Option func(*options)

type options struct {
	exporter sdktrace.SpanExporter
	ratio    float64
	version  string
	syncSpan bool
	grace    time.Duration
}

// WithTracing exports spans to exp: one per CRI call (a child of the
// caller's span when kubelet propagates its trace context), and children
// for the phases of pod starts and pulls. ratio is the fraction of calls
// without a sampled parent that are traced.
func WithTracing(exp sdktrace.SpanExporter, ratio float64) Option {
	return func(o *options) { o.exporter, o.ratio = exp, ratio }
}

// NewOTLPExporter exports spans over OTLP/gRPC to endpoint (host:port),
// plaintext when insecure, else TLS with the system's roots. It does not
// connect yet: a collector that is down costs dropped spans, never a
// failed CRI call.
func NewOTLPExporter(ctx context.Context, endpoint string, insecure bool) (sdktrace.SpanExporter, error) {
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(endpoint)}
	if insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing.endpoint %s: %w", endpoint, err)
	}
	return exp, nil
}

// WithVersion names the daemon's version in the traces' resource.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// withSyncExport exports each span as it ends (tests).
func withSyncExport() Option { return func(o *options) { o.syncSpan = true } }

// withFlushGrace replaces flushGrace (tests).
func withFlushGrace(d time.Duration) Option { return func(o *options) { o.grace = d } }

// tracing is the Recorder's tracing side. Its provider lives as long as
// the Recorder, so that the gRPC server, built once, keeps tracing
// through it; what SetTracing changes is the provider's span processor
// (the exporter behind it) and the sampler's ratio. Off is no processor,
// a sampler that drops everything, and a stats handler that does not
// even start a span.
type tracing struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	sampler  *switchSampler
	syncSpan bool
	grace    time.Duration

	// mu serializes SetTracing; proc is the processor in use, nil: off.
	mu   sync.Mutex
	proc sdktrace.SpanProcessor
}

func newTracing(o options) *tracing {
	res := sdkresource.NewSchemaless(
		attribute.String("service.name", serviceName),
		attribute.String("service.version", o.version),
	)
	s := &switchSampler{}
	s.set(nil)
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSampler(s))
	t := &tracing{provider: tp, tracer: tp.Tracer("github.com/cri-runtimed/cri-runtimed"), sampler: s, syncSpan: o.syncSpan, grace: o.grace}
	if t.grace <= 0 {
		t.grace = flushGrace
	}
	if o.exporter != nil {
		_ = t.set(context.Background(), o.exporter, o.ratio)
	}
	return t
}

// SetTracing exports the spans that end from now on to exp (nil: tracing
// off) with the sampling ratio ratio. The exporter it replaces is flushed
// and shut down, within ctx and at most flushGrace: a span that started
// before the switch and ends after it goes to exp, none is lost. Safe
// while CRI calls are traced.
func (r *Recorder) SetTracing(ctx context.Context, exp sdktrace.SpanExporter, ratio float64) error {
	return r.tracing.set(ctx, exp, ratio)
}

// Tracing says whether spans are exported.
func (r *Recorder) Tracing() bool {
	return r != nil && r.tracing.sampler.on()
}

func (t *tracing) set(ctx context.Context, exp sdktrace.SpanExporter, ratio float64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var next sdktrace.SpanProcessor
	if exp != nil {
		if t.syncSpan {
			next = &boundedShutdown{SpanProcessor: sdktrace.NewSimpleSpanProcessor(exp), grace: t.grace}
		} else {
			next = &boundedShutdown{SpanProcessor: sdktrace.NewBatchSpanProcessor(exp), grace: t.grace}
		}
		// The new processor is in place before the old one leaves, so a
		// span ending in between reaches one of them.
		t.provider.RegisterSpanProcessor(next)
		t.sampler.set(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)))
	} else {
		t.sampler.set(nil)
	}
	old := t.proc
	t.proc = next
	if old == nil {
		return nil
	}
	// Flush first, for its error; Unregister then shuts the processor
	// down (which flushes too). Both share one deadline, so that a
	// collector that is gone holds the switch for the grace at most.
	deadline := time.Now().Add(t.grace)
	fctx, cancel := context.WithDeadline(ctx, deadline)
	err := old.ForceFlush(fctx)
	cancel()
	old.(*boundedShutdown).deadline = deadline
	t.provider.UnregisterSpanProcessor(old)
	if err != nil {
		return fmt.Errorf("flush the spans of the previous exporter: %w", err)
	}
	return nil
}

// boundedShutdown is a processor whose Shutdown gives up at its
// deadline, or after its grace when none was set: the provider calls it
// with no deadline when the processor is replaced. The spans it then
// still holds are lost; its goroutines end with the exporter's own
// timeout.
type boundedShutdown struct {
	sdktrace.SpanProcessor
	grace time.Duration
	// deadline is set, under tracing.mu, before the processor is
	// unregistered.
	deadline time.Time
}

func (b *boundedShutdown) Shutdown(ctx context.Context) error {
	deadline := b.deadline
	if deadline.IsZero() {
		deadline = time.Now().Add(b.grace)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return b.SpanProcessor.Shutdown(ctx)
}

// switchSampler is the provider's sampler, replaced as tracing is turned
// on, off or re-ratioed; set(nil) drops every span.
type switchSampler struct {
	cur     atomic.Pointer[sdktrace.Sampler]
	enabled atomic.Bool
}

func (s *switchSampler) set(next sdktrace.Sampler) {
	s.enabled.Store(next != nil)
	if next == nil {
		next = sdktrace.NeverSample()
	}
	s.cur.Store(&next)
}

func (s *switchSampler) on() bool { return s.enabled.Load() }

func (s *switchSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	return (*s.cur.Load()).ShouldSample(p)
}

func (s *switchSampler) Description() string { return (*s.cur.Load()).Description() }

// StatsHandler traces every CRI call (otelgrpc) while tracing is on. It
// is installed once for the server's life: a call that begins while
// tracing is off is not traced, and costs one atomic load.
func (r *Recorder) StatsHandler() stats.Handler {
	if r == nil {
		return nil
	}
	return &switchHandler{on: r.tracing.sampler.on, inner: otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(r.tracing.provider),
		// Metrics are Prometheus's job here; no OpenTelemetry meter.
		otelgrpc.WithMeterProvider(noop.NewMeterProvider()),
		// kubelet sends W3C trace context when its own tracing is on.
		otelgrpc.WithPropagators(propagation.TraceContext{}),
	)}
}

// switchHandler hands a call to otelgrpc only when tracing is on as the
// call begins, and then every event of that call.
type switchHandler struct {
	on    func() bool
	inner stats.Handler
}

type tracedKey struct{}

func (h *switchHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if !h.on() {
		return ctx
	}
	return context.WithValue(h.inner.TagRPC(ctx, info), tracedKey{}, true)
}

func (h *switchHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if ctx.Value(tracedKey{}) != nil {
		h.inner.HandleRPC(ctx, s)
	}
}

func (h *switchHandler) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	return h.inner.TagConn(ctx, info)
}

func (h *switchHandler) HandleConn(ctx context.Context, s stats.ConnStats) {
	h.inner.HandleConn(ctx, s)
}

// span records a finished phase of the request in ctx as its child. Only
// requests being traced get phase spans.
func (r *Recorder) span(ctx context.Context, name string, start, end time.Time) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return
	}
	_, sp := r.tracing.tracer.Start(ctx, name, trace.WithTimestamp(start))
	sp.End(trace.WithTimestamp(end))
}

// Close flushes the spans not yet exported, within ctx.
func (r *Recorder) Close(ctx context.Context) error {
	if r == nil {
		return nil
	}
	if err := r.tracing.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("flush traces: %w", err)
	}
	return nil
}
