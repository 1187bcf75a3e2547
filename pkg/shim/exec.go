package shim

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim/internal/reaper"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim/internal/runtime"
)

const (
	defaultMaxExecOutput = 16 << 20
	// execKillGrace is how long the runtime gets to exit after its process
	// was killed before the runtime itself is killed.
	execKillGrace = 5 * time.Second
	// execOutputGrace bounds reading output after the runtime exited:
	// a background child of the exec may keep the pipes open.
	execOutputGrace = time.Second
)

// cappedBuffer keeps the first max bytes written and counts the rest.
type cappedBuffer struct {
	buf       bytes.Buffer
	max       int
	truncated bool
}

// Write always reports the whole of p as written, so that io.Copy keeps
// draining the pipe after the cap.
func (b *cappedBuffer) Write(p []byte) (int, error) {
	keep := p
	if room := b.max - b.buf.Len(); room < len(p) {
		b.truncated = true
		keep = p[:max(room, 0)]
	}
	b.buf.Write(keep)
	return len(p), nil
}

func (s *server) execSync(ctx context.Context, req ExecSyncRequest) (ExecSyncResult, error) {
	c, err := s.get(req.ID)
	if err != nil {
		return ExecSyncResult{}, err
	}
	if st := c.state().Status; st != StatusRunning {
		return ExecSyncResult{}, fmt.Errorf("exec in %s (%s): %w", req.ID, st, ErrNotRunning)
	}
	maxOut := req.MaxOutput
	if maxOut <= 0 {
		maxOut = defaultMaxExecOutput
	}
	spec, err := os.CreateTemp(c.dir, "exec-*.json")
	if err != nil {
		return ExecSyncResult{}, fmt.Errorf("exec in %s: %w", req.ID, err)
	}
	defer os.Remove(spec.Name())
	_, werr := spec.Write(req.Process)
	if cerr := spec.Close(); werr != nil || cerr != nil {
		return ExecSyncResult{}, fmt.Errorf("exec in %s: write process: %w", req.ID, werr)
	}
	pidFile := spec.Name() + ".pid"
	defer os.Remove(pidFile)

	outR, outW, err := os.Pipe()
	if err != nil {
		return ExecSyncResult{}, fmt.Errorf("exec pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return ExecSyncResult{}, fmt.Errorf("exec pipe: %w", err)
	}
	// The runtime runs in the foreground: it exits with the process's exit
	// status, and its own pid is reaped through our reaper.
	started, err := s.rt.Begin(c.runtimeLog(), runtime.Stdio{Out: outW, Err: errW},
		"exec", "--process", spec.Name(), "--pid-file", pidFile, req.ID)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return ExecSyncResult{}, fmt.Errorf("exec in %s: %w", req.ID, err)
	}
	stdout := &cappedBuffer{max: maxOut}
	stderr := &cappedBuffer{max: maxOut}
	var readers sync.WaitGroup
	for _, p := range []struct {
		r *os.File
		w io.Writer
	}{{outR, stdout}, {errR, stderr}} {
		readers.Add(1)
		go func() { // ends at EOF or when the pipe is closed below
			defer readers.Done()
			// Keep draining past the cap so the process never blocks on
			// a full pipe; only the first maxOut bytes are kept.
			_, _ = io.Copy(p.w, p.r)
		}()
	}

	var timeout <-chan time.Time
	if req.Timeout > 0 {
		t := time.NewTimer(req.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var (
		e        reaper.Exit
		timedOut bool
	)
	select {
	case e = <-started.Exit():
	case <-timeout:
		timedOut = true
		e = s.killExec(started, pidFile)
	case <-s.ctx.Done():
		e = s.killExec(started, pidFile)
	}

	done := make(chan struct{})
	go func() { readers.Wait(); close(done) }() // ends when readers end
	select {
	case <-done:
	case <-time.After(execOutputGrace):
		outR.Close()
		errR.Close()
		<-done
	}
	outR.Close()
	errR.Close()

	res := ExecSyncResult{
		Stdout:    stdout.buf.Bytes(),
		Stderr:    stderr.buf.Bytes(),
		ExitCode:  int32(e.Status),
		TimedOut:  timedOut,
		Truncated: stdout.truncated || stderr.truncated,
	}
	if !timedOut && e.Status != 0 {
		// A runtime failure (as opposed to the process failing) is only
		// visible in its log; keep it for the shim log.
		if rerr := started.Result(e); rerr != nil {
			klog.V(2).InfoS("Exec exited non-zero", "id", req.ID, "err", rerr)
		}
	}
	return res, nil
}

// killExec kills the exec'd process (the runtime cannot forward SIGKILL)
// and waits for the runtime to exit.
func (s *server) killExec(started *runtime.Started, pidFile string) reaper.Exit {
	deadline := time.Now().Add(execKillGrace)
	for {
		if pid, err := readPidFile(pidFile); err == nil {
			_ = unix.Kill(pid, unix.SIGKILL)
			break
		}
		// The pid file appears once the process started; poll briefly.
		select {
		case e := <-started.Exit():
			return e
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			break
		}
	}
	t := time.NewTimer(execKillGrace)
	defer t.Stop()
	select {
	case e := <-started.Exit():
		return e
	case <-t.C:
		_ = unix.Kill(started.Pid, unix.SIGKILL)
		return <-started.Exit()
	}
}
