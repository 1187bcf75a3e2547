package content

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	digest "github.com/opencontainers/go-digest"
	"k8s.io/klog/v2"
)

// Files inside ingest/<key>/.
const (
	ingestDataFile  = "data"
	ingestMetaFile  = "meta.json"
	ingestHashFile  = "hashstate.json"
	ingestTmpSuffix = ".tmp"
)

// ingestMeta is what an ingest remembers besides its bytes. The update time
// is not stored: the data file's mtime already tracks every write for free.
type ingestMeta struct {
	Ref       string        `json:"ref"`
	Expected  digest.Digest `json:"expected,omitempty"`
	Total     int64         `json:"total,omitempty"`
	StartedAt time.Time     `json:"startedAt"`
}

// hashState lets a resumed writer skip re-reading the partial file: it is
// the marshalled hash after Offset bytes, saved when the writer was closed.
type hashState struct {
	Algorithm digest.Algorithm `json:"algorithm"`
	Offset    int64            `json:"offset"`
	State     []byte           `json:"state"`
}

// refKey names the ingest directory of ref. Hashing makes any opaque ref,
// including hostile ones with "/" or "..", a safe single path element.
func refKey(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return hex.EncodeToString(sum[:])
}

func (s *Store) ingestPath(key string) string {
	return filepath.Join(s.ingest, key)
}

// writeFileAtomic replaces dir/name so a crash leaves either the old or the
// new content, never a torn file. Callers hold the ingest lock, so a fixed
// temp name cannot collide.
func writeFileAtomic(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+ingestTmpSuffix)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("rename %s: %w", name, err)
	}
	return nil
}

func readMeta(dir string) (ingestMeta, error) {
	var m ingestMeta
	b, err := os.ReadFile(filepath.Join(dir, ingestMetaFile))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("parse ingest metadata in %s: %w", dir, err)
	}
	return m, nil
}

func writeMeta(dir string, m ingestMeta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode ingest metadata: %w", err)
	}
	return writeFileAtomic(dir, ingestMetaFile, b)
}

// ingestUpdatedAt is the latest of the data and metadata mtimes: data moves
// on every write, metadata whenever a writer (re)opens the ingest.
func ingestUpdatedAt(dir string) (offset int64, updated time.Time, err error) {
	dirInfo, err := os.Stat(dir)
	if err != nil {
		return 0, time.Time{}, err
	}
	updated = dirInfo.ModTime()
	if !dirInfo.IsDir() {
		return 0, updated, nil
	}
	for _, name := range []string{ingestDataFile, ingestMetaFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return 0, time.Time{}, err
		}
		if name == ingestDataFile {
			offset = fi.Size()
		}
		if fi.ModTime().After(updated) {
			updated = fi.ModTime()
		}
	}
	return offset, updated, nil
}

// ListIngests reports the ingests on disk, including those whose writer is
// active (their offset is a live snapshot) and interrupted ones waiting for
// resume. Directories without readable metadata are skipped.
func (s *Store) ListIngests(ctx context.Context) ([]IngestStatus, error) {
	entries, err := os.ReadDir(s.ingest)
	if err != nil {
		return nil, fmt.Errorf("list ingests: %w", err)
	}
	var out []IngestStatus
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("list ingests: %w", err)
		}
		if !e.IsDir() {
			continue
		}
		dir := s.ingestPath(e.Name())
		m, err := readMeta(dir)
		if err != nil {
			// Either mid-creation or mid-removal; CleanupIngests handles
			// leftovers once they are old.
			klog.V(4).InfoS("skipping ingest without metadata", "dir", dir, "err", err)
			continue
		}
		offset, updated, err := ingestUpdatedAt(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("list ingests: %w", err)
		}
		out = append(out, IngestStatus{
			Ref:       m.Ref,
			Offset:    offset,
			Expected:  m.Expected,
			Total:     m.Total,
			UpdatedAt: updated,
		})
	}
	return out, nil
}

// Abort deletes the ingest for ref. If a writer holds ref, Abort waits for it
// to be closed (or ctx to end), so partial data is never pulled out from
// under an active download. Returns ErrNotFound if there is no such ingest.
func (s *Store) Abort(ctx context.Context, ref string) error {
	if ref == "" {
		return errors.New("abort ingest: empty ref")
	}
	key := refKey(ref)
	if err := s.locks.lock(ctx, key); err != nil {
		return fmt.Errorf("abort ingest %q: waiting for writer: %w", ref, err)
	}
	defer s.locks.unlock(key)
	dir := s.ingestPath(key)
	if _, err := os.Lstat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("ingest %q: %w", ref, ErrNotFound)
		}
		return fmt.Errorf("abort ingest %q: %w", ref, err)
	}
	if err := s.removeIngest(key); err != nil {
		return fmt.Errorf("abort ingest %q: %w", ref, err)
	}
	return nil
}

// removeIngest deletes an ingest directory; the caller holds its lock.
func (s *Store) removeIngest(key string) error {
	if err := os.RemoveAll(s.ingestPath(key)); err != nil {
		s.measureIngest(key)
		return fmt.Errorf("remove ingest: %w", err)
	}
	s.usage.dropIngest(key)
	return syncDir(s.ingest)
}

// CleanupIngests removes ingests not written for olderThan, e.g. downloads
// abandoned before a restart. Ingests with an active writer are never
// touched, however old their last write.
func (s *Store) CleanupIngests(ctx context.Context, olderThan time.Duration) error {
	entries, err := os.ReadDir(s.ingest)
	if err != nil {
		return fmt.Errorf("cleanup ingests: %w", err)
	}
	cutoff := time.Now().Add(-olderThan)
	var errs []error
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("cleanup ingests: %w", err)
		}
		key := e.Name()
		if !s.locks.tryLock(key) {
			continue
		}
		err := s.cleanupOne(key, cutoff)
		s.locks.unlock(key)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup ingests: %w", err)
	}
	return nil
}

func (s *Store) cleanupOne(key string, cutoff time.Time) error {
	dir := s.ingestPath(key)
	// Entries that are not ingest directories (stray files) are removed by
	// the same age rule: nothing else belongs in ingest/.
	_, updated, err := ingestUpdatedAt(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("ingest %s: %w", key, err)
	}
	if !updated.Before(cutoff) {
		return nil
	}
	ref := key
	if m, err := readMeta(dir); err == nil {
		ref = m.Ref
	}
	klog.InfoS("removing stale ingest", "ref", ref, "updatedAt", updated)
	if err := s.removeIngest(key); err != nil {
		return fmt.Errorf("ingest %q: %w", ref, err)
	}
	return nil
}
