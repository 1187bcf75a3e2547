//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// nriRecord is one event the recorder plugin (test/nriplugin) wrote.
type nriRecord struct {
	Event      string            `json:"event"`
	Pod        *api.PodSandbox   `json:"pod"`
	Container  *api.Container    `json:"container"`
	Pods       []*api.PodSandbox `json:"pods"`
	Containers []*api.Container  `json:"containers"`
	Extra      map[string]any    `json:"extra"`
}

// readNRIRecords reads what a recorder wrote so far.
func readNRIRecords(t *testing.T, path string) []nriRecord {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []nriRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var r nriRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("record %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// startRecorder connects a recorder plugin to d and returns the file it
// writes.
func startRecorder(t *testing.T, d *framework.Daemon, idx string) (*framework.NRIPlugin, string) {
	t.Helper()
	out := filepath.Join(d.Dir, "nri-"+idx+"-recorder.jsonl")
	return d.StartNRIPlugin(t, idx, "recorder", "-role", "recorder", "-out", out), out
}

// eventsOf is the events of one pod (and its containers), as
// "Event" or "Event:container-name".
func eventsOf(recs []nriRecord, podID string) []string {
	var out []string
	for _, r := range recs {
		if r.Pod.GetId() != podID {
			continue
		}
		e := r.Event
		if r.Container != nil {
			e += ":" + r.Container.GetName()
		}
		out = append(out, e)
	}
	return out
}

func findRecord(recs []nriRecord, event, ctrName string) *nriRecord {
	for i := range recs {
		if recs[i].Event == event && (ctrName == "" || recs[i].Container.GetName() == ctrName) {
			return &recs[i]
		}
	}
	return nil
}

// TestNRIEventsOfAPodLifecycle: a plugin sees every event of a pod with
// two containers through its whole life, in order and with the content
// containerd gives plugins.
func TestNRIEventsOfAPodLifecycle(t *testing.T) {
	_, d := podEnv(t)
	_, out := startRecorder(t, d, "10")
	ctx := testCtx(t)

	pc := framework.PodConfig("nri-life", framework.WithPodLabels(map[string]string{"app": "nri"}))
	pc.Annotations = map[string]string{"pod-note": "hello"}
	pod := d.RunPod(t, pc)
	first := sleeper("first")
	first.Envs = []*runtimeapi.KeyValue{{Key: "FROM_CRI", Value: []byte("yes")}}
	first.Labels = map[string]string{"ctr": "first"}
	c1 := d.CreateStarted(t, pod, first, pc)
	c2 := d.CreateStarted(t, pod, framework.Shell("second", bb, "sleep 1; exit 3"), pc)
	if err := d.Runtime().UpdateContainerResources(ctx, c1, &runtimeapi.ContainerResources{Linux: &runtimeapi.LinuxContainerResources{CpuShares: 300}}); err != nil {
		t.Fatalf("UpdateContainerResources: %v", err)
	}
	if _, err := d.RuntimeClient().UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{
		PodSandboxId: pod, Resources: &runtimeapi.LinuxContainerResources{CpuShares: 1024},
	}); err != nil {
		t.Fatalf("UpdatePodSandboxResources: %v", err)
	}
	d.WaitExited(t, c2, 30*time.Second)
	// The exit is relayed in the background.
	framework.Eventually(t, 10*time.Second, func() (bool, string) {
		return findRecord(readNRIRecords(t, out), "StopContainer", "second") != nil, "no StopContainer for the container that exited"
	})
	if err := d.Runtime().StopContainer(ctx, c1, 1); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if err := d.Runtime().StopPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	// Stopping again relays nothing more.
	if err := d.Runtime().StopPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := d.Runtime().RemovePodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}

	recs := readNRIRecords(t, out)
	if recs[0].Event != "Configure" || recs[1].Event != "Synchronize" {
		t.Errorf("first events %q, %q; want Configure, Synchronize", recs[0].Event, recs[1].Event)
	}
	got := eventsOf(recs, pod)
	want := []string{
		"RunPodSandbox",
		"CreateContainer:first", "PostCreateContainer:first", "StartContainer:first", "PostStartContainer:first",
		"CreateContainer:second", "PostCreateContainer:second", "StartContainer:second", "PostStartContainer:second",
		"UpdateContainer:first", "PostUpdateContainer:first",
		"UpdatePodSandbox", "PostUpdatePodSandbox",
		"StopContainer:second", "StopContainer:first",
		"StopPodSandbox",
	}
	// The pod's containers are removed in parallel.
	removals := []string{"RemoveContainer:first", "RemoveContainer:second"}
	if len(got) != len(want)+3 || !slices.Equal(got[:len(want)], want) ||
		!slices.Equal(slices.Sorted(slices.Values(got[len(want):len(want)+2])), removals) || got[len(got)-1] != "RemovePodSandbox" {
		t.Fatalf("events of the pod:\n%s\nwant:\n%s\nthen %s in any order, then RemovePodSandbox", strings.Join(got, "\n"), strings.Join(want, "\n"), removals)
	}

	// What the plugin was told.
	run := findRecord(recs, "RunPodSandbox", "").Pod
	if run.GetName() != "nri-life" || run.GetNamespace() != framework.PodNamespace || run.GetUid() != pc.Metadata.Uid ||
		run.GetLabels()["app"] != "nri" || run.GetAnnotations()["pod-note"] != "hello" || run.GetRuntimeHandler() != "runc" ||
		run.GetPid() == 0 || len(run.GetIps()) == 0 || run.GetLinux().GetCgroupParent() == "" {
		t.Errorf("RunPodSandbox pod = %+v", run)
	}
	created := findRecord(recs, "CreateContainer", "first").Container
	if created.GetPodSandboxId() != pod || created.GetState() != api.ContainerState_CONTAINER_CREATED ||
		!slices.Contains(created.GetEnv(), "FROM_CRI=yes") || !slices.Equal(created.GetArgs(), []string{"sleep", "100000"}) ||
		created.GetLabels()["ctr"] != "first" || created.GetLinux().GetCgroupsPath() == "" || len(created.GetMounts()) == 0 {
		t.Errorf("CreateContainer container = %+v", created)
	}
	started := findRecord(recs, "PostStartContainer", "first").Container
	if started.GetId() != c1 || started.GetState() != api.ContainerState_CONTAINER_RUNNING || started.GetPid() == 0 {
		t.Errorf("PostStartContainer container = %+v", started)
	}
	exited := findRecord(recs, "StopContainer", "second").Container
	if exited.GetId() != c2 || exited.GetState() != api.ContainerState_CONTAINER_STOPPED || exited.GetExitCode() != 3 {
		t.Errorf("StopContainer of the exited container = %+v", exited)
	}
	upd := findRecord(recs, "UpdateContainer", "first")
	if res, _ := json.Marshal(upd.Extra["resources"]); !strings.Contains(string(res), `"shares":{"value":300}`) {
		t.Errorf("UpdateContainer resources = %s, want 300 cpu shares", res)
	}
	podUpd := findRecord(recs, "UpdatePodSandbox", "")
	if res, _ := json.Marshal(podUpd.Extra["resources"]); !strings.Contains(string(res), `"shares":{"value":1024}`) {
		t.Errorf("UpdatePodSandbox resources = %s, want 1024 cpu shares", res)
	}
}

// TestNRIInjectsIntoContainers: a plugin the daemon starts from its
// plugin path (configured from plugin_config_path) adds an environment
// variable, a bind mount, a device, a CDI device (resolved from the
// daemon's CDI spec directories) and an rlimit to a container, and they
// are there inside it.
func TestNRIInjectsIntoContainers(t *testing.T) {
	specDir := t.TempDir()
	cdiSpec := `{"cdiVersion": "0.6.0", "kind": "e2e.example.com/nri",
  "devices": [{"name": "dev0", "containerEdits": {"env": ["CDI_FROM_NRI=yes"], "deviceNodes": [{"path": "/dev/nri-cdi", "hostPath": "/dev/zero"}]}}]}`
	if err := os.WriteFile(filepath.Join(specDir, "nri.json"), []byte(cdiSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	env := framework.NewPodEnv(t, framework.WithoutStart(), framework.WithConfig("runtime.cdi_spec_dirs", []string{specDir}))
	d := env.Daemon
	hostDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostDir, "greeting"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(d.Dir, "injector-ready")
	d.InstallNRIPlugin(t, "20", "injector", map[string]any{
		"role":   "injector",
		"env":    "NRI_INJECTED=yes",
		"mount":  hostDir + ":/mnt/nri",
		"device": "/dev/null:/dev/nri-null",
		"rlimit": "RLIMIT_NOFILE:1234:2345",
		"cdi":    "e2e.example.com/nri=dev0",
		"ready":  ready,
	})
	d.Start(t)
	env.PushImage(t, bb)
	if _, err := os.Stat(ready); err != nil {
		t.Fatalf("the daemon did not start and synchronize the plugin of its plugin path: %v", err)
	}
	pc := framework.PodConfig("nri-inject")
	pod := d.RunPod(t, pc)
	id := d.CreateStarted(t, pod, sleeper("c"), pc)
	for _, c := range []struct{ cmd, want string }{
		{"echo $NRI_INJECTED", "yes"},
		{"cat /mnt/nri/greeting", "from the host"},
		{"stat -c %t:%T /dev/nri-null && echo data > /dev/nri-null && echo written", "1:3\nwritten"},
		{"echo $CDI_FROM_NRI; stat -c %t:%T /dev/nri-cdi; head -c 3 /dev/nri-cdi | od -An -tx1", "yes\n1:5\n 00 00 00"},
		// The container's process; an exec'd one is not the point here.
		{"grep 'open files' /proc/1/limits | awk '{print $4, $5}'", "1234 2345"},
	} {
		if got := strings.TrimSpace(d.ExecOK(t, id, "sh", "-c", c.cmd)); got != c.want {
			t.Errorf("%s: got %q, want %q", c.cmd, got, c.want)
		}
	}
}

// TestNRIAdjustsAndUpdatesResources: a plugin's resources replace those
// of an UpdateContainerResources before they reach the cgroup, and a
// plugin's unsolicited update is applied; ContainerStatus reports both.
func TestNRIAdjustsAndUpdatesResources(t *testing.T) {
	requireCgroups(t)
	_, d := podEnv(t)
	d.StartNRIPlugin(t, "30", "adjuster", "-role", "adjuster", "-memory", "100663296")
	pc := framework.PodConfig("nri-adjust")
	pod := d.RunPod(t, pc)
	cfg := withResources(sleeper("c"), &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 * mib, CpuShares: 512})
	cfg.Labels = map[string]string{"nri-test/cpu-shares": "777"}
	id := d.CreateStarted(t, pod, cfg, pc)
	cg := containerCgroup(t, d, id)
	memFile, sharesFile, sharesWant := "memory.limit_in_bytes", "cpu.shares", []string{"777"}
	if cg.layout.Unified() {
		memFile, sharesFile, sharesWant = "memory.max", "cpu.weight", cpuWeight(777)
	}
	// Unsolicited, after the container started.
	framework.Eventually(t, 10*time.Second, func() (bool, string) {
		got := cg.read(t, "cpu", sharesFile)
		reported := d.ContainerStatus(t, id).GetStatus().GetResources().GetLinux().GetCpuShares()
		return slices.Contains(sharesWant, got) && reported == 777, fmt.Sprintf("cpu shares %s, reported %d; want the plugin's 777", got, reported)
	})
	if err := d.Runtime().UpdateContainerResources(testCtx(t), id, &runtimeapi.ContainerResources{
		Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 * mib, CpuShares: 777},
	}); err != nil {
		t.Fatalf("UpdateContainerResources: %v", err)
	}
	if got := cg.read(t, "memory", memFile); got != "100663296" {
		t.Errorf("%s = %s after an update to 128 MiB, want the plugin's 96 MiB", memFile, got)
	}
	if got := d.ContainerStatus(t, id).GetStatus().GetResources().GetLinux().GetMemoryLimitInBytes(); got != 96*mib {
		t.Errorf("ContainerStatus memory limit %d, want the plugin's %d", got, 96*mib)
	}
}

// TestNRIPluginFailuresAreContained: a plugin that rejects a container,
// hangs past its request timeout or crashes does not wedge or crash the
// daemon. A rejected CreateContainer fails naming the plugin and leaves
// nothing behind; plugins that saw it are told it is gone. A hung or
// crashed plugin is dropped and the request goes on without it.
func TestNRIPluginFailuresAreContained(t *testing.T) {
	_, d := podEnv(t, framework.WithConfig("nri.plugin_request_timeout", "1s"))
	_, out := startRecorder(t, d, "10")
	rejecter := d.StartNRIPlugin(t, "40", "rejecter", "-role", "fault", "-event", "CreateContainer", "-match", "rejected", "-mode", "error")
	ctx := testCtx(t)
	pc := framework.PodConfig("nri-faults")
	pod := d.RunPod(t, pc)

	before := d.Leaks(t)
	_, err := d.Runtime().CreateContainer(ctx, pod, sleeper("rejected"), pc)
	wantCode(t, "CreateContainer rejected by a plugin", err, codes.FailedPrecondition, `NRI plugin "40-rejecter"`, "nriplugin refuses CreateContainer of rejected")
	if ctrs, err := d.Runtime().ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: pod}); err != nil || len(ctrs) != 0 {
		t.Errorf("containers after the rejection: %v (%v), want none", ctrs, err)
	}
	d.CheckNoLeaks(t, before, 10*time.Second)
	if got, want := eventsOf(readNRIRecords(t, out), pod)[1:], []string{"CreateContainer:rejected", "StopContainer:rejected", "RemoveContainer:rejected"}; !slices.Equal(got, want) {
		t.Errorf("the recorder saw %q, want %q (told of the undone creation)", got, want)
	}
	select {
	case <-rejecter.Exited():
		t.Error("a plugin that returned an error was dropped")
	default:
	}
	d.CreateStarted(t, pod, sleeper("accepted"), pc)

	for _, mode := range []string{"hang", "crash"} {
		t.Run(mode, func(t *testing.T) {
			p := d.StartNRIPlugin(t, "50", mode, "-role", "fault", "-event", "StartContainer", "-match", mode, "-mode", mode)
			id := d.CreateStarted(t, pod, sleeper(mode), pc)
			if st := d.ContainerStatus(t, id).GetStatus().GetState(); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
				t.Errorf("container started past a plugin that failed to answer: %s", st)
			}
			select {
			case <-p.Exited():
			case <-time.After(15 * time.Second):
				t.Errorf("the plugin that failed (%s) was not disconnected", mode)
			}
			// Later requests go on without it.
			d.CreateStarted(t, pod, sleeper(mode+"-after"), pc)
			if _, err := d.Runtime().Version(ctx, ""); err != nil {
				t.Fatalf("daemon after a plugin %s: %v", mode, err)
			}
		})
	}
}

// TestNRIDefaultValidator: with the default validator requiring a plugin
// that is not there, CreateContainer fails saying so and leaves nothing
// behind; a pod annotated to tolerate it is let through.
func TestNRIDefaultValidator(t *testing.T) {
	_, d := podEnv(t,
		framework.WithConfig("nri.default_validator.enable", true),
		framework.WithConfig("nri.default_validator.required_plugins", []string{"must-have"}),
		framework.WithConfig("nri.default_validator.tolerate_missing_plugins_annotation", "nri-test/tolerate-missing"))
	ctx := testCtx(t)
	pc := framework.PodConfig("nri-validate")
	pod := d.RunPod(t, pc)
	before := d.Leaks(t)
	_, err := d.Runtime().CreateContainer(ctx, pod, sleeper("c"), pc)
	wantCode(t, "CreateContainer without a required plugin", err, codes.FailedPrecondition, "default-validator", "must-have")
	d.CheckNoLeaks(t, before, 10*time.Second)

	tolerant := framework.PodConfig("nri-tolerant")
	tolerant.Annotations = map[string]string{"nri-test/tolerate-missing": "true"}
	tpod := d.RunPod(t, tolerant)
	d.CreateStarted(t, tpod, sleeper("c"), tolerant)
}

// TestNRIResynchronizesAfterRestart: after the daemon was killed and
// restarted, a plugin that connects is synchronized with the pods and
// containers that outlived it, and is told when they stop and go.
func TestNRIResynchronizesAfterRestart(t *testing.T) {
	_, d := podEnv(t)
	pc := framework.PodConfig("nri-restart")
	pod := d.RunPod(t, pc)
	id := d.CreateStarted(t, pod, sleeper("c"), pc)
	d.Kill(t)
	d.Start(t)
	_, out := startRecorder(t, d, "10")
	sync := findRecord(readNRIRecords(t, out), "Synchronize", "")
	if sync == nil {
		t.Fatal("no Synchronize")
	}
	var syncedPod *api.PodSandbox
	for _, p := range sync.Pods {
		if p.GetId() == pod {
			syncedPod = p
		}
	}
	var syncedCtr *api.Container
	for _, c := range sync.Containers {
		if c.GetId() == id {
			syncedCtr = c
		}
	}
	if syncedPod == nil || syncedPod.GetName() != "nri-restart" || len(syncedPod.GetIps()) == 0 {
		t.Errorf("synchronized pod %+v, want pod %s with its IPs", syncedPod, pod)
	}
	if syncedCtr == nil || syncedCtr.GetState() != api.ContainerState_CONTAINER_RUNNING || syncedCtr.GetPid() == 0 || syncedCtr.GetPodSandboxId() != pod {
		t.Errorf("synchronized container %+v, want running container %s", syncedCtr, id)
	}
	ctx := testCtx(t)
	if err := d.Runtime().StopPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := d.Runtime().RemovePodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	want := []string{"StopContainer:c", "StopPodSandbox", "RemoveContainer:c", "RemovePodSandbox"}
	if got := eventsOf(readNRIRecords(t, out), pod); !slices.Equal(got, want) {
		t.Errorf("events after the restart %q, want %q", got, want)
	}
}

// TestNRIKilledMidHook: the daemon killed while a plugin holds a
// CreateContainer leaves a consistent state: after a restart the
// half-created container is gone with everything it held.
func TestNRIKilledMidHook(t *testing.T) {
	_, d := podEnv(t, framework.WithConfig("nri.plugin_request_timeout", "2m"))
	pc := framework.PodConfig("nri-kill")
	pod := d.RunPod(t, pc)
	before := d.Leaks(t)
	p := d.StartNRIPlugin(t, "40", "hanger", "-role", "fault", "-event", "CreateContainer", "-mode", "hang")
	done := make(chan error, 1)
	go func() {
		_, err := d.Runtime().CreateContainer(testCtx(t), pod, sleeper("half"), pc)
		done <- err
	}()
	framework.Eventually(t, 20*time.Second, func() (bool, string) {
		b, _ := os.ReadFile(p.LogPath)
		return strings.Contains(string(b), "hanging"), "the plugin did not get the CreateContainer"
	})
	d.Kill(t)
	<-done
	p.Kill()
	d.Start(t)
	if ctrs, err := d.Runtime().ListContainers(testCtx(t), nil); err != nil || len(ctrs) != 0 {
		t.Errorf("containers after the restart: %v (%v), want none", ctrs, err)
	}
	d.CheckNoLeaks(t, before, 20*time.Second)
	d.CreateStarted(t, pod, sleeper("whole"), pc)
}
