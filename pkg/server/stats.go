package server

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox"
	"github.com/cri-runtimed/cri-runtimed/pkg/stats"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// ContainerStats reports one container's resource usage.
func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	ctr, err := s.ctrs.Get(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, _, err := s.containerStats(ctx, ctr, stats.Usage|stats.Swap)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: st}, nil
}

// ListContainerStats reports the usage of the containers the filter selects.
func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	return &runtimeapi.ListContainerStatsResponse{Stats: s.listContainerStats(ctx, req.GetFilter())}, nil
}

// StreamContainerStats streams the same list in batches.
func (s *Server) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainerStatsResponse]) error {
	items := s.listContainerStats(stream.Context(), req.GetFilter())
	return sendBatches(items, streamBatch, func(batch []*runtimeapi.ContainerStats) error {
		return stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: batch})
	})
}

func (s *Server) listContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) []*runtimeapi.ContainerStats {
	ctrs := s.filterContainers(&runtimeapi.ContainerFilter{Id: f.GetId(), PodSandboxId: f.GetPodSandboxId(), LabelSelector: f.GetLabelSelector()})
	out := make([]*runtimeapi.ContainerStats, 0, len(ctrs))
	for _, ctr := range ctrs {
		st, _, err := s.containerStats(ctx, ctr, stats.Usage|stats.Swap)
		if err != nil {
			// Gone or stopped since it was listed: kubelet lists again.
			klog.V(4).InfoS("Skipping container stats", "container", ctr.ID(), "err", err)
			continue
		}
		out = append(out, st)
	}
	return out
}

// containerStats reads the container's cgroup (the figures want asks for)
// and the last measured usage of its writable layer; the raw reading is
// returned too, for the callers that need more than the CRI figures. A
// container not started yet, or exited (its cgroup gone), reports its
// attributes and writable layer only.
func (s *Server) containerStats(ctx context.Context, ctr *container.Container, want stats.Figures) (*runtimeapi.ContainerStats, *stats.CgroupStats, error) {
	var reading *stats.CgroupStats
	// A container not started yet has a cgroup holding only the runtime's
	// init waiting for the start, whose usage is not the container's
	// (containerd has no task to ask yet either): nothing to read.
	if ctr.State() != meta.ContainerCreated {
		cg, err := s.stats.Cgroup(ctx, ctr.ID(), ctr.StatsCgroup(), want)
		switch {
		case err == nil:
			reading = &cg
		case !errors.Is(err, stats.ErrNotFound):
			return nil, nil, err
		}
	}
	var layer *stats.LayerUsage
	if u, ok := s.layerUsage(ctx, ctr); ok {
		layer = &u
	}
	return stats.ContainerStats(s.wire.containerAttributes(ctr), reading, layer, s.ctrs.SnapshotRoot()), reading, nil
}

// layerUsage is the last measured usage of the container's writable
// layer; asking also has it measured again in the background when it is
// old. The daemon asks once when a container is created, so that the
// first stats call finds a measurement.
func (s *Server) layerUsage(ctx context.Context, ctr *container.Container) (stats.LayerUsage, bool) {
	dir, err := s.ctrs.WritableLayer(ctx, ctr)
	if err != nil {
		return stats.LayerUsage{}, false
	}
	return s.stats.LayerUsage(ctr.ID(), dir)
}

// PodSandboxStats reports one pod's usage, with its containers'.
func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	pod, err := s.pods.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st, err := s.podStats(ctx, pod)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats reports the usage of the pods the filter selects.
func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: s.listPodStats(ctx, req.GetFilter())}, nil
}

// StreamPodSandboxStats streams the same list in batches.
func (s *Server) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxStatsResponse]) error {
	items := s.listPodStats(stream.Context(), req.GetFilter())
	return sendBatches(items, streamBatch, func(batch []*runtimeapi.PodSandboxStats) error {
		return stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: batch})
	})
}

func (s *Server) listPodStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) []*runtimeapi.PodSandboxStats {
	var pods []*podsandbox.Pod
	if id := f.GetId(); id != "" {
		if pod, err := s.pods.Get(id); err == nil {
			pods = []*podsandbox.Pod{pod}
		}
	} else {
		pods = s.pods.List()
		if len(f.GetLabelSelector()) == 0 {
			s.wire.retainPods(pods)
		}
	}
	out := make([]*runtimeapi.PodSandboxStats, 0, len(pods))
	for _, pod := range pods {
		if !labelsMatch(pod.Config().GetLabels(), f.GetLabelSelector()) {
			continue
		}
		st, err := s.podStats(ctx, pod)
		if err != nil {
			klog.V(4).InfoS("Skipping pod stats", "pod", pod.ID(), "err", err)
			continue
		}
		out = append(out, st)
	}
	return out
}

func (s *Server) podStats(ctx context.Context, pod *podsandbox.Pod) (*runtimeapi.PodSandboxStats, error) {
	rec := pod.Record()
	st := &runtimeapi.PodSandboxStats{
		Attributes: s.wire.podAttributes(pod),
		Linux:      &runtimeapi.LinuxPodSandboxStats{},
	}
	podCg, err := s.stats.Cgroup(ctx, rec.ID, rec.CgroupParent, stats.Usage|stats.Tasks)
	if err != nil && !errors.Is(err, stats.ErrNotFound) {
		return nil, err
	}
	// The pod's process count is its cgroup's pids.current: every task of
	// the pod, threads included, as CRI-O reports it. kubelet ranks pods by
	// it under PID pressure, and a thread takes a PID as a process does
	// (pids.max, which kubelet's pod PID limit sets, counts the same).
	// Without the pids controller, the members' processes are counted
	// (containerd's figure), at a cgroup.procs listing per member.
	count := err == nil && !podCg.HasPids
	want := stats.Usage | stats.Swap
	if count {
		want |= stats.Processes
	}
	var processes uint64
	for _, ctr := range s.ctrs.ListByPod(rec.ID) {
		cs, cg, err := s.containerStats(ctx, ctr, want)
		if err != nil {
			continue
		}
		st.Linux.Containers = append(st.Linux.Containers, cs)
		if cg != nil {
			processes += cg.Processes
		}
	}
	if err == nil {
		podCg.Processes = podCg.Pids.Current
		if count {
			podCg.Processes = processes + s.sandboxProcesses(ctx, pod)
		}
		podCg.PodUsage(st.Linux)
	}
	if rec.NetNSPath != "" {
		if pod.Ready() {
			if ifaces, err := s.stats.PodNetwork(ctx, rec.ID, rec.NetNSPath); err == nil {
				st.Linux.Network = stats.NetworkUsage(time.Now(), ifaces, "eth0")
			}
		} else {
			// The kept file would keep the stopped pod's namespace; the
			// stop's event closes it too, this catches a reading that
			// raced the stop.
			s.stats.ForgetNetwork(rec.ID)
		}
	}
	return st, nil
}

// sandboxProcesses counts the processes of the pod's sandbox cgroup. A
// pod's process count is its members' (sandbox and containers), which
// are read anyway, rather than a walk of the pod cgroup's tree.
func (s *Server) sandboxProcesses(ctx context.Context, pod *podsandbox.Pod) uint64 {
	if !pod.Ready() {
		return 0
	}
	cg, err := s.stats.Cgroup(ctx, "", pod.StatsCgroup(), stats.Processes)
	if err != nil {
		return 0
	}
	return cg.Processes
}

// ListMetricDescriptors lists the cAdvisor-style metrics this runtime
// reports through ListPodSandboxMetrics.
func (s *Server) ListMetricDescriptors(ctx context.Context, req *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: stats.MetricDescriptors()}, nil
}

// ListPodSandboxMetrics reports the metrics of every ready pod and its
// containers.
func (s *Server) ListPodSandboxMetrics(ctx context.Context, req *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: s.podMetrics(ctx)}, nil
}

// StreamPodSandboxMetrics streams the same metrics in batches.
func (s *Server) StreamPodSandboxMetrics(req *runtimeapi.StreamPodSandboxMetricsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxMetricsResponse]) error {
	items := s.podMetrics(stream.Context())
	return sendBatches(items, streamBatch/10+1, func(batch []*runtimeapi.PodSandboxMetrics) error {
		return stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: batch})
	})
}

func (s *Server) podMetrics(ctx context.Context) []*runtimeapi.PodSandboxMetrics {
	var out []*runtimeapi.PodSandboxMetrics
	now := time.Now()
	for _, pod := range s.pods.List() {
		if !pod.Ready() {
			continue
		}
		rec := pod.Record()
		pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: rec.ID}
		processes := s.sandboxProcesses(ctx, pod)
		for _, ctr := range s.ctrs.ListByPod(rec.ID) {
			crec := ctr.Record()
			cin := stats.MetricsInput{ID: crec.ID, Name: ctr.Config().GetMetadata().GetName(), Image: crec.ImageRef, Now: now, StartTime: crec.StartedAt}
			if cg, err := s.stats.Cgroup(ctx, crec.ID, ctr.StatsCgroup(), stats.All); err == nil {
				cin.Cgroup = &cg
				processes += cg.Processes
			}
			if u, ok := s.layerUsage(ctx, ctr); ok {
				cin.Filesystem = &stats.FilesystemStats{Device: s.ctrs.SnapshotRoot(), UsedBytes: u.Bytes, InodesUsed: u.Inodes}
			}
			pm.ContainerMetrics = append(pm.ContainerMetrics, &runtimeapi.ContainerMetrics{ContainerId: crec.ID, Metrics: stats.ContainerMetrics(cin)})
		}
		in := stats.MetricsInput{ID: rec.ID, Name: "POD", Now: now, StartTime: rec.CreatedAt}
		if cg, err := s.stats.Cgroup(ctx, rec.ID, rec.CgroupParent, stats.Usage|stats.Detail); err == nil {
			cg.Processes = processes
			in.Cgroup = &cg
		}
		if rec.NetNSPath != "" {
			if ifaces, err := s.stats.PodNetwork(ctx, rec.ID, rec.NetNSPath); err == nil {
				in.Interfaces = ifaces
			}
		}
		pm.Metrics = stats.ContainerMetrics(in)
		out = append(out, pm)
	}
	return out
}
