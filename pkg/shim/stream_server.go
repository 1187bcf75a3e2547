package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim/internal/fanout"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim/internal/reaper"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim/internal/runtime"
)

const (
	// streamHeaderTimeout bounds how long a new stream connection may
	// take to send its header.
	streamHeaderTimeout = 10 * time.Second
	// attachDepth is how many output chunks an attacher may lag behind
	// before it loses output: a slow attacher must never block the
	// container or its log.
	attachDepth = 256
	// stdinPoll is how often a write to a container's stdin that the
	// container does not read checks whether its attacher went away.
	stdinPoll = 200 * time.Millisecond
)

// serveStream runs one exec or attach stream; it returns when the stream
// is over and everything it started has ended. br holds what was peeked.
func (s *server) serveStream(conn net.Conn, br *bufio.Reader) {
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(streamHeaderTimeout))
	hdr, err := readStreamHeader(br)
	if err != nil {
		klog.V(2).InfoS("Bad stream header", "err", err)
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	fc := newFrameConn(conn, br)
	switch hdr.Op {
	case opExec:
		err = s.execStream(fc, hdr)
	case opAttach:
		err = s.attachStream(fc, hdr)
	default:
		err = fmt.Errorf("unknown stream op %q", hdr.Op)
	}
	if err != nil {
		// Only errors before frameStarted come back here; the daemon
		// reports them to the user.
		klog.V(2).InfoS("Stream refused", "op", hdr.Op, "id", hdr.ID, "err", err)
		_ = fc.write(frameError, []byte(encodeError(err).Error()))
	}
}

func readStreamHeader(br *bufio.Reader) (streamHeader, error) {
	var hdr streamHeader
	magic, err := br.ReadByte()
	if err != nil {
		return hdr, err
	}
	if magic != streamMagic {
		return hdr, fmt.Errorf("stream magic %#x", magic)
	}
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxStreamHeader {
			return hdr, errors.New("stream header too long")
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return hdr, fmt.Errorf("read stream header: %w", err)
		}
	}
	if err := json.Unmarshal(line, &hdr); err != nil {
		return hdr, fmt.Errorf("decode stream header: %w", err)
	}
	return hdr, nil
}

// session is what one stream's goroutines share: the connection and the
// signal that the daemon's side is gone.
type session struct {
	fc       *frameConn
	gone     chan struct{} // closed when the connection failed or ended
	goneOnce sync.Once
	wg       sync.WaitGroup
}

func newSession(fc *frameConn) *session {
	return &session{fc: fc, gone: make(chan struct{})}
}

func (ss *session) hangup() { ss.goneOnce.Do(func() { close(ss.gone) }) }

// peerGone reports whether the daemon closed the stream. Only the input
// goroutine calls it, while it is blocked writing stdin and so not
// reading: it peeks without consuming, so buffered frames stay.
func (ss *session) peerGone() bool {
	select {
	case <-ss.gone:
		return true
	default:
	}
	_ = ss.fc.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := ss.fc.r.Peek(1)
	_ = ss.fc.conn.SetReadDeadline(time.Time{})
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// input reads the daemon's frames until the connection ends, then
// signals gone. Each frame goes to handle.
func (ss *session) input(handle func(typ byte, p []byte)) {
	ss.wg.Add(1)
	go func() { // ends when the connection is closed
		defer ss.wg.Done()
		defer ss.hangup()
		buf := make([]byte, maxFramePayload)
		for {
			typ, p, err := ss.fc.read(buf)
			if err != nil {
				return
			}
			handle(typ, p)
		}
	}()
}

// execStream runs a process in a running container with its stdio
// connected to the stream. The process is started with `runtime exec
// --detach`, so it becomes the shim's child (the shim is the subreaper)
// and its exit comes from the reaper like a container's.
//
// When the daemon side goes away before the process exits, the process is
// not killed: it sees what a process whose terminal or pipes went away
// sees. Its stdin is closed (EOF), its output pipes are closed (EPIPE or
// SIGPIPE on the next write) and a terminal is hung up (the kernel sends
// SIGHUP to its session). That is the behaviour of an ssh session, and
// what kubelet's runtimes do; a process that ignores all of it runs to
// its end and is then reaped.
func (s *server) execStream(fc *frameConn, hdr streamHeader) error {
	c, err := s.get(hdr.ID)
	if err != nil {
		return err
	}
	if st := c.state().Status; st != StatusRunning {
		return fmt.Errorf("exec in %s (%s): %w", hdr.ID, st, ErrNotRunning)
	}
	p, err := s.startExec(c, hdr)
	if err != nil {
		return fmt.Errorf("exec in %s: %w", hdr.ID, err)
	}
	klog.V(3).InfoS("Exec started", "id", hdr.ID, "pid", p.pid, "tty", hdr.Terminal)
	ss := newSession(fc)
	if err := fc.write(frameStarted, nil); err != nil {
		ss.hangup()
	}

	// Output pumps: they end at EOF (EIO for a terminal) or when their
	// file is closed below.
	var pumps sync.WaitGroup
	for i, f := range p.outputs {
		typ := frameStdout
		if i == 1 {
			typ = frameStderr
		}
		pumps.Add(1)
		go func() {
			defer pumps.Done()
			buf := make([]byte, pumpBuffer)
			for {
				n, err := f.Read(buf)
				if n > 0 {
					if werr := fc.write(typ, buf[:n]); werr != nil {
						ss.hangup()
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	ss.input(func(typ byte, b []byte) {
		switch typ {
		case frameStdin:
			if p.stdin != nil {
				if err := writeInterruptible(p.stdin, b, ss.peerGone); err != nil {
					klog.V(4).InfoS("Exec stdin write", "id", hdr.ID, "err", err)
				}
			}
		case frameStdinClose:
			// A terminal has no end-of-file to close: the daemon hangs
			// up instead, by closing the stream.
			if p.stdin != nil && !p.tty {
				p.stdin.Close()
			}
		case frameResize:
			if ws, ok := decodeWinSize(b); ok && p.tty {
				if err := setWinsize(p.outputs[0], ws); err != nil {
					klog.V(4).InfoS("Exec resize", "id", hdr.ID, "err", err)
				}
			}
		}
	})

	var (
		e      reaper.Exit
		exited bool
	)
	select {
	case e = <-p.exit:
		exited = true
		// Let the pumps drain what the process wrote; a background child
		// holding the output open does not delay the exit for long.
		done := make(chan struct{})
		go func() { pumps.Wait(); close(done) }() // ends when the pumps end, which p.close forces
		t := time.NewTimer(exitIOGrace)
		select {
		case <-done:
		case <-t.C:
		case <-ss.gone:
		}
		t.Stop()
		p.close()
		<-done
		if err := fc.write(frameExit, encodeExit(int32(e.Status))); err != nil {
			klog.V(4).InfoS("Send exec exit", "id", hdr.ID, "err", err)
		}
	case <-ss.gone:
		klog.V(3).InfoS("Exec stream closed before the process exited; hanging up its stdio", "id", hdr.ID, "pid", p.pid)
	case <-s.ctx.Done():
	}
	// Closing the connection ends the input loop; closing the process's
	// files ends the pumps.
	fc.conn.Close()
	p.close()
	pumps.Wait()
	ss.wg.Wait()
	if !exited {
		s.reapLater(p.pid, p.exit)
	}
	klog.V(3).InfoS("Exec stream ended", "id", hdr.ID, "pid", p.pid, "exited", exited, "exitCode", e.Status)
	return nil
}

// reapLater keeps waiting for the exit of an exec whose stream is gone,
// so the reaper does not hold its waiter forever; the server's context
// owns the goroutine.
func (s *server) reapLater(pid int, ch <-chan reaper.Exit) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case e := <-ch:
			klog.V(3).InfoS("Detached exec exited", "pid", pid, "status", e.Status)
		case <-s.ctx.Done():
			s.reaper.Unsubscribe(pid, ch)
		}
	}()
}

// execProc is a started exec: the shim's ends of its stdio and its exit.
type execProc struct {
	pid     int
	tty     bool
	exit    <-chan reaper.Exit
	stdin   *os.File   // nil without stdin; the pty master with a terminal
	outputs []*os.File // stdout, stderr; or the pty master alone
	once    sync.Once
}

// close releases the shim's ends; safe to call more than once.
func (p *execProc) close() {
	p.once.Do(func() {
		if p.stdin != nil && !p.tty {
			p.stdin.Close()
		}
		for _, f := range p.outputs {
			f.Close()
		}
	})
}

// startExec runs `runtime exec --detach` for hdr and returns the process.
func (s *server) startExec(c *container, hdr streamHeader) (*execProc, error) {
	spec, err := os.CreateTemp(c.dir, "exec-*.json")
	if err != nil {
		return nil, err
	}
	defer os.Remove(spec.Name())
	_, werr := spec.Write(hdr.Process)
	if cerr := spec.Close(); werr != nil || cerr != nil {
		return nil, fmt.Errorf("write process: %w", errors.Join(werr, cerr))
	}
	pidFile := spec.Name() + ".pid"
	defer os.Remove(pidFile)
	ctx, cancel := context.WithTimeout(s.ctx, runtimeTimeout)
	defer cancel()
	args := []string{"exec", "--detach", "--process", spec.Name(), "--pid-file", pidFile}

	p := &execProc{tty: hdr.Terminal}
	if hdr.Terminal {
		cs, err := newConsoleSocket()
		if err != nil {
			return nil, err
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
		_, err = s.rt.Run(ctx, c.runtimeLog(), runtime.Stdio{}, append(args, "--console-socket", cs.path(), c.id)...)
		if err != nil {
			cs.ln.Close()
			if r := <-got; r.f != nil {
				r.f.Close()
			}
			return nil, err
		}
		r := <-got
		if r.err != nil {
			return nil, r.err
		}
		p.outputs = []*os.File{r.f}
		if hdr.Stdin {
			p.stdin = r.f
		}
	} else {
		var child runtime.Stdio
		var mine []*os.File
		fail := func(err error) (*execProc, error) {
			closeStdio(child)
			for _, f := range mine {
				f.Close()
			}
			return nil, err
		}
		if hdr.Stdin {
			r, w, err := os.Pipe()
			if err != nil {
				return fail(fmt.Errorf("stdin pipe: %w", err))
			}
			child.In, p.stdin = r, w
			mine = append(mine, w)
		}
		for _, out := range []**os.File{&child.Out, &child.Err} {
			r, w, err := os.Pipe()
			if err != nil {
				return fail(fmt.Errorf("output pipe: %w", err))
			}
			*out = w
			mine = append(mine, r)
			p.outputs = append(p.outputs, r)
		}
		_, err = s.rt.Run(ctx, c.runtimeLog(), child, append(args, c.id)...)
		// The process has its copies; ours are closed so that EOF on the
		// outputs means the process (and whatever it started) is done.
		closeStdio(child)
		child = runtime.Stdio{}
		if err != nil {
			return fail(err)
		}
	}
	pid, err := readPidFile(pidFile)
	if err != nil {
		p.close()
		return nil, fmt.Errorf("read exec pid: %w", err)
	}
	p.pid = pid
	// An exit before this subscription is kept by the reaper for us.
	p.exit = s.reaper.Subscribe(pid)
	return p, nil
}

// attachStream connects the stream to a container's own stdio: output is
// copied from the container's fan-outs, so any number of attachers each
// see all output (less what a slow one drops), and stdin is written to
// the container's stdin. Detaching never stops the container; for a
// container created with stdin_once (and no terminal, as kubelet's
// runtimes do), the first attacher with stdin that detaches closes the
// container's stdin.
func (s *server) attachStream(fc *frameConn, hdr streamHeader) error {
	c, err := s.get(hdr.ID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	cio, rec := c.io, c.rec
	c.mu.Unlock()
	if rec.State.Status == StatusExited || cio == nil {
		return fmt.Errorf("attach to %s (%s): %w", hdr.ID, rec.State.Status, ErrNotRunning)
	}
	if hdr.Stdin && !rec.Stdin {
		return fmt.Errorf("attach to %s: the container was created without stdin", hdr.ID)
	}
	var subs []*fanout.Sub
	var fans []*fanout.Fanout
	var types []byte
	if hdr.Stdout {
		subs, fans, types = append(subs, cio.stdout.Subscribe(attachDepth)), append(fans, &cio.stdout), append(types, frameStdout)
	}
	if hdr.Stderr && !rec.Terminal {
		subs, fans, types = append(subs, cio.stderr.Subscribe(attachDepth)), append(fans, &cio.stderr), append(types, frameStderr)
	}
	unsubscribe := func() {
		for i, sub := range subs {
			fans[i].Unsubscribe(sub)
		}
	}
	ss := newSession(fc)
	if err := fc.write(frameStarted, nil); err != nil {
		ss.hangup()
	}
	klog.V(3).InfoS("Attached", "id", hdr.ID, "stdin", hdr.Stdin, "stdout", hdr.Stdout, "stderr", hdr.Stderr)

	var pumps sync.WaitGroup
	for i, sub := range subs {
		pumps.Add(1)
		go func() { // ends when sub is unsubscribed or its fan-out closed
			defer pumps.Done()
			ok := true
			for chunk := range sub.C {
				if ok && fc.write(types[i], chunk) != nil {
					ok = false // keep draining until unsubscribed
					ss.hangup()
				}
			}
			if d := sub.Dropped(); d > 0 {
				klog.V(2).InfoS("Slow attacher lost output", "id", hdr.ID, "bytes", d)
			}
		}()
	}
	stdinDone := false
	ss.input(func(typ byte, b []byte) {
		switch typ {
		case frameStdin:
			if !hdr.Stdin || stdinDone {
				return
			}
			if err := cio.writeStdin(b, ss.peerGone); err != nil {
				klog.V(4).InfoS("Attach stdin write", "id", hdr.ID, "err", err)
			}
		case frameStdinClose:
			if hdr.Stdin && !stdinDone {
				stdinDone = true
				if rec.StdinOnce && !rec.Terminal {
					cio.closeStdin()
				}
			}
		case frameResize:
			if ws, ok := decodeWinSize(b); ok && rec.Terminal && len(cio.outputs) == 1 {
				if err := setWinsize(cio.outputs[0], ws); err != nil {
					klog.V(4).InfoS("Attach resize", "id", hdr.ID, "err", err)
				}
			}
		}
	})

	exited := false
	select {
	case <-c.exited:
		exited = true
		// The exit is recorded after the output pumps drained into the
		// fan-outs; what is still queued for us is sent before the end.
	case <-ss.gone:
	case <-s.ctx.Done():
	}
	unsubscribe()
	pumps.Wait()
	if exited {
		st := c.state()
		if err := fc.write(frameExit, encodeExit(st.ExitCode)); err != nil {
			klog.V(4).InfoS("Send attach exit", "id", hdr.ID, "err", err)
		}
	}
	fc.conn.Close()
	ss.wg.Wait()
	if hdr.Stdin && rec.StdinOnce && !rec.Terminal {
		// stdin_once: the first attacher's detach ends the container's
		// input, as kubelet expects (kubectl run -i --rm).
		cio.closeStdin()
	}
	klog.V(3).InfoS("Detached", "id", hdr.ID, "containerExited", exited)
	return nil
}

// writeStdin writes p to the container's stdin, serialized with other
// attachers.
func (cio *containerIO) writeStdin(p []byte, stop func() bool) error {
	cio.stdinMu.Lock()
	defer cio.stdinMu.Unlock()
	if cio.stdin == nil || cio.stdinClosed {
		return errors.New("container stdin is closed")
	}
	return writeInterruptible(cio.stdin, p, stop)
}

// writeInterruptible writes all of p to f (a pipe or pty master, both
// pollable). A process that does not read its stdin must not pin the
// stream that feeds it: every stdinPoll the write asks stop whether to
// give up.
func writeInterruptible(f *os.File, p []byte, stop func() bool) error {
	defer f.SetWriteDeadline(time.Time{})
	for len(p) > 0 {
		_ = f.SetWriteDeadline(time.Now().Add(stdinPoll))
		n, err := f.Write(p)
		p = p[n:]
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if stop() {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// closeStdin closes the container's stdin pipe (stdin_once). It is never
// used on a terminal, whose master is also the output.
func (cio *containerIO) closeStdin() {
	cio.stdinMu.Lock()
	defer cio.stdinMu.Unlock()
	if cio.stdin != nil && !cio.stdinClosed && !cio.tty {
		cio.stdinClosed = true
		cio.stdin.Close()
	}
}
