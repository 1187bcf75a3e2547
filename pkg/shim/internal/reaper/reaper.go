package reaper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Exit is the termination of one process.
type Exit struct {
	Pid int
	// Status is the exit code, or 128+signal for a signal death, the
	// convention of shells and of kubelet.
	Status int
	// Signal is the terminating signal, 0 for a normal exit.
	Signal syscall.Signal
	Time   time.Time
}

const (
	// unclaimedTTL is how long an exit nobody waits for is kept: a pid read
	// from runc's pid file can exit before its waiter registers.
	unclaimedTTL = time.Minute
	// maxUnclaimed bounds the memory of exits of stray processes.
	maxUnclaimed = 1024
)

// Reaper reaps all children of the process. Create it with New and run Run
// in a goroutine owned by the caller.
type Reaper struct {
	mu        sync.Mutex
	waiters   map[int][]chan Exit
	unclaimed map[int]Exit
}

// New returns a Reaper. Nothing is reaped until Run is called.
func New() *Reaper {
	return &Reaper{waiters: map[int][]chan Exit{}, unclaimed: map[int]Exit{}}
}

// Run reaps children on every SIGCHLD until ctx is done.
func (r *Reaper) Run(ctx context.Context) {
	ch := make(chan os.Signal, 32)
	signal.Notify(ch, unix.SIGCHLD)
	defer signal.Stop(ch)
	// Children that exited before Notify took effect sent their SIGCHLD
	// into the void.
	r.reap()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			r.reap()
		}
	}
}

func (r *Reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 { // ECHILD or nothing more to reap
			return
		}
		e := Exit{Pid: pid, Time: time.Now()}
		switch {
		case ws.Exited():
			e.Status = ws.ExitStatus()
		case ws.Signaled():
			e.Signal = ws.Signal()
			e.Status = 128 + int(e.Signal)
		default:
			continue // stopped/continued: not an exit
		}
		r.dispatch(e)
	}
}

func (r *Reaper) dispatch(e Exit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ws, ok := r.waiters[e.Pid]; ok {
		delete(r.waiters, e.Pid)
		for _, w := range ws {
			w <- e // buffered, one send per channel
		}
		return
	}
	klog.V(4).InfoS("Unclaimed exit", "pid", e.Pid, "status", e.Status)
	for pid, old := range r.unclaimed {
		if e.Time.Sub(old.Time) > unclaimedTTL || len(r.unclaimed) >= maxUnclaimed {
			delete(r.unclaimed, pid)
		}
	}
	r.unclaimed[e.Pid] = e
}

// Subscribe returns a channel that receives the exit of pid once. If pid
// already exited recently without a waiter, the exit is delivered at once.
func (r *Reaper) Subscribe(pid int) <-chan Exit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.subscribeLocked(pid)
}

func (r *Reaper) subscribeLocked(pid int) chan Exit {
	ch := make(chan Exit, 1)
	if e, ok := r.unclaimed[pid]; ok && time.Since(e.Time) <= unclaimedTTL {
		delete(r.unclaimed, pid)
		ch <- e
		return ch
	}
	r.waiters[pid] = append(r.waiters[pid], ch)
	return ch
}

// Unsubscribe drops a waiter that is no longer interested, so a pid that
// never exits does not pin the channel forever.
func (r *Reaper) Unsubscribe(pid int, ch <-chan Exit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ws := r.waiters[pid]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(r.waiters, pid)
	} else {
		r.waiters[pid] = ws
	}
}

// Start starts a child with os.StartProcess and subscribes to its exit
// before the reap loop can dispatch it, so even an instant exit is caught.
// The os.Process handle is released: the exit comes from the channel.
func (r *Reaper) Start(name string, argv []string, attr *os.ProcAttr) (int, <-chan Exit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := os.StartProcess(name, argv, attr)
	if err != nil {
		return 0, nil, fmt.Errorf("start %s: %w", name, err)
	}
	pid := p.Pid
	// Release frees the pidfd Go keeps; it does not wait.
	if err := p.Release(); err != nil {
		klog.V(2).InfoS("Release process handle", "pid", pid, "err", err)
	}
	return pid, r.subscribeLocked(pid), nil
}

// Wait waits for the exit on ch; if ctx ends first the process is killed
// with SIGKILL and its exit still awaited, so no caller leaves a runaway
// child behind.
func Wait(ctx context.Context, pid int, ch <-chan Exit) (Exit, error) {
	select {
	case e := <-ch:
		return e, nil
	case <-ctx.Done():
	}
	_ = unix.Kill(pid, unix.SIGKILL)
	e := <-ch
	return e, fmt.Errorf("pid %d killed: %w", pid, ctx.Err())
}
