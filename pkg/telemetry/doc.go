// Package telemetry owns what the daemon tells operators about its work
// beyond CRI: Prometheus metrics (served on metrics.address, off by
// default) and, once tracing is configured, OpenTelemetry spans.
//
// A Recorder is made once at start and handed to the packages that do the
// work (pkg/server, pkg/podsandbox, pkg/image) at construction. Its
// methods are small and non-blocking, because they run inside CRI calls:
// counters and histograms only, no lock of the caller's. A nil *Recorder
// records nothing, so tests and callers that do not care pass nil.
//
// Figures that describe state rather than events (pods and containers by
// state, live shims) are read only when Prometheus scrapes, through the
// functions given to WatchStates, so the request path pays nothing for
// them.
//
// The package imports nothing of the daemon's: every other package may
// depend on it.
package telemetry
