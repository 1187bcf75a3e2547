package shim

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim/crilog"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim/internal/fanout"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim/internal/runtime"
)

// pumpBuffer is the read size of one output pump.
const pumpBuffer = 32 << 10

// containerIO owns a container's stdio on the shim side: the read ends of
// its output (pipes or the pty master), the write end of its stdin, the CRI
// log writer and the attach fan-outs.
type containerIO struct {
	log    *crilog.Writer // nil without a log path
	stdout fanout.Fanout
	stderr fanout.Fanout
	stdin  *os.File // nil without stdin
	// stdinMu serializes attachers' writes to stdin and its closing by
	// stdin_once; stdinClosed records that.
	stdinMu     sync.Mutex
	stdinClosed bool
	// tty: stdin and the single output are the same pty master.
	tty     bool
	outputs []*os.File
	pumps   sync.WaitGroup
	done    chan struct{} // closed when all pumps saw EOF
}

// openLog opens the CRI log writer if the request has a log path.
func openLog(path string, maxLine int) (*crilog.Writer, error) {
	if path == "" {
		return nil, nil
	}
	return crilog.Open(path, crilog.Options{MaxLineSize: maxLine})
}

// newPipeIO makes the pipes for a container without terminal. The returned
// Stdio are the child ends for the runtime; the caller closes them after
// create, so EOF on our ends means the container's processes are gone.
func newPipeIO(log *crilog.Writer, stdin bool) (*containerIO, runtime.Stdio, error) {
	cio := &containerIO{log: log, done: make(chan struct{})}
	var child runtime.Stdio
	fail := func(err error) (*containerIO, runtime.Stdio, error) {
		closeStdio(child)
		cio.closeAll()
		return nil, runtime.Stdio{}, err
	}
	if stdin {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(fmt.Errorf("stdin pipe: %w", err))
		}
		child.In, cio.stdin = r, w
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("stdout pipe: %w", err))
	}
	child.Out, cio.outputs = w, append(cio.outputs, r)
	r, w, err = os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("stderr pipe: %w", err))
	}
	child.Err, cio.outputs = w, append(cio.outputs, r)
	return cio, child, nil
}

// newTTYIO wraps the pty master received from the runtime. Output is
// reported as stdout, as kubelet expects for TTY containers.
func newTTYIO(log *crilog.Writer, master *os.File, stdin bool) *containerIO {
	cio := &containerIO{log: log, done: make(chan struct{}), outputs: []*os.File{master}, tty: true}
	if stdin {
		cio.stdin = master
	}
	return cio
}

func closeStdio(s runtime.Stdio) {
	for _, f := range []*os.File{s.In, s.Out, s.Err} {
		if f != nil {
			f.Close()
		}
	}
}

// start launches one pump per output. The pumps end at EOF of their output
// or when closeAll closes it; their owner is the container, whose exit
// handling waits for done.
func (cio *containerIO) start() {
	streams := []struct {
		s  crilog.Stream
		fo *fanout.Fanout
	}{{crilog.Stdout, &cio.stdout}, {crilog.Stderr, &cio.stderr}}
	for i, f := range cio.outputs {
		cio.pumps.Add(1)
		go cio.pump(f, streams[i].s, streams[i].fo)
	}
	go func() { // ends with the pumps
		cio.pumps.Wait()
		close(cio.done)
	}()
}

func (cio *containerIO) pump(f *os.File, s crilog.Stream, fo *fanout.Fanout) {
	defer cio.pumps.Done()
	var sw *crilog.StreamWriter
	if cio.log != nil {
		sw = cio.log.Stream(s)
		defer sw.Flush()
	}
	buf := make([]byte, pumpBuffer)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if sw != nil {
				_, _ = sw.Write(buf[:n])
			}
			_, _ = fo.Write(buf[:n])
		}
		if err != nil {
			// EIO is how a pty master reports that the last slave fd
			// closed: the TTY equivalent of EOF.
			if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EIO) && !errors.Is(err, os.ErrClosed) {
				klog.ErrorS(err, "Container output pump stopped", "stream", s)
			}
			return
		}
	}
}

// wait waits up to d for the pumps to drain the outputs, then closes them:
// a process that escaped the container may hold a pipe open forever.
func (cio *containerIO) wait(d time.Duration) {
	if cio == nil {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-cio.done:
	case <-t.C:
		for _, f := range cio.outputs {
			f.Close()
		}
		<-cio.done
	}
}

// closeAll releases everything; safe to call more than once.
func (cio *containerIO) closeAll() {
	if cio == nil {
		return
	}
	for _, f := range cio.outputs {
		f.Close()
	}
	if cio.stdin != nil {
		cio.stdin.Close()
	}
	cio.stdout.Close()
	cio.stderr.Close()
	if cio.log != nil {
		if err := cio.log.Close(); err != nil {
			klog.ErrorS(err, "Close container log")
		}
	}
}

// consoleSocket is the listener given to the runtime's --console-socket.
type consoleSocket struct {
	dir string
	ln  *net.UnixListener
}

func newConsoleSocket() (*consoleSocket, error) {
	// A fresh short directory: the state dir plus a 64-character id would
	// overflow sun_path.
	dir, err := os.MkdirTemp("", "crs-console-")
	if err != nil {
		return nil, fmt.Errorf("console socket dir: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: dir + "/c.sock", Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("console socket: %w", err)
	}
	return &consoleSocket{dir: dir, ln: ln}, nil
}

func (c *consoleSocket) path() string { return c.dir + "/c.sock" }

// receive accepts the runtime's connection and returns the pty master it
// sends with SCM_RIGHTS. Closing the socket aborts it.
func (c *consoleSocket) receive(timeout time.Duration) (*os.File, error) {
	_ = c.ln.SetDeadline(time.Now().Add(timeout))
	conn, err := c.ln.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("accept console: %w", err)
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("receive console: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receive console: bad control message: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("receive console: bad rights: %v", err)
	}
	// Non-blocking, so the file joins the poller and Close interrupts Read.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("console nonblock: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "pty-master"), nil
}

func (c *consoleSocket) close() {
	c.ln.Close()
	os.RemoveAll(c.dir)
}
