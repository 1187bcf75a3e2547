//go:build e2e

package framework

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
)

// EnvCgroupDriver chooses the cgroup driver of every test daemon
// (cgroupfs or systemd); unset, the daemon's own choice (systemd where
// systemd runs the node). The guest suite runs the same tests once per
// driver with it.
const EnvCgroupDriver = "CRI_RUNTIMED_E2E_CGROUP_DRIVER"

// CgroupDriver is the cgroup driver test daemons use.
func CgroupDriver() string {
	if d := os.Getenv(EnvCgroupDriver); d != "" {
		return d
	}
	if cgroups.SystemdRuns() {
		return cgroups.SystemdName
	}
	return cgroups.CgroupfsName
}

// IsolatedCgroupParent returns an option giving the daemon a default
// cgroup parent of its own (/cri-runtimed/e2e-<random> for cgroupfs, the
// slice crie2e_<random>.slice for systemd), so a test can check that no
// cgroup of its pods is left while other tests run, and the parent. When
// the test ends (after the daemon's own cleanup) whatever is left under it
// is killed and removed. Call it before NewDaemon or NewEnv.
func IsolatedCgroupParent(t testing.TB) (Option, string) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	parent := "/cri-runtimed/e2e-" + hex.EncodeToString(b[:])
	if CgroupDriver() == cgroups.SystemdName {
		parent = "crie2e_" + hex.EncodeToString(b[:]) + ".slice"
	}
	t.Cleanup(func() {
		if err := removeCgroupTree(parent); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return WithConfig("runtime.default_cgroup_parent", parent), parent
}

// CgroupRoots are the mounted cgroup hierarchies (v1 controllers and the
// v2 tree).
func CgroupRoots() []string {
	l, err := cgroups.HostLayout()
	if err != nil {
		return nil
	}
	return l.Mounts
}

// CgroupDir is the directory below the mount root of a cgroups path or
// pod cgroup parent in either driver's form.
func CgroupDir(t testing.TB, cgroupsPath string) string {
	t.Helper()
	dir, err := cgroups.Resolve(cgroupsPath)
	if err != nil {
		t.Fatalf("cgroups path %q: %v", cgroupsPath, err)
	}
	return dir
}

// CgroupDirs lists the cgroup directories below parent (not parent
// itself; a path or a slice) in every hierarchy, as absolute paths.
func CgroupDirs(parent string) []string {
	rel, err := cgroups.Resolve(parent)
	if err != nil {
		return []string{fmt.Sprintf("(cgroup parent %q: %v)", parent, err)}
	}
	var out []string
	for _, root := range CgroupRoots() {
		top := filepath.Join(root, rel)
		_ = filepath.WalkDir(top, func(p string, e os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if e.IsDir() && p != top {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// removeCgroupTree kills what still runs below parent and removes its
// directories, deepest first, then parent itself. A slice is stopped
// through systemd first, which does all of that for the units below it.
func removeCgroupTree(parent string) error {
	rel, err := cgroups.Resolve(parent)
	if err != nil {
		return err
	}
	var errs []error
	if strings.HasSuffix(parent, ".slice") {
		if out, err := exec.Command("systemctl", "stop", parent).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("systemctl stop %s: %v: %s", parent, err, out))
		}
	}
	for _, root := range CgroupRoots() {
		top := filepath.Join(root, rel)
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
		for _, dir := range dirs {
			if procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
				for _, f := range strings.Fields(string(procs)) {
					if pid, err := strconv.Atoi(f); err == nil {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			var err error
			for range 50 {
				if err = syscall.Rmdir(dir); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
			}
		}
	}
	return errors.Join(errs...)
}
