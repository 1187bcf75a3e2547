package cgroups

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestContainerCreated: where the runtime made a sub-cgroup of the
// container's scope (crun on cgroup v2), the driver reports it as the
// processes' cgroup and the systemd driver puts the limits on the scope's
// unit; without one (runc), or on v1, the container's cgroup is the
// processes' and the unit is left alone (no D-Bus call at create).
func TestContainerCreated(t *testing.T) {
	const slice, id = "kubepods-pod1.slice", "abc"
	scope := "/kubepods.slice/kubepods-pod1.slice/cri-runtimed-abc.scope"
	res := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(64 << 20))}}
	for _, tc := range []struct {
		name      string
		driver    string
		unified   bool
		subgroup  bool
		wantDir   string
		wantCalls []string
	}{
		{"crun systemd v2", SystemdName, true, true, scope + "/container", []string{"set-property cri-runtimed-abc.scope runtime=true"}},
		{"runc systemd v2", SystemdName, true, false, scope, nil},
		{"systemd v1", SystemdName, false, true, scope, nil},
		{"cgroupfs: no sub-cgroup is crun's", CgroupfsName, true, true, "/kubepods/pod1/abc", nil},
		{"runc cgroupfs v2", CgroupfsName, true, false, "/kubepods/pod1/abc", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			l := Layout{V2Root: root}
			if !tc.unified {
				l = Layout{V1Root: root, V2Root: filepath.Join(root, "unified")}
			}
			bus := newFakeBus()
			d, err := New(tc.driver, withBus(bus.dial), withLayout(func() (Layout, error) { return l, nil }))
			if err != nil {
				t.Fatal(err)
			}
			parent := "/kubepods/pod1"
			if tc.driver == SystemdName {
				parent = slice
			}
			cgPath := d.CgroupsPath(parent, id)
			dir, _ := Resolve(cgPath)
			if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.subgroup {
				if err := os.Mkdir(filepath.Join(root, dir, RuntimeSubgroup), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			asked := 0
			got, err := d.ContainerCreated(context.Background(), cgPath, func() (*specs.LinuxResources, error) {
				asked++
				return res, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.wantDir {
				t.Errorf("processes' cgroup = %q, want %q", got, tc.wantDir)
			}
			if !slices.Equal(bus.calls, tc.wantCalls) {
				t.Errorf("systemd calls = %q, want %q", bus.calls, tc.wantCalls)
			}
			if tc.wantCalls == nil && asked != 0 {
				t.Errorf("resources read %d times with nothing to set", asked)
			}
			if tc.wantCalls != nil {
				if v := values(bus.units["cri-runtimed-abc.scope"]); v["MemoryMax"] != uint64(64<<20) {
					t.Errorf("scope properties = %v, want MemoryMax %d", v, 64<<20)
				}
			}
			// The answer is a path stats can read.
			if again, err := Resolve(got); err != nil || again != got {
				t.Errorf("Resolve(%q) = %q, %v", got, again, err)
			}
		})
	}
}
