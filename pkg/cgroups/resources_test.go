package cgroups

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeTree is a cgroup mount tree in a temporary directory: the files
// UpdatePod writes, with the values the kernel starts a cgroup with.
func fakeTree(t *testing.T, unified bool, dir string) Layout {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"cpu/" + dir + "/cpu.shares":               "1024",
		"cpu/" + dir + "/cpu.cfs_quota_us":         "-1",
		"cpu/" + dir + "/cpu.cfs_period_us":        "100000",
		"memory/" + dir + "/memory.limit_in_bytes": "9223372036854771712",
	}
	l := Layout{V1Root: root, Mounts: []string{filepath.Join(root, "cpu"), filepath.Join(root, "memory")}}
	if unified {
		files = map[string]string{
			dir + "/cpu.weight": "100",
			dir + "/cpu.max":    "max 100000",
			dir + "/memory.max": "max",
		}
		l = Layout{V2Root: root, Mounts: []string{root}}
	}
	for f, v := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func readTree(t *testing.T, l Layout, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	root := l.V1Root
	if l.Unified() {
		root = l.V2Root
	}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		got[strings.Replace(rel, strings.TrimPrefix(dir, "/")+"/", "", 1)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestUpdatePod: each driver writes the pod's CPU weight, quota and memory
// limit into the pod cgroup's files (v1 and v2 names), leaves unset ones
// and the containers' own (swap, pids), and the systemd driver also sets
// the slice's unit properties.
func TestUpdatePod(t *testing.T) {
	full := &specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Shares: ptr(uint64(512)), Quota: ptr(int64(150000)), Period: ptr(uint64(100000))},
		Memory: &specs.LinuxMemory{Limit: ptr(int64(320 << 20)), Swap: ptr(int64(320 << 20))},
		// Not a pod cgroup's: swap (which would bar the containers'
		// swap) and pids stay with the containers.
		Pids: &specs.LinuxPids{Limit: ptr(int64(100))},
	}
	memOnly := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(64 << 20))}}
	for _, tc := range []struct {
		name      string
		driver    string
		unified   bool
		parent    string
		dir       string
		res       *specs.LinuxResources
		want      map[string]string
		wantProps map[string]any
	}{
		{name: "cgroupfs v1", driver: CgroupfsName, parent: "/kubepods/burstable/pod1", dir: "/kubepods/burstable/pod1", res: full,
			want: map[string]string{"cpu/cpu.shares": "512", "cpu/cpu.cfs_quota_us": "150000", "cpu/cpu.cfs_period_us": "100000",
				"memory/memory.limit_in_bytes": "335544320"}},
		{name: "cgroupfs v1 memory only", driver: CgroupfsName, parent: "/cri-runtimed/p1", dir: "/cri-runtimed/p1", res: memOnly,
			want: map[string]string{"cpu/cpu.shares": "1024", "cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000",
				"memory/memory.limit_in_bytes": "67108864"}},
		{name: "cgroupfs v2", driver: CgroupfsName, unified: true, parent: "/kubepods/burstable/pod1", dir: "/kubepods/burstable/pod1", res: full,
			want: map[string]string{"cpu.weight": "20", "cpu.max": "150000 100000", "memory.max": "335544320"}},
		{name: "systemd v1", driver: SystemdName, parent: "kubepods-burstable-pod1.slice",
			dir: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice", res: full,
			want: map[string]string{"cpu/cpu.shares": "512", "cpu/cpu.cfs_quota_us": "150000", "cpu/cpu.cfs_period_us": "100000",
				"memory/memory.limit_in_bytes": "335544320"},
			wantProps: map[string]any{"CPUWeight": uint64(20), "CPUQuotaPerSecUSec": uint64(1500000),
				"CPUQuotaPeriodUSec": uint64(100000), "MemoryMax": uint64(320 << 20)}},
		{name: "systemd v2", driver: SystemdName, unified: true, parent: "/kubepods.slice/kubepods-pod2.slice",
			dir: "/kubepods.slice/kubepods-pod2.slice", res: full,
			want: map[string]string{"cpu.weight": "20", "cpu.max": "150000 100000", "memory.max": "335544320"},
			wantProps: map[string]any{"CPUWeight": uint64(20), "CPUQuotaPerSecUSec": uint64(1500000),
				"CPUQuotaPeriodUSec": uint64(100000), "MemoryMax": uint64(320 << 20)}},
		{name: "systemd v2 memory only", driver: SystemdName, unified: true, parent: "cri_runtimed-podp1.slice",
			dir: "/cri_runtimed.slice/cri_runtimed-podp1.slice", res: memOnly,
			want:      map[string]string{"cpu.weight": "100", "cpu.max": "max 100000", "memory.max": "67108864"},
			wantProps: map[string]any{"MemoryMax": uint64(64 << 20)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := fakeTree(t, tc.unified, tc.dir)
			bus := newFakeBus()
			d, err := New(tc.driver, withBus(bus.dial), withLayout(func() (Layout, error) { return l, nil }))
			if err != nil {
				t.Fatal(err)
			}
			if err := d.UpdatePod(context.Background(), tc.parent, tc.res); err != nil {
				t.Fatalf("UpdatePod: %v", err)
			}
			got := readTree(t, l, tc.dir)
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (tree %v)", k, got[k], v, got)
				}
			}
			props := map[string]any{}
			for _, p := range bus.units[filepath.Base(tc.parent)] {
				props[p.Name] = p.Value.Value()
			}
			if len(props) != len(tc.wantProps) {
				t.Errorf("unit properties = %v, want %v", props, tc.wantProps)
			}
			for k, v := range tc.wantProps {
				if props[k] != v {
					t.Errorf("unit property %s = %v (%T), want %v", k, props[k], props[k], v)
				}
			}
		})
	}
}

// TestUpdatePodErrors: a missing pod cgroup is an error, never created;
// so is a parent of the other driver's form and a refused D-Bus call.
func TestUpdatePodErrors(t *testing.T) {
	ctx := context.Background()
	l := fakeTree(t, false, "/kubepods/pod1")
	layout := withLayout(func() (Layout, error) { return l, nil })
	fs, _ := New(CgroupfsName, layout)
	res := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(1 << 20))}}
	if err := fs.UpdatePod(ctx, "/kubepods/pod2", res); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("UpdatePod of a missing cgroup: %v, want not exist", err)
	}
	if _, err := os.Stat(filepath.Join(l.V1Root, "memory/kubepods/pod2")); !os.IsNotExist(err) {
		t.Errorf("UpdatePod created the missing cgroup: %v", err)
	}
	if err := fs.UpdatePod(ctx, "/", res); err == nil {
		t.Error("UpdatePod of the root cgroup succeeded")
	}
	bus := newFakeBus()
	sys, _ := New(SystemdName, withBus(bus.dial), layout)
	if err := sys.UpdatePod(ctx, "/kubepods/pod1", res); !errors.Is(err, ErrInvalidParent) {
		t.Errorf("systemd UpdatePod of a cgroupfs path: %v", err)
	}
	bus.fail = errors.New("access denied")
	if err := sys.UpdatePod(ctx, "kubepods-pod1.slice", res); err == nil {
		t.Error("UpdatePod with a refused D-Bus call succeeded")
	}
}
