package podsandbox

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
)

// UpdateResources applies kubelet's pod-level resources and overhead
// (UpdatePodSandboxResources, in an in-place resize) to the pod cgroup,
// the parent of all its containers, through the cgroup driver, and to the
// sandbox's own cgroup, as its creation sized it, through the OCI
// runtime's update of the sandbox process. A nil resources or overhead
// keeps the current one. The pod's config records them, so status and a restart see them.
func (c *Controller) UpdateResources(ctx context.Context, id string, resources, overhead *runtimeapi.LinuxContainerResources) error {
	pod, err := c.Get(id)
	if err != nil {
		return err
	}
	pod.op.Lock()
	defer pod.op.Unlock()
	if !pod.Ready() {
		return fmt.Errorf("%w: cannot update the resources of pod sandbox %s", ErrNotReady, pod.ID())
	}
	// NRI plugins see the new resources first, and may refuse them.
	if err := c.nri().UpdatePodSandbox(ctx, pod, overhead, resources); err != nil {
		return fmt.Errorf("update pod sandbox %s: %w", pod.ID(), err)
	}
	cfg := proto.Clone(pod.Config()).(*runtimeapi.PodSandboxConfig)
	if cfg.Linux == nil {
		cfg.Linux = &runtimeapi.LinuxPodSandboxConfig{}
	}
	if resources != nil {
		cfg.Linux.Resources = resources
	}
	if overhead != nil {
		cfg.Linux.Overhead = overhead
	}
	res, err := oci.SandboxResources(cfg.GetLinux())
	if err != nil {
		return err
	}
	raw, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode resources: %w", err)
	}
	cl := pod.Shim()
	if cl == nil {
		return fmt.Errorf("%w: the shim of pod sandbox %s is gone", ErrNotReady, pod.ID())
	}
	// On cgroup v1 a parent's CPU quota may not fall below a child's: a
	// pod that grows needs its cgroup first, one that shrinks its
	// sandbox's (kubelet has shrunk the containers before). The pod
	// cgroup is tried first and, when refused, again after the sandbox.
	podErr := c.opts.Cgroups.UpdatePod(ctx, pod.rec.CgroupParent, res)
	if err := cl.Update(ctx, pod.ID(), raw); err != nil {
		return fmt.Errorf("update resources of pod sandbox %s: %w", pod.ID(), err)
	}
	if podErr != nil {
		if err := c.opts.Cgroups.UpdatePod(ctx, pod.rec.CgroupParent, res); err != nil {
			return fmt.Errorf("update resources of pod sandbox %s: %w", pod.ID(), err)
		}
	}
	b, err := proto.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode pod config: %w", err)
	}
	pod.mu.Lock()
	pod.cfg = cfg
	pod.rec.Config = b
	rec := pod.rec
	pod.mu.Unlock()
	if err := c.db.PutSandbox(rec); err != nil {
		return fmt.Errorf("save pod record: %w", err)
	}
	c.nri().PostUpdatePodSandbox(ctx, pod)
	klog.V(2).InfoS("Pod sandbox resources updated", "pod", pod.ID())
	return nil
}

// limitOwnCgroup sizes a pod cgroup the daemon made (a pod without a
// cgroup parent: crictl) from the pod's resources plus its overhead, as
// its sandbox's cgroup is: kubelet sizes its own pod cgroups, but nobody
// else sizes ours before a first UpdatePodSandboxResources. It runs once
// the runtime ran the sandbox, which makes the cgroupfs driver's
// directories; the sandbox's equal limits are no child above its parent
// (cgroup v1 refuses a parent's quota below a child's). The pause process
// runs unlimited until then; it allocates nothing.
func (c *Controller) limitOwnCgroup(ctx context.Context, parent string, cfg *runtimeapi.PodSandboxConfig) error {
	res, err := oci.SandboxResources(cfg.GetLinux())
	if err != nil {
		return err
	}
	if res.CPU == nil && res.Memory == nil {
		return nil
	}
	if err := c.opts.Cgroups.UpdatePod(ctx, parent, res); err != nil {
		return fmt.Errorf("limit pod cgroup: %w", err)
	}
	return nil
}
