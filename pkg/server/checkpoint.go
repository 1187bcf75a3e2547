package server

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/checkpoint"
	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// CheckpointContainer checkpoints a running container into the archive
// kubelet names, leaving it running. Requests are checked in the order a
// caller can act on: the container must exist (NotFound), run
// (FailedPrecondition), and CRIU must work on this node
// (FailedPrecondition naming CRIU's reason).
func (s *Server) CheckpointContainer(ctx context.Context, req *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	if req.GetLocation() == "" {
		return nil, fmt.Errorf("%w: location is empty", errInvalid)
	}
	if req.GetTimeout() < 0 {
		return nil, fmt.Errorf("%w: timeout %d is negative", errInvalid, req.GetTimeout())
	}
	ctr, err := s.ctrs.Get(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if ctr.State() != meta.ContainerRunning {
		return nil, fmt.Errorf("checkpoint container %s: %w (%s)", ctr.ID(), container.ErrNotRunning, ctr.State())
	}
	if ctr.Config().GetTty() {
		return nil, fmt.Errorf("checkpoint container %s: %w", ctr.ID(), checkpoint.ErrTerminal)
	}
	if err := s.criu.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint container %s: %w", ctr.ID(), err)
	}
	if !filepath.IsAbs(req.GetLocation()) {
		return nil, fmt.Errorf("%w: location %q is not absolute", errInvalid, req.GetLocation())
	}
	if _, err := s.ctrs.Checkpoint(ctx, ctr.ID(), req.GetLocation(), time.Duration(req.GetTimeout())*time.Second); err != nil {
		return nil, err
	}
	return &runtimeapi.CheckpointContainerResponse{}, nil
}

// CheckpointPod checkpoints the listed running containers of a pod
// together into output_path.
func (s *Server) CheckpointPod(ctx context.Context, req *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	if err := validateCheckpointPod(req); err != nil {
		return nil, err
	}
	pod, err := s.pods.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if !pod.Ready() {
		return nil, fmt.Errorf("checkpoint pod %s: %w", pod.ID(), podsandbox.ErrNotReady)
	}
	for _, id := range req.GetContainerIds() {
		ctr, err := s.ctrs.Get(id)
		if err != nil {
			return nil, err
		}
		if ctr.Record().SandboxID != pod.ID() {
			return nil, fmt.Errorf("%w: container %s is not in pod %s", errInvalid, ctr.ID(), pod.ID())
		}
		if ctr.State() != meta.ContainerRunning {
			return nil, fmt.Errorf("checkpoint pod %s: container %s: %w (%s)", pod.ID(), ctr.ID(), container.ErrNotRunning, ctr.State())
		}
		if ctr.Config().GetTty() {
			return nil, fmt.Errorf("checkpoint pod %s: container %s: %w", pod.ID(), ctr.ID(), checkpoint.ErrTerminal)
		}
	}
	if err := s.criu.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint pod %s: %w", pod.ID(), err)
	}
	if err := s.checkpointPod(ctx, pod, req); err != nil {
		return nil, err
	}
	return &runtimeapi.CheckpointPodResponse{}, nil
}

func validateCheckpointPod(req *runtimeapi.CheckpointPodRequest) error {
	if !filepath.IsAbs(req.GetOutputPath()) {
		return fmt.Errorf("%w: output_path %q is not absolute", errInvalid, req.GetOutputPath())
	}
	if len(req.GetContainerIds()) == 0 {
		return fmt.Errorf("%w: container_ids is empty", errInvalid)
	}
	seen := map[string]bool{}
	for _, id := range req.GetContainerIds() {
		if seen[id] {
			return fmt.Errorf("%w: container %s listed twice", errInvalid, id)
		}
		seen[id] = true
	}
	return noOptions(req.GetOptions())
}

// noOptions refuses every runtime-specific option: this runtime defines
// none, and the CRI says unknown keys must fail rather than be ignored.
func noOptions(opts map[string]string) error {
	for k := range opts {
		return fmt.Errorf("%w: unknown option %q (cri-runtimed defines no checkpoint options)", errInvalid, k)
	}
	return nil
}

// RestorePod creates a pod and its containers, in CREATED state, from a
// pod checkpoint; StartContainer then restores each process.
func (s *Server) RestorePod(ctx context.Context, req *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	if !filepath.IsAbs(req.GetCheckpointPath()) {
		return nil, fmt.Errorf("%w: checkpoint_path %q is not absolute", errInvalid, req.GetCheckpointPath())
	}
	if req.GetConfig() == nil {
		return nil, fmt.Errorf("%w: config is missing", errInvalid)
	}
	if len(req.GetContainerConfigs()) == 0 {
		return nil, fmt.Errorf("%w: container_configs is empty", errInvalid)
	}
	if err := noOptions(req.GetOptions()); err != nil {
		return nil, err
	}
	if err := s.criu.Err(); err != nil {
		return nil, fmt.Errorf("restore pod from %s: %w", req.GetCheckpointPath(), err)
	}
	return s.restorePod(ctx, req)
}
