package oci

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
)

// Host feature files. Each is read once per process: enabling AppArmor or
// SELinux, or switching cgroup versions, takes a reboot.
const (
	apparmorEnabledFile = "/sys/module/apparmor/parameters/enabled"
	selinuxEnforceFile  = "/sys/fs/selinux/enforce"

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
