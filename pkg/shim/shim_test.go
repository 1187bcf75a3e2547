package shim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim/crilog"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim/internal/shimtest"
)

const reexecEnv = "CRI_RUNTIMED_SHIM_TEST_REEXEC"

// TestMain lets the test binary act as `cri-runtimed shim`.
func TestMain(m *testing.M) {
	if os.Getenv(reexecEnv) == "1" && len(os.Args) > 1 && os.Args[1] == "shim" {
		os.Exit(shim.Main(os.Args[2:]))
	}
	os.Exit(m.Run())
}

type harness struct {
	t        *testing.T
	c        *shim.Client
	opts     shim.SpawnOptions
	stateDir string
	logDir   string
}

func newHarness(t *testing.T, runtime string, maxLine int) *harness {
	t.Helper()
	shimtest.Requirements(t)
	// Short path: the socket path must fit in sun_path.
	stateDir, err := os.MkdirTemp("", "shimt-")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	binary := os.Args[0]
	if b := os.Getenv("CRI_RUNTIMED_BINARY"); b != "" {
		// A built daemon binary, to measure the real shim's RSS.
		binary = b
	}
	opts := shim.SpawnOptions{
		Binary:         binary,
		PodID:          "pod-" + filepath.Base(stateDir),
		StateDir:       stateDir,
		Runtime:        runtime,
		RuntimeRoot:    root,
		Env:            []string{reexecEnv + "=1"},
		LogLevel:       4,
		MaxLogLineSize: maxLine,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := shim.Spawn(ctx, opts)
	if err != nil {
		os.RemoveAll(stateDir)
		t.Fatalf("Spawn: %v", err)
	}
	h := &harness{t: t, c: c, opts: opts, stateDir: stateDir, logDir: t.TempDir()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if cl, err := shim.Dial(ctx, stateDir); err == nil {
			start := time.Now()
			defer func() { t.Logf("ForceShutdown took %v", time.Since(start)) }()
			if err := cl.ForceShutdown(ctx); err != nil {
				t.Errorf("ForceShutdown: %v", err)
			}
			cl.Close()
		}
		h.c.Close()
		killLeftoverShim(t, stateDir)
		if t.Failed() || os.Getenv("SHIM_TEST_LOG") != "" {
			if b, err := os.ReadFile(filepath.Join(stateDir, "shim.log")); err == nil {
				t.Logf("shim.log:\n%s", b)
			}
		}
		os.RemoveAll(stateDir)
	})
	return h
}

func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	h.t.Cleanup(cancel)
	return ctx
}

// run creates and starts a container and returns its id and log path.
func (h *harness) run(args []string, o shimtest.BundleOptions) (string, string) {
	h.t.Helper()
	id := shimtest.ID()
	logPath := filepath.Join(h.logDir, id+".log")
	bundle := shimtest.Bundle(h.t, id, args, o)
	if _, err := h.c.Create(h.ctx(), shim.CreateRequest{ID: id, Bundle: bundle, LogPath: logPath, Terminal: o.Terminal}); err != nil {
		h.t.Fatalf("Create: %v", err)
	}
	if _, err := h.c.Start(h.ctx(), id); err != nil {
		h.t.Fatalf("Start: %v", err)
	}
	return id, logPath
}

func (h *harness) wait(id string) shim.State {
	h.t.Helper()
	st, err := h.c.Wait(h.ctx(), id)
	if err != nil {
		h.t.Fatalf("Wait: %v", err)
	}
	return st
}

func (h *harness) remove(id string) {
	h.t.Helper()
	if _, err := h.c.Delete(h.ctx(), id); err != nil {
		h.t.Errorf("Delete: %v", err)
	}
	if _, err := h.c.State(h.ctx(), id); !errors.Is(err, shim.ErrNotFound) {
		h.t.Errorf("State after Delete: %v, want ErrNotFound", err)
	}
}

func readLines(t *testing.T, paths ...string) []crilog.Line {
	t.Helper()
	var all []crilog.Line
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := crilog.ReadLines(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		all = append(all, lines...)
	}
	return all
}

type line struct {
	stream   crilog.Stream
	content  string
	complete bool
}

func streamLines(lines []crilog.Line, s crilog.Stream) []line {
	var out []line
	for _, l := range lines {
		if l.Stream == s {
			out = append(out, line{l.Stream, string(l.Content), l.Complete})
		}
	}
	return out
}

func TestContainerOutputAndExit(t *testing.T) {
	long := strings.Repeat("a", 3000)
	tests := []struct {
		name       string
		script     string
		maxLine    int
		wantOut    []line
		wantErr    []line
		wantCode   int32
		wantReason string
		wantRecs   string // tags of stdout records, if checked
	}{
		{
			name:       "lines and exit code",
			script:     "echo out1; echo err1 >&2; echo out2; exit 3",
			wantOut:    []line{{crilog.Stdout, "out1", true}, {crilog.Stdout, "out2", true}},
			wantErr:    []line{{crilog.Stderr, "err1", true}},
			wantCode:   3,
			wantReason: shim.ReasonError,
		},
		{
			name:       "long line split into partial records",
			script:     "head -c 3000 /dev/zero | tr '\\0' a; echo",
			maxLine:    1024,
			wantOut:    []line{{crilog.Stdout, long, true}},
			wantCode:   0,
			wantReason: shim.ReasonCompleted,
			wantRecs:   "PPF",
		},
		{
			name:       "no trailing newline is flushed",
			script:     "echo first; printf tail",
			wantOut:    []line{{crilog.Stdout, "first", true}, {crilog.Stdout, "tail", false}},
			wantReason: shim.ReasonCompleted,
			wantRecs:   "FP",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "/usr/sbin/runc", tc.maxLine)
			id, logPath := h.run([]string{"sh", "-c", tc.script}, shimtest.BundleOptions{})
			st := h.wait(id)
			if st.Status != shim.StatusExited || st.ExitCode != tc.wantCode || st.FinishedAt.IsZero() || st.Reason != tc.wantReason {
				t.Errorf("state = %+v, want exited %d %s with FinishedAt", st, tc.wantCode, tc.wantReason)
			}
			lines := readLines(t, logPath)
			if got := streamLines(lines, crilog.Stdout); !equalLines(got, tc.wantOut) {
				t.Errorf("stdout lines = %+v, want %+v", got, tc.wantOut)
			}
			if got := streamLines(lines, crilog.Stderr); !equalLines(got, tc.wantErr) {
				t.Errorf("stderr lines = %+v, want %+v", got, tc.wantErr)
			}
			if tc.wantRecs != "" {
				if got := recordTags(t, logPath, crilog.Stdout); got != tc.wantRecs {
					t.Errorf("stdout record tags = %s, want %s", got, tc.wantRecs)
				}
			}
			h.remove(id)
		})
	}
}

func equalLines(a, b []line) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func recordTags(t *testing.T, path string, s crilog.Stream) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := crilog.NewReader(f)
	var tags strings.Builder
	for {
		e, err := r.Next()
		if err != nil {
			break
		}
		if e.Stream != s {
			continue
		}
		if e.Partial {
			tags.WriteByte('P')
		} else {
			tags.WriteByte('F')
		}
	}
	return tags.String()
}

func TestKill(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		o        shimtest.BundleOptions
		signals  []syscall.Signal
		wantCode int32
	}{
		{"SIGTERM kills sleep", []string{"sleep", "1000"}, shimtest.BundleOptions{NoPidNS: true}, []syscall.Signal{syscall.SIGTERM}, 143},
		{"ignored SIGTERM needs SIGKILL", []string{"sh", "-c", "trap '' TERM; while :; do sleep 1; done"}, shimtest.BundleOptions{}, []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}, 137},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "/usr/sbin/runc", 0)
			id, _ := h.run(tc.args, tc.o)
			for i, sig := range tc.signals {
				if err := h.c.Kill(h.ctx(), id, sig, false); err != nil {
					t.Fatalf("Kill %v: %v", sig, err)
				}
				if i < len(tc.signals)-1 {
					ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
					_, err := h.c.Wait(ctx, id)
					cancel()
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("after %v: Wait = %v, want still running", sig, err)
					}
				}
			}
			st := h.wait(id)
			if st.ExitCode != tc.wantCode {
				t.Errorf("exit code = %d, want %d", st.ExitCode, tc.wantCode)
			}
			if err := h.c.Kill(h.ctx(), id, syscall.SIGKILL, true); err != nil {
				t.Errorf("Kill of exited container: %v", err)
			}
			h.remove(id)
		})
	}
}

// TestDeleteCreated deletes containers that were created and never
// started: the init waiting for its start is killed and reaped, and the
// runtime forgets the container.
func TestDeleteCreated(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	var ids []string
	var pids []int
	for range 3 {
		id := shimtest.ID()
		bundle := shimtest.Bundle(t, id, []string{"sleep", "1000"}, shimtest.BundleOptions{})
		st, err := h.c.Create(h.ctx(), shim.CreateRequest{ID: id, Bundle: bundle, LogPath: filepath.Join(h.logDir, id+".log")})
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		ids, pids = append(ids, id), append(pids, st.Pid)
	}
	for i, id := range ids {
		h.remove(id)
		if err := syscall.Kill(pids[i], 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("init %d of deleted container %s: kill 0 = %v, want ESRCH", pids[i], id, err)
		}
		if out, err := exec.Command("/usr/sbin/runc", "--root", h.opts.RuntimeRoot, "state", id).CombinedOutput(); err == nil {
			t.Errorf("runc still knows container %s: %s", id, out)
		}
	}
}

func TestReopenLog(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	const n = 60
	id, logPath := h.run([]string{"sh", "-c", fmt.Sprintf("for i in $(seq 1 %d); do echo line$i; sleep 0.02; done", n)}, shimtest.BundleOptions{})
	time.Sleep(300 * time.Millisecond)
	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	if err := h.c.ReopenLog(h.ctx(), id); err != nil {
		t.Fatalf("ReopenLog: %v", err)
	}
	h.wait(id)
	old, cur := readLines(t, rotated), readLines(t, logPath)
	if len(old) == 0 || len(cur) == 0 {
		t.Errorf("rotation did not split the output: %d old, %d new lines", len(old), len(cur))
	}
	all := append(old, cur...)
	if len(all) != n {
		t.Fatalf("got %d lines across rotation, want %d", len(all), n)
	}
	for i, l := range all {
		if want := fmt.Sprintf("line%d", i+1); string(l.Content) != want || !l.Complete {
			t.Errorf("line %d = %q, want %q", i, l.Content, want)
		}
	}
	h.remove(id)
}

func processJSON(t *testing.T, args ...string) []byte {
	b, err := json.Marshal(specs.Process{Args: args, Env: []string{"PATH=/bin"}, Cwd: "/"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExecSync(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	id, _ := h.run([]string{"sleep", "1000"}, shimtest.BundleOptions{})
	tests := []struct {
		name       string
		args       []string
		timeout    time.Duration
		maxOutput  int
		wantOut    string
		wantErr    string
		wantCode   int32
		wantTimed  bool
		wantTrunc  bool
		wantOutLen int
	}{
		{name: "output and exit code", args: []string{"sh", "-c", "echo hi; echo err >&2; exit 7"}, wantOut: "hi\n", wantErr: "err\n", wantCode: 7, wantOutLen: -1},
		{name: "timeout kills", args: []string{"sleep", "10"}, timeout: 500 * time.Millisecond, wantTimed: true, wantCode: 137, wantOutLen: -1},
		{name: "output cap", args: []string{"head", "-c", "10000000", "/dev/zero"}, maxOutput: 1 << 20, wantTrunc: true, wantOutLen: 1 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			res, err := h.c.ExecSync(h.ctx(), shim.ExecSyncRequest{ID: id, Process: processJSON(t, tc.args...), Timeout: tc.timeout, MaxOutput: tc.maxOutput})
			if err != nil {
				t.Fatalf("ExecSync: %v", err)
			}
			if tc.wantOutLen >= 0 {
				if len(res.Stdout) != tc.wantOutLen {
					t.Errorf("stdout length = %d, want %d", len(res.Stdout), tc.wantOutLen)
				}
			} else if string(res.Stdout) != tc.wantOut || string(res.Stderr) != tc.wantErr {
				t.Errorf("output = %q / %q, want %q / %q", res.Stdout, res.Stderr, tc.wantOut, tc.wantErr)
			}
			if res.ExitCode != tc.wantCode || res.TimedOut != tc.wantTimed || res.Truncated != tc.wantTrunc {
				t.Errorf("result code=%d timedOut=%v truncated=%v, want %d %v %v", res.ExitCode, res.TimedOut, res.Truncated, tc.wantCode, tc.wantTimed, tc.wantTrunc)
			}
			if tc.wantTimed && time.Since(start) > 5*time.Second {
				t.Errorf("timed-out exec took %v", time.Since(start))
			}
		})
	}
	if err := h.c.Kill(h.ctx(), id, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	h.wait(id)
	_, err := h.c.ExecSync(h.ctx(), shim.ExecSyncRequest{ID: id, Process: processJSON(t, "true")})
	if !errors.Is(err, shim.ErrNotRunning) {
		t.Errorf("exec in exited container: %v, want ErrNotRunning", err)
	}
	h.remove(id)
}

func TestCommandNotFound(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	id := shimtest.ID()
	bundle := shimtest.Bundle(t, id, []string{"nope"}, shimtest.BundleOptions{})
	_, cerr := h.c.Create(h.ctx(), shim.CreateRequest{ID: id, Bundle: bundle, LogPath: filepath.Join(h.logDir, id+".log")})
	var serr error
	if cerr == nil {
		_, serr = h.c.Start(h.ctx(), id)
	}
	if cerr == nil && serr == nil {
		t.Fatal("Create and Start succeeded for a missing command")
	}
	st, err := h.c.State(h.ctx(), id)
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	wantReason := shim.ReasonStartError
	if cerr != nil {
		wantReason = shim.ReasonCreateError
	}
	if st.Status != shim.StatusExited || st.ExitCode != 128 || st.Reason != wantReason || !strings.Contains(st.Message, `"nope"`) {
		t.Errorf("state = %+v, want exited 128 %s with runtime message", st, wantReason)
	}
	t.Logf("create err=%v start err=%v message=%q", cerr, serr, st.Message)
	h.remove(id)
}

func TestDaemonRestart(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	id, _ := h.run([]string{"sh", "-c", "sleep 1.5; exit 5"}, shimtest.BundleOptions{})
	shimPid := h.c.Pid()
	h.c.Close() // the daemon goes away

	c, err := shim.Dial(h.ctx(), h.stateDir)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if c.Pid() != shimPid {
		t.Errorf("pid = %d, want %d", c.Pid(), shimPid)
	}
	list, err := c.List(h.ctx())
	if err != nil || len(list) != 1 || list[0].ID != id || list[0].Status != shim.StatusRunning {
		t.Fatalf("List = %+v, %v; want %s running", list, err, id)
	}
	c.Close()

	time.Sleep(2500 * time.Millisecond) // exits while nobody is connected
	c, err = shim.Dial(h.ctx(), h.stateDir)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	h.c = c
	st, err := c.State(h.ctx(), id)
	if err != nil || st.Status != shim.StatusExited || st.ExitCode != 5 {
		t.Fatalf("State = %+v, %v; want exited 5", st, err)
	}
	b, err := os.ReadFile(filepath.Join(h.stateDir, id, "state.json"))
	if err != nil || !bytes.Contains(b, []byte(`"ExitCode": 5`)) {
		t.Errorf("state.json = %s, %v", b, err)
	}

	// A restarted shim reloads the records.
	if err := syscall.Kill(shimPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := c.List(h.ctx()); !errors.Is(err, shim.ErrShimGone) {
		t.Errorf("List on a dead shim: %v, want ErrShimGone", err)
	}
	c.Close()
	waitGone(t, shimPid)
	if _, err := shim.Dial(h.ctx(), h.stateDir); !errors.Is(err, shim.ErrShimGone) {
		t.Errorf("Dial to a dead shim: %v, want ErrShimGone", err)
	}
	c, err = shim.Spawn(h.ctx(), h.opts)
	if err != nil {
		t.Fatalf("respawn: %v", err)
	}
	h.c = c
	st, err = c.State(h.ctx(), id)
	if err != nil || st.Status != shim.StatusExited || st.ExitCode != 5 {
		t.Fatalf("State after shim restart = %+v, %v; want exited 5", st, err)
	}
	if err := c.Shutdown(h.ctx()); !errors.Is(err, shim.ErrBusy) {
		t.Errorf("Shutdown with a container: %v, want ErrBusy", err)
	}
	h.remove(id)
	if err := c.Shutdown(h.ctx()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 500; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		// A zombie is gone too: this VM's init reaps orphans late.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pid %d did not go away", pid)
}

func TestEvents(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	id, _ := h.run([]string{"sh", "-c", "sleep 0.3"}, shimtest.BundleOptions{})
	var (
		got   []shim.EventType
		after uint64
	)
	for len(got) == 0 || got[len(got)-1] != shim.EventExited {
		evs, err := h.c.Events(h.ctx(), after)
		if err != nil {
			t.Fatalf("Events: %v (got %v)", err, got)
		}
		for _, e := range evs {
			if e.Seq <= after {
				t.Fatalf("event seq %d not after %d", e.Seq, after)
			}
			after = e.Seq
			if e.ID == id {
				got = append(got, e.Type)
			}
		}
	}
	want := []shim.EventType{shim.EventCreated, shim.EventStarted, shim.EventExited}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	h.remove(id)
	evs, err := h.c.Events(h.ctx(), after)
	if err != nil || len(evs) != 1 || evs[0].Type != shim.EventDeleted {
		t.Errorf("after delete: %+v, %v; want one Deleted", evs, err)
	}
}

func TestCrun(t *testing.T) {
	crun, ok := shimtest.HasCrun()
	if !ok {
		t.Skip("crun not installed")
	}
	// crun refuses a host whose cgroup2 mount has a controller next to the
	// v1 hierarchies (this VM). The wrapper hides that mount in a private
	// mount namespace, leaving the host untouched; the shim still drives
	// crun through the common CLI only.
	wrapper := filepath.Join(t.TempDir(), "crun-wrapper")
	script := "#!/bin/sh\nexec unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec " + crun + " \"$@\"' crun \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, wrapper, 0)
	id := shimtest.ID()
	logPath := filepath.Join(h.logDir, id+".log")
	bundle := shimtest.Bundle(t, id, []string{"sh", "-c", "echo from-crun; exit 3"}, shimtest.BundleOptions{})
	if _, err := h.c.Create(h.ctx(), shim.CreateRequest{ID: id, Bundle: bundle, LogPath: logPath}); err != nil {
		if strings.Contains(err.Error(), "hybrid mode not supported") {
			// crun refuses a host whose cgroup2 mount has a controller
			// next to v1 hierarchies; that is the host, not the shim.
			h.remove(id)
			t.Skipf("crun cannot run on this host's cgroup layout: %v", err)
		}
		t.Fatalf("Create: %v", err)
	}
	if _, err := h.c.Start(h.ctx(), id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	st := h.wait(id)
	if st.ExitCode != 3 {
		t.Errorf("exit code = %d, want 3", st.ExitCode)
	}
	if got := streamLines(readLines(t, logPath), crilog.Stdout); len(got) != 1 || got[0].content != "from-crun" {
		t.Errorf("stdout = %+v", got)
	}
	h.remove(id)
}

func TestTerminal(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	id, logPath := h.run([]string{"sh", "-c", "echo on-tty; exit 2"}, shimtest.BundleOptions{Terminal: true})
	st := h.wait(id)
	if st.ExitCode != 2 {
		t.Errorf("exit code = %d, want 2", st.ExitCode)
	}
	got := streamLines(readLines(t, logPath), crilog.Stdout)
	if len(got) != 1 || strings.TrimRight(got[0].content, "\r") != "on-tty" {
		t.Errorf("tty output = %+v", got)
	}
	h.remove(id)
}

// killLeftoverShim makes sure no shim (and none of its children) outlives
// the test, whatever went wrong in the orderly shutdown: a leftover one
// would keep running on CI machines. It says so in the test log.
func killLeftoverShim(t *testing.T, stateDir string) {
	b, err := os.ReadFile(filepath.Join(stateDir, "shim.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return
	}
	// A zombie is gone for our purposes.
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(st), ") Z ") {
		return
	}
	t.Logf("shim %d still runs after the orderly shutdown; killing it and its children", pid)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		// Fields after the command: state, ppid.
		fields := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			_ = syscall.Kill(child, syscall.SIGKILL)
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// TestCreateWithStart: a create with Start runs the process at once
// (`runc run --detach`), as a create and a start would: running in the
// reply, the same events, the output logged, and a failure recorded as a
// start error.
func TestCreateWithStart(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	ctx := h.ctx()
	id := shimtest.ID()
	logPath := filepath.Join(h.logDir, id+".log")
	bundle := shimtest.Bundle(t, id, []string{"sh", "-c", "echo started; sleep 0.3"}, shimtest.BundleOptions{})
	st, err := h.c.Create(ctx, shim.CreateRequest{ID: id, Bundle: bundle, LogPath: logPath, Start: true})
	if err != nil {
		t.Fatalf("Create with Start: %v", err)
	}
	if st.Status != shim.StatusRunning || st.Pid <= 0 || st.StartedAt.IsZero() {
		t.Errorf("reply = %+v, want running with a pid and a start time", st)
	}
	if _, err := h.c.Start(ctx, id); err == nil {
		t.Error("Start of a container started at create succeeded")
	}
	if st := h.wait(id); st.Status != shim.StatusExited || st.ExitCode != 0 || st.Reason != shim.ReasonCompleted {
		t.Errorf("exit = %+v, want exited 0 Completed", st)
	}
	var got []shim.EventType
	evs, err := h.c.Events(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.ID == id {
			got = append(got, e.Type)
		}
	}
	if want := []shim.EventType{shim.EventCreated, shim.EventStarted, shim.EventExited}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if out := streamLines(readLines(t, logPath), crilog.Stdout); len(out) != 1 || out[0].content != "started" {
		t.Errorf("stdout = %+v, want one line %q", out, "started")
	}
	h.remove(id)

	bad := shimtest.ID()
	bundle = shimtest.Bundle(t, bad, []string{"nope"}, shimtest.BundleOptions{})
	if _, err := h.c.Create(ctx, shim.CreateRequest{ID: bad, Bundle: bundle, Start: true}); err == nil {
		t.Fatal("Create with Start succeeded for a missing command")
	}
	st, err = h.c.State(ctx, bad)
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	if st.Status != shim.StatusExited || st.ExitCode != 128 || st.Reason != shim.ReasonStartError || !strings.Contains(st.Message, `"nope"`) {
		t.Errorf("state = %+v, want exited 128 StartError with the runtime's message", st)
	}
	h.remove(bad)
}

// TestStateDirRemovedStopsShim: a shim whose state dir is removed (a
// Shutdown the daemon could not send) exits, and holds no inotify
// instance on the way (on cgroup v1 none at all: the kernel allows 128
// per user, and a full node's shims used them all up).
func TestStateDirRemovedStopsShim(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	pid := h.c.Pid()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	inotify := 0
	for _, fd := range fds {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && l == "anon_inode:inotify" {
			inotify++
		}
	}
	if want := map[bool]int{false: 0, true: 1}[cgroups.Unified()]; inotify != want {
		t.Errorf("the shim holds %d inotify instances, want %d", inotify, want)
	}
	if err := os.RemoveAll(h.stateDir); err != nil {
		t.Fatal(err)
	}
	// The shim is our child (Spawn): its exit is seen by waiting for it.
	deadline := time.Now().Add(time.Minute)
	for syscall.Kill(pid, 0) == nil {
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shim %d still runs a minute after its state dir was removed", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStateDirRemovedDeletesContainers: a shim whose state dir is removed
// deletes its containers before it exits, though their runtime logs went
// with the dir (runc given a --log it cannot open deletes nothing).
func TestStateDirRemovedDeletesContainers(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	id, _ := h.run([]string{"sleep", "1000"}, shimtest.BundleOptions{})
	st, err := h.c.State(h.ctx(), id)
	if err != nil {
		t.Fatal(err)
	}
	shimPid := h.c.Pid()
	// The shim is our child (Spawn): once it exited it is a zombie until
	// reaped, which kill(0) does not tell apart.
	exited := func() bool {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", shimPid))
		return err != nil || strings.Contains(string(st), ") Z ")
	}
	if err := os.RemoveAll(h.stateDir); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for !exited() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !exited() {
		t.Fatalf("shim %d still runs a minute after its state dir was removed", shimPid)
	}
	if err := syscall.Kill(st.Pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("container init %d still runs after its shim went", st.Pid)
	}
	if out, err := exec.Command("/usr/sbin/runc", "--root", h.opts.RuntimeRoot, "state", id).CombinedOutput(); err == nil {
		t.Errorf("runc still knows container %s: %s", id, out)
	}
}

// TestShimProcessName: ps, top and pgrep show the shim by its binary's
// name (comm is cut to 15 bytes), not by the path it was started from.
func TestShimProcessName(t *testing.T) {
	h := newHarness(t, "/usr/sbin/runc", 0)
	proc := fmt.Sprintf("/proc/%d/", h.c.Pid())
	comm, err := os.ReadFile(proc + "comm")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(comm)), shim.BinaryName[:15]; got != want {
		t.Errorf("comm %q, want %q", got, want)
	}
	cmdline, err := os.ReadFile(proc + "cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if arg0, _, _ := strings.Cut(string(cmdline), "\x00"); arg0 != shim.BinaryName {
		t.Errorf("argv[0] %q, want %q", arg0, shim.BinaryName)
	}
}
