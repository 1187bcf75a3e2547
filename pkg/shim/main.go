package shim

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/pkg/exepages"
	"github.com/cri-runtimed/cri-runtimed/pkg/peercred"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim/internal/reaper"
	ociruntime "github.com/cri-runtimed/cri-runtimed/pkg/shim/internal/runtime"
)

// Memory tuning of the shim process: it is multiplied by pods and mostly
// idle, so it trades a little CPU for a small heap.
const (
	gcPercent   = 25
	memoryLimit = 24 << 20
	// One P: the shim waits on pipes and runc, it never computes.
	maxProcs = 1
	// readyTimeout bounds how long the intermediate process waits for the
	// shim to serve.
	readyTimeout = 30 * time.Second
	// replyFlush bounds the wait for clients to hang up after Shutdown, so
	// the reply reaches them before the process exits.
	replyFlush = time.Second
	// trimCheck is how often the shim looks whether work (RPCs, runc
	// invocations, GC) faulted binary pages back in, to drop them again.
	trimCheck = 2 * time.Second
	// trimGrowth is the RSS growth, in pages, that triggers a trim.
	trimGrowth = 128
)

type options struct {
	stateDir    string
	podID       string
	runtime     string
	runtimeRoot string
	runtimeArgs []string
	daemonize   bool
	readyFD     int
	maxLine     int
}

// Main runs the shim; args are the arguments after `shim`. It returns the
// process exit code.
func Main(args []string) int {
	fs := flag.NewFlagSet("shim", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.stateDir, "state-dir", "", "directory for the socket, log and container records")
	fs.StringVar(&o.podID, "pod-id", "", "pod sandbox id (for logs)")
	fs.StringVar(&o.runtime, "runtime", "runc", "OCI runtime binary")
	fs.StringVar(&o.runtimeRoot, "runtime-root", "/run/cri-runtimed/runc", "OCI runtime --root")
	fs.Func("runtime-arg", "global option of every OCI runtime invocation (repeatable), e.g. --systemd-cgroup", func(v string) error {
		o.runtimeArgs = append(o.runtimeArgs, v)
		return nil
	})
	fs.BoolVar(&o.daemonize, "daemonize", false, "start the shim detached and print its pid once it serves")
	fs.IntVar(&o.readyFD, "ready-fd", -1, "fd to report readiness on (set by --daemonize)")
	fs.IntVar(&o.maxLine, "max-log-line-size", 0, "largest CRI log record content; longer lines are split")
	klog.InitFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.stateDir == "" {
		fmt.Fprintln(os.Stderr, "shim: --state-dir is required")
		return 2
	}
	if o.daemonize {
		return daemonize()
	}
	ready := func(msg string) {}
	if o.readyFD >= 0 {
		f := os.NewFile(uintptr(o.readyFD), "ready")
		ready = func(msg string) {
			fmt.Fprintln(f, msg)
			f.Close()
		}
	}
	if err := serve(o, ready); err != nil {
		ready("error: " + err.Error())
		klog.ErrorS(err, "Shim failed")
		klog.Flush()
		return 1
	}
	klog.Flush()
	return 0
}

// daemonize re-executes the shim in a new session with stdio on /dev/null
// and waits until it reports that it serves. This intermediate process then
// exits, so the shim is reparented away from the daemon and never dies or
// becomes a zombie with it.
func daemonize() int {
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "shim: %v\n", err)
		return 1
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "shim: %v\n", err)
		return 1
	}
	argv := make([]string, 0, len(os.Args)+2)
	for _, a := range os.Args {
		if a != "--daemonize" && a != "-daemonize" {
			argv = append(argv, a)
		}
	}
	argv = append(argv, "--ready-fd", "3")
	p, err := os.StartProcess("/proc/self/exe", argv, &os.ProcAttr{
		Dir:   "/",
		Env:   os.Environ(),
		Files: []*os.File{devnull, devnull, devnull, w},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	w.Close()
	devnull.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "shim: start: %v\n", err)
		return 1
	}
	pid := p.Pid
	_ = p.Release()
	_ = r.SetReadDeadline(time.Now().Add(readyTimeout))
	line, err := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case line == "ok":
		fmt.Println(pid)
		return 0
	case line != "":
		fmt.Fprintf(os.Stderr, "shim: %s\n", strings.TrimPrefix(line, "error: "))
	case errors.Is(err, io.EOF):
		fmt.Fprintln(os.Stderr, "shim: exited during startup (see shim.log)")
	default:
		_ = syscall.Kill(pid, syscall.SIGKILL)
		fmt.Fprintf(os.Stderr, "shim: not ready: %v\n", err)
	}
	return 1
}

func serve(o options, ready func(string)) error {
	dir, err := filepath.Abs(o.stateDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if err := redirectOutput(filepath.Join(dir, logName)); err != nil {
		return err
	}
	nameProcess()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become subreaper: %w", err)
	}
	debug.SetGCPercent(gcPercent)
	debug.SetMemoryLimit(memoryLimit)
	runtime.GOMAXPROCS(min(maxProcs, runtime.GOMAXPROCS(0)))
	// The session has no terminal, but a foreground debug run must not be
	// stopped by ^C meant for someone else.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)

	sock, release, err := socketPath(dir, socketName)
	if err != nil {
		return err
	}
	defer release()
	if conn, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("a shim already serves %s", filepath.Join(dir, socketName))
	}
	_ = os.Remove(filepath.Join(dir, socketName))
	ln, err := listenPrivate(sock, filepath.Join(dir, socketName))
	if err != nil {
		return err
	}
	// Go's listener unlinks its socket file on Close by the bound name;
	// remove it by its real path too.
	defer os.Remove(filepath.Join(dir, socketName))
	defer ln.Close()
	pidFile := filepath.Join(dir, pidName)
	if err := writeFileAtomic(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		return err
	}
	defer os.Remove(pidFile)

	ctx, cancel := context.WithCancel(context.Background())
	rp := reaper.New()
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { defer bg.Done(); rp.Run(ctx) }()

	stopCh := make(chan bool, 1)
	s := &server{
		ctx:        ctx,
		dir:        dir,
		podID:      o.podID,
		maxLine:    o.maxLine,
		rt:         &ociruntime.Runtime{Binary: o.runtime, Root: o.runtimeRoot, Args: o.runtimeArgs, Reaper: rp},
		reaper:     rp,
		events:     newEventLog(),
		ooms:       newOOMWatcher(cgroups.Unified()),
		containers: map[string]*container{},
		started:    make(chan struct{}, 1),
		stop: func(force bool) {
			select {
			case stopCh <- force:
			default:
			}
		},
	}
	conns := &connSet{m: map[net.Conn]struct{}{}}
	// Teardown order: cancel ends long-polls and watchers, so the
	// connections' pending calls finish and closeAll does not wait on
	// them; the reaper stops last.
	defer func() {
		klog.InfoS("Shim stopping")
		defer klog.InfoS("Shim stopped")
		cancel()
		ln.Close()
		conns.closeAll()
		s.wg.Wait()
		s.ooms.close()
		bg.Wait()
	}()
	bg.Add(1)
	go func() { defer bg.Done(); s.ooms.run() }()
	s.reload(ctx)

	rs := rpc.NewServer()
	if err := rs.RegisterName("Shim", &service{s: s}); err != nil {
		return fmt.Errorf("register service: %w", err)
	}
	bg.Add(1)
	go func() { defer bg.Done(); conns.serve(ln, rs, s.serveStream) }()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	defer signal.Stop(sigs)

	klog.InfoS("Shim serving", "pod", o.podID, "stateDir", dir, "pid", os.Getpid(), "containers", s.count())
	ready("ok")
	// Past start-up, the binary's pages fault in one at a time: what a
	// shim touches while it idles is scattered over the binary, and with
	// the kernel's fault-around each touched page mapped 16 (1.9 MiB of
	// an idle shim's RSS, 0.5–0.7 MiB without; test/bench/README.md).
	if uffd, err := exepages.DisableFaultAround(); err != nil {
		klog.V(2).InfoS("Binary pages keep fault-around", "err", err)
	} else {
		defer uffd.Close()
	}
	// Found once: a trim after each container start read smaps again.
	bin, err := exepages.ReadOnlyMappings()
	if err != nil {
		klog.V(2).InfoS("Finding the binary's mappings; no trims", "err", err)
	}
	trimBinaryPages(bin)
	// Work after the first trim (GC cycles, gob types of the first calls,
	// container starts) faults binary pages back in; they are dropped again
	// right after each container's start, and at a tick that finds the RSS
	// grown.
	settle := time.NewTicker(trimCheck)
	defer settle.Stop()
	trimmedAt := exepages.ResidentPages()
	trimIfGrown := func() {
		if exepages.ResidentPages() > trimmedAt+trimGrowth {
			trimBinaryPages(bin)
			trimmedAt = exepages.ResidentPages()
		}
	}

	for {
		select {
		case <-s.started:
			// A container's start faults about 2 MiB of the binary back
			// in; waiting for the tick left that in every shim of a
			// burst (5.4-5.9 MiB right after 20 pods, 3.5 once trimmed).
			// Not after the pause's start: the pod's container start
			// follows it and would fault the same pages back.
			trimIfGrown()
		case <-settle.C:
			trimIfGrown()
			// The state dir removed stands for a Shutdown the daemon
			// could not send. Looked at on this tick rather than watched:
			// an inotify instance per shim used up the 128 the kernel
			// allows root by default on a full node, and kubelet's
			// cAdvisor then failed to start.
			if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
				klog.InfoS("State dir removed; deleting containers and exiting")
				dctx, dcancel := shutdownCtx()
				s.deleteAll(dctx)
				dcancel()
				return nil
			}
		case force := <-stopCh:
			klog.InfoS("Shutdown requested", "force", force)
			if force {
				dctx, dcancel := shutdownCtx()
				s.deleteAll(dctx)
				dcancel()
			}
			s.events.close()
			conns.waitIdle(replyFlush)
			return nil
		case <-sigs:
			if n := s.count(); n > 0 {
				klog.InfoS("Ignoring SIGTERM while containers exist", "containers", n)
				continue
			}
			klog.InfoS("SIGTERM with no containers; exiting")
			return nil
		}
	}
}

// redirectOutput points stdout and stderr (klog, panics) at the shim log.
func redirectOutput(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open shim log: %w", err)
	}
	defer f.Close()
	for _, fd := range []int{1, 2} {
		if err := unix.Dup3(int(f.Fd()), fd, 0); err != nil {
			return fmt.Errorf("redirect fd %d to shim log: %w", fd, err)
		}
	}
	return nil
}

// listenPrivate listens on the unix socket sock (path: its name on disk)
// reachable by the shim's own user only. Whoever connects can create a
// container from any bundle or exec a process with any capabilities, so
// the socket's mode must not rest on the umask the shim inherited: it is
// chmod'ed 0600 before the first accept (a connection made in between is
// refused by peercred.SameUser).
func listenPrivate(sock, path string) (net.Listener, error) {
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if err := os.Chmod(path, socketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return ln, nil
}

// socketMode is the mode of the shim's socket.
const socketMode = 0o600

// connSet tracks the RPC connections so that they are closed, and their
// goroutines end, when the shim stops.
type connSet struct {
	mu     sync.Mutex
	m      map[net.Conn]struct{}
	wg     sync.WaitGroup
	closed bool
}

// serve accepts connections until ln is closed. A connection whose first
// byte is streamMagic carries an exec or attach stream (see stream.go) and
// goes to stream; any other is a net/rpc client.
func (cs *connSet) serve(ln net.Listener, rs *rpc.Server, stream func(net.Conn, *bufio.Reader)) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				klog.ErrorS(err, "Accept")
			}
			return
		}
		if err := peercred.SameUser(conn); err != nil {
			klog.InfoS("Refusing a connection", "reason", err)
			conn.Close()
			continue
		}
		cs.mu.Lock()
		if cs.closed {
			cs.mu.Unlock()
			conn.Close()
			return
		}
		cs.m[conn] = struct{}{}
		cs.wg.Add(1)
		cs.mu.Unlock()
		go func() { // ends when the client or closeAll closes conn
			defer cs.wg.Done()
			br := bufio.NewReaderSize(conn, 4096)
			if b, err := br.Peek(1); err == nil && b[0] == streamMagic {
				stream(conn, br)
			} else {
				rs.ServeConn(bufferedConn{Reader: br, Conn: conn})
			}
			cs.mu.Lock()
			delete(cs.m, conn)
			cs.mu.Unlock()
		}()
	}
}

// bufferedConn is a connection whose first bytes were peeked into Reader.
type bufferedConn struct {
	*bufio.Reader
	net.Conn
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.Reader.Read(p) }

// waitIdle waits until every client hung up (the client closes its
// connection once Shutdown answered), or d passed.
func (cs *connSet) waitIdle(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		cs.mu.Lock()
		n := len(cs.m)
		cs.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// trimBinaryPages drops the resident pages of the shim's binary (see
// exepages.Trim): they stay in the page cache, shared by all shims, and
// fault back in when used.
func trimBinaryPages(bin *exepages.Mappings) {
	if bin == nil {
		return
	}
	n, err := bin.Trim()
	if err != nil {
		klog.V(2).InfoS("Trimming the binary's pages", "err", err)
		return
	}
	klog.V(4).InfoS("Trimmed binary pages", "bytes", n)
}

func (cs *connSet) closeAll() {
	cs.mu.Lock()
	cs.closed = true
	for c := range cs.m {
		c.Close()
	}
	cs.mu.Unlock()
	cs.wg.Wait()
}

// nameProcess sets the shim's command name (comm: what top and pgrep
// show, cut to 15 bytes by the kernel) to its binary's. Started from its
// memfd image, /proc/<daemon>/fd/N, it would be that fd's number, the
// same for every shim. /proc/self/comm names the thread group's leader,
// whichever thread writes it.
func nameProcess() {
	f, err := os.OpenFile("/proc/self/comm", os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(BinaryName)
		f.Close()
	}
	if err != nil {
		klog.V(2).InfoS("Naming the shim's process", "err", err)
	}
}
