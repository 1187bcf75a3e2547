package telemetry

import (
	"context"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

const namespace = "cri_runtimed"

// Recorder records the daemon's metrics in its own registry (no global
// Prometheus state).
type Recorder struct {
	reg *prometheus.Registry

	rpcs       *prometheus.CounterVec
	rpcSeconds *prometheus.HistogramVec

	podPhases  *prometheus.HistogramVec
	shimDeaths prometheus.Counter

	pulls        prometheus.Counter
	pullFailures *prometheus.CounterVec
	pullSeconds  prometheus.Histogram
	pullBytes    prometheus.Counter

	pullPhases *prometheus.HistogramVec

	gcRuns      prometheus.Counter
	gcReclaimed prometheus.Counter

	nriCalls    *prometheus.CounterVec
	nriFailures *prometheus.CounterVec
	nriSeconds  *prometheus.HistogramVec
	nriPlugins  prometheus.Gauge

	tracing *tracing // nil: tracing off
}

// Latency buckets from 1ms (list and status calls) to 5 minutes (a large
// pull); kubelet's own CRI histograms span the same range.
var rpcBuckets = prometheus.ExponentialBucketsRange(0.001, 300, 18)

// New returns a Recorder with the Go runtime and process collectors
// registered, tracing when WithTracing says so.
func New(opts ...Option) *Recorder {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	r := &Recorder{reg: prometheus.NewRegistry(), tracing: newTracing(o)}
	r.rpcs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "grpc", Name: "requests_total",
		Help: "CRI requests handled, by method and gRPC status code.",
	}, []string{"method", "code"})
	r.rpcSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "grpc", Name: "request_duration_seconds",
		Help:    "Time to handle a CRI request, by method.",
		Buckets: rpcBuckets,
	}, []string{"method"})
	r.podPhases = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "pod_start", Name: "phase_duration_seconds",
		Help:    "Duration of each phase of RunPodSandbox: prepare (record, dirs, cgroup, files), shim (spawn), runc_create (runc run --detach: the sandbox created and started), runc_start (what follows: the pod cgroup limits, a user-namespace pod network), network (CNI ADD, which overlaps shim and runc), total.",
		Buckets: prometheus.ExponentialBucketsRange(0.0005, 60, 16),
	}, []string{"phase"})
	r.shimDeaths = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "shim", Name: "deaths_total",
		Help: "Shims found dead while the daemon ran (their pods become NotReady).",
	})
	r.pulls = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "image", Name: "pulls_total",
		Help: "PullImage requests, successful or not.",
	})
	r.pullFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "image", Name: "pull_failures_total",
		Help: "Failed pulls, by reason (the gRPC code kubelet got: NotFound, Unavailable, DeadlineExceeded, ResourceExhausted, FailedPrecondition...).",
	}, []string{"reason"})
	r.pullSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "image", Name: "pull_duration_seconds",
		Help:    "Duration of successful pulls.",
		Buckets: rpcBuckets,
	})
	r.pullBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "image", Name: "pull_bytes_total",
		Help: "Bytes downloaded from registries (layers shared with images already present are not downloaded again).",
	})
	r.pullPhases = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "image", Name: "pull_phase_duration_seconds",
		Help:    "Duration of each phase of a pull: resolve (tag to manifest and config), layers (download and unpack), record.",
		Buckets: rpcBuckets,
	}, []string{"phase"})
	r.gcRuns = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "image", Name: "gc_runs_total",
		Help: "Garbage collection passes over images' blobs and snapshots.",
	})
	r.gcReclaimed = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "image", Name: "gc_reclaimed_bytes_total",
		Help: "Bytes of blobs and unpacked snapshots removed by garbage collection.",
	})
	r.nriCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "nri", Name: "plugin_requests_total",
		Help: "Requests to NRI plugins, by plugin and request (RunPodSandbox, CreateContainer, ...).",
	}, []string{"plugin", "request"})
	r.nriFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "nri", Name: "plugin_failures_total",
		Help: "NRI plugin requests that failed (error, timeout, dropped connection), by plugin and request.",
	}, []string{"plugin", "request"})
	r.nriSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "nri", Name: "plugin_request_duration_seconds",
		Help: "Latency of NRI plugin requests, by request.", Buckets: rpcBuckets,
	}, []string{"request"})
	r.nriPlugins = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "nri", Name: "plugins",
		Help: "NRI plugins registered.",
	})
	r.reg.MustRegister(r.rpcs, r.rpcSeconds, r.podPhases, r.shimDeaths,
		r.pulls, r.pullFailures, r.pullSeconds, r.pullBytes, r.pullPhases, r.gcRuns, r.gcReclaimed,
		r.nriCalls, r.nriFailures, r.nriSeconds, r.nriPlugins,
		collectors.NewGoCollector(),
		// go_* and process_* keep their standard names, which dashboards expect.
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return r
}

// Registry is what /metrics serves.
func (r *Recorder) Registry() *prometheus.Registry { return r.reg }

// Interceptors count and time every CRI call. They belong outermost in
// the chain, so that they see the status code the client gets.
func (r *Recorder) Interceptors() (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		r.rpcDone(info.FullMethod, start, err)
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		r.rpcDone(info.FullMethod, start, err)
		return err
	}
	return unary, stream
}

func (r *Recorder) rpcDone(fullMethod string, start time.Time, err error) {
	if r == nil {
		return
	}
	method := path.Base(fullMethod)
	r.rpcSeconds.WithLabelValues(method).Observe(time.Since(start).Seconds())
	r.rpcs.WithLabelValues(method, status.Code(err).String()).Inc()
}

// PodStartPhase records how long one phase of a pod start took, and
// traces it as a span of the request in ctx when tracing is on.
func (r *Recorder) PodStartPhase(ctx context.Context, phase string, start, end time.Time) {
	if r == nil {
		return
	}
	r.podPhases.WithLabelValues(phase).Observe(end.Sub(start).Seconds())
	r.span(ctx, "pod_start."+phase, start, end)
}

// ShimDied counts a shim found dead.
func (r *Recorder) ShimDied() {
	if r == nil {
		return
	}
	r.shimDeaths.Inc()
}

// PullDone records a finished PullImage; reason is empty on success.
func (r *Recorder) PullDone(d time.Duration, reason string) {
	if r == nil {
		return
	}
	r.pulls.Inc()
	if reason != "" {
		r.pullFailures.WithLabelValues(reason).Inc()
		return
	}
	r.pullSeconds.Observe(d.Seconds())
}

// PullPhase records one phase of a pull, and traces it as a span of the
// request in ctx when tracing is on.
func (r *Recorder) PullPhase(ctx context.Context, phase string, start, end time.Time) {
	if r == nil {
		return
	}
	r.pullPhases.WithLabelValues(phase).Observe(end.Sub(start).Seconds())
	r.span(ctx, "image_pull."+phase, start, end)
}

// PulledBytes counts bytes received from a registry.
func (r *Recorder) PulledBytes(n int64) {
	if r == nil || n <= 0 {
		return
	}
	r.pullBytes.Add(float64(n))
}

// GCDone records one garbage collection pass and what it freed.
func (r *Recorder) GCDone(reclaimed int64) {
	if r == nil {
		return
	}
	r.gcRuns.Inc()
	if reclaimed > 0 {
		r.gcReclaimed.Add(float64(reclaimed))
	}
}

// NRIPluginRequest counts one request to an NRI plugin and its failure.
func (r *Recorder) NRIPluginRequest(plugin, request string, err error) {
	if r == nil {
		return
	}
	r.nriCalls.WithLabelValues(plugin, request).Inc()
	if err != nil {
		r.nriFailures.WithLabelValues(plugin, request).Inc()
	}
}

// NRIPluginLatency records how long an NRI plugin took to answer.
func (r *Recorder) NRIPluginLatency(request string, d time.Duration) {
	if r == nil {
		return
	}
	r.nriSeconds.WithLabelValues(request).Observe(d.Seconds())
}

// NRIPlugins sets the number of registered NRI plugins.
func (r *Recorder) NRIPlugins(n int) {
	if r == nil {
		return
	}
	r.nriPlugins.Set(float64(n))
}
