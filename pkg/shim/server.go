package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim/internal/reaper"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim/internal/runtime"
)

const (
	// exitIOGrace is how long an exit waits for the output pumps to drain
	// before it is recorded.
	exitIOGrace = 2 * time.Second
	// deleteWait bounds how long Delete waits for a killed container.
	deleteWait = 10 * time.Second
	// runtimeTimeout bounds one runtime invocation.
	runtimeTimeout = time.Minute
	// startErrorExitCode is reported for containers that never ran.
	startErrorExitCode = 128
	// lostExitCode is reported when the exit status could not be observed.
	lostExitCode = 255
)

// server holds the shim's containers. Its goroutines are owned by ctx:
// cancelling it stops exit watchers, and wg waits for them.
type server struct {
	ctx     context.Context
	wg      sync.WaitGroup
	dir     string
	podID   string
	maxLine int
	rt      *runtime.Runtime
	reaper  *reaper.Reaper
	events  *eventLog
	ooms    *oomWatcher
	stop    func(force bool) // asks Main to exit
	// started is signalled when a container (not a pause) has started:
	// serve then trims the binary's pages.
	started chan struct{}

	mu         sync.Mutex
	containers map[string]*container
}

// container is one container of the pod. rec and the channels are guarded
// by mu; opMu serialises lifecycle operations (create, start, delete,
// update) so runtime calls happen without holding mu.
type container struct {
	id  string
	dir string

	opMu sync.Mutex

	mu     sync.Mutex
	rec    record
	io     *containerIO
	oom    *oomCounter // nil when the cgroup's counter is unknown
	exited chan struct{}
	// pidfd refers to the init while it has not exited (nil when it could
	// not be opened): a created container is killed through it, without
	// a runtime call that would poll for the death.
	pidfd *os.File
	// startDone is non-nil while a start is in flight: the exit watcher
	// waits for it, so a start failure decides the reason of the exit.
	startDone chan struct{}
	startErr  error
}

func (c *container) state() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec.State
}

func (c *container) runtimeLog() string { return filepath.Join(c.dir, "runtime.log") }

// persistLocked writes the record; c.mu must be held.
func (c *container) persistLocked() error {
	return saveRecord(c.dir, &c.rec)
}

func (s *server) get(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return c, nil
}

func validID(id string) error {
	if id == "" || len(id) > 128 || strings.ContainsAny(id, "/\\\x00") || id == "." || id == ".." || strings.HasPrefix(id, ".") {
		return fmt.Errorf("invalid container id %q", id)
	}
	return nil
}

func (s *server) create(ctx context.Context, req CreateRequest) (State, error) {
	if err := validID(req.ID); err != nil {
		return State{}, err
	}
	if !filepath.IsAbs(req.Bundle) {
		return State{}, fmt.Errorf("bundle path %q is not absolute", req.Bundle)
	}
	c := &container{id: req.ID, dir: filepath.Join(s.dir, req.ID), exited: make(chan struct{})}
	c.rec = record{
		State:       State{ID: req.ID, Status: StatusCreated, CreatedAt: time.Now()},
		Bundle:      req.Bundle,
		LogPath:     req.LogPath,
		Stdin:       req.Stdin,
		StdinOnce:   req.StdinOnce,
		Terminal:    req.Terminal,
		CgroupsPath: bundleCgroupsPath(req.Bundle),
		RestoreFrom: req.RestoreFrom,
		Pause:       req.Pause,
	}
	if req.Pause && (!req.Start || req.Terminal || req.Stdin || req.LogPath != "" || req.RestoreFrom != "") {
		return State{}, fmt.Errorf("create %s: the shim starts a pause at once, without stdio or log", req.ID)
	}
	if req.RestoreFrom != "" && req.Terminal {
		return State{}, fmt.Errorf("create %s: %w", req.ID, errTerminal)
	}
	if req.RestoreFrom != "" && req.Start {
		return State{}, fmt.Errorf("create %s: a container to restore cannot start at create", req.ID)
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	s.mu.Lock()
	if _, ok := s.containers[req.ID]; ok {
		s.mu.Unlock()
		return State{}, fmt.Errorf("%w: %s", ErrAlreadyExists, req.ID)
	}
	s.containers[req.ID] = c
	s.mu.Unlock()

	// The record exists before the runtime creates anything (pid 0 marks
	// a create in flight), so a shim crash mid-create is recognisable.
	if err := os.Mkdir(c.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		s.forget(c)
		return State{}, fmt.Errorf("create %s: %w", req.ID, err)
	}
	c.mu.Lock()
	err := c.persistLocked()
	c.mu.Unlock()
	if err != nil {
		s.forget(c)
		os.RemoveAll(c.dir)
		return State{}, fmt.Errorf("create %s: %w", req.ID, err)
	}

	if req.RestoreFrom != "" {
		// Nothing runs until Start restores it.
		s.events.publish(req.ID, EventCreated, c.state())
		klog.InfoS("Created container to restore", "id", req.ID, "images", req.RestoreFrom)
		return c.state(), nil
	}
	startedAt := time.Now()
	var pid int
	var cio *containerIO
	if req.Pause {
		pid, cio, err = s.pauseCreate(ctx, c, req)
	} else {
		pid, cio, err = s.runtimeCreate(ctx, c, req)
	}
	if err != nil {
		reason := ReasonCreateError
		if req.Start {
			reason = ReasonStartError
		}
		s.recordExit(c, startErrorExitCode, reason, runtimeMessage(err))
		klog.InfoS("Create failed", "id", req.ID, "start", req.Start, "err", err)
		return State{}, fmt.Errorf("create %s: %w", req.ID, err)
	}

	if !req.Start {
		startedAt = time.Time{}
	}
	st := s.adoptInit(c, pid, cio, startedAt)
	s.events.publish(req.ID, EventCreated, st)
	if req.Start {
		s.events.publish(req.ID, EventStarted, st)
	}
	klog.InfoS("Created container", "id", req.ID, "pid", pid, "started", req.Start)
	return st, nil
}

// adoptInit takes a new init process over: its exit from the reaper, a
// pidfd, its io and OOM watch, and its pid in the record. A non-zero
// startedAt marks it running (restore: CRIU's process already runs).
// It returns the state it persisted; a failed persist is only logged,
// since the process exists and a missing pid in the record costs only
// recovery after a shim crash.
func (s *server) adoptInit(c *container, pid int, cio *containerIO, startedAt time.Time) State {
	exitCh := s.reaper.Subscribe(pid)
	// The init is this shim's child and only this shim's reaper reaps
	// it, so the pid still names it here.
	var pidfd *os.File
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		pidfd = os.NewFile(uintptr(fd), "pidfd")
	}
	c.mu.Lock()
	c.pidfd = pidfd
	c.io = cio
	c.oom = s.ooms.watch(c.rec.CgroupsPath)
	c.rec.State.Pid = pid
	if !startedAt.IsZero() {
		c.rec.State.Status = StatusRunning
		c.rec.State.StartedAt = startedAt
	}
	err := c.persistLocked()
	st := c.rec.State
	c.mu.Unlock()
	cio.start()
	s.wg.Add(1)
	go s.watch(c, pid, exitCh)
	if err != nil {
		klog.ErrorS(err, "Persist adopted init", "id", c.id, "pid", pid)
	}
	return st
}

// runtimeCreate sets up stdio and runs the runtime's create.
func (s *server) runtimeCreate(ctx context.Context, c *container, req CreateRequest) (int, *containerIO, error) {
	log, err := openLog(req.LogPath, s.maxLine)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, runtimeTimeout)
	defer cancel()
	pidFile := filepath.Join(c.dir, "init.pid")
	var cio *containerIO
	if req.Terminal {
		cs, err := newConsoleSocket()
		if err != nil {
			log.Close()
			return 0, nil, err
		}
		defer cs.close()
		type result struct {
			f   *os.File
			err error
		}
		got := make(chan result, 1)
		go func() { // ends when the runtime connects or cs is closed
			f, err := cs.receive(runtimeTimeout)
			got <- result{f, err}
		}()
		err = s.runtimeRun(ctx, c, req, pidFile, cs.path(), runtime.Stdio{})
		if err != nil {
			cs.ln.Close()
			if r := <-got; r.f != nil {
				r.f.Close()
			}
			log.Close()
			s.cleanupRuntime(c)
			return 0, nil, err
		}
		r := <-got
		if r.err != nil {
			log.Close()
			s.cleanupRuntime(c)
			return 0, nil, r.err
		}
		cio = newTTYIO(log, r.f, req.Stdin)
	} else {
		var child runtime.Stdio
		cio, child, err = newPipeIO(log, req.Stdin)
		if err != nil {
			log.Close()
			return 0, nil, err
		}
		err = s.runtimeRun(ctx, c, req, pidFile, "", child)
		closeStdio(child)
		if err != nil {
			cio.closeAll()
			s.cleanupRuntime(c)
			return 0, nil, err
		}
	}
	pid, err := readPidFile(pidFile)
	if err != nil {
		cio.closeAll()
		s.cleanupRuntime(c)
		return 0, nil, fmt.Errorf("read init pid: %w", err)
	}
	return pid, cio, nil
}

// runtimeRun creates the container in the runtime, and starts it too if
// req says so.
func (s *server) runtimeRun(ctx context.Context, c *container, req CreateRequest, pidFile, consoleSocket string, stdio runtime.Stdio) error {
	if req.Start {
		return s.rt.RunDetached(ctx, c.runtimeLog(), c.id, req.Bundle, pidFile, consoleSocket, stdio)
	}
	return s.rt.Create(ctx, c.runtimeLog(), c.id, req.Bundle, pidFile, consoleSocket, stdio)
}

// cleanupRuntime removes whatever a failed create left in the runtime.
func (s *server) cleanupRuntime(c *container) {
	ctx, cancel := context.WithTimeout(s.ctx, runtimeTimeout)
	defer cancel()
	if err := s.rt.Delete(ctx, c.runtimeLog(), c.id, true); err != nil && !runtime.IsNotExist(err) {
		klog.V(2).InfoS("Cleanup after failed create", "id", c.id, "err", err)
	}
}

func (s *server) forget(c *container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.containers[c.id] == c {
		delete(s.containers, c.id)
		s.ooms.unwatch(c.oom)
	}
}

// runtimeMessage extracts the runtime's own message for State.Message.
func runtimeMessage(err error) string {
	var re *runtime.Error
	if errors.As(err, &re) {
		return re.Message
	}
	return err.Error()
}

func exitedState(st State, code int, reason, msg string) State {
	st.Status = StatusExited
	st.ExitCode = int32(code)
	st.FinishedAt = time.Now()
	st.Reason = reason
	st.Message = msg
	return st
}

func (s *server) start(ctx context.Context, id string) (State, error) {
	c, err := s.get(id)
	if err != nil {
		return State{}, err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	if c.rec.State.Status != StatusCreated {
		st := c.rec.State.Status
		c.mu.Unlock()
		return State{}, fmt.Errorf("start %s: container is %s, not created", id, st)
	}
	if c.pendingLocked() {
		c.mu.Unlock()
		return s.restore(ctx, c)
	}
	done := make(chan struct{})
	c.startDone = done
	c.mu.Unlock()

	rctx, cancel := context.WithTimeout(ctx, runtimeTimeout)
	defer cancel()
	startedAt := time.Now()
	err = s.rt.Start(rctx, c.runtimeLog(), id)

	c.mu.Lock()
	c.startErr = err
	c.startDone = nil
	close(done)
	var perr error
	if err == nil {
		c.rec.State.StartedAt = startedAt
		if c.rec.State.Status == StatusCreated {
			c.rec.State.Status = StatusRunning
		}
		perr = c.persistLocked()
	}
	st := c.rec.State
	c.mu.Unlock()

	if err != nil {
		// The init may still wait for its start signal; make sure it is
		// gone so the exit, with the start error as reason, is recorded.
		if kerr := s.rt.Kill(rctx, c.runtimeLog(), id, syscall.SIGKILL, false); kerr != nil {
			klog.V(2).InfoS("Kill after failed start", "id", id, "err", kerr)
		}
		t := time.NewTimer(deleteWait)
		defer t.Stop()
		select {
		case <-c.exited:
		case <-t.C:
		case <-ctx.Done():
		}
		return State{}, fmt.Errorf("start %s: %w", id, err)
	}
	if perr != nil {
		klog.ErrorS(perr, "Persist started container", "id", id)
	}
	s.events.publish(id, EventStarted, st)
	klog.InfoS("Started container", "id", id)
	return st, nil
}

// watch records the exit of a container's init. The exit is persisted
// before it becomes visible through State, Wait or Events.
func (s *server) watch(c *container, pid int, ch <-chan reaper.Exit) {
	defer s.wg.Done()
	var e reaper.Exit
	select {
	case e = <-ch:
	case <-s.ctx.Done():
		s.reaper.Unsubscribe(pid, ch)
		return
	}
	c.mu.Lock()
	gate := c.startDone
	c.mu.Unlock()
	if gate != nil {
		<-gate
	}
	c.io.wait(exitIOGrace)

	c.mu.Lock()
	st := c.rec.State
	st.Status = StatusExited
	st.ExitCode = int32(e.Status)
	st.FinishedAt = e.Time
	switch {
	case c.startErr != nil:
		st.ExitCode = startErrorExitCode
		st.Reason, st.Message = ReasonStartError, runtimeMessage(c.startErr)
	case c.oom.killed(e.Status == 128+int(syscall.SIGKILL)):
		// The kernel killed some process of the container for memory: the
		// main one, or a child whose death made it exit. kubelet reports
		// either as OOMKilled, as other runtimes do.
		st.OOMKilled = true
		st.Reason = ReasonOOMKilled
	case e.Status == 0:
		st.Reason = ReasonCompleted
	default:
		st.Reason = ReasonError
	}
	c.rec.State = st
	if err := c.persistLocked(); err != nil {
		klog.ErrorS(err, "Persist exit", "id", c.id)
	}
	if c.pidfd != nil {
		c.pidfd.Close()
		c.pidfd = nil
	}
	close(c.exited)
	c.mu.Unlock()
	s.events.publish(c.id, EventExited, st)
	klog.InfoS("Container exited", "id", c.id, "exitCode", st.ExitCode, "reason", st.Reason)
}

func (s *server) kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	c, err := s.get(id)
	if err != nil {
		return err
	}
	if c.state().Status == StatusExited || s.dropPending(c) {
		return nil
	}
	if c.rec.Pause {
		if err := s.pauseKill(c, sig, all); err != nil {
			return fmt.Errorf("kill %s: %w", id, err)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, runtimeTimeout)
	defer cancel()
	err = s.rt.Kill(ctx, c.runtimeLog(), id, sig, all)
	if err != nil && (runtime.IsNotRunning(err) || c.state().Status == StatusExited) {
		return nil // it exited meanwhile; its exit is being recorded
	}
	if err != nil {
		return fmt.Errorf("kill %s: %w", id, err)
	}
	return nil
}

func (s *server) wait(ctx context.Context, id string, maxWait time.Duration) (WaitReply, error) {
	c, err := s.get(id)
	if err != nil {
		return WaitReply{}, err
	}
	t := time.NewTimer(maxWait)
	defer t.Stop()
	select {
	case <-c.exited:
		return WaitReply{State: c.state(), Done: true}, nil
	case <-t.C:
	case <-ctx.Done():
	}
	return WaitReply{State: c.state()}, nil
}

func (s *server) delete(ctx context.Context, id string) (State, error) {
	c, err := s.get(id)
	if err != nil {
		return State{}, err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, runtimeTimeout)
	defer cancel()
	if c.rec.Pause {
		if err := s.pauseDelete(rctx, c); err != nil {
			return State{}, fmt.Errorf("delete %s: %w", id, err)
		}
		return s.deleted(c)
	}
	s.dropPending(c)
	// A created container's init waits for its start: killed through its
	// pidfd, it is gone at once and the plain delete below has nothing to
	// wait for (a forced delete would poll for the death every 100ms).
	if s.killCreated(c) {
		t := time.NewTimer(deleteWait)
		defer t.Stop()
		select {
		case <-c.exited:
		case <-t.C:
			return State{}, fmt.Errorf("delete %s: container did not exit after kill", id)
		case <-ctx.Done():
			return State{}, fmt.Errorf("delete %s: %w", id, ctx.Err())
		}
	}
	// A forced delete kills and deletes in one runtime call; only an
	// exited container still needs its plain delete.
	forced := false
	if c.state().Status != StatusExited {
		if err := s.rt.Delete(rctx, c.runtimeLog(), id, true); err != nil && !runtime.IsNotExist(err) {
			return State{}, fmt.Errorf("delete %s: %w", id, err)
		}
		forced = true
		t := time.NewTimer(deleteWait)
		defer t.Stop()
		select {
		case <-c.exited:
		case <-t.C:
			return State{}, fmt.Errorf("delete %s: container did not exit after kill", id)
		case <-ctx.Done():
			return State{}, fmt.Errorf("delete %s: %w", id, ctx.Err())
		}
	}
	if !forced {
		if err := s.rt.Delete(rctx, c.runtimeLog(), id, false); err != nil && !runtime.IsNotExist(err) {
			if ferr := s.rt.Delete(rctx, c.runtimeLog(), id, true); ferr != nil && !runtime.IsNotExist(ferr) {
				return State{}, fmt.Errorf("delete %s: %w", id, errors.Join(err, ferr))
			}
		}
	}
	return s.deleted(c)
}

// deleted drops what the shim holds of a container that is gone from
// the runtime.
func (s *server) deleted(c *container) (State, error) {
	c.mu.Lock()
	c.io.closeAll()
	st := c.rec.State
	c.mu.Unlock()
	if err := os.RemoveAll(c.dir); err != nil {
		return State{}, fmt.Errorf("delete %s: remove record: %w", c.id, err)
	}
	s.forget(c)
	s.events.publish(c.id, EventDeleted, st)
	klog.InfoS("Deleted container", "id", c.id)
	return st, nil
}

// killCreated sends SIGKILL to the init of a created (never started)
// container through its pidfd, and reports whether it did.
func (s *server) killCreated(c *container) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rec.State.Status != StatusCreated || c.pidfd == nil {
		return false
	}
	if err := unix.PidfdSendSignal(int(c.pidfd.Fd()), unix.SIGKILL, nil, 0); err != nil {
		klog.V(2).InfoS("Kill of a created container through its pidfd failed", "id", c.id, "err", err)
		return false
	}
	return true
}

func (s *server) list() []State {
	s.mu.Lock()
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	out := make([]State, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.state())
	}
	slices.SortFunc(out, func(a, b State) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

func (s *server) reopenLog(id string) error {
	c, err := s.get(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	cio := c.io
	c.mu.Unlock()
	if cio == nil || cio.log == nil {
		return nil
	}
	if err := cio.log.Reopen(); err != nil {
		return fmt.Errorf("reopen log of %s: %w", id, err)
	}
	return nil
}

func (s *server) update(ctx context.Context, id string, resources []byte) error {
	c, err := s.get(id)
	if err != nil {
		return err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if c.state().Status == StatusExited {
		return fmt.Errorf("update %s: %w", id, ErrNotRunning)
	}
	if c.rec.Pause {
		if err := s.pauseUpdate(c, resources); err != nil {
			return fmt.Errorf("update %s: %w", id, err)
		}
		return nil
	}
	f, err := os.CreateTemp(c.dir, "update-*.json")
	if err != nil {
		return fmt.Errorf("update %s: %w", id, err)
	}
	defer os.Remove(f.Name())
	_, werr := f.Write(resources)
	if cerr := f.Close(); werr != nil || cerr != nil {
		return fmt.Errorf("update %s: write resources: %w", id, errors.Join(werr, cerr))
	}
	ctx, cancel := context.WithTimeout(ctx, runtimeTimeout)
	defer cancel()
	if err := s.rt.Update(ctx, c.runtimeLog(), id, f.Name()); err != nil {
		return fmt.Errorf("update %s: %w", id, err)
	}
	return nil
}

// deleteAllParallelism bounds the runtime deletes deleteAll runs at once.
// Each container's delete is serialized by its own lock only, and most of
// a delete is waiting for the runtime binary: a pod's stop should not
// cost the sum of its containers' deletes.
const deleteAllParallelism = 8

// deleteAll force-deletes every container (forced shutdown, state dir
// removed).
func (s *server) deleteAll(ctx context.Context) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, deleteAllParallelism)
	for _, st := range s.list() {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := s.delete(ctx, st.ID); err != nil {
				klog.ErrorS(err, "Delete container at shutdown", "id", st.ID)
			}
		})
	}
	wg.Wait()
}

func (s *server) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.containers)
}

// containerStarted tells serve that a container started (never blocks:
// one pending signal is enough).
func (s *server) containerStarted() {
	select {
	case s.started <- struct{}{}:
	default:
	}
}
