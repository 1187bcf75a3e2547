//go:build e2e

package e2e

import (
	"context"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// TestRuntimeConfig: kubelet learns the cgroup driver from the runtime;
// with the default config it is systemd exactly when systemd runs the node
// (framework.CgroupDriver, unless the suite chose one).
func TestRuntimeConfig(t *testing.T) {
	d := framework.NewDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), framework.CallTimeout)
	defer cancel()
	resp, err := d.RuntimeClient().RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := runtimeapi.CgroupDriver_CGROUPFS
	if framework.CgroupDriver() == cgroups.SystemdName {
		want = runtimeapi.CgroupDriver_SYSTEMD
	}
	if got := resp.GetLinux().GetCgroupDriver(); got != want {
		t.Fatalf("cgroup driver %v, want %v", got, want)
	}
}

// TestSnapshotterInUse: the daemon runs the snapshotter it was configured
// with. overlayfs falls back to native where overlay cannot mount; on a
// machine where it can (every machine but those declaring
// CRI_RUNTIMED_TEST_NO_OVERLAY), a fallback is a failure, not a silent
// downgrade that every other test would then run on.
func TestSnapshotterInUse(t *testing.T) {
	for _, name := range []string{"overlayfs", "native"} {
		t.Run(name, func(t *testing.T) {
			d := framework.NewDaemon(t, framework.WithConfig("image.snapshotter", name))
			if got, want := d.Snapshotter(t), framework.WantSnapshotter(name); got != want {
				t.Fatalf("configured %s, the daemon uses %s, want %s", name, got, want)
			}
		})
	}
}
