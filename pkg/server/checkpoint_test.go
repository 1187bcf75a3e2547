package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/checkpoint"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
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

// TestCheckpointTimeout: CheckpointContainer's timeout (seconds) bounds
// the dump, and so does the caller's deadline for CheckpointPod (which
// has no timeout field); either way the answer is DeadlineExceeded,
// nothing is left at the location, and a pod's containers are thawed.
func TestCheckpointTimeout(t *testing.T) {
	st := newStack(t)
	st.s.criu = checkpoint.Availability{Usable: true}
	ctx := context.Background()
	pod := st.runPod("p")
	ids := []string{st.createCtr(pod, "a", 0), st.createCtr(pod, "b", 0)}
	for _, id := range ids {
		if _, err := st.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
	}
	type seen struct {
		timeout  time.Duration
		deadline time.Duration // from the request's start
	}
	got := make(chan seen, 4)
	var start time.Time
	st.shimOf(pod).CheckpointFunc = func(ctx context.Context, req shim.CheckpointRequest) error {
		dl, ok := ctx.Deadline()
		if !ok {
			t.Errorf("checkpoint of %s reached the shim without a deadline", req.ID)
		}
		got <- seen{req.Timeout, dl.Sub(start)}
		<-ctx.Done() // a dump that would never end
		return ctx.Err()
	}

	dir := t.TempDir()
	loc := filepath.Join(dir, "a.tar")
	start = time.Now()
	_, err := st.s.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: ids[0], Location: loc, Timeout: 1})
	wantCode(t, "CheckpointContainer past its timeout", err, codes.DeadlineExceeded)
	if s := <-got; s.timeout != time.Second || s.deadline > 2*time.Second {
		t.Errorf("the shim was asked for a checkpoint within %v, its deadline %v after the request: want the request's 1s", s.timeout, s.deadline)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("a timed out checkpoint left %v in the location's directory", left)
	}

	out := t.TempDir()
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start = time.Now()
	_, err = st.s.CheckpointPod(cctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: out, ContainerIds: ids})
	wantCode(t, "CheckpointPod past the caller's deadline", err, codes.DeadlineExceeded)
	if s := <-got; s.deadline > 2*time.Second {
		t.Errorf("CheckpointPod: the shim's deadline is %v after the request, past the caller's 1s", s.deadline)
	}
	if left, _ := os.ReadDir(out); len(left) != 0 {
		t.Errorf("a timed out pod checkpoint left %v in output_path", left)
	}
	calls := strings.Join(st.shimOf(pod).Calls(), "\n")
	for _, id := range ids {
		if strings.Count(calls, "Pause "+id) != strings.Count(calls, "Resume "+id) {
			t.Errorf("container %s was frozen and not thawed after the timed out pod checkpoint; calls:\n%s", id, calls)
		}
	}
	for _, id := range ids {
		if s := st.ctrState(id).GetState(); s != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("after the timed out checkpoints container %s is %v", id, s)
		}
	}
}

// TestCheckpointTerminal: a container with a terminal is refused with
// FailedPrecondition saying so, alone or in a pod.
func TestCheckpointTerminal(t *testing.T) {
	st := newStack(t)
	st.s.criu = checkpoint.Availability{Usable: true}
	ctx := context.Background()
	pod := st.runPod("p")
	cfg := ctrCfg("tty", 0)
	cfg.Tty = true
	resp, err := st.s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg("p")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		t.Fatal(err)
	}
	_, err = st.s.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: resp.ContainerId, Location: filepath.Join(t.TempDir(), "x.tar")})
	wantCode(t, "CheckpointContainer with a tty", err, codes.FailedPrecondition)
	if err == nil || !strings.Contains(err.Error(), "terminal") {
		t.Errorf("CheckpointContainer with a tty: %v, want it to name the terminal", err)
	}
	_, err = st.s.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: t.TempDir(), ContainerIds: []string{resp.ContainerId}})
	wantCode(t, "CheckpointPod with a tty", err, codes.FailedPrecondition)
}
