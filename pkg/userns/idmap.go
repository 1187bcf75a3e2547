package userns

import (
	"errors"
	"fmt"
	"os/exec"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ErrUnsupported means the kernel or filesystem cannot idmap this mount.
var ErrUnsupported = errors.New("idmapped mounts are not supported here")

// IDMappedBind mounts src at dst (an existing directory) through an
// idmapped mount: files owned by host ID h on disk appear owned by
// HostID+h, so that, inside a user namespace with the same mappings,
// host root's files belong to the container's root.
func IDMappedBind(src, dst string, uids, gids []specs.LinuxIDMapping) error {
	nsFD, cleanup, err := userNamespaceFD(uids, gids)
	if err != nil {
		return err
	}
	defer cleanup()
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", src, err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(nsFD)}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("idmap %s: %w: %v", src, ErrUnsupported, err)
		}
		return fmt.Errorf("idmap %s: %w", src, err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move idmapped mount to %s: %w", dst, err)
	}
	return nil
}

// userNamespaceFD returns an fd of a user namespace with the mappings.
// The kernel only takes a namespace's mappings from its first process, so
// a short-lived child is made in it; the fd keeps the namespace alive
// after the child is gone.
func userNamespaceFD(uids, gids []specs.LinuxIDMapping) (int, func(), error) {
	conv := func(ms []specs.LinuxIDMapping) []syscall.SysProcIDMap {
		out := make([]syscall.SysProcIDMap, 0, len(ms))
		for _, m := range ms {
			out = append(out, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
		}
		return out
	}
	// The child is the daemon binary in pause mode: it blocks in pause(2)
	// before any Go code runs, and is killed once its namespace is open.
	cmd := exec.Command("/proc/self/exe", "pause")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: conv(uids),
		GidMappings: conv(gids),
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return -1, nil, fmt.Errorf("create user namespace: %w", err)
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err != nil {
		return -1, nil, fmt.Errorf("open user namespace: %w", err)
	}
	return fd, func() { unix.Close(fd) }, nil
}
