//go:build e2e

package e2e

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// criuInfo is the daemon's verbose Status "checkpoint" entry.
type criuInfo struct {
	Usable bool   `json:"usable"`
	Path   string `json:"criu"`
	Reason string `json:"reason"`
}

func checkpointInfo(t *testing.T, d *framework.Daemon) criuInfo {
	t.Helper()
	resp, err := d.RuntimeClient().Status(testCtx(t), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info criuInfo
	if err := json.Unmarshal([]byte(resp.GetInfo()["checkpoint"]), &info); err != nil {
		t.Fatalf("Status info[checkpoint] = %q: %v", resp.GetInfo()["checkpoint"], err)
	}
	return info
}

// criuCheckError is the first error line `criu check` prints here, or ""
// when it passes or criu is not installed.
func criuCheckError(t *testing.T) string {
	out, err := exec.Command("criu", "check").CombinedOutput()
	if err == nil {
		return ""
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Error") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// TestCheckpoint: CheckpointContainer, CheckpointPod and RestorePod. The
// refusals run everywhere; where CRIU cannot run (this project's
// development machines: Debian's CRIU 3.17 on a 6.18 kernel) the daemon
// must say so with CRIU's words and the test skips the rest once, with
// that reason. The real checkpoints run in the guest (test/guest).
func TestCheckpoint(t *testing.T) {
	_, d := podEnv(t)
	ctx := testCtx(t)
	rc := d.RuntimeClient()
	info := checkpointInfo(t, d)
	if want := criuCheckError(t); info.Usable == (want != "") || !strings.Contains(info.Reason, want) {
		t.Errorf("Status says CRIU usable=%v reason %q; criu check here says %q", info.Usable, info.Reason, want)
	}

	pc := framework.PodConfig("ckpt")
	pod := d.RunPod(t, pc)
	running := d.CreateStarted(t, pod, sleeper("run"), pc)
	created := d.CreateContainer(t, pod, sleeper("created"), pc)
	archive := filepath.Join(t.TempDir(), "ckpt.tar")

	_, err := rc.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: strings.Repeat("f", 64), Location: archive})
	wantCode(t, "CheckpointContainer of an unknown container", err, codes.NotFound)
	_, err = rc.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: created, Location: archive})
	wantCode(t, "CheckpointContainer of a container not running", err, codes.FailedPrecondition, "not running")
	_, err = rc.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: t.TempDir(), ContainerIds: []string{running, created}})
	wantCode(t, "CheckpointPod with a container not running", err, codes.FailedPrecondition, "not running")

	// A terminal is refused before CRIU is asked, everywhere.
	ttyCfg := sleeper("tty")
	ttyCfg.Tty = true
	tty := d.CreateStarted(t, pod, ttyCfg, pc)
	_, err = rc.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: tty, Location: archive})
	wantCode(t, "CheckpointContainer of a container with a terminal", err, codes.FailedPrecondition, "terminal")

	if info.Usable {
		t.Run("counter", func(t *testing.T) { testCheckpointCounter(t, d) })
		t.Run("image", func(t *testing.T) { testCheckpointImage(t, d) })
		t.Run("timeout", func(t *testing.T) { testCheckpointTimeout(t, d) })
		t.Run("pod", func(t *testing.T) { testCheckpointPod(t, d) })
		t.Run("corrupt", func(t *testing.T) { testRestoreCorrupt(t, d) })
		return
	}
	_, err = rc.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: running, Location: archive})
	wantCode(t, "CheckpointContainer without CRIU", err, codes.FailedPrecondition, info.Reason)
	_, err = rc.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: t.TempDir(), ContainerIds: []string{running}})
	wantCode(t, "CheckpointPod without CRIU", err, codes.FailedPrecondition, info.Reason)
	_, err = rc.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: t.TempDir(), Config: framework.PodConfig("restored"),
		ContainerConfigs: []*runtimeapi.ContainerConfig{sleeper("run")}})
	wantCode(t, "RestorePod without CRIU", err, codes.FailedPrecondition, info.Reason)
	notATar := filepath.Join(t.TempDir(), "ckpt.tar")
	if err := os.WriteFile(notATar, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: framework.Shell("restored", notATar, "true"), SandboxConfig: pc})
	wantCode(t, "CreateContainer from a checkpoint archive without CRIU", err, codes.FailedPrecondition, info.Reason)
	// A checkpoint image is recognised (its manifest's annotation) and
	// refused the same way; an archive with only metadata makes one.
	fake := filepath.Join(t.TempDir(), "fake.tar")
	writeTar(t, fake, map[string]string{"config.dump": `{"id":"x","name":"counter","rootfsImageName":"busybox"}`, "checkpoint/inventory.img": "x"})
	ref := importCheckpointImage(t, d, fake, "localhost/checkpoint/fake:1")
	_, err = rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: framework.Shell("restored", ref, "true"), SandboxConfig: pc})
	wantCode(t, "CreateContainer from a checkpoint image without CRIU", err, codes.FailedPrecondition, info.Reason)
	t.Skipf("CRIU cannot run on this node, so nothing is checkpointed here (the guest suite does): %s", info.Reason)
}

// counter counts in memory and prints each value; it writes a file first.
const counter = `echo written-before > /before.txt; i=0; while :; do i=$((i+1)); echo $i; sleep 0.2; done`

// lastCount is the last number a counter printed to its log at path.
func lastCount(t *testing.T, path string) int {
	t.Helper()
	lines := framework.ReadCRILines(t, path)
	for i := len(lines) - 1; i >= 0; i-- {
		if n, err := strconv.Atoi(strings.TrimSpace(string(lines[i].Content))); err == nil {
			return n
		}
	}
	return 0
}

// waitCount waits until the counter logging at path printed more than n.
func waitCount(t *testing.T, path string, n int) int {
	t.Helper()
	deadline := time.Now().Add(framework.Slow(30 * time.Second))
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			if c := lastCount(t, path); c > n {
				return c
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("counter logging to %s did not pass %d", path, n)
	return 0
}

// firstCount is the first number printed to the log at path.
func firstCount(t *testing.T, path string) int {
	t.Helper()
	for _, l := range framework.ReadCRILines(t, path) {
		if n, err := strconv.Atoi(strings.TrimSpace(string(l.Content))); err == nil {
			return n
		}
	}
	return 0
}

// archiveEntries lists the names in a tar archive.
func archiveEntries(t *testing.T, path string) map[string]int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]int64{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("archive %s: %v", path, err)
		}
		out[strings.TrimSuffix(h.Name, "/")] = h.Size
	}
}

// testCheckpointCounter: a counting container is checkpointed (and keeps
// running), then restored into a new pod from the archive: it goes on
// counting from where it was, and the file it wrote is there.
func testCheckpointCounter(t *testing.T, d *framework.Daemon) {
	ctx := testCtx(t)
	rc := d.RuntimeClient()
	pc := framework.PodConfig("ckpt-src")
	pod := d.RunPod(t, pc)
	cfg := framework.Shell("counter", bb, counter)
	id := d.CreateStarted(t, pod, cfg, pc)
	logPath := framework.LogPath(pc, cfg)
	waitCount(t, logPath, 5)

	archive := filepath.Join(t.TempDir(), "counter.tar")
	t0 := time.Now()
	if _, err := rc.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: archive}); err != nil {
		t.Fatalf("CheckpointContainer: %v", err)
	}
	took := time.Since(t0)
	fi, err := os.Stat(archive)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("checkpoint of a counting shell: %v, archive %d bytes", took, fi.Size())
	entries := archiveEntries(t, archive)
	for _, want := range []string{"checkpoint", "checkpoint/inventory.img", "config.dump", "spec.dump", "rootfs-diff.tar", "bind.mounts", "container.log", "status.dump"} {
		if _, ok := entries[want]; !ok {
			t.Errorf("archive has no %s (it has %d entries)", want, len(entries))
		}
	}
	// kubelet's checkpoint leaves the container running.
	if st := d.ContainerStatus(t, id).GetStatus(); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after its checkpoint the container is %v", st.GetState())
	}
	at := lastCount(t, logPath)
	waitCount(t, logPath, at+2)

	rpc := framework.PodConfig("ckpt-dst")
	rpod := d.RunPod(t, rpc)
	rcfg := framework.Shell("counter", archive, "unused")
	t0 = time.Now()
	rid := d.CreateContainer(t, rpod, rcfg, rpc)
	if st := d.ContainerStatus(t, rid).GetStatus(); st.GetState() != runtimeapi.ContainerState_CONTAINER_CREATED || st.GetImage().GetImage() == archive {
		t.Errorf("restored container before start: %v, image %q", st.GetState(), st.GetImage().GetImage())
	}
	d.StartContainer(t, rid)
	t.Logf("restore (create + start) took %v", time.Since(t0))
	rlog := framework.LogPath(rpc, rcfg)
	waitCount(t, rlog, 0)
	first := firstCount(t, rlog)
	// The restored process prints the number after the last one it had
	// printed when checkpointed, not 1.
	if first < 5 || first > at+3 {
		t.Errorf("restored counter starts at %d; it had printed up to about %d when checkpointed", first, at)
	}
	waitCount(t, rlog, first+2)
	if out := d.ExecOK(t, rid, "cat", "/before.txt"); strings.TrimSpace(out) != "written-before" {
		t.Errorf("/before.txt in the restored container = %q", out)
	}
	// The original still counts on its own.
	waitCount(t, logPath, lastCount(t, logPath))
	checkRestoredCgroup(t, d, rid, id)
	stopAndRemove(t, d, rid)
	waitCount(t, logPath, lastCount(t, logPath))

	// A container that has exited cannot be checkpointed.
	done := d.CreateStarted(t, pod, framework.Shell("done", bb, "true"), pc)
	d.WaitExited(t, done, framework.Slow(30*time.Second))
	_, err = rc.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: done, Location: filepath.Join(t.TempDir(), "x.tar")})
	wantCode(t, "CheckpointContainer of an exited container", err, codes.FailedPrecondition, "not running")
}

// testCheckpointPod: two counters checkpointed together (CheckpointPod)
// and restored as a new pod (RestorePod), each from where it was.
func testCheckpointPod(t *testing.T, d *framework.Daemon) {
	ctx := testCtx(t)
	rc := d.RuntimeClient()
	pc := framework.PodConfig("podckpt-src")
	pod := d.RunPod(t, pc)
	cfgs := []*runtimeapi.ContainerConfig{framework.Shell("a", bb, counter), framework.Shell("b", bb, counter)}
	var ids []string
	for _, c := range cfgs {
		ids = append(ids, d.CreateStarted(t, pod, c, pc))
	}
	for _, c := range cfgs {
		waitCount(t, framework.LogPath(pc, c), 3)
	}
	out := t.TempDir()
	t0 := time.Now()
	if _, err := rc.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: out, ContainerIds: ids}); err != nil {
		t.Fatalf("CheckpointPod: %v", err)
	}
	t.Logf("CheckpointPod of two counters: %v", time.Since(t0))
	for _, id := range ids {
		if st := d.ContainerStatus(t, id).GetStatus(); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("after CheckpointPod container %s is %v", id, st.GetState())
		}
	}
	// Thawed: they go on counting.
	for _, c := range cfgs {
		p := framework.LogPath(pc, c)
		waitCount(t, p, lastCount(t, p))
	}

	rpc := framework.PodConfig("podckpt-dst")
	t0 = time.Now()
	resp, err := rc.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: rpc, ContainerConfigs: cfgs})
	if err != nil {
		t.Fatalf("RestorePod: %v", err)
	}
	t.Cleanup(func() { d.RemovePodAtCleanup(t, resp.GetPodSandboxId()) })
	if len(resp.GetRestoredContainers()) != 2 {
		t.Fatalf("RestorePod returned %v", resp.GetRestoredContainers())
	}
	for _, r := range resp.GetRestoredContainers() {
		if st := d.ContainerStatus(t, r.GetContainerId()).GetStatus(); st.GetState() != runtimeapi.ContainerState_CONTAINER_CREATED {
			t.Errorf("restored %s is %v before its start", r.GetName(), st.GetState())
		}
		d.StartContainer(t, r.GetContainerId())
	}
	t.Logf("RestorePod and two starts: %v", time.Since(t0))
	for _, c := range cfgs {
		p := framework.LogPath(rpc, c)
		n := waitCount(t, p, 0)
		if first := firstCount(t, p); first < 3 {
			t.Errorf("restored %s starts counting at %d", c.GetMetadata().GetName(), first)
		}
		waitCount(t, p, n+1)
	}
	orig := map[string]string{}
	for i, c := range cfgs {
		orig[c.GetMetadata().GetName()] = ids[i]
	}
	for _, r := range resp.GetRestoredContainers() {
		checkRestoredCgroup(t, d, r.GetContainerId(), orig[r.GetName()])
	}
	for _, r := range resp.GetRestoredContainers() {
		stopAndRemove(t, d, r.GetContainerId())
	}
	// The checkpoint's data stays as it was (the caller's).
	if _, err := os.Stat(filepath.Join(out, "a", "checkpoint", "inventory.img")); err != nil {
		t.Errorf("checkpoint data changed by the restore: %v", err)
	}
}

// testRestoreCorrupt: a corrupt archive is refused with a clear error and
// leaves no container and nothing in the pod's bundle directory.
func testRestoreCorrupt(t *testing.T, d *framework.Daemon) {
	pc := framework.PodConfig("ckpt-corrupt")
	pod := d.RunPod(t, pc)
	archive := filepath.Join(t.TempDir(), "corrupt.tar")
	if err := os.WriteFile(archive, []byte("this is not a tar archive, and not a checkpoint either"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	_, err := d.Runtime().CreateContainer(ctx, pod, framework.Shell("c", archive, "true"), pc)
	wantCode(t, "CreateContainer from a corrupt archive", err, codes.FailedPrecondition, "invalid checkpoint archive")
	list, lerr := d.RuntimeClient().ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod}})
	if lerr != nil || len(list.GetContainers()) != 0 {
		t.Errorf("after a failed restore the pod has containers %v (%v)", list.GetContainers(), lerr)
	}
	// An archive without CRIU images: refused the same way.
	empty := filepath.Join(t.TempDir(), "empty.tar")
	f, _ := os.Create(empty)
	tw := tar.NewWriter(f)
	tw.WriteHeader(&tar.Header{Name: "config.dump", Mode: 0o600, Size: 2})
	tw.Write([]byte("{}"))
	tw.Close()
	f.Close()
	_, err = d.Runtime().CreateContainer(ctx, pod, framework.Shell("c", empty, "true"), pc)
	wantCode(t, "CreateContainer from an archive without images", err, codes.FailedPrecondition, "invalid checkpoint archive")
}

// checkRestoredCgroup: the restored process runs in the cgroup its own
// container's spec names, not in the checkpointed container's (orig),
// where CRIU puts it unless told the new root: runc kills, execs into
// and deletes a container through its cgroup, and under systemd an empty
// scope is collected at once.
func checkRestoredCgroup(t *testing.T, d *framework.Daemon, id, orig string) {
	t.Helper()
	pid := infoPid(t, d.ContainerStatus(t, id).GetInfo())
	cg := containerCgroup(t, d, id)
	if cg.dir == containerCgroup(t, d, orig).dir {
		t.Fatalf("restored container %s has the cgroup of the checkpointed one: %s", id, cg.dir)
	}
	procs := strings.Fields(cg.read(t, "memory", "cgroup.procs"))
	if !slices.Contains(procs, strconv.Itoa(pid)) {
		t.Errorf("restored container %s: its pid %d is not in its cgroup %s (which holds %v); /proc/%d/cgroup says %q",
			id, pid, cg.dir, procs, pid, framework.ProcessCgroup(pid))
	}
}

// stopAndRemove stops and removes a container as kubelet does, and checks
// that its cgroup went with it.
func stopAndRemove(t *testing.T, d *framework.Daemon, id string) {
	t.Helper()
	cg := containerCgroup(t, d, id)
	ctx := testCtx(t)
	rc := d.RuntimeClient()
	if _, err := rc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 10}); err != nil {
		t.Fatalf("StopContainer of restored %s: %v", id, err)
	}
	if st := d.ContainerStatus(t, id).GetStatus(); st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("restored %s after StopContainer: %v", id, st.GetState())
	}
	if _, err := rc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("RemoveContainer of restored %s: %v", id, err)
	}
	if _, err := os.Stat(cg.path("memory", "")); !os.IsNotExist(err) {
		t.Errorf("restored %s removed, its cgroup %s stays (%v)", id, cg.dir, err)
	}
}

// writeTar writes a tar archive of the given files.
func writeTar(t *testing.T, path string, files map[string]string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// importCheckpointImage makes a checkpoint OCI image named ref from the
// archive and imports it into d, as an operator does with
// `cri-runtimed checkpoint image`; it returns ref.
func importCheckpointImage(t *testing.T, d *framework.Daemon, archive, ref string) string {
	t.Helper()
	bin, err := framework.DaemonBinary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(testCtx(t), bin, "--config", d.ConfigPath, "checkpoint", "image", archive, ref).CombinedOutput()
	if err != nil {
		t.Fatalf("cri-runtimed checkpoint image %s %s: %v: %s", archive, ref, err, out)
	}
	if !strings.Contains(string(out), ref) {
		t.Errorf("cri-runtimed checkpoint image printed %q, not the image %s", out, ref)
	}
	return ref
}

// testCheckpointImage: a counter checkpointed into an archive, made a
// checkpoint OCI image and restored from the image's name, as CRI-O
// restores such images: it counts on from where it was.
func testCheckpointImage(t *testing.T, d *framework.Daemon) {
	ctx := testCtx(t)
	pc := framework.PodConfig("ckptimg-src")
	pod := d.RunPod(t, pc)
	cfg := framework.Shell("counter", bb, counter)
	id := d.CreateStarted(t, pod, cfg, pc)
	logPath := framework.LogPath(pc, cfg)
	waitCount(t, logPath, 3)
	archive := filepath.Join(t.TempDir(), "counter.tar")
	if _, err := d.RuntimeClient().CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: archive}); err != nil {
		t.Fatalf("CheckpointContainer: %v", err)
	}
	at := lastCount(t, logPath)
	ref := importCheckpointImage(t, d, archive, "localhost/checkpoint/counter:1")

	rpc := framework.PodConfig("ckptimg-dst")
	rpod := d.RunPod(t, rpc)
	rcfg := framework.Shell("counter", ref, "unused")
	t0 := time.Now()
	rid := d.CreateStarted(t, rpod, rcfg, rpc)
	t.Logf("restore from the checkpoint image (create + start) took %v", time.Since(t0))
	rlog := framework.LogPath(rpc, rcfg)
	waitCount(t, rlog, 0)
	if first := firstCount(t, rlog); first < 3 || first > at+3 {
		t.Errorf("restored from the image, the counter starts at %d; it had printed up to about %d when checkpointed", first, at)
	}
	if out := d.ExecOK(t, rid, "cat", "/before.txt"); strings.TrimSpace(out) != "written-before" {
		t.Errorf("/before.txt in the container restored from the image = %q", out)
	}
	checkRestoredCgroup(t, d, rid, id)
	stopAndRemove(t, d, rid)
}

// testCheckpointTimeout: CheckpointContainer's timeout is honoured with
// a real CRIU. A dump that cannot finish within 1 s (a container holding
// 64 MiB, on an emulated guest) answers DeadlineExceeded soon after the
// second, leaves no archive, and the container runs on, not frozen. Were
// the node fast enough to finish, the answer must still come in time.
func testCheckpointTimeout(t *testing.T, d *framework.Daemon) {
	ctx := testCtx(t)
	pc := framework.PodConfig("ckpt-timeout")
	pod := d.RunPod(t, pc)
	cfg := framework.Shell("counter", bb, `x=$(head -c 67108864 /dev/zero | tr '\0' a); `+counter)
	id := d.CreateStarted(t, pod, cfg, pc)
	logPath := framework.LogPath(pc, cfg)
	waitCount(t, logPath, 2)
	archive := filepath.Join(t.TempDir(), "big.tar")
	t0 := time.Now()
	_, err := d.RuntimeClient().CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: archive, Timeout: 1})
	took := time.Since(t0)
	t.Logf("CheckpointContainer with a 1 s timeout answered after %v: %v", took, err)
	if slack := framework.Slow(5 * time.Second); took > time.Second+slack {
		t.Errorf("CheckpointContainer with a 1 s timeout answered after %v", took)
	}
	if err == nil {
		t.Logf("the dump finished within its second")
		return
	}
	wantCode(t, "CheckpointContainer past its timeout", err, codes.DeadlineExceeded)
	if _, serr := os.Stat(archive); !os.IsNotExist(serr) {
		t.Errorf("a timed out checkpoint left %s (%v)", archive, serr)
	}
	if left, _ := os.ReadDir(filepath.Dir(archive)); len(left) != 0 {
		t.Errorf("a timed out checkpoint left %v beside the location", left)
	}
	// CRIU, left alone when runc is killed, finishes or fails on its own
	// and lets the container go: it goes on counting.
	n := lastCount(t, logPath)
	waitCount(t, logPath, n+2)
	if st := d.ContainerStatus(t, id).GetStatus(); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("after a timed out checkpoint the container is %v", st.GetState())
	}
}
