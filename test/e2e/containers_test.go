//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim/crilog"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

// runToExit runs cfg in a new pod until it exits and returns its status
// and its stdout.
func runToExit(t *testing.T, d *framework.Daemon, pc *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) (*runtimeapi.ContainerStatus, string) {
	t.Helper()
	pod := d.RunPod(t, pc)
	id := d.CreateStarted(t, pod, cfg, pc)
	st := d.WaitExited(t, id, 30*time.Second)
	return st, framework.StreamText(framework.ReadCRILines(t, framework.LogPath(pc, cfg)), crilog.Stdout)
}

// TestContainerExitReasons checks the exit code, reason and timestamps
// kubelet shows for containers that ended on their own.
func TestContainerExitReasons(t *testing.T) {
	_, d := podEnv(t)
	for _, tc := range []struct {
		name       string
		script     string
		code       int32
		reason     string
		minRuntime time.Duration
	}{
		{"exit 0", "sleep 1; exit 0", 0, "Completed", time.Second},
		{"exit 3", "sleep 1; exit 3", 3, "Error", time.Second},
		{"exit 255", "exit 255", 255, "Error", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := framework.PodConfig("exit")
			pod := d.RunPod(t, pc)
			id := d.CreateContainer(t, pod, framework.Shell("c", bb, tc.script), pc)
			created := d.ContainerStatus(t, id).Status
			if created.State != runtimeapi.ContainerState_CONTAINER_CREATED || created.CreatedAt == 0 || created.StartedAt != 0 || created.FinishedAt != 0 {
				t.Errorf("created container: state %s created %d started %d finished %d; want CREATED with only CreatedAt",
					created.State, created.CreatedAt, created.StartedAt, created.FinishedAt)
			}
			d.StartContainer(t, id)
			st := d.WaitExited(t, id, 30*time.Second)
			if st.ExitCode != tc.code || st.Reason != tc.reason {
				t.Errorf("exit code %d reason %q (message %q), want %d %q", st.ExitCode, st.Reason, st.Message, tc.code, tc.reason)
			}
			c, s, f := time.Unix(0, st.CreatedAt), time.Unix(0, st.StartedAt), time.Unix(0, st.FinishedAt)
			if st.StartedAt == 0 || st.FinishedAt == 0 || s.Before(c) || f.Before(s) {
				t.Errorf("times: created %s started %s finished %s; want created <= started <= finished, all set", c, s, f)
			}
			if ran := f.Sub(s); ran < tc.minRuntime-50*time.Millisecond || ran > tc.minRuntime+framework.Slow(10*time.Second) {
				t.Errorf("finished - started = %s, want about %s", ran, tc.minRuntime)
			}
			if time.Since(c) > framework.Slow(time.Minute) || time.Until(f) > time.Second {
				t.Errorf("times not near now: created %s finished %s", c, f)
			}
		})
	}
}

// TestContainerStartFailure: a command that does not exist fails
// StartContainer with runc's reason, and the container reports it.
func TestContainerStartFailure(t *testing.T) {
	_, d := podEnv(t)
	pc := framework.PodConfig("nocmd")
	pod := d.RunPod(t, pc)
	id, err := d.Runtime().CreateContainer(testCtx(t), pod, framework.ContainerConfig("c", bb, "/no/such/binary"), pc)
	if err != nil {
		// Failing at create is allowed, with the reason.
		if !strings.Contains(err.Error(), "/no/such/binary") {
			t.Errorf("CreateContainer error %q does not name the missing binary", err)
		}
		return
	}
	err = d.Runtime().StartContainer(testCtx(t), id)
	if err == nil {
		t.Fatalf("StartContainer of a missing binary succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, "/no/such/binary") || !strings.Contains(strings.ToLower(msg), "no such file") {
		t.Errorf("StartContainer error %q does not carry runc's reason (no such file ... /no/such/binary)", msg)
	}
	st := d.ContainerStatus(t, id).Status
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("state after failed start = %s, want CONTAINER_EXITED", st.State)
	}
	if st.ExitCode == 0 || st.Reason == "" || st.Reason == "Completed" {
		t.Errorf("failed start reported as exit code %d reason %q, want a non-zero code and an error reason", st.ExitCode, st.Reason)
	}
	if !strings.Contains(st.Message, "/no/such/binary") {
		t.Errorf("status message %q does not carry the reason", st.Message)
	}
	if st.FinishedAt == 0 || st.FinishedAt < st.CreatedAt {
		t.Errorf("failed start: created %d finished %d; want FinishedAt set", st.CreatedAt, st.FinishedAt)
	}
}

// TestContainerCreatedThenRemoved: a created container is only a record,
// a rootfs and a bundle until it starts (the runtime then creates and
// starts it, in one call when no NRI plugin is connected): its pod's shim
// holds nothing of it, it is removed without a start, and its name then
// serves a container that starts and runs.
func TestContainerCreatedThenRemoved(t *testing.T) {
	_, d := podEnv(t)
	ctx := testCtx(t)
	pc := framework.PodConfig("created")
	pod := d.RunPod(t, pc)
	cfg := framework.ContainerConfig("c", bb, "sleep", "1000")
	id := d.CreateContainer(t, pod, cfg, pc)
	if st := d.ContainerStatus(t, id).GetStatus(); st.GetState() != runtimeapi.ContainerState_CONTAINER_CREATED || st.GetStartedAt() != 0 {
		t.Fatalf("created container: state %s started %d, want CREATED, never started", st.GetState(), st.GetStartedAt())
	}
	if rec, ok := d.ShimRecord(pod, id); ok {
		t.Errorf("the pod's shim holds the created container (%+v)", rec)
	}
	if err := d.Runtime().RemoveContainer(ctx, id); err != nil {
		t.Fatalf("RemoveContainer of a created container: %v", err)
	}
	_, err := d.Runtime().ContainerStatus(ctx, id, false)
	wantCode(t, "ContainerStatus of the removed container", err, codes.NotFound)

	again := d.CreateStarted(t, pod, cfg, pc)
	pid := runningPid(t, d, again)
	if rec, ok := d.ShimRecord(pod, again); !ok || rec.Status != "running" || rec.Pid != pid {
		t.Errorf("shim record of the started container: %+v (found %v), want running with pid %d", rec, ok, pid)
	}
	if !framework.ProcessAlive(pid) {
		t.Errorf("the started container's process %d is not alive", pid)
	}
}

// TestStopContainer checks the stop protocol: the stop signal (the
// config's stop_signal, else the image's StopSignal, else SIGTERM) first,
// SIGKILL after the timeout; the status reports the signal.
func TestStopContainer(t *testing.T) {
	env, d := podEnv(t)
	env.PushImage(t, "usr1:v1", images.WithStopSignal("SIGUSR1"))
	// Each script writes /tmp/ready once its trap is set.
	for _, tc := range []struct {
		name    string
		image   string
		script  string
		timeout int64
		code    int32
		min     time.Duration
		max     time.Duration
		stopSig runtimeapi.Signal // the config's
		want    runtimeapi.Signal // in the status
	}{
		{"term honoured", bb, `trap 'exit 0' TERM; touch /tmp/ready; while true; do sleep 0.1; done`, 30, 0, 0, 5 * time.Second, 0, runtimeapi.Signal_SIGNAL_SIGTERM},
		{"term ignored", bb, `trap '' TERM; touch /tmp/ready; while true; do sleep 0.1; done`, 2, 137, 2 * time.Second, 10 * time.Second, 0, runtimeapi.Signal_SIGNAL_SIGTERM},
		{"image stop signal", "usr1:v1", `trap 'exit 42' USR1; trap 'exit 0' TERM; touch /tmp/ready; while true; do sleep 0.1; done`, 30, 42, 0, 5 * time.Second, 0, runtimeapi.Signal_SIGNAL_SIGUSR1},
		// KEP-4960: the pod's lifecycle.stopSignal overrides the image's.
		{"config stop signal", "usr1:v1", `trap 'exit 42' USR1; trap 'exit 43' USR2; trap 'exit 0' TERM; touch /tmp/ready; while true; do sleep 0.1; done`, 30, 43, 0, 5 * time.Second,
			runtimeapi.Signal_SIGNAL_SIGUSR2, runtimeapi.Signal_SIGNAL_SIGUSR2},
		// SIGRTMIN+1 is 35 (glibc and runc number real-time signals from 34).
		{"config real-time signal", bb, `trap 'exit 44' 35; trap 'exit 0' TERM; touch /tmp/ready; while true; do sleep 0.1; done`, 30, 44, 0, 5 * time.Second,
			runtimeapi.Signal_SIGNAL_SIGRTMINPLUS1, runtimeapi.Signal_SIGNAL_SIGRTMINPLUS1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := framework.PodConfig("stop")
			pod := d.RunPod(t, pc)
			cfg := framework.Shell("c", tc.image, tc.script)
			cfg.StopSignal = tc.stopSig
			id := d.CreateStarted(t, pod, cfg, pc)
			if got := d.ContainerStatus(t, id).Status.StopSignal; got != tc.want {
				t.Errorf("status stop_signal = %s, want %s", got, tc.want)
			}
			framework.Eventually(t, 10*time.Second, func() (bool, string) {
				return d.Exec(t, id, framework.Slow(5*time.Second), "test", "-e", "/tmp/ready").ExitCode == 0, "trap not set yet"
			})
			start := time.Now()
			if err := d.Runtime().StopContainer(testCtx(t), id, tc.timeout); err != nil {
				t.Fatalf("StopContainer: %v", err)
			}
			took := time.Since(start)
			st := d.ContainerStatus(t, id).Status
			if st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
				t.Fatalf("state after StopContainer returned = %s, want CONTAINER_EXITED", st.State)
			}
			if st.ExitCode != tc.code {
				t.Errorf("exit code %d (reason %q), want %d", st.ExitCode, st.Reason, tc.code)
			}
			// The upper bound says the kill came (or the exit was
			// seen) soon after the signal: scaled for emulated guests.
			if max := framework.Slow(tc.max); took < tc.min || took > max {
				t.Errorf("StopContainer took %s, want between %s and %s", took, tc.min, max)
			}
			// Stopping again is a no-op.
			if err := d.Runtime().StopContainer(testCtx(t), id, tc.timeout); err != nil {
				t.Errorf("second StopContainer: %v", err)
			}
		})
	}
}

// TestPIDNamespaceModes checks what a container sees as pid 1 in each
// namespace mode kubelet uses.
func TestPIDNamespaceModes(t *testing.T) {
	_, d := podEnv(t)
	hostInit, err := os.ReadFile("/proc/1/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	withPid := func(cfg *runtimeapi.ContainerConfig, mode runtimeapi.NamespaceMode, target string) *runtimeapi.ContainerConfig {
		cfg.Linux.SecurityContext.NamespaceOptions.Pid = mode
		cfg.Linux.SecurityContext.NamespaceOptions.TargetId = target
		return cfg
	}
	podWithPid := func(name string, mode runtimeapi.NamespaceMode) *runtimeapi.PodSandboxConfig {
		return framework.PodConfig(name, framework.WithPodNamespaces(runtimeapi.NamespaceMode_POD, mode, runtimeapi.NamespaceMode_POD))
	}
	pid1 := func(id string) string { return d.ExecOK(t, id, "cat", "/proc/1/cmdline") }

	t.Run("POD", func(t *testing.T) {
		pc := podWithPid("pidpod", runtimeapi.NamespaceMode_POD)
		pod := d.RunPod(t, pc)
		a := d.CreateStarted(t, pod, withPid(sleeper("a"), runtimeapi.NamespaceMode_POD, ""), pc)
		b := d.CreateStarted(t, pod, withPid(framework.ContainerConfig("b", bb, "sleep", "4242"), runtimeapi.NamespaceMode_POD, ""), pc)
		if got := pid1(a); got != "/pause\x00pause\x00" {
			t.Errorf("pid 1 in a pod-shared pid namespace = %q, want the pause process", got)
		}
		if ps := d.ExecOK(t, a, "ps", "-o", "args"); !strings.Contains(ps, "sleep 4242") {
			t.Errorf("container a does not see container b's process:\n%s", ps)
		}
		_ = b
	})
	t.Run("CONTAINER", func(t *testing.T) {
		pc := podWithPid("pidctr", runtimeapi.NamespaceMode_CONTAINER)
		pod := d.RunPod(t, pc)
		a := d.CreateStarted(t, pod, withPid(framework.ContainerConfig("a", bb, "sleep", "4343"), runtimeapi.NamespaceMode_CONTAINER, ""), pc)
		if got := pid1(a); got != "sleep\x004343\x00" {
			t.Errorf("pid 1 in a container pid namespace = %q, want the container's command", got)
		}
	})
	t.Run("NODE", func(t *testing.T) {
		pc := podWithPid("pidnode", runtimeapi.NamespaceMode_NODE)
		pod := d.RunPod(t, pc)
		a := d.CreateStarted(t, pod, withPid(framework.ContainerConfig("a", bb, "sleep", "4444"), runtimeapi.NamespaceMode_NODE, ""), pc)
		if got := pid1(a); got != string(hostInit) {
			t.Errorf("pid 1 in the node pid namespace = %q, want the host's %q", got, hostInit)
		}
		if ps := d.ExecOK(t, a, "ps", "-o", "pid,args"); !strings.Contains(ps, "e2e.test") {
			t.Errorf("container in the node pid namespace does not see the test binary:\n%s", ps)
		}
	})
	t.Run("TARGET", func(t *testing.T) {
		pc := podWithPid("pidtarget", runtimeapi.NamespaceMode_CONTAINER)
		pod := d.RunPod(t, pc)
		target := d.CreateStarted(t, pod, withPid(framework.ContainerConfig("app", bb, "sleep", "4545"), runtimeapi.NamespaceMode_CONTAINER, ""), pc)
		debug := d.CreateStarted(t, pod, withPid(sleeper("debug"), runtimeapi.NamespaceMode_TARGET, target), pc)
		if got := pid1(debug); got != "sleep\x004545\x00" {
			t.Errorf("pid 1 of a debug container targeting app = %q, want app's process", got)
		}
		if ps := d.ExecOK(t, target, "ps", "-o", "args"); !strings.Contains(ps, "sleep 100000") {
			t.Errorf("the target does not see the debug container's process either:\n%s", ps)
		}
	})
}

// TestContainerUser checks the user and groups a container runs as, from
// the CRI security context and from the image.
func TestContainerUser(t *testing.T) {
	env, d := podEnv(t)
	env.PushImage(t, "user-image:name", images.WithUser("user"))
	env.PushImage(t, "user-image:ids", images.WithUser("1000:100"))
	i64 := func(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }
	for _, tc := range []struct {
		name  string
		image string
		sc    *runtimeapi.LinuxContainerSecurityContext
		want  string // "uid gid groups", groups sorted and unique
	}{
		{"root by default", bb, nil, "0 0 0"},
		{"run_as_user", bb, &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000)}, "1000 1000 100 1000"},
		{"run_as_user unknown to the image", bb, &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(4321)}, "4321 0 0"},
		{"run_as_user and group", bb, &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), RunAsGroup: i64(2000)}, "1000 2000 100 2000"},
		{"run_as_username", bb, &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "nobody"}, "65534 65534 65534"},
		{"image user name", "user-image:name", nil, "1000 1000 100 1000"},
		{"image uid:gid", "user-image:ids", nil, "1000 100 100"},
		{"supplemental merge", bb, &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), SupplementalGroups: []int64{3000}}, "1000 1000 100 1000 3000"},
		{"supplemental strict", bb, &runtimeapi.LinuxContainerSecurityContext{
			RunAsUser: i64(1000), SupplementalGroups: []int64{3000},
			SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict,
		}, "1000 1000 1000 3000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := framework.Shell("c", tc.image, `echo "$(id -u) $(id -g) $(id -G)"`)
			if tc.sc != nil {
				tc.sc.NamespaceOptions = cfg.Linux.SecurityContext.NamespaceOptions
				cfg.Linux.SecurityContext = tc.sc
			}
			st, out := runToExit(t, d, framework.PodConfig("user"), cfg)
			if st.ExitCode != 0 {
				t.Fatalf("exit code %d (%s %s), output %q", st.ExitCode, st.Reason, st.Message, out)
			}
			if got := idLine(out); got != tc.want {
				t.Errorf("uid gid groups = %q, want %q", got, tc.want)
			}
		})
	}
}

// idLine normalises "uid gid groups..." with the groups sorted and
// deduplicated (the order of id -G is not part of the contract).
func idLine(out string) string {
	f := strings.Fields(out)
	if len(f) < 2 {
		return strings.TrimSpace(out)
	}
	groups := f[2:]
	slices.SortFunc(groups, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	})
	return strings.Join(append(f[:2], slices.Compact(groups)...), " ")
}

// TestContainerMounts checks host path bind mounts: read-write, read-only
// (writes fail with EROFS) and a missing host path, which is created.
func TestContainerMounts(t *testing.T) {
	_, d := podEnv(t)
	rw, ro := t.TempDir(), t.TempDir()
	missing := filepath.Join(t.TempDir(), "does", "not", "exist")
	if err := os.WriteFile(filepath.Join(ro, "host.txt"), []byte("from-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pc := framework.PodConfig("mounts")
	pod := d.RunPod(t, pc)
	cfg := sleeper("c")
	cfg.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/rw", HostPath: rw},
		{ContainerPath: "/ro", HostPath: ro, Readonly: true},
		{ContainerPath: "/new", HostPath: missing},
	}
	id := d.CreateStarted(t, pod, cfg, pc)

	d.ExecOK(t, id, "sh", "-c", "echo from-container > /rw/out.txt")
	if data, err := os.ReadFile(filepath.Join(rw, "out.txt")); err != nil || string(data) != "from-container\n" {
		t.Errorf("file written in the rw mount reads %q, %v on the host", data, err)
	}
	if got := d.ExecOK(t, id, "cat", "/ro/host.txt"); got != "from-host\n" {
		t.Errorf("/ro/host.txt = %q", got)
	}
	r := d.Exec(t, id, 10*time.Second, "sh", "-c", "echo x > /ro/x.txt")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "Read-only file system") {
		t.Errorf("write into the readonly mount: exit %d stderr %q, want EROFS", r.ExitCode, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(ro, "x.txt")); err == nil {
		t.Errorf("write into the readonly mount reached the host")
	}
	if fi, err := os.Stat(missing); err != nil || !fi.IsDir() {
		t.Errorf("missing host path not created as a directory: %v", err)
	}
	d.ExecOK(t, id, "touch", "/new/file")
	if _, err := os.Stat(filepath.Join(missing, "file")); err != nil {
		t.Errorf("file created in the mount of the new host path is not on the host: %v", err)
	}

	st := d.ContainerStatus(t, id).Status
	if len(st.Mounts) != 3 {
		t.Fatalf("ContainerStatus.Mounts = %v, want the 3 mounts", st.Mounts)
	}
	for i, m := range st.Mounts {
		if m.ContainerPath != cfg.Mounts[i].ContainerPath || m.HostPath != cfg.Mounts[i].HostPath || m.Readonly != cfg.Mounts[i].Readonly {
			t.Errorf("ContainerStatus.Mounts[%d] = %v, want %v", i, m, cfg.Mounts[i])
		}
	}
}

// TestListContainersFilters checks ListContainers and StreamContainers
// filters: ID (and prefix), pod, state, labels, and combinations.
func TestListContainersFilters(t *testing.T) {
	_, d := podEnv(t)
	pc1, pc2 := framework.PodConfig("one"), framework.PodConfig("two")
	p1, p2 := d.RunPod(t, pc1), d.RunPod(t, pc2)
	withLabels := func(c *runtimeapi.ContainerConfig, l map[string]string) *runtimeapi.ContainerConfig {
		c.Labels = l
		return c
	}
	running := d.CreateStarted(t, p1, withLabels(sleeper("running"), map[string]string{"app": "x", "role": "main"}), pc1)
	exited := d.CreateStarted(t, p1, withLabels(framework.ContainerConfig("exited", bb, "true"), map[string]string{"app": "x", "role": "init"}), pc1)
	created := d.CreateContainer(t, p2, withLabels(sleeper("created"), map[string]string{"app": "y"}), pc2)
	d.WaitExited(t, exited, 30*time.Second)
	state := func(s runtimeapi.ContainerState) *runtimeapi.ContainerStateValue {
		return &runtimeapi.ContainerStateValue{State: s}
	}
	for _, tc := range []struct {
		name   string
		filter *runtimeapi.ContainerFilter
		want   []string
	}{
		{"none", nil, []string{running, exited, created}},
		{"id", &runtimeapi.ContainerFilter{Id: exited}, []string{exited}},
		{"id prefix", &runtimeapi.ContainerFilter{Id: exited[:12]}, []string{exited}},
		{"unknown id", &runtimeapi.ContainerFilter{Id: strings.Repeat("0", 64)}, nil},
		{"pod", &runtimeapi.ContainerFilter{PodSandboxId: p1}, []string{running, exited}},
		{"other pod", &runtimeapi.ContainerFilter{PodSandboxId: p2}, []string{created}},
		{"unknown pod", &runtimeapi.ContainerFilter{PodSandboxId: strings.Repeat("0", 64)}, nil},
		{"id in its pod", &runtimeapi.ContainerFilter{Id: running, PodSandboxId: p1}, []string{running}},
		{"id in another pod", &runtimeapi.ContainerFilter{Id: running, PodSandboxId: p2}, nil},
		{"running", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_RUNNING)}, []string{running}},
		{"exited", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_EXITED)}, []string{exited}},
		{"created", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_CREATED)}, []string{created}},
		{"label", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"app": "x"}}, []string{running, exited}},
		{"two labels", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"app": "x", "role": "init"}}, []string{exited}},
		{"pod and state", &runtimeapi.ContainerFilter{PodSandboxId: p1, State: state(runtimeapi.ContainerState_CONTAINER_EXITED)}, []string{exited}},
		{"pod and label", &runtimeapi.ContainerFilter{PodSandboxId: p2, LabelSelector: map[string]string{"app": "x"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			list, err := d.Runtime().ListContainers(testCtx(t), tc.filter)
			if err != nil {
				t.Fatalf("ListContainers: %v", err)
			}
			var got []string
			for _, c := range list {
				got = append(got, c.Id)
			}
			if !sameSet(got, tc.want) {
				t.Errorf("ListContainers = %v, want %v", got, tc.want)
			}
			stream, err := d.RuntimeClient().StreamContainers(testCtx(t), &runtimeapi.StreamContainersRequest{Filter: tc.filter})
			if err != nil {
				t.Fatalf("StreamContainers: %v", err)
			}
			var streamed []string
			for {
				resp, err := stream.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("StreamContainers: %v", err)
				}
				for _, c := range resp.Containers {
					streamed = append(streamed, c.Id)
				}
			}
			if !sameSet(streamed, tc.want) {
				t.Errorf("StreamContainers = %v, want %v", streamed, tc.want)
			}
		})
	}
	list, err := d.Runtime().ListContainers(testCtx(t), &runtimeapi.ContainerFilter{Id: running})
	if err != nil || len(list) != 1 {
		t.Fatalf("ListContainers(running) = %v, %v", list, err)
	}
	if c := list[0]; c.PodSandboxId != p1 || c.Metadata.GetName() != "running" || c.State != runtimeapi.ContainerState_CONTAINER_RUNNING || c.CreatedAt == 0 || c.Labels["role"] != "main" || c.ImageId == "" {
		t.Errorf("listed container = %v", c)
	}
}

// TestContainerStatusFields checks what kubelet reads from
// ContainerStatus of a running container.
func TestContainerStatusFields(t *testing.T) {
	env, d := podEnv(t)
	img := env.PushImage(t, "status:v1", images.WithLabels(map[string]string{"v": "1"}))
	ref := d.Pull(t, "status:v1")
	pc := framework.PodConfig("status")
	pod := d.RunPod(t, pc)
	cfg := framework.ContainerConfig("c", "status:v1", "sleep", "4747")
	cfg.Annotations = map[string]string{"a": "b"}
	cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: t.TempDir(), Readonly: true}}
	before := time.Now()
	id := d.CreateStarted(t, pod, cfg, pc)
	resp := d.ContainerStatus(t, id)
	st := resp.Status
	if st.Id != id || st.Metadata.GetName() != "c" || st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("status id %s name %q state %s", st.Id, st.Metadata.GetName(), st.State)
	}
	if st.Image.GetImage() != img.ID().String() || st.ImageId != img.ID().String() {
		t.Errorf("image %q image_id %q, want the image ID %s", st.Image.GetImage(), st.ImageId, img.ID())
	}
	// Kubelet shows image_ref as the pod's imageID: containerd reports the
	// repo digest, the image ID (what PullImage returned) is fine too.
	if repoDigest := "docker.io/library/status@" + img.Digest().String(); st.ImageRef != ref && st.ImageRef != repoDigest {
		t.Errorf("image_ref %q, want %s or %s", st.ImageRef, ref, repoDigest)
	}
	if st.LogPath != framework.LogPath(pc, cfg) {
		t.Errorf("log_path %q, want %q", st.LogPath, framework.LogPath(pc, cfg))
	}
	if st.CreatedAt < before.UnixNano() || st.StartedAt < st.CreatedAt || st.FinishedAt != 0 || st.ExitCode != 0 {
		t.Errorf("created %d started %d finished %d exit %d, want created >= %d, started >= created, not finished",
			st.CreatedAt, st.StartedAt, st.FinishedAt, st.ExitCode, before.UnixNano())
	}
	if st.Labels["e2e-container"] != "c" || st.Annotations["a"] != "b" {
		t.Errorf("labels %v annotations %v", st.Labels, st.Annotations)
	}
	if len(st.Mounts) != 1 || st.Mounts[0].ContainerPath != "/data" || !st.Mounts[0].Readonly {
		t.Errorf("mounts %v", st.Mounts)
	}
	pid := infoPid(t, resp.Info)
	// runc start returns once the init is told to exec: until its execve
	// is through, the process has no command line yet.
	framework.Eventually(t, 5*time.Second, func() (bool, string) {
		cmdline, _ := os.ReadFile("/proc/" + jsonNum(float64(pid)) + "/cmdline")
		return string(cmdline) == "sleep\x004747\x00", fmt.Sprintf("verbose info pid %d runs %q, want the container's sleep 4747", pid, cmdline)
	})
	if err := d.Runtime().StopContainer(testCtx(t), id, 0); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	st = d.ContainerStatus(t, id).Status
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.FinishedAt < st.StartedAt || st.ExitCode != 137 {
		t.Errorf("after a stop with timeout 0: state %s exit %d finished %d (started %d); want EXITED, 137", st.State, st.ExitCode, st.FinishedAt, st.StartedAt)
	}
}

// TestCommandArgsEnv checks how the CRI command, args, env and working
// dir combine with the image's entrypoint, cmd, env and working dir (as
// Kubernetes defines: command replaces the entrypoint and drops the
// image cmd, args replace the cmd).
func TestCommandArgsEnv(t *testing.T) {
	env, d := podEnv(t)
	env.PushImage(t, "entry:v1",
		images.WithEntrypoint("/bin/echo", "ep"), images.WithCmd("img-cmd"),
		images.WithEnv("FROM_IMAGE=image", "OVERRIDE=image"), images.WithWorkingDir("/tmp"))
	for _, tc := range []struct {
		name          string
		command, args []string
		want          string
	}{
		{"image defaults", nil, nil, "ep img-cmd"},
		{"args replace cmd", nil, []string{"a1", "a2"}, "ep a1 a2"},
		{"command replaces entrypoint and cmd", []string{"/bin/echo", "c"}, nil, "c"},
		{"command and args", []string{"/bin/echo", "c"}, []string{"a1"}, "c a1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := framework.ContainerConfig("c", "entry:v1", tc.command...)
			cfg.Args = tc.args
			st, out := runToExit(t, d, framework.PodConfig("cmd"), cfg)
			if st.ExitCode != 0 || strings.TrimSpace(out) != tc.want {
				t.Errorf("output %q exit %d, want %q", out, st.ExitCode, tc.want)
			}
		})
	}
	t.Run("env and working dir", func(t *testing.T) {
		cfg := framework.ContainerConfig("c", "entry:v1", "sh", "-c", `echo "$FROM_IMAGE $OVERRIDE $FROM_CRI $(pwd)"`)
		cfg.Envs = []*runtimeapi.KeyValue{{Key: "OVERRIDE", Value: []byte("cri")}, {Key: "FROM_CRI", Value: []byte("x y")}}
		st, out := runToExit(t, d, framework.PodConfig("env"), cfg)
		if want := "image cri x y /tmp"; st.ExitCode != 0 || strings.TrimSpace(out) != want {
			t.Errorf("output %q exit %d, want %q", out, st.ExitCode, want)
		}
		cfg = framework.ContainerConfig("c", "entry:v1", "pwd")
		cfg.WorkingDir = "/var/new-dir"
		st, out = runToExit(t, d, framework.PodConfig("wd"), cfg)
		if st.ExitCode != 0 || strings.TrimSpace(out) != "/var/new-dir" {
			t.Errorf("working_dir /var/new-dir (missing in the image): output %q exit %d (%s)", out, st.ExitCode, st.Message)
		}
	})
}

// TestHostNetworkPod checks a pod in the node's network namespace: it has
// the node's hostname and sees the node's interfaces.
func TestHostNetworkPod(t *testing.T) {
	_, d := podEnv(t)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	pc := framework.PodConfig("hostnet", framework.WithPodNamespaces(runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD))
	pod := d.RunPod(t, pc)
	cfg := sleeper("c")
	cfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	id := d.CreateStarted(t, pod, cfg, pc)
	if got := strings.TrimSpace(d.ExecOK(t, id, "hostname")); got != host {
		t.Errorf("hostname in a host-network pod = %q, want the node's %q", got, host)
	}
	// The node's own network namespace, not one named like it (a pod's
	// has a lo and an eth0 too).
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(d.ExecOK(t, id, "readlink", "/proc/self/ns/net")); got != hostNS {
		t.Errorf("network namespace of a host-network pod's container = %s, want the node's %s", got, hostNS)
	}
	// Veths come and go meanwhile (the kernel deletes an earlier test's
	// pod's veth after its network namespace goes, asynchronously; another
	// checkout's tests may run at once): the interfaces the pod must see
	// are those the node had both before and after it looked.
	before := nodeInterfaces(t)
	seen := strings.Fields(d.ExecOK(t, id, "ls", "/sys/class/net"))
	after := nodeInterfaces(t)
	for name := range before {
		if after[name] && !slices.Contains(seen, name) {
			t.Errorf("interface %s of the node not seen in the host-network pod: %q", name, seen)
		}
	}
	if st := d.PodStatus(t, pod).Status; st.GetLinux().GetNamespaces().GetOptions().GetNetwork() != runtimeapi.NamespaceMode_NODE {
		t.Errorf("pod status namespaces = %v, want network NODE", st.GetLinux().GetNamespaces().GetOptions())
	}
}

// nodeInterfaces are the names in the node's /sys/class/net.
func nodeInterfaces(t *testing.T) map[string]bool {
	t.Helper()
	entries, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name()] = true
	}
	return names
}

// TestManyLayerImage: an image of 128 layers (beyond the ~90 whose
// absolute overlay lowerdirs fit mount(2)'s one-page options) pulls,
// mounts and runs, with every layer visible and the top one winning.
func TestManyLayerImage(t *testing.T) {
	env, d := podEnv(t)
	const n = 128
	var layers []images.Layer
	for i := range n - 1 { // plus busybox's own layer
		l, err := images.NewLayer().Dir("layers", 0o755).
			File(fmt.Sprintf("layers/l%03d", i), []byte(fmt.Sprintf("layer %d\n", i)), 0o644).
			File("layers/top", []byte(fmt.Sprintf("top %d\n", i)), 0o644).Build()
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	ref := "e2e/many-layers:1"
	img := env.PushImage(t, ref, images.WithLayers(layers...))
	if got := len(img.Layers); got != n {
		t.Fatalf("image has %d layers, want %d", got, n)
	}
	pc := framework.PodConfig("many-layers")
	pod := d.RunPod(t, pc)
	id := d.CreateStarted(t, pod, framework.ContainerConfig("c", ref, "sleep", "1000"), pc)
	d.WaitContainerState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	out := d.ExecOK(t, id, "sh", "-c", fmt.Sprintf("cat /layers/l000 /layers/l%03d /layers/top; ls /layers | wc -l", n/2))
	want := fmt.Sprintf("layer 0\nlayer %d\ntop %d\n%d\n", n/2, n-2, n)
	if strings.Join(strings.Fields(out), " ") != strings.Join(strings.Fields(want), " ") {
		t.Fatalf("in the container:\n%s\nwant:\n%s", out, want)
	}
}
