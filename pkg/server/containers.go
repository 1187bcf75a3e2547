package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// CreateContainer creates a container in a ready pod.
func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("%w: pod_sandbox_id is empty", errInvalid)
	}
	pod, err := s.pods.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	// A checkpoint as the image (crictl create with the archive, as with
	// CRI-O and containerd, or a checkpoint image) restores it, if CRIU
	// works here.
	id, err := s.ctrs.Create(ctx, pod, req.GetConfig(), container.IfRestorable(s.criu.Err))
	if err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

// StartContainer starts a created container.
func (s *Server) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	if err := s.ctrs.Start(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.StartContainerResponse{}, nil
}

// StopContainer stops a container; unknown containers succeed, as kubelet
// retries stops of containers already gone.
func (s *Server) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	if req.GetTimeout() < 0 {
		return nil, fmt.Errorf("%w: timeout %d is negative", errInvalid, req.GetTimeout())
	}
	err := s.ctrs.Stop(ctx, req.GetContainerId(), req.GetTimeout())
	if err != nil && !errors.Is(err, container.ErrNotFound) {
		return nil, err
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

// RemoveContainer removes a container; unknown containers succeed.
func (s *Server) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	err := s.ctrs.Remove(ctx, req.GetContainerId())
	if err != nil && !errors.Is(err, container.ErrNotFound) {
		return nil, err
	}
	s.wire.forgetContainer(req.GetContainerId())
	return &runtimeapi.RemoveContainerResponse{}, nil
}

// ListContainers lists containers matching the filter.
func (s *Server) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return &runtimeapi.ListContainersResponse{Containers: s.listContainers(req.GetFilter())}, nil
}

// StreamContainers streams the same list in batches.
func (s *Server) StreamContainers(req *runtimeapi.StreamContainersRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainersResponse]) error {
	items := s.listContainers(req.GetFilter())
	return sendBatches(items, streamBatch, func(batch []*runtimeapi.Container) error {
		return stream.Send(&runtimeapi.StreamContainersResponse{Containers: batch})
	})
}

func (s *Server) listContainers(f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	ctrs := s.filterContainers(f)
	out := make([]*runtimeapi.Container, 0, len(ctrs))
	for _, ctr := range ctrs {
		out = append(out, s.wire.container(ctr))
	}
	if f.GetId() == "" && f.GetPodSandboxId() == "" && f.GetState() == nil && len(f.GetLabelSelector()) == 0 {
		s.wire.retainContainers(ctrs)
	}
	return out
}

// filterContainers returns the containers the filter selects, oldest
// first.
func (s *Server) filterContainers(f *runtimeapi.ContainerFilter) []*container.Container {
	var ctrs []*container.Container
	podID := ""
	if f.GetPodSandboxId() != "" {
		pod, err := s.pods.Get(f.GetPodSandboxId())
		if err != nil {
			return nil
		}
		podID = pod.ID()
	}
	switch {
	case f.GetId() != "":
		if ctr, err := s.ctrs.Get(f.GetId()); err == nil {
			ctrs = []*container.Container{ctr}
		}
	case podID != "":
		ctrs = s.ctrs.ListByPod(podID)
	default:
		ctrs = s.ctrs.List()
	}
	out := ctrs[:0]
	for _, ctr := range ctrs {
		if podID != "" && ctr.Pod().ID() != podID {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != containerState(ctr.State()) {
			continue
		}
		if !labelsMatch(ctr.Config().GetLabels(), f.GetLabelSelector()) {
			continue
		}
		out = append(out, ctr)
	}
	return out
}

func imageSpec(rec meta.Container, cfg *runtimeapi.ContainerConfig) *runtimeapi.ImageSpec {
	return &runtimeapi.ImageSpec{
		Image:              rec.ImageID,
		Annotations:        cfg.GetImage().GetAnnotations(),
		UserSpecifiedImage: cfg.GetImage().GetUserSpecifiedImage(),
		RuntimeHandler:     cfg.GetImage().GetRuntimeHandler(),
	}
}

func containerState(s meta.ContainerState) runtimeapi.ContainerState {
	switch s {
	case meta.ContainerCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case meta.ContainerRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case meta.ContainerExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// ContainerStatus reports one container.
func (s *Server) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	ctr, err := s.ctrs.Get(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: s.wire.status(ctr)}
	if req.GetVerbose() {
		rec := ctr.Record()
		info := struct {
			Pid         int                         `json:"pid"`
			SandboxID   string                      `json:"sandboxID"`
			SnapshotKey string                      `json:"snapshotKey"`
			State       meta.ContainerState         `json:"state"`
			Config      *runtimeapi.ContainerConfig `json:"config"`
			RuntimeSpec any                         `json:"runtimeSpec,omitempty"`
		}{Pid: rec.Pid, SandboxID: rec.SandboxID, SnapshotKey: rec.SnapshotKey, State: rec.State, Config: ctr.Config(), RuntimeSpec: ctr.Spec()}
		b, err := json.Marshal(info)
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

func containerStatus(ctr *container.Container, rec meta.Container, cfg *runtimeapi.ContainerConfig, user *specs.User) *runtimeapi.ContainerStatus {
	st := &runtimeapi.ContainerStatus{
		Id:          rec.ID,
		Metadata:    cfg.GetMetadata(),
		State:       containerState(rec.State),
		CreatedAt:   unixNano(rec.CreatedAt),
		StartedAt:   unixNano(rec.StartedAt),
		FinishedAt:  unixNano(rec.FinishedAt),
		ExitCode:    rec.ExitCode,
		Image:       imageSpec(rec, cfg),
		ImageRef:    rec.ImageRef,
		ImageId:     rec.ImageID,
		Reason:      rec.Reason,
		Message:     rec.Message,
		Labels:      cfg.GetLabels(),
		Annotations: cfg.GetAnnotations(),
		Mounts:      cfg.GetMounts(),
		LogPath:     rec.LogPath,
		StopSignal:  ctr.StopSignal(),
	}
	if u := user; u != nil {
		st.User = &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{Uid: int64(u.UID), Gid: int64(u.GID)}}
		for _, g := range u.AdditionalGids {
			st.User.Linux.SupplementalGroups = append(st.User.Linux.SupplementalGroups, int64(g))
		}
	}
	if r := cfg.GetLinux().GetResources(); r != nil {
		st.Resources = &runtimeapi.ContainerResources{Linux: r}
	}
	return st
}

// ReopenContainerLog makes the shim reopen the log after kubelet rotated it.
func (s *Server) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	if err := s.ctrs.ReopenLog(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}

// ExecSync runs a command to completion in a running container.
func (s *Server) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if req.GetTimeout() < 0 {
		return nil, fmt.Errorf("%w: timeout %d is negative", errInvalid, req.GetTimeout())
	}
	res, err := s.ctrs.ExecSync(ctx, req.GetContainerId(), req.GetCmd(), time.Duration(req.GetTimeout())*time.Second)
	if err != nil {
		return nil, err
	}
	stdout, stderr := fitOutput(res.Stdout, res.Stderr, s.cfg.GRPC.MaxSendMessageSize-execSyncOverhead)
	if len(stdout) < len(res.Stdout) || len(stderr) < len(res.Stderr) {
		klog.V(2).InfoS("ExecSync output truncated to fit one gRPC message", "container", req.GetContainerId(),
			"stdout", len(res.Stdout), "stderr", len(res.Stderr), "sent", len(stdout)+len(stderr))
	}
	return &runtimeapi.ExecSyncResponse{Stdout: stdout, Stderr: stderr, ExitCode: res.ExitCode}, nil
}

// execSyncOverhead is what an ExecSyncResponse costs beyond its output
// bytes (field tags, length varints, exit code), with room to spare.
const execSyncOverhead = 1024

// fitOutput truncates stdout and stderr so that together they hold at
// most limit bytes: each stream is capped on its own (max_exec_sync_output)
// but both at their cap exceed the gRPC send limit, and a response that
// does not fit fails the whole call instead of returning its start. A
// stream shorter than half the limit is kept whole; the other gets the
// rest.
func fitOutput(stdout, stderr []byte, limit int) ([]byte, []byte) {
	so, se := len(stdout), len(stderr)
	if so+se <= limit {
		return stdout, stderr
	}
	half := limit / 2
	switch {
	case so <= half:
		se = limit - so
	case se <= half:
		so = limit - se
	default:
		so, se = half, limit-half
	}
	return stdout[:so], stderr[:se]
}

// UpdateContainerResources changes a running container's limits live.
func (s *Server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	if req.GetLinux() == nil {
		return nil, fmt.Errorf("%w: linux resources are empty", errInvalid)
	}
	if err := s.ctrs.UpdateResources(ctx, req.GetContainerId(), req.GetLinux()); err != nil {
		return nil, err
	}
	// Stats keep the limits they read until told (or a TTL).
	if ctr, err := s.ctrs.Get(req.GetContainerId()); err == nil {
		s.stats.RefreshLimits(ctr.ID())
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}
