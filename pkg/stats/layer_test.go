package stats

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
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

func TestWalkUsage(t *testing.T) {
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
			bytes, inodes, err := walkUsage(context.Background(), dir)
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

// TestLayerUsage drives the background walker with a fake clock: a
// request never walks, it returns the last measurement and queues a walk
// when there is none or it is older than the TTL.
func TestLayerUsage(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "one"), 4096)
	var mu sync.Mutex
	now := time.Unix(1700000000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	c, err := NewCollector(WithCgroupRoot(t.TempDir()), WithCgroupMode(ModeV2), WithDirUsageTTL(10*time.Second), withClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// A request queues a walk and answers at once with what it has:
	// nothing yet. A collector that walked on the caller's goroutine
	// would answer with the usage.
	if u, ok := c.LayerUsage("k", dir); ok {
		t.Fatalf("first request: usage %+v; want none until the walker measured it", u)
	}
	waitWalks(t, c, 1)
	u, ok := c.LayerUsage("k", dir)
	if !ok || u.Inodes != 2 || !u.At.Equal(clock()) {
		t.Fatalf("after the walk: %+v %v, want 2 inodes measured now", u, ok)
	}

	// Within the TTL, the measurement is served and nothing is walked.
	advance(5 * time.Second)
	mustWrite(t, filepath.Join(dir, "two"), 10)
	if u, _ := c.LayerUsage("k", dir); u.Inodes != 2 {
		t.Errorf("within TTL: %d inodes, want the cached 2", u.Inodes)
	}
	// Past it, the old value is served while the walk runs.
	advance(6 * time.Second)
	if u, ok := c.LayerUsage("k", dir); !ok || u.Inodes != 2 {
		t.Errorf("expired: %d inodes %v, want the old 2 while the walker works", u.Inodes, ok)
	}
	waitWalks(t, c, 2)
	if u, _ := c.LayerUsage("k", dir); u.Inodes != 3 {
		t.Errorf("after the second walk: %d inodes, want 3", u.Inodes)
	}
	if got := walks(c); got != 2 {
		t.Errorf("%d walks, want 2: requests within the TTL must not walk", got)
	}

	// Forget drops the measurement; another directory resets it.
	c.Forget("k")
	if _, ok := c.LayerUsage("k", dir); ok {
		t.Error("forgotten key still has a usage")
	}
	waitWalks(t, c, 3)
	other := t.TempDir()
	if _, ok := c.LayerUsage("k", other); ok {
		t.Error("usage of the old directory served for a new one")
	}
	waitWalks(t, c, 4)
	if u, ok := c.LayerUsage("k", other); !ok || u.Inodes != 1 {
		t.Errorf("new directory: %+v %v, want 1 inode", u, ok)
	}

	// A layer that disappears stops reporting its old usage.
	gone := filepath.Join(t.TempDir(), "gone")
	mustMkdir(t, gone)
	c.LayerUsage("g", gone)
	waitWalks(t, c, 5)
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	advance(11 * time.Second)
	c.LayerUsage("g", gone)
	waitWalks(t, c, 6)
	if _, ok := c.LayerUsage("g", gone); ok {
		t.Error("removed layer still reports a usage")
	}
}

func walks(c *Collector) int {
	c.layers.mu.Lock()
	defer c.layers.mu.Unlock()
	return c.layers.walked
}

func waitWalks(t *testing.T, c *Collector, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for walks(c) < n {
		if time.Now().After(deadline) {
			t.Fatalf("walker did %d walks in 10s, want %d", walks(c), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLayerWalkerClose: Close stops the walker and later requests queue
// nothing.
func TestLayerWalkerClose(t *testing.T) {
	c, err := NewCollector(WithCgroupRoot(t.TempDir()), WithCgroupMode(ModeV2))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, ok := c.LayerUsage("k", t.TempDir()); ok {
		t.Fatal("usage after Close")
	}
	c.layers.mu.Lock()
	defer c.layers.mu.Unlock()
	if len(c.layers.queue)+len(c.layers.first) != 0 {
		t.Fatalf("queued %v %v after Close", c.layers.first, c.layers.queue)
	}
}

func TestWalkUsageErrors(t *testing.T) {
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
			_, _, err := walkUsage(tt.ctx, tt.dir)
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

// TestLayerWalkerPaced: refreshes of old measurements are walked one at a
// time with pauses (a full node's stats call finds them all old at once),
// while a layer never measured is walked at once, ahead of them.
func TestLayerWalkerPaced(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1700000000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	// 4 layers, then 5: a pause of 20s/(4×5) = 1s between refreshes.
	c, err := NewCollector(WithCgroupRoot(t.TempDir()), WithCgroupMode(ModeV2), WithDirUsageTTL(20*time.Second), withClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dirs := make([]string, 4)
	for i := range dirs {
		dirs[i] = t.TempDir()
		c.LayerUsage(fmt.Sprint(i), dirs[i])
	}
	// First measurements are not paced.
	waitWalks(t, c, 4)
	mu.Lock()
	now = now.Add(21 * time.Second)
	mu.Unlock()
	for i, d := range dirs {
		c.LayerUsage(fmt.Sprint(i), d)
	}
	waitWalks(t, c, 5)
	// The walker pauses after the first refresh; a new layer goes first.
	newDir := t.TempDir()
	c.LayerUsage("new", newDir)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := c.LayerUsage("new", newDir); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new layer was not measured in 10s")
		}
		time.Sleep(time.Millisecond)
	}
	if n := walks(c); n >= 4+4+1 {
		t.Errorf("the new layer was measured after %d walks: behind every refresh", n)
	}
	waitWalks(t, c, 4+4+1)
}
