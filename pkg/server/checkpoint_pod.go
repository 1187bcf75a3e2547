package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/checkpoint"
	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox"
)

// podDump is pod.dump, the index of a pod checkpoint: the pod's config
// and the containers checkpointed, each in the directory of its name.
type podDump struct {
	PodID      string          `json:"podID"`
	Config     json.RawMessage `json:"config"`
	Containers []string        `json:"containers"`
	Taken      time.Time       `json:"checkpointedTime"`
	// LastPid is the highest pid in the pod's shared PID namespace when
	// it was checkpointed (0: the containers do not share one); the
	// restore starts the new namespace's pids above it
	// (checkpoint.SetLastPid says why).
	LastPid int `json:"lastPid,omitempty"`
}

const podDumpFile = "pod.dump"

// checkpointPod freezes every listed container, dumps each into
// output_path/<name> while all stay frozen (one consistent cut of the
// pod), and thaws them all whatever happened. On error nothing is left in
// output_path.
func (s *Server) checkpointPod(ctx context.Context, pod *podsandbox.Pod, req *runtimeapi.CheckpointPodRequest) (retErr error) {
	start := time.Now()
	out := req.GetOutputPath()
	var ctrs []*container.Container
	for _, id := range req.GetContainerIds() {
		ctr, err := s.ctrs.Get(id)
		if err != nil {
			return err
		}
		ctrs = append(ctrs, ctr)
	}
	var written []string
	defer func() {
		if retErr != nil {
			for _, p := range written {
				os.RemoveAll(p)
			}
		}
	}()
	var frozen []*container.Container
	defer func() {
		// Thawed on success, error or deadline: never a frozen pod.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		for _, ctr := range frozen {
			if err := s.ctrs.Resume(tctx, ctr); err != nil {
				klog.ErrorS(err, "Thawing a container after the pod's checkpoint", "container", ctr.ID())
				retErr = errors.Join(retErr, err)
			}
		}
	}()
	for _, ctr := range ctrs {
		if err := s.ctrs.Pause(ctx, ctr); err != nil {
			return fmt.Errorf("checkpoint pod %s: freeze %s: %w", pod.ID(), ctr.ID(), err)
		}
		frozen = append(frozen, ctr)
	}
	dump := podDump{PodID: pod.ID(), Taken: time.Now().UTC()}
	if pid := sharedPidNS(pod); pid > 0 {
		// Without it the checkpoint is still whole; only a restore of
		// containers sharing the namespace may then collide on pids.
		last, err := checkpoint.HighestPid(pid)
		if err != nil {
			klog.ErrorS(err, "The pod checkpoint records no pid to restore above", "pod", pod.ID())
		}
		dump.LastPid = last
	}
	for _, ctr := range ctrs {
		name := ctr.Config().GetMetadata().GetName()
		dir := filepath.Join(out, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("checkpoint pod %s: %w", pod.ID(), err)
		}
		written = append(written, dir)
		if _, err := s.ctrs.CheckpointTo(ctx, ctr, dir, 0); err != nil {
			return fmt.Errorf("checkpoint pod %s: %w", pod.ID(), err)
		}
		dump.Containers = append(dump.Containers, name)
	}
	cfg, err := protojson.Marshal(pod.Config())
	if err != nil {
		return err
	}
	dump.Config = cfg
	written = append(written, filepath.Join(out, podDumpFile))
	if err := checkpoint.WriteJSON(out, podDumpFile, dump); err != nil {
		return err
	}
	klog.V(2).InfoS("Pod checkpointed", "pod", pod.ID(), "containers", len(ctrs), "dir", out, "duration", time.Since(start))
	return nil
}

// restorePod runs a new sandbox from the request's config (new network
// namespace, new IP) and creates each container from its checkpoint; the
// containers are CREATED and StartContainer restores them. On error
// everything created is removed.
func (s *Server) restorePod(ctx context.Context, req *runtimeapi.RestorePodRequest) (_ *runtimeapi.RestorePodResponse, retErr error) {
	dir := req.GetCheckpointPath()
	b, err := os.ReadFile(filepath.Join(dir, podDumpFile))
	if err != nil {
		return nil, fmt.Errorf("restore pod: %w: %v", checkpoint.ErrInvalid, err)
	}
	var dump podDump
	if err := json.Unmarshal(b, &dump); err != nil {
		return nil, fmt.Errorf("restore pod: %w: %s: %v", checkpoint.ErrInvalid, podDumpFile, err)
	}
	want := map[string]bool{}
	for _, n := range dump.Containers {
		want[n] = true
	}
	for _, cfg := range req.GetContainerConfigs() {
		name := cfg.GetMetadata().GetName()
		if !want[name] {
			return nil, fmt.Errorf("%w: container %q is not in the checkpoint (it has %v)", errInvalid, name, dump.Containers)
		}
		delete(want, name)
	}
	if len(want) > 0 {
		return nil, fmt.Errorf("%w: the checkpoint's containers %v have no config", errInvalid, keys(want))
	}
	podID, err := s.pods.Run(ctx, req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			_, _ = s.StopPodSandbox(cctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
			if _, err := s.RemovePodSandbox(cctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
				klog.ErrorS(err, "Removing a pod whose restore failed", "pod", podID)
			}
		}
	}()
	pod, err := s.pods.Get(podID)
	if err != nil {
		return nil, err
	}
	if pid := sharedPidNS(pod); pid > 0 && dump.LastPid > 0 {
		if err := checkpoint.SetLastPid(ctx, pid, dump.LastPid); err != nil {
			klog.ErrorS(err, "Restoring a pod without moving its pids above the checkpoint's: a restore may collide on a pid", "pod", podID)
		}
	}
	resp := &runtimeapi.RestorePodResponse{PodSandboxId: podID}
	for _, cfg := range req.GetContainerConfigs() {
		name := cfg.GetMetadata().GetName()
		c := proto.Clone(cfg).(*runtimeapi.ContainerConfig)
		c.Image = &runtimeapi.ImageSpec{Image: filepath.Join(dir, name)}
		id, err := s.ctrs.Create(ctx, pod, c)
		if err != nil {
			return nil, fmt.Errorf("restore container %q: %w", name, err)
		}
		resp.RestoredContainers = append(resp.RestoredContainers, &runtimeapi.RestoredContainer{Name: name, ContainerId: id})
	}
	return resp, nil
}

// sharedPidNS is the pid of the pod's sandbox process when the pod's
// containers share its PID namespace by default; 0 otherwise.
func sharedPidNS(pod *podsandbox.Pod) int {
	info := pod.Info()
	if info.HostPID || info.PIDMode != runtimeapi.NamespaceMode_POD {
		return 0
	}
	return info.Pid
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
