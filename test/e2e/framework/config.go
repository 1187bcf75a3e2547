//go:build e2e

package framework

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"
)

// Config is the daemon's TOML config as nested maps, so tests can set any
// key, including ones this framework does not know about yet.
type Config map[string]any

// EnvHandler makes the runtime handler it names ("crun") the default of
// every test daemon, so that the pod tests run on that OCI runtime.
const EnvHandler = "CRI_RUNTIMED_E2E_HANDLER"

// DefaultConfig is the config every test daemon starts from: all state
// under dir, and the cgroup driver EnvCgroupDriver and the default runtime
// handler EnvHandler name (else the daemon's defaults).
func DefaultConfig(dir string) Config {
	c := Config{
		"root":  filepath.Join(dir, "root"),
		"state": filepath.Join(dir, "state"),
		"grpc": map[string]any{
			"address": filepath.Join(dir, "state", "cri-runtimed.sock"),
		},
		// Never the host's /etc/cni/net.d: pods get a network only from
		// a test network (NewTestNetwork).
		"cni": map[string]any{
			"conf_dir": filepath.Join(dir, "net.d"),
		},
		// Never the host's NRI socket and plugins: each daemon gets its
		// own, and tests that want plugins put them there.
		"nri": map[string]any{
			"socket_path":        filepath.Join(dir, "nri", "nri.sock"),
			"plugin_path":        filepath.Join(dir, "nri", "plugins"),
			"plugin_config_path": filepath.Join(dir, "nri", "conf.d"),
		},
		"image": map[string]any{
			"snapshotter":              "overlayfs",
			"registry_config_path":     filepath.Join(dir, "certs.d"),
			"max_concurrent_downloads": 3,
			"pull_progress_timeout":    "5m",
		},
	}
	// A slow machine (EnvSlow) gets CNI plugins the same leeway as the
	// tests: the bridge plugin took over the default minute under TCG.
	if t := Slow(time.Minute); t > time.Minute {
		c.Set("cni.plugin_timeout", t.String())
	}
	if d := os.Getenv(EnvCgroupDriver); d != "" {
		c.Set("runtime.cgroup_driver", d)
	}
	if h := os.Getenv(EnvHandler); h != "" {
		c.Set("runtime.default_handler", h)
	}
	return c
}

// Set assigns a dotted key ("image.snapshotter"), creating tables on the
// way.
func (c Config) Set(key string, value any) {
	parts := strings.Split(key, ".")
	m := map[string]any(c)
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = value
}

// Get reads a dotted key; ok is false if it is not set.
func (c Config) Get(key string) (value any, ok bool) {
	parts := strings.Split(key, ".")
	var cur any = map[string]any(c)
	for _, p := range parts {
		m, isMap := cur.(map[string]any)
		if !isMap {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// String reads a dotted key that holds a string ("" if unset).
func (c Config) String(key string) string {
	v, _ := c.Get(key)
	s, _ := v.(string)
	return s
}

// WriteConfig writes DefaultConfig(dir) with overrides applied (dotted
// key -> value) to path. It is the one place the daemon's config file is
// produced, so a test needing a new key passes it here.
func WriteConfig(path, dir string, overrides map[string]any) (Config, error) {
	cfg := DefaultConfig(dir)
	for k, v := range overrides {
		cfg.Set(k, v)
	}
	data, err := toml.Marshal(map[string]any(cfg))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return nil, err
	}
	return cfg, nil
}
