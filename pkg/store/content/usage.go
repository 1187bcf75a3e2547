package content

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// usage is disk space (allocated blocks, not apparent size) and inodes.
type usage struct{ bytes, inodes int64 }

func (u usage) plus(o usage) usage  { return usage{u.bytes + o.bytes, u.inodes + o.inodes} }
func (u usage) minus(o usage) usage { return usage{u.bytes - o.bytes, u.inodes - o.inodes} }

// totals is the store's usage kept as it changes, so that reporting it
// (kubelet asks for the image filesystem's usage every few seconds) reads
// two numbers instead of stat'ing every blob. The whole store is measured
// once, when it is opened; from then on each commit, delete and ingest
// change adjusts the totals.
type totals struct {
	mu sync.Mutex
	// base is the directories and the committed blobs.
	base usage
	// ingests is each ingest directory (by key) as last measured, plus
	// what its writer wrote since.
	ingests map[string]usage
}

func (t *totals) sum() usage {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.base
	for _, u := range t.ingests {
		s = s.plus(u)
	}
	return s
}

func (t *totals) addBase(u usage) {
	t.mu.Lock()
	t.base = t.base.plus(u)
	t.mu.Unlock()
}

func (t *totals) subBase(u usage) {
	t.mu.Lock()
	t.base = t.base.minus(u)
	t.mu.Unlock()
}

func (t *totals) setIngest(key string, u usage) {
	t.mu.Lock()
	t.ingests[key] = u
	t.mu.Unlock()
}

// growIngest counts bytes a writer just wrote (apparent size: the blocks
// are measured again when the writer closes).
func (t *totals) growIngest(key string, n int64) {
	t.mu.Lock()
	u := t.ingests[key]
	u.bytes += n
	t.ingests[key] = u
	t.mu.Unlock()
}

func (t *totals) dropIngest(key string) {
	t.mu.Lock()
	delete(t.ingests, key)
	t.mu.Unlock()
}

// Usage returns the disk space (allocated blocks, not apparent size) and
// the inodes used by the whole store: committed blobs, ingests and their
// directories. This is what kubelet's image filesystem accounting wants.
// It reads totals kept up to date by every change, never the disk.
func (s *Store) Usage(ctx context.Context) (bytes int64, inodes int64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, fmt.Errorf("content usage: %w", err)
	}
	u := s.usage.sum()
	return u.bytes, u.inodes, nil
}

// measureAll walks the store once, when it is opened, attributing each
// ingest directory's usage to its key.
func (s *Store) measureAll() error {
	t := &s.usage
	t.ingests = map[string]usage{}
	prefix := s.ingest + string(filepath.Separator)
	return filepath.WalkDir(s.root, func(path string, d fs.DirEntry, werr error) error {
		if werr != nil {
			if errors.Is(werr, fs.ErrNotExist) {
				return nil
			}
			return werr
		}
		u, err := entryUsage(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if rest, ok := strings.CutPrefix(path, prefix); ok {
			key, _, _ := strings.Cut(rest, string(filepath.Separator))
			t.ingests[key] = t.ingests[key].plus(u)
			return nil
		}
		t.base = t.base.plus(u)
		return nil
	})
}

func entryUsage(d fs.DirEntry) (usage, error) {
	fi, err := d.Info()
	if err != nil {
		return usage{}, err
	}
	return fileUsage(fi), nil
}

func fileUsage(fi fs.FileInfo) usage {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		// st_blocks is always in 512-byte units, whatever the fs block size.
		return usage{bytes: st.Blocks * 512, inodes: 1}
	}
	return usage{bytes: fi.Size(), inodes: 1}
}

// measureIngest measures one ingest directory (a few small files) and
// records it; called when its writer closes or truncates, off any stats
// path.
func (s *Store) measureIngest(key string) {
	var u usage
	_ = filepath.WalkDir(s.ingestPath(key), func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if eu, err := entryUsage(d); err == nil {
			u = u.plus(eu)
		}
		return nil
	})
	if u.inodes == 0 {
		s.usage.dropIngest(key)
		return
	}
	s.usage.setIngest(key, u)
}

// pathUsage is the usage of one file or directory (not its content).
func pathUsage(path string) (usage, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return usage{}, err
	}
	return fileUsage(fi), nil
}
