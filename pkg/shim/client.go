package shim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// File names inside a shim's state directory.
const (
	socketName = "shim.sock"
	pidName    = "shim.pid"
	logName    = "shim.log"
)

// maxPoll bounds one server-side long-poll so that a call abandoned by its
// context does not pin a server goroutine for long.
const maxPoll = 30 * time.Second

// SpawnOptions configure a new shim process.
type SpawnOptions struct {
	// Binary is the cri-runtimed executable; it is run as `Binary shim`.
	Binary string
	PodID  string
	// StateDir holds the socket, pid file, log and container records.
	StateDir string
	// Runtime is the OCI runtime binary (runc or crun).
	Runtime string
	// RuntimeRoot is passed as the runtime's --root.
	RuntimeRoot string
	// RuntimeArgs are global options of every runtime invocation (the
	// cgroup driver's).
	RuntimeArgs []string
	// Env is added to the daemon's environment for the shim.
	Env []string
	// LogLevel is the klog verbosity of the shim.
	LogLevel int
	// MaxLogLineSize overrides the CRI log record size; zero is the default.
	MaxLogLineSize int
}

// Client talks to one shim.
type Client struct {
	rpc      *rpc.Client
	pid      int
	stateDir string
}

// Spawn starts a shim for a pod and returns a connected client. The shim is
// started through an intermediate process that detaches it (new session,
// reparented away from the daemon) and reports once the socket serves, so
// the shim never dies with the daemon and the daemon never has to reap it.
func Spawn(ctx context.Context, opts SpawnOptions) (*Client, error) {
	if opts.Binary == "" || opts.StateDir == "" || opts.Runtime == "" || opts.RuntimeRoot == "" {
		return nil, errors.New("spawn shim: Binary, StateDir, Runtime and RuntimeRoot are required")
	}
	dir, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("spawn shim: %w", err)
	}
	if c, err := Dial(ctx, dir); err == nil {
		c.Close()
		return nil, fmt.Errorf("spawn shim in %s: a shim already serves there: %w", dir, ErrAlreadyExists)
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("spawn shim: %w", err)
	}
	args := []string{"shim",
		"--state-dir", dir,
		"--pod-id", opts.PodID,
		"--runtime", opts.Runtime,
		"--runtime-root", opts.RuntimeRoot,
		"--v", strconv.Itoa(opts.LogLevel),
		"--ready-fd", "3",
	}
	if opts.MaxLogLineSize > 0 {
		args = append(args, "--max-log-line-size", strconv.Itoa(opts.MaxLogLineSize))
	}
	for _, a := range opts.RuntimeArgs {
		args = append(args, "--runtime-arg="+a)
	}
	pid, err := start(ctx, opts.Binary, args, append(os.Environ(), opts.Env...))
	if err != nil {
		return nil, fmt.Errorf("spawn shim: %w", err)
	}
	// No Ping: the shim reported that it serves, and its pid is known.
	c, err := connect(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("spawn shim (pid %d): %w", pid, err)
	}
	c.pid = pid
	return c, nil
}

// connect opens a connection to the socket of the shim serving stateDir.
func connect(ctx context.Context, stateDir string) (*Client, error) {
	sock, release, err := socketPath(stateDir, socketName)
	if err != nil {
		return nil, fmt.Errorf("dial shim in %s: %w: %w", stateDir, ErrShimGone, err)
	}
	defer release()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dial shim: %w", ctx.Err())
		}
		return nil, fmt.Errorf("dial shim in %s: %w: %w", stateDir, ErrShimGone, err)
	}
	return &Client{rpc: rpc.NewClient(conn), stateDir: stateDir}, nil
}

// Dial connects to the shim serving stateDir, e.g. after a daemon restart.
// It returns ErrShimGone if nobody answers.
func Dial(ctx context.Context, stateDir string) (*Client, error) {
	c, err := connect(ctx, stateDir)
	if err != nil {
		return nil, err
	}
	var pr PingReply
	if err := c.call(ctx, "Ping", Empty{}, &pr); err != nil {
		c.rpc.Close()
		return nil, fmt.Errorf("dial shim in %s: %w", stateDir, err)
	}
	c.pid = pr.Pid
	return c, nil
}

// Pid returns the shim's process id.
func (c *Client) Pid() int { return c.pid }

// Close closes the connection; the shim keeps running.
func (c *Client) Close() error { return c.rpc.Close() }

func (c *Client) call(ctx context.Context, method string, args, reply any) error {
	call := c.rpc.Go("Shim."+method, args, reply, make(chan *rpc.Call, 1))
	select {
	case <-call.Done:
	case <-ctx.Done():
		// net/rpc cannot cancel; the server finishes on its own (every
		// blocking server call is bounded) and the reply is discarded.
		return fmt.Errorf("shim %s: %w", method, ctx.Err())
	}
	err := call.Error
	var se rpc.ServerError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return decodeError(string(se))
	case errors.Is(err, rpc.ErrShutdown), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return fmt.Errorf("shim %s: %w: %w", method, ErrShimGone, err)
	default:
		return fmt.Errorf("shim %s: %w", method, err)
	}
}

// pollWait is the server-side wait for one long-poll round.
func pollWait(ctx context.Context) time.Duration {
	d := maxPoll
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < d {
			d = max(left, time.Millisecond)
		}
	}
	return d
}

// Create creates a container; its process waits for Start.
func (c *Client) Create(ctx context.Context, req CreateRequest) (State, error) {
	var st State
	err := c.call(ctx, "Create", req, &st)
	return st, err
}

// Start starts a created container.
func (c *Client) Start(ctx context.Context, id string) (State, error) {
	var st State
	err := c.call(ctx, "Start", IDRequest{ID: id}, &st)
	return st, err
}

// Kill signals the container's init (all its processes with all). Killing
// an exited container is not an error.
func (c *Client) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	return c.call(ctx, "Kill", KillRequest{ID: id, Signal: int(sig), All: all}, &Empty{})
}

// Wait blocks until the container exited and its exit is recorded. ctx ends
// the wait, not the container.
func (c *Client) Wait(ctx context.Context, id string) (State, error) {
	for {
		var r WaitReply
		if err := c.call(ctx, "Wait", WaitRequest{ID: id, MaxWait: pollWait(ctx)}, &r); err != nil {
			return State{}, err
		}
		if r.Done {
			return r.State, nil
		}
		if err := ctx.Err(); err != nil {
			return r.State, fmt.Errorf("shim Wait: %w", err)
		}
	}
}

// Delete deletes the container from the runtime (killing it if needed) and
// removes its record.
func (c *Client) Delete(ctx context.Context, id string) (State, error) {
	var st State
	err := c.call(ctx, "Delete", IDRequest{ID: id}, &st)
	return st, err
}

// State returns one container's state.
func (c *Client) State(ctx context.Context, id string) (State, error) {
	var st State
	err := c.call(ctx, "State", IDRequest{ID: id}, &st)
	return st, err
}

// List returns all containers of the shim, oldest first.
func (c *Client) List(ctx context.Context) ([]State, error) {
	var r ListReply
	err := c.call(ctx, "List", Empty{}, &r)
	return r.States, err
}

// ExecSync runs a process in a running container and returns its output.
// ctx's deadline also bounds the process.
func (c *Client) ExecSync(ctx context.Context, req ExecSyncRequest) (ExecSyncResult, error) {
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); req.Timeout == 0 || left < req.Timeout {
			req.Timeout = max(left, time.Millisecond)
		}
	}
	var r ExecSyncResult
	err := c.call(ctx, "ExecSync", req, &r)
	return r, err
}

// ReopenLog reopens the container's CRI log file after kubelet rotated it.
func (c *Client) ReopenLog(ctx context.Context, id string) error {
	return c.call(ctx, "ReopenLog", IDRequest{ID: id}, &Empty{})
}

// Update applies an OCI LinuxResources JSON to the container.
func (c *Client) Update(ctx context.Context, id string, resources []byte) error {
	return c.call(ctx, "Update", UpdateRequest{ID: id, Resources: resources}, &Empty{})
}

// Checkpoint dumps a running container with CRIU; it keeps running.
func (c *Client) Checkpoint(ctx context.Context, req CheckpointRequest) error {
	return c.call(ctx, "Checkpoint", req, &Empty{})
}

// Pause freezes the container's processes.
func (c *Client) Pause(ctx context.Context, id string) error {
	return c.call(ctx, "Pause", IDRequest{ID: id}, &Empty{})
}

// Resume thaws a paused container.
func (c *Client) Resume(ctx context.Context, id string) error {
	return c.call(ctx, "Resume", IDRequest{ID: id}, &Empty{})
}

// Events returns the events with Seq > after, waiting until there is at
// least one or ctx ends.
func (c *Client) Events(ctx context.Context, after uint64) ([]Event, error) {
	for {
		var r EventsReply
		if err := c.call(ctx, "Events", EventsRequest{After: after, MaxWait: pollWait(ctx)}, &r); err != nil {
			return nil, err
		}
		if len(r.Events) > 0 {
			return r.Events, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("shim Events: %w", err)
		}
	}
}

// Shutdown asks the shim to exit; it refuses with ErrBusy while it still
// has containers. It returns once the shim process is gone.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.shutdown(ctx, false)
}

// ForceShutdown kills and deletes all containers, then stops the shim.
func (c *Client) ForceShutdown(ctx context.Context) error {
	return c.shutdown(ctx, true)
}

func (c *Client) shutdown(ctx context.Context, force bool) error {
	if err := c.call(ctx, "Shutdown", ShutdownRequest{Force: force}, &Empty{}); err != nil {
		return err
	}
	// The shim exits once its clients hung up.
	c.rpc.Close()
	// The shim is not our child: poll until its pid is gone.
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if processGone(c.pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("shim Shutdown: waiting for pid %d: %w", c.pid, ctx.Err())
		case <-t.C:
		}
	}
}

// processGone reports whether pid has exited. A zombie counts as gone: the
// shim's parent is init, which may reap it late.
func processGone(pid int) bool {
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain spaces or parentheses.
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] == 'Z' || b[i+2] == 'X'
	}
	return false
}

// readPidFile reads a pid written by the shim or the runtime.
func readPidFile(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	line, err := bufio.NewReader(io.LimitReader(f, 64)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad content %q", path, line)
	}
	return pid, nil
}

// start runs the shim directly (one exec of the binary, not two) in a new
// session with stdio on /dev/null, and waits until it reports that it
// serves. Its own session keeps it out of the daemon's signals; were the
// daemon to die, it is reparented and keeps running. While the daemon
// lives, a goroutine reaps it when it exits, so it never lingers as a
// zombie; that goroutine ends with the shim.
func start(ctx context.Context, binary string, args, env []string) (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		w.Close()
		return 0, err
	}
	// argv[0] names the shim for ps: binary is its memfd image's
	// /proc/<daemon>/fd/N.
	p, err := os.StartProcess(binary, append([]string{BinaryName}, args...), &os.ProcAttr{
		Dir:   "/",
		Env:   env,
		Files: []*os.File{devnull, devnull, devnull, w},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	w.Close()
	devnull.Close()
	if err != nil {
		return 0, err
	}
	go func() { _, _ = p.Wait() }()
	type result struct {
		line string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		done <- result{strings.TrimSpace(line), err}
	}()
	select {
	case <-ctx.Done():
		_ = p.Kill()
		return 0, ctx.Err()
	case res := <-done:
		switch {
		case res.line == "ok":
			return p.Pid, nil
		case res.line != "":
			return 0, errors.New(strings.TrimPrefix(res.line, "error: "))
		default:
			return 0, fmt.Errorf("shim exited during startup (see shim.log): %v", res.err)
		}
	}
}
