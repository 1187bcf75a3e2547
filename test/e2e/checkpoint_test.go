//go:build e2e

package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// criuInfo is the daemon's verbose Status "checkpoint" entry.
type criuInfo struct {
	Usable bool   `json:"usable"`
	Path   string `json:"criu"`
	Reason string `json:"reason"`
}

func checkpointInfo(t *testing.T, d *framework.Daemon) criuInfo {
	t.Helper()
	resp, err := d.RuntimeClient().Status(testCtx(t), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info criuInfo
	if err := json.Unmarshal([]byte(resp.GetInfo()["checkpoint"]), &info); err != nil {
		t.Fatalf("Status info[checkpoint] = %q: %v", resp.GetInfo()["checkpoint"], err)
	}
	return info
}

// criuCheckError is the first error line `criu check` prints here, or ""
// when it passes or criu is not installed.
func criuCheckError(t *testing.T) string {
	out, err := exec.Command("criu", "check").CombinedOutput()
	if err == nil {
		return ""
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Error") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// TestCheckpoint: CheckpointContainer, CheckpointPod and RestorePod. The
// refusals run everywhere; where CRIU cannot run (this project's
// development machines: Debian's CRIU 3.17 on a 6.18 kernel) the daemon
// must say so with CRIU's words and the test skips the rest once, with
// that reason. The real checkpoints run in the guest (test/guest).
func TestCheckpoint(t *testing.T) {
	_, d := podEnv(t)
	ctx := testCtx(t)
	rc := d.RuntimeClient()
	info := checkpointInfo(t, d)
	if want := criuCheckError(t); info.Usable == (want != "") || !strings.Contains(info.Reason, want) {
		t.Errorf("Status says CRIU usable=%v reason %q; criu check here says %q", info.Usable, info.Reason, want)
	}

	pc := framework.PodConfig("ckpt")
	pod := d.RunPod(t, pc)
	running := d.CreateStarted(t, pod, sleeper("run"), pc)
	created := d.CreateContainer(t, pod, sleeper("created"), pc)
	archive := filepath.Join(t.TempDir(), "ckpt.tar")

	_, err := rc.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: strings.Repeat("f", 64), Location: archive})
	wantCode(t, "CheckpointContainer of an unknown container", err, codes.NotFound)
	_, err = rc.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: created, Location: archive})
	wantCode(t, "CheckpointContainer of a container not running", err, codes.FailedPrecondition, "not running")
	_, err = rc.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: t.TempDir(), ContainerIds: []string{running, created}})
	wantCode(t, "CheckpointPod with a container not running", err, codes.FailedPrecondition, "not running")

	if info.Usable {
		return
	}
	_, err = rc.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: running, Location: archive})
	wantCode(t, "CheckpointContainer without CRIU", err, codes.FailedPrecondition, info.Reason)
	_, err = rc.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: t.TempDir(), ContainerIds: []string{running}})
	wantCode(t, "CheckpointPod without CRIU", err, codes.FailedPrecondition, info.Reason)
	_, err = rc.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: t.TempDir(), Config: framework.PodConfig("restored"),
		ContainerConfigs: []*runtimeapi.ContainerConfig{sleeper("run")}})
	wantCode(t, "RestorePod without CRIU", err, codes.FailedPrecondition, info.Reason)
	t.Skipf("CRIU cannot run on this node, so nothing is checkpointed here (the guest suite does): %s", info.Reason)
}
