package container

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// HandleEvent applies a shim event of a container of pod. EventShimDied
// (no container ID) means every container of the pod that was not exited
// is gone with it.
func (c *Controller) HandleEvent(pod Sandbox, ev shim.Event) {
	if ev.Type == shim.EventShimDied {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, ctr := range c.ListByPod(pod.ID()) {
			rec := ctr.Record()
			if rec.State == meta.ContainerRunning || rec.State == meta.ContainerCreated {
				// Nothing supervises its processes any more: kill them, so
				// that "exited" is true.
				pod.ForceDelete(ctx, rec.ID)
				c.apply(ctr, shim.State{Status: shim.StatusExited, ExitCode: 137, FinishedAt: time.Now().UTC(),
					Reason: "ShimDied", Message: "the pod's shim process died; the container was killed"})
			}
		}
		return
	}
	ctr, err := c.Get(ev.ID)
	if err != nil || ctr.rec.ID != ev.ID {
		return
	}
	if ev.Type == shim.EventDeleted {
		return
	}
	c.apply(ctr, ev.State)
}

// Recover loads the container records after a start of the daemon:
// containers whose creation was cut off are torn down; the others take
// the state their pod's shim reports (which kept exit codes while the
// daemon was away). Call after the pod controller recovered.
func (c *Controller) Recover(ctx context.Context) error {
	recs, err := c.db.ListContainers()
	if err != nil {
		return fmt.Errorf("list container records: %w", err)
	}
	for _, rec := range recs {
		cfg := &runtimeapi.ContainerConfig{}
		perr := proto.Unmarshal(rec.Config, cfg)
		pod, podErr := c.pod(rec.SandboxID)
		if podErr != nil {
			// Its pod is gone: nothing of the container can remain
			// (the pod's directory held its bundle).
			klog.InfoS("Removing container of a pod that no longer exists", "container", rec.ID, "pod", rec.SandboxID)
			if err := c.db.DeleteContainer(rec.ID); err != nil {
				return err
			}
			if err := c.snap.Remove(ctx, rec.SnapshotKey); err != nil && !errors.Is(err, snapshot.ErrNotFound) {
				klog.ErrorS(err, "Removing snapshot of orphan container", "container", rec.ID)
			}
			continue
		}
		ctr := &Container{rec: rec, cfg: cfg, pod: pod}
		if rec.State == meta.ContainerCreating || perr != nil {
			klog.InfoS("Removing container whose creation was interrupted", "container", rec.ID)
			if err := c.teardown(ctx, ctr); err != nil {
				return fmt.Errorf("clean up interrupted container %s: %w", rec.ID, err)
			}
			continue
		}
		if err := c.names.Reserve(rec.Name, rec.ID); err != nil {
			return fmt.Errorf("container %s: %w", rec.ID, err)
		}
		c.mu.Lock()
		c.ctrs[rec.ID] = ctr
		c.mu.Unlock()
		c.refresh(ctx, ctr)
	}
	return nil
}

// refresh takes the container's state from its shim; without a shim, a
// container that was running is reported killed.
func (c *Controller) refresh(ctx context.Context, ctr *Container) {
	rec := ctr.Record()
	if rec.State == meta.ContainerExited {
		return
	}
	if cl := ctr.pod.Shim(); cl != nil {
		st, err := cl.State(ctx, rec.ID)
		if err == nil {
			c.apply(ctr, st)
			return
		}
		if !errors.Is(err, shim.ErrNotFound) && !errors.Is(err, shim.ErrShimGone) {
			klog.ErrorS(err, "Reading container state from its shim", "container", rec.ID)
			return
		}
	}
	ctr.pod.ForceDelete(ctx, rec.ID)
	c.apply(ctr, shim.State{Status: shim.StatusExited, ExitCode: 137, FinishedAt: time.Now().UTC(),
		Reason: "ShimDied", Message: "the pod's shim was gone when the daemon restarted; the container was killed"})
}
