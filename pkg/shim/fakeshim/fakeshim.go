// Package fakeshim is an in-memory shim for the pod and container
// controllers' tests: containers go through created, running and exited
// without processes, events are published as the real shim publishes
// them, and tests inject faults (a failing call, a container that exits
// at once or ignores SIGTERM, a shim that dies) to drive the controllers'
// state machines without root, runc or a shim binary.
package fakeshim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
)

// Launcher is a shim.Launcher of fake shims, one per state directory.
type Launcher struct {
	mu    sync.Mutex
	shims map[string]*Shim
	// SpawnErr, when set, fails every Spawn.
	SpawnErr error
	// Configure, when set, is called on each new shim before Spawn
	// returns it, so a test can set faults on the pod's shim.
	Configure func(*Shim)
}

// NewLauncher returns a launcher with no shims.
func NewLauncher() *Launcher { return &Launcher{shims: map[string]*Shim{}} }

// Spawn starts a fake shim serving opts.StateDir.
func (l *Launcher) Spawn(ctx context.Context, opts shim.SpawnOptions) (shim.API, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.SpawnErr != nil {
		return nil, l.SpawnErr
	}
	if s := l.shims[opts.StateDir]; s != nil && !s.isGone() {
		return nil, fmt.Errorf("a shim already serves %s: %w", opts.StateDir, shim.ErrAlreadyExists)
	}
	s := newShim(opts.StateDir, opts.PodID)
	l.shims[opts.StateDir] = s
	if l.Configure != nil {
		l.Configure(s)
	}
	return s, nil
}

// Dial returns the live shim serving stateDir, as after a daemon restart.
func (l *Launcher) Dial(ctx context.Context, stateDir string) (shim.API, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.shims[stateDir]
	if s == nil || s.isGone() {
		return nil, fmt.Errorf("dial shim in %s: %w", stateDir, shim.ErrShimGone)
	}
	return s, nil
}

// Shims returns every shim spawned so far, gone ones included.
func (l *Launcher) Shims() []*Shim {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*Shim, 0, len(l.shims))
	for _, s := range l.shims {
		out = append(out, s)
	}
	return out
}

// Shim is one fake shim. Its exported fields are faults; set them before
// the calls they affect (they are read under the shim's lock).
type Shim struct {
	Dir, PodID string

	mu      sync.Mutex
	ctrs    map[string]*shim.State
	events  []shim.Event
	seq     uint64
	changed chan struct{}
	gone    bool
	nextPid int
	calls   []string

	// Fail makes the named call ("Create", "Start", "Kill", "Delete",
	// ...) fail with the error, for every container.
	Fail map[string]error
	// ExitOnStart makes these containers exit with the code right after
	// they start: the exit event is published before Start returns.
	ExitOnStart map[string]int32
	// BeforeStartReply runs after a container started (and, with
	// ExitOnStart, exited) but before Start returns "running": the window
	// in which the real shim's exit event races Start's reply.
	BeforeStartReply func(id string)
	// IgnoreTerm lists containers that ignore SIGTERM (only SIGKILL ends
	// them).
	IgnoreTerm map[string]bool
	// ExecSyncFunc answers ExecSync; nil answers exit code 0, no output.
	ExecSyncFunc func(req shim.ExecSyncRequest) (shim.ExecSyncResult, error)
	// CheckpointFunc, when set, runs (without the shim's lock) for a
	// Checkpoint of a running container and gives its result: a CRIU dump
	// that takes time, or fails.
	CheckpointFunc func(ctx context.Context, req shim.CheckpointRequest) error
}

func newShim(dir, podID string) *Shim {
	return &Shim{Dir: dir, PodID: podID, ctrs: map[string]*shim.State{}, changed: make(chan struct{}), nextPid: 1000,
		Fail: map[string]error{}, ExitOnStart: map[string]int32{}, IgnoreTerm: map[string]bool{}}
}

func (s *Shim) isGone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gone
}

// Die makes the shim disappear as a killed shim process does: its
// containers are gone, every call and pending Events fail with
// ErrShimGone, and Dial no longer finds it.
func (s *Shim) Die() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gone = true
	s.ctrs = map[string]*shim.State{}
	s.notifyLocked()
}

// Calls returns the calls made so far, "Start <id>" and the like.
func (s *Shim) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

// Containers returns the states of the containers the shim holds.
func (s *Shim) Containers() map[string]shim.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]shim.State{}
	for id, st := range s.ctrs {
		out[id] = *st
	}
	return out
}

// Exit makes a running container exit with code, as if its process ended.
func (s *Shim) Exit(id string, code int32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.ctrs[id]
	if !ok {
		return fmt.Errorf("%w: %s", shim.ErrNotFound, id)
	}
	s.exitLocked(st, code)
	return nil
}

// enter records a call and returns its injected failure, if any.
func (s *Shim) enter(call, id string) error {
	s.calls = append(s.calls, call+" "+id)
	if s.gone {
		return fmt.Errorf("%s: %w", call, shim.ErrShimGone)
	}
	if err := s.Fail[call]; err != nil {
		return fmt.Errorf("%s %s: %w", call, id, err)
	}
	return nil
}

func (s *Shim) get(id string) (*shim.State, error) {
	st, ok := s.ctrs[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", shim.ErrNotFound, id)
	}
	return st, nil
}

func (s *Shim) publishLocked(id string, t shim.EventType, st shim.State) {
	s.seq++
	s.events = append(s.events, shim.Event{Seq: s.seq, ID: id, Type: t, State: st})
	s.notifyLocked()
}

func (s *Shim) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Shim) exitLocked(st *shim.State, code int32) {
	if st.Status == shim.StatusExited {
		return
	}
	st.Status = shim.StatusExited
	st.ExitCode = code
	st.FinishedAt = time.Now()
	st.Reason = shim.ReasonError
	if code == 0 {
		st.Reason = shim.ReasonCompleted
	}
	s.publishLocked(st.ID, shim.EventExited, *st)
}

// Create creates the container; with req.Start it then starts it as
// Start does (a "Start" fault and ExitOnStart apply), as the real shim's
// `runc run --detach`.
func (s *Shim) Create(ctx context.Context, req shim.CreateRequest) (shim.State, error) {
	s.mu.Lock()
	if err := s.enter("Create", req.ID); err != nil {
		s.mu.Unlock()
		return shim.State{}, err
	}
	if _, ok := s.ctrs[req.ID]; ok {
		s.mu.Unlock()
		return shim.State{}, fmt.Errorf("%w: %s", shim.ErrAlreadyExists, req.ID)
	}
	s.nextPid++
	st := &shim.State{ID: req.ID, Pid: s.nextPid, Status: shim.StatusCreated, CreatedAt: time.Now()}
	s.ctrs[req.ID] = st
	s.publishLocked(req.ID, shim.EventCreated, *st)
	reply := *st
	s.mu.Unlock()
	if req.Start {
		return s.Start(ctx, req.ID)
	}
	return reply, nil
}

func (s *Shim) Start(ctx context.Context, id string) (shim.State, error) {
	s.mu.Lock()
	if err := s.enter("Start", id); err != nil {
		s.mu.Unlock()
		return shim.State{}, err
	}
	st, err := s.get(id)
	if err != nil {
		s.mu.Unlock()
		return shim.State{}, err
	}
	if st.Status != shim.StatusCreated {
		s.mu.Unlock()
		return shim.State{}, fmt.Errorf("start %s: container is %s, not created", id, st.Status)
	}
	st.Status = shim.StatusRunning
	st.StartedAt = time.Now()
	reply := *st
	s.publishLocked(id, shim.EventStarted, *st)
	if code, ok := s.ExitOnStart[id]; ok {
		s.exitLocked(st, code)
	}
	hook := s.BeforeStartReply
	s.mu.Unlock()
	if hook != nil {
		hook(id)
	}
	// The reply says running even if the exit came first, as the real
	// shim's does when the exit is recorded after runc start returned.
	return reply, nil
}

func (s *Shim) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter("Kill", id); err != nil {
		return err
	}
	st, err := s.get(id)
	if err != nil {
		return err
	}
	if st.Status == shim.StatusExited || (sig == syscall.SIGTERM && s.IgnoreTerm[id]) {
		return nil
	}
	s.exitLocked(st, 128+int32(sig))
	return nil
}

func (s *Shim) Wait(ctx context.Context, id string) (shim.State, error) {
	for {
		s.mu.Lock()
		if err := s.enter("Wait", id); err != nil {
			s.mu.Unlock()
			return shim.State{}, err
		}
		st, err := s.get(id)
		if err != nil {
			s.mu.Unlock()
			return shim.State{}, err
		}
		if st.Status == shim.StatusExited {
			s.mu.Unlock()
			return *st, nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return shim.State{}, ctx.Err()
		}
	}
}

func (s *Shim) Delete(ctx context.Context, id string) (shim.State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter("Delete", id); err != nil {
		return shim.State{}, err
	}
	st, err := s.get(id)
	if err != nil {
		return shim.State{}, err
	}
	s.exitLocked(st, 137)
	delete(s.ctrs, id)
	s.publishLocked(id, shim.EventDeleted, *st)
	return *st, nil
}

func (s *Shim) State(ctx context.Context, id string) (shim.State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter("State", id); err != nil {
		return shim.State{}, err
	}
	st, err := s.get(id)
	if err != nil {
		return shim.State{}, err
	}
	return *st, nil
}

func (s *Shim) running(call, id string) error {
	if err := s.enter(call, id); err != nil {
		return err
	}
	st, err := s.get(id)
	if err != nil {
		return err
	}
	if st.Status != shim.StatusRunning {
		return fmt.Errorf("%w: %s", shim.ErrNotRunning, id)
	}
	return nil
}

func (s *Shim) ExecSync(ctx context.Context, req shim.ExecSyncRequest) (shim.ExecSyncResult, error) {
	s.mu.Lock()
	err := s.running("ExecSync", req.ID)
	fn := s.ExecSyncFunc
	s.mu.Unlock()
	if err != nil {
		return shim.ExecSyncResult{}, err
	}
	if fn == nil {
		return shim.ExecSyncResult{}, nil
	}
	return fn(req)
}

// errStreams: streaming needs the real shim's socket.
var errStreams = errors.New("fakeshim: exec and attach streams are not faked")

func (s *Shim) Exec(ctx context.Context, req shim.ExecRequest, stdio shim.Stdio) (int32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.running("Exec", req.ID); err != nil {
		return 0, err
	}
	return 0, errStreams
}

func (s *Shim) Attach(ctx context.Context, id string, terminal bool, stdio shim.Stdio) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.running("Attach", id); err != nil {
		return err
	}
	return errStreams
}

func (s *Shim) ReopenLog(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running("ReopenLog", id)
}

func (s *Shim) Update(ctx context.Context, id string, resources []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter("Update", id); err != nil {
		return err
	}
	_, err := s.get(id)
	return err
}

// Checkpoint succeeds for a running container (it writes nothing), or
// answers what CheckpointFunc does.
func (s *Shim) Checkpoint(ctx context.Context, req shim.CheckpointRequest) error {
	s.mu.Lock()
	err, fn := s.running("Checkpoint", req.ID), s.CheckpointFunc
	s.mu.Unlock()
	if err != nil || fn == nil {
		return err
	}
	return fn(ctx, req)
}

func (s *Shim) Pause(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running("Pause", id)
}

func (s *Shim) Resume(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running("Resume", id)
}

// Events returns the events after seq after, waiting for one if there is
// none yet, like the real shim's long-poll.
func (s *Shim) Events(ctx context.Context, after uint64) ([]shim.Event, error) {
	for {
		s.mu.Lock()
		if s.gone {
			s.mu.Unlock()
			return nil, fmt.Errorf("events: %w", shim.ErrShimGone)
		}
		var out []shim.Event
		for _, e := range s.events {
			if e.Seq > after {
				out = append(out, e)
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (s *Shim) ForceShutdown(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter("ForceShutdown", ""); err != nil {
		return err
	}
	for id, st := range s.ctrs {
		s.exitLocked(st, 137)
		delete(s.ctrs, id)
	}
	s.gone = true
	s.notifyLocked()
	return nil
}

func (s *Shim) Close() error { return nil }

var (
	_ shim.API      = (*Shim)(nil)
	_ shim.Launcher = (*Launcher)(nil)
)
