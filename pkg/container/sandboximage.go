package container

import (
	"context"
	"errors"
	"fmt"

	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/reference"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// SandboxImage runs pods' sandbox process from a configured image (the
// `sandbox_image` setting) instead of the built-in pause. It lives here
// because this package owns root filesystems made from images; the pod
// controller only sees the mount and the arguments.
type SandboxImage struct {
	Ref    string
	Images *image.Service
	// AuthFile, when set, holds the credentials to pull Ref with (Docker's
	// config.json format); it is read at each pull, so rotated
	// credentials need no restart.
	AuthFile string
}

func (s *SandboxImage) key(id string) string { return "sandbox-" + id }

// Mount prepares a snapshot of the image (pulling it if absent) for the
// sandbox id, mounts it at rootfs and returns the process arguments.
func (s *SandboxImage) Mount(ctx context.Context, id, rootfs string) ([]string, error) {
	img, err := s.Images.Get(ctx, s.Ref)
	if errors.Is(err, image.ErrNotFound) {
		img, err = s.pull(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox image %s: %w", s.Ref, err)
	}
	cfg, err := s.Images.Config(ctx, img)
	if err != nil {
		return nil, err
	}
	args := append(append([]string(nil), cfg.Config.Entrypoint...), cfg.Config.Cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("sandbox image %s has neither Entrypoint nor Cmd", s.Ref)
	}
	snap := s.Images.Snapshotter()
	mounts, err := snap.Prepare(ctx, s.key(id), img.TopChainID().String())
	if err != nil {
		return nil, fmt.Errorf("prepare sandbox rootfs: %w", err)
	}
	if err := snapshot.MountAll(mounts, rootfs); err != nil {
		_ = snap.Remove(ctx, s.key(id))
		return nil, fmt.Errorf("mount sandbox rootfs: %w", err)
	}
	return args, nil
}

func (s *SandboxImage) pull(ctx context.Context) (meta.Image, error) {
	var creds registry.Credentials
	if s.AuthFile != "" {
		ref, err := reference.Parse(s.Ref)
		if err != nil {
			return meta.Image{}, err
		}
		if creds, err = registry.CredentialsFromFile(s.AuthFile, ref.Domain()); err != nil {
			return meta.Image{}, err
		}
	}
	return s.Images.Pull(ctx, s.Ref, creds)
}

// Unmount releases what Mount made; missing pieces are not an error.
func (s *SandboxImage) Unmount(ctx context.Context, id, rootfs string) error {
	if err := snapshot.UnmountAll(rootfs); err != nil {
		return err
	}
	if err := s.Images.Snapshotter().Remove(ctx, s.key(id)); err != nil && !errors.Is(err, snapshot.ErrNotFound) {
		return fmt.Errorf("remove sandbox rootfs: %w", err)
	}
	return nil
}
