package snapshot

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// diskUsage is du of dir: allocated bytes (st_blocks, so sparse files and
// overlay whiteouts count for what they really take) and inodes, each
// hardlinked inode counted once.
func diskUsage(ctx context.Context, dir string) (Usage, error) {
	type inode struct{ dev, ino uint64 }
	var (
		u    Usage
		seen = map[inode]struct{}{}
	)
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("lstat %s: %w", p, err)
		}
		if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			k := inode{uint64(st.Dev), st.Ino}
			if _, ok := seen[k]; ok {
				return nil
			}
			seen[k] = struct{}{}
		}
		u.Size += st.Blocks * 512
		u.Inodes++
		return nil
	})
	if err != nil {
		return Usage{}, err
	}
	return u, nil
}
