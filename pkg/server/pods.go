package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// RunPodSandbox creates and starts a pod sandbox.
func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	id, err := s.pods.Run(ctx, req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// StopPodSandbox kills the pod's containers and its sandbox process.
// Unknown pods succeed: kubelet retries stops of pods already gone.
func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	pod, err := s.pods.Get(req.GetPodSandboxId())
	if errors.Is(err, podsandbox.ErrNotFound) {
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	err = eachContainer(ctx, s.ctrs.ListByPod(pod.ID()), func(ctx context.Context, ctr *container.Container) error {
		if err := s.ctrs.Stop(ctx, ctr.ID(), 0); err != nil && !errors.Is(err, container.ErrNotFound) {
			return fmt.Errorf("stop container %s of pod %s: %w", ctr.ID(), pod.ID(), err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.pods.Stop(ctx, pod.ID()); err != nil {
		return nil, err
	}
	err = eachContainer(ctx, s.ctrs.ListByPod(pod.ID()), func(ctx context.Context, ctr *container.Container) error {
		if err := s.ctrs.Release(ctx, ctr.ID()); err != nil && !errors.Is(err, container.ErrNotFound) {
			return fmt.Errorf("release container %s of pod %s: %w", ctr.ID(), pod.ID(), err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// RemovePodSandbox removes the pod and its containers, stopping them if
// needed. Unknown pods succeed.
func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	pod, err := s.pods.Get(req.GetPodSandboxId())
	if errors.Is(err, podsandbox.ErrNotFound) {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	err = eachContainer(ctx, s.ctrs.ListByPod(pod.ID()), func(ctx context.Context, ctr *container.Container) error {
		if err := s.ctrs.Remove(ctx, ctr.ID()); err != nil && !errors.Is(err, container.ErrNotFound) {
			return fmt.Errorf("remove container %s of pod %s: %w", ctr.ID(), pod.ID(), err)
		}
		s.wire.forgetContainer(ctr.ID())
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.pods.Remove(ctx, pod.ID()); err != nil && !errors.Is(err, podsandbox.ErrNotFound) {
		return nil, err
	}
	s.wire.podAttrs.forget(pod.ID())
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// podParallelism bounds how many of a pod's containers are stopped or
// removed at once. Each container's operations are serialized by its own
// lock and the shim serves concurrent requests, so the pod's containers
// are independent; most of the time goes to runc and fsync, which
// overlap well.
const podParallelism = 8

// eachContainer runs fn on every container, podParallelism at a time, and
// returns the errors of all that failed.
func eachContainer(ctx context.Context, ctrs []*container.Container, fn func(context.Context, *container.Container) error) error {
	if len(ctrs) == 1 {
		return fn(ctx, ctrs[0])
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, podParallelism)
	)
	for _, ctr := range ctrs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, ctr); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// PodSandboxStatus reports one pod.
func (s *Server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	pod, err := s.pods.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	// No timestamp, as containerd 1.6 and CRI-O (without pod events)
	// answer: kubelet's evented PLEG reads a non-zero timestamp as "take
	// the containers from here", and kubelet 1.37's GetPodStatus then
	// leaves the pod's active containers empty, so that it runs completed
	// init containers again (kuberuntime_manager.go GetPodStatus;
	// computeInitContainerActions). Without one, kubelet (1.34–1.37) never
	// reads containers_statuses and lists the containers itself; its
	// evented PLEG takes them from GetContainerEvents. So the pod's
	// containers come along only with verbose (crictl inspectp): encoding
	// and decoding them was most of the call's cost.
	resp := &runtimeapi.PodSandboxStatusResponse{Status: podStatus(pod)}
	if req.GetVerbose() {
		for _, ctr := range s.ctrs.ListByPod(pod.ID()) {
			resp.ContainersStatuses = append(resp.ContainersStatuses, s.wire.status(ctr))
		}
	}
	if req.GetVerbose() {
		rec := pod.Record()
		info := struct {
			Pid            int                          `json:"pid"`
			NetNSPath      string                       `json:"netNamespacePath,omitempty"`
			RuntimeHandler string                       `json:"runtimeHandler"`
			CgroupParent   string                       `json:"cgroupParent"`
			State          meta.SandboxState            `json:"state"`
			Config         *runtimeapi.PodSandboxConfig `json:"config"`
		}{rec.Pid, rec.NetNSPath, rec.RuntimeHandler, rec.CgroupParent, rec.State, pod.Config()}
		b, err := json.Marshal(info)
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

func podStatus(pod *podsandbox.Pod) *runtimeapi.PodSandboxStatus {
	rec := pod.Record()
	cfg := pod.Config()
	st := &runtimeapi.PodSandboxStatus{
		Id:             rec.ID,
		Metadata:       cfg.GetMetadata(),
		State:          podState(pod),
		CreatedAt:      rec.CreatedAt.UnixNano(),
		Network:        &runtimeapi.PodSandboxNetworkStatus{},
		Linux:          &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: namespaceOptions(cfg)}},
		Labels:         cfg.GetLabels(),
		Annotations:    cfg.GetAnnotations(),
		RuntimeHandler: rec.RuntimeHandler,
	}
	if len(rec.IPs) > 0 {
		st.Network.Ip = rec.IPs[0]
		for _, ip := range rec.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return st
}

func podState(pod *podsandbox.Pod) runtimeapi.PodSandboxState {
	if pod.Ready() {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

func namespaceOptions(cfg *runtimeapi.PodSandboxConfig) *runtimeapi.NamespaceOption {
	if o := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(); o != nil {
		return o
	}
	return &runtimeapi.NamespaceOption{}
}

// ListPodSandbox lists pods matching the filter.
func (s *Server) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	return &runtimeapi.ListPodSandboxResponse{Items: s.listPods(req.GetFilter())}, nil
}

// StreamPodSandboxes streams the same list in batches.
func (s *Server) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxesResponse]) error {
	items := s.listPods(req.GetFilter())
	return sendBatches(items, streamBatch, func(batch []*runtimeapi.PodSandbox) error {
		return stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: batch})
	})
}

func (s *Server) listPods(f *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox {
	var pods []*podsandbox.Pod
	if id := f.GetId(); id != "" {
		if pod, err := s.pods.Get(id); err == nil {
			pods = []*podsandbox.Pod{pod}
		}
	} else {
		pods = s.pods.List()
	}
	out := make([]*runtimeapi.PodSandbox, 0, len(pods))
	for _, pod := range pods {
		cfg := pod.Config()
		state := podState(pod)
		if f.GetState() != nil && f.GetState().GetState() != state {
			continue
		}
		if !labelsMatch(cfg.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		rec := pod.Record()
		out = append(out, &runtimeapi.PodSandbox{
			Id:             rec.ID,
			Metadata:       cfg.GetMetadata(),
			State:          state,
			CreatedAt:      rec.CreatedAt.UnixNano(),
			Labels:         cfg.GetLabels(),
			Annotations:    cfg.GetAnnotations(),
			RuntimeHandler: rec.RuntimeHandler,
		})
	}
	return out
}

func labelsMatch(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// UpdatePodSandboxResources applies the pod's new resources and overhead
// to its sandbox's cgroup, sized from them at creation (what VM-based
// handlers size the VM from), and records them. kubelet resizes the pod
// cgroup it made itself.
func (s *Server) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	for field, r := range map[string]*runtimeapi.LinuxContainerResources{"resources": req.GetResources(), "overhead": req.GetOverhead()} {
		if r == nil {
			continue
		}
		if err := oci.ValidateResources(r); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
	}
	if err := s.pods.UpdateResources(ctx, req.GetPodSandboxId(), req.GetResources(), req.GetOverhead()); err != nil {
		return nil, err
	}
	// kubelet has resized the pod cgroup before this call; the pod's
	// stats keep the limits they read until told (or a TTL).
	if pod, err := s.pods.Get(req.GetPodSandboxId()); err == nil {
		s.stats.RefreshLimits(pod.ID())
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}
