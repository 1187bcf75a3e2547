package cgroups

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Process cgroups are the cgroups of a process no OCI runtime started:
// the pod's pause when the shim starts it itself (runtime.sandbox_start
// "shim"). They are made as runc's cgroupfs driver makes a container's,
// so that the process is a member of the same cgroups, with the same
// limits, as a runc-run pause: a directory at the cgroups path in every
// hierarchy the host mounts (each v1 controller, name=systemd and the
// cgroup2 tree, as runc joins them all), cpuset copied down where empty,
// the CPU and memory limits written, and every device denied in a v1
// devices hierarchy (the process's root holds no device node anyway).
// Under the systemd driver they are scope units instead
// (process_systemd.go).

// ErrNotCgroupfs is returned for a cgroups path that is not a cgroupfs
// path (the systemd driver's "slice:prefix:name").
var ErrNotCgroupfs = errors.New("not a cgroupfs cgroups path")

// processDir checks a cgroups path (a cgroupfs path, or the systemd
// driver's for a process scope) and returns it below the mount roots.
func processDir(cgroupsPath string) (string, error) {
	if !strings.HasPrefix(cgroupsPath, "/") && !IsSystemdPath(cgroupsPath) {
		return "", fmt.Errorf("%w: %q", ErrNotCgroupfs, cgroupsPath)
	}
	dir, err := Resolve(cgroupsPath)
	if err != nil {
		return "", err
	}
	if dir == "/" {
		return "", fmt.Errorf("cgroups path %q is the root cgroup", cgroupsPath)
	}
	return dir, nil
}

// MakeProcess creates the process cgroup at the cgroupfs path cgroupsPath
// and writes res (CPU weight, quota and period, memory and swap limits)
// into it; it returns the cgroup.procs files that a pid must be written
// to. It undoes nothing on failure: RemoveProcess does.
func MakeProcess(l Layout, cgroupsPath string, res *specs.LinuxResources) ([]string, error) {
	if IsSystemdPath(cgroupsPath) {
		return nil, fmt.Errorf("%w: %q (a process scope: StartProcessScope)", ErrNotCgroupfs, cgroupsPath)
	}
	dir, err := processDir(cgroupsPath)
	if err != nil {
		return nil, err
	}
	if len(l.Mounts) == 0 {
		return nil, errors.New("no cgroup hierarchy is mounted")
	}
	var procs []string
	for _, root := range l.Mounts {
		if err := mkdirLevels(root, dir, root == l.V2Root, l.Unified()); err != nil {
			return nil, err
		}
		full := filepath.Join(root, dir)
		if _, err := os.Stat(filepath.Join(full, "devices.deny")); err == nil {
			if err := writeFile(full, "devices.deny", "a"); err != nil {
				return nil, err
			}
		}
		procs = append(procs, filepath.Join(full, "cgroup.procs"))
	}
	if res != nil {
		if err := UpdateProcess(context.Background(), l, cgroupsPath, res); err != nil {
			return nil, err
		}
	}
	return procs, nil
}

// mkdirLevels creates dir below root one level at a time, as runc does:
// a new v1 cpuset cgroup gets its parent's cpus and mems (it accepts no
// process while they are empty; a v2 one with them empty uses its
// parent's, and the v2 root has no cpuset.cpus to copy), and on a
// unified host each level's parent delegates its controllers to it.
func mkdirLevels(root, dir string, cgroup2, unified bool) error {
	cur := root
	for _, part := range strings.Split(strings.Trim(dir, "/"), "/") {
		parent := cur
		cur = filepath.Join(cur, part)
		if cgroup2 && unified {
			enableControllers(parent)
		}
		err := os.Mkdir(cur, 0o755)
		if err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create cgroup %s: %w", cur, err)
		}
		if cgroup2 {
			continue
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			b, err := os.ReadFile(filepath.Join(cur, f))
			if err != nil || strings.TrimSpace(string(b)) != "" {
				continue // not a cpuset hierarchy, or set
			}
			pb, err := os.ReadFile(filepath.Join(parent, f))
			if err != nil {
				return fmt.Errorf("read %s: %w", filepath.Join(parent, f), err)
			}
			if err := writeFile(cur, f, strings.TrimSpace(string(pb))); err != nil {
				return err
			}
		}
	}
	return nil
}

// enableControllers delegates to dir's children every controller dir
// has; one the kernel refuses (a threaded subtree, say) is left off, as
// runc leaves it.
func enableControllers(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return
	}
	on, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	have := strings.Fields(string(on))
	for _, c := range strings.Fields(string(b)) {
		if !slices.Contains(have, c) {
			_ = writeFile(dir, "cgroup.subtree_control", "+"+c)
		}
	}
}

// UpdateProcess writes res into the process cgroup at cgroupsPath (an
// update of the pod's resources, as `runc update` writes them); a process
// scope's unit gets them as properties first.
func UpdateProcess(ctx context.Context, l Layout, cgroupsPath string, res *specs.LinuxResources) error {
	dir, err := processDir(cgroupsPath)
	if err != nil {
		return err
	}
	if IsSystemdPath(cgroupsPath) {
		if err := setScopeProperties(ctx, cgroupsPath, res); err != nil {
			return err
		}
	}
	return writeProcessFiles(l, dir, res)
}

// writeProcessFiles writes res into the process cgroup at dir (below the
// mount roots): a pod's limits, and the memory+swap limit.
func writeProcessFiles(l Layout, dir string, res *specs.LinuxResources) error {
	m := res.Memory
	if m != nil && m.Swap != nil && !l.Unified() && l.V1Root != "" {
		// v1 keeps memory.limit_in_bytes <= memory.memsw.limit_in_bytes:
		// a limit that grows needs the new memsw first, one that shrinks
		// needs it after (runc tries the same two orders).
		memsw := func() error {
			err := writeFile(filepath.Join(l.V1Root, "memory", dir), "memory.memsw.limit_in_bytes", strconv.FormatInt(*m.Swap, 10))
			if errors.Is(err, os.ErrNotExist) {
				return nil // no swap accounting
			}
			return err
		}
		if err := memsw(); err != nil {
			if !errors.Is(err, unix.EINVAL) {
				return err
			}
			if err := writePodResources(l, dir, podLimits(res)); err != nil {
				return err
			}
			return memsw()
		}
		return writePodResources(l, dir, podLimits(res))
	}
	if err := writePodResources(l, dir, podLimits(res)); err != nil {
		return err
	}
	if m == nil || m.Swap == nil || !l.Unified() {
		return nil
	}
	v := "max"
	if *m.Swap > 0 && m.Limit != nil && *m.Limit > 0 {
		v = strconv.FormatInt(max(*m.Swap-*m.Limit, 0), 10)
	}
	if err := writeFile(filepath.Join(l.V2Root, dir), "memory.swap.max", v); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// RemoveProcess removes the process cgroup at cgroupsPath from every
// hierarchy, waiting while a killed process is still a member; one that
// does not exist is removed already.
func RemoveProcess(ctx context.Context, l Layout, cgroupsPath string) error {
	dir, err := processDir(cgroupsPath)
	if err != nil {
		return err
	}
	if IsSystemdPath(cgroupsPath) {
		return StopProcessScope(ctx, cgroupsPath)
	}
	return removeEverywhere(ctx, l, dir)
}

// KillProcess sends SIGKILL to every process of the process cgroup at
// cgroupsPath: what `runc delete --force` does to a container whose shim
// is gone.
func KillProcess(l Layout, cgroupsPath string) error {
	dir, err := processDir(cgroupsPath)
	if err != nil {
		return err
	}
	var errs []error
	for _, root := range l.Mounts {
		b, err := os.ReadFile(filepath.Join(root, dir, "cgroup.procs"))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
				if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
					errs = append(errs, fmt.Errorf("kill %d: %w", pid, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// IsMember reports whether pid runs in the process cgroup at cgroupsPath
// (its cgroup in the first hierarchy /proc/<pid>/cgroup lists): after a
// shim restart, this tells a pause from a process that reused its pid.
func IsMember(pid int, cgroupsPath string) bool {
	dir, err := processDir(cgroupsPath)
	if err != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) == 3 {
			return path.Clean(f[2]) == dir
		}
	}
	return false
}
