//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// TestCheck: `cri-runtimed check` passes on this machine with the test
// daemons' config, one line per need, and fails naming the need when
// the default runtime is missing, or when the config is invalid; `--config`
// may follow the command.
func TestCheck(t *testing.T) {
	framework.RequireRoot(t)
	dir := t.TempDir()
	write := func(overrides map[string]any) string {
		path := filepath.Join(dir, "config.toml")
		if _, err := framework.WriteConfig(path, dir, overrides); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ctx := testCtx(t)

	out, code, err := framework.RunCLI(ctx, "--config", write(nil), "check")
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Fatalf("check exit %d on a node that runs every e2e test:\n%s", code, out)
	}
	for _, need := range []string{"directories", "disk space", "openat2", "overlay", "pidfd", "pause", "user namespaces", "cgroups", "runtime runc", "cni", "hosts.toml", "nri", "criu"} {
		if !strings.Contains(out, "  "+need+" ") {
			t.Errorf("no line for %q:\n%s", need, out)
		}
	}
	// The test conf dir is empty: a warning, not a failure.
	if !strings.Contains(out, "WARN  cni") {
		t.Errorf("an empty CNI conf dir is not a warning:\n%s", out)
	}

	out, code, _ = framework.RunCLI(ctx, "--config", write(map[string]any{"runtime.handlers.runc.binary": "/nonexistent/runc"}), "check")
	if code != 1 || !strings.Contains(out, "FAIL  runtime runc") || !strings.Contains(out, "/nonexistent/runc not found") {
		t.Errorf("check with a missing default runtime: exit %d:\n%s", code, out)
	}

	certs := filepath.Join(dir, "certs.d", "bad.example")
	if err := os.MkdirAll(certs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, "hosts.toml"), []byte("server = [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Flags also after the command, as operators type them.
	out, _, _ = framework.RunCLI(ctx, "check", "--config", write(nil))
	if !strings.Contains(out, "WARN  hosts.toml") || !strings.Contains(out, "bad.example") {
		t.Errorf("a broken hosts.toml is not reported:\n%s", out)
	}

	out, code, _ = framework.RunCLI(ctx, "--config", write(map[string]any{"image.snapshotter": "zfs"}), "check")
	if code != 1 || !strings.Contains(out, "FAIL  config") || !strings.Contains(out, "image.snapshotter") {
		t.Errorf("check with an invalid config: exit %d:\n%s", code, out)
	}
}
