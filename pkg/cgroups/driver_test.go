package cgroups

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name, parent string
		wantErr      bool
	}{
		{name: CgroupfsName},
		{name: CgroupfsName, parent: "/pods"},
		{name: CgroupfsName, parent: "pods", wantErr: true},
		{name: CgroupfsName, parent: "pods.slice", wantErr: true},
		{name: SystemdName},
		{name: SystemdName, parent: "pods.slice"},
		{name: SystemdName, parent: "-.slice"},
		{name: SystemdName, parent: "/pods", wantErr: true},
		{name: SystemdName, parent: "a--b.slice", wantErr: true},
		{name: "cgroupv2", wantErr: true},
	} {
		d, err := New(tc.name, WithDefaultParent(tc.parent))
		if (err != nil) != tc.wantErr {
			t.Errorf("New(%q, parent %q) error = %v, want error %v", tc.name, tc.parent, err, tc.wantErr)
			continue
		}
		if err == nil && d.Name() != tc.name {
			t.Errorf("New(%q).Name() = %q", tc.name, d.Name())
		}
	}
	d, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[bool]string{true: SystemdName, false: CgroupfsName}[SystemdRuns()]; d.Name() != want {
		t.Errorf("New(\"\") picked %s; systemd runs: %v", d.Name(), SystemdRuns())
	}
}

func TestPodCgroup(t *testing.T) {
	const id = "0123abcd"
	for _, tc := range []struct {
		driver, defaultParent, configured string
		want                              string
		own, wantErr                      bool
		// cgroupsPath of container "c1" in the pod, and the directory
		// it resolves to.
		ctrPath, ctrDir string
	}{
		{driver: CgroupfsName, want: "/cri-runtimed/" + id, own: true,
			ctrPath: "/cri-runtimed/" + id + "/c1", ctrDir: "/cri-runtimed/" + id + "/c1"},
		{driver: CgroupfsName, defaultParent: "/x/y", want: "/x/y/" + id, own: true,
			ctrPath: "/x/y/" + id + "/c1", ctrDir: "/x/y/" + id + "/c1"},
		{driver: CgroupfsName, configured: "/kubepods/burstable/pod1", want: "/kubepods/burstable/pod1",
			ctrPath: "/kubepods/burstable/pod1/c1", ctrDir: "/kubepods/burstable/pod1/c1"},
		{driver: CgroupfsName, configured: "kubepods-burstable-pod1.slice", wantErr: true},
		{driver: CgroupfsName, configured: "a.slice:p:n", wantErr: true},
		{driver: SystemdName, want: "cri_runtimed-pod" + id + ".slice", own: true,
			ctrPath: "cri_runtimed-pod" + id + ".slice:cri-runtimed:c1",
			ctrDir:  "/cri_runtimed.slice/cri_runtimed-pod" + id + ".slice/cri-runtimed-c1.scope"},
		{driver: SystemdName, defaultParent: "-.slice", want: "pod" + id + ".slice", own: true,
			ctrPath: "pod" + id + ".slice:cri-runtimed:c1", ctrDir: "/pod" + id + ".slice/cri-runtimed-c1.scope"},
		{driver: SystemdName, defaultParent: "e2e_x.slice", want: "e2e_x-pod" + id + ".slice", own: true,
			ctrPath: "e2e_x-pod" + id + ".slice:cri-runtimed:c1", ctrDir: "/e2e_x.slice/e2e_x-pod" + id + ".slice/cri-runtimed-c1.scope"},
		{driver: SystemdName, configured: "kubepods-burstable-pod1.slice", want: "kubepods-burstable-pod1.slice",
			ctrPath: "kubepods-burstable-pod1.slice:cri-runtimed:c1",
			ctrDir:  "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-runtimed-c1.scope"},
		{driver: SystemdName, configured: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice",
			want:    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice",
			ctrPath: "kubepods-burstable-pod1.slice:cri-runtimed:c1",
			ctrDir:  "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-runtimed-c1.scope"},
		{driver: SystemdName, configured: "/kubepods/burstable/pod1", wantErr: true},
		{driver: SystemdName, configured: "kubepods--x.slice", wantErr: true},
	} {
		t.Run(tc.driver+" "+tc.defaultParent+" "+tc.configured, func(t *testing.T) {
			d, err := New(tc.driver, WithDefaultParent(tc.defaultParent), withBus(newFakeBus().dial))
			if err != nil {
				t.Fatal(err)
			}
			got, own, err := d.PodCgroup(id, tc.configured)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidParent) {
					t.Fatalf("PodCgroup(%q) = %q, %v; want ErrInvalidParent", tc.configured, got, err)
				}
				return
			}
			if err != nil || got != tc.want || own != tc.own {
				t.Fatalf("PodCgroup(%q) = %q, own %v, %v; want %q, own %v", tc.configured, got, own, err, tc.want, tc.own)
			}
			p := d.CgroupsPath(got, "c1")
			if p != tc.ctrPath {
				t.Errorf("CgroupsPath = %q, want %q", p, tc.ctrPath)
			}
			if dir, err := Resolve(p); err != nil || dir != tc.ctrDir {
				t.Errorf("Resolve(%q) = %q, %v; want %q", p, dir, err, tc.ctrDir)
			}
			if pod, err := Resolve(got); err != nil || pod != filepath.Dir(tc.ctrDir) {
				t.Errorf("Resolve(pod %q) = %q, %v; want the container's parent %q", got, pod, err, filepath.Dir(tc.ctrDir))
			}
		})
	}
}

func TestRuntimeArgs(t *testing.T) {
	fs, _ := New(CgroupfsName)
	sys, _ := New(SystemdName)
	if fs.RuntimeArgs() != nil || !slices.Equal(sys.RuntimeArgs(), []string{"--systemd-cgroup"}) {
		t.Errorf("runtime args: cgroupfs %q, systemd %q", fs.RuntimeArgs(), sys.RuntimeArgs())
	}
}

func TestCgroupfsRemovePod(t *testing.T) {
	root := t.TempDir()
	mounts := []string{filepath.Join(root, "memory"), filepath.Join(root, "cpu,cpuacct"), filepath.Join(root, "unified")}
	d, err := New(CgroupfsName, withLayout(func() (Layout, error) { return Layout{V1Root: root, Mounts: mounts}, nil }))
	if err != nil {
		t.Fatal(err)
	}
	parent, own, _ := d.PodCgroup("p1", "")
	if !own {
		t.Fatal("a pod without a parent must own its cgroup")
	}
	// The pod cgroup exists in two hierarchies (runc made it), not in the
	// third; the daemon's parent must stay.
	for _, m := range mounts[:2] {
		if err := os.MkdirAll(filepath.Join(m, parent), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.CreatePod(context.Background(), parent); err != nil {
		t.Fatal(err)
	}
	if err := d.RemovePod(context.Background(), parent); err != nil {
		t.Fatalf("RemovePod: %v", err)
	}
	for _, m := range mounts {
		if _, err := os.Stat(filepath.Join(m, parent)); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", filepath.Join(m, parent), err)
		}
		if m != mounts[2] {
			if _, err := os.Stat(filepath.Join(m, DefaultCgroupfsParent)); err != nil {
				t.Errorf("default parent in %s removed: %v", m, err)
			}
		}
	}
	if err := d.RemovePod(context.Background(), parent); err != nil {
		t.Errorf("second RemovePod: %v", err)
	}
	if err := d.RemovePod(context.Background(), "/"); err == nil {
		t.Error("RemovePod(/) succeeded")
	}
}

// fakeBus records the jobs the systemd driver runs.
type fakeBus struct {
	mu        sync.Mutex
	units     map[string][]sd.Property
	calls     []string
	dials     int
	connected bool
	// fail makes the next call return this error (and, when
	// disconnect is set, drop the connection).
	fail       error
	disconnect bool
	result     string
}

func newFakeBus() *fakeBus { return &fakeBus{units: map[string][]sd.Property{}, result: "done"} }

func (b *fakeBus) dial(context.Context) (unitManager, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dials++
	b.connected = true
	return b, nil
}

func (b *fakeBus) take() error {
	err := b.fail
	b.fail = nil
	if err != nil && b.disconnect {
		b.connected = false
		b.disconnect = false
	}
	return err
}

func (b *fakeBus) StartTransientUnitContext(_ context.Context, name, mode string, props []sd.Property, ch chan<- string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "start "+name)
	if err := b.take(); err != nil {
		return 0, err
	}
	if _, ok := b.units[name]; ok {
		return 0, dbus.Error{Name: errUnitExists}
	}
	b.units[name] = props
	ch <- b.result
	return 1, nil
}

func (b *fakeBus) StopUnitContext(_ context.Context, name, mode string, ch chan<- string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "stop "+name)
	if err := b.take(); err != nil {
		return 0, err
	}
	if _, ok := b.units[name]; !ok {
		return 0, dbus.Error{Name: errNoSuchUnit}
	}
	delete(b.units, name)
	ch <- b.result
	return 2, nil
}

func (b *fakeBus) ResetFailedUnitContext(_ context.Context, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "reset-failed "+name)
	return nil
}

func (b *fakeBus) SetUnitPropertiesContext(_ context.Context, name string, runtime bool, props ...sd.Property) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, fmt.Sprintf("set-property %s runtime=%t", name, runtime))
	if err := b.take(); err != nil {
		return err
	}
	b.units[name] = append(b.units[name], props...)
	return nil
}

func (b *fakeBus) Connected() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.connected
}

func (b *fakeBus) Close() {}

func TestSystemdPodSlice(t *testing.T) {
	ctx := context.Background()
	bus := newFakeBus()
	d, err := New(SystemdName, withBus(bus.dial))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	parent, _, _ := d.PodCgroup("p1", "")
	if err := d.CreatePod(ctx, parent); err != nil {
		t.Fatalf("CreatePod: %v", err)
	}
	props := map[string]any{}
	for _, p := range bus.units[parent] {
		props[p.Name] = p.Value.Value()
	}
	for _, k := range []string{"MemoryAccounting", "CPUAccounting", "IOAccounting", "TasksAccounting"} {
		if props[k] != true {
			t.Errorf("pod slice property %s = %v, want true", k, props[k])
		}
	}
	if props["DefaultDependencies"] != false || !strings.Contains(props["Description"].(string), parent) {
		t.Errorf("pod slice properties = %v", props)
	}
	// Idempotent both ways: a retried creation, a repeated removal.
	if err := d.CreatePod(ctx, parent); err != nil {
		t.Errorf("CreatePod of an existing slice: %v", err)
	}
	if err := d.RemovePod(ctx, parent); err != nil {
		t.Errorf("RemovePod: %v", err)
	}
	if _, ok := bus.units[parent]; ok {
		t.Error("slice still there after RemovePod")
	}
	if err := d.RemovePod(ctx, parent); err != nil {
		t.Errorf("RemovePod of a removed slice: %v", err)
	}
	want := []string{"start " + parent, "start " + parent, "stop " + parent, "reset-failed " + parent, "stop " + parent}
	if !slices.Equal(bus.calls, want) {
		t.Errorf("systemd calls = %q, want %q", bus.calls, want)
	}

	// A failed job is an error; so is any other D-Bus error.
	bus.result = "failed"
	if err := d.CreatePod(ctx, "x.slice"); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Errorf("CreatePod with a failed job: %v", err)
	}
	bus.result = "done"
	bus.fail = dbus.Error{Name: "org.freedesktop.DBus.Error.AccessDenied"}
	if err := d.CreatePod(ctx, "y.slice"); err == nil {
		t.Error("CreatePod with access denied succeeded")
	}
	// A connection systemd dropped (daemon-reexec) is redialed once.
	dials := bus.dials
	bus.fail, bus.disconnect = errors.New("connection closed"), true
	if err := d.CreatePod(ctx, "z.slice"); err != nil {
		t.Errorf("CreatePod after a dropped connection: %v", err)
	}
	if bus.dials != dials+1 {
		t.Errorf("dials = %d, want one more than %d", bus.dials, dials)
	}
}
