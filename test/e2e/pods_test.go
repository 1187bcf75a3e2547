//go:build e2e

package e2e

import (
	"encoding/json"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim/crilog"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// The image every pod test runs: busybox with Cmd ["sh"].
const bb = "busybox"

// podEnv starts a registry and a daemon able to run pods and pulls
// busybox into it.
func podEnv(t *testing.T, opts ...framework.Option) (*framework.Env, *framework.Daemon) {
	t.Helper()
	env := framework.NewPodEnv(t, opts...)
	env.PushImage(t, bb)
	return env, env.Daemon
}

// sleeper is a container that runs until stopped.
func sleeper(name string) *runtimeapi.ContainerConfig {
	return framework.ContainerConfig(name, bb, "sleep", "100000")
}

// wantCode fails unless err is a gRPC status with code c whose message
// contains every one of parts.
func wantCode(t *testing.T, what string, err error, c codes.Code, parts ...string) {
	t.Helper()
	if status.Code(err) != c {
		t.Errorf("%s: got error %v (code %s), want code %s", what, err, status.Code(err), c)
		return
	}
	for _, p := range parts {
		if !strings.Contains(status.Convert(err).Message(), p) {
			t.Errorf("%s: error %q does not mention %q", what, status.Convert(err).Message(), p)
		}
	}
}

// verboseInfo decodes the "info" JSON of a verbose status.
func verboseInfo(t *testing.T, info map[string]string) map[string]any {
	t.Helper()
	raw, ok := info["info"]
	if !ok {
		t.Fatalf("verbose status has no \"info\" key: %v", info)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("verbose info is not JSON: %v: %s", err, raw)
	}
	return m
}

// infoPid is the "pid" of a verbose info; it must be a live process.
func infoPid(t *testing.T, info map[string]string) int {
	t.Helper()
	m := verboseInfo(t, info)
	pid, _ := m["pid"].(float64)
	if pid <= 0 {
		t.Fatalf("verbose info has no pid: %v", m)
	}
	if _, err := os.Stat("/proc/" + strings.TrimSpace(jsonNum(pid))); err != nil {
		t.Fatalf("verbose info pid %v is not a running process", pid)
	}
	return int(pid)
}

func jsonNum(f float64) string { b, _ := json.Marshal(f); return string(b) }

// TestPodSharedNamespaces runs a pod as kubelet does for a two-container
// pod: the containers share the network (localhost) and IPC (/dev/shm)
// namespaces, see the pod's hostname, and get /etc/resolv.conf from the
// pod's DNS config and an /etc/hosts with localhost.
func TestPodSharedNamespaces(t *testing.T) {
	_, d := podEnv(t)
	pc := framework.PodConfig("web",
		framework.WithHostname("web-0"),
		framework.WithDNS([]string{"10.96.0.10", "10.96.0.11"},
			[]string{"ns1.svc.cluster.local", "svc.cluster.local"},
			[]string{"ndots:5", "timeout:1"}))
	pod := d.RunPod(t, pc)

	st := d.PodStatus(t, pod)
	if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod state %s, want SANDBOX_READY", st.Status.State)
	}
	if st.Status.Id != pod || st.Status.Metadata.GetUid() != pc.Metadata.Uid || st.Status.CreatedAt == 0 {
		t.Errorf("pod status id %q uid %q created %d, want %s, %s and a creation time", st.Status.Id, st.Status.Metadata.GetUid(), st.Status.CreatedAt, pod, pc.Metadata.Uid)
	}
	infoPid(t, st.Info)

	server := framework.Shell("server", bb,
		`mkdir -p /www && echo hello-from-server > /www/index.html && echo ipc-marker > /dev/shm/marker && exec httpd -f -p 127.0.0.1:8080 -h /www`)
	d.CreateStarted(t, pod, server, pc)
	client := d.CreateStarted(t, pod, sleeper("client"), pc)

	// localhost: the server listens on 127.0.0.1 of the pod only.
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		r := d.Exec(t, client, 10*time.Second, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html")
		return r.ExitCode == 0 && r.Stdout == "hello-from-server\n", "wget from the client: " + r.Stdout + r.Stderr
	})
	// IPC: the server's /dev/shm file is visible to the client.
	if got := d.ExecOK(t, client, "cat", "/dev/shm/marker"); got != "ipc-marker\n" {
		t.Errorf("/dev/shm/marker in the other container = %q, want ipc-marker", got)
	}
	if got := d.ExecOK(t, client, "hostname"); got != "web-0\n" {
		t.Errorf("hostname = %q, want web-0", got)
	}

	resolv := d.ExecOK(t, client, "cat", "/etc/resolv.conf")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^nameserver 10\.96\.0\.10$`),
		regexp.MustCompile(`(?m)^nameserver 10\.96\.0\.11$`),
		regexp.MustCompile(`(?m)^search ns1\.svc\.cluster\.local svc\.cluster\.local$`),
		regexp.MustCompile(`(?m)^options ndots:5 timeout:1$`),
	} {
		if !want.MatchString(resolv) {
			t.Errorf("/etc/resolv.conf does not match %s:\n%s", want, resolv)
		}
	}
	hosts := d.ExecOK(t, client, "cat", "/etc/hosts")
	if !regexp.MustCompile(`(?m)^127\.0\.0\.1\s+(.*\s)?localhost(\s|$)`).MatchString(hosts) {
		t.Errorf("/etc/hosts has no 127.0.0.1 localhost line:\n%s", hosts)
	}
}

// TestListPodSandboxFilters checks ListPodSandbox and StreamPodSandboxes
// filters: by ID and unique ID prefix, by state, by labels.
func TestListPodSandboxFilters(t *testing.T) {
	_, d := podEnv(t)
	cfgA := framework.PodConfig("a", framework.WithPodLabels(map[string]string{"app": "x", "tier": "front"}))
	cfgB := framework.PodConfig("b", framework.WithPodLabels(map[string]string{"app": "x", "tier": "back"}))
	cfgC := framework.PodConfig("c", framework.WithPodLabels(map[string]string{"app": "y"}))
	a, b, c := d.RunPod(t, cfgA), d.RunPod(t, cfgB), d.RunPod(t, cfgC)
	ctx := testCtx(t)
	if err := d.Runtime().StopPodSandbox(ctx, c); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	ready := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}
	notReady := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}
	for _, tc := range []struct {
		name   string
		filter *runtimeapi.PodSandboxFilter
		want   []string
	}{
		{"none", nil, []string{a, b, c}},
		{"id", &runtimeapi.PodSandboxFilter{Id: b}, []string{b}},
		{"id prefix", &runtimeapi.PodSandboxFilter{Id: b[:12]}, []string{b}},
		{"unknown id", &runtimeapi.PodSandboxFilter{Id: strings.Repeat("0", 64)}, nil},
		{"ready", &runtimeapi.PodSandboxFilter{State: ready}, []string{a, b}},
		{"not ready", &runtimeapi.PodSandboxFilter{State: notReady}, []string{c}},
		{"label", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "x"}}, []string{a, b}},
		{"two labels", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "x", "tier": "back"}}, []string{b}},
		{"label and state", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "y"}, State: ready}, nil},
		{"id and state", &runtimeapi.PodSandboxFilter{Id: c, State: notReady}, []string{c}},
		{"id and other state", &runtimeapi.PodSandboxFilter{Id: c, State: ready}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			list, err := d.Runtime().ListPodSandbox(testCtx(t), tc.filter)
			if err != nil {
				t.Fatalf("ListPodSandbox: %v", err)
			}
			var got []string
			for _, p := range list {
				got = append(got, p.Id)
				if p.Id == a && (p.Metadata.GetName() != "a" || p.Labels["tier"] != "front" || p.CreatedAt == 0 || p.State != runtimeapi.PodSandboxState_SANDBOX_READY) {
					t.Errorf("pod a listed as %v", p)
				}
			}
			if !sameSet(got, tc.want) {
				t.Errorf("ListPodSandbox = %v, want %v", got, tc.want)
			}

			stream, err := d.RuntimeClient().StreamPodSandboxes(testCtx(t), &runtimeapi.StreamPodSandboxesRequest{Filter: tc.filter})
			if err != nil {
				t.Fatalf("StreamPodSandboxes: %v", err)
			}
			var streamed []string
			for {
				resp, err := stream.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("StreamPodSandboxes: %v", err)
				}
				for _, p := range resp.PodSandboxes {
					streamed = append(streamed, p.Id)
				}
			}
			if !sameSet(streamed, tc.want) {
				t.Errorf("StreamPodSandboxes = %v, want %v", streamed, tc.want)
			}
		})
	}
}

// TestPodLifecycleErrors checks what kubelet retries and relies on:
// idempotent stop and remove, NotFound for unknown IDs, AlreadyExists
// naming the existing pod, no container in a stopped pod, and that
// removing a pod removes its containers.
func TestPodLifecycleErrors(t *testing.T) {
	_, d := podEnv(t)
	ctx := testCtx(t)
	rs := d.Runtime()
	unknown := strings.Repeat("ab", 32)

	pc := framework.PodConfig("dup")
	pod := d.RunPod(t, pc)

	// Same metadata again: AlreadyExists, naming the pod that holds it.
	_, err := rs.RunPodSandbox(ctx, pc, "")
	wantCode(t, "RunPodSandbox with the metadata of a running pod", err, codes.AlreadyExists, pod)

	ctr := d.CreateStarted(t, pod, sleeper("c"), pc)
	// Same container name in the same pod: AlreadyExists naming it.
	_, err = rs.CreateContainer(ctx, pod, sleeper("c"), pc)
	wantCode(t, "CreateContainer with the name of an existing container", err, codes.AlreadyExists, ctr)

	// Unknown IDs.
	_, err = rs.PodSandboxStatus(ctx, unknown, false)
	wantCode(t, "PodSandboxStatus(unknown)", err, codes.NotFound)
	_, err = rs.ContainerStatus(ctx, unknown, false)
	wantCode(t, "ContainerStatus(unknown)", err, codes.NotFound)
	if err := rs.StopPodSandbox(ctx, unknown); err != nil {
		t.Errorf("StopPodSandbox(unknown) = %v, want success", err)
	}
	if err := rs.RemovePodSandbox(ctx, unknown); err != nil {
		t.Errorf("RemovePodSandbox(unknown) = %v, want success", err)
	}
	if err := rs.StopContainer(ctx, unknown, 0); err != nil {
		t.Errorf("StopContainer(unknown) = %v, want success", err)
	}
	if err := rs.RemoveContainer(ctx, unknown); err != nil {
		t.Errorf("RemoveContainer(unknown) = %v, want success", err)
	}
	_, err = rs.CreateContainer(ctx, unknown, sleeper("x"), pc)
	wantCode(t, "CreateContainer in an unknown pod", err, codes.NotFound)

	// Stop twice: both succeed, the pod is NOTREADY, its container exited.
	for i := range 2 {
		if err := rs.StopPodSandbox(ctx, pod); err != nil {
			t.Fatalf("StopPodSandbox #%d: %v", i+1, err)
		}
	}
	if st := d.PodStatus(t, pod); st.Status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod state after stop = %s, want SANDBOX_NOTREADY", st.Status.State)
	}
	if st := d.ContainerStatus(t, ctr).Status; st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("container state after pod stop = %s, want CONTAINER_EXITED", st.State)
	}
	// No new container in a stopped pod.
	if _, err := rs.CreateContainer(ctx, pod, sleeper("late"), pc); err == nil {
		t.Errorf("CreateContainer in a stopped pod succeeded")
	} else if c := status.Code(err); c == codes.OK || c == codes.Unknown {
		t.Errorf("CreateContainer in a stopped pod: %v: want a specific code (FailedPrecondition)", err)
	}

	// The name is held until the pod is removed.
	_, err = rs.RunPodSandbox(ctx, pc, "")
	wantCode(t, "RunPodSandbox with the metadata of a stopped pod", err, codes.AlreadyExists, pod)

	// Remove a pod whose container runs: the container is stopped and
	// removed with it.
	pc2 := framework.PodConfig("running")
	pod2 := d.RunPod(t, pc2)
	ctr2 := d.CreateStarted(t, pod2, sleeper("c"), pc2)
	pid := infoPid(t, d.ContainerStatus(t, ctr2).Info)
	for _, id := range []string{pod, pod2} {
		for i := range 2 {
			if err := rs.RemovePodSandbox(ctx, id); err != nil {
				t.Fatalf("RemovePodSandbox(%s) #%d: %v", id, i+1, err)
			}
		}
		_, err = rs.PodSandboxStatus(ctx, id, false)
		wantCode(t, "PodSandboxStatus of a removed pod", err, codes.NotFound)
	}
	for _, id := range []string{ctr, ctr2} {
		_, err = rs.ContainerStatus(ctx, id, false)
		wantCode(t, "ContainerStatus of a container of a removed pod", err, codes.NotFound)
	}
	if list, err := rs.ListContainers(ctx, nil); err != nil || len(list) != 0 {
		t.Errorf("ListContainers after removing every pod = %v, %v; want none", list, err)
	}
	if _, err := os.Stat("/proc/" + jsonNum(float64(pid))); err == nil {
		t.Errorf("process %d of the container of the removed pod still runs", pid)
	}
	// Its name is free again.
	again := d.RunPod(t, pc)
	if again == pod {
		t.Errorf("a new pod with the metadata of a removed one got the old ID")
	}
}

// TestInvalidConfigs checks that malformed requests fail with
// InvalidArgument naming the field, before anything is created.
func TestInvalidConfigs(t *testing.T) {
	_, d := podEnv(t)
	pc := framework.PodConfig("valid")
	pod := d.RunPod(t, pc)
	ctx := testCtx(t)

	for _, tc := range []struct {
		name  string
		cfg   *runtimeapi.PodSandboxConfig
		field string
	}{
		{"nil config", nil, "config"},
		{"no metadata", func() *runtimeapi.PodSandboxConfig { c := framework.PodConfig("x"); c.Metadata = nil; return c }(), "metadata"},
		{"no name", func() *runtimeapi.PodSandboxConfig { c := framework.PodConfig(""); return c }(), "name"},
		{"no uid", func() *runtimeapi.PodSandboxConfig { c := framework.PodConfig("x"); c.Metadata.Uid = ""; return c }(), "uid"},
		{"no namespace", func() *runtimeapi.PodSandboxConfig {
			c := framework.PodConfig("x")
			c.Metadata.Namespace = ""
			return c
		}(), "namespace"},
	} {
		if tc.cfg != nil {
			t.Cleanup(func() { os.RemoveAll(tc.cfg.LogDirectory) })
		}
		t.Run("pod "+tc.name, func(t *testing.T) {
			_, err := d.RuntimeClient().RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: tc.cfg})
			wantCode(t, "RunPodSandbox", err, codes.InvalidArgument, tc.field)
		})
	}

	for _, tc := range []struct {
		name  string
		cfg   func() *runtimeapi.ContainerConfig
		field string
	}{
		{"nil config", func() *runtimeapi.ContainerConfig { return nil }, "config"},
		{"no metadata", func() *runtimeapi.ContainerConfig { c := sleeper("x"); c.Metadata = nil; return c }, "metadata"},
		{"no name", func() *runtimeapi.ContainerConfig { return sleeper("") }, "name"},
		{"no image", func() *runtimeapi.ContainerConfig { c := sleeper("x"); c.Image = nil; return c }, "image"},
		{"empty image", func() *runtimeapi.ContainerConfig { c := sleeper("x"); c.Image.Image = ""; return c }, "image"},
		{"relative container path", func() *runtimeapi.ContainerConfig {
			c := sleeper("x")
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "data", HostPath: t.TempDir()}}
			return c
		}, "container_path"},
		{"relative host path", func() *runtimeapi.ContainerConfig {
			c := sleeper("x")
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "relative/dir"}}
			return c
		}, "host_path"},
	} {
		t.Run("container "+tc.name, func(t *testing.T) {
			_, err := d.RuntimeClient().CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: tc.cfg(), SandboxConfig: pc})
			wantCode(t, "CreateContainer", err, codes.InvalidArgument, tc.field)
		})
	}

	// Nothing was created by the failed requests.
	if list, err := d.Runtime().ListContainers(ctx, nil); err != nil || len(list) != 0 {
		t.Errorf("ListContainers after invalid requests = %v, %v; want none", list, err)
	}
	if list, err := d.Runtime().ListPodSandbox(ctx, nil); err != nil || len(list) != 1 {
		t.Errorf("ListPodSandbox after invalid requests = %v, %v; want only the valid pod", list, err)
	}
}

// TestIDPrefixes checks the ID format and that a unique prefix is
// accepted by every RPC taking an ID, as crictl expects.
func TestIDPrefixes(t *testing.T) {
	_, d := podEnv(t)
	pc := framework.PodConfig("prefix")
	pod := d.RunPod(t, pc)
	ctr := d.CreateContainer(t, pod, sleeper("c"), pc)
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for _, id := range []string{pod, ctr} {
		if !hex64.MatchString(id) {
			t.Errorf("ID %q is not 64 lowercase hex characters", id)
		}
	}
	pp, cp := pod[:10], ctr[:10]
	ctx := testCtx(t)
	rs := d.Runtime()

	if st, err := rs.PodSandboxStatus(ctx, pp, false); err != nil || st.Status.Id != pod {
		t.Errorf("PodSandboxStatus(prefix) = %v, %v; want pod %s", st.GetStatus().GetId(), err, pod)
	}
	if err := rs.StartContainer(ctx, cp); err != nil {
		t.Fatalf("StartContainer(prefix): %v", err)
	}
	if st, err := rs.ContainerStatus(ctx, cp, false); err != nil || st.Status.Id != ctr || st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("ContainerStatus(prefix) = %v, %v; want running container %s", st.GetStatus(), err, ctr)
	}
	if out, _, err := rs.ExecSync(ctx, cp, []string{"echo", "ok"}, 10*time.Second); err != nil || string(out) != "ok\n" {
		t.Errorf("ExecSync(prefix) = %q, %v", out, err)
	}
	if list, err := rs.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: pp}); err != nil || len(list) != 1 || list[0].Id != ctr {
		t.Errorf("ListContainers(pod prefix) = %v, %v", list, err)
	}
	if list, err := rs.ListContainers(ctx, &runtimeapi.ContainerFilter{Id: cp}); err != nil || len(list) != 1 || list[0].Id != ctr {
		t.Errorf("ListContainers(id prefix) = %v, %v", list, err)
	}
	if err := rs.ReopenContainerLog(ctx, cp); err != nil {
		t.Errorf("ReopenContainerLog(prefix): %v", err)
	}
	if err := rs.StopContainer(ctx, cp, 1); err != nil {
		t.Errorf("StopContainer(prefix): %v", err)
	}
	d.WaitExited(t, ctr, 30*time.Second)
	if err := rs.RemoveContainer(ctx, cp); err != nil {
		t.Errorf("RemoveContainer(prefix): %v", err)
	}
	if _, err := rs.ContainerStatus(ctx, ctr, false); status.Code(err) != codes.NotFound {
		t.Errorf("ContainerStatus after RemoveContainer(prefix) = %v, want NotFound", err)
	}
	if err := rs.StopPodSandbox(ctx, pp); err != nil {
		t.Errorf("StopPodSandbox(prefix): %v", err)
	}
	if st := d.PodStatus(t, pod); st.Status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod state after StopPodSandbox(prefix) = %s", st.Status.State)
	}
	if err := rs.RemovePodSandbox(ctx, pp); err != nil {
		t.Errorf("RemovePodSandbox(prefix): %v", err)
	}
	if _, err := rs.PodSandboxStatus(ctx, pod, false); status.Code(err) != codes.NotFound {
		t.Errorf("PodSandboxStatus after RemovePodSandbox(prefix) = %v, want NotFound", err)
	}
}

// TestAmbiguousPrefix checks that a prefix matching two pods is not
// resolved to either (any error but success).
func TestAmbiguousPrefix(t *testing.T) {
	_, d := podEnv(t)
	ids := map[string]bool{}
	// Two hex IDs share their first character with probability 1/16 per
	// pair: 40 pods make a shared first character certain.
	var shared string
	for i := 0; shared == "" && i < 40; i++ {
		id := d.RunPod(t, framework.PodConfig("p"+jsonNum(float64(i))))
		if ids[id[:1]] {
			shared = id[:1]
		}
		ids[id[:1]] = true
	}
	if shared == "" {
		t.Fatal("no two pods share a first ID character")
	}
	st, err := d.Runtime().PodSandboxStatus(testCtx(t), shared, false)
	if err == nil {
		t.Errorf("PodSandboxStatus(ambiguous prefix %q) = pod %s, want an error", shared, st.Status.Id)
	}
}

// TestNothingLeaks runs pods with running, exited and exec'd containers
// and removes them: no mount, netns pin, cgroup, shim, runc state, pod
// directory or container snapshot may remain.
func TestNothingLeaks(t *testing.T) {
	_, d := podEnv(t)
	before := d.Leaks(t)
	rs := d.Runtime()
	ctx := testCtx(t)
	hostDir := t.TempDir()

	var pods []string
	for i, name := range []string{"leak-a", "leak-b"} {
		pc := framework.PodConfig(name)
		pod := d.RunPod(t, pc)
		pods = append(pods, pod)
		run := sleeper("run")
		run.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: hostDir}}
		c := d.CreateStarted(t, pod, run, pc)
		d.ExecOK(t, c, "true")
		done := d.CreateStarted(t, pod, framework.ContainerConfig("done", bb, "true"), pc)
		d.WaitExited(t, done, 30*time.Second)
		d.CreateContainer(t, pod, framework.ContainerConfig("created", bb, "true"), pc)
		if i == 0 {
			// One pod is stopped first, as kubelet does; the other is
			// removed while running.
			if err := rs.StopPodSandbox(ctx, pod); err != nil {
				t.Fatalf("StopPodSandbox: %v", err)
			}
		}
	}
	during := before.New(d.Leaks(t))
	if len(during) == 0 {
		t.Fatalf("Leaks sees nothing of two running pods: the check is blind")
	}
	for _, pod := range pods {
		if err := rs.RemovePodSandbox(ctx, pod); err != nil {
			t.Fatalf("RemovePodSandbox: %v", err)
		}
	}
	d.CheckNoLeaks(t, before, 30*time.Second)
	if entries, _ := os.ReadDir(hostDir); len(entries) != 0 {
		t.Errorf("host path holds %v after the pods went", entries)
	}
}

// TestStoppedPodReleasesResources follows kubelet rather than critest:
// kubelet stops a pod and removes it only in its garbage collection a
// minute later, and never removes the last sandbox of a completed pod
// that still exists (a Job's). A stopped pod must therefore hold no
// process, netns pin or mount until then, while its record and its
// containers' exit states stay listed, also across a daemon restart.
func TestStoppedPodReleasesResources(t *testing.T) {
	_, d := podEnv(t)
	before := d.Leaks(t)
	rs := d.Runtime()
	ctx := testCtx(t)

	pc := framework.PodConfig("job")
	pod := d.RunPod(t, pc)
	done := d.CreateStarted(t, pod, framework.Shell("done", bb, "echo finished; exit 3"), pc)
	d.WaitExited(t, done, 30*time.Second)
	running := d.CreateStarted(t, pod, sleeper("running"), pc)
	if err := rs.StopContainer(ctx, running, 0); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if err := rs.StopPodSandbox(ctx, pod); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	check := func(when string) {
		t.Helper()
		var held []string
		for _, l := range before.New(d.Leaks(t)) {
			// The pod's directory and the containers' rootfs snapshots
			// wait for RemovePodSandbox and RemoveContainer.
			if !strings.HasPrefix(l, framework.LeakPodDirs) && !strings.HasPrefix(l, framework.LeakSnapshots) {
				held = append(held, l)
			}
		}
		if len(held) > 0 {
			t.Errorf("%s, a stopped pod still holds:\n  %s", when, strings.Join(held, "\n  "))
		}
		if st := d.PodStatus(t, pod).GetStatus(); st.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("%s: pod is %s, want NOTREADY", when, st.GetState())
		}
		if st := d.ContainerStatus(t, done).GetStatus(); st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 3 {
			t.Errorf("%s: container done is %s with exit code %d, want EXITED with 3", when, st.GetState(), st.GetExitCode())
		}
		if got := framework.StreamText(framework.ReadCRILines(t, framework.LogPath(pc, framework.ContainerConfig("done", bb))), crilog.Stdout); got != "finished\n" {
			t.Errorf("%s: log of done = %q", when, got)
		}
	}
	check("after StopPodSandbox")
	// kubelet repeats StopPodSandbox (terminating pod, then GC).
	if err := rs.StopPodSandbox(ctx, pod); err != nil {
		t.Fatalf("second StopPodSandbox: %v", err)
	}
	d.Restart(t)
	rs = d.Runtime()
	check("after a daemon restart")
	for _, c := range []string{done, running} {
		if err := rs.RemoveContainer(ctx, c); err != nil {
			t.Fatalf("RemoveContainer: %v", err)
		}
	}
	if err := rs.RemovePodSandbox(ctx, pod); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	d.CheckNoLeaks(t, before, 30*time.Second)
}
