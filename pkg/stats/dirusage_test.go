package stats

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// duOf sums allocated blocks of the given paths as du would.
func duOf(t *testing.T, paths ...string) uint64 {
	t.Helper()
	var n uint64
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		n += uint64(fi.Sys().(*syscall.Stat_t).Blocks) * 512
	}
	return n
}

func TestDirUsage(t *testing.T) {
	tests := []struct {
		name string
		// build populates dir and returns the paths whose blocks count.
		build      func(t *testing.T, dir string) []string
		wantInodes uint64
		minBytes   uint64
	}{
		{
			name:       "empty dir",
			build:      func(t *testing.T, dir string) []string { return []string{dir} },
			wantInodes: 1,
		},
		{
			name: "files and subdirs",
			build: func(t *testing.T, dir string) []string {
				sub := filepath.Join(dir, "a", "b")
				mustMkdir(t, sub)
				f1 := mustWrite(t, filepath.Join(dir, "one"), 100<<10)
				f2 := mustWrite(t, filepath.Join(sub, "two"), 300<<10)
				return []string{dir, filepath.Join(dir, "a"), sub, f1, f2}
			},
			wantInodes: 5,
			minBytes:   400 << 10,
		},
		{
			name: "hardlinks count once, symlinks are not followed",
			build: func(t *testing.T, dir string) []string {
				f := mustWrite(t, filepath.Join(dir, "data"), 64<<10)
				if err := os.Link(f, filepath.Join(dir, "link")); err != nil {
					t.Fatal(err)
				}
				l := filepath.Join(dir, "sym")
				if err := os.Symlink("/usr", l); err != nil {
					t.Fatal(err)
				}
				return []string{dir, f, l}
			},
			wantInodes: 3,
			minBytes:   64 << 10,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			counted := tt.build(t, dir)
			c, err := NewCollector(WithCgroupRoot(t.TempDir()), WithCgroupMode(ModeV2))
			if err != nil {
				t.Fatal(err)
			}
			bytes, inodes, err := c.DirUsage(context.Background(), "k", dir)
			if err != nil {
				t.Fatal(err)
			}
			if inodes != tt.wantInodes {
				t.Errorf("inodes = %d, want %d", inodes, tt.wantInodes)
			}
			if want := duOf(t, counted...); bytes != want {
				t.Errorf("bytes = %d, want %d (du)", bytes, want)
			}
			if bytes < tt.minBytes {
				t.Errorf("bytes = %d, want >= %d", bytes, tt.minBytes)
			}
		})
	}
}

func TestDirUsageCache(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "one"), 4096)
	now := time.Unix(1700000000, 0)
	c, err := NewCollector(WithCgroupRoot(t.TempDir()), WithCgroupMode(ModeV2), WithDirUsageTTL(10*time.Second),
		withClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	inodesOf := func(key string) uint64 {
		t.Helper()
		_, n, err := c.DirUsage(ctx, key, dir)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	steps := []struct {
		name    string
		advance time.Duration
		addFile string
		forget  bool
		key     string
		want    uint64
	}{
		{name: "first walk", key: "k", want: 2},
		{name: "cached within TTL", advance: 5 * time.Second, addFile: "two", key: "k", want: 2},
		{name: "no cache without key", key: "", want: 3},
		{name: "other key walks", key: "other", want: 3},
		{name: "expired", advance: 6 * time.Second, key: "k", want: 3},
		{name: "forget drops cache", addFile: "three", forget: true, key: "k", want: 4},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		if st.addFile != "" {
			mustWrite(t, filepath.Join(dir, st.addFile), 10)
		}
		if st.forget {
			c.Forget(st.key)
		}
		if got := inodesOf(st.key); got != st.want {
			t.Errorf("%s: inodes = %d, want %d", st.name, got, st.want)
		}
	}
}

func TestDirUsageErrors(t *testing.T) {
	c, err := NewCollector(WithCgroupRoot(t.TempDir()), WithCgroupMode(ModeV2))
	if err != nil {
		t.Fatal(err)
	}
	file := mustWrite(t, filepath.Join(t.TempDir(), "f"), 1)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		dir  string
		is   error
	}{
		{name: "missing", ctx: context.Background(), dir: filepath.Join(t.TempDir(), "gone"), is: ErrNotFound},
		{name: "not a directory", ctx: context.Background(), dir: file},
		{name: "canceled", ctx: canceled, dir: t.TempDir(), is: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := c.DirUsage(tt.ctx, "k-"+tt.name, tt.dir)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want %v", err, tt.is)
			}
		})
	}
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, p string, size int) string {
	t.Helper()
	if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
