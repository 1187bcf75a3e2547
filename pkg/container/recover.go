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
//
// A container that cannot be recovered does not stop the daemon: one bad
// record must not keep a node's runtime down. It is logged, marked (see
// recoverFailed) and left for kubelet or an operator to remove.
func (c *Controller) Recover(ctx context.Context) error {
	recs, err := c.db.ListContainers()
	if err != nil {
		return fmt.Errorf("list container records: %w", err)
	}
	for _, rec := range recs {
		c.recoverOne(ctx, rec)
	}
	return nil
}

// Reasons of containers recovery had to mark.
const (
	// ReasonCreateInterrupted: the daemon died while creating the
	// container and cleaning up after it failed at start.
	ReasonCreateInterrupted = "CreateInterrupted"
)

func (c *Controller) recoverOne(ctx context.Context, rec meta.Container) {
	if rec.Corrupt {
		// Nothing of it can be trusted but its ID, which is also the key
		// of its rootfs snapshot; its bundle goes with its pod's directory.
		klog.ErrorS(nil, "Container record cannot be decoded; removing it and its rootfs snapshot", "container", rec.ID)
		if err := c.snap.Remove(ctx, rec.ID); err != nil && !errors.Is(err, snapshot.ErrNotFound) {
			klog.ErrorS(err, "Removing the rootfs snapshot of a corrupt container record", "container", rec.ID)
		}
		if err := c.db.DeleteContainer(rec.ID); err != nil {
			klog.ErrorS(err, "Removing a corrupt container record", "container", rec.ID)
		}
		return
	}
	cfg := &runtimeapi.ContainerConfig{}
	perr := proto.Unmarshal(rec.Config, cfg)
	pod, podErr := c.pod(rec.SandboxID)
	if podErr != nil {
		// Its pod is gone: nothing of the container can remain
		// (the pod's directory held its bundle).
		klog.InfoS("Removing container of a pod that no longer exists", "container", rec.ID, "pod", rec.SandboxID)
		if err := c.snap.Remove(ctx, rec.SnapshotKey); err != nil && !errors.Is(err, snapshot.ErrNotFound) {
			klog.ErrorS(err, "Removing snapshot of orphan container", "container", rec.ID)
		}
		if err := c.removeImageVolumeSnapshots(ctx, rec); err != nil {
			klog.ErrorS(err, "Removing image volume snapshots of orphan container", "container", rec.ID)
		}
		if err := c.db.DeleteContainer(rec.ID); err != nil {
			klog.ErrorS(err, "Removing the record of an orphan container", "container", rec.ID)
		}
		return
	}
	ctr := &Container{rec: rec, cfg: cfg, pod: pod}
	if rec.State == meta.ContainerCreating || perr != nil {
		klog.InfoS("Removing container whose creation was interrupted", "container", rec.ID)
		err := c.teardown(ctx, ctr)
		if err == nil {
			return
		}
		klog.ErrorS(err, "Cleaning up an interrupted container failed; keeping it as exited for removal", "container", rec.ID)
		c.recoverFailed(ctr, err)
	}
	if err := c.names.Reserve(rec.Name, rec.ID); err != nil {
		// Two records with one name: keep both listed (kubelet removes
		// the one it does not want); this one holds no name, and its
		// removal must not free the other's (Remove releases by ID).
		klog.ErrorS(err, "Container name is taken by another container; listing it without its name", "container", rec.ID, "name", rec.Name)
	}
	c.add(ctr)
	c.refresh(ctx, ctr)
}

// recoverFailed marks a container whose interrupted creation could not
// be cleaned up: exited, with the reason, so kubelet removes it (and
// RemoveContainer retries the cleanup).
func (c *Controller) recoverFailed(ctr *Container, cause error) {
	ctr.mu.Lock()
	ctr.rec.State = meta.ContainerExited
	c.unpinExited(ctr)
	ctr.rec.ExitCode = 255
	ctr.rec.FinishedAt = time.Now().UTC()
	ctr.rec.Reason = ReasonCreateInterrupted
	ctr.rec.Message = "the daemon stopped while creating the container, and cleaning up failed: " + cause.Error()
	rec := ctr.rec
	ctr.mu.Unlock()
	if err := c.db.PutContainer(rec); err != nil {
		klog.ErrorS(err, "Saving the state of a container recovery marked", "container", rec.ID)
	}
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
			ctr.markInRuntime()
			if st.Status != shim.StatusExited {
				c.findCgroup(ctx, ctr)
			}
			c.apply(ctr, st)
			return
		}
		if errors.Is(err, shim.ErrNotFound) && rec.State == meta.ContainerCreated {
			// Created, never started: the runtime creates it at its
			// start.
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
