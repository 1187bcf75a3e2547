package kubeletnode

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The lock excludes a second holder (in this process or the flock(1) of
// test/cluster/run.sh), names the first in the second's error, and is
// free again after Unlock.
func TestHostLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "kubelet-host.lock")
	first, err := lockFile(context.Background(), path, "first test")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	second, err := lockFile(ctx, path, "second test")
	if err == nil {
		second.Unlock()
		t.Fatal("a second LockHost succeeded while the first holds the lock")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "first test pid") {
		t.Errorf("second LockHost: %v; want a deadline error naming the first holder", err)
	}
	if _, err := exec.LookPath("flock"); err == nil {
		if err := exec.Command("flock", "-n", path, "true").Run(); err == nil {
			t.Error("flock(1) took the lock while LockHost holds it (run.sh would start a cluster)")
		}
	}

	if err := first.Unlock(); err != nil {
		t.Fatal(err)
	}
	again, err := lockFile(context.Background(), path, "third test")
	if err != nil {
		t.Fatalf("LockHost after Unlock: %v", err)
	}
	if err := again.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("flock", "-n", path, "true").Run(); err != nil {
		if _, lerr := exec.LookPath("flock"); lerr == nil {
			t.Errorf("flock(1) cannot take the lock after Unlock: %v", err)
		}
	}
}
