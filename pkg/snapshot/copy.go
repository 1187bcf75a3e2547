package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// copyTree copies the contents of src into the existing directory dst,
// preserving type, ownership, mode, xattrs, times and hardlinks. Symlinks
// in src are copied, never followed; every directory written into under
// dst was created by this walk, so nothing resolves outside dst either.
func copyTree(ctx context.Context, src, dst string) error {
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}
	type dirStat struct {
		path string
		st   unix.Stat_t
	}
	var dirs []dirStat

	err := filepath.WalkDir(src, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("lstat %s: %w", p, err)
		}
		ft := st.Mode & unix.S_IFMT
		if ft != unix.S_IFDIR && st.Nlink > 1 {
			k := inode{uint64(st.Dev), st.Ino}
			if first, ok := links[k]; ok {
				if err := os.Link(first, target); err != nil {
					return fmt.Errorf("hardlink %s: %w", target, err)
				}
				return nil
			}
			links[k] = target
		}
		switch ft {
		case unix.S_IFDIR:
			if rel != "." {
				if err := unix.Mkdir(target, 0o700); err != nil {
					return fmt.Errorf("mkdir %s: %w", target, err)
				}
			}
			dirs = append(dirs, dirStat{target, st})
		case unix.S_IFREG:
			if err := copyFile(p, target); err != nil {
				return err
			}
		case unix.S_IFLNK:
			l, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("readlink %s: %w", p, err)
			}
			if err := os.Symlink(l, target); err != nil {
				return fmt.Errorf("symlink %s: %w", target, err)
			}
		case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
			if err := unix.Mknod(target, st.Mode, int(st.Rdev)); err != nil {
				return fmt.Errorf("mknod %s: %w", target, err)
			}
		default:
			return fmt.Errorf("copy %s: unknown file type %#o", p, ft)
		}
		if err := copyMeta(p, target, &st); err != nil {
			return err
		}
		if ft != unix.S_IFDIR {
			return setTimes(target, &st)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Directory times last: filling a directory changes its mtime.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := setTimes(dirs[i].path, &dirs[i].st); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	// Reflink where the filesystem can (xfs, btrfs); otherwise io.Copy
	// uses copy_file_range.
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		if _, err := io.Copy(out, in); err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
	}
	return out.Close()
}

// copyMeta copies owner, then mode (chown clears setuid), then xattrs
// (chown clears security.capability).
func copyMeta(src, dst string, st *unix.Stat_t) error {
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("lchown %s: %w", dst, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", dst, err)
		}
	}
	return copyXattrs(src, dst)
}

func copyXattrs(src, dst string) error {
	size, err := unix.Llistxattr(src, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return fmt.Errorf("list xattrs of %s: %w", src, err)
	}
	if size == 0 {
		return nil
	}
	buf := make([]byte, size)
	n, err := unix.Llistxattr(src, buf)
	if err != nil {
		return fmt.Errorf("list xattrs of %s: %w", src, err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		vsize, err := unix.Lgetxattr(src, name, nil)
		if err != nil {
			return fmt.Errorf("get xattr %s of %s: %w", name, src, err)
		}
		val := make([]byte, vsize)
		vn, err := unix.Lgetxattr(src, name, val)
		if err != nil {
			return fmt.Errorf("get xattr %s of %s: %w", name, src, err)
		}
		if err := unix.Lsetxattr(dst, name, val[:vn], 0); err != nil {
			if name == "security.capability" || !(errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM)) {
				return fmt.Errorf("set xattr %s on %s: %w", name, dst, err)
			}
			klog.V(4).InfoS("Ignoring xattr that cannot be copied", "path", dst, "xattr", name, "err", err)
		}
	}
	return nil
}

func setTimes(p string, st *unix.Stat_t) error {
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", p, err)
	}
	return nil
}
