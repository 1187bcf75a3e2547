package netns

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// ErrNotFound is wrapped by Open when the pin file does not exist or is not
// a mounted namespace (a file left behind by a crash before its mount).
var ErrNotFound = errors.New("network namespace pin not found")

// maxUnmounts bounds Remove against a pin that keeps being remounted; a
// healthy pin has exactly one mount, a confused one a few stacked.
const maxUnmounts = 32

// NetNS is a network namespace pinned by a bind mount. It holds only the
// pin's path, never an open descriptor, so removing the pin frees the
// namespace as soon as nothing else uses it.
type NetNS struct {
	path string
}

// Create makes a new network namespace with its loopback interface up and
// pins it at dir/name. name must be a single path element and must not
// exist yet (an existing pin is an error wrapping fs.ErrExist: two sandboxes
// never share a pin). The first Create in dir turns dir into a shared mount
// point (see prepareDir).
//
// ctx is only checked before any work starts: once the namespace thread is
// running, Create waits for it, because returning early would leave a pin
// that no caller knows about.
func Create(ctx context.Context, dir, name string) (*NetNS, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validName(name); err != nil {
		return nil, err
	}
	if err := prepareDir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	// O_EXCL: a name collision must fail rather than mount a second
	// namespace over (and hide) one a sandbox is using.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return nil, fmt.Errorf("create netns pin: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, errors.Join(fmt.Errorf("create netns pin: %w", err), Remove(path))
	}

	// The namespace is made on a thread of its own that unshares
	// CLONE_NEWNET and is then switched back to the original namespace with
	// setns before it is unlocked; only if that setns fails is the thread
	// left locked for the Go runtime to discard. Always discarding looks
	// safer but is not: when the goroutine happens to run on the main
	// thread, which cannot exit, the runtime wedges that thread instead, so
	// the process's main thread (what /proc/<pid>/ns/net shows) would sit in
	// a pod's namespace for good and keep it alive after Remove
	// (TestCyclesLeakNothing checks every thread's namespace).
	if err := runLocked(unshareNet, func() error { return pinNew(path) }); err != nil {
		// Remove is idempotent, so it also covers a failure after the
		// mount succeeded.
		return nil, errors.Join(fmt.Errorf("create network namespace %s: %w", path, err), Remove(path))
	}
	return &NetNS{path: path}, nil
}

// unshareNet moves the calling thread into a new network namespace.
func unshareNet() error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare CLONE_NEWNET: %w", err)
	}
	return nil
}

// pinNew runs on a locked thread inside the new namespace: it brings lo up
// and bind-mounts the thread's namespace file onto path.
func pinNew(path string) error {
	if err := loopbackUp(); err != nil {
		return err
	}
	// The thread's own entry, not /proc/self/ns/net: the latter is the
	// thread group leader's namespace, which is the host's.
	src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount %s on %s: %w", src, path, err)
	}
	return nil
}

// loopbackUp sets IFF_UP on lo in the calling thread's network namespace.
// A socket belongs to the namespace of the thread that created it, so the
// ioctl acts on the new namespace's lo. An ioctl is all it takes, which
// spares us a netlink dependency; CNI plugins configure everything else.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket for loopback setup: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback ifreq: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// prepareDir creates dir and makes it a mount point with shared
// propagation, as `ip netns` does with /run/netns.
//
// Shared rather than private because what leaks a namespace is a copy of a
// pin mount in another mount namespace: a copy keeps the namespace (and
// whatever CNI left in it) alive after our unmount. Every mount namespace
// cloned from the host after a pin exists gets such a copy (a container's,
// before runc pivots away from it; any service or process that unshares its
// mount namespace; a hostPath volume covering /run). Under a private mount
// those copies never hear of our unmount; under a shared one they are peers
// or slaves of the pin and the unmount propagates to them. New pins also
// propagate into such namespaces, but only as mounts that our Remove takes
// away again. Removing the file afterwards covers the rest: since Linux
// 3.18 unlinking a mount point detaches the mounts on it in every mount
// namespace, including copies a consumer made private.
//
// A flock on dir serializes setup between concurrent Creates, in this
// process and in others (tests, a second daemon by mistake), so the
// directory is never bind-mounted onto itself twice. The lock is held only
// for a couple of mount calls.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create netns pin dir: %w", err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns pin dir %s: %w", dir, err)
	}
	defer unix.Close(fd) // also releases the flock
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock netns pin dir %s: %w", dir, err)
	}
	// Making a mount point shared is a no-op when it already is, and fails
	// with EINVAL when dir is not a mount point: that failure is our "first
	// use" test, and it needs no state kept in this process.
	err = unix.Mount("", dir, "", unix.MS_SHARED, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make netns pin dir %s shared: %w", dir, err)
	}
	// MS_REC carries pins already in dir (from before it was a mount
	// point) into the new mount, so they stay reachable by path.
	if err := unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind mount netns pin dir %s on itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make netns pin dir %s shared: %w", dir, err)
	}
	return nil
}

// Open returns the pin at path, typically one recorded before a daemon
// restart. The error wraps ErrNotFound when there is no file or the file is
// not a mounted namespace.
func Open(path string) (*NetNS, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("open netns %s: %w: %w", path, ErrNotFound, err)
		}
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		return nil, fmt.Errorf("open netns %s: not a mounted namespace: %w", path, ErrNotFound)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer unix.Close(fd)
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: namespace type: %w", path, err)
	}
	if typ != unix.CLONE_NEWNET {
		return nil, fmt.Errorf("open netns %s: pinned namespace is not a network namespace", path)
	}
	return &NetNS{path: path}, nil
}

// Path is the pin's path, the value CNI and the OCI spec are given.
func (n *NetNS) Path() string { return n.path }

// Do runs fn on a locked OS thread inside the namespace and returns its
// error. Only fn's own goroutine is inside: goroutines fn starts run on
// other threads, in the host namespace. The calling goroutine's thread
// never changes namespace, and fn's thread is back in the original one (or
// discarded) before Do returns. A panic in fn is re-raised in the caller.
// fn must not call runtime.UnlockOSThread without a matching
// LockOSThread: the thread would then go back to the pool still inside.
func (n *NetNS) Do(fn func() error) error {
	return runLocked(n.enter, fn)
}

// enter moves the calling thread into the namespace.
func (n *NetNS) enter() error {
	fd, err := unix.Open(n.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", n.path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter netns %s: %w", n.path, err)
	}
	return nil
}

// Remove unmounts and deletes the pin. See the package-level Remove.
func (n *NetNS) Remove() error { return Remove(n.path) }

// Remove detaches every mount on path and deletes the file. A missing file
// or one that was never mounted is not an error, so Remove can be repeated
// and used on orphans found by List. MNT_DETACH because a process may still
// hold the namespace open (a CNI plugin, a nsenter): the pin goes away now
// and the namespace when its last user does.
func Remove(path string) error {
	unmounted := false
	for range maxUnmounts {
		err := unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		if err == nil {
			continue
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			unmounted = true
			break
		}
		return fmt.Errorf("unmount netns pin %s: %w", path, err)
	}
	if !unmounted {
		return fmt.Errorf("unmount netns pin %s: still mounted after %d unmounts", path, maxUnmounts)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove netns pin: %w", err)
	}
	return nil
}

// List returns the paths of the entries in dir, mounted or not, sorted by
// name; a missing dir has none. Recovery compares them with the sandbox
// records and removes the rest.
func List(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list netns pins: %w", err)
	}
	var paths []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		paths = append(paths, filepath.Join(dir, e.Name()))
	}
	return paths, nil
}

// validName rejects names that would put the pin anywhere but directly in
// the pin directory.
func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid netns pin name %q", name)
	}
	return nil
}

// runLocked runs enter and then fn on a new goroutine locked to its OS
// thread, and waits for it. Running on a goroutine of its own means the
// caller's thread never changes namespace, whatever the caller has locked.
// The thread's original network namespace is restored before the thread is
// unlocked; if that fails the thread stays locked and the goroutine ends,
// so the runtime never schedules anything else on a thread in the wrong
// namespace. A panic in fn is carried back and re-raised in the caller's
// goroutine, where a deferred recover can see it.
func runLocked(enter, fn func() error) error {
	done := make(chan threadResult, 1)
	go func() {
		runtime.LockOSThread()
		r := switchAndRun(enter, fn)
		if r.restored {
			runtime.UnlockOSThread()
		}
		done <- r
	}()
	r := <-done
	if r.panicked {
		panic(r.value)
	}
	return r.err
}

type threadResult struct {
	err      error
	panicked bool
	value    any  // the panic value when panicked
	restored bool // the thread is back in its original namespace
}

// switchAndRun runs on a locked thread. Every thread the runtime schedules
// freely is in the namespace the process started in, so the current
// thread's namespace is the one to come back to.
func switchAndRun(enter, fn func() error) (r threadResult) {
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return threadResult{err: fmt.Errorf("open current netns: %w", err), restored: true}
	}
	defer unix.Close(orig)
	r.panicked = true
	defer func() {
		if r.panicked {
			r.value = recover()
		}
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			klog.ErrorS(err, "Restoring a thread's network namespace; discarding the thread")
			return
		}
		r.restored = true
	}()
	if err := enter(); err != nil {
		r.err = err
	} else {
		r.err = fn()
	}
	r.panicked = false
	return r
}

// Pin pins an existing network namespace (nsPath, e.g. /proc/<pid>/ns/net
// of a pod's sandbox process) at dir/name and brings its lo up. Pods with a
// user namespace need this: their network namespace must be owned by the
// pod's user namespace, so the sandbox process creates it and the daemon
// pins it afterwards.
func Pin(ctx context.Context, dir, name, nsPath string) (*NetNS, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validName(name); err != nil {
		return nil, err
	}
	if err := prepareDir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return nil, fmt.Errorf("create netns pin: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, errors.Join(fmt.Errorf("create netns pin: %w", err), Remove(path))
	}
	if err := unix.Mount(nsPath, path, "none", unix.MS_BIND, ""); err != nil {
		return nil, errors.Join(fmt.Errorf("bind mount %s on %s: %w", nsPath, path, err), Remove(path))
	}
	ns := &NetNS{path: path}
	if err := ns.Do(loopbackUp); err != nil {
		return nil, errors.Join(err, Remove(path))
	}
	return ns, nil
}
