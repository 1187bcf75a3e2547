package podsandbox

import (
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Modes of a pod's directory, the one level of every path to the pod's
// bundles, its containers' root filesystems and its /dev/shm that other
// host users cannot pass. A root container may create a setuid-root
// binary or a 0666 device node in its rootfs (CAP_MKNOD is a default
// capability), and the rootfs is mounted in the host's mount namespace
// where anyone reading mountinfo sees its path (the CVE-2021-41103
// class): without this level any host user could walk in and use them.
const (
	podDirMode = 0o700
	// podDirModeUserns lets the group of the pod's root through: runc
	// sets up the mounts of a pod with a user namespace as that
	// unprivileged host user, which must reach the bundle.
	podDirModeUserns = 0o710
)

// makePodDir creates the pod's directory. gids is the pod's user namespace gid mapping, nil
// without one.
func makePodDir(dir string, gids []specs.LinuxIDMapping) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
		return fmt.Errorf("create pod directory: %w", err)
	}
	if err := os.Mkdir(dir, podDirMode); err != nil && !os.IsExist(err) {
		return fmt.Errorf("create pod directory: %w", err)
	}
	return restrictPodDir(dir, gids)
}

// restrictPodDir gives an existing pod directory its owner and mode.
func restrictPodDir(dir string, gids []specs.LinuxIDMapping) error {
	mode, gid := os.FileMode(podDirMode), 0
	if len(gids) > 0 {
		mode, gid = podDirModeUserns, int(gids[0].HostID)
	}
	if err := os.Chown(dir, 0, gid); err != nil {
		return fmt.Errorf("chown pod directory: %w", err)
	}
	// Explicit: Mkdir's mode goes through the umask, and an existing
	// directory keeps whatever mode it had.
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("chmod pod directory: %w", err)
	}
	return nil
}
