package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultRoundTrip(t *testing.T) {
	def := Default()
	data, err := def.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"root", "state", "address", "snapshotter", "registry_config_path", "max_concurrent_downloads", "pull_progress_timeout = '5m0s'", "[nri]", "socket_path = '/var/run/nri/nri.sock'", "plugin_request_timeout = '2s'", "[nri.default_validator]", "reject_oci_hook_adjustment = false"} {
		if !strings.Contains(string(data), key) {
			t.Errorf("default config lacks %q:\n%s", key, data)
		}
	}
	got := &Config{}
	if err := Decode(data, got); err != nil {
		t.Fatalf("decode default: %v", err)
	}
	if !reflect.DeepEqual(got, def) {
		t.Fatalf("round trip changed config:\n%+v\n%+v", got, def)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		body     string
		explicit bool
		missing  bool
		wantErr  string
		check    func(*Config) bool
	}{
		{name: "override", body: "root = \"/x\"\n[image]\nmax_concurrent_downloads = 7\npull_progress_timeout = \"30s\"\n",
			check: func(c *Config) bool {
				return c.Root == "/x" && c.Image.MaxConcurrentDownloads == 7 && time.Duration(c.Image.PullProgressTimeout) == 30*time.Second && c.State == "/run/cri-runtimed"
			}},
		{name: "unknown key", body: "[image]\nsnapshoter = \"overlayfs\"\n", wantErr: "snapshoter"},
		{name: "bad snapshotter", body: "[image]\nsnapshotter = \"zfs\"\n", wantErr: "image.snapshotter"},
		{name: "relative root", body: "root = \"var\"\n", wantErr: "root"},
		{name: "bad duration", body: "[image]\npull_progress_timeout = \"soon\"\n", wantErr: "line 2"},
		{name: "bad mode", body: "[grpc]\nmode = \"rw\"\n", wantErr: "grpc.mode"},
		{name: "negative uncompressed size", body: "[image]\nmax_uncompressed_size = -1\n", wantErr: "image.max_uncompressed_size"},
		{name: "no uncompressed size limit", body: "[image]\nmax_uncompressed_size = 0\n", check: func(c *Config) bool { return c.Image.MaxUncompressedSize == 0 }},
		{name: "metrics on", body: "[metrics]\naddress = \"127.0.0.1:9101\"\n", check: func(c *Config) bool { return c.Metrics.Address == "127.0.0.1:9101" }},
		{name: "bad metrics address", body: "[metrics]\naddress = \"9101\"\n", wantErr: "metrics.address"},
		{name: "tracing on", body: "[tracing]\nendpoint = \"127.0.0.1:4317\"\ninsecure = true\n", check: func(c *Config) bool {
			return c.Tracing.Endpoint == "127.0.0.1:4317" && c.Tracing.Insecure && c.Tracing.SamplingRatio == 1
		}},
		{name: "bad sampling ratio", body: "[tracing]\nsampling_ratio = 2.0\n", wantErr: "tracing.sampling_ratio"},
		{name: "syntax", body: "root = \n", wantErr: "line 1"},
		{name: "nri defaults", body: "", check: func(c *Config) bool {
			n := c.NRI
			return !n.Disable && !n.DisableConnections && n.SocketPath == "/var/run/nri/nri.sock" && n.PluginPath == "/opt/nri/plugins" &&
				n.PluginConfigPath == "/etc/nri/conf.d" && time.Duration(n.PluginRegistrationTimeout) == 5*time.Second &&
				time.Duration(n.PluginRequestTimeout) == 2*time.Second && !n.DefaultValidator.Enable
		}},
		{name: "nri validator", body: "[nri.default_validator]\nenable = true\nreject_oci_hook_adjustment = true\nrequired_plugins = [\"a\", \"b\"]\n",
			check: func(c *Config) bool {
				v := c.NRI.DefaultValidator
				return v.Enable && v.RejectOCIHookAdjustment && !v.RejectSysctlAdjustment && reflect.DeepEqual(v.RequiredPlugins, []string{"a", "b"})
			}},
		{name: "nri relative socket", body: "[nri]\nsocket_path = \"nri.sock\"\n", wantErr: "nri.socket_path"},
		{name: "nri zero timeout", body: "[nri]\nplugin_request_timeout = \"0s\"\n", wantErr: "nri.plugin_request_timeout"},
		{name: "nri disabled skips checks", body: "[nri]\ndisable = true\nsocket_path = \"\"\n", check: func(c *Config) bool { return c.NRI.Disable }},
		{name: "bad cgroup driver", body: "[runtime]\ncgroup_driver = \"cgroupv2\"\n", wantErr: "runtime.cgroup_driver"},
		{name: "slice for cgroupfs", body: "[runtime]\ncgroup_driver = \"cgroupfs\"\ndefault_cgroup_parent = \"pods.slice\"\n", wantErr: "runtime.default_cgroup_parent"},
		{name: "path for systemd", body: "[runtime]\ncgroup_driver = \"systemd\"\ndefault_cgroup_parent = \"/pods\"\n", wantErr: "runtime.default_cgroup_parent"},
		{name: "slice for systemd", body: "[runtime]\ncgroup_driver = \"systemd\"\ndefault_cgroup_parent = \"pods.slice\"\n",
			check: func(c *Config) bool { return c.Runtime.DefaultCgroupParent == "pods.slice" }},
		{name: "missing default path", missing: true, check: func(c *Config) bool { return c.Root == "/var/lib/cri-runtimed" }},
		{name: "missing explicit", missing: true, explicit: true, wantErr: "read config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "absent.toml")
			if !tc.missing {
				path = write(strings.ReplaceAll(tc.name, " ", "_")+".toml", tc.body)
			}
			cfg, err := Load(path, tc.explicit)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(cfg) {
				t.Fatalf("unexpected config %+v", cfg)
			}
		})
	}
}
