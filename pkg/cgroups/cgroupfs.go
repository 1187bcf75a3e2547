package cgroups

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupfs names cgroups by their path below the mount root; runc creates
// them (mkdir -p of the whole path) and removes the container's leaf.
type cgroupfs struct {
	defaultParent string
	layout        func() (Layout, error)
}

func newCgroupfs(o options) (*cgroupfs, error) {
	p := o.defaultParent
	if p == "" {
		p = DefaultCgroupfsParent
	}
	if !filepath.IsAbs(p) || strings.Contains(p, ":") {
		return nil, fmt.Errorf("default cgroup parent %q: the cgroupfs driver needs an absolute cgroup path", p)
	}
	return &cgroupfs{defaultParent: path.Clean(p), layout: o.layout}, nil
}

func (d *cgroupfs) Name() string          { return CgroupfsName }
func (d *cgroupfs) RuntimeArgs() []string { return nil }
func (d *cgroupfs) Close() error          { return nil }

func (d *cgroupfs) PodCgroup(podID, configured string) (string, bool, error) {
	if configured == "" {
		return path.Join(d.defaultParent, podID), true, nil
	}
	if strings.Contains(configured, ":") || (strings.HasSuffix(configured, ".slice") && !strings.Contains(configured, "/")) {
		return "", false, fmt.Errorf("%w %q: a systemd slice, but the runtime uses the cgroupfs driver (kubelet's cgroupDriver must match)", ErrInvalidParent, configured)
	}
	return configured, false, nil
}

// CreatePod does nothing: runc creates the whole path with the sandbox's
// cgroup.
func (d *cgroupfs) CreatePod(context.Context, string) error { return nil }

// RemovePod removes the pod's directory in every hierarchy: runc removed
// the containers' leaves below it.
func (d *cgroupfs) RemovePod(_ context.Context, parent string) error {
	dir, err := Resolve(parent)
	if err != nil || dir == "/" {
		return fmt.Errorf("remove pod cgroup %q: not a pod cgroup", parent)
	}
	l, err := d.layout()
	if err != nil {
		return err
	}
	var errs []error
	for _, root := range l.Mounts {
		p := filepath.Join(root, dir)
		if err := unix.Rmdir(p); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

func (d *cgroupfs) CgroupsPath(parent, id string) string {
	if parent == "" {
		parent = "/"
	}
	return path.Join(parent, id)
}
