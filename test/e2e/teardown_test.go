//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// recordingPlugin builds pkg/cni's test plugin, which appends each call it
// gets to the file its config names, and returns the directory holding it
// as "recorder".
func recordingPlugin(t *testing.T) string {
	t.Helper()
	root, err := framework.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "recorder"), "./pkg/cni/internal/fakeplugin")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the recording CNI plugin: %v\n%s", err, out)
	}
	return dir
}

// cniCalls returns the commands the recorder saw for a container ID.
func cniCalls(t *testing.T, record, id string) []string {
	t.Helper()
	f, err := os.Open(record)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c struct {
			Command     string `json:"command"`
			ContainerID string `json:"containerID"`
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("record %q: %v", sc.Text(), err)
		}
		if c.ContainerID == id {
			out = append(out, c.Command)
		}
	}
	return out
}

// TestCNIDelOncePerPod: a pod's network is released by one CNI DEL,
// however many times kubelet stops it and whether or not the daemon
// restarts between the stop and the removal: a successful DEL is
// remembered in the pod's record.
func TestCNIDelOncePerPod(t *testing.T) {
	bin := recordingPlugin(t)
	record := filepath.Join(t.TempDir(), "calls.jsonl")
	env := framework.NewPodEnv(t, framework.WithoutStart(),
		framework.WithConfig("cni.bin_dirs", []string{bin, "/opt/cni/bin", "/usr/lib/cni"}))
	d := env.Daemon
	n := d.PodNetwork(t)
	n.RemoveIPTablesAtCleanup(t)
	editConflist(t, n.ConfFile, func(list map[string]any) {
		list["plugins"] = append(list["plugins"].([]any), map[string]any{"type": "recorder", "record": record})
	})
	d.Start(t)
	env.PushImage(t, bb)
	before, netBefore := d.Leaks(t), n.Snapshot(t)

	dels := func(pod string) int {
		return len(slices.DeleteFunc(cniCalls(t, record, pod), func(c string) bool { return c != "DEL" }))
	}
	t.Run("stop twice then remove", func(t *testing.T) {
		pc := framework.PodConfig("del-once")
		pod := d.RunPod(t, pc)
		d.CreateStarted(t, pod, sleeper("c1"), pc)
		d.CreateStarted(t, pod, sleeper("c2"), pc)
		if got := cniCalls(t, record, pod); !slices.Equal(got, []string{"ADD"}) {
			t.Fatalf("calls after RunPodSandbox: %v, want one ADD", got)
		}
		for range 2 {
			if err := d.Runtime().StopPodSandbox(testCtx(t), pod); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.Runtime().RemovePodSandbox(testCtx(t), pod); err != nil {
			t.Fatal(err)
		}
		if got := dels(pod); got != 1 {
			t.Errorf("%d CNI DELs for one pod teardown (%v), want 1", got, cniCalls(t, record, pod))
		}
	})
	t.Run("stop, restart, remove", func(t *testing.T) {
		pod := d.RunPod(t, framework.PodConfig("del-once-restart"))
		if err := d.Runtime().StopPodSandbox(testCtx(t), pod); err != nil {
			t.Fatal(err)
		}
		d.Stop(t)
		d.Start(t)
		if err := d.Runtime().RemovePodSandbox(testCtx(t), pod); err != nil {
			t.Fatal(err)
		}
		if got := dels(pod); got != 1 {
			t.Errorf("%d CNI DELs across a restart (%v), want 1", got, cniCalls(t, record, pod))
		}
	})
	checkNothingLeft(t, d, n, before, netBefore)
}

// TestRemovePodWithManyContainers removes a pod holding many containers,
// created and running, whose removal runs in parallel: every one is gone,
// with everything it held, and the pod with them.
func TestRemovePodWithManyContainers(t *testing.T) {
	const created, running = 12, 12
	_, d := podEnv(t)
	before := d.Leaks(t)
	pc := framework.PodConfig("many-ctrs", hostNetwork())
	pod := d.RunPod(t, pc)
	var ids []string
	for i := range created + running {
		cfg := sleeper(fmt.Sprintf("c%02d", i))
		cfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
		if i < created {
			id, err := d.Runtime().CreateContainer(testCtx(t), pod, cfg, pc)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
			continue
		}
		ids = append(ids, d.CreateStarted(t, pod, cfg, pc))
	}
	start := time.Now()
	if err := d.Runtime().RemovePodSandbox(testCtx(t), pod); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	t.Logf("RemovePodSandbox of a pod with %d containers took %v", len(ids), time.Since(start))
	left, err := d.Runtime().ListContainers(testCtx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range left {
		if slices.Contains(ids, c.GetId()) {
			t.Errorf("container %s still listed", c.GetId())
		}
	}
	d.CheckNoLeaks(t, before, 30*time.Second)
}
