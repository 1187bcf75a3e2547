package oci

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
)

// Host feature files. Each is read once per process: enabling AppArmor or
// SELinux, or switching cgroup versions, takes a reboot.
const (
	apparmorEnabledFile = "/sys/module/apparmor/parameters/enabled"
	selinuxEnforceFile  = "/sys/fs/selinux/enforce"
	procSelfCgroup      = "/proc/self/cgroup"

	// maxProfileBytes bounds a Localhost seccomp profile; real ones are a
	// few tens of KiB.
	maxProfileBytes = 4 << 20
)

var (
	apparmorOnce = sync.OnceValue(func() bool {
		b, err := os.ReadFile(apparmorEnabledFile)
		return err == nil && len(b) > 0 && b[0] == 'Y'
	})
	selinuxOnce = sync.OnceValue(func() bool {
		// The enforce file exists whenever selinuxfs is mounted, in
		// permissive mode too: labels matter there as well (they are
		// logged and become enforced without restarting containers).
		_, err := os.Stat(selinuxEnforceFile)
		return err == nil
	})
	hugetlbOnce = sync.OnceValue(func() bool {
		return hugetlbController(cgroups.DefaultMount+"/cgroup.controllers", procSelfCgroup, CgroupV2())
	})
)

// AppArmorEnabled reports whether the kernel has AppArmor enabled. When it
// has not, AppArmor profiles in CRI requests are ignored (RuntimeDefault,
// Unconfined) or refused (Localhost), as other runtimes do.
func AppArmorEnabled() bool { return apparmorOnce() }

// SELinuxEnabled reports whether SELinux is enabled (selinuxfs mounted).
// When it is not, selinux_options are accepted and ignored.
func SELinuxEnabled() bool { return selinuxOnce() }

// CgroupV2 reports whether the host runs the unified cgroup v2 hierarchy
// only. A hybrid host (v1 controllers, an empty v2 tree at
// /sys/fs/cgroup/unified) is not: runc cannot apply "unified" resources
// there.
func CgroupV2() bool { return cgroups.Unified() }

// HugetlbController reports whether runc can apply hugepage limits: the
// hugetlb controller is enabled at the root of the unified hierarchy, or,
// on a cgroup v1 or hybrid host, mounted as a v1 hierarchy. kubelet sends
// hugepage_limits for every page size the node has, whether or not the
// controller exists; like kubelet's own cgroup manager (and containerd),
// the limits are left out where it does not.
func HugetlbController() bool { return hugetlbOnce() }

// hugetlbController reads the root's cgroup.controllers on a unified host
// and the process's v1 hierarchies (/proc/self/cgroup lines
// "ID:controllers:path" with an ID other than 0) otherwise. Only
// hierarchies that are mounted appear there, which is what runc needs.
func hugetlbController(controllersFile, procCgroupFile string, unified bool) bool {
	if unified {
		b, err := os.ReadFile(controllersFile)
		return err == nil && slices.Contains(strings.Fields(string(b)), "hugetlb")
	}
	b, err := os.ReadFile(procCgroupFile)
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		id, rest, _ := strings.Cut(line, ":")
		ctrls, _, _ := strings.Cut(rest, ":")
		if id != "0" && slices.Contains(strings.Split(ctrls, ","), "hugetlb") {
			return true
		}
	}
	return false
}

// readProfileFile reads a seccomp profile the node's administrator
// installed. Only a regular file of bounded size is read: the path comes
// from a pod spec.
func readProfileFile(p string) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(f, maxProfileBytes+1)); err != nil {
		return nil, err
	}
	if buf.Len() > maxProfileBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxProfileBytes)
	}
	return buf.Bytes(), nil
}
