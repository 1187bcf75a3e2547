package netns

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// pinDir returns a fresh pin directory and unmounts it (Create makes it a
// mount point) before TempDir's cleanup removes it.
func pinDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "netns")
	t.Cleanup(func() {
		paths, _ := List(dir)
		for _, p := range paths {
			_ = Remove(p)
		}
		for range maxUnmounts {
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				break
			}
		}
	})
	return dir
}

type mountEntry struct {
	point    string
	optional string // e.g. "shared:12"
	fstype   string
}

func mountInfo(t *testing.T) []mountEntry {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []mountEntry
	for line := range strings.Lines(string(data)) {
		pre, post, ok := strings.Cut(strings.TrimSpace(line), " - ")
		if !ok {
			t.Fatalf("bad mountinfo line %q", line)
		}
		f := strings.Fields(pre)
		out = append(out, mountEntry{
			point:    unescapeOctal(f[4]),
			optional: strings.Join(f[6:], " "),
			fstype:   strings.Fields(post)[0],
		})
	}
	return out
}

// unescapeOctal undoes mountinfo's \NNN escaping of spaces and the like.
func unescapeOctal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountsUnder counts mount points at or below dir.
func mountsUnder(t *testing.T, dir string) (n int) {
	t.Helper()
	for _, m := range mountInfo(t) {
		if m.point == dir || strings.HasPrefix(m.point, dir+"/") {
			n++
		}
	}
	return n
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// threadsOutside lists the process's threads whose network namespace is
// not host. Threads discarded by runLocked may take a moment to exit, so
// callers poll.
func threadsOutside(t *testing.T, host uint64) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, task := range tasks {
		var st unix.Stat_t
		if err := unix.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st); err != nil {
			continue // exited meanwhile
		}
		if st.Ino != host {
			out = append(out, task.Name())
		}
	}
	return out
}

func waitNoThreadsOutside(t *testing.T, host uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := threadsOutside(t, host)
		if len(out) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads %v (pid %d) are still outside the host network namespace", out, os.Getpid())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

func TestCreateDoRemove(t *testing.T) {
	requireRoot(t)
	dir := pinDir(t)

	// Pin the test goroutine to its thread so "the caller's thread" means
	// one thread throughout.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	host := nsInode(t, "/proc/thread-self/ns/net")

	ns, err := Create(context.Background(), dir, "pod1")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if got, want := ns.Path(), filepath.Join(dir, "pod1"); got != want {
		t.Errorf("Path() = %q, want %q", got, want)
	}
	if got := nsInode(t, "/proc/thread-self/ns/net"); got != host {
		t.Fatalf("caller's thread moved to netns %d by Create (host %d)", got, host)
	}

	var dirShared, pinMounted bool
	for _, m := range mountInfo(t) {
		switch m.point {
		case dir:
			dirShared = strings.Contains(m.optional, "shared:")
		case ns.Path():
			pinMounted = m.fstype == "nsfs"
		}
	}
	if !dirShared {
		t.Errorf("pin dir %s is not a shared mount point", dir)
	}
	if !pinMounted {
		t.Errorf("pin %s is not an nsfs mount", ns.Path())
	}
	if got := nsInode(t, ns.Path()); got == host {
		t.Errorf("pin refers to the host netns")
	}

	var inside uint64
	var loUp bool
	err = ns.Do(func() error {
		inside = nsInode(t, "/proc/thread-self/ns/net")
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			return err
		}
		loUp = lo.Flags&net.FlagUp != 0
		return nil
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if inside == host {
		t.Errorf("Do ran in the host netns (inode %d)", host)
	}
	if want := nsInode(t, ns.Path()); inside != want {
		t.Errorf("Do ran in netns %d, want the pinned %d", inside, want)
	}
	if !loUp {
		t.Errorf("lo is not up inside the new netns")
	}
	if got := nsInode(t, "/proc/thread-self/ns/net"); got != host {
		t.Fatalf("caller's thread moved to netns %d by Do (host %d)", got, host)
	}

	wantErr := errors.New("from fn")
	if err := ns.Do(func() error { return wantErr }); !errors.Is(err, wantErr) {
		t.Errorf("Do error = %v, want %v", err, wantErr)
	}

	reopened, err := Open(ns.Path())
	if err != nil {
		t.Fatalf("Open of a live pin: %v", err)
	}
	if reopened.Path() != ns.Path() {
		t.Errorf("Open path = %q, want %q", reopened.Path(), ns.Path())
	}

	if err := ns.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	for _, m := range mountInfo(t) {
		if m.point == ns.Path() {
			t.Errorf("pin still in mountinfo after Remove: %+v", m)
		}
	}
	if _, err := os.Lstat(ns.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pin file still there after Remove: %v", err)
	}
	if err := ns.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if err := Remove(ns.Path()); err != nil {
		t.Errorf("Remove by path after Remove: %v", err)
	}
	if _, err := Open(ns.Path()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open after Remove = %v, want ErrNotFound", err)
	}
	if err := ns.Do(func() error {
		t.Error("fn ran although the pin is gone")
		return nil
	}); err == nil {
		t.Error("Do on a removed pin succeeded")
	}
	waitNoThreadsOutside(t, host)
}

func TestDoPanic(t *testing.T) {
	requireRoot(t)
	ns, err := Create(context.Background(), pinDir(t), "p")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if got := recover(); got != "boom" {
			t.Errorf("recovered %v, want the panic of fn", got)
		}
	}()
	_ = ns.Do(func() error { panic("boom") })
	t.Error("Do returned after fn panicked")
}

func TestOpenErrors(t *testing.T) {
	requireRoot(t) // statfs of nsfs and the plain pin dir need no root, but Create does
	dir := pinDir(t)
	if _, err := Create(context.Background(), dir, "live"); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		path     string
		notFound bool
	}{
		{"missing", filepath.Join(dir, "missing"), true},
		{"plain file left by a crash", plain, true},
		{"another kind of namespace", "/proc/self/ns/mnt", false},
		{"live pin", filepath.Join(dir, "live"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.path)
			if got := errors.Is(err, ErrNotFound); got != tc.notFound {
				t.Errorf("Open(%s) = %v, ErrNotFound %v, want %v", tc.path, err, got, tc.notFound)
			}
		})
	}
	// The /proc/self/ns/mnt case must fail, just not as ErrNotFound.
	if _, err := Open("/proc/self/ns/mnt"); err == nil {
		t.Error("Open of a mount namespace succeeded")
	}
	// An unmounted leftover is removed like a pin.
	if err := Remove(plain); err != nil {
		t.Errorf("Remove of a plain leftover: %v", err)
	}
}

func TestCreateErrors(t *testing.T) {
	requireRoot(t)
	dir := pinDir(t)
	if _, err := Create(context.Background(), dir, "taken"); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		pin    string
		wantIs error
	}{
		{"empty", context.Background(), "", nil},
		{"dot", context.Background(), ".", nil},
		{"dotdot", context.Background(), "..", nil},
		{"slash", context.Background(), "a/b", nil},
		{"existing", context.Background(), "taken", fs.ErrExist},
		{"cancelled", cancelled, "fresh", context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns, err := Create(tc.ctx, dir, tc.pin)
			if err == nil {
				t.Fatalf("Create(%q) succeeded with %s", tc.pin, ns.Path())
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("Create(%q) = %v, want %v", tc.pin, err, tc.wantIs)
			}
		})
	}
	// The existing pin is untouched by the failed Create.
	if _, err := Open(filepath.Join(dir, "taken")); err != nil {
		t.Errorf("existing pin damaged: %v", err)
	}
	paths, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 1 {
		t.Errorf("List = %v, want only the taken pin", paths)
	}
}

func TestConcurrentCreate(t *testing.T) {
	requireRoot(t)
	dir := pinDir(t)
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = Create(context.Background(), dir, fmt.Sprintf("pod%02d", i))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Create %d: %v", i, err)
		}
	}
	dirMounts := 0
	for _, m := range mountInfo(t) {
		if m.point == dir {
			dirMounts++
		}
	}
	if dirMounts != 1 {
		t.Errorf("pin dir mounted %d times, want 1", dirMounts)
	}
	paths, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != n {
		t.Fatalf("List found %d pins, want %d", len(paths), n)
	}
	inodes := map[uint64]bool{}
	for _, p := range paths {
		if _, err := Open(p); err != nil {
			t.Errorf("Open(%s): %v", p, err)
		}
		inodes[nsInode(t, p)] = true
	}
	if len(inodes) != n {
		t.Errorf("%d pins refer to %d distinct namespaces", n, len(inodes))
	}
	for _, p := range paths {
		if err := Remove(p); err != nil {
			t.Errorf("Remove(%s): %v", p, err)
		}
	}
	if got := mountsUnder(t, dir); got != 1 {
		t.Errorf("%d mounts under %s after removing all pins, want only the dir", got, dir)
	}
}

func TestCyclesLeakNothing(t *testing.T) {
	requireRoot(t)
	dir := pinDir(t)
	runtime.LockOSThread()
	host := nsInode(t, "/proc/thread-self/ns/net")
	runtime.UnlockOSThread()

	// One cycle first so the dir mount exists in the baseline.
	ns, err := Create(context.Background(), dir, "warmup")
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Remove(); err != nil {
		t.Fatal(err)
	}
	fds, mounts := countFDs(t), mountsUnder(t, dir)

	for i := range 50 {
		ns, err := Create(context.Background(), dir, fmt.Sprintf("cycle%d", i))
		if err != nil {
			t.Fatalf("cycle %d Create: %v", i, err)
		}
		if err := ns.Do(func() error { return nil }); err != nil {
			t.Fatalf("cycle %d Do: %v", i, err)
		}
		if err := ns.Remove(); err != nil {
			t.Fatalf("cycle %d Remove: %v", i, err)
		}
	}

	if got := countFDs(t); got != fds {
		t.Errorf("open fds %d after 50 cycles, %d before", got, fds)
	}
	if got := mountsUnder(t, dir); got != mounts {
		t.Errorf("mounts under %s: %d after 50 cycles, %d before", dir, got, mounts)
	}
	if paths, err := List(dir); err != nil || len(paths) != 0 {
		t.Errorf("List after 50 cycles = %v, %v; want none", paths, err)
	}
	waitNoThreadsOutside(t, host)
}

func TestList(t *testing.T) {
	requireRoot(t)
	dir := pinDir(t)
	if paths, err := List(dir); err != nil || paths != nil {
		t.Fatalf("List of a missing dir = %v, %v; want nil, nil", paths, err)
	}
	for _, name := range []string{"b", "a", "c"} {
		if _, err := Create(context.Background(), dir, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	paths, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")}
	if fmt.Sprint(paths) != fmt.Sprint(want) {
		t.Errorf("List = %v, want %v", paths, want)
	}
}

// TestRemoveDetachesCopies checks the propagation choice: a mount
// namespace cloned after a pin exists holds a copy of it, and Remove in the
// host must take that copy away too so the namespace can be freed.
func TestRemoveDetachesCopies(t *testing.T) {
	requireRoot(t)
	dir := pinDir(t)
	ns, err := Create(context.Background(), dir, "shared")
	if err != nil {
		t.Fatal(err)
	}

	// A thread of its own unshares the mount namespace (with fs state,
	// which unshare(CLONE_NEWNS) implies), and is discarded afterwards.
	type step struct{ before, after bool }
	var got step
	ready, removed := make(chan error, 1), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with us
		if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
			ready <- err
			return
		}
		// Make the copy a slave, as runc does for a container's root.
		if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
			ready <- err
			return
		}
		got.before = hasMount("/proc/thread-self/mountinfo", ns.Path())
		ready <- nil
		<-removed
		got.after = hasMount("/proc/thread-self/mountinfo", ns.Path())
		done <- nil
	}()
	if err := <-ready; err != nil {
		t.Skipf("cannot unshare a mount namespace: %v", err)
	}
	if err := ns.Remove(); err != nil {
		t.Fatal(err)
	}
	close(removed)
	<-done
	if !got.before {
		t.Errorf("the cloned mount namespace did not receive a copy of the pin")
	}
	if got.after {
		t.Errorf("the pin's copy in the cloned mount namespace survived Remove")
	}
}

func hasMount(mountinfo, point string) bool {
	data, err := os.ReadFile(mountinfo)
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeOctal(f[4]) == point {
			return true
		}
	}
	return false
}
