package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/pkg/checkpoint"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// defaultCheckpointTimeout is the CRI's "zero: the runtime's default".
// CRIU dumps every page of the container: generous.
const defaultCheckpointTimeout = 5 * time.Minute

// CheckpointStats is what one checkpoint took and wrote.
type CheckpointStats struct {
	Duration     time.Duration
	ArchiveBytes int64
	DiffBytes    int64
}

// Checkpoint dumps a running container into the archive at location,
// leaving it running. The archive replaces location whole or not at all.
func (c *Controller) Checkpoint(ctx context.Context, id, location string, timeout time.Duration) (CheckpointStats, error) {
	start := time.Now()
	ctr, err := c.Get(id)
	if err != nil {
		return CheckpointStats{}, err
	}
	stage, err := os.MkdirTemp(filepath.Dir(location), ".checkpoint-")
	if err != nil {
		return CheckpointStats{}, fmt.Errorf("checkpoint %s: %w", ctr.ID(), err)
	}
	defer os.RemoveAll(stage)
	st, err := c.CheckpointTo(ctx, ctr, stage, timeout)
	if err != nil {
		return st, err
	}
	if st.ArchiveBytes, err = checkpoint.Pack(ctx, stage, location); err != nil {
		return st, err
	}
	st.Duration = time.Since(start)
	klog.V(2).InfoS("Container checkpointed", "container", ctr.ID(), "archive", location, "bytes", st.ArchiveBytes, "duration", st.Duration)
	return st, nil
}

// CheckpointTo dumps a running container into the existing directory dir
// in the archive's layout (unpacked).
func (c *Controller) CheckpointTo(ctx context.Context, ctr *Container, dir string, timeout time.Duration) (CheckpointStats, error) {
	if timeout <= 0 {
		timeout = defaultCheckpointTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctr.op.Lock()
	defer ctr.op.Unlock()
	rec := ctr.Record()
	if rec.State != meta.ContainerRunning {
		return CheckpointStats{}, fmt.Errorf("checkpoint %s: %w (%s)", rec.ID, ErrNotRunning, rec.State)
	}
	cl := ctr.pod.Shim()
	if cl == nil {
		return CheckpointStats{}, fmt.Errorf("%w: the shim of pod %s is gone", ErrState, rec.SandboxID)
	}
	images := filepath.Join(dir, checkpoint.ImagesDir)
	if err := os.Mkdir(images, 0o700); err != nil {
		return CheckpointStats{}, err
	}
	if err := cl.Checkpoint(ctx, shim.CheckpointRequest{ID: rec.ID, ImagePath: images, WorkPath: dir, Timeout: timeout}); err != nil {
		return CheckpointStats{}, fmt.Errorf("checkpoint %s: %w", rec.ID, err)
	}
	var st CheckpointStats
	upper, err := c.WritableLayer(ctx, ctr)
	if err != nil {
		return st, err
	}
	if st.DiffBytes, err = checkpoint.WriteRootfsDiff(ctx, upper, dir); err != nil {
		return st, err
	}
	return st, writeMetadata(ctr, rec, dir)
}

// writeMetadata writes config.dump, spec.dump, bind.mounts, status.dump
// and the container's log.
func writeMetadata(ctr *Container, rec meta.Container, dir string) error {
	criCfg, err := protojson.Marshal(ctr.Config())
	if err != nil {
		return err
	}
	cfg := checkpoint.Config{
		ID: rec.ID, Name: ctr.Config().GetMetadata().GetName(), RootfsImage: rec.ImageName, RootfsImageRef: rec.ImageID,
		RootfsImageName: rec.ImageName, CreatedTime: rec.CreatedAt,
		CheckpointedTime: time.Now().UTC(), Pod: rec.SandboxID, CRIConfig: criCfg,
	}
	spec := ctr.Spec()
	for name, v := range map[string]any{checkpoint.ConfigDump: cfg, checkpoint.SpecDump: spec,
		checkpoint.BindMounts: checkpoint.BindMountsOf(spec), checkpoint.StatusDump: rec} {
		if err := checkpoint.WriteJSON(dir, name, v); err != nil {
			return err
		}
	}
	if rec.LogPath != "" {
		if err := checkpoint.CopyFile(rec.LogPath, filepath.Join(dir, checkpoint.ContainerLog)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// Pause freezes a running container; Resume thaws it.
func (c *Controller) Pause(ctx context.Context, ctr *Container) error {
	return c.freeze(ctx, ctr, true)
}

// Resume thaws a container Pause froze.
func (c *Controller) Resume(ctx context.Context, ctr *Container) error {
	return c.freeze(ctx, ctr, false)
}

func (c *Controller) freeze(ctx context.Context, ctr *Container, on bool) error {
	cl := ctr.pod.Shim()
	if cl == nil {
		return fmt.Errorf("%w: the shim of pod %s is gone", ErrState, ctr.Record().SandboxID)
	}
	if on {
		return cl.Pause(ctx, ctr.ID())
	}
	return cl.Resume(ctx, ctr.ID())
}

// unpackCheckpoint: when cfg's image is a checkpoint (an archive, a pod
// checkpoint's container directory, or a checkpoint image), it is
// unpacked next to the pod's bundles and cfg comes back naming the
// checkpointed container's image instead (the record and status show the
// real image).
func (c *Controller) unpackCheckpoint(ctx context.Context, pod Sandbox, cfg *runtimeapi.ContainerConfig, o createOptions) (*checkpoint.Checkpoint, *runtimeapi.ContainerConfig, error) {
	src := cfg.GetImage().GetImage()
	var unpack func(dir string) (*checkpoint.Checkpoint, error)
	switch {
	case checkpoint.IsDir(src):
		// A pod checkpoint's container (RestorePod): copied, as the
		// caller's data stays untouched and may go before Start.
		unpack = func(dir string) (*checkpoint.Checkpoint, error) { return checkpoint.Copy(ctx, src, dir) }
	case checkpoint.IsArchive(src):
		unpack = func(dir string) (*checkpoint.Checkpoint, error) { return checkpoint.Unpack(ctx, src, dir) }
	default:
		img, ok := c.checkpointImage(ctx, src)
		if !ok {
			return nil, cfg, nil
		}
		unpack = func(dir string) (*checkpoint.Checkpoint, error) { return c.unpackCheckpointImage(ctx, img, dir) }
	}
	if cfg.GetTty() {
		return nil, nil, fmt.Errorf("restore from %s: %w", src, checkpoint.ErrTerminal)
	}
	if o.restorable != nil {
		if err := o.restorable(); err != nil {
			return nil, nil, fmt.Errorf("restore from %s: %w", src, err)
		}
	}
	bundles := filepath.Dir(pod.BundleDir("x"))
	if err := os.MkdirAll(bundles, 0o711); err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp(bundles, ".restore-")
	if err != nil {
		return nil, nil, err
	}
	ckpt, err := unpack(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("restore from %s: %w", src, err)
	}
	cfg = proto.Clone(cfg).(*runtimeapi.ContainerConfig)
	image := ckpt.Config.RootfsImageRef
	if image == "" {
		image = ckpt.Config.RootfsImageName
	}
	cfg.Image = &runtimeapi.ImageSpec{Image: image}
	klog.V(2).InfoS("Restoring container from a checkpoint", "checkpoint", src, "image", image, "checkpointed", ckpt.Config.CheckpointedTime)
	return ckpt, cfg, nil
}

// checkpointImage finds the image ref names and says whether it is a
// checkpoint image (checkpoint.ImageAnnotation on its manifest). Any
// other image, or none, is not: the create goes on and reports it.
func (c *Controller) checkpointImage(ctx context.Context, ref string) (meta.Image, bool) {
	img, err := c.images.Get(ctx, ref)
	if err != nil {
		return img, false
	}
	m, err := c.images.Manifest(ctx, img)
	if err != nil {
		klog.V(2).InfoS("Image manifest unreadable; not a checkpoint image", "image", ref, "err", err)
		return img, false
	}
	return img, checkpoint.IsImage(m.Annotations)
}

// unpackCheckpointImage extracts a checkpoint image's layers, bottom
// first, into dir (as an archive: hostile input) and loads it.
func (c *Controller) unpackCheckpointImage(ctx context.Context, img meta.Image, dir string) (*checkpoint.Checkpoint, error) {
	m, err := c.images.Manifest(ctx, img)
	if err != nil {
		return nil, err
	}
	for _, l := range m.Layers {
		r, err := c.images.OpenLayer(ctx, l)
		if err != nil {
			return nil, err
		}
		err = checkpoint.Extract(ctx, r, dir)
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
	}
	return checkpoint.Load(dir)
}

// prepareRestore moves the unpacked checkpoint into the bundle (where
// the start finds it: restoreImages) and replays its filesystem changes
// onto the mounted rootfs.
func (c *Controller) prepareRestore(ctx context.Context, ckpt *checkpoint.Checkpoint, bundle, rootfs string) error {
	if ckpt == nil {
		return nil
	}
	dst := filepath.Join(bundle, restoreDir)
	if err := os.Rename(ckpt.Dir, dst); err != nil {
		return err
	}
	ckpt.Dir = dst
	return ckpt.ApplyRootfsDiff(ctx, rootfs)
}

// restoreIntoNewCgroup has CRIU restore the container's tasks into the
// cgroup its spec names (after NRI's adjustments), not into the
// checkpointed container's (checkpoint.WriteRestoreConfig says why).
func restoreIntoNewCgroup(spec *specs.Spec, ckpt *checkpoint.Checkpoint) error {
	if spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return nil
	}
	dir, err := cgroups.Resolve(spec.Linux.CgroupsPath)
	if err != nil {
		return err
	}
	conf, err := checkpoint.WriteRestoreConfig(ckpt.Dir, dir)
	if err != nil {
		return err
	}
	if spec.Annotations == nil {
		spec.Annotations = map[string]string{}
	}
	spec.Annotations[checkpoint.CRIUConfigAnnotation] = conf
	return nil
}

// restoreDir is where a container created from a checkpoint keeps it,
// in its bundle.
const restoreDir = "checkpoint"

// restoreImages is the CRIU images directory of a container created from
// a checkpoint, "" for any other container.
func restoreImages(bundle string) string {
	dir := filepath.Join(bundle, restoreDir, checkpoint.ImagesDir)
	if _, err := os.Stat(filepath.Join(dir, "inventory.img")); err != nil {
		return ""
	}
	return dir
}
