package snapshot

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot/layer"
)

type ent struct {
	name string
	typ  byte
	body string
	mode int64
	uid  int
	link string
	pax  map[string]string
}

func f(name, body string) ent    { return ent{name: name, typ: tar.TypeReg, body: body, mode: 0o644} }
func d(name string) ent          { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func wh(dir, name string) ent    { return f(filepath.Join(dir, ".wh."+name), "") }
func opq(dir string) ent         { return f(filepath.Join(dir, ".wh..wh..opq"), "") }
func sl(name, target string) ent { return ent{name: name, typ: tar.TypeSymlink, link: target} }

func tarOf(t *testing.T, ents ...ent) io.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Linkname: e.link,
			ModTime: time.Unix(1_600_000_000, 0), PAXRecords: e.pax, Format: tar.FormatPAX}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

type factory struct {
	name string
	new  func(ctx context.Context, root string, db *bolt.DB, opts ...Option) (Snapshotter, error)
}

var factories = []factory{{"overlayfs", NewOverlay}, {"native", NewNative}}

// setup returns a fresh snapshotter and registers a check, run after every
// other cleanup, that nothing is left mounted under the test's directories.
func setup(t *testing.T, fac factory) (Snapshotter, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	base := t.TempDir()
	t.Cleanup(func() { assertNoMounts(t, base) })
	db, err := bolt.Open(filepath.Join(base, "meta.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	root := filepath.Join(base, "snapshots", fac.name)
	if fac.name == "overlayfs" {
		requireOverlay(t, root)
	}
	s, err := New(context.Background(), fac.name, root, db)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, base
}

// noOverlayEnv names the variable that declares a machine without a
// usable overlayfs; only then are the overlayfs tests skipped. Elsewhere a
// failing OverlaySupported is a failure (it is under test too), not a
// reason to test less.
const noOverlayEnv = "CRI_RUNTIMED_TEST_NO_OVERLAY"

func requireOverlay(t *testing.T, root string) {
	t.Helper()
	err := OverlaySupported(root)
	switch {
	case err == nil:
	case os.Getenv(noOverlayEnv) != "":
		t.Skipf("overlayfs unsupported here (%s is set): %v", noOverlayEnv, err)
	default:
		t.Fatalf("overlayfs is not usable here: %v (set %s=1 on a machine known to lack it)", err, noOverlayEnv)
	}
}

func assertNoMounts(t *testing.T, dir string) {
	t.Helper()
	fh, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir) {
			t.Errorf("left mounted: %s", fields[4])
		}
	}
}

func mountAt(t *testing.T, mounts []Mount, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := MountAll(mounts, dir); err != nil {
		t.Fatalf("MountAll: %v", err)
	}
	t.Cleanup(func() {
		if err := UnmountAll(dir); err != nil {
			t.Errorf("UnmountAll: %v", err)
		}
	})
	return dir
}

func layerOnto(t *testing.T, s Snapshotter, name, parent string, ents ...ent) {
	t.Helper()
	ctx := context.Background()
	key := "extract-" + name
	if _, err := s.Prepare(ctx, key, parent); err != nil {
		t.Fatalf("Prepare %s: %v", key, err)
	}
	if _, err := s.Apply(ctx, key, tarOf(t, ents...)); err != nil {
		t.Fatalf("Apply %s: %v", key, err)
	}
	if err := s.Commit(ctx, name, key); err != nil {
		t.Fatalf("Commit %s: %v", name, err)
	}
}

func buildChain(t *testing.T, s Snapshotter) {
	layerOnto(t, s, "L1", "",
		d("etc"), f("etc/passwd", "root:x:0:0"), d("bin"), f("bin/a", "a"),
		d("gone"), f("gone/file", "g"), d("opq"), f("opq/old1", "o"), d("opq/sub"), f("opq/sub/old2", "o"),
		d("keep"), f("keep/file", "k"), sl("link", "etc/passwd"),
		wh("", "base-whiteout-is-noop"))
	layerOnto(t, s, "L2", "L1",
		wh("", "gone"), d("bin"), wh("bin", "a"), f("bin/b", "b"),
		d("opq"), opq("opq"), f("opq/new", "n"))
	layerOnto(t, s, "L3", "L2",
		d("etc"), f("etc/passwd", "root:x:0:0:l3"), f("etc/l3", "3"),
		d("keep"), wh("keep", "file"), d("bin"), wh("bin", "b"))
}

func TestChain(t *testing.T) {
	for _, fac := range factories {
		t.Run(fac.name, func(t *testing.T) {
			ctx := context.Background()
			s, base := setup(t, fac)
			buildChain(t, s)

			mounts, err := s.Prepare(ctx, "container", "L3", WithLabels(map[string]string{"role": "rootfs"}))
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if again, err := s.Mounts(ctx, "container"); err != nil || fmt.Sprint(again) != fmt.Sprint(mounts) {
				t.Fatalf("Mounts = %v, %v; Prepare gave %v", again, err, mounts)
			}
			rootfs := mountAt(t, mounts, filepath.Join(base, "rootfs"))

			tests := []struct {
				path string
				body string // "" means must not exist
			}{
				{"etc/passwd", "root:x:0:0:l3"},
				{"etc/l3", "3"},
				{"link", "root:x:0:0:l3"},
				{"gone", ""},
				{"bin/a", ""},
				{"bin/b", ""},
				{"opq/old1", ""},
				{"opq/sub", ""},
				{"opq/new", "n"},
				{"keep/file", ""},
				{"base-whiteout-is-noop", ""},
				{".wh.base-whiteout-is-noop", ""},
			}
			for _, tc := range tests {
				b, err := os.ReadFile(filepath.Join(rootfs, tc.path))
				switch {
				case tc.body == "" && !errors.Is(err, os.ErrNotExist):
					t.Errorf("%s should be gone, got %q, %v", tc.path, b, err)
				case tc.body != "" && string(b) != tc.body:
					t.Errorf("%s = %q, %v; want %q", tc.path, b, err, tc.body)
				}
			}
			if st, err := os.Stat(filepath.Join(rootfs, "keep")); err != nil || !st.IsDir() {
				t.Errorf("keep dir: %v", err)
			}

			// The container writes; committed layers must not see it.
			if err := os.WriteFile(filepath.Join(rootfs, "etc/passwd"), []byte("changed"), 0o644); err != nil {
				t.Fatalf("write into rootfs: %v", err)
			}
			if err := os.WriteFile(filepath.Join(rootfs, "new"), []byte("new"), 0o644); err != nil {
				t.Fatalf("write into rootfs: %v", err)
			}
			vmounts, err := s.View(ctx, "view", "L3")
			if err != nil {
				t.Fatalf("View: %v", err)
			}
			view := mountAt(t, vmounts, filepath.Join(base, "view"))
			if b, _ := os.ReadFile(filepath.Join(view, "etc/passwd")); string(b) != "root:x:0:0:l3" {
				t.Errorf("view etc/passwd = %q", b)
			}
			if _, err := os.Stat(filepath.Join(view, "new")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("view sees the container's file: %v", err)
			}
			if err := os.WriteFile(filepath.Join(view, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
				t.Errorf("write into view: %v, want EROFS", err)
			}

			u, err := s.Usage(ctx, "container")
			if err != nil || u.Inodes == 0 || u.Size == 0 {
				t.Errorf("Usage(container) = %+v, %v", u, err)
			}

			if err := UnmountAll(rootfs); err != nil {
				t.Fatal(err)
			}
			if err := UnmountAll(view); err != nil {
				t.Fatal(err)
			}
			assertNoMounts(t, base)

			if err := s.Remove(ctx, "L3"); !errors.Is(err, ErrInUse) {
				t.Errorf("Remove(L3) with children = %v, want ErrInUse", err)
			}
			for _, k := range []string{"container", "view", "L3", "L2", "L1"} {
				if err := s.Remove(ctx, k); err != nil {
					t.Fatalf("Remove(%s): %v", k, err)
				}
			}
			if err := s.Remove(ctx, "L1"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Remove again = %v, want ErrNotFound", err)
			}
			left, _ := os.ReadDir(filepath.Join(s.Root(), "snapshots"))
			if len(left) != 0 {
				t.Errorf("directories left after removing everything: %v", left)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	for _, fac := range factories {
		t.Run(fac.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := setup(t, fac)
			layerOnto(t, s, "base", "", f("a", "a"))
			layerOnto(t, s, "other", "", f("b", "b"))
			if _, err := s.Prepare(ctx, "active", "base"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.View(ctx, "ro", "base"); err != nil {
				t.Fatal(err)
			}
			tests := []struct {
				name string
				err  error
				want error
			}{
				{"prepare existing", second(s.Prepare(ctx, "active", "")), ErrAlreadyExists},
				{"prepare on committed name", second(s.Prepare(ctx, "base", "")), ErrAlreadyExists},
				{"prepare missing parent", second(s.Prepare(ctx, "x", "nope")), ErrNotFound},
				{"prepare on active parent", second(s.Prepare(ctx, "y", "active")), ErrInvalidKind},
				{"commit onto existing", s.Commit(ctx, "other", "active"), ErrAlreadyExists},
				{"commit committed", s.Commit(ctx, "z", "base"), ErrInvalidKind},
				{"commit view", s.Commit(ctx, "z", "ro"), ErrInvalidKind},
				{"commit missing", s.Commit(ctx, "z", "nope"), ErrNotFound},
				{"apply to committed", second(s.Apply(ctx, "base", tarOf(t))), ErrInvalidKind},
				{"apply to view", second(s.Apply(ctx, "ro", tarOf(t))), ErrInvalidKind},
				{"mounts of committed", second(s.Mounts(ctx, "base")), ErrInvalidKind},
				{"remove in use", s.Remove(ctx, "base"), ErrInUse},
				{"remove missing", s.Remove(ctx, "nope"), ErrNotFound},
				{"stat missing", second(s.Stat(ctx, "nope")), ErrNotFound},
				{"usage missing", second(s.Usage(ctx, "nope")), ErrNotFound},
			}
			for _, tc := range tests {
				if !errors.Is(tc.err, tc.want) {
					t.Errorf("%s: err = %v, want %v", tc.name, tc.err, tc.want)
				}
			}
			// The failed commit left the active snapshot usable.
			if info, err := s.Stat(ctx, "active"); err != nil || info.Kind != KindActive {
				t.Errorf("Stat(active) = %+v, %v", info, err)
			}
			// A failed Prepare rolls back nothing it should not.
			if _, err := s.Stat(ctx, "x"); !errors.Is(err, ErrNotFound) {
				t.Errorf("failed Prepare left a record: %v", err)
			}
		})
	}
}

func second[T any](_ T, err error) error { return err }

func TestApplyRefusesEscape(t *testing.T) {
	for _, fac := range factories {
		t.Run(fac.name, func(t *testing.T) {
			ctx := context.Background()
			s, base := setup(t, fac)
			if _, err := s.Prepare(ctx, "a", ""); err != nil {
				t.Fatal(err)
			}
			_, err := s.Apply(ctx, "a", tarOf(t, sl("x", base), f("x/pwned", "p")))
			if !errors.Is(err, layer.ErrUnsafePath) {
				t.Fatalf("Apply = %v, want unsafe path error", err)
			}
			if _, err := os.Stat(filepath.Join(base, "pwned")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("file written outside: %v", err)
			}
		})
	}
}

func TestWalkUsageLabels(t *testing.T) {
	for _, fac := range factories {
		t.Run(fac.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := setup(t, fac)
			if _, err := s.Prepare(ctx, "k1", "", WithLabels(map[string]string{"a": "1"})); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Apply(ctx, "k1", tarOf(t, d("dir"), f("dir/f1", strings.Repeat("x", 10000)), f("f2", "y"))); err != nil {
				t.Fatal(err)
			}
			if err := s.Commit(ctx, "c1", "k1", WithLabels(map[string]string{"b": "2"})); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Prepare(ctx, "k2", "c1"); err != nil {
				t.Fatal(err)
			}

			got := map[string]Info{}
			if err := s.Walk(ctx, func(i Info) error { got[i.Key] = i; return nil }); err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 {
				t.Fatalf("Walk saw %v", got)
			}
			if c := got["c1"]; c.Kind != KindCommitted || c.Parent != "" || c.Labels["a"] != "1" || c.Labels["b"] != "2" {
				t.Errorf("c1 = %+v", c)
			}
			if k := got["k2"]; k.Kind != KindActive || k.Parent != "c1" || k.Created.IsZero() {
				t.Errorf("k2 = %+v", k)
			}
			stop := errors.New("stop")
			if err := s.Walk(ctx, func(Info) error { return stop }); !errors.Is(err, stop) {
				t.Errorf("Walk error = %v", err)
			}

			u, err := s.Usage(ctx, "c1")
			if err != nil {
				t.Fatal(err)
			}
			// fs, dir, dir/f1, f2; 10000 bytes need at least 3 blocks.
			if u.Inodes != 4 || u.Size < 12288 {
				t.Errorf("Usage(c1) = %+v", u)
			}
		})
	}
}

// TestCommittedUsage: the committed snapshots' total follows commits and
// removals without a walk, and a snapshotter opened on the same database
// starts from the same sum.
func TestCommittedUsage(t *testing.T) {
	for _, fac := range factories {
		t.Run(fac.name, func(t *testing.T) {
			ctx := context.Background()
			s, base := setup(t, fac)
			sum := func() Usage {
				var u Usage
				if err := s.Walk(ctx, func(i Info) error {
					if i.Kind == KindCommitted {
						su, err := s.Usage(ctx, i.Key)
						u.Size += su.Size
						u.Inodes += su.Inodes
						return err
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				return u
			}
			if got := s.CommittedUsage(); got != (Usage{}) {
				t.Fatalf("empty snapshotter: %+v", got)
			}
			buildChain(t, s)
			if _, err := s.Prepare(ctx, "rw", "L3"); err != nil {
				t.Fatal(err)
			}
			want := sum()
			if got := s.CommittedUsage(); got != want || got.Size == 0 {
				t.Errorf("after three commits: %+v, the records sum to %+v", got, want)
			}
			db := s.(*snapshotter).db
			again, err := New(ctx, fac.name, filepath.Join(base, "snapshots", fac.name), db)
			if err != nil {
				t.Fatal(err)
			}
			if got := again.CommittedUsage(); got != want {
				t.Errorf("reopened: %+v, want %+v", got, want)
			}
			for _, key := range []string{"rw", "L3", "L2"} {
				if err := s.Remove(ctx, key); err != nil {
					t.Fatal(err)
				}
			}
			if got, want := s.CommittedUsage(), sum(); got != want {
				t.Errorf("after removals: %+v, the records sum to %+v", got, want)
			}
		})
	}
}

func TestCleanup(t *testing.T) {
	for _, fac := range factories {
		t.Run(fac.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := setup(t, fac)
			layerOnto(t, s, "keep", "", f("a", "a"))
			if _, err := s.Prepare(ctx, "lost-dir", "keep"); err != nil {
				t.Fatal(err)
			}
			snaps := filepath.Join(s.Root(), "snapshots")

			// A crash after the record, before the directory was complete.
			var lostID string
			entries, _ := os.ReadDir(snaps)
			for _, e := range entries {
				lostID = e.Name() // highest id sorts last here (single digits)
			}
			if err := os.RemoveAll(filepath.Join(snaps, lostID)); err != nil {
				t.Fatal(err)
			}
			// Crashes in Prepare, Remove, and between them.
			for _, p := range []string{"999/fs/x", "new-1000/fs/y", "rm-1001/fs/z", "1002/work/work"} {
				if err := os.MkdirAll(filepath.Join(snaps, p), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.MkdirAll(filepath.Join(s.Root(), checkPrefix+"123", "merged"), 0o700); err != nil {
				t.Fatal(err)
			}

			if err := s.Cleanup(ctx); err != nil {
				t.Fatalf("Cleanup: %v", err)
			}
			var names []string
			entries, _ = os.ReadDir(snaps)
			for _, e := range entries {
				names = append(names, e.Name())
			}
			sort.Strings(names)
			if len(names) != 1 || names[0] == lostID {
				t.Errorf("left in snapshots/: %v", names)
			}
			if _, err := s.Stat(ctx, "lost-dir"); !errors.Is(err, ErrNotFound) {
				t.Errorf("record without directory kept: %v", err)
			}
			if _, err := os.Stat(filepath.Join(s.Root(), checkPrefix+"123")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("check leftover kept: %v", err)
			}
			// The kept snapshot still works.
			if _, err := s.Prepare(ctx, "again", "keep"); err != nil {
				t.Fatalf("Prepare after Cleanup: %v", err)
			}
		})
	}
}

func TestConcurrent(t *testing.T) {
	for _, fac := range factories {
		t.Run(fac.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := setup(t, fac)
			layerOnto(t, s, "base", "", f("a", "a"))
			const n = 16
			var wg sync.WaitGroup
			errs := make(chan error, n*2)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					key := fmt.Sprintf("k%d", i)
					if _, err := s.Prepare(ctx, key, "base"); err != nil {
						errs <- err
						return
					}
					if _, err := s.Apply(ctx, key, tarOf(t, f("f", key))); err != nil {
						errs <- err
						return
					}
					// Every goroutine commits to the same name: one wins.
					err := s.Commit(ctx, "shared", key)
					if errors.Is(err, ErrAlreadyExists) {
						err = s.Remove(ctx, key)
					}
					if err != nil {
						errs <- err
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			var keys []string
			_ = s.Walk(ctx, func(i Info) error { keys = append(keys, i.Key); return nil })
			sort.Strings(keys)
			if fmt.Sprint(keys) != "[base shared]" {
				t.Errorf("snapshots after race: %v", keys)
			}
		})
	}
}

// A chain deep enough (128 layers) that absolute lowerdirs exceed
// mount(2)'s one-page limit, mounted each way MountAll can: fsconfig with
// one lowerdir+ per layer (Linux 6.8+, what MountAll picks here) and the
// relative paths from a thread inside the snapshots directory that older
// kernels get.
func TestOverlayLongChain(t *testing.T) {
	ctx := context.Background()
	s, base := setup(t, factories[0])
	parent := ""
	const n = 128
	for i := range n {
		name := fmt.Sprintf("layer-%03d", i)
		layerOnto(t, s, name, parent, f(fmt.Sprintf("f%03d", i), name), f("top", name))
		parent = name
	}
	mounts, err := s.Prepare(ctx, "c", parent)
	if err != nil {
		t.Fatal(err)
	}
	if l := len(strings.Join(mounts[0].Options, ",")); l < os.Getpagesize() {
		t.Fatalf("options only %d bytes; test does not exercise the long form", l)
	}
	flags, data := parseOptions(mounts[0].Options)
	for _, tc := range []struct {
		name  string
		mount func(target string) error
	}{
		{"MountAll", func(target string) error { return MountAll(mounts, target) }},
		{"relative", func(target string) error { return mountOverlayRelative(target, flags, data) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rootfs := filepath.Join(base, "rootfs-"+tc.name)
			if err := os.MkdirAll(rootfs, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := tc.mount(rootfs); err != nil {
				t.Fatalf("mount: %v", err)
			}
			defer func() {
				if err := UnmountAll(rootfs); err != nil {
					t.Errorf("UnmountAll: %v", err)
				}
			}()
			for _, i := range []int{0, n / 2, n - 1} {
				if b, err := os.ReadFile(filepath.Join(rootfs, fmt.Sprintf("f%03d", i))); err != nil || string(b) != fmt.Sprintf("layer-%03d", i) {
					t.Errorf("f%03d = %q, %v", i, b, err)
				}
			}
			// The top layer wins, and the mount is writable.
			if b, err := os.ReadFile(filepath.Join(rootfs, "top")); err != nil || string(b) != fmt.Sprintf("layer-%03d", n-1) {
				t.Errorf("top = %q, %v", b, err)
			}
			if err := os.WriteFile(filepath.Join(rootfs, "written-"+tc.name), []byte("x"), 0o644); err != nil {
				t.Errorf("write: %v", err)
			}
		})
	}
	// The process's own working directory is not the helper's.
	if wd, err := os.Getwd(); err != nil || strings.Contains(wd, snapshotsDir) {
		t.Errorf("working directory is now %q (%v)", wd, err)
	}
}

func TestRelativeOverlayOptions(t *testing.T) {
	dir, got := relativeOverlayOptions([]string{"index=off", "workdir=/r/snapshots/9/work", "upperdir=/r/snapshots/9/fs", "lowerdir=/r/snapshots/1/fs:/r/snapshots/10/fs"})
	want := []string{"index=off", "workdir=9/work", "upperdir=9/fs", "lowerdir=1/fs:10/fs"}
	if dir != "/r/snapshots" || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got %s %v, want /r/snapshots %v", dir, got, want)
	}
	for _, tc := range []struct {
		paths []string
		want  string
	}{
		{[]string{"/a/b/1/fs", "/a/b/2/fs"}, "/a/b"},
		{[]string{"/a/b/1/fs", "/a/bc/2/fs"}, "/a"},
		{[]string{"/x/1", "/y/2"}, "/"},
		{[]string{"/a/b/fs"}, "/a/b"},
	} {
		if got := commonDir(tc.paths); got != tc.want {
			t.Errorf("commonDir(%v) = %s, want %s", tc.paths, got, tc.want)
		}
	}
}

func TestNativeCopyPreserves(t *testing.T) {
	ctx := context.Background()
	s, base := setup(t, factories[1])
	layerOnto(t, s, "base", "",
		ent{name: "suid", typ: tar.TypeReg, body: "s", mode: 0o4755, uid: 1000},
		ent{name: "xattr", typ: tar.TypeReg, body: "x", mode: 0o600, pax: map[string]string{"SCHILY.xattr.user.k": "v"}},
		ent{name: "hl", typ: tar.TypeLink, link: "suid"},
		ent{name: "fifo", typ: tar.TypeFifo, mode: 0o600},
		ent{name: "null", typ: tar.TypeChar, mode: 0o666},
		ent{name: "tmp", typ: tar.TypeDir, mode: 0o1777},
		sl("abs", "/etc/passwd"),
	)
	mounts, err := s.Prepare(ctx, "c", "base")
	if err != nil {
		t.Fatal(err)
	}
	rootfs := mountAt(t, mounts, filepath.Join(base, "rootfs"))
	st := func(p string) unix.Stat_t {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(rootfs, p), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if x := st("suid"); x.Mode != unix.S_IFREG|0o4755 || x.Uid != 1000 || x.Nlink != 2 || x.Ino != st("hl").Ino {
		t.Errorf("suid: mode %#o uid %d nlink %d", x.Mode, x.Uid, x.Nlink)
	}
	if x := st("tmp"); x.Mode != unix.S_IFDIR|0o1777 {
		t.Errorf("tmp mode %#o", x.Mode)
	}
	if x := st("fifo"); x.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo mode %#o", x.Mode)
	}
	if x := st("null"); x.Mode&unix.S_IFMT != unix.S_IFCHR {
		t.Errorf("null mode %#o", x.Mode)
	}
	if x := st("xattr"); time.Unix(x.Mtim.Sec, 0) != time.Unix(1_600_000_000, 0) {
		t.Errorf("mtime %v", x.Mtim)
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(filepath.Join(rootfs, "xattr"), "user.k", buf); err != nil || string(buf[:n]) != "v" {
		t.Errorf("xattr: %q, %v", buf[:n], err)
	}
	if l, _ := os.Readlink(filepath.Join(rootfs, "abs")); l != "/etc/passwd" {
		t.Errorf("abs -> %q", l)
	}
}

func TestMountAllRollsBack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	base := t.TempDir()
	t.Cleanup(func() { assertNoMounts(t, base) })
	src, target := filepath.Join(base, "src"), filepath.Join(base, "target")
	for _, p := range []string{src, target} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	err := MountAll([]Mount{
		{Type: "bind", Source: src, Options: []string{"rbind", "ro"}},
		{Type: "bind", Source: filepath.Join(base, "missing"), Options: []string{"rbind"}},
	}, target)
	if err == nil {
		t.Fatal("MountAll succeeded with a missing source")
	}
	if err := UnmountAll(filepath.Join(base, "not-there")); err != nil {
		t.Errorf("UnmountAll of a missing path: %v", err)
	}
	if err := UnmountAll(target); err != nil {
		t.Errorf("UnmountAll of an unmounted path: %v", err)
	}
}

func TestNewUnknown(t *testing.T) {
	if _, err := New(context.Background(), "zfs", t.TempDir(), nil); err == nil {
		t.Fatal("New(zfs) succeeded")
	}
}
