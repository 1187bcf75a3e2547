package content

import (
	"context"
	// The digest package only knows algorithms whose hash is linked in.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

const (
	blobsDir  = "blobs"
	ingestDir = "ingest"

	// dirMode keeps the store private to the daemon: blobs may hold
	// credentials baked into private images.
	dirMode = 0o700
	// blobMode marks committed content as immutable.
	blobMode = 0o444
)

// Store is a content-addressed blob store rooted at one directory. It is safe
// for concurrent use by many goroutines; a single daemon process is expected
// to own the root (ref locking is in-process).
type Store struct {
	root   string
	blobs  string
	ingest string
	locks  *refLocks
	usage  totals
}

// New opens the store at root (normally /var/lib/cri-runtimed/content),
// creating root, blobs/ and ingest/ when missing.
func New(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("content store root %q: %w", root, err)
	}
	s := &Store{
		root:   abs,
		blobs:  filepath.Join(abs, blobsDir),
		ingest: filepath.Join(abs, ingestDir),
		locks:  newRefLocks(),
	}
	for _, dir := range []string{s.root, s.blobs, s.ingest} {
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return nil, fmt.Errorf("create content store dir: %w", err)
		}
		fi, err := os.Lstat(dir)
		if err != nil {
			return nil, fmt.Errorf("content store dir: %w", err)
		}
		// A symlink here could redirect every write outside the store.
		if !fi.IsDir() {
			return nil, fmt.Errorf("content store: %s is not a directory", dir)
		}
	}
	if err := s.measureAll(); err != nil {
		return nil, fmt.Errorf("content store usage: %w", err)
	}
	return s, nil
}

// Root returns the absolute root directory of the store.
func (s *Store) Root() string { return s.root }

// blobPath validates dgst before it is turned into a path: Validate only
// accepts registered algorithms and lower-case hex of the right length, so
// the result can never leave s.blobs.
func (s *Store) blobPath(dgst digest.Digest) (string, error) {
	if err := dgst.Validate(); err != nil {
		return "", fmt.Errorf("%w %q: %w", ErrInvalidDigest, string(dgst), err)
	}
	return filepath.Join(s.blobs, dgst.Algorithm().String(), dgst.Encoded()), nil
}

// Info returns size and commit time of a committed blob.
func (s *Store) Info(ctx context.Context, dgst digest.Digest) (Info, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("content info %s: %w", dgst, err)
	}
	p, err := s.blobPath(dgst)
	if err != nil {
		return Info{}, err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Info{}, fmt.Errorf("content %s: %w", dgst, ErrNotFound)
		}
		return Info{}, fmt.Errorf("content info %s: %w", dgst, err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("content %s: not a regular file", dgst)
	}
	return Info{Digest: dgst, Size: fi.Size(), CreatedAt: fi.ModTime()}, nil
}

// exists reports whether dgst (already validated by the caller) is committed.
func (s *Store) exists(dgst digest.Digest) (bool, error) {
	p, err := s.blobPath(dgst)
	if err != nil {
		return false, err
	}
	if _, err := os.Lstat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("content stat %s: %w", dgst, err)
	}
	return true, nil
}

// Open returns the committed blob for reading. The *os.File is an
// io.ReadSeekCloser and io.ReaderAt; the caller closes it. An open blob stays
// readable even if it is deleted meanwhile.
func (s *Store) Open(ctx context.Context, dgst digest.Digest) (*os.File, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("content open %s: %w", dgst, err)
	}
	p, err := s.blobPath(dgst)
	if err != nil {
		return nil, err
	}
	// O_NOFOLLOW: a symlink planted under blobs/ must not be served as content.
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("content %s: %w", dgst, ErrNotFound)
		}
		return nil, fmt.Errorf("content open %s: %w", dgst, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("content stat %s: %w", dgst, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("content %s: not a regular file", dgst)
	}
	return f, nil
}

// ReadAll reads a whole blob, refusing (ErrTooLarge) one larger than limit so
// that a hostile manifest or config cannot exhaust memory.
func (s *Store) ReadAll(ctx context.Context, dgst digest.Digest, limit int64) ([]byte, error) {
	f, err := s.Open(ctx, dgst)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("content stat %s: %w", dgst, err)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("content %s is %d bytes, limit %d: %w", dgst, fi.Size(), limit, ErrTooLarge)
	}
	// Read one byte past the limit so a file that grew after Stat is caught
	// too; committed blobs should never change, but this costs nothing.
	buf, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("content read %s: %w", dgst, err)
	}
	if int64(len(buf)) > limit {
		return nil, fmt.Errorf("content %s exceeds limit %d: %w", dgst, limit, ErrTooLarge)
	}
	return buf, nil
}

// Delete removes a committed blob. Readers that already opened it keep
// reading the old inode.
func (s *Store) Delete(ctx context.Context, dgst digest.Digest) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("content delete %s: %w", dgst, err)
	}
	p, err := s.blobPath(dgst)
	if err != nil {
		return err
	}
	u, err := pathUsage(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("content delete %s: %w", dgst, err)
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("content %s: %w", dgst, ErrNotFound)
		}
		return fmt.Errorf("content delete %s: %w", dgst, err)
	}
	s.usage.subBase(u)
	// Without this a crash could resurrect the blob; harmless for
	// correctness but it would undo garbage collection.
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("content delete %s: %w", dgst, err)
	}
	return nil
}

// Walk calls fn for every committed blob. Entries that are not valid blobs
// are skipped with a warning; blobs deleted during the walk are skipped. An
// error from fn stops the walk and is returned unchanged.
func (s *Store) Walk(ctx context.Context, fn func(Info) error) error {
	algs, err := os.ReadDir(s.blobs)
	if err != nil {
		return fmt.Errorf("content walk: %w", err)
	}
	for _, a := range algs {
		alg := digest.Algorithm(a.Name())
		if !a.IsDir() || !alg.Available() {
			klog.Warningf("content store: ignoring unexpected entry %s", filepath.Join(s.blobs, a.Name()))
			continue
		}
		algDir := filepath.Join(s.blobs, a.Name())
		entries, err := os.ReadDir(algDir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("content walk: %w", err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("content walk: %w", err)
			}
			dgst := digest.NewDigestFromEncoded(alg, e.Name())
			if err := dgst.Validate(); err != nil {
				klog.Warningf("content store: ignoring unexpected entry %s: %v", filepath.Join(algDir, e.Name()), err)
				continue
			}
			fi, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return fmt.Errorf("content walk %s: %w", dgst, err)
			}
			if !fi.Mode().IsRegular() {
				klog.Warningf("content store: ignoring non-regular entry %s", filepath.Join(algDir, e.Name()))
				continue
			}
			if err := fn(Info{Digest: dgst, Size: fi.Size(), CreatedAt: fi.ModTime()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// syncDir makes a rename, create or unlink in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
