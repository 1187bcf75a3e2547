package shim_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
)

// dialAs dials the shim in stateDir from a thread whose credentials are
// uid:gid with no supplementary groups (Linux credentials are per thread;
// the thread is never given back to the Go runtime, so it ends with this
// goroutine). It returns the dial's error: nil only if the shim answered.
func dialAs(t *testing.T, stateDir string, uid, gid int) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread must die with the goroutine.
		for _, call := range [][4]uintptr{
			{unix.SYS_SETGROUPS, 0, 0, 0},
			{unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)},
			{unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)},
		} {
			if _, _, e := unix.RawSyscall(call[0], call[1], call[2], call[3]); e != 0 {
				errc <- e
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := shim.Dial(ctx, stateDir)
		if err == nil {
			c.Close()
		}
		errc <- err
	}()
	return <-errc
}

// TestSocketOnlyForRoot checks the two guards of the shim's socket, which
// lets whoever connects create containers and exec processes with any
// capabilities: its mode is 0600 even when the shim starts under umask 0,
// and a process of another user is refused (SO_PEERCRED) even when the
// mode would let it connect.
func TestSocketOnlyForRoot(t *testing.T) {
	old := syscall.Umask(0)
	h := newHarness(t, "runc", 0)
	syscall.Umask(old)
	sock := filepath.Join(h.stateDir, "shim.sock")
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("shim socket mode %v under umask 0, want a socket with 0600", fi.Mode())
	}
	// Let others through the state directory, as a user namespace pod's
	// group is: only the socket's own guards remain.
	if err := os.Chmod(h.stateDir, 0o711); err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	if err := dialAs(t, h.stateDir, nobody, nobody); err == nil {
		t.Errorf("uid %d reached the shim through its 0600 socket", nobody)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := dialAs(t, h.stateDir, nobody, nobody); err == nil {
		t.Errorf("uid %d was served by the shim through a 0666 socket: no peer credential check", nobody)
	} else {
		t.Logf("uid %d refused: %v", nobody, err)
	}
	// Root still is served, so the refusals above are the guards' doing.
	if err := dialAs(t, h.stateDir, 0, 0); err != nil {
		t.Errorf("root cannot reach the shim: %v", err)
	}
}
