package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
	"github.com/cri-runtimed/cri-runtimed/pkg/userns"
)

// ErrImageInUse: the image is mounted as a volume of a container and
// cannot be removed until that container is.
var ErrImageInUse = errors.New("image is mounted as a volume")

// Image volumes (KEP-4639): a Mount naming an image gets a read-only
// snapshot view of that image's layers, mounted on the host in the
// container's bundle (nosuid, nodev, noexec; idmapped for a pod with a
// user namespace) and bound into the container, whole or at
// image_sub_path. The view keeps the image's layers from being collected;
// the record's ImageVolumes keeps the image pinned and its removal
// refused until the container is removed.

// imageVolumeKey is the snapshot key of a container's n-th image volume.
func imageVolumeKey(id string, n int) string {
	return id + "-imagevolume-" + strconv.Itoa(n)
}

// imageVolumeDir is where the n-th image volume is mounted on the host.
func imageVolumeDir(bundle string, n int) string {
	return filepath.Join(bundle, "imagevolumes", strconv.Itoa(n))
}

// resolveImageVolumes finds the image of each image mount; kubelet pulls
// them first, so an image not on the node is NotFound.
func (c *Controller) resolveImageVolumes(ctx context.Context, cfg *runtimeapi.ContainerConfig) ([]meta.Image, error) {
	var out []meta.Image
	for i, m := range cfg.GetMounts() {
		ref := m.GetImage().GetImage()
		if ref == "" {
			if m.GetImageSubPath() != "" {
				return nil, fmt.Errorf("%w: mounts[%d].image_sub_path needs mounts[%d].image", ErrInvalid, i, i)
			}
			continue
		}
		if m.GetHostPath() != "" {
			return nil, fmt.Errorf("%w: mounts[%d] names both an image and host_path %q", ErrInvalid, i, m.GetHostPath())
		}
		if sub := m.GetImageSubPath(); sub != "" && !filepath.IsLocal(sub) {
			return nil, fmt.Errorf("%w: mounts[%d].image_sub_path %q must be a relative path inside the image", ErrInvalid, i, sub)
		}
		img, err := c.images.Get(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("mounts[%d].image %q: %w", i, ref, err)
		}
		out = append(out, img)
	}
	return out, nil
}

// mountImageVolumes mounts the image volumes of a container being
// created and returns the config to generate its spec from: each image
// mount given the host path of its mount (the record keeps the config as
// kubelet sent it).
func (c *Controller) mountImageVolumes(ctx context.Context, id, bundle string, cfg *runtimeapi.ContainerConfig, imgs []meta.Image, uids, gids []specs.LinuxIDMapping) (*runtimeapi.ContainerConfig, error) {
	if len(imgs) == 0 {
		return cfg, nil
	}
	out := proto.Clone(cfg).(*runtimeapi.ContainerConfig)
	n := 0
	for i, m := range out.GetMounts() {
		if m.GetImage().GetImage() == "" {
			continue
		}
		root, err := c.mountImageVolume(ctx, id, bundle, n, imgs[n], uids, gids)
		if err != nil {
			return nil, fmt.Errorf("mounts[%d]: image volume %q: %w", i, m.GetImage().GetImage(), err)
		}
		src := root
		if sub := m.GetImageSubPath(); sub != "" {
			// The view is read-only: what the path resolves to now is what
			// runc binds.
			if src, err = securejoin.SecureJoin(root, sub); err != nil {
				return nil, fmt.Errorf("mounts[%d].image_sub_path %q: %w", i, sub, err)
			}
			if _, err := os.Stat(src); err != nil {
				return nil, fmt.Errorf("%w: mounts[%d].image_sub_path %q does not exist in image %s", ErrInvalid, i, sub, imgs[n].ID)
			}
		}
		m.HostPath = src
		m.Readonly = true
		n++
	}
	return out, nil
}

func (c *Controller) mountImageVolume(ctx context.Context, id, bundle string, n int, img meta.Image, uids, gids []specs.LinuxIDMapping) (string, error) {
	mounts, err := c.snap.View(ctx, imageVolumeKey(id, n), img.TopChainID().String())
	if err != nil {
		return "", fmt.Errorf("snapshot view: %w", err)
	}
	for i := range mounts {
		mounts[i].Options = append(mounts[i].Options, "ro", "nosuid", "nodev", "noexec")
	}
	dir := imageVolumeDir(bundle, n)
	target := filepath.Join(dir, "root")
	if err := os.MkdirAll(target, 0o711); err != nil {
		return "", err
	}
	if uids == nil {
		err = snapshot.MountAll(mounts, target)
	} else {
		// As the rootfs: the pod's root sees the image's files as its own.
		err = userns.MountRootfs(mounts, target, filepath.Join(dir, "idmap"), uids, gids)
	}
	if err != nil {
		return "", fmt.Errorf("mount: %w", err)
	}
	return target, nil
}

// unmountImageVolumes undoes mountImageVolumes for a container's record;
// each step is idempotent.
func (c *Controller) unmountImageVolumes(ctx context.Context, rec meta.Container, bundle string) error {
	for n := range rec.ImageVolumes {
		dir := imageVolumeDir(bundle, n)
		if err := userns.UnmountRootfs(filepath.Join(dir, "root"), filepath.Join(dir, "idmap")); err != nil {
			return fmt.Errorf("unmount image volume %d: %w", n, err)
		}
		if err := c.snap.Remove(ctx, imageVolumeKey(rec.ID, n)); err != nil && !errors.Is(err, snapshot.ErrNotFound) {
			return fmt.Errorf("remove image volume snapshot %d: %w", n, err)
		}
	}
	return nil
}

// removeImageVolumeSnapshots removes the snapshots of the image volumes of
// a container whose bundle is already gone (its pod was removed).
func (c *Controller) removeImageVolumeSnapshots(ctx context.Context, rec meta.Container) error {
	for n := range rec.ImageVolumes {
		if err := c.snap.Remove(ctx, imageVolumeKey(rec.ID, n)); err != nil && !errors.Is(err, snapshot.ErrNotFound) {
			return err
		}
	}
	return nil
}

// ImageVolumeUser is a container that mounts image imageID as a volume,
// "" if none does. From memory.
func (c *Controller) ImageVolumeUser(imageID string) string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, ctr := range c.ctrs {
		rec := ctr.Record()
		for _, v := range rec.ImageVolumes {
			if v == imageID {
				return rec.ID
			}
		}
	}
	return ""
}
