package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Labels put on every pod and container, so that cleanup finds them even
// when an RPC was interrupted after the runtime created the object but
// before its ID reached the driver.
const (
	labelOwner = "io.cri-bench/owner"
	ownerValue = "cri-bench"
	labelRun   = "io.cri-bench/run"
)

const containerName = "sleep"

// tracker remembers the IDs this run created and has not removed yet.
type tracker struct {
	mu         sync.Mutex
	sandboxes  map[string]bool
	containers map[string]bool
}

func newTracker() *tracker {
	return &tracker{sandboxes: map[string]bool{}, containers: map[string]bool{}}
}

func (t *tracker) add(m map[string]bool, id string) {
	t.mu.Lock()
	m[id] = true
	t.mu.Unlock()
}

func (t *tracker) del(m map[string]bool, id string) {
	t.mu.Lock()
	delete(m, id)
	t.mu.Unlock()
}

func (t *tracker) list(m map[string]bool) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

type bench struct {
	o         *options
	rt        runtimeapi.RuntimeServiceClient
	img       runtimeapi.ImageServiceClient
	created   *tracker
	daemonPID int
	runID     string
	imageRef  string
	logRoot   string
	ownRoot   bool // logRoot was made by this run and is removed at exit
}

// rpcCtx bounds one CRI call. It is not derived from the run's context on
// purpose: an interrupt must not abandon a call half-way, or the runtime
// may create an object whose ID the driver never learns.
func (b *bench) rpcCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), b.o.rpcTimeout)
}

// prepare picks the run ID and log directory and makes sure the image is
// present, pulling it like kubelet does: ImageStatus first, PullImage only
// when the runtime does not know the image.
func (b *bench) prepare(ctx context.Context, report *Report) error {
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	b.runID = hex.EncodeToString(id[:])
	if b.o.logRoot == "" {
		dir, err := os.MkdirTemp("", "cri-bench-logs-")
		if err != nil {
			return fmt.Errorf("log root: %w", err)
		}
		b.logRoot, b.ownRoot = dir, true
	} else {
		b.logRoot = b.o.logRoot
	}

	spec := &runtimeapi.ImageSpec{Image: b.o.image}
	rctx, cancel := b.rpcCtx()
	st, err := b.img.ImageStatus(rctx, &runtimeapi.ImageStatusRequest{Image: spec})
	cancel()
	if err != nil {
		return fmt.Errorf("ImageStatus %s: %w", b.o.image, err)
	}
	if img := st.GetImage(); img != nil {
		b.imageRef = img.GetId()
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Fprintf(os.Stderr, "cri-bench: pulling %s\n", b.o.image)
	start := time.Now()
	rctx, cancel = b.rpcCtx()
	resp, err := b.img.PullImage(rctx, &runtimeapi.PullImageRequest{Image: spec})
	cancel()
	if err != nil {
		return fmt.Errorf("PullImage %s: %w", b.o.image, err)
	}
	report.ImagePullMs = ms(time.Since(start))
	b.imageRef = resp.GetImageRef()
	return nil
}

func (b *bench) removeLogRoot() {
	if b.ownRoot {
		_ = os.RemoveAll(b.logRoot)
	}
}

// pod is one iteration's objects and timings.
type pod struct {
	index       int
	name        string
	config      *runtimeapi.PodSandboxConfig
	sandboxID   string
	containerID string
}

// timings collects the durations of every operation of a level.
type timings struct {
	mu  sync.Mutex
	ops map[string][]time.Duration
}

func (t *timings) add(op string, d time.Duration) {
	t.mu.Lock()
	t.ops[op] = append(t.ops[op], d)
	t.mu.Unlock()
}

// forEach runs fn on every item with `parallel` workers and returns the
// first error; after an error or an interrupt, the remaining items are
// skipped.
func forEach[T any](ctx context.Context, items []T, parallel int, fn func(T) error) error {
	jobs := make(chan T)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return firstErr != nil
	}
	for range parallel {
		wg.Go(func() {
			for p := range jobs {
				if ctx.Err() != nil || failed() {
					continue
				}
				if err := fn(p); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, it := range items {
		jobs <- it
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// runLevel starts o.pods pods with `parallel` workers, samples memory once
// all are running, then tears them all down with the same parallelism.
func (b *bench) runLevel(ctx context.Context, parallel int) (*Level, error) {
	level := &Level{Parallel: parallel, Pods: b.o.pods, Ops: map[string]Latency{}}
	t := &timings{ops: map[string][]time.Duration{}}
	pods := make([]*pod, b.o.pods)
	for i := range pods {
		pods[i] = b.newPod(parallel, i)
	}

	if b.daemonPID > 0 {
		m, err := readMem(b.daemonPID)
		if err != nil {
			return nil, fmt.Errorf("daemon memory: %w", err)
		}
		level.DaemonBefore = &m
	}
	cpu0 := cpuTicks(b.daemonPID)

	start := time.Now()
	err := forEach(ctx, pods, parallel, func(p *pod) error { return b.startPod(p, t) })
	wall := time.Since(start)
	if err != nil {
		return nil, err
	}

	if b.o.settle > 0 {
		var burst Level
		b.sample(&burst, pods)
		level.AfterStart = &PodMemory{Daemon: burst.DaemonRunning, Shim: burst.Shim, Pause: burst.Pause, Container: burst.Container}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(b.o.settle):
		}
	}
	b.sample(level, pods)

	start = time.Now()
	err = forEach(ctx, pods, parallel, func(p *pod) error { return b.stopPod(p, t) })
	wall += time.Since(start)
	if err != nil {
		return nil, err
	}
	level.WallSecs = wall.Seconds()
	// USER_HZ is 100 on every Linux architecture Go supports.
	level.DaemonCPUSecs = float64(cpuTicks(b.daemonPID)-cpu0) / 100
	if b.daemonPID > 0 {
		if m, err := readMem(b.daemonPID); err == nil {
			level.DaemonAfter = &m
		}
	}
	for op, ds := range t.ops {
		level.Ops[op] = summarize(ds)
	}
	return level, nil
}

func (b *bench) newPod(parallel, i int) *pod {
	name := fmt.Sprintf("bench-%s-p%d-%d", b.runID, parallel, i)
	labels := map[string]string{labelOwner: ownerValue, labelRun: b.runID}
	return &pod{
		index:  i,
		name:   name,
		config: b.podConfig(name, fmt.Sprintf("%s-%d-%d", b.runID, parallel, i), b.o.cgroupParent, labels),
	}
}

// podConfig is the sandbox config of one benchmark pod, as kubelet would
// send it.
func (b *bench) podConfig(name, uid, cgroupParent string, labels map[string]string) *runtimeapi.PodSandboxConfig {
	ns, hostname := runtimeapi.NamespaceMode_POD, name
	if b.o.hostNetwork {
		// kubelet sends no hostname for host-network pods: they have
		// no UTS namespace of their own.
		ns, hostname = runtimeapi.NamespaceMode_NODE, ""
	}
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{
			Name:      name,
			Uid:       uid,
			Namespace: b.o.namespace,
		},
		Hostname:     hostname,
		LogDirectory: filepath.Join(b.logRoot, b.o.namespace+"_"+name),
		Labels:       labels,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: cgroupParent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: ns,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
}

// containerConfig is the config of a container called name in the pod.
func (b *bench) containerConfig(name string, pod *runtimeapi.PodSandboxConfig) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: b.imageRef, UserSpecifiedImage: b.o.image},
		Command:  b.o.command,
		LogPath:  name + "_0.log",
		Labels:   pod.Labels,
		Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: pod.Linux.SecurityContext.NamespaceOptions,
			},
		},
	}
}

// startPod is kubelet's path to a running pod: RunPodSandbox,
// CreateContainer, StartContainer. IDs are tracked as soon as the runtime
// returns them so cleanup can remove them.
func (b *bench) startPod(p *pod, t *timings) error {
	// Kubelet creates the pod log directory; runtimes only create files
	// in it.
	if err := os.MkdirAll(p.config.LogDirectory, 0o755); err != nil {
		return fmt.Errorf("pod log directory: %w", err)
	}
	begin := time.Now()
	ctx, cancel := b.rpcCtx()
	run, err := b.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: p.config, RuntimeHandler: b.o.runtimeHandler})
	cancel()
	if err != nil {
		return fmt.Errorf("RunPodSandbox %s: %w", p.name, err)
	}
	t.add(opRunPodSandbox, time.Since(begin))
	p.sandboxID = run.GetPodSandboxId()
	b.created.add(b.created.sandboxes, p.sandboxID)

	start := time.Now()
	ctx, cancel = b.rpcCtx()
	create, err := b.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId:  p.sandboxID,
		Config:        b.containerConfig(containerName, p.config),
		SandboxConfig: p.config,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("CreateContainer in %s: %w", p.name, err)
	}
	t.add(opCreateContainer, time.Since(start))
	p.containerID = create.GetContainerId()
	b.created.add(b.created.containers, p.containerID)

	start = time.Now()
	ctx, cancel = b.rpcCtx()
	_, err = b.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: p.containerID})
	cancel()
	if err != nil {
		return fmt.Errorf("StartContainer in %s: %w", p.name, err)
	}
	end := time.Now()
	t.add(opStartContainer, end.Sub(start))
	t.add(opRunToRunning, end.Sub(begin))
	return nil
}

// stopPod is kubelet's teardown of a pod: StopContainer, RemoveContainer,
// StopPodSandbox, RemovePodSandbox.
func (b *bench) stopPod(p *pod, t *timings) error {
	steps := []struct {
		op string
		fn func(context.Context) error
	}{
		{opStopContainer, func(ctx context.Context) error {
			_, err := b.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: p.containerID, Timeout: b.o.stopTimeout})
			return err
		}},
		{opRemoveContainer, func(ctx context.Context) error {
			_, err := b.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: p.containerID})
			if err == nil {
				b.created.del(b.created.containers, p.containerID)
			}
			return err
		}},
		{opStopPodSandbox, func(ctx context.Context) error {
			_, err := b.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.sandboxID})
			return err
		}},
		{opRemovePodSandbox, func(ctx context.Context) error {
			_, err := b.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.sandboxID})
			if err == nil {
				b.created.del(b.created.sandboxes, p.sandboxID)
			}
			return err
		}},
	}
	for _, s := range steps {
		start := time.Now()
		ctx, cancel := b.rpcCtx()
		err := s.fn(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s in %s: %w", s.op, p.name, err)
		}
		t.add(s.op, time.Since(start))
	}
	return nil
}

// infoPID reads the "pid" field of the JSON under the "info" key of a
// verbose status response, where containerd puts it.
func infoPID(info map[string]string) (int, error) {
	raw, ok := info["info"]
	if !ok {
		return 0, errors.New(`verbose status has no "info" key`)
	}
	var v struct {
		PID *int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return 0, fmt.Errorf(`verbose "info": %w`, err)
	}
	if v.PID == nil || *v.PID <= 0 {
		return 0, errors.New(`verbose "info" has no pid`)
	}
	return *v.PID, nil
}

// sample records the daemon's memory and each pod's shim, pause and
// container memory while every pod of the level is running. Missing PIDs
// become notes rather than errors: memory is secondary to latency, and a
// runtime that does not report PIDs should still be benchmarked.
func (b *bench) sample(level *Level, pods []*pod) {
	if b.daemonPID > 0 {
		if m, err := readMem(b.daemonPID); err == nil {
			level.DaemonRunning = &m
		}
	}
	type pids struct{ pause, container int }
	found := make([]pids, len(pods))
	var notes []string
	note := func(format string, a ...any) {
		if len(notes) < 10 {
			notes = append(notes, fmt.Sprintf(format, a...))
		}
	}
	for i, p := range pods {
		ctx, cancel := b.rpcCtx()
		ps, err := b.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.sandboxID, Verbose: true})
		cancel()
		if err == nil {
			found[i].pause, err = infoPID(ps.GetInfo())
		}
		if err != nil {
			note("pod %s: sandbox pid: %v", p.name, err)
		}
		ctx, cancel = b.rpcCtx()
		cs, err := b.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: p.containerID, Verbose: true})
		cancel()
		if err == nil {
			found[i].container, err = infoPID(cs.GetInfo())
		}
		if err != nil {
			note("pod %s: container pid: %v", p.name, err)
		}
	}

	table, err := snapshotProcesses()
	if err != nil {
		level.Notes = append(notes, err.Error())
		return
	}
	subtree := func(pid int) []int { return append([]int{pid}, table.descendants(pid)...) }
	var shimMem, pauseMem, ctrMem []Mem
	var shimProcs, pauseProcs, ctrProcs int
	owner := map[int]string{} // shim pid -> pod, to spot shared shims
	for i, p := range pods {
		var workload []int
		if pid := found[i].pause; pid > 0 {
			tree := subtree(pid)
			pauseMem = append(pauseMem, sumMem(tree))
			pauseProcs += len(tree)
			workload = append(workload, pid)
		}
		if pid := found[i].container; pid > 0 {
			tree := subtree(pid)
			ctrMem = append(ctrMem, sumMem(tree))
			ctrProcs += len(tree)
			workload = append(workload, pid)
		}
		if len(workload) == 0 {
			continue
		}
		shims := table.podProcesses(b.daemonPID, workload)
		if len(shims) == 0 {
			note("pod %s: no per-pod process above its workload (the daemon runs it directly?)", p.name)
			continue
		}
		for _, s := range shims {
			if other, dup := owner[s]; dup {
				note("pid %d (%s) serves pods %s and %s: shim memory is shared, not per pod", s, table.stat[s].Comm, other, p.name)
			}
			owner[s] = p.name
		}
		shimMem = append(shimMem, sumMem(shims))
		shimProcs += len(shims)
		if i == 0 {
			var names []string
			for _, s := range shims {
				names = append(names, strconv.Itoa(s)+" "+table.stat[s].Comm)
			}
			note("pod %s: per-pod processes %v; pause pid %d; container pid %d", p.name, names, found[i].pause, found[i].container)
		}
	}
	level.Shim = summarizeMem(shimMem, shimProcs)
	level.Pause = summarizeMem(pauseMem, pauseProcs)
	level.Container = summarizeMem(ctrMem, ctrProcs)
	level.Notes = notes
}

// cleanup removes every container and pod this run created (tracked IDs
// and anything carrying the selector labels). It ignores NotFound: every
// step is idempotent so it can run after a partial teardown.
func (b *bench) cleanup(selector map[string]string) error {
	containers := b.created.list(b.created.containers)
	sandboxes := b.created.list(b.created.sandboxes)

	ctx, cancel := b.rpcCtx()
	cl, err := b.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{LabelSelector: selector}})
	cancel()
	// A runtime without the RPC cannot have created the objects either.
	if err != nil && status.Code(err) != codes.Unimplemented {
		return fmt.Errorf("cleanup: ListContainers: %w", err)
	}
	for _, c := range cl.GetContainers() {
		if !slices.Contains(containers, c.GetId()) {
			containers = append(containers, c.GetId())
		}
	}
	ctx, cancel = b.rpcCtx()
	sl, err := b.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: selector}})
	cancel()
	// A runtime without the RPC cannot have created the objects either.
	if err != nil && status.Code(err) != codes.Unimplemented {
		return fmt.Errorf("cleanup: ListPodSandbox: %w", err)
	}
	for _, s := range sl.GetItems() {
		if !slices.Contains(sandboxes, s.GetId()) {
			sandboxes = append(sandboxes, s.GetId())
		}
	}
	if len(containers)+len(sandboxes) > 0 {
		fmt.Fprintf(os.Stderr, "cri-bench: removing %d containers and %d pods\n", len(containers), len(sandboxes))
	}

	var errs []error
	call := func(what string, fn func(context.Context) error) {
		ctx, cancel := b.rpcCtx()
		defer cancel()
		if err := fn(ctx); err != nil && status.Code(err) != codes.NotFound {
			errs = append(errs, fmt.Errorf("cleanup: %s: %w", what, err))
		}
	}
	for _, id := range containers {
		call("StopContainer "+id, func(ctx context.Context) error {
			_, err := b.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id})
			return err
		})
		call("RemoveContainer "+id, func(ctx context.Context) error {
			_, err := b.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
			return err
		})
		b.created.del(b.created.containers, id)
	}
	for _, id := range sandboxes {
		call("StopPodSandbox "+id, func(ctx context.Context) error {
			_, err := b.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
			return err
		})
		call("RemovePodSandbox "+id, func(ctx context.Context) error {
			_, err := b.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
			return err
		})
		b.created.del(b.created.sandboxes, id)
	}
	return errors.Join(errs...)
}
