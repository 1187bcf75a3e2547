package main

import (
	"context"
	"errors"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/cni"
	"github.com/cri-runtimed/cri-runtimed/pkg/config"
	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox"
	"github.com/cri-runtimed/cri-runtimed/pkg/server"
	"github.com/cri-runtimed/cri-runtimed/pkg/telemetry"
	"github.com/cri-runtimed/cri-runtimed/pkg/version"
)

// reloadable are the keys SIGHUP applies to the running daemon. Each is
// read afresh by every operation that uses it (a pull takes the registry
// client and the limits when it starts, a pod its runtime handler and the
// CNI config when it is created), so changing it disturbs no pod,
// container or pull in progress. Every other key is kept until the next
// start, with a log line naming it (and why, for those in needsRestart).
var reloadable = map[string]bool{
	"log_verbosity":                  true,
	"metrics.address":                true,
	"image.registry_config_path":     true,
	"image.registry_retries":         true,
	"image.max_concurrent_downloads": true,
	"image.pull_progress_timeout":    true,
	"image.max_manifest_size":        true,
	"image.max_uncompressed_size":    true,
	"runtime.default_handler":        true,
	"cni.conf_dir":                   true,
	"cni.bin_dirs":                   true,
}

// reloadablePrefix are tables whose every key reloads.
var reloadablePrefix = []string{"runtime.handlers."}

// needsRestart says why some keys are not reloaded.
var needsRestart = map[string]string{
	"tracing.": "the tracer and its OTLP exporter are built at start and wrap the CRI server",
	"nri.":     "NRI plugins are started, connected and synchronized at start; re-registering them would replay every pod and container to them",
	"grpc.":    "the CRI socket is bound at start",
	"root":     "the stores are opened at start",
	"state":    "shims and pods live under it",
}

func isReloadable(key string) bool {
	if reloadable[key] {
		return true
	}
	for _, p := range reloadablePrefix {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

func restartReason(key string) string {
	for p, why := range needsRestart {
		if key == p || strings.HasPrefix(key, p) {
			return why
		}
	}
	return "read once at start"
}

// reloader applies a re-read config on SIGHUP. Only the serving goroutine
// calls it.
type reloader struct {
	load    func() (*config.Config, error)
	cfg     *config.Config // what runs: the start's config with the reloaded keys applied
	images  *image.Service
	rec     *telemetry.Recorder
	metrics *telemetry.MetricsServer // nil when metrics.address is empty
	pods    *podsandbox.Controller
	cri     *server.Server
	network *cni.Manager
	// snapRoot is where idmapped mounts are probed for handler features.
	snapRoot string
	// setVerbosity sets klog's level; nil when -v was given, which wins.
	setVerbosity func(int) error
}

// reload re-reads the config. An invalid file changes nothing.
func (r *reloader) reload(ctx context.Context) {
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
		if isReloadable(key) {
			applied[key] = true
			continue
		}
		klog.InfoS("Config key changed; it takes effect at the next start", "key", key, "reason", restartReason(key))
	}
	if applied["log_verbosity"] {
		if err := r.applyVerbosity(next.LogVerbosity); err != nil {
			klog.InfoS("Config key not applied", "key", "log_verbosity", "reason", err.Error())
			delete(applied, "log_verbosity")
		}
	}
	if applied["metrics.address"] {
		if err := r.setMetrics(next.Metrics.Address); err != nil {
			klog.ErrorS(err, "Reload: metrics.address not applied", "address", next.Metrics.Address)
			delete(applied, "metrics.address")
		} else {
			r.cfg.Metrics = next.Metrics
		}
	}
	if anyPrefix(applied, "image.") {
		r.cfg.Image.RegistryConfigPath = next.Image.RegistryConfigPath
		r.cfg.Image.RegistryRetries = next.Image.RegistryRetries
		r.cfg.Image.MaxConcurrentDownloads = next.Image.MaxConcurrentDownloads
		r.cfg.Image.PullProgressTimeout = next.Image.PullProgressTimeout
		r.cfg.Image.MaxManifestSize = next.Image.MaxManifestSize
		r.cfg.Image.MaxUncompressedSize = next.Image.MaxUncompressedSize
		r.images.Reconfigure(newRegistry(r.cfg), pullOptions(r.cfg)...)
	}
	if anyPrefix(applied, "runtime.") {
		r.cfg.Runtime.DefaultHandler = next.Runtime.DefaultHandler
		r.cfg.Runtime.Handlers = next.Runtime.Handlers
		features := handlerFeatures(ctx, r.cfg)
		r.pods.SetHandlers(podHandlers(r.cfg, features), r.cfg.Runtime.DefaultHandler)
		r.cri.SetHandlers(r.cfg.Runtime.DefaultHandler, serverFeatures(r.cfg, features, r.snapRoot))
	}
	if anyPrefix(applied, "cni.") {
		r.cfg.CNI.ConfDir, r.cfg.CNI.BinDirs = next.CNI.ConfDir, next.CNI.BinDirs
		r.network.Reconfigure(ctx, r.cfg.CNI.ConfDir, r.cfg.CNI.BinDirs)
	}
	for key := range applied {
		klog.InfoS("Config key reloaded", "key", key)
	}
	klog.InfoS("Reloaded the config", "changed", len(changed), "applied", len(applied))
}

func (r *reloader) applyVerbosity(v int) error {
	if r.setVerbosity == nil {
		return errors.New("-v given on the command line wins")
	}
	if err := r.setVerbosity(v); err != nil {
		return err
	}
	r.cfg.LogVerbosity = v
	return nil
}

func anyPrefix(keys map[string]bool, prefix string) bool {
	for k := range keys {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
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
