package cgroups

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"

	sd "github.com/coreos/go-systemd/v22/dbus"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func ptr[T any](v T) *T { return &v }

// values flattens properties to name → value for comparison.
func values(props []sd.Property) map[string]any {
	m := map[string]any{}
	for _, p := range props {
		m[p.Name] = p.Value.Value()
	}
	return m
}

func TestScopeProperties(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    *specs.LinuxResources
		want map[string]any
	}{
		{"none", nil, map[string]any{}},
		{"empty", &specs.LinuxResources{}, map[string]any{}},
		{
			// What TestUpdateContainerResources sends.
			"cri update",
			&specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: ptr(int64(128 << 20))},
				CPU:    &specs.LinuxCPU{Shares: ptr(uint64(256)), Quota: ptr(int64(20000)), Period: ptr(uint64(100000))},
			},
			map[string]any{"MemoryMax": uint64(128 << 20), "CPUWeight": uint64(10), "CPUQuotaPeriodUSec": uint64(100000), "CPUQuotaPerSecUSec": uint64(200000)},
		},
		{
			"quota rounded up to 10ms per second",
			&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(12345)), Period: ptr(uint64(100000))}},
			map[string]any{"CPUQuotaPeriodUSec": uint64(100000), "CPUQuotaPerSecUSec": uint64(130000)},
		},
		{
			"no quota",
			&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(-1)), Period: ptr(uint64(50000))}},
			map[string]any{"CPUQuotaPeriodUSec": uint64(50000), "CPUQuotaPerSecUSec": infinity},
		},
		{
			"swap is memory+swap in OCI",
			&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(100)), Swap: ptr(int64(300))}},
			map[string]any{"MemoryMax": uint64(100), "MemorySwapMax": uint64(200)},
		},
		{
			"unlimited",
			&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(-1)), Swap: ptr(int64(-1))}, Pids: &specs.LinuxPids{Limit: ptr(int64(-1))}},
			map[string]any{"MemoryMax": infinity, "MemorySwapMax": infinity, "TasksMax": infinity},
		},
		{
			"cpusets",
			&specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-2,9", Mems: "1"}},
			map[string]any{"AllowedCPUs": []byte{0x07, 0x02}, "AllowedMemoryNodes": []byte{0x02}},
		},
		{"minimum weight", &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr(uint64(2))}}, map[string]any{"CPUWeight": uint64(1)}},
		{"maximum weight", &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr(uint64(262144))}}, map[string]any{"CPUWeight": uint64(10000)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			props, err := scopeProperties(tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if got := values(props); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("properties = %v, want %v", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"x", "3-1", "1,", "0-"} {
		if _, err := scopeProperties(&specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: bad}}); err == nil {
			t.Errorf("cpus %q accepted", bad)
		}
	}
}

func TestSystemdUpdateContainer(t *testing.T) {
	ctx := context.Background()
	bus := newFakeBus()
	d, err := New(SystemdName, withBus(bus.dial))
	if err != nil {
		t.Fatal(err)
	}
	res := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(1 << 30))}}
	path := d.CgroupsPath("kubepods-pod1.slice", "abc")
	if err := d.UpdateContainer(ctx, path, res); err != nil {
		t.Fatal(err)
	}
	if want := []string{"set-property cri-runtimed-abc.scope runtime=true"}; !slices.Equal(bus.calls, want) {
		t.Errorf("calls = %q, want %q", bus.calls, want)
	}
	if got := values(bus.units["cri-runtimed-abc.scope"]); got["MemoryMax"] != uint64(1<<30) {
		t.Errorf("scope properties = %v", got)
	}

	// Nothing to set: no call.
	bus.calls = nil
	if err := d.UpdateContainer(ctx, path, &specs.LinuxResources{}); err != nil || len(bus.calls) != 0 {
		t.Errorf("empty update: err %v, calls %q", err, bus.calls)
	}

	// A connection systemd dropped is replaced once.
	bus.fail, bus.disconnect = errors.New("connection closed"), true
	if err := d.UpdateContainer(ctx, path, res); err != nil {
		t.Errorf("after a dropped connection: %v", err)
	}
	if bus.dials != 2 {
		t.Errorf("dials = %d, want 2", bus.dials)
	}
	// Other errors are the update's.
	bus.fail = errors.New("refused")
	if err := d.UpdateContainer(ctx, path, res); err == nil {
		t.Error("a refused set-property succeeded")
	}
	if err := d.UpdateContainer(ctx, "/kubepods/pod1/abc", res); err == nil {
		t.Error("a cgroupfs path accepted")
	}
}

func TestCgroupfsUpdateContainer(t *testing.T) {
	d, err := New(CgroupfsName)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.UpdateContainer(context.Background(), "/cri-runtimed/p/c", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(1))}}); err != nil {
		t.Error(err)
	}
}
