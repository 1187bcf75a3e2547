package nri

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/nri/pkg/adaptation/builtin"
	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

func baseSpec() *specs.Spec {
	return &specs.Spec{
		Process: &specs.Process{Args: []string{"sleep", "1"}, Env: []string{"PATH=/bin", "KEEP=1", "DROP=1"}},
		Mounts:  []specs.Mount{{Destination: "/data", Source: "/old", Type: "bind"}},
		Linux: &specs.Linux{
			Namespaces:  []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/run/netns/a"}},
			CgroupsPath: "/pod/ctr",
		},
		Annotations: map[string]string{"gone": "x"},
	}
}

func TestAdjustSpec(t *testing.T) {
	adj := &api.ContainerAdjustment{}
	adj.AddEnv("KEEP", "2")
	adj.RemoveEnv("DROP")
	adj.AddEnv("NEW", "3")
	adj.AddMount(&api.Mount{Destination: "/data", Source: "/new", Type: "bind", Options: []string{"rbind", "ro"}})
	adj.AddDevice(&api.LinuxDevice{Path: "/dev/x", Type: "c", Major: 1, Minor: 3})
	adj.AddRlimit("RLIMIT_NOFILE", 20, 10)
	adj.RemoveAnnotation("gone")
	adj.AddAnnotation("added", "y")
	adj.AddOrReplaceNamespace(&api.LinuxNamespace{Type: "network", Path: "/run/netns/b"})
	adj.SetLinuxCgroupsPath("/other")
	adj.SetLinuxMemoryLimit(1 << 20)
	adj.AddHooks(&api.Hooks{Prestart: []*api.Hook{{Path: "/bin/hook"}}})

	s := baseSpec()
	if err := adjustSpec(s, adj, nil); err != nil {
		t.Fatal(err)
	}
	if want := []string{"PATH=/bin", "KEEP=2", "NEW=3"}; !slices.Equal(s.Process.Env, want) {
		t.Errorf("env %q, want %q", s.Process.Env, want)
	}
	if len(s.Mounts) != 1 || s.Mounts[0].Source != "/new" {
		t.Errorf("mounts %+v, want /data from /new only", s.Mounts)
	}
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/x" || len(s.Linux.Resources.Devices) != 1 || !s.Linux.Resources.Devices[0].Allow {
		t.Errorf("devices %+v, cgroup rules %+v", s.Linux.Devices, s.Linux.Resources.Devices)
	}
	if len(s.Process.Rlimits) != 1 || s.Process.Rlimits[0] != (specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: 20, Soft: 10}) {
		t.Errorf("rlimits %+v", s.Process.Rlimits)
	}
	if _, ok := s.Annotations["gone"]; ok || s.Annotations["added"] != "y" {
		t.Errorf("annotations %v", s.Annotations)
	}
	if len(s.Linux.Namespaces) != 1 || s.Linux.Namespaces[0].Path != "/run/netns/b" {
		t.Errorf("namespaces %+v", s.Linux.Namespaces)
	}
	if s.Linux.CgroupsPath != "/other" || *s.Linux.Resources.Memory.Limit != 1<<20 {
		t.Errorf("cgroups path %q, memory %v", s.Linux.CgroupsPath, s.Linux.Resources.Memory)
	}
	//lint:ignore SA1019 NRI relays prestart hooks.
	if len(s.Hooks.Prestart) != 1 {
		t.Errorf("hooks %+v", s.Hooks)
	}

	cdi := &api.ContainerAdjustment{}
	cdi.AddCDIDevice(&api.CDIDevice{Name: "vendor.com/gpu=0"})
	if err := adjustSpec(baseSpec(), cdi, nil); err == nil || !strings.Contains(err.Error(), "vendor.com/gpu=0") {
		t.Errorf("CDI device without an injector: %v, want an error naming it", err)
	}
	var injected []string
	if err := adjustSpec(baseSpec(), cdi, func(_ *specs.Spec, d []string) error { injected = d; return nil }); err != nil || !slices.Equal(injected, []string{"vendor.com/gpu=0"}) {
		t.Errorf("CDI injector got %q (%v)", injected, err)
	}
}

type fakePod struct{ id string }

func (p fakePod) ID() string { return p.id }
func (p fakePod) Config() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "pod", Namespace: "ns", Uid: "u"}}
}
func (p fakePod) Info() oci.SandboxInfo {
	return oci.SandboxInfo{ID: p.id, Pid: 42, NetNSPath: "/run/netns/x"}
}

type fakeCtr struct {
	id   string
	spec *specs.Spec
}

func (c fakeCtr) ID() string { return c.id }
func (c fakeCtr) Config() *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "ctr-" + c.id}}
}
func (c fakeCtr) Record() meta.Container {
	return meta.Container{ID: c.id, SandboxID: "p", State: meta.ContainerCreated}
}
func (c fakeCtr) Spec() *specs.Spec { return c.spec }

type fakeRuntime struct{ updated []string }

func (r *fakeRuntime) PodSandboxes() []PodSandbox { return []PodSandbox{fakePod{"p"}} }
func (r *fakeRuntime) Containers() []PodContainer { return nil }
func (r *fakeRuntime) UpdateContainer(_ context.Context, id string, _ *specs.LinuxResources) error {
	r.updated = append(r.updated, id)
	return nil
}
func (r *fakeRuntime) EvictContainer(context.Context, string, string) error { return nil }

// TestAdapter drives the adapter with an in-process plugin: adjustments
// reach the spec, a rejection names the plugin, a stop and a removal are
// relayed once, and nothing is relayed for containers plugins never saw.
func TestAdapter(t *testing.T) {
	var events []string
	plugin := &builtin.BuiltinPlugin{Base: "test", Index: "10", Handlers: builtin.BuiltinHandlers{
		CreateContainer: func(_ context.Context, req *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
			events = append(events, "create:"+req.Container.Name)
			if req.Container.Name == "ctr-bad" {
				return nil, errors.New("no, thanks")
			}
			adj := &api.ContainerAdjustment{}
			adj.AddEnv("FROM_PLUGIN", "1")
			u := &api.ContainerUpdate{ContainerId: "other"}
			u.SetLinuxCPUShares(5)
			return &api.CreateContainerResponse{Adjust: adj, Update: []*api.ContainerUpdate{u}}, nil
		},
		StopContainer: func(_ context.Context, req *api.StopContainerRequest) (*api.StopContainerResponse, error) {
			events = append(events, "stop:"+req.Container.Name)
			return &api.StopContainerResponse{}, nil
		},
		RemoveContainer: func(_ context.Context, req *api.RemoveContainerRequest) error {
			events = append(events, "remove:"+req.Container.Name)
			return nil
		},
	}}
	a, err := New("test", "v0", Options{DisableConnections: true, PluginPath: t.TempDir(), PluginConfigPath: t.TempDir(), Builtin: []*builtin.BuiltinPlugin{plugin}})
	if err != nil {
		t.Fatal(err)
	}
	rt := &fakeRuntime{}
	if err := a.Start(context.Background(), rt); err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	ctx := context.Background()
	pod := fakePod{"p"}

	s := baseSpec()
	good := fakeCtr{id: "good", spec: s}
	if err := a.CreateContainer(ctx, pod, good, s); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(s.Process.Env, "FROM_PLUGIN=1") || !slices.Equal(rt.updated, []string{"other"}) {
		t.Errorf("env %q, updates %q", s.Process.Env, rt.updated)
	}
	a.StopContainer(ctx, pod, good)
	a.StopContainer(ctx, pod, good)
	a.RemoveContainer(ctx, pod, good)

	bad := fakeCtr{id: "bad", spec: baseSpec()}
	err = a.CreateContainer(ctx, pod, bad, bad.spec)
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), `NRI plugin "10-test"`) || !strings.Contains(err.Error(), "no, thanks") {
		t.Errorf("rejection: %v", err)
	}
	a.UndoCreateContainer(ctx, pod, bad)
	a.RemoveContainer(ctx, pod, fakeCtr{id: "never-seen"})

	want := []string{"create:ctr-good", "stop:ctr-good", "remove:ctr-good", "create:ctr-bad", "stop:ctr-bad", "remove:ctr-bad"}
	if !slices.Equal(events, want) {
		t.Errorf("plugin saw %q, want %q", events, want)
	}
}

// TestOff: NRI off leaves specs and resources alone.
func TestOff(t *testing.T) {
	var o API = Off{}
	s := baseSpec()
	if err := o.CreateContainer(context.Background(), fakePod{"p"}, fakeCtr{id: "c"}, s); err != nil {
		t.Fatal(err)
	}
	res := &specs.LinuxResources{}
	if got, err := o.UpdateContainer(context.Background(), fakePod{"p"}, fakeCtr{id: "c"}, res); got != res || err != nil {
		t.Errorf("UpdateContainer off = %v, %v", got, err)
	}
	o.BlockSync()()
}

// TestCRIResources: what ContainerStatus reports after an update is the
// request, with only what plugins changed overlaid.
func TestCRIResources(t *testing.T) {
	u64 := func(v uint64) *uint64 { return &v }
	i64 := func(v int64) *int64 { return &v }
	req := &runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 64 << 20, CpusetCpus: "0"}
	before := &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64(512), Cpus: "0"}, Memory: &specs.LinuxMemory{Limit: i64(64 << 20)}}
	for _, tc := range []struct {
		name  string
		after *specs.LinuxResources
		want  *runtimeapi.LinuxContainerResources
	}{
		{"untouched", before, req},
		{"nil", nil, req},
		{"equal copy", &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64(512), Cpus: "0"}, Memory: &specs.LinuxMemory{Limit: i64(64 << 20)}}, req},
		{"memory changed", &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64(512), Cpus: "0"}, Memory: &specs.LinuxMemory{Limit: i64(96 << 20)}},
			&runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 96 << 20, CpusetCpus: "0"}},
		{"cpuset and quota changed", &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64(512), Cpus: "1", Quota: i64(5000)}, Memory: &specs.LinuxMemory{Limit: i64(64 << 20)}},
			&runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 64 << 20, CpusetCpus: "1", CpuQuota: 5000}},
		{"unified added", &specs.LinuxResources{CPU: before.CPU, Memory: before.Memory, Unified: map[string]string{"memory.high": "1"}},
			&runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 64 << 20, CpusetCpus: "0", Unified: map[string]string{"memory.high": "1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CRIResources(req, before, tc.after)
			if !proto.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	if got := CRIResources(req, before, before); got != req {
		t.Error("an update no plugin changed is not reported as asked")
	}
}

// specCounter is a container that counts the reads of its spec (for the
// daemon's containers, a read and decode of config.json).
type specCounter struct {
	fakeCtr
	reads *int
}

func (c specCounter) Spec() *specs.Spec { *c.reads++; return c.spec }

// TestAdapterIdle: with no plugin, the container hooks read no spec and
// keep no state behind; a plugin that has synchronized but is not yet
// counted (the adaptation adds it after its synchronization returns)
// makes them relay until a BlockSync, which waits for its registration
// to end and from which on the count says it all.
func TestAdapterIdle(t *testing.T) {
	a, err := New("test", "v0", Options{DisableConnections: true, PluginPath: t.TempDir(), PluginConfigPath: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if a.Idle() {
		t.Error("idle before Start: the plugins it starts are not counted yet")
	}
	if err := a.Start(context.Background(), &fakeRuntime{}); err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	ctx := context.Background()
	pod := fakePod{"p"}
	reads := 0
	lifecycle := func(id string) {
		c := specCounter{fakeCtr{id: id, spec: baseSpec()}, &reads}
		unblock := a.BlockSync()
		if err := a.CreateContainer(ctx, pod, c, c.spec); err != nil {
			t.Fatal(err)
		}
		unblock()
		a.PostCreateContainer(ctx, pod, c)
		if err := a.StartContainer(ctx, pod, c); err != nil {
			t.Fatal(err)
		}
		a.PostStartContainer(ctx, pod, c)
		a.PostUpdateContainer(ctx, pod, c)
		a.StopContainer(ctx, pod, c)
		a.RemoveContainer(ctx, pod, c)
	}

	if !a.Idle() {
		t.Fatal("not idle with no plugin")
	}
	lifecycle("quiet")
	if reads != 0 {
		t.Errorf("hooks read the spec %d times with no plugin, want 0", reads)
	}
	a.mu.Lock()
	_, left := a.state["quiet"]
	a.mu.Unlock()
	if left {
		t.Error("the container is left in the state after its removal")
	}

	// A registration synchronizes a plugin (the adaptation calls
	// synchronize with plugin registration blocked) that it has not
	// added yet.
	if err := a.synchronize(ctx, func(context.Context, []*api.PodSandbox, []*api.Container) ([]*api.ContainerUpdate, error) {
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if a.Idle() {
		t.Fatal("idle right after a plugin synchronized")
	}
	reads = 0
	c := specCounter{fakeCtr{id: "heard", spec: baseSpec()}, &reads}
	a.PostStartContainer(ctx, pod, c)
	if reads != 1 {
		t.Errorf("a hook after a synchronization read the spec %d times, want 1 (relayed)", reads)
	}
	// Past a BlockSync the registration is over: this one never added
	// its plugin, so NRI is idle again.
	a.BlockSync()()
	if !a.Idle() {
		t.Error("not idle after BlockSync with no plugin counted")
	}
}

// TestAdapterNotIdleWithPlugin: a plugin the adapter starts is counted
// once Start returns.
func TestAdapterNotIdleWithPlugin(t *testing.T) {
	plugin := &builtin.BuiltinPlugin{Base: "test", Index: "10", Handlers: builtin.BuiltinHandlers{
		StartContainer: func(context.Context, *api.StartContainerRequest) error { return nil },
	}}
	a, err := New("test", "v0", Options{DisableConnections: true, PluginPath: t.TempDir(), PluginConfigPath: t.TempDir(), Builtin: []*builtin.BuiltinPlugin{plugin}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background(), &fakeRuntime{}); err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	a.BlockSync()()
	if a.Idle() {
		t.Error("idle with a plugin running")
	}
	if !(Off{}).Idle() {
		t.Error("NRI off is not idle")
	}
}
