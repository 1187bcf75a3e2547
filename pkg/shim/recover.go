package shim

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
)

// reload restores the container records of a previous shim process from
// the state dir. Containers that were running then are no longer our
// children: their exit status cannot be observed, only the fact that they
// exited, which is recorded with ReasonUnknown.
func (s *server) reload(ctx context.Context) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		klog.ErrorS(err, "Read state dir")
		return
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(s.dir, e.Name())
		rec, err := loadRecord(dir)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				klog.ErrorS(err, "Skipping unreadable container record", "dir", dir)
			}
			continue
		}
		c := &container{id: rec.State.ID, dir: dir, rec: *rec, exited: make(chan struct{})}
		if c.id != e.Name() {
			klog.ErrorS(nil, "Container record does not match its directory", "dir", dir, "id", c.id)
			continue
		}
		s.containers[c.id] = c
		st := rec.State
		switch {
		case st.Status == StatusExited:
			close(c.exited)
		case c.pendingLocked():
			// Created to be restored: no process until Start.
		case st.Pid == 0:
			// The previous shim died during create.
			if rec.Pause {
				s.pauseCleanup(c)
			} else {
				s.cleanupRuntime(c)
			}
			s.recordExit(c, startErrorExitCode, ReasonCreateError, "the shim stopped while the container was being created")
		case rec.Pause:
			// No runtime knows it: the pid is the pause while it runs in
			// the pause's cgroup.
			if !cgroups.IsMember(st.Pid, rec.CgroupsPath) {
				s.recordExit(c, lostExitCode, ReasonUnknown, "the container exited while its shim was not running")
				continue
			}
			s.wg.Add(1)
			go s.watchOrphan(c, st.Pid)
		default:
			rs, err := s.rt.State(ctx, c.id)
			if err != nil || rs.Pid != st.Pid || (rs.Status != "running" && rs.Status != "created") {
				s.recordExit(c, lostExitCode, ReasonUnknown, "the container exited while its shim was not running")
				continue
			}
			if rs.Status == "running" && st.Status == StatusCreated {
				c.mu.Lock()
				c.rec.State.Status = StatusRunning
				c.mu.Unlock()
			}
			s.wg.Add(1)
			go s.watchOrphan(c, st.Pid)
		}
		klog.InfoS("Reloaded container", "id", c.id, "status", c.state().Status)
	}
}

// recordExit records an exit the shim did not see: a process that never
// ran, or one whose status is unknown.
func (s *server) recordExit(c *container, code int, reason, msg string) {
	c.mu.Lock()
	c.rec.State = exitedState(c.rec.State, code, reason, msg)
	if err := c.persistLocked(); err != nil {
		klog.ErrorS(err, "Persist lost exit", "id", c.id)
	}
	st := c.rec.State
	close(c.exited)
	c.mu.Unlock()
	s.events.publish(c.id, EventExited, st)
}

// watchOrphan waits, through a pidfd, for a container process that is not
// our child to exit.
func (s *server) watchOrphan(c *container, pid int) {
	defer s.wg.Done()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		s.recordExit(c, lostExitCode, ReasonUnknown, "the container exited while its shim was not running")
		return
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		klog.ErrorS(err, "pidfd nonblock", "id", c.id)
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	stop := context.AfterFunc(s.ctx, func() { f.Close() })
	defer stop()
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	// A pidfd becomes readable when the process exits.
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, _ := unix.Poll(fds, 0)
		return n > 0
	})
	if err != nil || s.ctx.Err() != nil {
		return
	}
	s.recordExit(c, lostExitCode, ReasonUnknown, "the container exited after a shim restart; its exit status is not observable")
}
