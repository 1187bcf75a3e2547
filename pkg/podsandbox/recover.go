package podsandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/cni"
	"github.com/cri-runtimed/cri-runtimed/pkg/netns"
	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// Recover rebuilds the controller's state after a start of the daemon:
// pods whose creation was cut off are torn down, the others reconnect to
// their shims (a pod whose shim died is marked not ready), and network
// namespace pins and pod directories that no record owns are removed.
func (c *Controller) Recover(ctx context.Context) error {
	recs, err := c.db.ListSandboxes()
	if err != nil {
		return fmt.Errorf("list pod records: %w", err)
	}
	known := map[string]bool{}
	for _, rec := range recs {
		if rec.Corrupt {
			// Unknown to the loop below, its directory, netns pin and
			// network are removed as orphans.
			klog.ErrorS(nil, "Pod record cannot be decoded; removing it and what its ID names", "pod", rec.ID)
			if err := c.db.DeleteSandbox(rec.ID); err != nil {
				klog.ErrorS(err, "Removing a corrupt pod record", "pod", rec.ID)
			}
			continue
		}
		known[rec.ID] = true
		cfg := &runtimeapi.PodSandboxConfig{}
		if err := proto.Unmarshal(rec.Config, cfg); err != nil {
			klog.ErrorS(err, "Pod record has an unreadable config; removing it", "pod", rec.ID)
		}
		pod := &Pod{rec: rec, cfg: cfg, dir: c.podDir(rec.ID), handler: c.recordedHandler(rec), hostname: rec.Extra[extraHostname], cgroupsPath: c.sandboxCgroupsPath(rec)}
		if rec.State == meta.SandboxCreating || cfg.GetMetadata() == nil {
			klog.InfoS("Removing pod sandbox whose creation was interrupted", "pod", rec.ID)
			err := c.teardown(ctx, pod)
			if err == nil {
				continue
			}
			// The daemon must start anyway: the pod stays listed, not
			// ready, for kubelet (or an operator) to remove once whatever
			// failed (a CNI config, say) is fixed.
			klog.ErrorS(err, "Cleaning up an interrupted pod failed; keeping it as not ready", "pod", rec.ID)
			pod.rec.State = meta.SandboxNotReady
			if cfg.GetMetadata() == nil {
				continue
			}
		}
		if err := c.names.Reserve(rec.Name, rec.ID); err != nil {
			// Two records with one name: both stay listed for kubelet to
			// remove the one it does not want; Remove releases by ID.
			klog.ErrorS(err, "Pod name is taken by another pod; listing it without its name", "pod", rec.ID, "name", rec.Name)
		}
		// A pod started by an older daemon may have a wider directory.
		if _, gids, err := oci.PodUserNamespace(cfg); err == nil {
			if err := restrictPodDir(pod.dir, gids); err != nil && !errors.Is(err, os.ErrNotExist) {
				klog.ErrorS(err, "Restricting the pod directory", "pod", rec.ID)
			}
		}
		var after uint64
		var cl shim.API
		var err error
		if !pod.released() {
			cl, err = c.opts.Shims.Dial(ctx, pod.shimDir())
		}
		switch {
		case pod.released():
			// Stopped and released on purpose: no shim to look for.
		case err == nil:
			pod.shim = cl
			st, err := cl.State(ctx, rec.ID)
			if err != nil || st.Status != shim.StatusRunning {
				pod.rec.State = meta.SandboxNotReady
			} else if spec, err := oci.Load(pod.bundleDir(rec.ID)); err == nil && spec.Linux != nil {
				c.findCgroup(ctx, pod, spec.Linux.Resources)
			}
		default:
			klog.InfoS("Shim of pod is gone; marking the pod not ready", "pod", rec.ID, "err", err)
			forceDelete(ctx, pod.handler, rec.ID)
			c.killPause(ctx, pod)
			pod.rec.State = meta.SandboxNotReady
		}
		if err := c.db.PutSandbox(pod.rec); err != nil {
			klog.ErrorS(err, "Saving the recovered state of a pod", "pod", rec.ID)
		}
		c.mu.Lock()
		c.pods[rec.ID] = pod
		c.mu.Unlock()
		if pod.shim != nil {
			c.monitor(pod, after)
		}
	}
	c.removeOrphans(known)
	c.releaseOrphanNetworks(ctx, known)
	return nil
}

// releaseOrphanNetworks runs CNI DEL for attachments no pod record claims:
// a crash after ADD whose record write was lost would otherwise keep the
// IP reserved forever.
func (c *Controller) releaseOrphanNetworks(ctx context.Context, known map[string]bool) {
	if c.opts.Network == nil {
		return
	}
	ids, err := c.opts.Network.Attached()
	if err != nil {
		klog.ErrorS(err, "Listing cached CNI attachments")
		return
	}
	for _, id := range ids {
		if known[id] {
			continue
		}
		klog.InfoS("Releasing the network of a pod that no longer exists", "pod", id)
		if err := c.opts.Network.Teardown(ctx, cni.Pod{ID: id}); err != nil {
			klog.ErrorS(err, "Releasing orphan pod network", "pod", id)
		}
	}
}

// removeOrphans deletes netns pins and pod directories without a record:
// what a crash between creating them and writing the record would leave
// if the record write itself had been lost.
func (c *Controller) removeOrphans(known map[string]bool) {
	if pins, err := netns.List(c.opts.NetNSDir); err == nil {
		for _, p := range pins {
			if !known[filepath.Base(p)] {
				klog.InfoS("Removing orphan network namespace pin", "path", p)
				if err := netns.Remove(p); err != nil {
					klog.ErrorS(err, "Removing orphan network namespace pin", "path", p)
				}
			}
		}
	}
	entries, err := os.ReadDir(c.opts.StateDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || known[e.Name()] || len(e.Name()) != 64 {
			continue
		}
		pod := &Pod{rec: meta.Sandbox{ID: e.Name()}, dir: c.podDir(e.Name()), handler: c.handlers.Load().byName[c.handlers.Load().def], cfg: &runtimeapi.PodSandboxConfig{}}
		klog.InfoS("Removing orphan pod directory", "dir", pod.dir)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := c.teardown(ctx, pod); err != nil {
			klog.ErrorS(err, "Removing orphan pod directory", "dir", pod.dir)
		}
		cancel()
	}
}

// monitor follows the pod's shim events until the shim goes away or the
// controller closes. The sandbox's own exit makes the pod not ready; other
// events go to the container controller. A shim that dies is reported as
// the exit of everything it ran.
func (c *Controller) monitor(pod *Pod, after uint64) {
	cl := pod.Shim()
	if cl == nil {
		return
	}
	c.monitors.Add(1)
	go func() {
		defer c.monitors.Done()
		for {
			evs, err := cl.Events(c.monitorCtx, after)
			if c.monitorCtx.Err() != nil {
				return
			}
			if err != nil {
				if errors.Is(err, shim.ErrShimGone) {
					c.shimDied(pod, cl)
					return
				}
				klog.V(3).InfoS("Shim events", "pod", pod.ID(), "err", err)
				select {
				case <-c.monitorCtx.Done():
					return
				case <-time.After(200 * time.Millisecond):
				}
				continue
			}
			for _, ev := range evs {
				after = max(after, ev.Seq)
				if ev.ID == pod.ID() {
					if ev.Type == shim.EventExited {
						if err := c.setState(pod, meta.SandboxNotReady); err != nil {
							klog.ErrorS(err, "Recording sandbox exit", "pod", pod.ID())
						}
					}
					continue
				}
				c.mu.RLock()
				fn := c.onEvent
				c.mu.RUnlock()
				if fn != nil {
					fn(pod, ev)
				}
			}
		}
	}()
}

// shimDied handles a shim that is gone while the daemon runs: the pod
// becomes not ready, its containers are reported exited, and whatever
// processes remain are killed so nothing runs unsupervised.
func (c *Controller) shimDied(pod *Pod, cl shim.API) {
	if pod.Shim() != cl {
		return // replaced or removed on purpose
	}
	klog.InfoS("Shim of pod died", "pod", pod.ID())
	c.opts.Telemetry.ShimDied()
	pod.setShim(nil)
	cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	forceDelete(ctx, pod.handler, pod.ID())
	c.killPause(ctx, pod)
	if err := c.setState(pod, meta.SandboxNotReady); err != nil {
		klog.ErrorS(err, "Recording shim death", "pod", pod.ID())
	}
	c.mu.RLock()
	fn := c.onEvent
	c.mu.RUnlock()
	if fn != nil {
		fn(pod, shim.Event{Type: shim.EventShimDied})
	}
}

// recordedHandler is the OCI runtime a recovered pod started with, as
// its record names it, whether or not the config still has its handler
// (reload or an edit before the restart may have removed or changed it):
// the pod's shim runs that runtime for the pod's containers, new ones
// included, and a shim found dead is cleaned up with it. A record of an
// older daemon names none: the config's handler of that name is taken.
func (c *Controller) recordedHandler(rec meta.Sandbox) Handler {
	_, configured, ok := c.handler(rec.RuntimeHandler)
	if bin := rec.Extra[extraRuntimeBinary]; bin != "" {
		if !ok {
			klog.InfoS("Runtime handler of a pod is no longer configured; the pod keeps the runtime it started with", "pod", rec.ID, "handler", rec.RuntimeHandler, "runtime", bin)
		}
		return Handler{Binary: bin, Root: rec.Extra[extraRuntimeRoot], OCIVersionMax: rec.Extra[extraOCIVersionMax], Args: c.opts.Cgroups.RuntimeArgs()}
	}
	if !ok {
		klog.ErrorS(nil, "Runtime handler of a pod is no longer configured and its record (from an older version) does not name its runtime; its containers cannot be cleaned up through the runtime if its shim dies", "pod", rec.ID, "handler", rec.RuntimeHandler)
	}
	return configured
}

// forceDelete removes a container from the OCI runtime directly, for when
// its shim is gone: kill every process of it and delete its state.
func forceDelete(ctx context.Context, h Handler, id string) {
	if h.Binary == "" {
		return
	}
	if h.Root != "" {
		// No state directory: the runtime has nothing of it (a released
		// pod's containers, deleted by their shim), and two runtime
		// processes per container would be spent on finding that out.
		if _, err := os.Stat(filepath.Join(h.Root, id)); errors.Is(err, os.ErrNotExist) {
			return
		}
	}
	args := append([]string{}, h.Args...)
	if h.Root != "" {
		args = append(args, "--root", h.Root)
	}
	_ = exec.CommandContext(ctx, h.Binary, append(args, "kill", "--all", id, "KILL")...).Run()
	_ = exec.CommandContext(ctx, h.Binary, append(args, "delete", "--force", id)...).Run()
}
