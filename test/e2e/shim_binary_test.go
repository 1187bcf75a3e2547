//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// TestShimBinary checks that a pod's shim runs from cri-runtimed-shim, the
// small binary installed beside the daemon, not from the daemon's own
// (which would cost each pod the daemon's package initialisation). The
// shim runs from a sealed in-memory copy, so its executable is compared
// by size.
func TestShimBinary(t *testing.T) {
	_, d := podEnv(t)
	pod := d.RunPod(t, framework.PodConfig("shimbin"))
	bin, err := framework.DaemonBinary()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.Stat(filepath.Join(filepath.Dir(bin), "cri-runtimed-shim"))
	if err != nil {
		t.Fatalf("the shim binary beside the daemon: %v (make build builds it)", err)
	}
	daemon, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.Stat(filepath.Join("/proc", strconv.Itoa(d.ShimPid(t, pod)), "exe"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Size() != want.Size() {
		t.Errorf("the shim's executable has %d bytes, want cri-runtimed-shim's %d (the daemon's binary has %d)", got.Size(), want.Size(), daemon.Size())
	}
}
