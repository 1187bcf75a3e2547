//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim/crilog"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// Tests of invariant 2 of docs/DESIGN.md: containers outlive the daemon. The
// daemon is stopped (SIGTERM) or killed (SIGKILL) while pods run and
// started again on the same state.

// counterScript prints "tick <n>" every 100ms until SIGTERM (as pid 1 of
// its PID namespace, sh would ignore a signal it has no trap for).
const counterScript = `trap "exit 143" TERM; i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.1; done`

// verbosePid is the pid in ContainerStatus's verbose info.
func verbosePid(t *testing.T, resp *runtimeapi.ContainerStatusResponse) int {
	t.Helper()
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(resp.GetInfo()["info"]), &info); err != nil || info.Pid <= 0 {
		t.Fatalf("ContainerStatus(%s) verbose info has no pid: %v %q", resp.GetStatus().GetId(), err, resp.GetInfo()["info"])
	}
	return info.Pid
}

// runningPid waits until id runs and returns its pid.
func runningPid(t *testing.T, d *framework.Daemon, id string) int {
	t.Helper()
	d.WaitContainerState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	return verbosePid(t, d.ContainerStatus(t, id))
}

var tickRE = regexp.MustCompile(`^tick (\d+)$`)

// tick is one line of counterScript in a CRI log.
type tick struct {
	n  int
	at time.Time
}

// ticks reads the counter's CRI log.
func ticks(t *testing.T, path string) []tick {
	t.Helper()
	var out []tick
	for _, l := range framework.ReadCRILines(t, path) {
		if l.Stream != crilog.Stdout || !l.Complete {
			continue
		}
		m := tickRE.FindSubmatch(l.Content)
		if m == nil {
			t.Fatalf("unexpected line in %s: %q", path, l.Content)
		}
		n, _ := strconv.Atoi(string(m[1]))
		out = append(out, tick{n, l.Timestamp})
	}
	return out
}

// waitTicks polls the counter's log until it holds more than n ticks and
// returns them.
func waitTicks(t *testing.T, path string, n int, timeout time.Duration) []tick {
	t.Helper()
	var got []tick
	framework.Eventually(t, timeout, func() (bool, string) {
		got = ticks(t, path)
		return len(got) > n, fmt.Sprintf("%s has %d ticks, want more than %d", path, len(got), n)
	})
	return got
}

// checkContinuous asserts that the ticks count up from 0 without a gap, a
// repeat or a restart: no output was lost. Whether it kept flowing while
// the daemon was down is told by the ticks' timestamps falling in that
// window, not by their spacing: an emulated guest at load stalls the
// counter itself for seconds now and then (9 s seen), which no bound on
// the gap between ticks tells apart from a blocked log.
func checkContinuous(t *testing.T, ts []tick) {
	t.Helper()
	for i, tk := range ts {
		if tk.n != i {
			t.Fatalf("log line %d is tick %d, want tick %d (the counter restarted or lost output)", i, tk.n, i)
		}
	}
}

// listPods returns the pods by ID.
func listPods(t *testing.T, d *framework.Daemon, filter *runtimeapi.PodSandboxFilter) map[string]*runtimeapi.PodSandbox {
	t.Helper()
	pods, err := d.Runtime().ListPodSandbox(testCtx(t), filter)
	if err != nil {
		t.Fatalf("ListPodSandbox: %v", err)
	}
	out := map[string]*runtimeapi.PodSandbox{}
	for _, p := range pods {
		out[p.Id] = p
	}
	return out
}

// listContainers returns the containers by ID.
func listContainers(t *testing.T, d *framework.Daemon, filter *runtimeapi.ContainerFilter) map[string]*runtimeapi.Container {
	t.Helper()
	ctrs, err := d.Runtime().ListContainers(testCtx(t), filter)
	if err != nil {
		t.Fatalf("ListContainers: %v", err)
	}
	out := map[string]*runtimeapi.Container{}
	for _, c := range ctrs {
		out[c.Id] = c
	}
	return out
}

// removeAllPods stops and removes every pod the daemon lists, as kubelet
// does for pods it no longer wants.
func removeAllPods(t *testing.T, d *framework.Daemon) {
	t.Helper()
	for id := range listPods(t, d, nil) {
		if err := d.Runtime().StopPodSandbox(testCtx(t), id); err != nil {
			t.Errorf("StopPodSandbox(%s): %v", id, err)
		}
		if err := d.Runtime().RemovePodSandbox(testCtx(t), id); err != nil {
			t.Errorf("RemovePodSandbox(%s): %v", id, err)
		}
	}
	if left := listPods(t, d, nil); len(left) != 0 {
		t.Errorf("pods listed after removing all: %v", left)
	}
	if left := listContainers(t, d, nil); len(left) != 0 {
		t.Errorf("containers listed after removing all pods: %v", left)
	}
}

// killPid sends SIGKILL to pid.
func killPid(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	return nil
}

// waitPidsGone fails the test for each pid still alive after timeout.
func waitPidsGone(t *testing.T, timeout time.Duration, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		if !framework.WaitProcessGone(pid, timeout) {
			t.Errorf("process %d still runs", pid)
		}
	}
}

// TestRestartKeepsPodsRunning stops or kills the daemon with two pods and
// containers in every state, lets one container exit while the daemon is
// down, starts the daemon again and checks that everything is reported as
// it is, that the running container is the same process and that its log
// went on, and that the daemon can stop and remove all of it afterwards
// without leaking.
func TestRestartKeepsPodsRunning(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(d *framework.Daemon, t testing.TB)
	}{
		{"SIGKILL", (*framework.Daemon).Kill},
		{"SIGTERM", (*framework.Daemon).Stop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := framework.NewPodEnv(t)
			d := env.Daemon
			env.PushImage(t, "busybox")
			before := d.Leaks(t)

			podA := framework.PodConfig("restart-a")
			a := d.RunPod(t, podA)
			podB := framework.PodConfig("restart-b")
			b := d.RunPod(t, podB)

			counterCfg := framework.Shell("counter", "busybox", counterScript)
			counter := d.CreateStarted(t, a, counterCfg, podA)
			counterLog := framework.LogPath(podA, counterCfg)
			counterPid := runningPid(t, d, counter)
			counterStart := framework.ProcessStartTime(counterPid)
			counterStarted := d.ContainerStatus(t, counter).GetStatus().GetStartedAt()

			created := d.CreateContainer(t, a, framework.ContainerConfig("created", "busybox", "sleep", "1000"), podA)
			done := d.CreateStarted(t, b, framework.Shell("done", "busybox", "exit 3"), podB)
			d.WaitExited(t, done, 30*time.Second)
			sleeper := d.CreateStarted(t, b, framework.ContainerConfig("sleeper", "busybox", "sleep", "1000"), podB)
			sleeperPid := runningPid(t, d, sleeper)

			// Exits 2s after its start: while the daemon is down.
			exiter := d.CreateStarted(t, b, framework.Shell("exiter", "busybox", "sleep 2; exit 7"), podB)
			exiterPid := runningPid(t, d, exiter)
			waitTicks(t, counterLog, 5, 30*time.Second)

			downAt := time.Now()
			tc.stop(d, t)
			if time.Since(downAt) > 2*time.Second {
				t.Logf("the daemon took %v to go down; the exit of the exiter may have been seen by it", time.Since(downAt))
			}

			// While the daemon is down: the counter runs and writes, the
			// exiter exits and its shim records the exit.
			if !framework.ProcessAlive(counterPid) || !framework.ProcessAlive(sleeperPid) {
				t.Fatalf("containers died with the daemon (%s): counter pid %d alive %v, sleeper pid %d alive %v",
					tc.name, counterPid, framework.ProcessAlive(counterPid), sleeperPid, framework.ProcessAlive(sleeperPid))
			}
			n := len(ticks(t, counterLog))
			waitTicks(t, counterLog, n+5, 10*time.Second)
			if !framework.WaitProcessGone(exiterPid, 10*time.Second) {
				t.Fatalf("the exiter (pid %d) did not exit", exiterPid)
			}
			framework.Eventually(t, 10*time.Second, func() (bool, string) {
				st, ok := d.ShimRecord(b, exiter)
				return ok && st.Status == "exited", fmt.Sprintf("shim record of the exiter: %+v (found %v)", st, ok)
			})
			exitedBefore := time.Now()

			d.Start(t)
			upAt := time.Now()
			// However long the daemon was down, ticks after its start.
			atUp := len(ticks(t, counterLog))

			t.Run("pods listed", func(t *testing.T) {
				pods := listPods(t, d, nil)
				if len(pods) != 2 || pods[a] == nil || pods[b] == nil {
					t.Fatalf("pods after restart: %v, want %s and %s", pods, a, b)
				}
				for _, p := range pods {
					if p.State != runtimeapi.PodSandboxState_SANDBOX_READY {
						t.Errorf("pod %s (%s) is %s, want READY", p.Metadata.Name, p.Id, p.State)
					}
				}
			})
			t.Run("containers listed", func(t *testing.T) {
				want := map[string]runtimeapi.ContainerState{
					counter: runtimeapi.ContainerState_CONTAINER_RUNNING,
					created: runtimeapi.ContainerState_CONTAINER_CREATED,
					done:    runtimeapi.ContainerState_CONTAINER_EXITED,
					sleeper: runtimeapi.ContainerState_CONTAINER_RUNNING,
					exiter:  runtimeapi.ContainerState_CONTAINER_EXITED,
				}
				got := listContainers(t, d, nil)
				if len(got) != len(want) {
					t.Errorf("%d containers listed, want %d: %v", len(got), len(want), got)
				}
				for id, state := range want {
					c := got[id]
					if c == nil {
						t.Errorf("container %s not listed", id)
						continue
					}
					if c.State != state {
						t.Errorf("container %s is %s, want %s", c.Metadata.Name, c.State, state)
					}
				}
			})
			t.Run("running container is the same process", func(t *testing.T) {
				resp := d.ContainerStatus(t, counter)
				if pid := verbosePid(t, resp); pid != counterPid || framework.ProcessStartTime(pid) != counterStart {
					t.Errorf("counter pid after restart = %d, want %d (the same process)", pid, counterPid)
				}
				if got := resp.GetStatus().GetStartedAt(); got != counterStarted {
					t.Errorf("counter StartedAt = %d after restart, was %d", got, counterStarted)
				}
			})
			t.Run("exit while down", func(t *testing.T) {
				st := d.ContainerStatus(t, exiter).GetStatus()
				if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 7 {
					t.Fatalf("exiter: state %s exit code %d (reason %q, message %q), want EXITED with 7",
						st.State, st.ExitCode, st.Reason, st.Message)
				}
				finished := time.Unix(0, st.FinishedAt)
				if finished.Before(downAt) || finished.After(exitedBefore) {
					t.Errorf("exiter FinishedAt = %s, want between the daemon going down (%s) and the restart (%s)",
						finished.Format(time.RFC3339Nano), downAt.Format(time.RFC3339Nano), exitedBefore.Format(time.RFC3339Nano))
				}
				// It slept 2 s; the bound above keeps the recovery's own
				// time out of FinishedAt. The upper bound only catches a
				// start or finish taken from the wrong event, and scales
				// with the machine (an emulated guest at load took 4.5 s).
				if d := finished.Sub(time.Unix(0, st.StartedAt)); d < 2*time.Second || d > framework.Slow(4*time.Second) {
					t.Errorf("exiter ran %v (StartedAt %d, FinishedAt %d), want about 2s", d, st.StartedAt, st.FinishedAt)
				}
				if st.Reason != "Error" {
					t.Errorf("exiter reason %q, want Error", st.Reason)
				}
				st = d.ContainerStatus(t, done).GetStatus()
				if st.ExitCode != 3 || st.Reason != "Error" {
					t.Errorf("done: exit code %d reason %q, want 3 and Error", st.ExitCode, st.Reason)
				}
			})
			t.Run("log uninterrupted", func(t *testing.T) {
				ts := waitTicks(t, counterLog, atUp+5, 30*time.Second)
				checkContinuous(t, ts)
				var down, after int
				for _, tk := range ts {
					switch {
					case tk.at.After(downAt) && tk.at.Before(upAt):
						down++
					case tk.at.After(upAt):
						after++
					}
				}
				if down == 0 || after == 0 {
					t.Errorf("%d ticks while the daemon was down, %d after its start; want some of both", down, after)
				}
			})
			t.Run("stop and remove work", func(t *testing.T) {
				if err := d.Runtime().StopContainer(testCtx(t), counter, 10); err != nil {
					t.Fatalf("StopContainer(counter) after restart: %v", err)
				}
				st := d.ContainerStatus(t, counter).GetStatus()
				if st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
					t.Errorf("counter after StopContainer: %s", st.State)
				}
				waitPidsGone(t, 10*time.Second, counterPid)
				if err := d.Runtime().StartContainer(testCtx(t), created); err != nil {
					t.Fatalf("StartContainer of the container created before the restart: %v", err)
				}
				d.WaitContainerState(t, created, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
				createdPid := verbosePid(t, d.ContainerStatus(t, created))
				if err := d.Runtime().RemoveContainer(testCtx(t), exiter); err != nil {
					t.Errorf("RemoveContainer(exiter): %v", err)
				}
				removeAllPods(t, d)
				waitPidsGone(t, 10*time.Second, sleeperPid, createdPid)
				d.CheckNoLeaks(t, before, 15*time.Second)
			})
		})
	}
}

// TestRestartTwiceInARow restarts a daemon that has just recovered: the
// recovery of a recovered state changes nothing.
func TestRestartTwiceInARow(t *testing.T) {
	env := framework.NewPodEnv(t)
	d := env.Daemon
	env.PushImage(t, "busybox")
	before := d.Leaks(t)
	podCfg := framework.PodConfig("twice")
	pod := d.RunPod(t, podCfg)
	ctr := d.CreateStarted(t, pod, framework.ContainerConfig("sleeper", "busybox", "sleep", "1000"), podCfg)
	pid := runningPid(t, d, ctr)

	d.Kill(t)
	d.Start(t)
	d.Kill(t)
	d.Start(t)
	d.Restart(t)

	if p := listPods(t, d, nil)[pod]; p == nil || p.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod after three restarts: %v", p)
	}
	if got := runningPid(t, d, ctr); got != pid {
		t.Errorf("container pid %d after three restarts, want %d", got, pid)
	}
	if n := len(d.ShimPids()[pod]); n != 1 {
		t.Errorf("%d shims serve the pod after three restarts, want 1", n)
	}
	removeAllPods(t, d)
	waitPidsGone(t, 10*time.Second, pid)
	d.CheckNoLeaks(t, before, 15*time.Second)
}

// TestShimDeath kills a pod's shim while the daemon runs: the daemon
// notices without a restart, the pod is not ready, its containers are
// exited with a reason naming the shim, none of their processes runs on
// unsupervised, and the pod can be removed without leaking.
func TestShimDeath(t *testing.T) {
	t.Run("daemon running", func(t *testing.T) { testShimDeath(t, false) })
	// The shim dies while the daemon is down: the restart finds it gone.
	t.Run("daemon down", func(t *testing.T) { testShimDeath(t, true) })
}

func testShimDeath(t *testing.T, daemonDown bool) {
	env := framework.NewPodEnv(t)
	d := env.Daemon
	env.PushImage(t, "busybox")
	before := d.Leaks(t)

	podCfg := framework.PodConfig("shim-death")
	pod := d.RunPod(t, podCfg)
	running := d.CreateStarted(t, pod, framework.Shell("counter", "busybox", counterScript), podCfg)
	runningPidBefore := runningPid(t, d, running)
	created := d.CreateContainer(t, pod, framework.ContainerConfig("created", "busybox", "sleep", "1000"), podCfg)
	// The runtime creates a container when it starts: a created one has
	// no process for the shim's death to leave behind.
	if pid, ok := verboseInfo(t, d.ContainerStatus(t, created).GetInfo())["pid"].(float64); ok && pid != 0 {
		t.Errorf("created container has pid %v before its start, want none", pid)
	}
	sandboxPid := infoPid(t, d.PodStatus(t, pod).GetInfo())

	shimPid := d.ShimPid(t, pod)
	if daemonDown {
		d.Kill(t)
	}
	if err := killPid(shimPid); err != nil {
		t.Fatal(err)
	}
	if !framework.WaitProcessGone(shimPid, 10*time.Second) {
		t.Fatalf("shim %d survived SIGKILL", shimPid)
	}
	if daemonDown {
		d.Start(t)
	}

	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		p := listPods(t, d, nil)[pod]
		return p != nil && p.State == runtimeapi.PodSandboxState_SANDBOX_NOTREADY, fmt.Sprintf("pod after its shim died: %v", p)
	})
	for _, id := range []string{running, created} {
		st := d.WaitExited(t, id, 30*time.Second)
		msg := strings.ToLower(st.Reason + " " + st.Message)
		if !strings.Contains(msg, "shim") {
			t.Errorf("container %s: reason %q message %q, want them to say the shim died", st.Metadata.GetName(), st.Reason, st.Message)
		}
		if st.FinishedAt == 0 {
			t.Errorf("container %s: FinishedAt not set", st.Metadata.GetName())
		}
	}
	// Reported exited means killed: nothing of the pod may run on
	// without a shim to reap it, record its exit or write its log.
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range []struct {
		what string
		pid  int
	}{
		{"the running container", runningPidBefore},
		{"the sandbox process", sandboxPid},
	} {
		if p.pid <= 0 {
			t.Fatalf("no pid of %s to check", p.what)
		}
		if !framework.WaitProcessGone(p.pid, time.Until(deadline)) {
			t.Errorf("%s (pid %d) still runs 10s after its shim died and it was reported exited", p.what, p.pid)
		}
	}
	// The daemon must refuse to create in a pod without a shim rather
	// than hang or half-create.
	if _, err := d.Runtime().CreateContainer(testCtx(t), pod, framework.ContainerConfig("late", "busybox", "true"), podCfg); err == nil {
		t.Error("CreateContainer in a pod whose shim died succeeded")
	}
	if err := d.Runtime().StopPodSandbox(testCtx(t), pod); err != nil {
		t.Errorf("StopPodSandbox: %v", err)
	}
	if err := d.Runtime().RemovePodSandbox(testCtx(t), pod); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if left := listContainers(t, d, nil); len(left) != 0 {
		t.Errorf("containers listed after the pod's removal: %v", left)
	}
	d.CheckNoLeaks(t, before, 15*time.Second)

	// A restart finds nothing to resurrect.
	d.Restart(t)
	if pods := listPods(t, d, nil); len(pods) != 0 {
		t.Errorf("pods after restart: %v", pods)
	}
	d.CheckNoLeaks(t, before, 15*time.Second)
}

// TestRetryAfterClientDeadline sends RunPodSandbox and CreateContainer
// with a deadline far shorter than the work, then again with a normal one,
// as kubelet retries a request that timed out: the retry gets the object
// the first request made (or makes it), and there is exactly one.
func TestRetryAfterClientDeadline(t *testing.T) {
	env := framework.NewPodEnv(t)
	d := env.Daemon
	env.PushImage(t, "busybox")
	before := d.Leaks(t)
	rc := d.RuntimeClient()

	// podsNamed lists the pods of one metadata name.
	podsNamed := func(name string) map[string]*runtimeapi.PodSandbox {
		return listPods(t, d, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"e2e-pod": name}})
	}
	ctrsNamed := func(pod, name string) map[string]*runtimeapi.Container {
		return listContainers(t, d, &runtimeapi.ContainerFilter{PodSandboxId: pod, LabelSelector: map[string]string{"e2e-container": name}})
	}
	// tiny calls op with a deadline of timeout and reports whether it
	// timed out.
	tiny := func(t *testing.T, timeout time.Duration, op func(ctx context.Context) error) bool {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		err := op(ctx)
		if err != nil && !framework.IsCode(err, codes.DeadlineExceeded) {
			t.Fatalf("request with a %v deadline: %v, want DeadlineExceeded (or success)", timeout, err)
		}
		return err != nil
	}

	type podCase struct {
		cfg *runtimeapi.PodSandboxConfig
		id  string
	}
	var pods []podCase
	parent := t
	t.Run("RunPodSandbox", func(t *testing.T) {
		timedOut := 0
		for i, timeout := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond, 5 * time.Millisecond} {
			cfg := framework.PodConfig(fmt.Sprintf("retry-pod-%d", i))
			parent.Cleanup(func() { _ = removeLogDir(cfg) })
			req := &runtimeapi.RunPodSandboxRequest{Config: cfg}
			if tiny(t, timeout, func(ctx context.Context) error { _, err := rc.RunPodSandbox(ctx, req); return err }) {
				timedOut++
			}
			resp, err := rc.RunPodSandbox(testCtx(t), req)
			if err != nil {
				t.Fatalf("retry of RunPodSandbox (first one with a %v deadline): %v", timeout, err)
			}
			// The pods outlive this subtest: the CreateContainer ones use them.
			parent.Cleanup(func() { d.RemovePodAtCleanup(parent, resp.PodSandboxId) })
			got := podsNamed(cfg.Metadata.Name)
			if len(got) != 1 || got[resp.PodSandboxId] == nil {
				t.Errorf("deadline %v: retry returned %s; pods of that name: %v, want exactly that one", timeout, resp.PodSandboxId, got)
			}
			pods = append(pods, podCase{cfg, resp.PodSandboxId})
		}
		if timedOut == 0 {
			t.Error("no request with a 1-5ms deadline timed out: the test proved nothing")
		}
	})
	t.Run("RunPodSandbox retried after the abandoned creation finished", func(t *testing.T) {
		cfg := framework.PodConfig("retry-pod-late")
		t.Cleanup(func() { _ = removeLogDir(cfg) })
		req := &runtimeapi.RunPodSandboxRequest{Config: cfg}
		// 20ms: the request reaches the daemon, the work (~80ms) does not
		// finish in time.
		if !tiny(t, 20*time.Millisecond, func(ctx context.Context) error { _, err := rc.RunPodSandbox(ctx, req); return err }) {
			t.Skip("RunPodSandbox finished within 20ms")
		}
		var first string
		framework.Eventually(t, 30*time.Second, func() (bool, string) {
			for id := range podsNamed(cfg.Metadata.Name) {
				first = id
			}
			return first != "", "the creation abandoned by its caller never finished"
		})
		t.Cleanup(func() { d.RemovePodAtCleanup(t, first) })
		resp, err := rc.RunPodSandbox(testCtx(t), req)
		if err != nil {
			t.Fatalf("retry of RunPodSandbox: %v", err)
		}
		if resp.PodSandboxId != first {
			t.Errorf("retry returned %s, want the pod the timed-out request made, %s", resp.PodSandboxId, first)
		}
		if got := podsNamed(cfg.Metadata.Name); len(got) != 1 {
			t.Errorf("pods of the name after the retry: %v, want one", got)
		}
	})
	t.Run("CreateContainer", func(t *testing.T) {
		if len(pods) == 0 {
			t.Skip("no pod")
		}
		pod := pods[0]
		timedOut := 0
		for i, timeout := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond, 5 * time.Millisecond} {
			cfg := framework.ContainerConfig(fmt.Sprintf("retry-ctr-%d", i), "busybox", "sleep", "1000")
			req := &runtimeapi.CreateContainerRequest{PodSandboxId: pod.id, Config: cfg, SandboxConfig: pod.cfg}
			if tiny(t, timeout, func(ctx context.Context) error { _, err := rc.CreateContainer(ctx, req); return err }) {
				timedOut++
			}
			resp, err := rc.CreateContainer(testCtx(t), req)
			if err != nil {
				t.Fatalf("retry of CreateContainer (first one with a %v deadline): %v", timeout, err)
			}
			got := ctrsNamed(pod.id, cfg.Metadata.Name)
			if len(got) != 1 || got[resp.ContainerId] == nil {
				t.Errorf("deadline %v: retry returned %s; containers of that name: %v, want exactly that one", timeout, resp.ContainerId, got)
			}
			// The container the retry returned is usable.
			d.StartContainer(t, resp.ContainerId)
			d.WaitContainerState(t, resp.ContainerId, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
		}
		if timedOut == 0 {
			t.Error("no request with a 1-5ms deadline timed out: the test proved nothing")
		}
	})
	t.Run("CreateContainer retried after the abandoned creation finished", func(t *testing.T) {
		if len(pods) == 0 {
			t.Skip("no pod")
		}
		pod := pods[0]
		cfg := framework.ContainerConfig("retry-ctr-late", "busybox", "sleep", "1000")
		req := &runtimeapi.CreateContainerRequest{PodSandboxId: pod.id, Config: cfg, SandboxConfig: pod.cfg}
		if !tiny(t, 10*time.Millisecond, func(ctx context.Context) error { _, err := rc.CreateContainer(ctx, req); return err }) {
			t.Skip("CreateContainer finished within 10ms")
		}
		var first string
		framework.Eventually(t, 30*time.Second, func() (bool, string) {
			for id := range ctrsNamed(pod.id, cfg.Metadata.Name) {
				first = id
			}
			return first != "", "the creation abandoned by its caller never finished"
		})
		resp, err := rc.CreateContainer(testCtx(t), req)
		if err != nil {
			t.Fatalf("retry of CreateContainer: %v", err)
		}
		if resp.ContainerId != first {
			t.Errorf("retry returned %s, want the container the timed-out request made, %s", resp.ContainerId, first)
		}
		if got := ctrsNamed(pod.id, cfg.Metadata.Name); len(got) != 1 {
			t.Errorf("containers of the name after the retry: %v, want one", got)
		}
	})
	t.Run("still one of each", func(t *testing.T) {
		// By now any creation started in the background by a timed-out
		// request has long finished: still exactly one pod per name.
		for _, p := range pods {
			if got := podsNamed(p.cfg.Metadata.Name); len(got) != 1 {
				t.Errorf("pods named %s: %v, want one", p.cfg.Metadata.Name, got)
			}
		}
		dirs, _ := os.ReadDir(filepath.Join(d.State, "pods"))
		if n, want := len(dirs), len(listPods(t, d, nil)); n != want {
			t.Errorf("%d pod directories for %d pods", n, want)
		}
	})
	removeAllPods(t, d)
	d.CheckNoLeaks(t, before, 20*time.Second)
}

// TestDuplicateNames runs a pod and creates a container twice with the
// same metadata, before and after a restart of the daemon: the second is
// AlreadyExists naming the first.
func TestDuplicateNames(t *testing.T) {
	env := framework.NewPodEnv(t)
	d := env.Daemon
	env.PushImage(t, "busybox")
	before := d.Leaks(t)

	podCfg := framework.PodConfig("dup")
	pod := d.RunPod(t, podCfg)
	ctrCfg := framework.ContainerConfig("c", "busybox", "sleep", "1000")
	ctr := d.CreateContainer(t, pod, ctrCfg, podCfg)

	check := func(t *testing.T) {
		rc := d.RuntimeClient()
		_, err := rc.RunPodSandbox(testCtx(t), &runtimeapi.RunPodSandboxRequest{Config: podCfg})
		if !framework.IsCode(err, codes.AlreadyExists) || !strings.Contains(err.Error(), pod) {
			t.Errorf("second RunPodSandbox: %v, want AlreadyExists naming %s", err, pod)
		}
		_, err = rc.CreateContainer(testCtx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: ctrCfg, SandboxConfig: podCfg})
		if !framework.IsCode(err, codes.AlreadyExists) || !strings.Contains(err.Error(), ctr) {
			t.Errorf("second CreateContainer: %v, want AlreadyExists naming %s", err, ctr)
		}
		if got := listPods(t, d, nil); len(got) != 1 {
			t.Errorf("pods: %v, want one", got)
		}
		if got := listContainers(t, d, nil); len(got) != 1 {
			t.Errorf("containers: %v, want one", got)
		}
	}
	t.Run("running daemon", check)
	d.Kill(t)
	d.Start(t)
	t.Run("after SIGKILL and start", check)
	t.Run("new attempt is a new pod", func(t *testing.T) {
		// kubelet's next attempt differs in metadata.attempt only.
		next := proto.Clone(podCfg).(*runtimeapi.PodSandboxConfig)
		next.Metadata.Attempt++
		id := d.RunPod(t, next)
		if id == pod {
			t.Errorf("attempt %d got the ID of attempt %d", next.Metadata.Attempt, podCfg.Metadata.Attempt)
		}
	})
	removeAllPods(t, d)
	d.CheckNoLeaks(t, before, 20*time.Second)
}
