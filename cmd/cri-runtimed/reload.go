package main

import (
	"context"
	"time"

	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/config"
	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/telemetry"
	"github.com/cri-runtimed/cri-runtimed/pkg/version"
)

// reloadable are the keys SIGHUP applies to the running daemon. Each is
// read afresh by every operation that uses it (a pull takes the registry
// client and the limits when it starts), so changing it disturbs no pod,
// container or pull in progress. Every other key is kept until the next
// start, with a log line naming it.
var reloadable = map[string]bool{
	"metrics.address":                true,
	"image.registry_config_path":     true,
	"image.registry_retries":         true,
	"image.max_concurrent_downloads": true,
	"image.pull_progress_timeout":    true,
	"image.max_manifest_size":        true,
	"image.max_uncompressed_size":    true,
}

// reloader applies a re-read config on SIGHUP. Only the serving goroutine
// calls it.
type reloader struct {
	load    func() (*config.Config, error)
	cfg     *config.Config // what runs: the start's config with the reloaded keys applied
	images  *image.Service
	rec     *telemetry.Recorder
	metrics *telemetry.MetricsServer // nil when metrics.address is empty
}

// reload re-reads the config. An invalid file changes nothing.
func (r *reloader) reload() {
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
	applied := map[string]bool{}
	for _, key := range changed {
		if reloadable[key] {
			applied[key] = true
			continue
		}
		klog.InfoS("Config key changed; it takes effect at the next start", "key", key)
	}
	if applied["metrics.address"] {
		if err := r.setMetrics(next.Metrics.Address); err != nil {
			klog.ErrorS(err, "Reload: metrics.address not applied", "address", next.Metrics.Address)
			delete(applied, "metrics.address")
		} else {
			r.cfg.Metrics = next.Metrics
		}
	}
	imageKeys := false
	for key := range applied {
		imageKeys = imageKeys || key != "metrics.address"
	}
	if imageKeys {
		r.cfg.Image.RegistryConfigPath = next.Image.RegistryConfigPath
		r.cfg.Image.RegistryRetries = next.Image.RegistryRetries
		r.cfg.Image.MaxConcurrentDownloads = next.Image.MaxConcurrentDownloads
		r.cfg.Image.PullProgressTimeout = next.Image.PullProgressTimeout
		r.cfg.Image.MaxManifestSize = next.Image.MaxManifestSize
		r.cfg.Image.MaxUncompressedSize = next.Image.MaxUncompressedSize
		r.images.Reconfigure(newRegistry(r.cfg), pullOptions(r.cfg)...)
	}
	for key := range applied {
		klog.InfoS("Config key reloaded", "key", key)
	}
	klog.InfoS("Reloaded the config", "changed", len(changed), "applied", len(applied))
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
