package stats

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// dirEntry is the cached usage of one key's directory. sem (capacity 1)
// serializes walks of the same key, so a burst of stats RPCs walks a layer
// once and the others wait for its result; a channel rather than a mutex
// so that waiting honours the caller's context.
type dirEntry struct {
	sem    chan struct{}
	dir    string
	at     time.Time
	valid  bool
	bytes  uint64
	inodes uint64
}

// ctxCheckEvery is how many entries a walk visits between context checks:
// often enough to stop a huge walk promptly, rarely enough to cost nothing.
const ctxCheckEvery = 1024

// DirUsage returns the disk space (allocated blocks, as du counts them)
// and the number of inodes used below dir, the container's writable layer
// (overlay upperdir or native snapshot directory). The result is reused for
// the Collector's TTL (10s by default) per key, so that listing the stats
// of many containers walks each layer at most once per TTL; an empty key
// disables the cache. A missing dir yields an error wrapping ErrNotFound.
//
// Files hardlinked within dir count once, and the walk stays on dir's
// filesystem: anything mounted below it (a volume, a bind mount) is not the
// layer's usage.
func (c *Collector) DirUsage(ctx context.Context, key, dir string) (bytes, inodes uint64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	if key == "" || c.dirTTL == 0 {
		return walkUsage(ctx, dir)
	}
	c.mu.Lock()
	e := c.dirs[key]
	if e == nil {
		e = &dirEntry{sem: make(chan struct{}, 1)}
		c.dirs[key] = e
	}
	c.mu.Unlock()

	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return 0, 0, fmt.Errorf("usage of %s: %w", dir, ctx.Err())
	}
	defer func() { <-e.sem }()

	now := c.now()
	if e.valid && e.dir == dir && now.Sub(e.at) < c.dirTTL && !now.Before(e.at) {
		return e.bytes, e.inodes, nil
	}
	bytes, inodes, err = walkUsage(ctx, dir)
	if err != nil {
		// A failed walk leaves no stale success behind for a layer that
		// is gone.
		e.valid = false
		return 0, 0, err
	}
	e.dir, e.at, e.valid, e.bytes, e.inodes = dir, now, true, bytes, inodes
	return bytes, inodes, nil
}

// walkUsage measures dir without caching.
func walkUsage(ctx context.Context, dir string) (bytes, inodes uint64, err error) {
	rootInfo, err := os.Lstat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, 0, fmt.Errorf("usage of %s: %w: %w", dir, ErrNotFound, err)
		}
		return 0, 0, fmt.Errorf("usage of %s: %w", dir, err)
	}
	if !rootInfo.IsDir() {
		return 0, 0, fmt.Errorf("usage of %s: not a directory", dir)
	}
	dev := rootInfo.Sys().(*syscall.Stat_t).Dev
	// Inodes with several links, by number; within one filesystem the
	// number identifies the inode.
	seen := map[uint64]struct{}{}
	visited := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, werr error) error {
		if werr != nil {
			// The container keeps writing while we walk: an entry
			// removed since its directory was listed is no error.
			if p != dir && errors.Is(werr, fs.ErrNotExist) {
				return nil
			}
			return werr
		}
		visited++
		if visited%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("no stat data for %s", p)
		}
		if st.Dev != dev {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.IsDir() && st.Nlink > 1 {
			if _, dup := seen[st.Ino]; dup {
				return nil
			}
			seen[st.Ino] = struct{}{}
		}
		inodes++
		bytes += uint64(st.Blocks) * 512
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("usage of %s: %w", dir, err)
	}
	return bytes, inodes, nil
}
