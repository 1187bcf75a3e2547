package content

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(filepath.Join(t.TempDir(), "content"))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// blob returns deterministic test data of n bytes.
func blob(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// put writes and commits data under ref with full verification.
func put(t *testing.T, s *Store, ref string, data []byte) digest.Digest {
	t.Helper()
	ctx := context.Background()
	dgst := digest.FromBytes(data)
	w, err := s.Writer(ctx, ref, dgst, int64(len(data)))
	if err != nil {
		t.Fatalf("Writer(%q): %v", ref, err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return dgst
}

func ingestCount(t *testing.T, s *Store) int {
	t.Helper()
	ents, err := os.ReadDir(s.ingest)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestNewCreatesLayout(t *testing.T) {
	s := newStore(t)
	for _, dir := range []string{s.Root(), s.blobs, s.ingest} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatalf("stat %s: %v", dir, err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != dirMode {
			t.Errorf("%s: mode %v, want dir %o", dir, fi.Mode(), dirMode)
		}
	}
	// Reopening an existing store works.
	if _, err := New(s.Root()); err != nil {
		t.Fatalf("reopen: %v", err)
	}
}

func TestWriteCommitRead(t *testing.T) {
	tests := []struct {
		name         string
		data         []byte
		giveExpected bool
		giveSize     int64 // -2: use len(data)
		chunk        int
	}{
		{name: "known digest and size", data: blob(3 << 20), giveExpected: true, giveSize: -2, chunk: 64 << 10},
		{name: "unknown size", data: blob(1000), giveExpected: true, giveSize: -1, chunk: 7},
		{name: "zero size means unknown", data: blob(10), giveExpected: true, giveSize: 0, chunk: 10},
		{name: "nothing known", data: blob(4096), giveExpected: false, giveSize: -1, chunk: 100},
		{name: "empty blob", data: []byte{}, giveExpected: true, giveSize: 0, chunk: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t)
			want := digest.FromBytes(tt.data)
			var expected digest.Digest
			if tt.giveExpected {
				expected = want
			}
			size := tt.giveSize
			if size == -2 {
				size = int64(len(tt.data))
			}
			w, err := s.Writer(ctx, "ref-"+tt.name, expected, size)
			if err != nil {
				t.Fatalf("Writer: %v", err)
			}
			if w.Offset() != 0 {
				t.Fatalf("Offset = %d, want 0", w.Offset())
			}
			for p := tt.data; len(p) > 0; {
				n := min(tt.chunk, len(p))
				if _, err := w.Write(p[:n]); err != nil {
					t.Fatalf("Write: %v", err)
				}
				p = p[n:]
			}
			if err := w.Commit(ctx); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			if got := w.Digest(); got != want {
				t.Errorf("Writer.Digest = %s, want %s", got, want)
			}
			if _, err := w.Write([]byte("x")); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("Write after Commit: %v, want fs.ErrClosed", err)
			}
			if err := w.Commit(ctx); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("second Commit: %v, want fs.ErrClosed", err)
			}
			if err := w.Close(); err != nil {
				t.Errorf("Close after Commit: %v", err)
			}

			info, err := s.Info(ctx, want)
			if err != nil {
				t.Fatalf("Info: %v", err)
			}
			if info.Digest != want || info.Size != int64(len(tt.data)) || info.CreatedAt.IsZero() {
				t.Errorf("Info = %+v", info)
			}
			got, err := s.ReadAll(ctx, want, int64(len(tt.data)))
			if err != nil {
				t.Fatalf("ReadAll: %v", err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Errorf("ReadAll returned different bytes")
			}
			f, err := s.Open(ctx, want)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != blobMode {
				t.Errorf("blob mode %v, want %o", fi.Mode().Perm(), blobMode)
			}
			if n := ingestCount(t, s); n != 0 {
				t.Errorf("%d ingests left after commit", n)
			}
			// A later writer for the same blob is told to skip the download.
			if _, err := s.Writer(ctx, "other", want, -1); !errors.Is(err, ErrExists) {
				t.Errorf("Writer for existing blob: %v, want ErrExists", err)
			}
		})
	}
}

func TestReadAllLimit(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := blob(100)
	dgst := put(t, s, "r", data)
	tests := []struct {
		limit   int64
		wantErr error
	}{
		{limit: 100},
		{limit: 1 << 20},
		{limit: 99, wantErr: ErrTooLarge},
		{limit: 0, wantErr: ErrTooLarge},
	}
	for _, tt := range tests {
		_, err := s.ReadAll(ctx, dgst, tt.limit)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("ReadAll(limit=%d) = %v, want %v", tt.limit, err, tt.wantErr)
		}
	}
}

func TestResumeAfterClose(t *testing.T) {
	tests := []struct {
		name string
		// tamper runs between Close and the resume.
		tamper func(t *testing.T, dir string)
	}{
		{name: "saved hash state"},
		{name: "no hash state, re-hash", tamper: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, ingestHashFile)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "corrupt hash state, re-hash", tamper: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, ingestHashFile), []byte("{garbage"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "hash state beyond data, re-hash", tamper: func(t *testing.T, dir string) {
			// As after a crash that lost the tail of the data file.
			if err := os.Truncate(filepath.Join(dir, ingestDataFile), 1000); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t)
			data := blob(1<<20 + 123)
			dgst := digest.FromBytes(data)
			half := len(data) / 2
			ref := "layer-" + dgst.String()

			w, err := s.Writer(ctx, ref, dgst, int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(data[:half]); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := w.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if _, err := s.Info(ctx, dgst); !errors.Is(err, ErrNotFound) {
				t.Fatalf("partial blob visible: %v", err)
			}
			want := int64(half)
			stateFile := filepath.Join(s.ingestPath(refKey(ref)), ingestHashFile)
			if _, err := os.Stat(stateFile); err != nil {
				t.Fatalf("Close saved no hash state: %v", err)
			}
			if tt.tamper != nil {
				tt.tamper(t, s.ingestPath(refKey(ref)))
				if fi, _ := os.Stat(filepath.Join(s.ingestPath(refKey(ref)), ingestDataFile)); fi.Size() < want {
					want = fi.Size()
				}
			}

			w, err = s.Writer(ctx, ref, dgst, int64(len(data)))
			if err != nil {
				t.Fatalf("resume Writer: %v", err)
			}
			if got := w.Offset(); got != want {
				t.Fatalf("Offset = %d, want %d", got, want)
			}
			// Consumed on open so it can never describe later bytes.
			if _, err := os.Stat(stateFile); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("hash state still present after resume: %v", err)
			}
			if _, err := w.Write(data[want:]); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(ctx); err != nil {
				t.Fatalf("Commit after resume: %v", err)
			}
			got, err := s.ReadAll(ctx, dgst, int64(len(data)))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("ReadAll after resume: %v (equal=%v)", err, bytes.Equal(got, data))
			}
		})
	}
}

func TestResumeRestartsOnChangedDescriptor(t *testing.T) {
	ctx := context.Background()
	a, b := blob(100), blob(200)
	tests := []struct {
		name       string
		secondDgst digest.Digest
		secondSize int64
		wantOffset int64
	}{
		{name: "same descriptor resumes", secondDgst: digest.FromBytes(a), secondSize: 100, wantOffset: 50},
		{name: "unknown descriptor resumes", secondDgst: "", secondSize: -1, wantOffset: 50},
		{name: "other digest restarts", secondDgst: digest.FromBytes(b), secondSize: -1, wantOffset: 0},
		{name: "other size restarts", secondDgst: "", secondSize: 200, wantOffset: 0},
		{name: "size below offset restarts", secondDgst: "", secondSize: 10, wantOffset: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			w, err := s.Writer(ctx, "ref", digest.FromBytes(a), 100)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(a[:50]); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			w, err = s.Writer(ctx, "ref", tt.secondDgst, tt.secondSize)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if got := w.Offset(); got != tt.wantOffset {
				t.Errorf("Offset = %d, want %d", got, tt.wantOffset)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	ctx := context.Background()
	data := blob(1000)
	dgst := digest.FromBytes(data)
	tests := []struct {
		name     string
		garbage  []byte // written, then cut back
		keep     int64  // Truncate(keep); garbage must start with data[:keep]
		wantFail bool
	}{
		{name: "restart from zero", garbage: []byte("not the blob at all"), keep: 0},
		{name: "keep prefix", garbage: append(append([]byte{}, data[:300]...), "junk"...), keep: 300},
		{name: "beyond offset", garbage: []byte("abc"), keep: 4, wantFail: true},
		{name: "negative", garbage: []byte("abc"), keep: -1, wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			w, err := s.Writer(ctx, "ref", dgst, int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if _, err := w.Write(tt.garbage); err != nil {
				t.Fatal(err)
			}
			err = w.Truncate(tt.keep)
			if tt.wantFail {
				if err == nil {
					t.Fatal("Truncate succeeded, want error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Truncate: %v", err)
			}
			if w.Offset() != tt.keep {
				t.Fatalf("Offset = %d, want %d", w.Offset(), tt.keep)
			}
			if _, err := w.Write(data[tt.keep:]); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(ctx); err != nil {
				t.Fatalf("Commit: %v", err)
			}
		})
	}
}

func TestTruncateThenResumeIgnoresOldHashState(t *testing.T) {
	// Close saves hash state at offset 500; a resumed writer truncates and
	// writes other bytes, then "crashes" (no Close). The next resume must
	// not combine the old state with the new bytes.
	ctx := context.Background()
	s := newStore(t)
	data := blob(1000)
	dgst := digest.FromBytes(data)
	w, err := s.Writer(ctx, "ref", dgst, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(bytes.Repeat([]byte{0xff}, 500)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, err = s.Writer(ctx, "ref", dgst, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[:600]); err != nil {
		t.Fatal(err)
	}
	// Simulate the crash: drop the writer without Close.
	if err := w.f.Close(); err != nil {
		t.Fatal(err)
	}
	s.locks.unlock(w.key)

	w, err = s.Writer(ctx, "ref", dgst, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if w.Offset() != 600 {
		t.Fatalf("Offset = %d, want 600", w.Offset())
	}
	if _, err := w.Write(data[600:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func TestVerificationFailure(t *testing.T) {
	ctx := context.Background()
	data := blob(500)
	good := digest.FromBytes(data)
	wrong := digest.FromBytes([]byte("something else"))
	tests := []struct {
		name      string
		expected  digest.Digest
		size      int64
		write     []byte
		wantWrite error // error from Write
		wantErr   error // error from Commit
		wantInMsg []string
	}{
		{
			name: "digest mismatch", expected: wrong, size: 500, write: data,
			wantErr: ErrDigestMismatch, wantInMsg: []string{wrong.String(), good.String()},
		},
		{
			name: "short blob", expected: good, size: 500, write: data[:499],
			wantErr: ErrSizeMismatch, wantInMsg: []string{"500", "499"},
		},
		{
			name: "size wrong but digest right", expected: good, size: 501, write: data,
			wantErr: ErrSizeMismatch, wantInMsg: []string{"501", "500"},
		},
		{
			name: "write beyond expected size", expected: good, size: 400, write: data,
			wantWrite: ErrSizeMismatch, wantErr: ErrSizeMismatch, wantInMsg: []string{"400", "0"},
		},
		{
			name: "unknown size, digest mismatch", expected: wrong, size: -1, write: data,
			wantErr: ErrDigestMismatch, wantInMsg: []string{wrong.String(), good.String()},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			w, err := s.Writer(ctx, "ref", tt.expected, tt.size)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(tt.write); !errors.Is(err, tt.wantWrite) {
				t.Fatalf("Write: %v, want %v", err, tt.wantWrite)
			}
			err = w.Commit(ctx)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Commit: %v, want %v", err, tt.wantErr)
			}
			for _, s := range tt.wantInMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if n := ingestCount(t, s); n != 0 {
				t.Errorf("%d ingests left after failed verification", n)
			}
			for _, d := range []digest.Digest{good, wrong} {
				if _, err := s.Info(ctx, d); !errors.Is(err, ErrNotFound) {
					t.Errorf("Info(%s) = %v, want ErrNotFound", d, err)
				}
			}
			// The lock was released: a new writer does not block.
			tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			w2, err := s.Writer(tctx, "ref", tt.expected, tt.size)
			if err != nil {
				t.Fatalf("Writer after failed Commit: %v", err)
			}
			if w2.Offset() != 0 {
				t.Errorf("new writer resumes at %d, want 0", w2.Offset())
			}
			w2.Close()
		})
	}
}

func TestConcurrentWritersSerialize(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := blob(64 << 10)
	dgst := digest.FromBytes(data)
	ref := dgst.String()

	first, err := s.Writer(ctx, ref, dgst, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		w   *Writer
		err error
	}
	second := make(chan result, 1)
	go func() {
		w, err := s.Writer(ctx, ref, dgst, int64(len(data)))
		second <- result{w, err}
	}()

	select {
	case r := <-second:
		t.Fatalf("second Writer returned while first is open: %v", r.err)
	case <-time.After(100 * time.Millisecond):
	}

	if _, err := first.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-second:
		if !errors.Is(r.err, ErrExists) {
			t.Fatalf("second Writer: %v, want ErrExists", r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second Writer still blocked after first committed")
	}
}

func TestConcurrentWritersManyGoroutines(t *testing.T) {
	// Many pulls of one blob: exactly one downloads, the rest see ErrExists.
	ctx := context.Background()
	s := newStore(t)
	data := blob(32 << 10)
	dgst := digest.FromBytes(data)
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		downloads int
		exists    int
	)
	for range 16 {
		wg.Go(func() {
			w, err := s.Writer(ctx, dgst.String(), dgst, int64(len(data)))
			if errors.Is(err, ErrExists) {
				mu.Lock()
				exists++
				mu.Unlock()
				return
			}
			if err != nil {
				t.Errorf("Writer: %v", err)
				return
			}
			defer w.Close()
			if _, err := w.Write(data); err != nil {
				t.Errorf("Write: %v", err)
				return
			}
			if err := w.Commit(ctx); err != nil {
				t.Errorf("Commit: %v", err)
				return
			}
			mu.Lock()
			downloads++
			mu.Unlock()
		})
	}
	wg.Wait()
	if downloads != 1 || exists != 15 {
		t.Errorf("downloads=%d exists=%d, want 1 and 15", downloads, exists)
	}
}

func TestCloseLetsWaiterResume(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := blob(1000)
	dgst := digest.FromBytes(data)
	first, err := s.Writer(ctx, "ref", dgst, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Write(data[:400]); err != nil {
		t.Fatal(err)
	}
	done := make(chan *Writer, 1)
	go func() {
		w, err := s.Writer(ctx, "ref", dgst, 1000)
		if err != nil {
			t.Errorf("second Writer: %v", err)
		}
		done <- w
	}()
	time.Sleep(50 * time.Millisecond)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	w := <-done
	if w == nil {
		return
	}
	if w.Offset() != 400 {
		t.Fatalf("Offset = %d, want 400", w.Offset())
	}
	if _, err := w.Write(data[400:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestWriterContextCancelWhileWaiting(t *testing.T) {
	tests := []struct {
		name    string
		mkCtx   func() (context.Context, context.CancelFunc)
		wantErr error
	}{
		{name: "deadline", mkCtx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, wantErr: context.DeadlineExceeded},
		{name: "cancel", mkCtx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, wantErr: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			holder, err := s.Writer(context.Background(), "ref", "", -1)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := tt.mkCtx()
			defer cancel()
			if _, err := s.Writer(ctx, "ref", "", -1); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Writer: %v, want %v", err, tt.wantErr)
			}
			if err := s.Abort(ctx, "ref"); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Abort: %v, want %v", err, tt.wantErr)
			}
			// The abandoned wait must not have taken the lock.
			if err := holder.Close(); err != nil {
				t.Fatal(err)
			}
			w, err := s.Writer(context.Background(), "ref", "", -1)
			if err != nil {
				t.Fatalf("Writer after holder closed: %v", err)
			}
			w.Close()
		})
	}
}

func TestInvalidDigestRejected(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	// A file just outside the store that a path escape would reach.
	outside := filepath.Join(filepath.Dir(s.Root()), "etc")
	if err := os.WriteFile(outside, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	hex64 := strings.Repeat("a", 64)
	bad := []digest.Digest{
		"",
		"sha256:../../etc",
		"sha256:../../../../../etc/passwd",
		"sha256:",
		"sha256",
		digest.Digest("sha256:" + strings.ToUpper(hex64)),
		digest.Digest("sha256:" + hex64[:63]),
		digest.Digest("sha256:" + hex64 + "/.."),
		digest.Digest("sha256:" + hex64[:62] + ".."),
		"md5:d41d8cd98f00b204e9800998ecf8427e",
		digest.Digest("../..:" + hex64),
		digest.Digest("sha256/../..:" + hex64),
		digest.Digest(":" + hex64),
	}
	for _, d := range bad {
		t.Run(string(d), func(t *testing.T) {
			if _, err := s.Info(ctx, d); !errors.Is(err, ErrInvalidDigest) {
				t.Errorf("Info: %v, want ErrInvalidDigest", err)
			}
			if f, err := s.Open(ctx, d); !errors.Is(err, ErrInvalidDigest) {
				if f != nil {
					f.Close()
				}
				t.Errorf("Open: %v, want ErrInvalidDigest", err)
			}
			if _, err := s.ReadAll(ctx, d, 1<<20); !errors.Is(err, ErrInvalidDigest) {
				t.Errorf("ReadAll: %v, want ErrInvalidDigest", err)
			}
			if err := s.Delete(ctx, d); !errors.Is(err, ErrInvalidDigest) {
				t.Errorf("Delete: %v, want ErrInvalidDigest", err)
			}
			if d == "" {
				return // "" means unknown to Writer
			}
			if w, err := s.Writer(ctx, "ref", d, -1); !errors.Is(err, ErrInvalidDigest) {
				if w != nil {
					w.Close()
				}
				t.Errorf("Writer: %v, want ErrInvalidDigest", err)
			}
		})
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("file outside store touched: %v", err)
	}
}

func TestHostileRefStaysInIngest(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	for _, ref := range []string{"../../../etc/passwd", "/abs/path", "a/b/c", "..", "with\x00nul"} {
		w, err := s.Writer(ctx, ref, "", -1)
		if err != nil {
			t.Fatalf("Writer(%q): %v", ref, err)
		}
		if filepath.Dir(w.dir) != s.ingest {
			t.Errorf("ref %q: ingest dir %s outside %s", ref, w.dir, s.ingest)
		}
		w.Close()
	}
	list, err := s.ListIngests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 5 {
		t.Errorf("ListIngests: %d entries, want 5", len(list))
	}
}

func TestWalk(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	want := map[digest.Digest]int64{}
	for i := range 5 {
		data := blob(100 + i)
		want[put(t, s, "ref", data)] = int64(len(data))
	}
	// Junk that Walk must skip.
	if err := os.WriteFile(filepath.Join(s.blobs, "sha256", "not-a-digest"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(s.blobs, "md5"), 0o700); err != nil {
		t.Fatal(err)
	}
	// An open ingest is not a blob.
	w, err := s.Writer(ctx, "partial", "", -1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}

	got := map[digest.Digest]int64{}
	if err := s.Walk(ctx, func(i Info) error {
		got[i.Digest] = i.Size
		return nil
	}); err != nil {
		t.Fatalf("Walk: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("Walk saw %d blobs, want %d", len(got), len(want))
	}
	for d, size := range want {
		if got[d] != size {
			t.Errorf("Walk: %s size %d, want %d", d, got[d], size)
		}
	}

	stop := errors.New("stop")
	calls := 0
	err = s.Walk(ctx, func(Info) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Walk with stopping fn: err=%v calls=%d", err, calls)
	}
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := blob(300)
	dgst := put(t, s, "ref", data)

	f, err := s.Open(ctx, dgst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	steps := []struct {
		name    string
		wantErr error
	}{
		{name: "present", wantErr: nil},
		{name: "already gone", wantErr: ErrNotFound},
	}
	for _, st := range steps {
		if err := s.Delete(ctx, dgst); !errors.Is(err, st.wantErr) {
			t.Errorf("Delete (%s): %v, want %v", st.name, err, st.wantErr)
		}
	}
	if _, err := s.Info(ctx, dgst); !errors.Is(err, ErrNotFound) {
		t.Errorf("Info after Delete: %v", err)
	}
	if _, err := s.Open(ctx, dgst); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open after Delete: %v", err)
	}
	// A reader that opened before the delete keeps its bytes.
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("read of deleted-but-open blob: %v", err)
	}
	// The blob can be written again.
	put(t, s, "ref", data)
}

func TestUsage(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	b0, i0, err := s.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if i0 < 3 {
		t.Errorf("empty store: %d inodes, want at least root, blobs, ingest", i0)
	}

	put(t, s, "a", blob(256<<10))
	b1, i1, err := s.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b1-b0 < 256<<10 {
		t.Errorf("usage grew by %d bytes after a 256KiB blob", b1-b0)
	}
	if i1 != i0+2 { // blobs/sha256 and the blob
		t.Errorf("inodes %d -> %d, want +2", i0, i1)
	}

	w, err := s.Writer(ctx, "partial", "", -1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(blob(128 << 10)); err != nil {
		t.Fatal(err)
	}
	b2, i2, err := s.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b2-b1 < 128<<10 {
		t.Errorf("usage grew by %d bytes after a 128KiB ingest", b2-b1)
	}
	if i2 <= i1 {
		t.Errorf("ingest not counted in inodes: %d -> %d", i1, i2)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.Usage(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Usage with cancelled ctx: %v", err)
	}
}

func TestListIngestsAndAbort(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := blob(1000)
	dgst := digest.FromBytes(data)

	w, err := s.Writer(ctx, "one", dgst, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[:300]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	active, err := s.Writer(ctx, "two", "", -1)
	if err != nil {
		t.Fatal(err)
	}
	defer active.Close()
	if _, err := active.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}

	list, err := s.ListIngests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byRef := map[string]IngestStatus{}
	for _, st := range list {
		byRef[st.Ref] = st
	}
	tests := []struct {
		ref  string
		want IngestStatus
	}{
		{ref: "one", want: IngestStatus{Ref: "one", Offset: 300, Expected: dgst, Total: 1000}},
		{ref: "two", want: IngestStatus{Ref: "two", Offset: 5}},
	}
	if len(list) != len(tests) {
		t.Fatalf("ListIngests: %+v", list)
	}
	for _, tt := range tests {
		got, ok := byRef[tt.ref]
		if !ok {
			t.Errorf("ingest %q missing", tt.ref)
			continue
		}
		if time.Since(got.UpdatedAt) > time.Minute {
			t.Errorf("%q UpdatedAt %v not recent", tt.ref, got.UpdatedAt)
		}
		got.UpdatedAt = time.Time{}
		if got != tt.want {
			t.Errorf("ingest %q = %+v, want %+v", tt.ref, got, tt.want)
		}
	}

	if err := s.Abort(ctx, "one"); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if err := s.Abort(ctx, "one"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Abort: %v, want ErrNotFound", err)
	}
	list, err = s.ListIngests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Ref != "two" {
		t.Errorf("after Abort: %+v", list)
	}
	// Aborted ingest starts from zero.
	w, err = s.Writer(ctx, "one", dgst, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Offset() != 0 {
		t.Errorf("Offset after Abort = %d", w.Offset())
	}
}

func TestCleanupIngests(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	old := time.Now().Add(-2 * time.Hour)
	age := func(t *testing.T, ref string) {
		t.Helper()
		dir := s.ingestPath(refKey(ref))
		for _, p := range []string{filepath.Join(dir, ingestDataFile), filepath.Join(dir, ingestMetaFile), dir} {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk := func(t *testing.T, ref string) *Writer {
		t.Helper()
		w, err := s.Writer(ctx, ref, "", -1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(ref)); err != nil {
			t.Fatal(err)
		}
		return w
	}

	stale := mk(t, "stale")
	stale.Close()
	age(t, "stale")

	fresh := mk(t, "fresh")
	fresh.Close()

	busy := mk(t, "busy") // old but its writer is still open
	defer busy.Close()
	age(t, "busy")

	// Leftover of a crash before metadata was written.
	orphan := filepath.Join(s.ingest, refKey("orphan"))
	if err := os.Mkdir(orphan, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(orphan, old, old); err != nil {
		t.Fatal(err)
	}

	if err := s.CleanupIngests(ctx, time.Hour); err != nil {
		t.Fatalf("CleanupIngests: %v", err)
	}
	tests := []struct {
		ref      string
		wantKept bool
	}{
		{ref: "stale", wantKept: false},
		{ref: "fresh", wantKept: true},
		{ref: "busy", wantKept: true},
		{ref: "orphan", wantKept: false},
	}
	for _, tt := range tests {
		_, err := os.Stat(s.ingestPath(refKey(tt.ref)))
		if kept := err == nil; kept != tt.wantKept {
			t.Errorf("ingest %q kept=%v, want %v (%v)", tt.ref, kept, tt.wantKept, err)
		}
	}
	// The busy writer is undisturbed.
	if _, err := busy.Write([]byte("more")); err != nil {
		t.Errorf("busy writer after cleanup: %v", err)
	}
}

func TestCommitWhenBlobAppearedMeanwhile(t *testing.T) {
	// Two refs for the same bytes (e.g. the same layer pulled under two
	// names without a known digest): both commits succeed, one blob.
	ctx := context.Background()
	s := newStore(t)
	data := blob(2000)
	dgst := digest.FromBytes(data)
	var ws []*Writer
	for _, ref := range []string{"a", "b"} {
		w, err := s.Writer(ctx, ref, "", -1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	for _, w := range ws {
		if err := w.Commit(ctx); err != nil {
			t.Fatalf("Commit %q: %v", w.Ref(), err)
		}
	}
	if n := ingestCount(t, s); n != 0 {
		t.Errorf("%d ingests left", n)
	}
	got, err := s.ReadAll(ctx, dgst, 1<<20)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("ReadAll: %v", err)
	}
}

func TestCommitContextDone(t *testing.T) {
	s := newStore(t)
	w, err := s.Writer(context.Background(), "ref", "", -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Commit(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit: %v, want context.Canceled", err)
	}
	// Still usable, data kept.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, err = s.Writer(context.Background(), "ref", "", -1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Offset() != 3 {
		t.Errorf("Offset = %d, want 3", w.Offset())
	}
}

func TestLoadHashState(t *testing.T) {
	// The saved state must let a resume skip re-reading the prefix.
	ctx := context.Background()
	s := newStore(t)
	data := blob(5000)
	w, err := s.Writer(ctx, "ref", "", -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[:3000]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		offset    int64
		wantStart int64
	}{
		{name: "data as saved", offset: 3000, wantStart: 3000},
		{name: "data grew after save", offset: 4000, wantStart: 3000},
		{name: "data shorter than state", offset: 2999, wantStart: 0},
		{name: "empty data", offset: 0, wantStart: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Writer{dir: w.dir, alg: digest.Canonical}
			_, start := r.loadHashState(tt.offset)
			if start != tt.wantStart {
				t.Errorf("start = %d, want %d", start, tt.wantStart)
			}
		})
	}
	h, _ := (&Writer{dir: w.dir, alg: digest.Canonical}).loadHashState(3000)
	if got, want := digest.NewDigest(digest.Canonical, h), digest.FromBytes(data[:3000]); got != want {
		t.Errorf("restored hash = %s, want %s", got, want)
	}
	if _, start := (&Writer{dir: w.dir, alg: digest.SHA512}).loadHashState(3000); start != 0 {
		t.Errorf("state of another algorithm used: start %d", start)
	}
}

func TestSHA512Blob(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := blob(777)
	dgst := digest.SHA512.FromBytes(data)
	w, err := s.Writer(ctx, "ref", dgst, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[:300]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, err = s.Writer(ctx, "ref", dgst, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[w.Offset():]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.blobs, "sha512", dgst.Encoded())); err != nil {
		t.Errorf("sha512 blob not at expected path: %v", err)
	}
	seen := 0
	if err := s.Walk(ctx, func(i Info) error {
		if i.Digest == dgst {
			seen++
		}
		return nil
	}); err != nil || seen != 1 {
		t.Errorf("Walk: err=%v seen=%d", err, seen)
	}
}

// TestUsageTotals: Usage reads totals that every change keeps up to date;
// after each step they equal what a fresh measurement of the directory
// (a store opened anew on it) finds, and they are read without walking it.
func TestUsageTotals(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	check := func(step string) {
		t.Helper()
		b, i, err := s.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := New(s.Root())
		if err != nil {
			t.Fatal(err)
		}
		fb, fi, _ := fresh.Usage(ctx)
		if b != fb || i != fi {
			t.Errorf("%s: totals say %d bytes %d inodes, the disk %d bytes %d inodes", step, b, i, fb, fi)
		}
	}
	check("empty")
	a := put(t, s, "a", blob(300<<10))
	put(t, s, "b", blob(5000))
	check("two blobs")

	// A partial download kept for resume, then resumed and committed.
	data := blob(200 << 10)
	w, err := s.Writer(ctx, "c", digest.FromBytes(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[:100<<10]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	check("partial ingest")
	w, err = s.Writer(ctx, "c", digest.FromBytes(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[w.Offset():]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	check("resumed and committed")

	// A commit that fails verification drops its ingest.
	w, err = s.Writer(ctx, "bad", digest.FromString("other"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(blob(9000)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("commit of wrong bytes: %v", err)
	}
	check("failed commit")

	// An aborted ingest, a stale one cleaned up, a deleted blob.
	for _, ref := range []string{"x", "y"} {
		w, err := s.Writer(ctx, ref, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(blob(7000)); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	if err := s.Abort(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := s.CleanupIngests(ctx, -time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	check("abort, cleanup, delete")

	// Reading the totals does not look at the disk: a file the store did
	// not write is only seen by a store opened afterwards.
	before, _, _ := s.Usage(ctx)
	if err := os.WriteFile(filepath.Join(s.Root(), "blobs", "stray"), blob(64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	if after, _, _ := s.Usage(ctx); after != before {
		t.Errorf("usage %d -> %d after a file appeared behind the store's back: Usage walked the store", before, after)
	}
}
