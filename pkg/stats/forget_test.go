package stats

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cri-runtimed/cri-runtimed/pkg/netns"
)

// TestForgetRacesReading: a Forget that runs between a reading's lookup
// of its key's kept files and its lock of them must leave no descriptor
// open: the reading may not keep files in the entry Forget took out, which
// nobody would close. The Collector's hook runs the Forget exactly in that
// window; then readings and Forgets race freely.
func TestForgetRacesReading(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the net/dev case pins a network namespace, which needs root")
	}
	ctx := context.Background()
	nsDir := filepath.Join(t.TempDir(), "netns")
	ns, err := netns.Create(ctx, nsDir, "forget")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Remove(ns.Path()); err != nil {
			t.Errorf("remove netns: %v", err)
		}
		_ = unix.Unmount(nsDir, unix.MNT_DETACH)
	})

	tests := []struct {
		name   string
		mode   Mode
		files  map[string]string
		read   func(c *Collector, key string) error
		forget func(c *Collector, key string)
	}{
		{"cgroup v1", ModeV1, fakeV1("c", 100, 0, 1000, true), readCgroup, (*Collector).Forget},
		{"cgroup v2", ModeV2, fakeV2("c", 100, 0, "max"), readCgroup, (*Collector).Forget},
		{"net/dev, Forget", ModeV2, fakeV2("c", 100, 0, "max"), readNet(ns.Path()), (*Collector).Forget},
		{"net/dev, ForgetNetwork", ModeV2, fakeV2("c", 100, 0, "max"), readNet(ns.Path()), (*Collector).ForgetNetwork},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tt.files)
			c, err := NewCollector(WithCgroupRoot(root), WithCgroupMode(tt.mode))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fds := openFDs(t)

			// Forget in the window, once.
			var once sync.Once
			c.lookedUp = func(key string) { once.Do(func() { tt.forget(c, key) }) }
			if err := tt.read(c, "k"); err != nil {
				t.Fatal(err)
			}
			c.lookedUp = nil
			if n := c.openCount.Load(); n != 0 {
				t.Errorf("Forget in the reading's window: %d files counted open, want 0", n)
			}
			if n := openFDs(t); n != fds {
				t.Errorf("Forget in the reading's window: %d descriptors open, %d before", n, fds)
			}
			// The key is usable again, and kept.
			if err := tt.read(c, "k"); err != nil {
				t.Fatal(err)
			}
			if c.openCount.Load() == 0 {
				t.Error("a reading after the Forget kept nothing open")
			}
			tt.forget(c, "k")

			// Readings and Forgets of the same keys at once.
			var wg sync.WaitGroup
			for g := range 4 {
				key := string(rune('a' + g%2))
				wg.Add(2)
				go func() {
					defer wg.Done()
					for range 200 {
						if err := tt.read(c, key); err != nil {
							t.Error(err)
							return
						}
					}
				}()
				go func() {
					defer wg.Done()
					for range 200 {
						tt.forget(c, key)
					}
				}()
			}
			wg.Wait()
			tt.forget(c, "a")
			tt.forget(c, "b")
			if n := c.openCount.Load(); n != 0 {
				t.Errorf("after racing Forgets: %d files counted open, want 0", n)
			}
			if n := openFDs(t); n != fds {
				t.Errorf("after racing Forgets: %d descriptors open, %d before", n, fds)
			}
		})
	}
}

func readCgroup(c *Collector, key string) error {
	_, err := c.Cgroup(context.Background(), key, "/c", Usage|Swap|Tasks)
	return err
}

func readNet(path string) func(c *Collector, key string) error {
	return func(c *Collector, key string) error {
		_, err := c.PodNetwork(context.Background(), key, path)
		return err
	}
}

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
