package server

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/checkpoint"
)

// TestCheckpointRefusals: what the checkpoint RPCs answer before any
// CRIU runs, in the order a caller can act on.
func TestCheckpointRefusals(t *testing.T) {
	st := newStack(t)
	st.s.criu = checkpoint.Availability{Reason: "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds"}
	ctx := context.Background()
	pod := st.runPod("p")
	running := st.createCtr(pod, "a", 0)
	if _, err := st.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: running}); err != nil {
		t.Fatal(err)
	}
	created := st.createCtr(pod, "b", 0)

	ckpt := func(id, loc string) error {
		_, err := st.s.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: loc})
		return err
	}
	wantCode(t, "unknown container", ckpt("feedface", "/tmp/x.tar"), codes.NotFound)
	wantCode(t, "no location", ckpt(running, ""), codes.InvalidArgument)
	err := ckpt(created, "/tmp/x.tar")
	wantCode(t, "container not running", err, codes.FailedPrecondition)
	if err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("checkpoint of a created container: %v, want it to say not running", err)
	}
	err = ckpt(running, "/tmp/x.tar")
	wantCode(t, "CRIU unusable", err, codes.FailedPrecondition)
	if err == nil || !strings.Contains(err.Error(), "Unexpected rt vDSO area bounds") {
		t.Errorf("CRIU unusable: %v does not name CRIU's reason", err)
	}

	cpod := func(req *runtimeapi.CheckpointPodRequest) error {
		_, err := st.s.CheckpointPod(ctx, req)
		return err
	}
	wantCode(t, "relative output", cpod(&runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: "out", ContainerIds: []string{running}}), codes.InvalidArgument)
	wantCode(t, "no containers", cpod(&runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: "/out"}), codes.InvalidArgument)
	wantCode(t, "duplicate", cpod(&runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: "/out", ContainerIds: []string{running, running}}), codes.InvalidArgument)
	wantCode(t, "unknown option", cpod(&runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: "/out", ContainerIds: []string{running}, Options: map[string]string{"x": "y"}}), codes.InvalidArgument)
	wantCode(t, "unknown pod", cpod(&runtimeapi.CheckpointPodRequest{PodSandboxId: "feedface", OutputPath: "/out", ContainerIds: []string{running}}), codes.NotFound)
	wantCode(t, "created container", cpod(&runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: "/out", ContainerIds: []string{running, created}}), codes.FailedPrecondition)
	wantCode(t, "pod, CRIU unusable", cpod(&runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: "/out", ContainerIds: []string{running}}), codes.FailedPrecondition)

	_, err = st.s.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: "/out", Config: podCfg("r"), ContainerConfigs: []*runtimeapi.ContainerConfig{ctrCfg("a", 0)}})
	wantCode(t, "restore, CRIU unusable", err, codes.FailedPrecondition)
	_, err = st.s.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: "/out", Config: podCfg("r")})
	wantCode(t, "restore without containers", err, codes.InvalidArgument)
}
