package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// BinaryName is the shim's own executable, installed beside the daemon's
// (cmd/cri-runtimed-shim).
const BinaryName = "cri-runtimed-shim"

// versionTimeout bounds the `version` call that checks a shim binary.
const versionTimeout = 10 * time.Second

// VersionLine is what `cri-runtimed-shim version` prints; the daemon
// compares it with its own to start shims only from its own build.
func VersionLine(version, revision string) string {
	return fmt.Sprintf("cri-runtimed-shim %s (revision %s)", version, revision)
}

// FindBinary returns the shim executable installed beside daemonExe if it
// reports the daemon's build (want is VersionLine of the daemon's version).
// A shim of another build could speak another protocol or keep state in
// another layout, so it is refused rather than used.
func FindBinary(ctx context.Context, daemonExe, want string) (string, error) {
	path := filepath.Join(filepath.Dir(daemonExe), BinaryName)
	if _, err := os.Stat(path); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "version").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("%s version: %w", path, err)
	}
	if got := strings.TrimSpace(string(out)); got != want {
		return "", fmt.Errorf("%s is another build: %q, the daemon is %q", path, got, want)
	}
	return path, nil
}
