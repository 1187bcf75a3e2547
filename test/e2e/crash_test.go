//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim/crilog"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// Tests of invariant 1 of docs/DESIGN.md: after kill -9 of the daemon at any
// point, the next start reconciles, and once kubelet removes everything
// nothing is left: no mount, netns pin, cgroup, shim, runc state, pod
// directory or snapshot.
//
// The daemon has no fault-injection hook, so "during" an RPC is reached
// by sending it and killing the daemon after a random delay spread over
// the RPC's measured duration, many times; whatever point each kill hits,
// the invariant must hold. Each test logs which points it observed.

// crashIterations is how many kills each crash test makes.
const crashIterations = 12

// killDuring sends op on a connection of its own and SIGKILLs the daemon
// after delay (at once if op returned first). It returns op's error and
// whether op had returned before the kill.
func killDuring(t *testing.T, d *framework.Daemon, delay time.Duration, op func(ctx context.Context, rc runtimeapi.RuntimeServiceClient) error) (opErr error, before bool) {
	t.Helper()
	rc := d.RuntimeClient()
	errc := make(chan error, 1)
	go func() { errc <- op(context.Background(), rc) }()
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case opErr = <-errc:
		before = true
	case <-timer.C:
	}
	d.Kill(t)
	if !before {
		select {
		case opErr = <-errc:
		case <-time.After(30 * time.Second):
			t.Fatal("the RPC did not return within 30s of the daemon's death")
		}
	}
	return opErr, before
}

// lastStartLog is the daemon's output since its last start.
func lastStartLog(d *framework.Daemon) string {
	log := d.Log()
	if i := strings.LastIndex(log, "=== e2e: start #"); i >= 0 {
		return log[i:]
	}
	return log
}

// crashDelay spreads the kills of iteration i over [0, 1.5*dur): early,
// in the middle, late and after the RPC; every other one falls in the
// first quarter, where the steps are short and many.
func crashDelay(i int, dur time.Duration) time.Duration {
	if i%2 == 0 {
		return time.Duration(rand.Int64N(int64(dur/4) + 1))
	}
	return time.Duration(rand.Int64N(int64(dur*3/2) + 1))
}

// held names the kinds of resources now holds beyond pre ("pod
// directories+shim processes"), to tell how far an interrupted operation
// got.
func held(pre, now framework.Snapshot) string {
	var kinds []string
	for _, item := range pre.New(now) {
		kind, _, _ := strings.Cut(item, ": ")
		if !slices.Contains(kinds, kind) {
			kinds = append(kinds, kind)
		}
	}
	if len(kinds) == 0 {
		return "nothing"
	}
	sort.Strings(kinds)
	return strings.Join(kinds, "+")
}

// points counts the crash points a test observed.
type points map[string]int

func (p points) String() string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %2d× %s", p[k], k)
	}
	return b.String()
}

// afterCrashCleanup removes every pod as kubelet would,
// and checks nothing is left beyond before and that pids are gone.
func afterCrashCleanup(t *testing.T, d *framework.Daemon, before framework.Snapshot, pids ...int) {
	t.Helper()
	removeAllPods(t, d)
	waitPidsGone(t, 10*time.Second, pids...)
	d.CheckNoLeaks(t, before, 20*time.Second)
}

// TestCrashDuringRunPodSandbox kills the daemon at random points of
// RunPodSandbox.
func TestCrashDuringRunPodSandbox(t *testing.T) {
	env := framework.NewPodEnv(t)
	d := env.Daemon
	env.PushImage(t, "busybox")
	before := d.Leaks(t)

	start := time.Now()
	warm := d.RunPod(t, framework.PodConfig("crash-run-warmup"))
	dur := time.Since(start)
	d.RemovePodAtCleanup(t, warm)
	t.Logf("RunPodSandbox takes %v; killing within [0, %v)", dur, dur*3/2)

	seen := points{}
	for i := range crashIterations {
		cfg := framework.PodConfig(fmt.Sprintf("crash-run-%d", i))
		t.Cleanup(func() { _ = removeLogDir(cfg) })
		delay := crashDelay(i, dur)
		var id string
		pre := d.Leaks(t)
		opErr, returned := killDuring(t, d, delay, func(ctx context.Context, rc runtimeapi.RuntimeServiceClient) error {
			resp, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			id = resp.GetPodSandboxId()
			return err
		})
		atKill := held(pre, d.Leaks(t))
		d.Start(t)
		log := lastStartLog(d)

		pods := listPods(t, d, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"e2e-pod": cfg.Metadata.Name}})
		var point string
		switch {
		case opErr == nil && returned:
			point = "after RunPodSandbox returned"
		case len(pods) == 1:
			point = "after the pod was ready, before the reply"
		case strings.Contains(log, "creation was interrupted"):
			point = "during the creation (record in Creating state torn down)"
		case strings.Contains(log, "orphan"):
			point = "during the creation (orphan pin/directory removed)"
		default:
			point = "before the record was written"
		}
		point += "; held at the kill: " + atKill
		seen[point]++
		t.Logf("iteration %d: kill after %v: RPC error %v; %s", i, delay, opErr, point)

		if opErr == nil {
			if p := pods[id]; p == nil || p.State != runtimeapi.PodSandboxState_SANDBOX_READY {
				t.Errorf("iteration %d: RunPodSandbox returned %s before the kill, but after the restart the pod is %v", i, id, p)
			}
		}
		if len(pods) > 1 {
			t.Errorf("iteration %d: %d pods of one name after the restart: %v", i, len(pods), pods)
		}
		for _, p := range pods {
			if p.State != runtimeapi.PodSandboxState_SANDBOX_READY {
				t.Errorf("iteration %d: pod %s listed as %s after the restart; a pod is either ready or gone", i, p.Id, p.State)
			}
			// A listed pod is usable.
			c := d.CreateStarted(t, p.Id, framework.ContainerConfig("c", "busybox", "sleep", "1000"), cfg)
			d.WaitContainerState(t, c, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
		}
		afterCrashCleanup(t, d, before)
		if t.Failed() {
			break
		}
	}
	t.Logf("crash points observed in RunPodSandbox:%s", seen)
}

// TestCrashDuringCreateContainer kills the daemon at random points of
// CreateContainer.
func TestCrashDuringCreateContainer(t *testing.T) {
	env := framework.NewPodEnv(t)
	d := env.Daemon
	env.PushImage(t, "busybox")
	before := d.Leaks(t)

	warmCfg := framework.PodConfig("crash-create-warmup")
	warm := d.RunPod(t, warmCfg)
	start := time.Now()
	d.CreateContainer(t, warm, framework.ContainerConfig("c", "busybox", "sleep", "1000"), warmCfg)
	dur := time.Since(start)
	d.RemovePodAtCleanup(t, warm)
	t.Logf("CreateContainer takes %v; killing within [0, %v)", dur, dur*3/2)

	seen := points{}
	for i := range crashIterations {
		podCfg := framework.PodConfig(fmt.Sprintf("crash-create-%d", i))
		pod := d.RunPod(t, podCfg)
		cfg := framework.ContainerConfig("c", "busybox", "sleep", "1000")
		delay := crashDelay(i, dur)
		var id string
		pre := d.Leaks(t)
		opErr, returned := killDuring(t, d, delay, func(ctx context.Context, rc runtimeapi.RuntimeServiceClient) error {
			resp, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
			id = resp.GetContainerId()
			return err
		})
		atKill := held(pre, d.Leaks(t))
		d.Start(t)
		log := lastStartLog(d)

		ctrs := listContainers(t, d, &runtimeapi.ContainerFilter{PodSandboxId: pod})
		var point string
		switch {
		case opErr == nil && returned:
			point = "after CreateContainer returned"
		case len(ctrs) == 1:
			point = "after the container was created, before the reply"
		case strings.Contains(log, "creation was interrupted"):
			point = "during the creation (record in Creating state torn down)"
		default:
			point = "before the record was written"
		}
		point += "; held at the kill: " + atKill
		seen[point]++
		t.Logf("iteration %d: kill after %v: RPC error %v; %s", i, delay, opErr, point)

		if p := listPods(t, d, nil)[pod]; p == nil || p.State != runtimeapi.PodSandboxState_SANDBOX_READY {
			t.Errorf("iteration %d: the pod is %v after the restart, want READY", i, p)
		}
		if opErr == nil {
			if c := ctrs[id]; c == nil || c.State != runtimeapi.ContainerState_CONTAINER_CREATED {
				t.Errorf("iteration %d: CreateContainer returned %s before the kill, but after the restart the container is %v", i, id, c)
			}
		}
		if len(ctrs) > 1 {
			t.Errorf("iteration %d: %d containers of one name after the restart: %v", i, len(ctrs), ctrs)
		}
		var pids []int
		for _, c := range ctrs {
			if c.State != runtimeapi.ContainerState_CONTAINER_CREATED {
				t.Errorf("iteration %d: container %s listed as %s after the restart, want CREATED", i, c.Id, c.State)
				continue
			}
			// A listed container can be started, as kubelet will.
			d.StartContainer(t, c.Id)
			pids = append(pids, runningPid(t, d, c.Id))
		}
		if len(ctrs) == 0 {
			// Kubelet retries the creation: the name must be free.
			c := d.CreateStarted(t, pod, cfg, podCfg)
			pids = append(pids, runningPid(t, d, c))
		}
		afterCrashCleanup(t, d, before, pids...)
		if t.Failed() {
			break
		}
	}
	t.Logf("crash points observed in CreateContainer:%s", seen)
}

// TestCrashDuringStartContainer kills the daemon at random points of
// StartContainer, and after it.
func TestCrashDuringStartContainer(t *testing.T) {
	env := framework.NewPodEnv(t)
	d := env.Daemon
	env.PushImage(t, "busybox")
	before := d.Leaks(t)

	warmCfg := framework.PodConfig("crash-start-warmup")
	warm := d.RunPod(t, warmCfg)
	wc := d.CreateContainer(t, warm, framework.ContainerConfig("c", "busybox", "sleep", "1000"), warmCfg)
	start := time.Now()
	d.StartContainer(t, wc)
	dur := time.Since(start)
	d.RemovePodAtCleanup(t, warm)
	t.Logf("StartContainer takes %v; killing within [0, %v)", dur, dur*3/2)

	seen := points{}
	for i := range crashIterations {
		podCfg := framework.PodConfig(fmt.Sprintf("crash-start-%d", i))
		pod := d.RunPod(t, podCfg)
		// The runtime creates the container inside StartContainer: a
		// kill there may leave its init waiting in the shim, which the
		// pod's removal must take down (afterCrashCleanup).
		ctr := d.CreateContainer(t, pod, framework.Shell("c", "busybox", counterScript), podCfg)
		delay := crashDelay(i, dur)
		opErr, returned := killDuring(t, d, delay, func(ctx context.Context, rc runtimeapi.RuntimeServiceClient) error {
			_, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr})
			return err
		})
		d.Start(t)

		st := d.ContainerStatus(t, ctr).GetStatus()
		point := fmt.Sprintf("container %s after the restart", st.State)
		if opErr == nil && returned {
			point = "after StartContainer returned: " + point
		}
		seen[point]++
		t.Logf("iteration %d: kill after %v: RPC error %v; %s", i, delay, opErr, point)

		var pids []int
		switch st.State {
		case runtimeapi.ContainerState_CONTAINER_RUNNING:
			pid := verbosePid(t, d.ContainerStatus(t, ctr))
			if !framework.ProcessAlive(pid) {
				t.Errorf("iteration %d: container reported running with pid %d, which does not exist", i, pid)
			}
			pids = append(pids, pid)
		case runtimeapi.ContainerState_CONTAINER_CREATED:
			if opErr == nil {
				t.Errorf("iteration %d: StartContainer succeeded before the kill but the container is CREATED after the restart", i)
			}
			// Kubelet starts it again.
			d.StartContainer(t, ctr)
			pids = append(pids, runningPid(t, d, ctr))
		default:
			t.Errorf("iteration %d: container is %s (reason %q, message %q) after a kill during its start, want RUNNING or CREATED",
				i, st.State, st.Reason, st.Message)
		}
		afterCrashCleanup(t, d, before, pids...)
		if t.Failed() {
			break
		}
	}
	t.Logf("crash points observed in StartContainer:%s", seen)
}

// TestCrashDuringStopContainer kills the daemon while StopContainer waits
// for a container that ignores SIGTERM: the stop is known to be under way
// because the container logs the SIGTERM it received.
func TestCrashDuringStopContainer(t *testing.T) {
	env := framework.NewPodEnv(t)
	d := env.Daemon
	env.PushImage(t, "busybox")
	before := d.Leaks(t)

	podCfg := framework.PodConfig("crash-stop")
	pod := d.RunPod(t, podCfg)
	cfg := framework.Shell("stubborn", "busybox", `trap 'echo got TERM' TERM; echo ready; while true; do sleep 0.1; done`)
	ctr := d.CreateStarted(t, pod, cfg, podCfg)
	pid := runningPid(t, d, ctr)
	logPath := framework.LogPath(podCfg, cfg)
	waitLog := func(want string, n int) {
		t.Helper()
		framework.Eventually(t, 30*time.Second, func() (bool, string) {
			text := framework.StreamText(framework.ReadCRILines(t, logPath), crilog.Stdout)
			return strings.Count(text, want+"\n") >= n, fmt.Sprintf("log of the container:\n%s", text)
		})
	}
	waitLog("ready", 1)

	rc := d.RuntimeClient()
	stopErr := make(chan error, 1)
	go func() {
		_, err := rc.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: ctr, Timeout: 120})
		stopErr <- err
	}()
	waitLog("got TERM", 1)
	d.Kill(t)
	select {
	case err := <-stopErr:
		if err == nil {
			t.Fatal("StopContainer with a 120s grace period succeeded although the container ignores SIGTERM and the daemon was killed")
		}
		if !framework.IsCode(err, codes.Unavailable) && !framework.IsCode(err, codes.Canceled) {
			t.Logf("StopContainer cut by the kill returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("StopContainer did not return after the daemon was killed")
	}
	if !framework.ProcessAlive(pid) {
		t.Fatal("the container died with the daemon")
	}

	d.Start(t)
	st := d.ContainerStatus(t, ctr).GetStatus()
	if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("after the restart the container is %s (reason %q), want RUNNING: it ignored SIGTERM and nothing killed it", st.State, st.Reason)
	}
	if got := verbosePid(t, d.ContainerStatus(t, ctr)); got != pid {
		t.Errorf("container pid %d after the restart, want %d", got, pid)
	}

	// Kubelet retries the stop, with what is left of the grace period.
	start := time.Now()
	if err := d.Runtime().StopContainer(testCtx(t), ctr, 1); err != nil {
		t.Fatalf("StopContainer after the restart: %v", err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("StopContainer with a 1s timeout took %v", took)
	}
	waitLog("got TERM", 2)
	st = d.ContainerStatus(t, ctr).GetStatus()
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Errorf("after StopContainer: %s exit code %d (reason %q), want EXITED with 137 (SIGKILL)", st.State, st.ExitCode, st.Reason)
	}
	afterCrashCleanup(t, d, before, pid)
}

// TestCrashDuringRemovePodSandbox kills the daemon at random points of
// RemovePodSandbox of a pod with a running container: the removal must
// be completed by a retry after the restart.
func TestCrashDuringRemovePodSandbox(t *testing.T) {
	env := framework.NewPodEnv(t)
	d := env.Daemon
	env.PushImage(t, "busybox")
	before := d.Leaks(t)

	warmCfg := framework.PodConfig("crash-remove-warmup")
	warm := d.RunPod(t, warmCfg)
	d.CreateStarted(t, warm, framework.ContainerConfig("c", "busybox", "sleep", "1000"), warmCfg)
	start := time.Now()
	if err := d.Runtime().RemovePodSandbox(testCtx(t), warm); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	dur := time.Since(start)
	t.Logf("RemovePodSandbox takes %v; killing within [0, %v)", dur, dur*3/2)

	seen := points{}
	for i := range crashIterations {
		podCfg := framework.PodConfig(fmt.Sprintf("crash-remove-%d", i))
		pod := d.RunPod(t, podCfg)
		ctr := d.CreateStarted(t, pod, framework.ContainerConfig("c", "busybox", "sleep", "1000"), podCfg)
		pid := runningPid(t, d, ctr)
		delay := crashDelay(i, dur)
		opErr, returned := killDuring(t, d, delay, func(ctx context.Context, rc runtimeapi.RuntimeServiceClient) error {
			_, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
			return err
		})
		d.Start(t)

		p := listPods(t, d, nil)[pod]
		c := listContainers(t, d, nil)[ctr]
		point := "pod gone"
		if p != nil {
			point = "pod " + p.State.String()
		}
		if c != nil {
			point += ", container " + c.State.String()
		} else {
			point += ", container gone"
		}
		if opErr == nil && returned {
			point = "after RemovePodSandbox returned: " + point
			if p != nil || c != nil {
				t.Errorf("iteration %d: RemovePodSandbox succeeded before the kill, but after the restart: %s", i, point)
			}
		}
		seen[point]++
		t.Logf("iteration %d: kill after %v: RPC error %v; %s", i, delay, opErr, point)
		if p == nil && c != nil {
			t.Errorf("iteration %d: container %s listed without its pod", i, ctr)
		}
		if c != nil && c.State == runtimeapi.ContainerState_CONTAINER_RUNNING && !framework.ProcessAlive(pid) {
			t.Errorf("iteration %d: container reported RUNNING but its process %d is gone", i, pid)
		}
		// Kubelet retries the removal.
		afterCrashCleanup(t, d, before, pid)
		if t.Failed() {
			break
		}
	}
	t.Logf("crash points observed in RemovePodSandbox:%s", seen)
}

// removeLogDir removes the log directory PodConfig made for a pod whose
// creation may never have reached RunPod's cleanup.
func removeLogDir(cfg *runtimeapi.PodSandboxConfig) error {
	dir := cfg.GetLogDirectory()
	if dir == "" || !strings.Contains(dir, "e2e-podlogs-") {
		return nil
	}
	return os.RemoveAll(dir)
}
