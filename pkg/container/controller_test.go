package container

import (
	"context"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/imagetest"
	"github.com/cri-runtimed/cri-runtimed/pkg/nri"
	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim/fakeshim"
	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// The controller's state machine with fakes at its seams: a fake pod and
// shim (pkg/shim/fakeshim), a real image service on a native snapshotter
// in a temporary directory. Root is needed only to bind-mount the rootfs.

const testImage = "docker.io/library/fake:1"

// fakePod is the container controller's view of a pod.
type fakePod struct {
	id, dir string
	cfg     *runtimeapi.PodSandboxConfig
	shim    *fakeshim.Shim
	shimOK  bool
	// api, when set, is what Shim returns (a wrapper of shim).
	api shim.API

	mu           sync.Mutex
	forceDeleted []string
}

func (p *fakePod) ID() string                           { return p.id }
func (p *fakePod) Config() *runtimeapi.PodSandboxConfig { return p.cfg }
func (p *fakePod) Ready() bool                          { return p.shimOK }
func (p *fakePod) BundleDir(id string) string           { return filepath.Join(p.dir, "bundles", id) }
func (p *fakePod) Info() oci.SandboxInfo {
	return oci.SandboxInfo{ID: p.id, Pid: 1, HostNetwork: true, HostIPC: true, Hostname: "fake", CgroupParent: "/fake-pod"}
}

func (p *fakePod) Shim() shim.API {
	if !p.shimOK {
		return nil
	}
	if p.api != nil {
		return p.api
	}
	return p.shim
}

func (p *fakePod) ForceDelete(_ context.Context, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forceDeleted = append(p.forceDeleted, id)
}

type env struct {
	t      *testing.T
	c      *Controller
	db     *meta.DB
	images *imagetest.Images
	pod    *fakePod
	events chan runtimeapi.ContainerEventType
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("bind-mounting a container's rootfs needs root")
	}
	dir := t.TempDir()
	db, err := meta.Open(filepath.Join(dir, "meta.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	images := imagetest.New(t, db)
	images.Add(t, testImage, ocispec.ImageConfig{Cmd: []string{"sh"}, StopSignal: "SIGTERM"}, map[string]string{"etc/motd": "hi"})
	sh, err := fakeshim.NewLauncher().Spawn(context.Background(), shim.SpawnOptions{StateDir: filepath.Join(dir, "shim")})
	if err != nil {
		t.Fatal(err)
	}
	pod := &fakePod{id: "pod1", dir: filepath.Join(dir, "pod"), shim: sh.(*fakeshim.Shim), shimOK: true,
		cfg: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"}, LogDirectory: filepath.Join(dir, "logs")}}
	e := &env{t: t, db: db, images: images, pod: pod, events: make(chan runtimeapi.ContainerEventType, 1000)}
	e.c = e.controller()
	return e
}

// controller makes a controller on the env's stores, as a daemon start
// does.
func (e *env) controller() *Controller {
	drv, err := cgroups.New(cgroups.CgroupfsName)
	if err != nil {
		e.t.Fatal(err)
	}
	c := New(Options{Cgroups: drv, MaxExecOutput: 1 << 20}, e.db, e.images.Service, func(id string) (Sandbox, error) {
		if id != e.pod.id {
			return nil, errors.New("no such pod")
		}
		return e.pod, nil
	})
	c.SetEventHook(func(ev runtimeapi.ContainerEventType, _ *Container) { e.events <- ev })
	e.t.Cleanup(func() {
		for _, ctr := range c.List() {
			if err := c.Remove(context.Background(), ctr.ID()); err != nil && !errors.Is(err, ErrNotFound) {
				e.t.Errorf("cleanup: remove %s: %v", ctr.ID(), err)
			}
		}
		c.Close()
	})
	return c
}

func (e *env) config(name string, attempt uint32) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: name, Attempt: attempt},
		Image: &runtimeapi.ImageSpec{Image: testImage}, Command: []string{"sleep", "1000"}, LogPath: name + ".log"}
}

func (e *env) create(name string) string {
	e.t.Helper()
	id, err := e.c.Create(context.Background(), e.pod, e.config(name, 0))
	if err != nil {
		e.t.Fatalf("Create(%s): %v", name, err)
	}
	return id
}

func (e *env) record(id string) meta.Container {
	e.t.Helper()
	ctr, err := e.c.Get(id)
	if err != nil {
		e.t.Fatalf("Get(%s): %v", id, err)
	}
	return ctr.Record()
}

// drain returns the events emitted so far.
func (e *env) drain() []runtimeapi.ContainerEventType {
	var out []runtimeapi.ContainerEventType
	for {
		select {
		case ev := <-e.events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

// exitEvent is the event the pod's shim monitor would deliver for id.
func (e *env) exitEvent(id string) shim.Event {
	st, err := e.pod.shim.State(context.Background(), id)
	if err != nil {
		e.t.Fatalf("fake shim State(%s): %v", id, err)
	}
	return shim.Event{ID: id, Type: shim.EventExited, State: st}
}

var (
	evCreated = runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT
	evStarted = runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT
	evStopped = runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT
	evDeleted = runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT
)

// TestStartRacesExit: a container that exits as soon as it starts. Its
// exit event reaches the controller before Start's "running" reply (in
// the reply window, or concurrently at a random moment); in every run the
// container must end EXITED with its code, and no STARTED event may
// follow its STOPPED one.
func TestStartRacesExit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rng := rand.New(rand.NewSource(1))
	for i := range 60 {
		id, err := e.c.Create(ctx, e.pod, e.config("racer", uint32(i)))
		if err != nil {
			t.Fatal(err)
		}
		e.pod.shim.ExitOnStart[id] = 7
		var wg sync.WaitGroup
		if i%2 == 0 {
			// Deterministic: the exit lands in the reply window.
			e.pod.shim.BeforeStartReply = func(id string) { e.c.HandleEvent(e.pod, e.exitEvent(id)) }
		} else {
			// Concurrent, as the pod monitor delivers it.
			e.pod.shim.BeforeStartReply = nil
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(rng.Intn(200)) * time.Microsecond)
				// The shim has the container from Start's runtime create
				// on; the monitor hears of nothing before.
				ev, err := e.pod.shim.State(ctx, id)
				for deadline := time.Now().Add(10 * time.Second); errors.Is(err, shim.ErrNotFound) && time.Now().Before(deadline); {
					time.Sleep(20 * time.Microsecond)
					ev, err = e.pod.shim.State(ctx, id)
				}
				if err == nil && ev.Status == shim.StatusExited {
					e.c.HandleEvent(e.pod, shim.Event{ID: id, Type: shim.EventExited, State: ev})
					return
				}
				st, _ := e.pod.shim.Wait(ctx, id)
				e.c.HandleEvent(e.pod, shim.Event{ID: id, Type: shim.EventExited, State: st})
			}()
		}
		if err := e.c.Start(ctx, id); err != nil {
			t.Fatalf("run %d: Start: %v", i, err)
		}
		wg.Wait()
		rec := e.record(id)
		if rec.State != meta.ContainerExited || rec.ExitCode != 7 || rec.StartedAt.IsZero() || rec.FinishedAt.IsZero() {
			t.Fatalf("run %d: %s code %d started %v finished %v; want exited 7 with both times", i, rec.State, rec.ExitCode, rec.StartedAt, rec.FinishedAt)
		}
		evs := e.drain()
		if stop := slices.Index(evs, evStopped); stop < 0 || slices.Contains(evs[stop:], evStarted) {
			t.Fatalf("run %d: events %v: want STOPPED last of the lifecycle", i, evs)
		}
		if err := e.c.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
		e.drain()
	}
}

// TestStopIdempotent: SIGTERM, then SIGKILL after the timeout for a
// container that ignores SIGTERM; stopping an exited container succeeds
// without asking the shim.
func TestStopIdempotent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.create("stubborn")
	if err := e.c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.pod.shim.IgnoreTerm[id] = true
	if err := e.c.Stop(ctx, id, 1); err != nil {
		t.Fatal(err)
	}
	rec := e.record(id)
	if rec.State != meta.ContainerExited || rec.ExitCode != 128+int32(syscall.SIGKILL) {
		t.Fatalf("after Stop: %s code %d, want exited by SIGKILL", rec.State, rec.ExitCode)
	}
	calls := len(e.pod.shim.Calls())
	if err := e.c.Stop(ctx, id, 10); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if n := len(e.pod.shim.Calls()); n != calls {
		t.Errorf("stopping an exited container called the shim: %v", e.pod.shim.Calls()[calls:])
	}
	if err := e.c.Stop(ctx, "0123456789abcdef", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stop of an unknown container = %v, want ErrNotFound", err)
	}
}

// TestStopSignal: the config's stop_signal is what a stop sends first,
// over the image's StopSignal, and what the container reports.
func TestStopSignal(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		sig  runtimeapi.Signal
		want syscall.Signal
	}{
		{"image", runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, syscall.SIGTERM},
		{"config", runtimeapi.Signal_SIGNAL_SIGUSR1, syscall.SIGUSR1},
	} {
		cfg := e.config(tc.name, 0)
		cfg.StopSignal = tc.sig
		id, err := e.c.Create(ctx, e.pod, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.c.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
		ctr, _ := e.c.Get(id)
		if got := ctr.StopSignal(); got != signalToCRI(tc.want) {
			t.Errorf("%s: StopSignal() = %s, want %s", tc.name, got, signalToCRI(tc.want))
		}
		if err := e.c.Stop(ctx, id, 10); err != nil {
			t.Fatal(err)
		}
		if rec := e.record(id); rec.ExitCode != 128+int32(tc.want) {
			t.Errorf("%s: exit code %d after Stop, want %d (killed by %s)", tc.name, rec.ExitCode, 128+int32(tc.want), tc.want)
		}
	}
}

// TestStartWrongState: only a created container starts.
func TestStartWrongState(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.create("c")
	if err := e.c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Start(ctx, id); !errors.Is(err, ErrState) {
		t.Errorf("Start of a running container = %v, want ErrState", err)
	}
	if err := e.c.Stop(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Start(ctx, id); !errors.Is(err, ErrState) {
		t.Errorf("Start of an exited container = %v, want ErrState", err)
	}
}

// TestRemoveReleasesEverything: Remove stops a running container and
// leaves no record, snapshot, bundle or name; a second Remove is NotFound.
func TestRemoveReleasesEverything(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.create("c")
	if err := e.c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if got := ids(e.c.ListByPod(e.pod.id)); !slices.Equal(got, []string{id}) {
		t.Errorf("ListByPod before removal = %v, want [%s]", got, id)
	}
	if err := e.c.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if got := e.c.ListByPod(e.pod.id); len(got) != 0 {
		t.Errorf("ListByPod after removal = %v, want none", ids(got))
	}
	if recs, _ := e.db.ListContainers(); len(recs) != 0 {
		t.Errorf("records left: %+v", recs)
	}
	if _, err := e.images.Snap.Stat(ctx, id); !errors.Is(err, snapshot.ErrNotFound) {
		t.Errorf("rootfs snapshot left: %v", err)
	}
	if _, err := os.Stat(e.pod.BundleDir(id)); !os.IsNotExist(err) {
		t.Errorf("bundle left: %v", err)
	}
	if _, ok := e.pod.shim.Containers()[id]; ok {
		t.Errorf("the shim still holds the container")
	}
	if err := e.c.Remove(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}
	// The name is free again.
	e.create("c")
	if got := e.drain(); !slices.Equal(got[:4], []runtimeapi.ContainerEventType{evCreated, evStarted, evStopped, evDeleted}) {
		t.Errorf("events %v", got)
	}
}

// TestCreateFailureCleansUp: a create that fails after the record was
// written (here: the PID namespace target does not exist) leaves nothing
// behind, and the name can be used again.
func TestCreateFailureCleansUp(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cfg := e.config("c", 0)
	cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "nosuchcontainer"}}}
	if _, err := e.c.Create(ctx, e.pod, cfg); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Create with an unknown PID namespace target = %v, want ErrInvalid", err)
	}
	if recs, _ := e.db.ListContainers(); len(recs) != 0 {
		t.Errorf("records left: %+v", recs)
	}
	n := 0
	_ = e.images.Snap.Walk(ctx, func(i snapshot.Info) error {
		if i.Kind == snapshot.KindActive {
			n++
		}
		return nil
	})
	if n != 0 {
		t.Errorf("%d rootfs snapshots left", n)
	}
	if entries, _ := os.ReadDir(filepath.Join(e.pod.dir, "bundles")); len(entries) != 0 {
		t.Errorf("bundles left: %v", entries)
	}
	e.create("c")
}

// TestCreateDefersRuntime: CreateContainer only prepares the bundle; the
// runtime creates the container at its start, once, and a create the
// runtime refuses there leaves the container exited with StartError
// (as containerd, which creates its task at the start too).
func TestCreateDefersRuntime(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.create("c")
	if _, ok := e.pod.shim.Containers()[id]; ok {
		t.Fatal("the shim holds the container before its start")
	}
	if rec := e.record(id); rec.State != meta.ContainerCreated || rec.Pid != 0 {
		t.Fatalf("after Create: state %s pid %d, want created without a pid", rec.State, rec.Pid)
	}
	if err := e.c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.pod.shim.Containers()[id]; !ok {
		t.Fatal("the shim does not hold the started container")
	}

	bad := e.create("bad")
	e.pod.shim.Fail["Create"] = errors.New("runc create failed")
	if err := e.c.Start(ctx, bad); err == nil {
		t.Fatal("Start succeeded although the runtime refused the create")
	}
	delete(e.pod.shim.Fail, "Create")
	if rec := e.record(bad); rec.State != meta.ContainerExited || rec.ExitCode != 128 || rec.Reason != "StartError" {
		t.Errorf("after a refused create: state %s exit %d reason %q, want exited 128 StartError", rec.State, rec.ExitCode, rec.Reason)
	}
	if err := e.c.Start(ctx, bad); !errors.Is(err, ErrState) {
		t.Errorf("second Start = %v, want ErrState", err)
	}
	if err := e.c.Remove(ctx, bad); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.pod.BundleDir(bad)); !os.IsNotExist(err) {
		t.Errorf("bundle left: %v", err)
	}
}

// runRecorder records, per runtime create, whether it started the
// container too.
type runRecorder struct {
	*fakeshim.Shim
	mu     sync.Mutex
	starts []bool
}

func (r *runRecorder) Create(ctx context.Context, req shim.CreateRequest) (shim.State, error) {
	r.mu.Lock()
	r.starts = append(r.starts, req.Start)
	r.mu.Unlock()
	return r.Shim.Create(ctx, req)
}

// busyNRI is NRI with a plugin connected: its StartContainer hook notes
// the state the shim holds the container in.
type busyNRI struct {
	nri.Off
	sh   *fakeshim.Shim
	seen []shim.Status
}

func (n *busyNRI) Idle() bool { return false }
func (n *busyNRI) StartContainer(_ context.Context, _ nri.PodSandbox, ctr nri.Container) error {
	n.seen = append(n.seen, n.sh.Containers()[ctr.ID()].Status)
	return nil
}

// TestStartAtOnce: with NRI idle, Start creates and starts the container
// in one runtime call (`runc run --detach`); a start that fails there
// leaves the container exited with StartError, and removable. With a
// plugin connected, the plugin's StartContainer hook sees the container
// created, between the runtime's create and its start.
func TestStartAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name      string
		busy      bool
		wantCalls []bool
	}{
		{"idle", false, []bool{true}},
		{"plugin", true, []bool{false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			rr := &runRecorder{Shim: e.pod.shim}
			e.pod.api = rr
			var busy *busyNRI
			if tc.busy {
				busy = &busyNRI{sh: e.pod.shim}
				e.c.opts.NRI = busy
			}
			id := e.create("c")
			if rec := e.record(id); rec.State != meta.ContainerCreated {
				t.Fatalf("after Create: %s, want created", rec.State)
			}
			if err := e.c.Start(ctx, id); err != nil {
				t.Fatal(err)
			}
			if rec := e.record(id); rec.State != meta.ContainerRunning || rec.Pid == 0 {
				t.Errorf("after Start: %s pid %d, want running with a pid", rec.State, rec.Pid)
			}
			if !slices.Equal(rr.starts, tc.wantCalls) {
				t.Errorf("runtime creates (with start?) %v, want %v", rr.starts, tc.wantCalls)
			}
			if busy != nil && !slices.Equal(busy.seen, []shim.Status{shim.StatusCreated}) {
				t.Errorf("the plugin's StartContainer saw the container %v, want created", busy.seen)
			}

			bad := e.create("bad")
			e.pod.shim.Fail["Start"] = errors.New("exec: \"nope\": executable file not found")
			err := e.c.Start(ctx, bad)
			delete(e.pod.shim.Fail, "Start")
			if err == nil || !strings.Contains(err.Error(), "nope") {
				t.Errorf("failed Start = %v, want the runtime's error", err)
			}
			if rec := e.record(bad); rec.State != meta.ContainerExited || rec.ExitCode != 128 || rec.Reason != "StartError" {
				t.Errorf("after a failed start: %s exit %d reason %q, want exited 128 StartError", rec.State, rec.ExitCode, rec.Reason)
			}
			if err := e.c.Remove(ctx, bad); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestUpdateBeforeRuntime: resources updated before the start reach the
// spec the runtime creates the container from; devices stay.
func TestUpdateBeforeRuntime(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	drv := &updateCounter{Driver: e.c.opts.Cgroups}
	e.c.opts.Cgroups = drv
	id := e.create("c")
	spec, err := oci.Load(e.pod.BundleDir(id))
	if err != nil {
		t.Fatal(err)
	}
	devices := spec.Linux.Resources.Devices
	if err := e.c.UpdateResources(ctx, id, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 512}); err != nil {
		t.Fatal(err)
	}
	if calls := countCalls(e.pod.shim.Calls(), "Update "+id); calls != 0 || drv.n != 0 {
		t.Errorf("%d runtime and %d cgroup driver updates of a container the runtime does not have", calls, drv.n)
	}
	spec, err = oci.Load(e.pod.BundleDir(id))
	if err != nil {
		t.Fatal(err)
	}
	r := spec.Linux.Resources
	if r.Memory == nil || r.Memory.Limit == nil || *r.Memory.Limit != 64<<20 || r.CPU == nil || r.CPU.Shares == nil || *r.CPU.Shares != 512 {
		t.Errorf("spec resources after the update: %+v", r)
	}
	if !reflect.DeepEqual(r.Devices, devices) {
		t.Errorf("devices %v, want %v", r.Devices, devices)
	}
	if err := e.c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.c.UpdateResources(ctx, id, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	if calls := countCalls(e.pod.shim.Calls(), "Update "+id); calls != 1 || drv.n != 1 {
		t.Errorf("%d runtime and %d cgroup driver updates of a started container, want 1 each", calls, drv.n)
	}
}

// TestShimDied: when the pod's shim dies, its running and created
// containers are reported exited (ShimDied) and killed through the
// runtime; exited ones keep their exit.
func TestShimDied(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	running, created, done := e.create("running"), e.create("created"), e.create("done")
	for _, id := range []string{running, done} {
		if err := e.c.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.pod.shim.Exit(done, 3); err != nil {
		t.Fatal(err)
	}
	e.c.HandleEvent(e.pod, e.exitEvent(done))
	e.pod.shim.Die()
	e.pod.shimOK = false
	e.c.HandleEvent(e.pod, shim.Event{Type: shim.EventShimDied})
	for _, id := range []string{running, created} {
		if rec := e.record(id); rec.State != meta.ContainerExited || rec.Reason != "ShimDied" {
			t.Errorf("%s after its shim died: %s %q", id, rec.State, rec.Reason)
		}
	}
	if rec := e.record(done); rec.ExitCode != 3 || rec.Reason != "Error" {
		t.Errorf("an exited container changed when its shim died: %d %q", rec.ExitCode, rec.Reason)
	}
	if got := e.pod.forceDeleted; !slices.Contains(got, running) || !slices.Contains(got, created) || slices.Contains(got, done) {
		t.Errorf("force-deleted %v, want the running and created ones", got)
	}
	// Removal works without a shim.
	for _, id := range []string{running, created, done} {
		if err := e.c.Remove(ctx, id); err != nil {
			t.Errorf("Remove(%s) without a shim: %v", id, err)
		}
	}
}

// TestRecover: a daemon start finds a creation cut short (torn down), a
// container that exited while the daemon was away (takes the shim's
// exit), one still running, and one whose shim is gone (reported killed).
func TestRecover(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	running, exitedWhileDown := e.create("running"), e.create("exited")
	for _, id := range []string{running, exitedWhileDown} {
		if err := e.c.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	half := e.create("half")
	rec := e.record(half)
	rec.State = meta.ContainerCreating
	if err := e.db.PutContainer(rec); err != nil {
		t.Fatal(err)
	}
	// The daemon goes away; meanwhile one container exits.
	e.c.Close()
	if err := e.pod.shim.Exit(exitedWhileDown, 5); err != nil {
		t.Fatal(err)
	}
	c2 := e.controller()
	if err := c2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Get(half); !errors.Is(err, ErrNotFound) {
		t.Errorf("interrupted creation still listed: %v", err)
	}
	if _, err := e.images.Snap.Stat(ctx, half); !errors.Is(err, snapshot.ErrNotFound) {
		t.Errorf("interrupted creation's snapshot left: %v", err)
	}
	// The pod's list is rebuilt from the records, oldest first.
	if got := ids(c2.ListByPod(e.pod.id)); !slices.Equal(got, []string{running, exitedWhileDown}) {
		t.Errorf("ListByPod after recovery = %v, want %v", got, []string{running, exitedWhileDown})
	}
	ctr, err := c2.Get(exitedWhileDown)
	if err != nil || ctr.Record().State != meta.ContainerExited || ctr.Record().ExitCode != 5 {
		t.Errorf("container that exited while down: %+v %v", ctr, err)
	}
	ctr, err = c2.Get(running)
	if err != nil || ctr.Record().State != meta.ContainerRunning {
		t.Fatalf("running container after recovery: %v", err)
	}

	// Another start, with the pod's shim gone.
	c2.Close()
	e.pod.shim.Die()
	e.pod.shimOK = false
	c3 := e.controller()
	if err := c3.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	ctr, err = c3.Get(running)
	if err != nil || ctr.Record().State != meta.ContainerExited || ctr.Record().Reason != "ShimDied" {
		t.Errorf("running container whose shim is gone: %+v %v", ctr.Record(), err)
	}
	e.c = c3
}

// TestImageVolumes: a mount naming an image gets a read-only, noexec view
// of that image, whole or at its sub path, bound into the container; the
// container reports the image in use until it is removed, and removal
// unmounts and deletes the view.
func TestImageVolumes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	vol := e.images.Add(t, "docker.io/library/data:1", ocispec.ImageConfig{}, map[string]string{"data/hello": "world", "top": "level"})
	withVolume := func(name, ref, sub string) *runtimeapi.ContainerConfig {
		cfg := e.config(name, 0)
		cfg.Mounts = []*runtimeapi.Mount{
			{ContainerPath: "/host", HostPath: t.TempDir()},
			{ContainerPath: "/vol", Image: &runtimeapi.ImageSpec{Image: ref}, ImageSubPath: sub, Readonly: true},
		}
		return cfg
	}
	for _, tc := range []struct {
		name, sub, file, content string
	}{
		{"whole", "", "data/hello", "world"},
		{"subpath", "data", "hello", "world"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := e.c.Create(ctx, e.pod, withVolume(tc.name, "docker.io/library/data:1", tc.sub))
			if err != nil {
				t.Fatal(err)
			}
			rec := e.record(id)
			if !slices.Equal(rec.ImageVolumes, []string{vol.ID.String()}) {
				t.Errorf("record ImageVolumes = %v, want [%s]", rec.ImageVolumes, vol.ID)
			}
			ctr, _ := e.c.Get(id)
			var m *specs.Mount
			for i := range ctr.Spec().Mounts {
				if ctr.Spec().Mounts[i].Destination == "/vol" {
					m = &ctr.Spec().Mounts[i]
				}
			}
			if m == nil {
				t.Fatalf("no /vol mount in the spec: %+v", ctr.Spec().Mounts)
			}
			for _, o := range []string{"ro", "noexec", "nosuid", "nodev"} {
				if !slices.Contains(m.Options, o) {
					t.Errorf("/vol options %v lack %s", m.Options, o)
				}
			}
			if b, err := os.ReadFile(filepath.Join(m.Source, tc.file)); err != nil || string(b) != tc.content {
				t.Errorf("%s in the volume: %q, %v", tc.file, b, err)
			}
			if tc.sub != "" {
				if _, err := os.Stat(filepath.Join(m.Source, "top")); !os.IsNotExist(err) {
					t.Errorf("the sub path mount shows the image's top level: %v", err)
				}
			}
			if err := os.WriteFile(filepath.Join(m.Source, "new"), nil, 0o644); err == nil {
				t.Errorf("the image volume is writable on the host")
			}
			if got := e.c.ImageVolumeUser(vol.ID.String()); got != id {
				t.Errorf("ImageVolumeUser = %q, want %s", got, id)
			}
			if err := e.c.Remove(ctx, id); err != nil {
				t.Fatal(err)
			}
			if _, err := e.images.Snap.Stat(ctx, imageVolumeKey(id, 0)); !errors.Is(err, snapshot.ErrNotFound) {
				t.Errorf("image volume snapshot left: %v", err)
			}
			if got := e.c.ImageVolumeUser(vol.ID.String()); got != "" {
				t.Errorf("ImageVolumeUser after removal = %q", got)
			}
		})
	}
	for _, tc := range []struct {
		name, ref, sub string
		want           error
	}{
		{"missing image", "docker.io/library/absent:1", "", image.ErrNotFound},
		{"missing sub path", "docker.io/library/data:1", "nope", ErrInvalid},
		{"escaping sub path", "docker.io/library/data:1", "../../etc", ErrInvalid},
		{"absolute sub path", "docker.io/library/data:1", "/data", ErrInvalid},
	} {
		if _, err := e.c.Create(ctx, e.pod, withVolume(strings.ReplaceAll(tc.name, " ", "-"), tc.ref, tc.sub)); !errors.Is(err, tc.want) {
			t.Errorf("%s: Create = %v, want %v", tc.name, err, tc.want)
		}
	}
	if snaps := e.snapshotKeys(t); len(snaps) != 0 {
		t.Errorf("snapshots left after failed creations: %v", snaps)
	}
}

// snapshotKeys lists the snapshots other than the images' layers.
func (e *env) snapshotKeys(t *testing.T) []string {
	t.Helper()
	var out []string
	err := e.images.Snap.Walk(context.Background(), func(i snapshot.Info) error {
		if i.Kind != snapshot.KindCommitted {
			out = append(out, i.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func ids(ctrs []*Container) []string {
	out := make([]string, 0, len(ctrs))
	for _, c := range ctrs {
		out = append(out, c.ID())
	}
	return out
}

// TestSpecFactsFromMemory: the status and stats calls get the user and
// cgroups path of a new container without reading its bundle.
func TestSpecFactsFromMemory(t *testing.T) {
	e := newEnv(t)
	id := e.create("c")
	ctr, err := e.c.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	want := ctr.Spec()
	if want == nil || want.Process == nil || want.Linux == nil || want.Linux.CgroupsPath == "" {
		t.Fatalf("spec of a new container = %+v", want)
	}
	if err := os.Rename(filepath.Join(e.pod.BundleDir(id), "config.json"), filepath.Join(e.pod.BundleDir(id), "config.json.away")); err != nil {
		t.Fatal(err)
	}
	defer os.Rename(filepath.Join(e.pod.BundleDir(id), "config.json.away"), filepath.Join(e.pod.BundleDir(id), "config.json"))
	if got := ctr.CgroupsPath(); got != want.Linux.CgroupsPath {
		t.Errorf("CgroupsPath = %q, want %q", got, want.Linux.CgroupsPath)
	}
	if got := ctr.User(); got == nil || got.UID != want.Process.User.UID || got.GID != want.Process.User.GID {
		t.Errorf("User = %+v, want %+v", got, want.Process.User)
	}
}

func countCalls(calls []string, call string) int {
	n := 0
	for _, c := range calls {
		if c == call {
			n++
		}
	}
	return n
}

// updateCounter counts the cgroup driver's container updates (the systemd
// driver sets the scope's properties there, which exist only once the
// runtime created the container).
type updateCounter struct {
	cgroups.Driver
	n int
}

func (u *updateCounter) UpdateContainer(ctx context.Context, cgroupsPath string, r *specs.LinuxResources) error {
	u.n++
	return u.Driver.UpdateContainer(ctx, cgroupsPath, r)
}

// TestCgroupNamespace: on a cgroup v2 node (the option set) an
// unprivileged container gets its own cgroup namespace, so it sees its
// own limits at /sys/fs/cgroup; a privileged one keeps the node's, and
// without the option (v1) nobody gets one.
func TestCgroupNamespace(t *testing.T) {
	for _, tc := range []struct {
		name             string
		option, priv     bool
		wantOwnNamespace bool
	}{
		{"v2 unprivileged", true, false, true},
		{"v2 privileged", true, true, false},
		{"v1 unprivileged", false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.c.opts.CgroupNamespace = tc.option
			e.pod.cfg.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{Privileged: tc.priv}}
			cfg := e.config("c", 0)
			cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: tc.priv}}
			id, err := e.c.Create(context.Background(), e.pod, cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctr, err := e.c.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			var own bool
			for _, ns := range ctr.Spec().Linux.Namespaces {
				if ns.Type == specs.CgroupNamespace {
					own = ns.Path == ""
				}
			}
			if own != tc.wantOwnNamespace {
				t.Errorf("own cgroup namespace = %v, want %v (namespaces %+v)", own, tc.wantOwnNamespace, ctr.Spec().Linux.Namespaces)
			}
		})
	}
}
