package podsandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// removeCgroup deletes the pod's cgroup directory in every mounted cgroup
// hierarchy. Only for parents the daemon chose itself: runc creates them
// (mkdir -p) with the sandbox's cgroup but removes only the leaf, and a
// kubelet-given parent belongs to kubelet.
func removeCgroup(parent string) error {
	if parent == "" || parent == "/" || !filepath.IsAbs(parent) {
		return nil
	}
	roots, err := cgroupRoots()
	if err != nil {
		return err
	}
	var errs []error
	for _, root := range roots {
		dir := filepath.Join(root, parent)
		if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// cgroupRoots lists the mount points of cgroup v1 hierarchies and of the
// cgroup2 tree, deduplicated (v1 controllers may be co-mounted).
func cgroupRoots() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	defer f.Close()
	seen := map[string]bool{}
	var roots []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, fld := range fields {
			if fld == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		if t := fields[sep+1]; (t == "cgroup" || t == "cgroup2") && !seen[fields[4]] {
			seen[fields[4]] = true
			roots = append(roots, fields[4])
		}
	}
	return roots, sc.Err()
}
