package telemetry

import (
	"context"
	"fmt"
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

// Option sets an optional Recorder setting.
type Option func(*options)

type options struct {
	exporter sdktrace.SpanExporter
	ratio    float64
	version  string
	syncSpan bool
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

// tracing is the Recorder's tracing side; nil when off.
type tracing struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
}

func newTracing(o options) *tracing {
	if o.exporter == nil {
		return nil
	}
	res := sdkresource.NewSchemaless(
		attribute.String("service.name", serviceName),
		attribute.String("service.version", o.version),
	)
	export := sdktrace.WithBatcher(o.exporter)
	if o.syncSpan {
		export = sdktrace.WithSyncer(o.exporter)
	}
	tp := sdktrace.NewTracerProvider(
		export,
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.ratio))),
	)
	return &tracing{provider: tp, tracer: tp.Tracer("github.com/cri-runtimed/cri-runtimed")}
}

// StatsHandler traces every CRI call (otelgrpc); nil when tracing is off.
func (r *Recorder) StatsHandler() stats.Handler {
	if r == nil || r.tracing == nil {
		return nil
	}
	return otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(r.tracing.provider),
		// Metrics are Prometheus's job here; no OpenTelemetry meter.
		otelgrpc.WithMeterProvider(noop.NewMeterProvider()),
		// kubelet sends W3C trace context when its own tracing is on.
		otelgrpc.WithPropagators(propagation.TraceContext{}),
	)
}

// span records a finished phase of the request in ctx as its child. Only
// requests being traced get phase spans.
func (r *Recorder) span(ctx context.Context, name string, start, end time.Time) {
	if r.tracing == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return
	}
	_, sp := r.tracing.tracer.Start(ctx, name, trace.WithTimestamp(start))
	sp.End(trace.WithTimestamp(end))
}

// Close flushes the spans not yet exported, within ctx.
func (r *Recorder) Close(ctx context.Context) error {
	if r == nil || r.tracing == nil {
		return nil
	}
	if err := r.tracing.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("flush traces: %w", err)
	}
	return nil
}
