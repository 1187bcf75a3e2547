package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The scale mode fills each runtime with --pods pods of --containers
// containers (and --images images), then times every call kubelet keeps
// making on a full node. With several endpoints, every sample of every
// call is taken on each runtime in turn, so that the load of a shared
// machine falls on all of them alike.

// labelPod tells the scale pods apart for label-selector lists.
const labelPod = "io.cri-bench/pod"

// scaleTarget is one runtime under test.
type scaleTarget struct {
	*bench
	conn   *grpc.ClientConn
	pods   []*scalePod
	images []scaleImage
	rep    *ScaleTarget
}

type scalePod struct {
	index      int
	name       string
	config     *runtimeapi.PodSandboxConfig
	id         string
	containers []string
}

type scaleImage struct{ name, id string }

// ScaleReport is the scale mode's result, as written by --json.
type ScaleReport struct {
	Pods       int  `json:"pods"`
	Containers int  `json:"containers_per_pod"`
	Running    bool `json:"containers_running"`
	Images     int  `json:"images"`
	Samples    int  `json:"samples"`
	ByRuntime  bool `json:"by_runtime,omitempty"`
	// FixedOrder: every sample made the calls in CallOrder; else each
	// sample in a new random order.
	FixedOrder  bool       `json:"fixed_order,omitempty"`
	GapMs       float64    `json:"gap_ms,omitempty"`
	Burst       int        `json:"burst"`
	HostNetwork bool       `json:"host_network"`
	PodCgroups  string     `json:"pod_cgroup_prefix,omitempty"`
	Load        [2]float64 `json:"loadavg_1m_before_after"`
	// TimedLoad is the load average as the timed calls on the full node
	// begin and end: the figures' load, without the setup's and the
	// teardown's own.
	TimedLoad     [2]float64     `json:"loadavg_1m_timed_calls"`
	At            time.Time      `json:"at"`
	Targets       []*ScaleTarget `json:"targets"`
	CallOrder     []string       `json:"call_order"`
	BurstOrder    []string       `json:"burst_call_order"`
	TeardownOrder []string       `json:"teardown_order"`
}

// ScaleTarget is one runtime's part of the report.
type ScaleTarget struct {
	Endpoint       string  `json:"endpoint"`
	RuntimeName    string  `json:"runtime_name"`
	RuntimeVersion string  `json:"runtime_version"`
	DaemonPID      int     `json:"daemon_pid,omitempty"`
	DaemonFull     *Mem    `json:"daemon_full,omitempty"`
	PullSecs       float64 `json:"pull_seconds"`
	CreateSecs     float64 `json:"create_seconds"`
	// Setup holds the latencies of the calls that built the node.
	Setup map[string]Latency `json:"setup"`
	// Calls are the timed calls on the full node.
	Calls map[string]CallResult `json:"calls"`
	// BurstSecs is the wall time of starting --burst pods at once, and
	// BurstCalls the list calls timed meanwhile.
	BurstSecs  float64               `json:"burst_seconds"`
	BurstCalls map[string]CallResult `json:"burst_calls"`
	// TeardownSecs is the wall time of StopPodSandbox and
	// RemovePodSandbox of every scale pod; Teardown their latencies.
	TeardownSecs    float64            `json:"teardown_seconds"`
	Teardown        map[string]Latency `json:"teardown"`
	RemoveImageSecs float64            `json:"remove_images_seconds"`
}

// CallResult is the latency of one call and what it returned.
type CallResult struct {
	Latency
	// SamplesMs are the latencies of the successful calls in the order
	// they were taken, to see what a call follows: sample s calls the n
	// runtimes (in --endpoint's order) starting with the one of index s
	// mod n (see timeCalls).
	SamplesMs []float64 `json:"samples_ms,omitempty"`
	// SamplesAt are when those calls started, in Unix milliseconds, to
	// line them up with the daemons' logs.
	SamplesAt []int64 `json:"samples_at_unix_ms,omitempty"`
	// Items is what the last successful call returned (list length; 1
	// for a status).
	Items  int    `json:"items"`
	Errors int    `json:"errors,omitempty"`
	Error  string `json:"error,omitempty"`
}

// pick chooses the pod, container and image a status call asks about;
// one pick serves every runtime in a sample.
type pick struct{ pod, ctr, img int }

type scaleCall struct {
	name string
	fn   func(ctx context.Context, t *scaleTarget, p pick) (int, error)
}

func runScale(o *options) error {
	ctx, stop := interruptible()
	defer stop()
	rep := &ScaleReport{
		Pods: o.pods, Containers: o.containers, Running: o.startScale, Images: o.images,
		Samples: o.samples, ByRuntime: o.byRuntime, FixedOrder: o.fixedOrder, GapMs: ms(o.gap), Burst: o.burst, HostNetwork: o.hostNetwork, PodCgroups: o.podCgroupPrefix,
		At: time.Now().UTC(),
	}
	rep.Load[0] = loadAvg()
	var targets []*scaleTarget
	defer func() {
		for _, t := range targets {
			t.conn.Close()
			t.removeLogRoot()
		}
	}()
	for _, ep := range o.endpoints {
		t, err := newScaleTarget(ep, o)
		if err != nil {
			return err
		}
		targets = append(targets, t)
		rep.Targets = append(rep.Targets, t.rep)
	}
	// Whatever happens, every runtime is left as it was found.
	defer func() {
		for _, t := range targets {
			if err := t.cleanup(map[string]string{labelRun: t.runID}); err != nil {
				fmt.Fprintln(os.Stderr, "cri-bench:", err)
			}
			t.removeImages(context.Background(), false)
		}
		removePodCgroups(o.podCgroupPrefix)
	}()

	err := scaleSteps(ctx, o, rep, targets)
	rep.Load[1] = loadAvg()
	if err == nil && ctx.Err() != nil {
		err = errors.New("interrupted")
	}
	if len(rep.CallOrder) > 0 {
		rep.WriteTable(os.Stdout)
		if o.jsonPath != "" {
			if werr := writeJSON(o.jsonPath, rep); werr != nil {
				err = errors.Join(err, werr)
			}
		}
	}
	return err
}

func scaleSteps(ctx context.Context, o *options, rep *ScaleReport, targets []*scaleTarget) error {
	for _, t := range targets {
		if err := t.prepare(ctx, &Report{}); err != nil {
			return fmt.Errorf("%s: %w", t.o.endpoint, err)
		}
		if err := t.pullImages(ctx); err != nil {
			return err
		}
		if err := t.createPods(ctx); err != nil {
			return err
		}
		if t.daemonPID > 0 {
			if m, err := readMem(t.daemonPID); err == nil {
				t.rep.DaemonFull = &m
			}
		}
	}
	calls := scaleCalls()
	for _, c := range calls {
		rep.CallOrder = append(rep.CallOrder, c.name)
	}
	fmt.Fprintf(os.Stderr, "cri-bench: timing %d calls × %d samples on %d runtime(s)\n", len(calls), o.samples, len(targets))
	rep.TimedLoad[0] = loadAvg()
	timeCalls(ctx, o, targets, calls, func(t *scaleTarget) map[string]CallResult {
		if t.rep.Calls == nil {
			t.rep.Calls = map[string]CallResult{}
		}
		return t.rep.Calls
	})
	rep.TimedLoad[1] = loadAvg()
	if ctx.Err() != nil {
		return nil
	}
	if o.burst > 0 {
		for _, c := range burstCalls() {
			rep.BurstOrder = append(rep.BurstOrder, c.name)
		}
		for _, t := range targets {
			if err := t.startBurst(ctx, burstCalls()); err != nil {
				return err
			}
		}
	}
	rep.TeardownOrder = []string{opStopPodSandbox, opRemovePodSandbox}
	for _, t := range targets {
		if err := t.teardown(ctx); err != nil {
			return err
		}
		t.removeImages(ctx, true)
	}
	return nil
}

func newScaleTarget(endpoint string, o *options) (*scaleTarget, error) {
	conn, err := dial(endpoint)
	if err != nil {
		return nil, err
	}
	topt := *o
	topt.endpoint = endpoint
	t := &scaleTarget{
		bench: &bench{
			o:       &topt,
			rt:      runtimeapi.NewRuntimeServiceClient(conn),
			img:     runtimeapi.NewImageServiceClient(conn),
			created: newTracker(),
		},
		conn: conn,
		rep:  &ScaleTarget{Endpoint: endpoint, Setup: map[string]Latency{}, Teardown: map[string]Latency{}},
	}
	rctx, cancel := t.rpcCtx()
	ver, err := t.rt.Version(rctx, &runtimeapi.VersionRequest{})
	cancel()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("CRI Version call on %s: %w", endpoint, err)
	}
	t.rep.RuntimeName, t.rep.RuntimeVersion = ver.GetRuntimeName(), ver.GetRuntimeVersion()
	if pid, err := findDaemon(0, "", topt.socketPath()); err == nil {
		t.daemonPID, t.rep.DaemonPID = pid, pid
	}
	return t, nil
}

func (t *scaleTarget) label() string { return t.rep.RuntimeName }

// pullImages pulls the --images tags of --image-repo, kubelet-style:
// ImageStatus first, PullImage when missing.
func (t *scaleTarget) pullImages(ctx context.Context) error {
	if t.o.images == 0 {
		t.images = []scaleImage{{name: t.o.image, id: t.imageRef}}
		return nil
	}
	fmt.Fprintf(os.Stderr, "cri-bench: %s: pulling %d images\n", t.label(), t.o.images)
	t.images = make([]scaleImage, t.o.images)
	idx := make([]int, t.o.images)
	for i := range idx {
		idx[i] = i
		t.images[i].name = fmt.Sprintf("%s:%03d", t.o.imageRepo, i)
	}
	tm := &timings{ops: map[string][]time.Duration{}}
	start := time.Now()
	err := forEach(ctx, idx, 4, func(i int) error {
		spec := &runtimeapi.ImageSpec{Image: t.images[i].name}
		rctx, cancel := t.rpcCtx()
		defer cancel()
		if st, err := t.img.ImageStatus(rctx, &runtimeapi.ImageStatusRequest{Image: spec}); err == nil && st.GetImage() != nil {
			t.images[i].id = st.GetImage().GetId()
			return nil
		}
		begin := time.Now()
		resp, err := t.img.PullImage(rctx, &runtimeapi.PullImageRequest{Image: spec})
		if err != nil {
			return fmt.Errorf("%s: PullImage %s: %w", t.label(), spec.Image, err)
		}
		tm.add("PullImage", time.Since(begin))
		t.images[i].id = resp.GetImageRef()
		return nil
	})
	t.rep.PullSecs = time.Since(start).Seconds()
	for op, ds := range tm.ops {
		t.rep.Setup[op] = summarize(ds)
	}
	return err
}

// createPods makes the node full: --pods pods with --containers
// containers each, created (and started with --start).
func (t *scaleTarget) createPods(ctx context.Context) error {
	fmt.Fprintf(os.Stderr, "cri-bench: %s: creating %d pods × %d containers\n", t.label(), t.o.pods, t.o.containers)
	t.pods = make([]*scalePod, t.o.pods)
	for i := range t.pods {
		t.pods[i] = t.newScalePod("scale", i)
	}
	tm := &timings{ops: map[string][]time.Duration{}}
	start := time.Now()
	err := forEach(ctx, t.pods, t.o.parallel[0], func(p *scalePod) error {
		return t.runPod(p, t.o.containers, t.o.startScale, tm)
	})
	t.rep.CreateSecs = time.Since(start).Seconds()
	for op, ds := range tm.ops {
		t.rep.Setup[op] = summarize(ds)
	}
	return err
}

func (t *scaleTarget) newScalePod(kind string, i int) *scalePod {
	name := fmt.Sprintf("%s-%s-%d", kind, t.runID, i)
	uid := fmt.Sprintf("%s-%s-%d", t.runID, kind, i)
	labels := map[string]string{labelOwner: ownerValue, labelRun: t.runID, labelPod: name}
	parent := t.o.cgroupParent
	if t.o.podCgroupPrefix != "" {
		parent = filepath.Join("/", t.o.podCgroupPrefix, "pod"+uid)
	}
	return &scalePod{index: i, name: name, config: t.podConfig(name, uid, parent, labels)}
}

// runPod runs the sandbox and creates (and maybe starts) n containers in
// it, one after the other as kubelet does within a pod.
func (t *scaleTarget) runPod(p *scalePod, n int, start bool, tm *timings) error {
	if err := os.MkdirAll(p.config.LogDirectory, 0o755); err != nil {
		return fmt.Errorf("pod log directory: %w", err)
	}
	call := func(op string, fn func(context.Context) error) error {
		begin := time.Now()
		ctx, cancel := t.rpcCtx()
		defer cancel()
		if err := fn(ctx); err != nil {
			return fmt.Errorf("%s: %s in %s: %w", t.label(), op, p.name, err)
		}
		tm.add(op, time.Since(begin))
		return nil
	}
	err := call(opRunPodSandbox, func(ctx context.Context) error {
		r, err := t.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: p.config, RuntimeHandler: t.o.runtimeHandler})
		if err == nil {
			p.id = r.GetPodSandboxId()
			t.created.add(t.created.sandboxes, p.id)
		}
		return err
	})
	if err != nil {
		return err
	}
	for j := range n {
		var id string
		err := call(opCreateContainer, func(ctx context.Context) error {
			r, err := t.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
				PodSandboxId:  p.id,
				Config:        t.containerConfig(fmt.Sprintf("c%03d", j), p.config),
				SandboxConfig: p.config,
			})
			if err == nil {
				id = r.GetContainerId()
				t.created.add(t.created.containers, id)
				p.containers = append(p.containers, id)
			}
			return err
		})
		if err != nil {
			return err
		}
		if !start {
			continue
		}
		err = call(opStartContainer, func(ctx context.Context) error {
			_, err := t.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// removePod is kubelet's teardown of a pod whose containers are already
// stopped or never ran: StopPodSandbox, then RemovePodSandbox, which
// removes the containers too.
func (t *scaleTarget) removePod(p *scalePod, tm *timings) error {
	for _, s := range []struct {
		op string
		fn func(context.Context) error
	}{
		{opStopPodSandbox, func(ctx context.Context) error {
			_, err := t.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id})
			return err
		}},
		{opRemovePodSandbox, func(ctx context.Context) error {
			_, err := t.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id})
			return err
		}},
	} {
		begin := time.Now()
		ctx, cancel := t.rpcCtx()
		err := s.fn(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %s %s: %w", t.label(), s.op, p.name, err)
		}
		if tm != nil {
			tm.add(s.op, time.Since(begin))
		}
	}
	for _, id := range p.containers {
		t.created.del(t.created.containers, id)
	}
	t.created.del(t.created.sandboxes, p.id)
	return nil
}

func (t *scaleTarget) teardown(ctx context.Context) error {
	fmt.Fprintf(os.Stderr, "cri-bench: %s: stopping and removing %d pods\n", t.label(), len(t.pods))
	tm := &timings{ops: map[string][]time.Duration{}}
	start := time.Now()
	err := forEach(ctx, t.pods, t.o.parallel[0], func(p *scalePod) error { return t.removePod(p, tm) })
	t.rep.TeardownSecs = time.Since(start).Seconds()
	for op, ds := range tm.ops {
		t.rep.Teardown[op] = summarize(ds)
	}
	return err
}

// removeImages removes the scale images (never the container image,
// which the runtime may have had before). timed records the wall time.
func (t *scaleTarget) removeImages(ctx context.Context, timed bool) {
	if t.o.images == 0 || len(t.images) == 0 {
		return
	}
	imgs := t.images
	t.images = nil
	start := time.Now()
	_ = forEach(ctx, imgs, t.o.parallel[0], func(im scaleImage) error {
		rctx, cancel := t.rpcCtx()
		defer cancel()
		if _, err := t.img.RemoveImage(rctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: im.name}}); err != nil {
			fmt.Fprintf(os.Stderr, "cri-bench: %s: RemoveImage %s: %v\n", t.label(), im.name, err)
		}
		return nil
	})
	if timed {
		t.rep.RemoveImageSecs = time.Since(start).Seconds()
	}
}

// startBurst starts --burst pods (one running container each) all at
// once and times the list calls kubelet keeps making meanwhile; the burst
// pods are removed afterwards, untimed.
func (t *scaleTarget) startBurst(ctx context.Context, calls []scaleCall) error {
	fmt.Fprintf(os.Stderr, "cri-bench: %s: starting %d pods at once\n", t.label(), t.o.burst)
	pods := make([]*scalePod, t.o.burst)
	for i := range pods {
		pods[i] = t.newScalePod("burst", i)
	}
	samples := map[string][]time.Duration{}
	results := map[string]CallResult{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			for _, c := range calls {
				select {
				case <-done:
					return
				default:
				}
				d, items, err := timeOne(ctx, t, c, pick{})
				r := results[c.name]
				if err != nil {
					r.Errors++
					r.Error = err.Error()
				} else {
					r.Items = items
					samples[c.name] = append(samples[c.name], d)
				}
				results[c.name] = r
			}
			// kubelet's relist runs every second; this polls far
			// more often, to see the worst moments of the burst.
			time.Sleep(20 * time.Millisecond)
		}
	})
	tm := &timings{ops: map[string][]time.Duration{}}
	start := time.Now()
	err := forEach(ctx, pods, len(pods), func(p *scalePod) error { return t.runPod(p, 1, true, tm) })
	t.rep.BurstSecs = time.Since(start).Seconds()
	close(done)
	wg.Wait()
	for name, r := range results {
		r.Latency = summarize(samples[name])
		results[name] = r
	}
	t.rep.BurstCalls = results
	for op, ds := range tm.ops {
		t.rep.Setup["burst "+op] = summarize(ds)
	}
	rerr := forEach(context.WithoutCancel(ctx), pods, t.o.parallel[0], func(p *scalePod) error {
		if p.id == "" {
			return nil
		}
		return t.removePod(p, nil)
	})
	return errors.Join(err, rerr)
}

// timeCalls takes o.samples samples of every call on every target,
// interleaved: sample by sample, call by call, runtime by runtime (with
// --by-runtime: runtime by runtime, call by call), with the runtime that
// goes first alternating.
func timeCalls(ctx context.Context, o *options, targets []*scaleTarget, calls []scaleCall, out func(*scaleTarget) map[string]CallResult) {
	samples := make([]map[string][]time.Duration, len(targets))
	starts := make([]map[string][]int64, len(targets))
	for i := range samples {
		samples[i] = map[string][]time.Duration{}
		starts[i] = map[string][]int64{}
	}
	unimplemented := make([]map[string]bool, len(targets))
	for i := range unimplemented {
		unimplemented[i] = map[string]bool{}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	// The bench's own garbage collector runs between samples, not during
	// them: decoding a full node's lists (500 containers' stats, 500
	// images) leaves a GC cycle that otherwise ran during the next call,
	// on a 2-CPU machine 0.1-0.2 ms added to whatever small call came
	// after a large one, on either runtime.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for s := range o.samples {
		runtime.GC()
		picks := make([]pick, len(calls))
		for c := range calls {
			picks[c] = pick{pod: rng.IntN(o.pods), ctr: rng.IntN(max(o.containers, 1)), img: rng.IntN(max(o.images, 1))}
		}
		// Drawn in either order, so that the picks are the same.
		perm := rng.Perm(len(calls))
		if o.fixedOrder {
			slices.Sort(perm)
		}
		for _, st := range sampleOrder(s, len(targets), perm, o.byRuntime) {
			if ctx.Err() != nil {
				return
			}
			c, p, i := calls[st.c], picks[st.c], st.i
			t := targets[i]
			if unimplemented[i][c.name] {
				continue
			}
			if o.gap > 0 {
				time.Sleep(o.gap)
			}
			at := time.Now().UnixMilli()
			d, items, err := timeOne(ctx, t, c, p)
			res := out(t)
			r := res[c.name]
			switch {
			case status.Code(err) == codes.Unimplemented:
				unimplemented[i][c.name] = true
				r.Error = "unimplemented"
			case err != nil:
				r.Errors++
				r.Error = err.Error()
			default:
				r.Items = items
				samples[i][c.name] = append(samples[i][c.name], d)
				starts[i][c.name] = append(starts[i][c.name], at)
			}
			res[c.name] = r
		}
	}
	for i, t := range targets {
		res := out(t)
		for name, ds := range samples[i] {
			r := res[name]
			r.Latency = summarize(ds)
			for _, d := range ds {
				r.SamplesMs = append(r.SamplesMs, ms(d))
			}
			r.SamplesAt = starts[i][name]
			res[name] = r
		}
	}
}

// step is one call of a sample: calls[c] on targets[i].
type step struct{ c, i int }

// sampleOrder is the order of sample s's calls: call by call, each on
// every target in turn, or target by target, each making every call in
// turn (byRuntime); the calls in perm's order, the same on every target;
// the target that goes first alternates from sample to sample.
func sampleOrder(s, targets int, perm []int, byRuntime bool) []step {
	order := make([]step, 0, len(perm)*targets)
	if byRuntime {
		for k := range targets {
			for _, c := range perm {
				order = append(order, step{c: c, i: (k + s) % targets})
			}
		}
		return order
	}
	for _, c := range perm {
		for k := range targets {
			order = append(order, step{c: c, i: (k + s) % targets})
		}
	}
	return order
}

func timeOne(ctx context.Context, t *scaleTarget, c scaleCall, p pick) (time.Duration, int, error) {
	rctx, cancel := t.rpcCtx()
	defer cancel()
	start := time.Now()
	items, err := c.fn(rctx, t, p)
	return time.Since(start), items, err
}

func (t *scaleTarget) pod(p pick) *scalePod { return t.pods[p.pod%len(t.pods)] }

func (t *scaleTarget) container(p pick) (string, error) {
	pod := t.pod(p)
	if len(pod.containers) == 0 {
		return "", errors.New("no container")
	}
	return pod.containers[p.ctr%len(pod.containers)], nil
}

// scaleCalls are the calls kubelet makes on a full node: PLEG relists
// (ListPodSandbox, ListContainers), pod workers (status calls), the
// stats provider and the image manager.
func scaleCalls() []scaleCall {
	return []scaleCall{
		{"ListPodSandbox", func(ctx context.Context, t *scaleTarget, _ pick) (int, error) {
			r, err := t.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
			return len(r.GetItems()), err
		}},
		{"ListPodSandbox (ready)", func(ctx context.Context, t *scaleTarget, _ pick) (int, error) {
			r, err := t.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
				State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}})
			return len(r.GetItems()), err
		}},
		{"PodSandboxStatus", func(ctx context.Context, t *scaleTarget, p pick) (int, error) {
			_, err := t.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: t.pod(p).id})
			return 1, err
		}},
		{"ListContainers", func(ctx context.Context, t *scaleTarget, _ pick) (int, error) {
			r, err := t.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			return len(r.GetContainers()), err
		}},
		{"ListContainers (running)", func(ctx context.Context, t *scaleTarget, _ pick) (int, error) {
			r, err := t.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
				State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}})
			return len(r.GetContainers()), err
		}},
		{"ListContainers (pod)", func(ctx context.Context, t *scaleTarget, p pick) (int, error) {
			r, err := t.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: t.pod(p).id}})
			return len(r.GetContainers()), err
		}},
		{"ListContainers (label)", func(ctx context.Context, t *scaleTarget, p pick) (int, error) {
			r, err := t.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
				LabelSelector: map[string]string{labelPod: t.pod(p).name}}})
			return len(r.GetContainers()), err
		}},
		{"ContainerStatus", func(ctx context.Context, t *scaleTarget, p pick) (int, error) {
			id, err := t.container(p)
			if err != nil {
				return 0, err
			}
			_, err = t.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
			return 1, err
		}},
		{"ContainerStats", func(ctx context.Context, t *scaleTarget, p pick) (int, error) {
			id, err := t.container(p)
			if err != nil {
				return 0, err
			}
			_, err = t.rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
			return 1, err
		}},
		{"ListContainerStats", func(ctx context.Context, t *scaleTarget, _ pick) (int, error) {
			r, err := t.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
			return len(r.GetStats()), err
		}},
		{"PodSandboxStats", func(ctx context.Context, t *scaleTarget, p pick) (int, error) {
			r, err := t.rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: t.pod(p).id})
			return len(r.GetStats().GetLinux().GetContainers()), err
		}},
		{"ListPodSandboxStats", func(ctx context.Context, t *scaleTarget, _ pick) (int, error) {
			r, err := t.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
			return len(r.GetStats()), err
		}},
		{"ImageStatus (tag)", func(ctx context.Context, t *scaleTarget, p pick) (int, error) {
			r, err := t.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: t.images[p.img%len(t.images)].name}})
			if err == nil && r.GetImage() == nil {
				err = errors.New("image not found")
			}
			return 1, err
		}},
		{"ImageStatus (ID)", func(ctx context.Context, t *scaleTarget, p pick) (int, error) {
			r, err := t.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: t.images[p.img%len(t.images)].id}})
			if err == nil && r.GetImage() == nil {
				err = errors.New("image not found")
			}
			return 1, err
		}},
		{"ListImages", func(ctx context.Context, t *scaleTarget, _ pick) (int, error) {
			r, err := t.img.ListImages(ctx, &runtimeapi.ListImagesRequest{})
			return len(r.GetImages()), err
		}},
		{"ImageFsInfo", func(ctx context.Context, t *scaleTarget, _ pick) (int, error) {
			r, err := t.img.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
			return len(r.GetImageFilesystems()), err
		}},
		// The floor of every call: a round trip whose handler does
		// nothing.
		{"Version", func(ctx context.Context, t *scaleTarget, _ pick) (int, error) {
			_, err := t.rt.Version(ctx, &runtimeapi.VersionRequest{})
			return 1, err
		}},
	}
}

// burstCalls are kubelet's relist and stats calls, timed while pods
// start.
func burstCalls() []scaleCall {
	var out []scaleCall
	for _, c := range scaleCalls() {
		switch c.name {
		case "ListPodSandbox", "ListContainers", "ListContainerStats", "ImageFsInfo":
			out = append(out, c)
		}
	}
	return out
}

// removePodCgroups removes the pod cgroups --pod-cgroup-prefix made (what
// kubelet's pod cgroup manager does): runc removes each container's
// cgroup, the pod's own parent stays. Directories are removed deepest
// first in every mounted hierarchy; a cgroup still in use stays.
func removePodCgroups(prefix string) {
	if prefix == "" {
		return
	}
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, r := range roots {
		top := filepath.Join(r, filepath.Clean("/"+prefix))
		if fi, err := os.Stat(top); err != nil || !fi.IsDir() {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i])
		}
	}
}

// loadAvg is the 1-minute load average, to say how busy the machine was.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	_, _ = fmt.Sscan(string(b), &l)
	return l
}

// WriteTable prints the scale report, the runtimes side by side.
func (r *ScaleReport) WriteTable(w *os.File) {
	state := "created"
	if r.Running {
		state = "running"
	}
	order := "call by call"
	if r.ByRuntime {
		order = "runtime by runtime"
	}
	if r.FixedOrder {
		order += ", in the table's order"
	} else {
		order += ", calls shuffled"
	}
	if r.GapMs > 0 {
		order += fmt.Sprintf(", %g ms idle before each", r.GapMs)
	}
	fmt.Fprintf(w, "\nscale: %d pods × %d containers (%s), %d images, %d samples per call (%s), load %.1f → %.1f (timed calls: %.1f → %.1f)\n",
		r.Pods, r.Containers, state, r.Images, r.Samples, order, r.Load[0], r.Load[1], r.TimedLoad[0], r.TimedLoad[1])
	head := fmt.Sprintf("%-26s", "call (ms)")
	for _, t := range r.Targets {
		head += fmt.Sprintf(" | %-24s", fmt.Sprintf("%.24s", t.RuntimeName+" "+t.RuntimeVersion))
	}
	fmt.Fprintln(w, head)
	sub := fmt.Sprintf("%-26s", "")
	for range r.Targets {
		sub += fmt.Sprintf(" | %8s %8s %6s", "p50", "p90", "items")
	}
	fmt.Fprintln(w, sub)
	row := func(name string, get func(*ScaleTarget) (CallResult, bool)) {
		line := fmt.Sprintf("%-26s", name)
		for _, t := range r.Targets {
			c, ok := get(t)
			switch {
			case !ok:
				line += fmt.Sprintf(" | %24s", "")
			case c.Count == 0 && c.Error != "":
				line += fmt.Sprintf(" | %24.24s", c.Error)
			default:
				items := fmt.Sprint(c.Items)
				if c.Errors > 0 {
					items += "!"
				}
				line += fmt.Sprintf(" | %8.2f %8.2f %6s", c.P50ms, c.P90ms, items)
			}
		}
		fmt.Fprintln(w, line)
	}
	for _, name := range r.CallOrder {
		row(name, func(t *ScaleTarget) (CallResult, bool) { c, ok := t.Calls[name]; return c, ok })
	}
	if len(r.BurstOrder) > 0 {
		fmt.Fprintf(w, "during a burst of %d pods starting at once:\n", r.Burst)
		for _, name := range r.BurstOrder {
			row(name, func(t *ScaleTarget) (CallResult, bool) { c, ok := t.BurstCalls[name]; return c, ok })
		}
	}
	for _, op := range r.TeardownOrder {
		row(op, func(t *ScaleTarget) (CallResult, bool) {
			l, ok := t.Teardown[op]
			return CallResult{Latency: l, Items: l.Count}, ok
		})
	}
	secs := func(name string, get func(*ScaleTarget) float64) {
		line := fmt.Sprintf("%-26s", name)
		for _, t := range r.Targets {
			line += fmt.Sprintf(" | %22.2fs", get(t))
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w, "wall time:")
	secs("  pull images", func(t *ScaleTarget) float64 { return t.PullSecs })
	secs("  create pods", func(t *ScaleTarget) float64 { return t.CreateSecs })
	if r.Burst > 0 {
		secs(fmt.Sprintf("  start %d pods at once", r.Burst), func(t *ScaleTarget) float64 { return t.BurstSecs })
	}
	secs("  stop+remove all pods", func(t *ScaleTarget) float64 { return t.TeardownSecs })
	if r.Images > 0 {
		secs("  remove images", func(t *ScaleTarget) float64 { return t.RemoveImageSecs })
	}
	line := fmt.Sprintf("%-26s", "daemon RSS, node full")
	for _, t := range r.Targets {
		v := ""
		if t.DaemonFull != nil {
			v = mib(t.DaemonFull.RSS) + " MiB"
		}
		line += fmt.Sprintf(" | %24s", v)
	}
	fmt.Fprintln(w, line)
}
