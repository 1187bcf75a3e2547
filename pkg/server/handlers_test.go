package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/pkg/cni/fakecni"
	"github.com/cri-runtimed/cri-runtimed/pkg/config"
	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/imagetest"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim/fakeshim"
	"github.com/cri-runtimed/cri-runtimed/pkg/stats"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// The CRI handlers over the real controllers, with fakes only at the
// bottom: shims (pkg/shim/fakeshim), the CNI network (pkg/cni/fakecni)
// and an image service without a registry (pkg/image/imagetest). Root is
// needed for netns pins, the pod's /dev/shm and rootfs bind mounts; no
// runc, shim binary or CNI plugin.

const handlerImage = "docker.io/library/handlers:1"

type stack struct {
	t       testing.TB
	s       *Server
	shims   *fakeshim.Launcher
	net     *fakecni.Network
	cgroups *podCgroups
	images  *imagetest.Images
}

// podCgroups is the cgroupfs driver except for pod cgroup updates, whose
// cgroups the fake shim never makes: it records them, and refuses the
// next ones while refuse > 0, as the kernel refuses a v1 pod quota below
// a child's.
type podCgroups struct {
	cgroups.Driver
	mu      sync.Mutex
	refuse  int
	updates []podUpdate
	// before is called at each update, under no lock (the test's view of
	// the other side effects, e.g. the shim's calls so far).
	before func() string
}

type podUpdate struct {
	parent, before string
	res            *specs.LinuxResources
	refused        bool
}

func (d *podCgroups) UpdatePod(_ context.Context, parent string, res *specs.LinuxResources) error {
	var before string
	if d.before != nil {
		before = d.before()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	u := podUpdate{parent: parent, before: before, res: res, refused: d.refuse > 0}
	d.updates = append(d.updates, u)
	if u.refused {
		d.refuse--
		return fmt.Errorf("write cpu.cfs_quota_us: %w", unix.EINVAL)
	}
	return nil
}

func (d *podCgroups) taken() []podUpdate {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.updates)
}

func newStack(t testing.TB) *stack {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netns pins, the pod's /dev/shm and rootfs mounts need root")
	}
	dir := t.TempDir()
	// The pin directory becomes a mount point (shared propagation).
	t.Cleanup(func() { _ = unix.Unmount(filepath.Join(dir, "netns"), unix.MNT_DETACH) })
	db, err := meta.Open(filepath.Join(dir, "meta.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	images := imagetest.New(t, db)
	images.Add(t, handlerImage, ocispec.ImageConfig{Cmd: []string{"sleep", "1000"}}, map[string]string{"etc/motd": "hi"})
	fs, err := cgroups.New(cgroups.CgroupfsName, cgroups.WithDefaultParent("/cri-runtimed-unit-"+filepath.Base(dir)))
	if err != nil {
		t.Fatal(err)
	}
	drv := &podCgroups{Driver: fs}
	st := &stack{t: t, shims: fakeshim.NewLauncher(), net: fakecni.New(), cgroups: drv, images: images}
	pods := podsandbox.New(podsandbox.Options{
		StateDir:       filepath.Join(dir, "pods"),
		NetNSDir:       filepath.Join(dir, "netns"),
		Binary:         "/bin/true",
		Handlers:       map[string]podsandbox.Handler{"runc": {Root: filepath.Join(dir, "runc")}},
		DefaultHandler: "runc",
		Cgroups:        drv,
		Network:        st.net,
		Shims:          st.shims,
	}, db)
	ctrs := container.New(container.Options{Cgroups: drv, MaxExecOutput: 1 << 20}, db, images.Service, func(id string) (container.Sandbox, error) {
		pod, err := pods.Get(id)
		if err != nil || pod.ID() != id {
			return nil, fmt.Errorf("pod %s: %w", id, podsandbox.ErrNotFound)
		}
		return pod, nil
	})
	pods.SetEventHandler(func(pod *podsandbox.Pod, ev shim.Event) { ctrs.HandleEvent(pod, ev) })
	collector, err := stats.NewCollector()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Root, cfg.State = dir, dir
	st.s = New(cfg, images.Service, pods, ctrs, st.net, collector)
	t.Cleanup(func() {
		ctx := context.Background()
		for _, p := range pods.List() {
			if _, err := st.s.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.ID()}); err != nil {
				t.Errorf("cleanup: RemovePodSandbox(%s): %v", p.ID(), err)
			}
		}
		ctrs.Close()
		pods.Close()
	})
	return st
}

func (st *stack) shimOf(podID string) *fakeshim.Shim {
	st.t.Helper()
	for _, s := range st.shims.Shims() {
		if s.PodID == podID {
			return s
		}
	}
	st.t.Fatalf("no shim for pod %s", podID)
	return nil
}

func podCfg(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns", Uid: "uid-" + name},
		Labels: map[string]string{"app": name}}
}

func ctrCfg(name string, attempt uint32) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: name, Attempt: attempt},
		Image: &runtimeapi.ImageSpec{Image: handlerImage}, Labels: map[string]string{"c": name}}
}

func (st *stack) runPod(name string) string {
	st.t.Helper()
	resp, err := st.s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podCfg(name)})
	if err != nil {
		st.t.Fatalf("RunPodSandbox: %v", err)
	}
	return resp.PodSandboxId
}

func (st *stack) createCtr(pod, name string, attempt uint32) string {
	st.t.Helper()
	resp, err := st.s.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: ctrCfg(name, attempt), SandboxConfig: podCfg("p")})
	if err != nil {
		st.t.Fatalf("CreateContainer: %v", err)
	}
	return resp.ContainerId
}

func (st *stack) ctrState(id string) *runtimeapi.ContainerStatus {
	st.t.Helper()
	resp, err := st.s.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		st.t.Fatalf("ContainerStatus(%s): %v", id, err)
	}
	return resp.Status
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(toStatus(err)); got != want {
		t.Errorf("%s: %v (%v), want %v", what, got, err, want)
	}
}

// TestHandlersLifecycle: what kubelet does to a pod and its containers,
// and the codes it gets for what it gets wrong.
func TestHandlersLifecycle(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()
	pod := st.runPod("p")
	a := st.createCtr(pod, "a", 0)
	b := st.createCtr(pod, "b", 0)
	if _, err := st.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: a}); err != nil {
		t.Fatal(err)
	}

	// Lists and status.
	list, err := st.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		PodSandboxId: pod[:12], State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}})
	if err != nil || len(list.Containers) != 1 || list.Containers[0].Id != a {
		t.Errorf("running containers of the pod (by ID prefix) = %v, %v; want only %s", list.GetContainers(), err, a)
	}
	list, _ = st.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"c": "b"}}})
	if len(list.Containers) != 1 || list.Containers[0].Id != b || list.Containers[0].State != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("containers labelled c=b = %v", list.Containers)
	}
	if s := st.ctrState(a); s.State != runtimeapi.ContainerState_CONTAINER_RUNNING || s.StartedAt == 0 || s.ImageId == "" || s.Metadata.GetName() != "a" {
		t.Errorf("status of a: %v", s)
	}
	ps, err := st.s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
	if err != nil || ps.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || ps.Status.GetNetwork().GetIp() == "" {
		t.Errorf("pod status = %v, %v", ps.GetStatus(), err)
	}
	// No timestamp: with one, kubelet 1.37's evented PLEG re-runs
	// completed init containers (see PodSandboxStatus). The pod's
	// containers only with verbose.
	if ps.GetTimestamp() != 0 || len(ps.GetContainersStatuses()) != 0 {
		t.Errorf("pod status timestamp %d, %d container statuses; want none", ps.GetTimestamp(), len(ps.GetContainersStatuses()))
	}
	ps, err = st.s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod, Verbose: true})
	if err != nil || ps.GetTimestamp() != 0 || ps.GetInfo()["info"] == "" {
		t.Errorf("verbose pod status = %v, %v; want info and no timestamp", ps, err)
	}
	states := map[string]runtimeapi.ContainerState{}
	for _, cs := range ps.GetContainersStatuses() {
		states[cs.GetId()] = cs.GetState()
	}
	if len(states) != 2 || states[a] != runtimeapi.ContainerState_CONTAINER_RUNNING || states[b] != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("pod status containers_statuses = %v, want a running and b created", states)
	}

	// Errors, as kubelet and crictl see them.
	_, err = st.s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: ctrCfg("a", 0)})
	wantCode(t, "CreateContainer with a name in use", err, codes.AlreadyExists)
	if err == nil || !strings.Contains(err.Error(), a) {
		t.Errorf("the AlreadyExists error does not name the container holding the name: %v", err)
	}
	_, err = st.s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{Config: ctrCfg("x", 0)})
	wantCode(t, "CreateContainer without a pod", err, codes.InvalidArgument)
	_, err = st.s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: strings.Repeat("f", 64), Config: ctrCfg("x", 0)})
	wantCode(t, "CreateContainer in an unknown pod", err, codes.NotFound)
	_, err = st.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: a})
	wantCode(t, "StartContainer of a running container", err, codes.FailedPrecondition)
	_, err = st.s.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: b, Cmd: []string{"true"}})
	wantCode(t, "ExecSync in a created container", err, codes.FailedPrecondition)
	_, err = st.s.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: strings.Repeat("e", 64)})
	wantCode(t, "ContainerStatus of an unknown container", err, codes.NotFound)

	// ExecSync reaches the container's shim.
	st.shimOf(pod).ExecSyncFunc = func(req shim.ExecSyncRequest) (shim.ExecSyncResult, error) {
		return shim.ExecSyncResult{Stdout: []byte("out"), Stderr: []byte("err"), ExitCode: 3}, nil
	}
	res, err := st.s.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: a, Cmd: []string{"x"}})
	if err != nil || string(res.Stdout) != "out" || string(res.Stderr) != "err" || res.ExitCode != 3 {
		t.Errorf("ExecSync = %v, %v", res, err)
	}

	// Stop and remove are idempotent; unknown IDs succeed, as kubelet
	// retries them.
	for range 2 {
		if _, err := st.s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: a}); err != nil {
			t.Errorf("StopContainer: %v", err)
		}
	}
	if s := st.ctrState(a); s.State != runtimeapi.ContainerState_CONTAINER_EXITED || s.FinishedAt == 0 {
		t.Errorf("stopped container: %v", s)
	}
	for _, id := range []string{a, a, strings.Repeat("d", 64)} {
		if _, err := st.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("RemoveContainer(%s): %v", id, err)
		}
	}
	// Removing the pod removes what it still holds (b).
	if _, err := st.s.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	_, err = st.s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: ctrCfg("late", 0)})
	wantCode(t, "CreateContainer in a stopped pod", err, codes.FailedPrecondition)
	for range 2 {
		if _, err := st.s.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
			t.Fatalf("RemovePodSandbox: %v", err)
		}
	}
	all, _ := st.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	pods, _ := st.s.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if len(all.Containers) != 0 || len(pods.Items) != 0 {
		t.Errorf("left after RemovePodSandbox: %v %v", all.Containers, pods.Items)
	}
	_, err = st.s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
	wantCode(t, "PodSandboxStatus of a removed pod", err, codes.NotFound)
	if ids, _ := st.net.Attached(); len(ids) != 0 {
		t.Errorf("network attachments left: %v", ids)
	}
}

// TestHandlersExitAtStart: a container that exits at once, through the
// whole stack: its exit event travels the pod's shim monitor to the
// container controller before StartContainer's "running" reply is
// applied. Every run must end EXITED with the container's code.
func TestHandlersExitAtStart(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()
	pod := st.runPod("p")
	sh := st.shimOf(pod)
	for i := range 20 {
		id := st.createCtr(pod, "once", uint32(i))
		sh.ExitOnStart[id] = 9
		sh.BeforeStartReply = func(id string) {
			// Hold the reply until the monitor delivered the exit.
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if st.ctrState(id).State == runtimeapi.ContainerState_CONTAINER_EXITED {
					return
				}
			}
			t.Errorf("run %d: the exit event never reached the container controller", i)
		}
		if _, err := st.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("run %d: StartContainer: %v", i, err)
		}
		if s := st.ctrState(id); s.State != runtimeapi.ContainerState_CONTAINER_EXITED || s.ExitCode != 9 {
			t.Fatalf("run %d: %s code %d, want EXITED 9", i, s.State, s.ExitCode)
		}
		if _, err := st.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHandlersPinned: ListImages and ImageStatus report an image pinned
// while a container that has not exited uses it.
func TestHandlersPinned(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()
	pinned := func() bool {
		t.Helper()
		resp, err := st.s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: handlerImage}})
		if err != nil || resp.Image == nil {
			t.Fatalf("ImageStatus: %v %v", resp, err)
		}
		list, err := st.s.ListImages(ctx, &runtimeapi.ListImagesRequest{})
		if err != nil || len(list.Images) != 1 || list.Images[0].Pinned != resp.Image.Pinned {
			t.Fatalf("ListImages = %v, %v; ImageStatus pinned=%v", list.GetImages(), err, resp.Image.Pinned)
		}
		return resp.Image.Pinned
	}
	if pinned() {
		t.Error("pinned before any container uses it")
	}
	pod := st.runPod("p")
	id := st.createCtr(pod, "c", 0)
	if !pinned() {
		t.Error("not pinned while a created container uses it")
	}
	if _, err := st.s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	// A created container "stopped" stays created; start it and have it
	// exit.
	if !pinned() {
		t.Error("not pinned after a stop of a created container")
	}
	if _, err := st.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if err := st.shimOf(pod).Exit(id, 0); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); st.ctrState(id).State != runtimeapi.ContainerState_CONTAINER_EXITED; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the container did not exit")
		}
	}
	if pinned() {
		t.Error("still pinned after its only container exited")
	}
	// The sandbox image is pinned, named by reference or by ID.
	resp, err := st.s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: handlerImage}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"handlers:1", resp.Image.Id, strings.TrimPrefix(resp.Image.Id, "sha256:")[:12], "handlers:2"} {
		st.s.cfg.Runtime.SandboxImage = ref
		if got, want := pinned(), ref != "handlers:2"; got != want {
			t.Errorf("sandbox image %q: pinned = %v, want %v", ref, got, want)
		}
	}
}

// TestHandlersStopReleases: kubelet stops a pod and removes it only in
// its garbage collection a minute later, or never for the last sandbox of
// a completed pod that still exists. StopPodSandbox therefore releases
// the shim (which deletes every container's runtime state) and the netns
// pin, and keeps the record and the containers' exit states; repeated
// stops and the removal then touch neither shim nor network again.
func TestHandlersStopReleases(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()
	pod := st.runPod("job")
	done := st.createCtr(pod, "done", 0)
	if _, err := st.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: done}); err != nil {
		t.Fatal(err)
	}
	sh := st.shimOf(pod)
	if err := sh.Exit(done, 3); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); st.ctrState(done).State != runtimeapi.ContainerState_CONTAINER_EXITED; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the container did not exit")
		}
	}
	ps, err := st.s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		NetNSPath string `json:"netNamespacePath"`
	}
	if err := json.Unmarshal([]byte(ps.Info["info"]), &info); err != nil || info.NetNSPath == "" {
		t.Fatalf("verbose pod info %q: %v", ps.Info["info"], err)
	}

	for range 2 {
		if _, err := st.s.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
			t.Fatalf("StopPodSandbox: %v", err)
		}
	}
	if _, err := st.shims.Dial(ctx, sh.Dir); err == nil {
		t.Error("the stopped pod's shim still serves")
	}
	if calls := sh.Calls(); !slices.Contains(calls, "ForceShutdown ") {
		t.Errorf("the shim was not shut down: calls %v", calls)
	}
	if _, err := os.Lstat(info.NetNSPath); !os.IsNotExist(err) {
		t.Errorf("netns pin %s of the stopped pod: %v", info.NetNSPath, err)
	}
	ps, err = st.s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
	if err != nil || ps.Status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("stopped pod status = %v, %v", ps.GetStatus(), err)
	}
	if s := st.ctrState(done); s.State != runtimeapi.ContainerState_CONTAINER_EXITED || s.ExitCode != 3 {
		t.Errorf("exited container after the pod's release: %s code %d, want EXITED 3", s.State, s.ExitCode)
	}
	dels := func() (n int) {
		for _, c := range st.net.Calls() {
			if c == "DEL "+pod {
				n++
			}
		}
		return n
	}
	if n := dels(); n != 1 {
		t.Errorf("%d CNI DELs for two stops, want 1", n)
	}
	calls := len(sh.Calls())
	if _, err := st.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: done}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.s.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	if after := sh.Calls(); len(after) != calls {
		t.Errorf("removal called the released shim: %v", after[calls:])
	}
	if n := dels(); n != 1 {
		t.Errorf("%d CNI DELs after removal, want 1", n)
	}
}

// TestHandlersPodStatsNetwork: kubelet's CRI stats provider (1.34, with
// PodAndContainerStatsFromCRI) dereferences default_interface of every
// network usage it gets and crashed the kubelet on a pod whose network
// namespace had no eth0, as during its teardown. Here the fake CNI
// creates no interface at all.
func TestHandlersPodStatsNetwork(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()
	pod := st.runPod("p")
	resp, err := st.s.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Stats) != 1 || resp.Stats[0].GetAttributes().GetId() != pod {
		t.Fatalf("pod stats = %v", resp.Stats)
	}
	if n := resp.Stats[0].GetLinux().GetNetwork(); n != nil && n.DefaultInterface == nil {
		t.Errorf("network usage without a default interface: %v", n)
	}
}

// TestHandlersPodStatsNetworkReleased: the pod's net/dev, kept open
// between stats readings, holds its network namespace; stopping the pod
// closes it, so that the namespace goes with its pin.
func TestHandlersPodStatsNetworkReleased(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()
	before := netDevFiles(t)
	pod := st.runPod("p")
	for range 2 {
		if _, err := st.s.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := netDevFiles(t); n != before+1 {
		t.Fatalf("%d net/dev files open after two readings of one pod, want %d", n, before+1)
	}
	if _, err := st.s.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	if n := netDevFiles(t); n != before {
		t.Errorf("%d net/dev files open after the pod's stop, want %d", n, before)
	}
}

// netDevFiles counts the process's open /proc/<tid>/net/dev files.
func netDevFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasSuffix(l, "/net/dev") {
			n++
		}
	}
	return n
}

// TestRunPodSandboxLimitsOwnCgroup: a pod without a cgroup parent
// (crictl) gets its resources plus its overhead on the pod cgroup the
// daemon makes for it, at creation; a pod in kubelet's pod cgroup, which
// kubelet sizes, and a pod without limits are left alone.
func TestRunPodSandboxLimitsOwnCgroup(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()
	run := func(cfg *runtimeapi.PodSandboxConfig) string {
		t.Helper()
		resp, err := st.s.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			t.Fatalf("RunPodSandbox %s: %v", cfg.Metadata.Name, err)
		}
		return resp.PodSandboxId
	}
	limited := func(name, parent string) *runtimeapi.PodSandboxConfig {
		cfg := podCfg(name)
		cfg.Linux = &runtimeapi.LinuxPodSandboxConfig{CgroupParent: parent,
			Resources: &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 256 << 20},
			Overhead:  &runtimeapi.LinuxContainerResources{CpuShares: 10, CpuQuota: 10000, MemoryLimitInBytes: 64 << 20}}
		return cfg
	}
	pod := run(limited("own", ""))
	ups := st.cgroups.taken()
	if len(ups) != 1 || !strings.HasSuffix(ups[0].parent, "/"+pod) {
		t.Fatalf("pod cgroup updates at creation = %+v, want one of the pod's own cgroup", ups)
	}
	r := ups[0].res
	if r.Memory == nil || *r.Memory.Limit != 320<<20 || r.CPU == nil || *r.CPU.Quota != 60000 || *r.CPU.Period != 100000 || *r.CPU.Shares != 522 {
		b, _ := json.Marshal(r)
		t.Errorf("pod cgroup limits at creation = %s, want 320Mi, quota 60000/100000, shares 522 (resources + overhead)", b)
	}
	run(limited("kubelets", "/kubepods/burstable/pod-unit-test"))
	run(podCfg("unlimited"))
	if ups := st.cgroups.taken(); len(ups) != 1 {
		t.Errorf("pod cgroup updates = %+v, want none for kubelet's pod cgroup or a pod without limits", ups[1:])
	}
}

// TestUpdatePodSandboxResources: the pod's new resources reach its
// sandbox through the shim and stay in its config; a stopped pod refuses.
func TestUpdatePodSandboxResources(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()
	pod := st.runPod("p")
	req := &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: pod,
		Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 256 << 20},
		Overhead:  &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20}}
	if _, err := st.s.UpdatePodSandboxResources(ctx, req); err != nil {
		t.Fatal(err)
	}
	if calls := st.shimOf(pod).Calls(); !slices.Contains(calls, "Update "+pod) {
		t.Errorf("the pod's shim was not asked to update the sandbox: %v", calls)
	}
	// The pod cgroup, the parent of the pod's containers, gets the pod's
	// resources plus its overhead.
	ups := st.cgroups.taken()
	if len(ups) != 1 || ups[0].res.Memory == nil || *ups[0].res.Memory.Limit != 320<<20 ||
		!strings.HasSuffix(ups[0].parent, "/"+pod) {
		t.Fatalf("pod cgroup updates = %+v, want one of the pod's cgroup with 320Mi", ups)
	}
	// A shrinking pod on cgroup v1: the kernel refuses the pod cgroup
	// while the sandbox's quota is larger; it is set again once the
	// sandbox has shrunk.
	shimUpdates := func() string {
		return fmt.Sprint(strings.Count(strings.Join(st.shimOf(pod).Calls(), "\n"), "Update "+pod))
	}
	st.cgroups.before = shimUpdates
	st.cgroups.refuse = 1
	req.Resources = &runtimeapi.LinuxContainerResources{CpuQuota: 50000, CpuPeriod: 100000}
	if _, err := st.s.UpdatePodSandboxResources(ctx, req); err != nil {
		t.Fatalf("UpdatePodSandboxResources refused once by the pod cgroup: %v", err)
	}
	ups = st.cgroups.taken()[1:]
	if len(ups) != 2 || !ups[0].refused || ups[1].refused || ups[0].before != "1" || ups[1].before != "2" {
		t.Errorf("pod cgroup updates = %+v, want refused before the sandbox's update, then done after it", ups)
	}
	st.cgroups.refuse = 2
	if _, err := st.s.UpdatePodSandboxResources(ctx, req); err == nil {
		t.Error("UpdatePodSandboxResources succeeded though the pod cgroup refused it")
	}
	st.cgroups.before = nil
	ps, err := st.s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod, Verbose: true})
	if err != nil || !strings.Contains(ps.GetInfo()["info"], `"overhead"`) {
		t.Errorf("the pod's config does not keep the overhead: %v %v", ps.GetInfo(), err)
	}
	if _, err := st.s.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	_, err = st.s.UpdatePodSandboxResources(ctx, req)
	wantCode(t, "UpdatePodSandboxResources of a stopped pod", err, codes.FailedPrecondition)
}
