package cgroups

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// rmdirBusyTimeout bounds how long RemovePod waits for a pod cgroup's last
// processes to be reaped.
const rmdirBusyTimeout = 5 * time.Second

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

// UpdateContainer does nothing: the runtime wrote the cgroup files, and
// nothing else owns them.
func (d *cgroupfs) UpdateContainer(context.Context, string, *specs.LinuxResources) error {
	return nil
}

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
func (d *cgroupfs) RemovePod(ctx context.Context, parent string) error {
	dir, err := Resolve(parent)
	if err != nil || dir == "/" {
		return fmt.Errorf("remove pod cgroup %q: not a pod cgroup", parent)
	}
	l, err := d.layout()
	if err != nil {
		return err
	}
	return removeEverywhere(ctx, l, dir)
}

// removeEverywhere removes the cgroup at dir (below the mount roots)
// from every hierarchy of l, waiting while killed members leave; one
// already gone counts as removed.
func removeEverywhere(ctx context.Context, l Layout, dir string) error {
	var errs []error
	for _, root := range l.Mounts {
		p := filepath.Join(root, dir)
		if err := rmdirBusy(ctx, p); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// rmdirBusy removes a cgroup directory, retrying while it is busy: a
// killed process stays a member of its cgroup until its parent (the
// shim) has reaped it, which can lag the kill by a scheduling delay on a
// loaded node.
func rmdirBusy(ctx context.Context, p string) error {
	delay := 10 * time.Millisecond
	deadline := time.Now().Add(rmdirBusyTimeout)
	for {
		err := unix.Rmdir(p)
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// UpdatePod writes the pod cgroup's files in each controller's hierarchy.
func (d *cgroupfs) UpdatePod(_ context.Context, parent string, res *specs.LinuxResources) error {
	dir, err := Resolve(parent)
	if err != nil || dir == "/" {
		return fmt.Errorf("update pod cgroup %q: not a pod cgroup", parent)
	}
	l, err := d.layout()
	if err != nil {
		return err
	}
	if err := writePodResources(l, dir, res); err != nil {
		return fmt.Errorf("update pod cgroup %s: %w", parent, err)
	}
	return nil
}

func (d *cgroupfs) CgroupsPath(parent, id string) string {
	if parent == "" {
		parent = "/"
	}
	return path.Join(parent, id)
}
