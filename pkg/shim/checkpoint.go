package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// errTerminal: CRIU restores a container's pipes to the shim, not a pty.
var errTerminal = errors.New("a container with a terminal cannot be checkpointed")

// checkpoint dumps a running container with CRIU, leaving it running.
func (s *server) checkpoint(ctx context.Context, req CheckpointRequest) error {
	c, err := s.get(req.ID)
	if err != nil {
		return err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	st, terminal := c.rec.State.Status, c.rec.Terminal
	c.mu.Unlock()
	if st != StatusRunning {
		return fmt.Errorf("checkpoint %s: %w (%s)", req.ID, ErrNotRunning, st)
	}
	if terminal {
		return fmt.Errorf("checkpoint %s: %w", req.ID, errTerminal)
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = runtimeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	if err := s.rt.Checkpoint(ctx, c.runtimeLog(), req.ID, req.ImagePath, req.WorkPath); err != nil {
		return fmt.Errorf("checkpoint %s: %w", req.ID, err)
	}
	klog.InfoS("Checkpointed container", "id", req.ID, "images", req.ImagePath, "duration", time.Since(start))
	return nil
}

// pause freezes (or thaws) a running container.
func (s *server) pause(ctx context.Context, id string, freeze bool) error {
	c, err := s.get(id)
	if err != nil {
		return err
	}
	if c.state().Status != StatusRunning {
		return fmt.Errorf("pause %s: %w", id, ErrNotRunning)
	}
	ctx, cancel := context.WithTimeout(ctx, runtimeTimeout)
	defer cancel()
	if freeze {
		err = s.rt.Pause(ctx, c.runtimeLog(), id)
	} else {
		err = s.rt.Resume(ctx, c.runtimeLog(), id)
	}
	if err != nil {
		return fmt.Errorf("pause %s (freeze %v): %w", id, freeze, err)
	}
	return nil
}

// restore is Start of a container created with RestoreFrom: CRIU
// recreates the checkpointed process tree in the container's bundle,
// its stdio pipes connected to new pipes of this shim.
func (s *server) restore(ctx context.Context, c *container) (State, error) {
	c.mu.Lock()
	rec := c.rec
	c.mu.Unlock()
	log, err := openLog(rec.LogPath, s.maxLine)
	if err != nil {
		return State{}, err
	}
	cio, child, err := newPipeIO(log, rec.Stdin)
	if err != nil {
		log.Close()
		return State{}, err
	}
	work := filepath.Join(c.dir, "restore")
	if err := os.MkdirAll(work, 0o700); err != nil {
		cio.closeAll()
		closeStdio(child)
		return State{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, runtimeTimeout)
	defer cancel()
	pidFile := filepath.Join(c.dir, "init.pid")
	startedAt := time.Now()
	err = s.rt.Restore(rctx, c.runtimeLog(), c.id, rec.Bundle, pidFile, rec.RestoreFrom, work, child)
	closeStdio(child)
	var pid int
	if err == nil {
		pid, err = readPidFile(pidFile)
	}
	if err != nil {
		cio.closeAll()
		s.cleanupRuntime(c)
		s.recordExit(c, startErrorExitCode, ReasonStartError, runtimeMessage(err))
		return State{}, fmt.Errorf("restore %s: %w", c.id, err)
	}
	st := s.adoptInit(c, pid, cio, startedAt)
	s.events.publish(c.id, EventStarted, st)
	klog.InfoS("Restored container", "id", c.id, "pid", pid, "images", rec.RestoreFrom, "duration", time.Since(startedAt))
	return st, nil
}

// pending reports whether c was created to be restored and not started:
// no process exists, in the runtime or anywhere.
func (c *container) pendingLocked() bool {
	return c.rec.RestoreFrom != "" && c.rec.State.Status == StatusCreated && c.rec.State.Pid == 0
}

// dropPending marks a pending restore exited (killed before it ran), so
// kill and delete have nothing to wait for; it reports whether it did.
func (s *server) dropPending(c *container) bool {
	c.mu.Lock()
	if !c.pendingLocked() {
		c.mu.Unlock()
		return false
	}
	c.rec.State = exitedState(c.rec.State, 128+int(unix.SIGKILL), ReasonError, "killed before its restore")
	if err := c.persistLocked(); err != nil {
		klog.ErrorS(err, "Persist exit of a pending restore", "id", c.id)
	}
	st := c.rec.State
	close(c.exited)
	c.mu.Unlock()
	s.events.publish(c.id, EventExited, st)
	return true
}
