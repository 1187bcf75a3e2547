package userns

import (
	"errors"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Probe checks that the filesystem of dir (where the snapshots live) can
// be idmapped: what the root filesystem and image volumes of a pod with a
// user namespace need, so that the runtime reports user namespaces only
// where they work. It idmaps a scratch directory in dir and undoes it.
func Probe(dir string) error {
	src, err := os.MkdirTemp(dir, ".idmap-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	dst := filepath.Join(src, "mnt")
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 65534, Size: 1}}
	if err := IDMappedBind(src, dst, m, m); err != nil {
		return err
	}
	return unix.Unmount(dst, unix.MNT_DETACH)
}

// MountSetattrSupported reports whether the kernel has mount_setattr(2)
// (Linux 5.12), which recursive read-only mounts need.
func MountSetattrSupported() bool {
	err := unix.MountSetattr(-1, "", unix.AT_EMPTY_PATH, &unix.MountAttr{})
	return !errors.Is(err, unix.ENOSYS)
}
