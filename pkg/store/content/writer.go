package content

import (
	"context"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// rehashBufSize is the read size when re-hashing a partial ingest on resume.
const rehashBufSize = 1 << 20

// Writer appends to one ingest. It holds the ingest's ref lock from Store.Writer
// until Commit or Close, so at most one Writer per ref exists at a time.
// Its methods may be called from different goroutines (e.g. Close to cancel a
// blocked copy), but Write is not meant for concurrent use.
type Writer struct {
	s   *Store
	ref string
	key string
	dir string

	expected digest.Digest
	total    int64 // 0 = unknown
	alg      digest.Algorithm

	mu     sync.Mutex
	f      *os.File
	h      hash.Hash
	offset int64
	done   bool // committed or closed; the lock is released
}

// Writer opens, or resumes, the ingest for ref — an opaque caller-chosen key,
// usually the digest being downloaded. expected and size are checked at
// Commit; "" and 0 or -1 mean unknown. If expected is already committed it
// returns ErrExists so the caller can skip the download.
//
// Only one Writer per ref exists at a time: a second call blocks until the
// first Writer is committed or closed, or ctx is done. When the first
// committed, the second then gets ErrExists, so concurrent pulls of one blob
// download it once.
//
// A resumed ingest keeps its bytes (Offset reports how many) unless expected
// or size contradict what it was started with, in which case it restarts at
// zero.
func (s *Store) Writer(ctx context.Context, ref string, expected digest.Digest, size int64) (*Writer, error) {
	if ref == "" {
		return nil, errors.New("content writer: empty ref")
	}
	alg := digest.Canonical
	if expected != "" {
		ok, err := s.exists(expected)
		if err != nil {
			return nil, fmt.Errorf("content writer %q: %w", ref, err)
		}
		// Fast path: no need to queue behind another writer.
		if ok {
			return nil, fmt.Errorf("content %s: %w", expected, ErrExists)
		}
		alg = expected.Algorithm()
	}
	if size < 0 {
		size = 0
	}
	key := refKey(ref)
	if err := s.locks.lock(ctx, key); err != nil {
		return nil, fmt.Errorf("content writer %q: waiting for other writer: %w", ref, err)
	}
	w, err := s.openIngest(ctx, ref, key, expected, size, alg)
	if err != nil {
		// Whatever a failed open left (a new directory) is counted.
		s.measureIngest(key)
		s.locks.unlock(key)
		return nil, err
	}
	return w, nil
}

// openIngest runs with the ref lock held.
func (s *Store) openIngest(ctx context.Context, ref, key string, expected digest.Digest, size int64, alg digest.Algorithm) (*Writer, error) {
	dir := s.ingestPath(key)
	if expected != "" {
		// Re-check under the lock: the writer we waited for may have
		// committed this very blob.
		ok, err := s.exists(expected)
		if err != nil {
			return nil, fmt.Errorf("content writer %q: %w", ref, err)
		}
		if ok {
			if err := s.removeIngest(key); err != nil {
				klog.Warningf("content writer %q: dropping ingest of existing blob: %v", ref, err)
			}
			return nil, fmt.Errorf("content %s: %w", expected, ErrExists)
		}
	}

	if err := os.Mkdir(dir, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("content writer %q: create ingest: %w", ref, err)
	}
	now := time.Now()
	meta := ingestMeta{Ref: ref, Expected: expected, Total: size, StartedAt: now}
	reset := false
	old, err := readMeta(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// New ingest, or one interrupted before its metadata was written:
		// its data, if any, cannot be trusted to belong to this ref.
		reset = true
	case err != nil:
		klog.Warningf("content writer %q: restarting ingest: %v", ref, err)
		reset = true
	case old.Ref != ref:
		klog.Warningf("content writer %q: ingest dir belongs to ref %q, restarting", ref, old.Ref)
		reset = true
	case old.Expected != "" && expected != "" && old.Expected != expected:
		klog.InfoS("restarting ingest: expected digest changed", "ref", ref, "old", old.Expected, "new", expected)
		reset = true
	case old.Total > 0 && size > 0 && old.Total != size:
		klog.InfoS("restarting ingest: expected size changed", "ref", ref, "old", old.Total, "new", size)
		reset = true
	default:
		meta.StartedAt = old.StartedAt
	}

	// O_NOFOLLOW: never write through a symlink planted in the ingest dir.
	f, err := os.OpenFile(filepath.Join(dir, ingestDataFile), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("content writer %q: open ingest data: %w", ref, err)
	}
	w := &Writer{s: s, ref: ref, key: key, dir: dir, expected: expected, total: size, alg: alg, f: f}
	if err := w.prepare(ctx, reset, meta); err != nil {
		_ = f.Close()
		return nil, err
	}
	s.measureIngest(key)
	return w, nil
}

// prepare positions a freshly opened writer at the end of its data with the
// hash covering every byte already there.
func (w *Writer) prepare(ctx context.Context, reset bool, meta ingestMeta) error {
	fi, err := w.f.Stat()
	if err != nil {
		return fmt.Errorf("content writer %q: stat ingest data: %w", w.ref, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("content writer %q: ingest data is not a regular file", w.ref)
	}
	offset := fi.Size()
	if !reset && w.total > 0 && offset > w.total {
		klog.InfoS("restarting ingest: more data than expected size", "ref", w.ref, "offset", offset, "size", w.total)
		reset = true
	}
	if reset && offset > 0 {
		if err := w.f.Truncate(0); err != nil {
			return fmt.Errorf("content writer %q: reset ingest: %w", w.ref, err)
		}
		offset = 0
	}
	// Metadata goes first: an ingest with data is only resumed when its
	// metadata names the same ref.
	if err := writeMeta(w.dir, meta); err != nil {
		return fmt.Errorf("content writer %q: %w", w.ref, err)
	}
	h, start := w.loadHashState(offset)
	// The saved state is consumed now: bytes written from here on are not
	// covered by it, and a later Truncate followed by a crash must not pair
	// it with different bytes.
	if err := os.Remove(filepath.Join(w.dir, ingestHashFile)); err == nil {
		if err := syncDir(w.dir); err != nil {
			return fmt.Errorf("content writer %q: %w", w.ref, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("content writer %q: remove hash state: %w", w.ref, err)
	}
	if err := hashRange(ctx, w.f, h, start, offset); err != nil {
		return fmt.Errorf("content writer %q: re-hash partial ingest: %w", w.ref, err)
	}
	if _, err := w.f.Seek(offset, io.SeekStart); err != nil {
		return fmt.Errorf("content writer %q: seek: %w", w.ref, err)
	}
	w.h = h
	w.offset = offset
	if offset > 0 {
		klog.V(2).InfoS("resuming ingest", "ref", w.ref, "offset", offset, "rehashedFrom", start)
	}
	return nil
}

// loadHashState returns a hash covering the first start bytes of the data,
// from the state saved at the last Close when it is usable, else a fresh one
// with start 0.
func (w *Writer) loadHashState(offset int64) (hash.Hash, int64) {
	fresh := w.alg.Hash()
	if offset == 0 {
		return fresh, 0
	}
	b, err := os.ReadFile(filepath.Join(w.dir, ingestHashFile))
	if err != nil {
		return fresh, 0
	}
	var st hashState
	if err := json.Unmarshal(b, &st); err != nil || st.Algorithm != w.alg || st.Offset <= 0 || st.Offset > offset {
		return fresh, 0
	}
	h := w.alg.Hash()
	u, ok := h.(encoding.BinaryUnmarshaler)
	if !ok || u.UnmarshalBinary(st.State) != nil {
		return fresh, 0
	}
	return h, st.Offset
}

// hashRange feeds bytes [start, end) of f into h.
func hashRange(ctx context.Context, f *os.File, h hash.Hash, start, end int64) error {
	buf := make([]byte, rehashBufSize)
	for pos := start; pos < end; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(buf)), end-pos)
		m, err := f.ReadAt(buf[:n], pos)
		h.Write(buf[:m])
		pos += int64(m)
		if err != nil {
			if errors.Is(err, io.EOF) && pos < end {
				return fmt.Errorf("data shrank to %d bytes while reading up to %d: %w", pos, end, io.ErrUnexpectedEOF)
			}
			if !errors.Is(err, io.EOF) {
				return err
			}
		}
	}
	return nil
}

// Ref returns the ref the writer was opened for.
func (w *Writer) Ref() string { return w.ref }

// Digest is the digest of the bytes written so far; after a successful
// Commit it names the committed blob, which is how callers that did not know
// the expected digest (e.g. image import) learn it.
func (w *Writer) Digest() digest.Digest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return digest.NewDigest(w.alg, w.h)
}

// Offset is the number of bytes in the ingest: the point to resume a download
// from (e.g. an HTTP Range start).
func (w *Writer) Offset() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.offset
}

// Write appends p. A write that would exceed a known expected size is
// refused whole with ErrSizeMismatch, so a hostile server cannot fill the
// disk.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return 0, fmt.Errorf("write ingest %q: %w", w.ref, fs.ErrClosed)
	}
	if w.total > 0 && w.offset+int64(len(p)) > w.total {
		return 0, fmt.Errorf("write ingest %q: %d bytes at offset %d exceed expected size %d: %w",
			w.ref, len(p), w.offset, w.total, ErrSizeMismatch)
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.offset += int64(n)
	w.s.usage.growIngest(w.key, int64(n))
	if err != nil {
		return n, fmt.Errorf("write ingest %q: %w", w.ref, err)
	}
	return n, nil
}

// Truncate cuts the ingest back to size (at most Offset), typically 0 when
// the server cannot resume and sends the blob from the start.
func (w *Writer) Truncate(size int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return fmt.Errorf("truncate ingest %q: %w", w.ref, fs.ErrClosed)
	}
	if size < 0 || size > w.offset {
		return fmt.Errorf("truncate ingest %q: size %d outside [0, %d]", w.ref, size, w.offset)
	}
	if err := w.f.Truncate(size); err != nil {
		return fmt.Errorf("truncate ingest %q: %w", w.ref, err)
	}
	h := w.alg.Hash()
	// Truncate has no ctx; re-hashing a kept prefix is bounded by its size
	// and the common case (size 0) reads nothing.
	if err := hashRange(context.Background(), w.f, h, 0, size); err != nil {
		return fmt.Errorf("truncate ingest %q: re-hash: %w", w.ref, err)
	}
	if _, err := w.f.Seek(size, io.SeekStart); err != nil {
		return fmt.Errorf("truncate ingest %q: seek: %w", w.ref, err)
	}
	w.h = h
	w.offset = size
	w.s.measureIngest(w.key)
	return nil
}

// Commit verifies the ingest and makes it a visible blob. It fsyncs the
// data, checks the size and then the digest (over all bytes, resumed ones
// included), and renames the data into blobs/<alg>/<hex>. On a size or digest
// mismatch the ingest is deleted and a wrapped ErrSizeMismatch or
// ErrDigestMismatch names both values. If the blob was committed meanwhile
// by another ref, Commit succeeds and drops this ingest.
//
// Commit ends the Writer whatever the outcome (except a ctx already done on
// entry): the ref lock is released and further calls fail, Close is a no-op.
// After an I/O error the partial data is kept for a later resume.
func (w *Writer) Commit(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return fmt.Errorf("commit ingest %q: %w", w.ref, fs.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("commit ingest %q: %w", w.ref, err)
	}
	defer w.finish()
	return w.commit()
}

func (w *Writer) commit() (err error) {
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("commit ingest %q: sync: %w", w.ref, err)
	}
	if w.total > 0 && w.offset != w.total {
		w.discard()
		return fmt.Errorf("commit ingest %q: expected %d bytes, got %d: %w", w.ref, w.total, w.offset, ErrSizeMismatch)
	}
	actual := digest.NewDigest(w.alg, w.h)
	if w.expected != "" && actual != w.expected {
		w.discard()
		return fmt.Errorf("commit ingest %q: expected %s, got %s: %w", w.ref, w.expected, actual, ErrDigestMismatch)
	}

	// Immutable, and dated by commit rather than by the last write so
	// Info.CreatedAt means what it says.
	if err := w.f.Chmod(blobMode); err != nil {
		return fmt.Errorf("commit ingest %q: chmod: %w", w.ref, err)
	}
	renamed := false
	defer func() {
		// Kept for resume: a read-only data file could not be reopened for
		// writing by a non-root daemon.
		if err != nil && !renamed {
			_ = w.f.Chmod(0o600)
		}
	}()
	now := time.Now()
	if err := os.Chtimes(w.f.Name(), now, now); err != nil {
		return fmt.Errorf("commit ingest %q: set times: %w", w.ref, err)
	}

	target, err := w.s.blobPath(actual)
	if err != nil {
		return fmt.Errorf("commit ingest %q: %w", w.ref, err)
	}
	algDir := filepath.Dir(target)
	createdAlgDir := false
	if err := os.Mkdir(algDir, dirMode); err == nil {
		createdAlgDir = true
		if u, err := pathUsage(algDir); err == nil {
			w.s.usage.addBase(u)
		}
	} else if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("commit ingest %q: %w", w.ref, err)
	}
	if createdAlgDir {
		if err := syncDir(w.s.blobs); err != nil {
			return fmt.Errorf("commit ingest %q: %w", w.ref, err)
		}
	}

	blob, statErr := w.f.Stat()
	existed, err := renameNoReplace(w.f.Name(), target)
	if err != nil {
		return fmt.Errorf("commit ingest %q: %w", w.ref, err)
	}
	renamed = !existed
	if renamed && statErr == nil {
		w.s.usage.addBase(fileUsage(blob))
	}
	if existed {
		klog.V(2).InfoS("blob committed meanwhile by another writer", "ref", w.ref, "digest", actual)
	} else if err := syncDir(algDir); err != nil {
		return fmt.Errorf("commit ingest %q: %w", w.ref, err)
	}
	// The blob is durable; a leftover ingest dir after a crash here is
	// dropped by the next Writer for this ref (ErrExists) or by cleanup.
	if err := w.s.removeIngest(w.key); err != nil {
		klog.Warningf("commit ingest %q: %v", w.ref, err)
	}
	return nil
}

// renameNoReplace moves src to dst unless dst exists; existed reports that
// case. Because every blob is verified before commit, an existing dst has the
// same bytes and the caller can treat it as success.
func renameNoReplace(src, dst string) (existed bool, err error) {
	err = unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, unix.EEXIST):
		return true, nil
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS):
		// Filesystem without RENAME_NOREPLACE. Check then rename: losing the
		// race replaces a verified blob with identical bytes, which readers
		// holding the old inode do not notice.
		if _, err := os.Lstat(dst); err == nil {
			return true, nil
		}
		if err := os.Rename(src, dst); err != nil {
			return false, fmt.Errorf("rename into blobs: %w", err)
		}
		return false, nil
	default:
		return false, fmt.Errorf("rename into blobs: %w", err)
	}
}

// discard drops the ingest after a failed verification; the bytes are
// wrong, so resuming from them would only fail again.
func (w *Writer) discard() {
	if err := w.s.removeIngest(w.key); err != nil {
		klog.Warningf("content: drop ingest %q after failed verification: %v", w.ref, err)
	}
}

// finish closes the data file and releases the ref lock; w.mu is held.
func (w *Writer) finish() {
	w.done = true
	if err := w.f.Close(); err != nil {
		klog.V(4).InfoS("close ingest data", "ref", w.ref, "err", err)
	}
	// What the ingest left on disk (nothing after a commit), measured
	// while the ref lock still keeps other writers out.
	w.s.measureIngest(w.key)
	w.s.locks.unlock(w.key)
}

// Close releases the ref lock and keeps the partial data so a later Writer
// for the same ref resumes at Offset. It is a no-op after Commit or Close.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil
	}
	defer w.finish()
	// Durable data first, so the saved hash state never describes bytes
	// that a crash could lose.
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("close ingest %q: sync: %w", w.ref, err)
	}
	if err := w.saveHashState(); err != nil {
		// Only an optimisation: resume falls back to re-hashing.
		klog.V(2).InfoS("could not save ingest hash state", "ref", w.ref, "err", err)
	}
	return nil
}

func (w *Writer) saveHashState() error {
	if w.offset == 0 {
		return nil
	}
	m, ok := w.h.(encoding.BinaryMarshaler)
	if !ok {
		return fmt.Errorf("hash %s cannot be marshalled", w.alg)
	}
	state, err := m.MarshalBinary()
	if err != nil {
		return fmt.Errorf("marshal hash: %w", err)
	}
	b, err := json.Marshal(hashState{Algorithm: w.alg, Offset: w.offset, State: state})
	if err != nil {
		return fmt.Errorf("encode hash state: %w", err)
	}
	return writeFileAtomic(w.dir, ingestHashFile, b)
}
