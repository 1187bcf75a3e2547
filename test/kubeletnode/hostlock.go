package kubeletnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// HostLockPath is the lock every test that runs a kubelet on this host
// takes for as long as its kubelet runs: this package's Node (the kubelet
// suite, the kubelet benchmark) and test/cluster/run.sh (`flock` on the
// same file). A kubelet binds fixed ports and owns node-wide state, so two
// at once clash. It is a flock(2) lock: the kernel drops it when its
// holder exits, however it exits. The file says who holds it.
const HostLockPath = "/run/cri-runtimed-test/kubelet-host.lock"

// HostLockWait is how long New waits for another holder (a cluster test
// left running with CLUSTER_KEEP, another session's kubelet suite) before
// it gives up.
const HostLockWait = 20 * time.Minute

// HostLock is a held HostLockPath.
type HostLock struct {
	f *os.File
}

// LockHost takes HostLockPath, waiting until ctx is done if another
// process holds it. who says what holds it (written into the file for
// the next waiter's message).
func LockHost(ctx context.Context, who string) (*HostLock, error) {
	return lockFile(ctx, HostLockPath, who)
}

func lockFile(ctx context.Context, path, who string) (*HostLock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("kubeletnode: host lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kubeletnode: host lock: %w", err)
	}
	logged := time.Time{}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("kubeletnode: flock %s: %w", path, err)
		}
		holder := holderOf(f)
		if time.Since(logged) > time.Minute {
			fmt.Fprintf(os.Stderr, "kubeletnode: waiting for the host's kubelet lock %s, held by %s\n", path, holder)
			logged = time.Now()
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("kubeletnode: another kubelet test holds this host (%s: %s): %w", path, holder, ctx.Err())
		case <-time.After(time.Second):
		}
	}
	// Who holds it, for the message of the next one waiting.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(fmt.Sprintf("%s pid %d since %s\n", who, os.Getpid(), time.Now().UTC().Format(time.RFC3339))), 0)
	}
	return &HostLock{f: f}, nil
}

func holderOf(f *os.File) string {
	b := make([]byte, 256)
	n, _ := f.ReadAt(b, 0)
	if s := strings.TrimSpace(string(b[:n])); s != "" {
		return s
	}
	return "an unknown process"
}

// Unlock releases the lock. The file stays: removing it would let a
// waiter hold a lock on a file the next one no longer sees.
func (l *HostLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close() // closing the only descriptor drops the flock
	l.f = nil
	return err
}
