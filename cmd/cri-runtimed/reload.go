package main

import (
	"context"
	"errors"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/cni"
	"github.com/cri-runtimed/cri-runtimed/pkg/config"
	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/nri"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox"
	"github.com/cri-runtimed/cri-runtimed/pkg/server"
	"github.com/cri-runtimed/cri-runtimed/pkg/telemetry"
	"github.com/cri-runtimed/cri-runtimed/pkg/version"
)

// reloader applies a re-read config on SIGHUP. Only the serving goroutine
// calls it. Which keys it applies, and why the others wait for a restart,
// is pkg/config's table of keys; each group of keys that changed is
// applied as one, and a group that fails keeps its running values.
type reloader struct {
	load    func() (*config.Config, error)
	cfg     *config.Config // what runs: the start's config with the reloaded keys applied
	images  *image.Service
	rec     *telemetry.Recorder
	metrics *telemetry.MetricsServer // nil when metrics.address is empty
	pods    *podsandbox.Controller
	cri     *server.Server
	network *cni.Manager
	nri     *nriRunner
	// snapRoot is where idmapped mounts are probed for handler features.
	snapRoot string
	// setVerbosity sets klog's level; nil when -v was given, which wins.
	setVerbosity func(int) error
}

// reload re-reads the config. An invalid file changes nothing.
func (r *reloader) reload(ctx context.Context) {
	start := time.Now()
	next, err := r.load()
	if err != nil {
		klog.ErrorS(err, "Reload refused: the config is invalid; the running config stays")
		return
	}
	changed, err := config.Changed(r.cfg, next)
	if err != nil {
		klog.ErrorS(err, "Reload refused")
		return
	}
	for _, key := range changed {
		if k, ok := config.Lookup(key); !ok || !k.Reloadable() {
			klog.InfoS("Config key changed; it takes effect at the next start", "key", key, "reason", k.Note)
		}
	}
	cand := *r.cfg
	groups := config.Apply(&cand, next, changed)
	applied := 0
	for _, g := range []config.Group{config.GroupVerbosity, config.GroupMetrics, config.GroupTracing, config.GroupPull,
		config.GroupHandlers, config.GroupNetwork, config.GroupNRITimeouts, config.GroupNRI} {
		keys := groups[g]
		if len(keys) == 0 {
			continue
		}
		if err := r.apply(ctx, g, &cand); err != nil {
			// The group keeps what runs.
			config.Apply(&cand, r.cfg, keys)
			for _, key := range keys {
				klog.InfoS("Config key not applied", "key", key, "reason", err.Error())
			}
			continue
		}
		applied += len(keys)
		for _, key := range keys {
			klog.InfoS("Config key reloaded", "key", key)
		}
	}
	*r.cfg = cand
	klog.InfoS("Reloaded the config", "changed", len(changed), "applied", applied, "duration", time.Since(start))
}

// apply puts one group of cfg's keys into effect.
func (r *reloader) apply(ctx context.Context, g config.Group, cfg *config.Config) error {
	switch g {
	case config.GroupVerbosity:
		return r.applyVerbosity(cfg.LogVerbosity)
	case config.GroupMetrics:
		return r.setMetrics(cfg.Metrics.Address)
	case config.GroupTracing:
		return r.setTracing(ctx, cfg.Tracing)
	case config.GroupPull:
		r.images.Reconfigure(newRegistry(cfg), pullOptions(cfg)...)
	case config.GroupHandlers:
		features := handlerFeatures(ctx, cfg)
		r.pods.SetHandlers(podHandlers(cfg, features), cfg.Runtime.DefaultHandler)
		r.cri.SetHandlers(cfg.Runtime.DefaultHandler, serverFeatures(cfg, features, r.snapRoot))
	case config.GroupNetwork:
		r.network.Reconfigure(ctx, cfg.CNI.ConfDir, cfg.CNI.BinDirs)
	case config.GroupNRITimeouts:
		nri.SetTimeouts(time.Duration(cfg.NRI.PluginRegistrationTimeout), time.Duration(cfg.NRI.PluginRequestTimeout))
	case config.GroupNRI:
		// Should NRI have to start again as it ran, it keeps the timeouts
		// this reload applied.
		from := r.cfg.NRI
		from.PluginRegistrationTimeout, from.PluginRequestTimeout = cfg.NRI.PluginRegistrationTimeout, cfg.NRI.PluginRequestTimeout
		return r.nri.restart(ctx, from, cfg.NRI)
	}
	return nil
}

// setTracing exports spans as t says from now on; the exporter replaced
// is flushed and shut down.
func (r *reloader) setTracing(ctx context.Context, t config.Tracing) error {
	var exp sdktrace.SpanExporter
	if t.Endpoint != "" {
		var err error
		if exp, err = telemetry.NewOTLPExporter(ctx, t.Endpoint, t.Insecure); err != nil {
			return err
		}
	}
	if err := r.rec.SetTracing(ctx, exp, t.SamplingRatio); err != nil {
		// The switch is made whatever the flush gave; only spans of the
		// old exporter were lost.
		klog.ErrorS(err, "Reload: tracing switched, but the previous exporter lost spans")
	}
	if exp == nil {
		klog.InfoS("Tracing off")
	} else {
		klog.InfoS("Exporting traces", "endpoint", t.Endpoint, "samplingRatio", t.SamplingRatio)
	}
	return nil
}

func (r *reloader) applyVerbosity(v int) error {
	if r.setVerbosity == nil {
		return errors.New("-v given on the command line wins")
	}
	return r.setVerbosity(v)
}

// setMetrics serves metrics on addr ("" for none), starting the new
// server before stopping the old one.
func (r *reloader) setMetrics(addr string) error {
	var next *telemetry.MetricsServer
	if addr != "" {
		ms, err := r.rec.ServeMetrics(addr)
		if err != nil {
			return err
		}
		next = ms
	}
	r.closeMetrics()
	r.metrics = next
	return nil
}

func (r *reloader) closeMetrics() {
	if r.metrics == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	_ = r.metrics.Close(ctx)
	r.metrics = nil
}

// newRegistry is the registry client of cfg.
func newRegistry(cfg *config.Config) *registry.Client {
	return registry.New(cfg.Image.RegistryConfigPath,
		registry.WithRetries(cfg.Image.RegistryRetries, 200*time.Millisecond),
		registry.WithMaxManifestSize(cfg.Image.MaxManifestSize),
		registry.WithUserAgent("cri-runtimed/"+version.Version),
	)
}

// pullOptions are the image service's settings that reload may change.
func pullOptions(cfg *config.Config) []image.Option {
	return []image.Option{
		image.WithMaxConcurrentDownloads(cfg.Image.MaxConcurrentDownloads),
		image.WithProgressTimeout(time.Duration(cfg.Image.PullProgressTimeout)),
		image.WithMaxManifestSize(cfg.Image.MaxManifestSize),
		image.WithMaxUncompressedSize(cfg.Image.MaxUncompressedSize),
	}
}
