//go:build e2e

package framework_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// These tests run the harness against internal/fakedaemon, so the harness
// is known to work before the real daemon does.

func fakeDaemon(t *testing.T) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fakedaemon")
	out, err := exec.Command("go", "build", "-tags", "e2e", "-o", bin, "./internal/fakedaemon").CombinedOutput()
	if err != nil {
		t.Fatalf("build fakedaemon: %v\n%s", err, out)
	}
	t.Setenv(framework.EnvBinary, bin)
}

func TestDaemonLifecycle(t *testing.T) {
	fakeDaemon(t)
	var dir string
	// Registered first so it runs after the daemon's own cleanup.
	t.Cleanup(func() {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("daemon dir %s not removed: %v", dir, err)
		}
	})
	d := framework.NewDaemon(t)
	t.Run("serves", func(t *testing.T) {
		dir = d.Dir
		if v, err := d.Runtime().Version(t.Context(), ""); err != nil || v.RuntimeName != "fake" {
			t.Fatalf("Version = %v, %v", v, err)
		}
		fs, err := d.Images().ImageFsInfo(t.Context())
		if err != nil || fs.ImageFilesystems[0].FsId.Mountpoint != d.Root {
			t.Fatalf("ImageFsInfo = %v, %v", fs, err)
		}
		if !strings.HasPrefix(d.Socket, d.Dir) || !strings.HasPrefix(d.Root, d.Dir) {
			t.Errorf("paths outside %s: %s %s", d.Dir, d.Socket, d.Root)
		}
	})
	t.Run("restart", func(t *testing.T) {
		pid := d.Pid()
		d.Restart(t)
		if d.Pid() == pid {
			t.Error("same pid after restart")
		}
		if _, err := d.Runtime().Version(t.Context(), ""); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("kill", func(t *testing.T) {
		d.Kill(t)
		if d.ExitCode() != -1 {
			t.Errorf("exit after SIGKILL: %s", d.ExitState())
		}
		d.Start(t)
	})
	t.Run("second instance", func(t *testing.T) {
		second := framework.NewDaemon(t, framework.WithConfig("root", d.Root), framework.WithoutStart())
		second.StartProcess(t)
		if !second.WaitExit(10e9) || second.ExitCode() != 1 || !strings.Contains(second.Log(), "another instance") {
			t.Errorf("second instance: %s\n%s", second.ExitState(), second.Log())
		}
	})
	t.Run("log", func(t *testing.T) {
		if n := strings.Count(d.Log(), "=== e2e: start #"); n != 3 {
			t.Errorf("log has %d start markers, want 3", n)
		}
	})
}

func TestConfigOverrides(t *testing.T) {
	dir := t.TempDir()
	cfg, err := framework.WriteConfig(filepath.Join(dir, "c.toml"), dir, map[string]any{
		"image.snapshotter":              "native",
		"cni.conf_dir":                   "/x",
		"image.max_concurrent_downloads": 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "c.toml"))
	for _, want := range []string{`snapshotter = 'native'`, `[cni]`, `conf_dir = '/x'`, `max_concurrent_downloads = 1`, `address = '` + dir} {
		if !strings.Contains(string(data), want) {
			t.Errorf("config lacks %q:\n%s", want, data)
		}
	}
	if cfg.String("image.registry_config_path") != filepath.Join(dir, "certs.d") {
		t.Errorf("registry_config_path = %q", cfg.String("image.registry_config_path"))
	}
}

func TestHostsTOML(t *testing.T) {
	got := framework.Hosts{Server: "http://127.0.0.1:1", Mirrors: []string{"http://127.0.0.1:2"}}.TOML()
	want := "server = \"http://127.0.0.1:1\"\n\n[host.\"http://127.0.0.1:2\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
	if got != want {
		t.Errorf("hosts.toml =\n%s\nwant\n%s", got, want)
	}
}
