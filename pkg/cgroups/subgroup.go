package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// RuntimeSubgroup is the cgroup crun makes inside a container's systemd
// scope on cgroup v2 (run.oci.systemd.subgroup's default) and runs the
// container's processes in; runc makes none. crun (1.8.1, Debian 12's)
// writes the container's limits there, not on the scope. It is looked for
// once, right after the runtime's create, and again when the daemon
// recovers the container. The create is a `runc run` when no NRI plugin
// is connected (pkg/container's Start), so the container's code may have
// begun by then, as at a recovery: only a container that may write its
// own cgroup (a privileged one) could make such a directory first, and
// it would mislead its own stats only (the scope gets the limits the
// container has anyway).
const RuntimeSubgroup = "container"

// processCgroup returns the cgroup the processes of the container whose
// linux.cgroupsPath is cgroupsPath run in, as a path below the mount root
// (a form Resolve accepts): the runtime's sub-cgroup of the scope where
// there is one, the container's cgroup otherwise. sub tells which. It
// costs one stat: callers decide once per container, not per stats call.
func processCgroup(l Layout, cgroupsPath string) (dir string, sub bool, err error) {
	dir, err = Resolve(cgroupsPath)
	if err != nil {
		return "", false, err
	}
	if !l.Unified() {
		return dir, false, nil
	}
	child := path.Join(dir, RuntimeSubgroup)
	fi, err := os.Stat(filepath.Join(l.V2Root, child))
	switch {
	case err == nil && fi.IsDir():
		return child, true, nil
	case err == nil || errors.Is(err, fs.ErrNotExist):
		return dir, false, nil
	}
	return "", false, fmt.Errorf("cgroup of container %s: %w", cgroupsPath, err)
}

// ContainerCreated finds the cgroup of the container's processes (see
// processCgroup). Where the runtime made a sub-cgroup of the scope and
// wrote the limits there (crun), the scope's unit gets them as
// properties, as after an update (systemd_update.go): the scope then
// reads as runc leaves it, and a systemd daemon-reload keeps the limits.
// resources is called only then: reading them costs a decode of the
// bundle's config.json.
func (d *systemd) ContainerCreated(ctx context.Context, cgroupsPath string, resources func() (*specs.LinuxResources, error)) (string, error) {
	l, err := d.layout()
	if err != nil {
		return "", err
	}
	dir, sub, err := processCgroup(l, cgroupsPath)
	if err != nil || !sub {
		return dir, err
	}
	r, err := resources()
	if err != nil {
		return "", err
	}
	if err := d.UpdateContainer(ctx, cgroupsPath, r); err != nil {
		return "", err
	}
	return dir, nil
}

// ContainerCreated: runc and crun run the processes in the cgroup named
// (crun's sub-cgroup belongs to its systemd driver), and they wrote its
// files, which nothing else owns.
func (d *cgroupfs) ContainerCreated(_ context.Context, cgroupsPath string, _ func() (*specs.LinuxResources, error)) (string, error) {
	return Resolve(cgroupsPath)
}
