package shim_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim/internal/shimtest"
)

// syncBuffer is a bytes.Buffer safe for a writer and a polling reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond until it holds or d passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fdCount is the number of open fds of pid.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// children lists the child pids of pid.
func children(pid int) []string {
	var out []string
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	for _, p := range tasks {
		b, _ := os.ReadFile(p)
		out = append(out, strings.Fields(string(b))...)
	}
	return out
}

// runWith creates and starts a container with stdin options.
func (h *harness) runWith(args []string, o shimtest.BundleOptions, stdin, once bool) string {
	h.t.Helper()
	id := shimtest.ID()
	bundle := shimtest.Bundle(h.t, id, args, o)
	req := shim.CreateRequest{ID: id, Bundle: bundle, LogPath: filepath.Join(h.logDir, id+".log"), Terminal: o.Terminal, Stdin: stdin, StdinOnce: once}
	if _, err := h.c.Create(h.ctx(), req); err != nil {
		h.t.Fatalf("Create: %v", err)
	}
	if _, err := h.c.Start(h.ctx(), id); err != nil {
		h.t.Fatalf("Start: %v", err)
	}
	return id
}

func TestStreamExec(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	id, _ := h.run([]string{"sleep", "1000"}, shimtest.BundleOptions{})
	baseFDs := fdCount(t, h.c.Pid())

	var out, errb syncBuffer
	code, err := h.c.Exec(h.ctx(), shim.ExecRequest{ID: id, Process: processJSON(t, "sh", "-c", "cat; echo err >&2; exit 7")},
		shim.Stdio{Stdin: strings.NewReader("hello\nworld\n"), Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if code != 7 || out.String() != "hello\nworld\n" || errb.String() != "err\n" {
		t.Errorf("Exec = %d, stdout %q, stderr %q; want 7, the input, \"err\\n\"", code, out.String(), errb.String())
	}

	// Without stdin, and a large output that needs several frames.
	var big syncBuffer
	code, err = h.c.Exec(h.ctx(), shim.ExecRequest{ID: id, Process: processJSON(t, "sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x")},
		shim.Stdio{Stdout: &big})
	if err != nil || code != 0 || big.String() != strings.Repeat("x", 300000) {
		t.Errorf("big output: code %d err %v len %d", code, err, len(big.String()))
	}

	// A signal death is 128+n.
	code, err = h.c.Exec(h.ctx(), shim.ExecRequest{ID: id, Process: processJSON(t, "sh", "-c", "kill -9 $$")}, shim.Stdio{Stdout: io.Discard})
	if err != nil || code != 137 {
		t.Errorf("killed exec: code %d err %v, want 137", code, err)
	}

	// Nothing is left in the shim.
	waitFor(t, 5*time.Second, "shim fds back to baseline", func() bool { return fdCount(t, h.c.Pid()) <= baseFDs })
	h.remove(id)
}

func TestStreamExecTerminal(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	id, _ := h.run([]string{"sleep", "1000"}, shimtest.BundleOptions{})
	p := processJSON(t, "sh", "-i")
	p = bytes.Replace(p, []byte(`{`), []byte(`{"terminal":true,`), 1)
	inR, inW := io.Pipe()
	defer inW.Close()
	resize := make(chan shim.WinSize, 1)
	var out syncBuffer
	type result struct {
		code int32
		err  error
	}
	res := make(chan result, 1)
	go func() {
		code, err := h.c.Exec(h.ctx(), shim.ExecRequest{ID: id, Process: p, Terminal: true}, shim.Stdio{Stdin: inR, Stdout: &out, Resize: resize})
		res <- result{code, err}
	}()
	resize <- shim.WinSize{Width: 123, Height: 45}
	// The resize and the input travel independently: ask until the new
	// size shows.
	waitFor(t, 10*time.Second, "stty size to show the new size", func() bool {
		if _, err := inW.Write([]byte("stty size\n")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		return strings.Contains(out.String(), "45 123")
	})
	if _, err := inW.Write([]byte("echo hi; exit 3\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		if r.err != nil || r.code != 3 {
			t.Errorf("Exec = %d, %v; want 3", r.code, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exec did not end")
	}
	if !strings.Contains(out.String(), "hi\r\n") {
		t.Errorf("tty output %q lacks hi", out.String())
	}
	h.remove(id)
}

// TestStreamExecClientGone: a user who goes away leaves no process, pipe,
// pty or goroutine in the shim: stdin is closed (non-tty) or the terminal
// hung up (tty), and the process ends on its own.
func TestStreamExecClientGone(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	id, _ := h.run([]string{"sleep", "1000"}, shimtest.BundleOptions{})
	shimPid := h.c.Pid()
	baseFDs := fdCount(t, shimPid)
	baseKids := len(children(shimPid))

	for _, tty := range []bool{false, true} {
		args := []string{"cat"}
		if tty {
			args = []string{"sh", "-i"}
		}
		p := processJSON(t, args...)
		if tty {
			p = bytes.Replace(p, []byte(`{`), []byte(`{"terminal":true,`), 1)
		}
		inR, inW := io.Pipe()
		var out syncBuffer
		ctx, cancel := context.WithCancel(h.ctx())
		done := make(chan error, 1)
		go func() {
			_, err := h.c.Exec(ctx, shim.ExecRequest{ID: id, Process: p, Terminal: tty}, shim.Stdio{Stdin: inR, Stdout: &out, Stderr: &out})
			done <- err
		}()
		if _, err := inW.Write([]byte("echo ping\n")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "exec output", func() bool { return strings.Contains(out.String(), "ping") })
		if n := len(children(shimPid)); n != baseKids+1 {
			t.Errorf("tty=%v: shim has %d children during the exec, want %d", tty, n, baseKids+1)
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("tty=%v: Exec after cancel = %v, want context.Canceled", tty, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("tty=%v: Exec did not return after cancel", tty)
		}
		inW.Close()
		waitFor(t, 10*time.Second, "the exec to end", func() bool { return len(children(shimPid)) == baseKids })
		waitFor(t, 5*time.Second, "shim fds back to baseline", func() bool { return fdCount(t, shimPid) <= baseFDs })
	}
	h.remove(id)
}

func TestStreamRefusals(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	id, _ := h.run([]string{"true"}, shimtest.BundleOptions{})
	h.wait(id)
	_, err := h.c.Exec(h.ctx(), shim.ExecRequest{ID: id, Process: processJSON(t, "true")}, shim.Stdio{Stdout: io.Discard})
	if !errors.Is(err, shim.ErrNotRunning) {
		t.Errorf("exec into exited container: %v, want ErrNotRunning", err)
	}
	if err := h.c.Attach(h.ctx(), id, false, shim.Stdio{Stdout: io.Discard}); !errors.Is(err, shim.ErrNotRunning) {
		t.Errorf("attach to exited container: %v, want ErrNotRunning", err)
	}
	if err := h.c.Attach(h.ctx(), "nope", false, shim.Stdio{Stdout: io.Discard}); !errors.Is(err, shim.ErrNotFound) {
		t.Errorf("attach to unknown container: %v, want ErrNotFound", err)
	}
	h.remove(id)

	id2, _ := h.run([]string{"sleep", "1000"}, shimtest.BundleOptions{})
	err = h.c.Attach(h.ctx(), id2, false, shim.Stdio{Stdin: strings.NewReader("x"), Stdout: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "without stdin") {
		t.Errorf("stdin attach to a container without stdin: %v", err)
	}
	// The RPC connection still works after the refusals.
	if _, err := h.c.State(h.ctx(), id2); err != nil {
		t.Errorf("State: %v", err)
	}
	h.remove(id2)
}

// TestStreamAttach: two attachers both see the output; one detaching
// leaves the container and the other attacher running; a stalled attacher
// does not hold the container back.
func TestStreamAttach(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	id, logPath := h.run([]string{"sh", "-c", "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.05; done"}, shimtest.BundleOptions{})
	baseFDs := fdCount(t, h.c.Pid())

	var a, b syncBuffer
	ctxA, cancelA := context.WithCancel(h.ctx())
	ctxB, cancelB := context.WithCancel(h.ctx())
	defer cancelB()
	doneA, doneB := make(chan error, 1), make(chan error, 1)
	go func() { doneA <- h.c.Attach(ctxA, id, false, shim.Stdio{Stdout: &a}) }()
	go func() { doneB <- h.c.Attach(ctxB, id, false, shim.Stdio{Stdout: &b}) }()
	waitFor(t, 10*time.Second, "both attachers to see lines", func() bool {
		return strings.Count(a.String(), "line") >= 3 && strings.Count(b.String(), "line") >= 3
	})

	// A stalled attacher: its writer blocks until its user gives up.
	ctxS, cancelS := context.WithCancel(h.ctx())
	doneS := make(chan error, 1)
	go func() {
		doneS <- h.c.Attach(ctxS, id, false, shim.Stdio{Stdout: writerFunc(func(p []byte) (int, error) { <-ctxS.Done(); return 0, ctxS.Err() })})
	}()

	cancelA()
	if err := <-doneA; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("detach A: %v", err)
	}
	nb := strings.Count(b.String(), "line")
	waitFor(t, 10*time.Second, "B to keep receiving after A detached", func() bool { return strings.Count(b.String(), "line") > nb+5 })
	if st, err := h.c.State(h.ctx(), id); err != nil || st.Status != shim.StatusRunning {
		t.Errorf("container after detach: %+v, %v", st, err)
	}
	logSize := func() int64 { fi, _ := os.Stat(logPath); return fi.Size() }
	s0 := logSize()
	waitFor(t, 10*time.Second, "the log to grow while an attacher is stalled", func() bool { return logSize() > s0+200 })

	cancelS()
	<-doneS
	cancelB()
	<-doneB
	waitFor(t, 5*time.Second, "shim fds back to baseline", func() bool { return fdCount(t, h.c.Pid()) <= baseFDs })
	h.remove(id)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestStreamAttachStdinOnce: stdin of a stdin_once container is closed
// when the first attacher's stdin ends; attach returns at the exit.
func TestStreamAttachStdinOnce(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	id := h.runWith([]string{"sh", "-c", "cat; echo bye"}, shimtest.BundleOptions{}, true, true)
	var out syncBuffer
	err := h.c.Attach(h.ctx(), id, false, shim.Stdio{Stdin: strings.NewReader("abc\n"), Stdout: &out})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if got := out.String(); got != "abc\nbye\n" {
		t.Errorf("attach output %q, want %q", got, "abc\nbye\n")
	}
	if st := h.wait(id); st.ExitCode != 0 {
		t.Errorf("exit code %d", st.ExitCode)
	}
	h.remove(id)
}

// TestStreamAttachTerminal: resize of a container's own terminal, through
// the pty master the shim holds.
func TestStreamAttachTerminal(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	id := h.runWith([]string{"sh"}, shimtest.BundleOptions{Terminal: true}, true, false)
	inR, inW := io.Pipe()
	defer inW.Close()
	resize := make(chan shim.WinSize, 1)
	var out syncBuffer
	ctx, cancel := context.WithCancel(h.ctx())
	done := make(chan error, 1)
	go func() { done <- h.c.Attach(ctx, id, true, shim.Stdio{Stdin: inR, Stdout: &out, Resize: resize}) }()
	resize <- shim.WinSize{Width: 91, Height: 17}
	waitFor(t, 10*time.Second, "stty size to show the new size", func() bool {
		if _, err := inW.Write([]byte("stty size\n")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		return strings.Contains(out.String(), "17 91")
	})
	cancel()
	<-done
	if st, err := h.c.State(h.ctx(), id); err != nil || st.Status != shim.StatusRunning {
		t.Errorf("container after detach: %+v, %v", st, err)
	}
	h.remove(id)
}
