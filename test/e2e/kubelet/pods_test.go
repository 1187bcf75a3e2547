//go:build e2e && kubelet

package kubelet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// TestKubelet runs every behaviour against one kubelet with its default
// feature gates: first the pod behaviours side by side (as kubelet runs
// many pods at once), then the ones that restart or kill parts of the
// node, one after the other.
func TestKubelet(t *testing.T) {
	n := newNode(t, nil)
	t.Run("pods", func(t *testing.T) {
		t.Run("HostNetwork", n.testHostNetwork)
		t.Run("PodNetwork", n.testPodNetwork)
		t.Run("InitContainersAndVolumes", n.testInitContainersAndVolumes)
		t.Run("Probes", n.testProbes)
		t.Run("CrashLoopBackOff", n.testCrashLoop)
		t.Run("RestartPolicies", n.testRestartPolicies)
		t.Run("OOMKilled", n.testOOMKilled)
		t.Run("Limits", n.testLimits)
		t.Run("GracePeriodAndPreStop", n.testGracePeriod)
		t.Run("LogRotation", n.testLogRotation)
		t.Run("StatsSummary", n.testStatsSummary)
		t.Run("PodResize", n.testPodResize)
	})
	t.Run("RemovedPodLeavesNothing", n.testRemoveLeavesNothing)
	t.Run("DaemonKilled", n.testDaemonKilled)
	t.Run("KubeletRestarted", n.testKubeletRestarted)
	t.Run("NodeReboot", n.testNodeReboot)
}

// TestKubeletFromCRI runs the pod behaviours with the feature gates that
// make kubelet learn everything from the runtime: EventedPLEG (container
// state changes from GetContainerEvents instead of relisting) and
// PodAndContainerStatsFromCRI (/stats/summary from ListPodSandboxStats
// and ListContainerStats, without cAdvisor); and ImageVolume (GA and
// always on from 1.36, beta and off by default before).
//
// EventedPLEG on kubelet 1.37 works because PodSandboxStatus carries no
// timestamp (as containerd answers since it reverted one): with a
// timestamp, 1.37's GetPodStatus takes the containers from
// PodSandboxStatus.containers_statuses but leaves the pod's
// ActiveContainerStatuses empty, computeInitContainerActions then finds
// no active init container and runs completed ones again, and the pod
// never initializes (kuberuntime_manager.go GetPodStatus). The
// InitContainersAndVolumes pod below fails that way with a timestamp.
func TestKubeletFromCRI(t *testing.T) {
	gates := map[string]bool{"PodAndContainerStatsFromCRI": true, "EventedPLEG": true, "ImageVolume": true}
	n := newNode(t, gates)
	t.Run("pods", func(t *testing.T) {
		t.Run("PodNetwork", n.testPodNetwork)
		t.Run("InitContainersAndVolumes", n.testInitContainersAndVolumes)
		t.Run("Probes", n.testProbes)
		t.Run("CrashLoopBackOff", n.testCrashLoop)
		t.Run("RestartPolicies", n.testRestartPolicies)
		t.Run("GracePeriodAndPreStop", n.testGracePeriod)
		t.Run("StatsSummary", n.testStatsSummary)
		t.Run("ImageVolume", n.testImageVolume)
	})
	// Before DaemonKilled: while the daemon is away, kubelet rightly
	// logs failed GetContainerEvents calls.
	t.Run("EventStream", n.testEventStream)
	t.Run("DaemonKilled", n.testDaemonKilled)
}

// testEventStream: kubelet's evented PLEG connected to GetContainerEvents
// and never lost the stream (with EventedPLEG kubelet relists only every
// 300 s, so the pod tests would also have timed out without events).
func (n *node) testEventStream(t *testing.T) {
	metrics, err := n.kubelet.ReadOnly(t.Context(), "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v := metricValue(string(metrics), "kubelet_evented_pleg_connection_success_count"); v < 1 {
		t.Errorf("kubelet_evented_pleg_connection_success_count = %v, want >= 1", v)
	}
	if v := metricValue(string(metrics), "kubelet_evented_pleg_connection_error_count"); v != 0 {
		t.Errorf("kubelet_evented_pleg_connection_error_count = %v, want 0", v)
	}
	if errs := n.kubeletErrors("Evented PLEG", "GetContainerEvents"); len(errs) > 0 {
		t.Errorf("kubelet logged errors about container events:\n%s", strings.Join(errs, "\n"))
	}
}

// metricValue is the value of an unlabelled metric in Prometheus text
// format (-1 if absent).
func metricValue(text, name string) float64 {
	for _, l := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(l, name+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

// freePort is a TCP port free on the host now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// httpGet polls url until it answers 200 and returns the body.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	var body string
	c := &http.Client{Timeout: 5 * time.Second}
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		resp, err := c.Get(url)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("GET %s: %s", url, resp.Status)
	})
	return body
}

func (n *node) testHostNetwork(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	p := newPod("hostnet", shell("web", fmt.Sprintf("mkdir -p /tmp/www && echo hostnet > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:%d -h /tmp/www", port)))
	p.Spec.HostNetwork = true
	n.add(t, p)
	pod := n.waitReady(t, "hostnet")
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/index.html", port)); got != "hostnet\n" {
		t.Errorf("host-network pod served %q, want %q", got, "hostnet\n")
	}
	host, _ := os.Hostname()
	if got := strings.TrimSpace(n.exec(t, pod, "web", "hostname")); got != host {
		t.Errorf("hostname in a host-network pod = %q, want the node's %q", got, host)
	}
}

func (n *node) testPodNetwork(t *testing.T) {
	t.Parallel()
	p := newPod("podnet", shell("web", "mkdir -p /tmp/www && echo podnet > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"))
	n.add(t, p)
	pod := n.waitReady(t, "podnet")
	ip := net.ParseIP(pod.Status.PodIP)
	_, subnet, _ := net.ParseCIDR(n.net.Subnet)
	if ip == nil || !subnet.Contains(ip) {
		t.Fatalf("podIP %q is not in the test network %s", pod.Status.PodIP, n.net.Subnet)
	}
	if got := httpGet(t, fmt.Sprintf("http://%s:8080/index.html", ip)); got != "podnet\n" {
		t.Errorf("pod IP served %q, want %q", got, "podnet\n")
	}
	if out := n.exec(t, pod, "web", "ip", "-o", "-4", "addr", "show", "eth0"); !strings.Contains(out, pod.Status.PodIP+"/") {
		t.Errorf("eth0 in the pod does not have the pod IP %s: %s", pod.Status.PodIP, out)
	}
}

func (n *node) testInitContainersAndVolumes(t *testing.T) {
	t.Parallel()
	hostDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostDir, "from-host"), []byte("hello from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mounts := []corev1.VolumeMount{{Name: "work", MountPath: "/work"}, {Name: "host", MountPath: "/host"}}
	withMounts := func(c corev1.Container) corev1.Container { c.VolumeMounts = mounts; return c }
	p := newPod("init",
		withMounts(shell("app", "echo app >> /work/order; echo from-app > /host/from-app; exec sleep 3600")),
		withMounts(shell("sidecar", "echo sidecar > /work/sidecar; exec sleep 3600")),
	)
	p.Spec.InitContainers = []corev1.Container{
		withMounts(shell("init1", "sleep 1; echo init1 >> /work/order")),
		withMounts(shell("init2", "cat /work/order > /work/seen-by-init2; echo init2 >> /work/order")),
	}
	hostPathType := corev1.HostPathDirectory
	p.Spec.Volumes = []corev1.Volume{
		{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir, Type: &hostPathType}}},
	}
	n.add(t, p)
	pod := n.waitReady(t, "init")

	for _, name := range []string{"init1", "init2"} {
		cs := containerStatus(pod, name)
		if cs == nil || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 || cs.State.Terminated.Reason != "Completed" {
			t.Errorf("init container %s did not complete:\n%s", name, describe(pod))
		}
	}
	if got := n.exec(t, pod, "app", "cat", "/work/seen-by-init2"); got != "init1\n" {
		t.Errorf("init2 saw %q in the emptyDir, want init1's line only: init containers did not run in order", got)
	}
	framework.Eventually(t, 10*time.Second, func() (bool, string) {
		got := n.exec(t, pod, "sidecar", "cat", "/work/order")
		return got == "init1\ninit2\napp\n", fmt.Sprintf("emptyDir order file seen by the sidecar: %q", got)
	})
	if got := n.exec(t, pod, "app", "cat", "/work/sidecar"); got != "sidecar\n" {
		t.Errorf("app container sees %q from the sidecar in the shared emptyDir", got)
	}
	if got := n.exec(t, pod, "app", "cat", "/host/from-host"); got != "hello from the host\n" {
		t.Errorf("hostPath volume content %q", got)
	}
	if b, err := os.ReadFile(filepath.Join(hostDir, "from-app")); err != nil || string(b) != "from-app\n" {
		t.Errorf("the app's write to the hostPath volume is not on the host: %q, %v", b, err)
	}
	init2 := containerStatus(pod, "init2").State.Terminated
	for _, name := range []string{"app", "sidecar"} {
		cs := containerStatus(pod, name)
		if cs == nil || cs.State.Running == nil || cs.State.Running.StartedAt.Before(&init2.FinishedAt) {
			t.Errorf("%s did not start after the init containers finished:\n%s", name, describe(pod))
		}
	}
}

func (n *node) testProbes(t *testing.T) {
	t.Parallel()
	probe := func(h corev1.ProbeHandler) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: h, PeriodSeconds: 1, FailureThreshold: 2, TimeoutSeconds: 2}
	}
	web := shell("web", "mkdir -p /tmp/www && echo ok > /tmp/www/healthz && exec httpd -f -p 8081 -h /tmp/www")
	web.LivenessProbe = probe(corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intPort(8081)}})
	web.ReadinessProbe = probe(corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intPort(8081)}})
	ex := shell("exec", "touch /tmp/ready; exec sleep 3600")
	ex.ReadinessProbe = probe(corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/ready"}}})
	// A passing exec liveness probe must restart nothing. Each exec is a
	// runc exec, which takes seconds on a loaded CI machine: this probe
	// gets room for that (a timed-out probe is a failed one), so that a
	// restart means the runtime reported a failure, not that it was slow.
	ex.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}},
		PeriodSeconds: 2, FailureThreshold: 5, TimeoutSeconds: 10}
	g := corev1.Container{
		Name: "grpc", Image: grpcImage, ImagePullPolicy: corev1.PullIfNotPresent,
		Command: []string{"sh", "-c", "touch /tmp/healthy; exec grpchealth -addr :9090 -healthy /tmp/healthy"},
	}
	g.LivenessProbe = probe(corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090}})
	g.ReadinessProbe = probe(corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090}})
	n.add(t, newPod("probes", web, ex, g))
	pod := n.waitReady(t, "probes")

	// A failing readiness probe makes the container (and the pod) not
	// ready, and restarts nothing.
	n.exec(t, pod, "exec", "rm", "/tmp/ready")
	pod = n.waitPod(t, "probes", podTimeout, func(p *corev1.Pod) (bool, string) {
		cs := containerStatus(p, "exec")
		return !podReady(p) && cs != nil && !cs.Ready, "exec readiness probe failure not seen"
	})
	if cs := containerStatus(pod, "exec"); cs.RestartCount != 0 {
		t.Errorf("a failing readiness probe restarted the container:\n%s", describe(pod))
	}
	n.exec(t, pod, "exec", "touch", "/tmp/ready")
	pod = n.waitReady(t, "probes")

	// Failing HTTP and gRPC liveness probes restart their containers,
	// which then pass again.
	n.exec(t, pod, "web", "rm", "/tmp/www/healthz")
	n.exec(t, pod, "grpc", "rm", "/tmp/healthy")
	pod = n.waitPod(t, "probes", podTimeout, func(p *corev1.Pod) (bool, string) {
		w, g := containerStatus(p, "web"), containerStatus(p, "grpc")
		return w != nil && w.RestartCount >= 1 && g != nil && g.RestartCount >= 1 && podReady(p),
			"liveness probe failures did not restart web and grpc (and make them ready again)"
	})
	if cs := containerStatus(pod, "exec"); cs.RestartCount != 0 {
		t.Errorf("a passing exec liveness probe restarted its container:\n%s", describe(pod))
	}
	for _, name := range []string{"web", "grpc"} {
		if cs := containerStatus(pod, name); cs.LastTerminationState.Terminated == nil {
			t.Errorf("%s restarted without a last termination state:\n%s", name, describe(pod))
		}
	}
}

func intPort(p int32) intstr.IntOrString { return intstr.FromInt32(p) }

func (n *node) testCrashLoop(t *testing.T) {
	t.Parallel()
	n.add(t, newPod("crash", shell("crash", "echo crashing; exit 3")))
	pod := n.waitPod(t, "crash", 2*podTimeout, func(p *corev1.Pod) (bool, string) {
		cs := containerStatus(p, "crash")
		return cs != nil && cs.RestartCount >= 2 && cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff",
			"no CrashLoopBackOff after two restarts"
	})
	cs := containerStatus(pod, "crash")
	last := cs.LastTerminationState.Terminated
	if last == nil || last.ExitCode != 3 || last.Reason != "Error" {
		t.Errorf("last termination is not exit code 3 (Error):\n%s", describe(pod))
	}
	if pod.Status.Phase != corev1.PodRunning {
		t.Errorf("a crash-looping pod with restartPolicy Always is %s, want Running", pod.Status.Phase)
	}
}

func (n *node) testRestartPolicies(t *testing.T) {
	t.Parallel()
	never := newPod("never", shell("main", "exit 4"))
	never.Spec.RestartPolicy = corev1.RestartPolicyNever
	onFailure := newPod("onfailure", shell("main", "if [ -e /work/again ]; then echo second run; exit 0; fi; touch /work/again; exit 1"))
	onFailure.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	onFailure.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	onFailure.Spec.Volumes = []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	n.add(t, never)
	n.add(t, onFailure)

	pod := n.waitPod(t, "never", podTimeout, func(p *corev1.Pod) (bool, string) {
		return p.Status.Phase == corev1.PodFailed, "restartPolicy Never pod did not fail"
	})
	if cs := containerStatus(pod, "main"); cs.RestartCount != 0 || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 4 {
		t.Errorf("restartPolicy Never: want one run with exit code 4:\n%s", describe(pod))
	}
	pod = n.waitPod(t, "onfailure", podTimeout, func(p *corev1.Pod) (bool, string) {
		return p.Status.Phase == corev1.PodSucceeded, "restartPolicy OnFailure pod did not succeed"
	})
	if cs := containerStatus(pod, "main"); cs.RestartCount != 1 || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
		t.Errorf("restartPolicy OnFailure: want one restart after exit 1, then exit 0:\n%s", describe(pod))
	}
	// kubelet stops a completed pod's sandbox and keeps it as long as
	// the pod exists: it must hold no shim, netns pin or mount by then.
	for _, name := range []string{"never", "onfailure"} {
		p, _, err := n.kubelet.Pod(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		n.checkReleased(t, n.runtimeIDs(t, string(p.UID)))
	}
}

func (n *node) testOOMKilled(t *testing.T) {
	t.Parallel()
	c := shell("hog", "echo allocating; tail /dev/zero")
	c.Resources = limits("", "32Mi")
	p := newPod("oom", c)
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	n.add(t, p)
	pod := n.waitPod(t, "oom", podTimeout, func(p *corev1.Pod) (bool, string) {
		return p.Status.Phase == corev1.PodFailed, "pod over its memory limit did not fail"
	})
	term := containerStatus(pod, "hog").State.Terminated
	if term == nil || term.Reason != "OOMKilled" || term.ExitCode != 137 {
		t.Errorf("want OOMKilled with exit code 137:\n%s", describe(pod))
	}
}

func (n *node) testLimits(t *testing.T) {
	t.Parallel()
	c := shell("limited", "exec sleep 3600")
	c.Resources = limits("500m", "64Mi")
	n.add(t, newPod("limits", c))
	pod := n.waitReady(t, "limits")
	if pod.Status.QOSClass != corev1.PodQOSGuaranteed {
		t.Errorf("QoS class %s, want Guaranteed", pod.Status.QOSClass)
	}
	read := func(file string) string { return strings.TrimSpace(n.exec(t, pod, "limited", "cat", file)) }
	want := map[string]string{}
	if n.cgroup2 {
		want["/sys/fs/cgroup/memory.max"] = "67108864"
		want["/sys/fs/cgroup/cpu.max"] = "50000 100000"
	} else {
		want["/sys/fs/cgroup/memory/memory.limit_in_bytes"] = "67108864"
		want["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"] = "50000"
		want["/sys/fs/cgroup/cpu/cpu.cfs_period_us"] = "100000"
		want["/sys/fs/cgroup/cpu/cpu.shares"] = "512"
	}
	for file, v := range want {
		if got := read(file); got != v {
			t.Errorf("%s in the container = %q, want %q", file, got, v)
		}
	}
	// The container runs in the pod cgroup kubelet made for it, as the
	// node sees it.
	cg := n.hostCgroup(t, containerID(t, pod, "limited"))
	uid := string(pod.UID)
	if !strings.Contains(cg, "pod"+uid) && !strings.Contains(cg, "pod"+strings.ReplaceAll(uid, "-", "_")) {
		t.Errorf("container is not in its pod's cgroup (pod%s):\n%s", uid, cg)
	}
	// On cgroup v2 an unprivileged container has a cgroup namespace of
	// its own: its cgroup is its root, so it sees nothing of the node's.
	if own := n.exec(t, pod, "limited", "cat", "/proc/self/cgroup"); n.cgroup2 && strings.TrimSpace(own) != "0::/" {
		t.Errorf("/proc/self/cgroup in the container = %q, want 0::/ (a cgroup namespace of its own)", own)
	}
}

// hostCgroup is /proc/PID/cgroup of the container's process as the node
// sees it (the runtime's verbose status names the pid).
func (n *node) hostCgroup(t *testing.T, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := n.env.Daemon.Runtime().ContainerStatus(ctx, id, true)
	if err != nil {
		t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil || info.Pid == 0 {
		t.Fatalf("no pid in the verbose status of %s: %v %q", id, err, st.GetInfo()["info"])
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", info.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (n *node) testGracePeriod(t *testing.T) {
	t.Parallel()
	events := t.TempDir()
	c := shell("term", `echo started >> /events/log
trap 'echo TERM >> /events/log; while true; do echo tick >> /events/log; sleep 0.5; done' TERM
while true; do sleep 0.2; done`)
	c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo prestop >> /events/log"}}}}
	c.VolumeMounts = []corev1.VolumeMount{{Name: "events", MountPath: "/events"}}
	p := newPod("grace", c)
	grace := int64(4)
	p.Spec.TerminationGracePeriodSeconds = &grace
	p.Spec.Volumes = []corev1.Volume{{Name: "events", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: events}}}}
	if err := n.kubelet.AddPod(p); err != nil {
		t.Fatal(err)
	}
	n.waitReady(t, "grace")
	removed := time.Now()
	n.remove(t, "grace")
	took := time.Since(removed)
	log, err := os.ReadFile(filepath.Join(events, "log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	ticks := strings.Count(string(log), "tick")
	t.Logf("teardown took %s; the container wrote %q", took.Round(time.Millisecond), lines)
	if len(lines) < 3 || lines[0] != "started" || lines[1] != "prestop" || lines[2] != "TERM" {
		t.Fatalf("want started, prestop (the hook), then TERM; got %q", lines)
	}
	// The container ignored SIGTERM: it ran on for the grace period
	// (a tick every 0.5 s) and was then killed, not left running.
	if ticks < 4 {
		t.Errorf("only %d ticks after SIGTERM: the container was killed before its %ds grace period", ticks, grace)
	}
	time.Sleep(time.Second)
	if after, _ := os.ReadFile(filepath.Join(events, "log")); len(after) != len(log) {
		t.Errorf("the container still runs after its pod was removed")
	}
}

func (n *node) testLogRotation(t *testing.T) {
	t.Parallel()
	// ~30 KiB/s: kubelet (containerLogMaxSize 64Ki, checked every 3 s)
	// rotates every few seconds.
	c := shell("chatty", `i=0; pad=$(head -c 200 /dev/zero | tr '\0' x)
while true; do echo "line $i $pad"; i=$((i+1)); sleep 0.005; done`)
	n.add(t, newPod("logs", c))
	pod := n.waitReady(t, "logs")
	dir := filepath.Join(n.kubelet.PodLogsDir, fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID), "chatty")
	current := filepath.Join(dir, "0.log")
	var rotated []string
	framework.Eventually(t, podTimeout, func() (bool, string) {
		entries, _ := os.ReadDir(dir)
		rotated = rotated[:0]
		for _, e := range entries {
			if e.Name() != "0.log" && strings.HasPrefix(e.Name(), "0.log.") {
				rotated = append(rotated, e.Name())
			}
		}
		return len(rotated) >= 2, fmt.Sprintf("rotated logs in %s: %v", dir, rotated)
	})
	// After rotation the container's output goes to the new 0.log
	// (kubelet asked the runtime to ReopenContainerLog), and it is CRI
	// log format with later lines than the rotated files.
	var last string
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		// Between kubelet's rename and the runtime's reopen there is no
		// 0.log for a moment.
		if _, err := os.Stat(current); err != nil {
			return false, err.Error()
		}
		lines := framework.ReadCRILines(t, current)
		if len(lines) < 10 {
			return false, fmt.Sprintf("%s has %d lines after rotation", current, len(lines))
		}
		last = string(lines[len(lines)-1].Content)
		return true, ""
	})
	var first int
	if _, err := fmt.Sscanf(last, "line %d", &first); err != nil || first < 100 {
		t.Errorf("last line of the current log %q: the log after rotation does not continue the output", last)
	}
	if n := len(rotated); n > 2+1 {
		t.Errorf("%d rotated files kept, want at most containerLogMaxFiles-1 = 2: %v", n, rotated)
	}
}

// testStatsSummary checks kubelet's /stats/summary for a busy pod. With
// PodAndContainerStatsFromCRI kubelet takes everything from
// ListPodSandboxStats and ListContainerStats; without it, the pod's
// network figures come from cAdvisor only, which knows the sandbox
// cgroups of containerd and CRI-O through their own APIs and nobody
// else's, so then they are absent for any other runtime.
func (n *node) testStatsSummary(t *testing.T) {
	t.Parallel()
	fromCRI := n.gates["PodAndContainerStatsFromCRI"]
	c := shell("busy", `dd if=/dev/zero of=/big bs=1M count=4 2>/dev/null; echo some log output
mkdir -p /tmp/www && echo stats > /tmp/www/index.html && httpd -p 8082 -h /tmp/www
while true; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; sleep 0.1; done`)
	c.Resources = limits("", "128Mi")
	n.add(t, newPod("stats", c))
	pod := n.waitReady(t, "stats")
	for range 5 {
		httpGet(t, fmt.Sprintf("http://%s:8082/index.html", pod.Status.PodIP))
	}
	var msg string
	framework.Eventually(t, podTimeout, func() (bool, string) {
		s, err := n.kubelet.StatsSummary(t.Context())
		if err != nil {
			return false, err.Error()
		}
		var problems []string
		check := func(ok bool, what string) {
			if !ok {
				problems = append(problems, what)
			}
		}
		found := false
		for _, ps := range s.Pods {
			if ps.PodRef.UID != string(pod.UID) {
				continue
			}
			found = true
			check(ps.CPU != nil && ps.CPU.UsageCoreNanoSeconds != nil && *ps.CPU.UsageCoreNanoSeconds > 0, "pod cpu")
			check(ps.Memory != nil && ps.Memory.WorkingSetBytes != nil && *ps.Memory.WorkingSetBytes > 0, "pod memory")
			if fromCRI {
				check(ps.Network != nil && ps.Network.RxBytes != nil && *ps.Network.RxBytes > 0, "pod network rx")
				check(ps.Network != nil && ps.Network.TxBytes != nil && *ps.Network.TxBytes > 0, "pod network tx")
			}
			check(ps.EphemeralStorage != nil && ps.EphemeralStorage.UsedBytes != nil && *ps.EphemeralStorage.UsedBytes > 0, "pod ephemeral storage")
			if len(ps.Containers) != 1 {
				problems = append(problems, fmt.Sprintf("%d containers", len(ps.Containers)))
				continue
			}
			cs := ps.Containers[0]
			check(cs.CPU != nil && cs.CPU.UsageNanoCores != nil && *cs.CPU.UsageNanoCores > 0, "container cpu usageNanoCores")
			check(cs.Memory != nil && cs.Memory.WorkingSetBytes != nil && *cs.Memory.WorkingSetBytes > 0, "container memory working set")
			check(cs.Rootfs != nil && cs.Rootfs.UsedBytes != nil && *cs.Rootfs.UsedBytes >= 4<<20, "container rootfs used (4 MiB written)")
			check(cs.Logs != nil && cs.Logs.UsedBytes != nil && *cs.Logs.UsedBytes > 0, "container logs used")
		}
		if !found {
			problems = append(problems, "pod not in /stats/summary")
		}
		msg = fmt.Sprintf("missing or zero in /stats/summary: %v", problems)
		return len(problems) == 0, msg
	})
	// Errors of the stats RPCs; cAdvisor's own ("unable to find data in
	// memory cache" for a container it has not sampled yet) are not the
	// runtime's.
	if errs := n.kubeletErrors("ListContainerStats", "ListPodSandboxStats", "PodSandboxStats", "ContainerStats", "ImageFsInfo"); len(errs) > 0 {
		t.Errorf("kubelet logged stats errors:\n%s", strings.Join(errs, "\n"))
	}
}
