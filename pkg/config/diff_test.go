package config

import (
	"slices"
	"testing"
	"time"
)

func TestChanged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"nothing", func(*Config) {}, nil},
		{"scalars", func(c *Config) {
			c.Root = "/x"
			c.Image.MaxConcurrentDownloads = 9
			c.Image.PullProgressTimeout = Duration(time.Second)
		}, []string{"image.max_concurrent_downloads", "image.pull_progress_timeout", "root"}},
		{"list", func(c *Config) { c.CNI.BinDirs = []string{"/a"} }, []string{"cni.bin_dirs"}},
		{"handler added", func(c *Config) { c.Runtime.Handlers["kata"] = Handler{Binary: "kata"} }, []string{"runtime.handlers.kata.binary"}},
		{"handler changed", func(c *Config) { c.Runtime.Handlers["crun"] = Handler{Binary: "/opt/crun"} }, []string{"runtime.handlers.crun.binary"}},
		{"handler removed", func(c *Config) { delete(c.Runtime.Handlers, "crun") }, []string{"runtime.handlers.crun.binary"}},
		{"metrics", func(c *Config) { c.Metrics.Address = "127.0.0.1:1" }, []string{"metrics.address"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := Default(), Default()
			tc.change(b)
			got, err := Changed(a, b)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Changed = %v, want %v", got, tc.want)
			}
		})
	}
}
