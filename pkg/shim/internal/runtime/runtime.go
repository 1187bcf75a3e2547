package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim/internal/reaper"
)

// maxOutput bounds what is kept of a runtime command's stdout/stderr.
const maxOutput = 1 << 20

// outputGrace is how long output is still read after the runtime exited:
// a process it left behind may hold the pipe open.
const outputGrace = 200 * time.Millisecond

// Runtime is one OCI runtime binary with its state root.
type Runtime struct {
	Binary string
	Root   string
	// Args are global options given to every invocation (the cgroup
	// driver's --systemd-cgroup).
	Args   []string
	Reaper *reaper.Reaper
}

// Error is a failed runtime invocation.
type Error struct {
	Command string
	Status  int
	// Message is the runtime's last error log line, or its output.
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("runtime %s failed (exit status %d): %s", e.Command, e.Status, e.Message)
}

// Stdio are the files given to the runtime as fds 0, 1 and 2. Nil entries
// become /dev/null (stdin) or the capture pipe (stdout, stderr).
type Stdio struct {
	In, Out, Err *os.File
}

// State is the part of `runtime state` the shim uses.
type State struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
}

func (r *Runtime) argv(logFile string, args ...string) []string {
	argv := append([]string{r.Binary, "--root", r.Root}, r.Args...)
	// The log's directory is gone when the shim deletes its containers
	// because its state dir was removed: runc would fail on opening the
	// log and delete nothing.
	if _, err := os.Stat(filepath.Dir(logFile)); logFile != "" && err == nil {
		argv = append(argv, "--log", logFile, "--log-format", "json")
	}
	return append(argv, args...)
}

// Started is a runtime invocation that runs in the background.
type Started struct {
	Pid     int
	exit    <-chan reaper.Exit
	out     *capture
	logFile string
	logOff  int64
	command string
}

// Begin starts the runtime with args. The caller must call Finish.
func (r *Runtime) Begin(logFile string, stdio Stdio, args ...string) (*Started, error) {
	s := &Started{logFile: logFile, logOff: fileSize(logFile), command: args[0]}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer devnull.Close()
	files := []*os.File{stdio.In, stdio.Out, stdio.Err}
	if files[0] == nil {
		files[0] = devnull
	}
	if stdio.Out == nil || stdio.Err == nil {
		c, w, err := newCapture()
		if err != nil {
			return nil, err
		}
		defer w.Close() // the child has its copy
		s.out = c
		if files[1] == nil {
			files[1] = w
		}
		if files[2] == nil {
			files[2] = w
		}
	}
	pid, ch, err := r.Reaper.Start(r.Binary, r.argv(logFile, args...), &os.ProcAttr{
		Env:   os.Environ(),
		Files: files,
		// The runtime must not get the shim's terminal signals: the shim
		// has none, but be explicit so a foreground debug run behaves.
		Sys: &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		if s.out != nil {
			s.out.close()
		}
		return nil, err
	}
	s.Pid, s.exit = pid, ch
	return s, nil
}

// Exit returns the channel that receives the runtime's exit. A caller that
// receives from it must not call Finish; use Result instead.
func (s *Started) Exit() <-chan reaper.Exit { return s.exit }

// Result turns an exit received from Exit into an *Error if it failed.
func (s *Started) Result(e reaper.Exit) error {
	var out []byte
	if s.out != nil {
		out = s.out.finish(outputGrace)
	}
	if e.Status != 0 {
		return &Error{Command: s.command, Status: e.Status, Message: errorMessage(s.logFile, s.logOff, out)}
	}
	return nil
}

// Finish waits for the runtime to exit (killing it if ctx ends) and returns
// its captured output and an *Error if it failed.
func (s *Started) Finish(ctx context.Context) (reaper.Exit, []byte, error) {
	e, werr := reaper.Wait(ctx, s.Pid, s.exit)
	var out []byte
	if s.out != nil {
		out = s.out.finish(outputGrace)
	}
	if werr != nil {
		return e, out, fmt.Errorf("runtime %s: %w", s.command, werr)
	}
	if e.Status != 0 {
		return e, out, &Error{Command: s.command, Status: e.Status, Message: errorMessage(s.logFile, s.logOff, out)}
	}
	return e, out, nil
}

// Run starts the runtime and waits for it.
func (r *Runtime) Run(ctx context.Context, logFile string, stdio Stdio, args ...string) ([]byte, error) {
	s, err := r.Begin(logFile, stdio, args...)
	if err != nil {
		return nil, err
	}
	_, out, err := s.Finish(ctx)
	return out, err
}

// Create runs `create`. pidFile receives the container init pid.
func (r *Runtime) Create(ctx context.Context, logFile, id, bundle, pidFile, consoleSocket string, stdio Stdio) error {
	args := []string{"create", "--bundle", bundle, "--pid-file", pidFile}
	if consoleSocket != "" {
		args = append(args, "--console-socket", consoleSocket)
	}
	_, err := r.Run(ctx, logFile, stdio, append(args, id)...)
	return err
}

// RunDetached runs `run --detach`: the container is created and its
// process started, and the runtime returns. pidFile receives its pid.
func (r *Runtime) RunDetached(ctx context.Context, logFile, id, bundle, pidFile, consoleSocket string, stdio Stdio) error {
	args := []string{"run", "--detach", "--bundle", bundle, "--pid-file", pidFile}
	if consoleSocket != "" {
		args = append(args, "--console-socket", consoleSocket)
	}
	_, err := r.Run(ctx, logFile, stdio, append(args, id)...)
	return err
}

// Start runs `start`.
func (r *Runtime) Start(ctx context.Context, logFile, id string) error {
	_, err := r.Run(ctx, logFile, Stdio{}, "start", id)
	return err
}

// Kill runs `kill`.
func (r *Runtime) Kill(ctx context.Context, logFile, id string, sig syscall.Signal, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	_, err := r.Run(ctx, logFile, Stdio{}, append(args, id, strconv.Itoa(int(sig)))...)
	return err
}

// Delete runs `delete`.
func (r *Runtime) Delete(ctx context.Context, logFile, id string, force bool) error {
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	_, err := r.Run(ctx, logFile, Stdio{}, append(args, id)...)
	return err
}

// Update runs `update --resources`.
func (r *Runtime) Update(ctx context.Context, logFile, id, resourcesFile string) error {
	_, err := r.Run(ctx, logFile, Stdio{}, "update", "--resources", resourcesFile, id)
	return err
}

// State runs `state`.
func (r *Runtime) State(ctx context.Context, id string) (State, error) {
	// stderr goes to /dev/null so warnings cannot corrupt the JSON.
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return State{}, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer devnull.Close()
	s, err := r.Begin("", Stdio{Err: devnull}, "state", id)
	if err != nil {
		return State{}, err
	}
	_, out, err := s.Finish(ctx)
	if err != nil {
		return State{}, err
	}
	var st State
	if err := json.Unmarshal(out, &st); err != nil {
		return State{}, fmt.Errorf("parse runtime state: %w", err)
	}
	return st, nil
}

// IsNotExist reports whether err says the container is unknown to the
// runtime (already deleted).
func IsNotExist(err error) bool {
	var re *Error
	if !errors.As(err, &re) {
		return false
	}
	m := strings.ToLower(re.Message)
	return strings.Contains(m, "does not exist") || strings.Contains(m, "not found") && strings.Contains(m, "container")
}

// IsNotRunning reports whether err says the container has no process left
// to signal.
func IsNotRunning(err error) bool {
	var re *Error
	if !errors.As(err, &re) {
		return false
	}
	m := strings.ToLower(re.Message)
	return strings.Contains(m, "not running") || strings.Contains(m, "process already finished") ||
		strings.Contains(m, "no such process") || strings.Contains(m, "container is stopped")
}

func fileSize(path string) int64 {
	if path == "" {
		return 0
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// errorMessage returns the last error message the runtime logged after off,
// falling back to its output.
func errorMessage(logFile string, off int64, out []byte) string {
	if msg := lastLogError(logFile, off); msg != "" {
		return msg
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		return s
	}
	return "no error message"
}

func lastLogError(logFile string, off int64) string {
	if logFile == "" {
		return ""
	}
	f, err := os.Open(logFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return ""
	}
	var last string
	sc := bufio.NewScanner(io.LimitReader(f, maxOutput))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		if l.Level == "error" || l.Level == "fatal" {
			last = l.Msg
		}
	}
	return last
}

// capture collects a bounded amount of a child's output.
type capture struct {
	r    *os.File
	done chan struct{}
	buf  bytes.Buffer
}

func newCapture() (*capture, *os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("output pipe: %w", err)
	}
	c := &capture{r: r, done: make(chan struct{})}
	go func() { // owned by finish, which closes r to stop it
		defer close(c.done)
		_, _ = io.Copy(&c.buf, io.LimitReader(r, maxOutput))
		_, _ = io.Copy(io.Discard, r)
	}()
	return c, w, nil
}

func (c *capture) finish(grace time.Duration) []byte {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
	}
	c.close()
	<-c.done
	return c.buf.Bytes()
}

func (c *capture) close() { _ = c.r.Close() }

// Checkpoint runs `checkpoint --leave-running`: CRIU dumps the container
// into imagePath (its logs into workPath) and the container keeps running.
func (r *Runtime) Checkpoint(ctx context.Context, logFile, id, imagePath, workPath string) error {
	_, err := r.Run(ctx, logFile, Stdio{}, "checkpoint", "--leave-running", "--image-path", imagePath, "--work-path", workPath, id)
	return err
}

// Restore runs `restore --detach`: CRIU recreates the container from
// imagePath in bundle, its pipes connected to stdio (runc hands its own
// fds 0-2 to the pipes the checkpoint recorded); pidFile receives the
// restored init's pid.
func (r *Runtime) Restore(ctx context.Context, logFile, id, bundle, pidFile, imagePath, workPath string, stdio Stdio) error {
	_, err := r.Run(ctx, logFile, stdio, "restore", "--detach", "--image-path", imagePath, "--work-path", workPath,
		"--bundle", bundle, "--pid-file", pidFile, id)
	return err
}

// Pause runs `pause` (the cgroup freezer).
func (r *Runtime) Pause(ctx context.Context, logFile, id string) error {
	_, err := r.Run(ctx, logFile, Stdio{}, "pause", id)
	return err
}

// Resume runs `resume`.
func (r *Runtime) Resume(ctx context.Context, logFile, id string) error {
	_, err := r.Run(ctx, logFile, Stdio{}, "resume", id)
	return err
}
