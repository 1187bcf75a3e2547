package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// openDir returns a directory fd for rel (relative to root, "." for root),
// resolved with RESOLVE_BENEATH so that no symlink or ".." can take the
// resolution outside root. With create, missing directories are made (mode
// 0755, like tar does for implied parents). With noSymlinks, any symlink on
// the way is refused.
func (a *applier) openDir(rel string, create, noSymlinks bool) (int, error) {
	if rel == "." || rel == "" {
		return dupCloexec(a.rootFd)
	}
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	if noSymlinks {
		how.Resolve |= unix.RESOLVE_NO_SYMLINKS
	}
	fd, err := openat2(a.rootFd, rel, &how)
	if err == nil {
		return fd, nil
	}
	if !create || !errors.Is(err, unix.ENOENT) {
		return -1, resolveError(rel, err, noSymlinks)
	}

	// Walk down from root, creating each missing component inside the
	// already-resolved parent and resolving the new prefix from root again.
	cur, err := dupCloexec(a.rootFd)
	if err != nil {
		return -1, err
	}
	comps := strings.Split(rel, "/")
	for i, c := range comps {
		prefix := strings.Join(comps[:i+1], "/")
		fd, err := openat2(a.rootFd, prefix, &how)
		if errors.Is(err, unix.ENOENT) {
			if merr := unix.Mkdirat(cur, c, 0o755); merr != nil && !errors.Is(merr, unix.EEXIST) {
				unix.Close(cur)
				return -1, fmt.Errorf("create parent directory %q: %w", prefix, merr)
			} else if merr == nil {
				a.stats.Inodes++
			}
			fd, err = openat2(a.rootFd, prefix, &how)
		}
		unix.Close(cur)
		if err != nil {
			return -1, resolveError(prefix, err, noSymlinks)
		}
		cur = fd
	}
	return cur, nil
}

// dupCloexec duplicates fd with close-on-exec set. A plain dup(2) clears
// it: a shim, runc or CNI plugin started while an unpack runs would then
// inherit a directory fd on a layer (a shim keeps it for the pod's life),
// the precondition of CVE-2024-21626.
func dupCloexec(fd int) (int, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("dup fd: %w", err)
	}
	return nfd, nil
}

func openat2(dirfd int, p string, how *unix.OpenHow) (int, error) {
	for range 16 {
		fd, err := unix.Openat2(dirfd, p, how)
		// EAGAIN: a concurrent rename raced the resolution; retry.
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		return fd, err
	}
	return -1, fmt.Errorf("openat2 %q: %w", p, unix.EAGAIN)
}

func resolveError(rel string, err error, noSymlinks bool) error {
	switch {
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%w: %q resolves outside the root (absolute or escaping symlink, or a mount)", ErrUnsafePath, rel)
	case noSymlinks && errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%w: %q goes through a symlink", ErrUnsafePath, rel)
	case errors.Is(err, unix.ENOSYS):
		return fmt.Errorf("resolve %q: openat2 unavailable (Linux 5.6+ required): %w", rel, err)
	}
	return fmt.Errorf("resolve parent directory %q: %w", rel, err)
}

func lstatAt(dirfd int, name string) (unix.Stat_t, bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("lstat %q: %w", name, err)
	}
	return st, true, nil
}

// removeAllAt removes name in dirfd recursively without following any
// symlink. A missing name is not an error.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) {
		return fmt.Errorf("unlink %q: %w", name, err)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %q: %w", name, err)
	}
	names, err := readDirNames(fd)
	if err == nil {
		for _, n := range names {
			if err = removeAllAt(fd, n); err != nil {
				break
			}
		}
	}
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("in %q: %w", name, err)
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("rmdir %q: %w", name, err)
	}
	return nil
}

// readDirNames lists fd without taking ownership of it.
func readDirNames(fd int) ([]string, error) {
	dup, err := dupCloexec(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	return f.Readdirnames(-1)
}

func setTimesAt(dirfd int, name string, t dirTime) error {
	ts := []unix.Timespec{
		{Sec: t.atime.Unix(), Nsec: int64(t.atime.Nanosecond())},
		{Sec: t.mtime.Unix(), Nsec: int64(t.mtime.Nanosecond())},
	}
	if err := unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// metaAt applies ownership, mode, xattrs and times to the object just created
// at name, through an O_PATH fd so that nothing is followed.
func (a *applier) metaAt(dirfd int, name string, isSymlink bool, hdr *tar.Header) error {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %q: %w", name, err)
	}
	err = a.setMeta(fd, true, isSymlink, hdr)
	unix.Close(fd)
	if err != nil {
		return err
	}
	return setTimesAt(dirfd, name, times(hdr))
}

// setMeta sets owner, then mode (chown clears setuid/setgid), then xattrs
// (chown and writes clear security.capability). fd is a real fd, or with
// opath an O_PATH fd, reached through its /proc/self/fd magic link, which
// resolves to the object itself and nothing beyond.
func (a *applier) setMeta(fd int, opath, isSymlink bool, hdr *tar.Header) error {
	var err error
	if opath {
		err = unix.Fchownat(fd, "", hdr.Uid, hdr.Gid, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
	} else {
		err = unix.Fchown(fd, hdr.Uid, hdr.Gid)
	}
	if err != nil {
		return fmt.Errorf("chown %d:%d: %w", hdr.Uid, hdr.Gid, err)
	}
	if !isSymlink {
		mode := uint32(hdr.Mode) & 0o7777
		if opath {
			err = unix.Chmod(procFdPath(fd), mode)
		} else {
			err = unix.Fchmod(fd, mode)
		}
		if err != nil {
			return fmt.Errorf("chmod %#o: %w", mode, err)
		}
	}
	return setXattrs(fd, opath, hdr)
}

func procFdPath(fd int) string {
	return "/proc/self/fd/" + strconv.Itoa(fd)
}

func setXattrs(fd int, opath bool, hdr *tar.Header) error {
	var names []string
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, paxXattrPrefix) {
			names = append(names, strings.TrimPrefix(k, paxXattrPrefix))
		}
	}
	sort.Strings(names)
	for _, name := range names {
		value := []byte(hdr.PAXRecords[paxXattrPrefix+name])
		if skip, why := skipXattr(name); skip {
			klog.V(4).InfoS("Skipping xattr from layer", "entry", hdr.Name, "xattr", name, "reason", why)
			continue
		}
		var err error
		if opath {
			err = unix.Setxattr(procFdPath(fd), name, value, 0)
		} else {
			err = unix.Fsetxattr(fd, name, value, 0)
		}
		if err == nil {
			continue
		}
		if xattrErrorFatal(name, err) {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
		klog.V(2).InfoS("Ignoring xattr that cannot be set", "entry", hdr.Name, "xattr", name, "err", err)
	}
	return nil
}

// skipXattr decides which xattrs from a tar are never applied.
// trusted.overlay.* would let a layer forge overlayfs metadata (opaque
// markers, redirects, metacopy origins) in an upperdir; the only overlay
// xattrs written are the ones Apply derives from OCI whiteouts.
func skipXattr(name string) (bool, string) {
	switch {
	case strings.HasPrefix(name, "trusted.overlay."), strings.HasPrefix(name, "user.overlay."):
		return true, "overlay metadata is derived from whiteouts only"
	case strings.HasPrefix(name, "user."), strings.HasPrefix(name, "trusted."),
		strings.HasPrefix(name, "security."), strings.HasPrefix(name, "system."):
		return false, ""
	}
	return true, "unknown xattr namespace"
}

// xattrErrorFatal: a lost security.capability silently breaks binaries
// (ping, setcap'd daemons), so it fails the layer. Everything else is best
// effort where the filesystem or object type cannot hold it (user.* on a
// symlink, security.selinux without SELinux), but real I/O errors are fatal.
func xattrErrorFatal(name string, err error) bool {
	if name == "security.capability" {
		return true
	}
	for _, e := range []error{unix.ENOTSUP, unix.EOPNOTSUPP, unix.EPERM, unix.EACCES, unix.EINVAL, unix.ERANGE, unix.E2BIG} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}
