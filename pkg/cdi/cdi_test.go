package cdi

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestRequested(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     *runtimeapi.ContainerConfig
		want    []string
		wantErr bool
	}{
		{"none", &runtimeapi.ContainerConfig{}, nil, false},
		{"field", &runtimeapi.ContainerConfig{CDIDevices: []*runtimeapi.CDIDevice{{Name: "example.com/dev=a"}, {Name: "example.com/dev=b"}}},
			[]string{"example.com/dev=a", "example.com/dev=b"}, false},
		{"field and annotations, once each", &runtimeapi.ContainerConfig{
			CDIDevices: []*runtimeapi.CDIDevice{{Name: "example.com/dev=a"}},
			Annotations: map[string]string{
				"cdi.k8s.io/z":   "example.com/dev=c",
				"cdi.k8s.io/a":   "example.com/dev=a, example.com/dev=b",
				"other.io/thing": "not-a-device",
			}},
			[]string{"example.com/dev=a", "example.com/dev=b", "example.com/dev=c"}, false},
		{"bad field", &runtimeapi.ContainerConfig{CDIDevices: []*runtimeapi.CDIDevice{{Name: "gpu0"}}}, nil, true},
		{"bad annotation", &runtimeapi.ContainerConfig{Annotations: map[string]string{"cdi.k8s.io/x": "example.com/dev"}}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Requested(tc.cfg)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidName) {
					t.Fatalf("err = %v, want ErrInvalidName", err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("Requested = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

const testSpec = `{
  "cdiVersion": "0.6.0",
  "kind": "example.com/dev",
  "containerEdits": {"env": ["VENDOR=example"]},
  "devices": [{
    "name": "null0",
    "containerEdits": {
      "env": ["NULL0=yes"],
      "deviceNodes": [{"path": "/dev/example-null", "hostPath": "/dev/null"}],
      "mounts": [{"hostPath": "/tmp", "containerPath": "/example", "options": ["ro", "bind"]}],
      "hooks": [{"hookName": "createRuntime", "path": "/bin/true"}]
    }
  }]
}`

func TestInject(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir()}
	r := New(dirs)
	defer r.Close()
	spec := func() *specs.Spec {
		return &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{}}
	}
	if err := r.Inject(spec(), []string{"example.com/dev=null0"}); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("Inject of a device no spec defines = %v, want ErrUnknownDevice", err)
	}
	// A spec written after the registry started is found: the directories
	// are watched (or rescanned at the next injection).
	if err := os.WriteFile(filepath.Join(dirs[1], "example.json"), []byte(testSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	s := spec()
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		s = spec()
		if err = r.Inject(s, []string{"example.com/dev=null0"}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("Inject after the spec was written: %v", err)
	}
	if !slices.Contains(s.Process.Env, "VENDOR=example") || !slices.Contains(s.Process.Env, "NULL0=yes") {
		t.Errorf("env = %v, want the spec's and the device's variables", s.Process.Env)
	}
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/example-null" || s.Linux.Devices[0].Major != 1 || s.Linux.Devices[0].Minor != 3 {
		t.Errorf("devices = %+v, want /dev/example-null as char 1:3", s.Linux.Devices)
	}
	if s.Linux.Resources == nil || len(s.Linux.Resources.Devices) != 1 || !s.Linux.Resources.Devices[0].Allow || s.Linux.Resources.Devices[0].Access != "rwm" {
		t.Errorf("device cgroup = %+v, want 1:3 allowed rwm", s.Linux.Resources)
	}
	if len(s.Mounts) != 1 || s.Mounts[0].Destination != "/example" {
		t.Errorf("mounts = %+v", s.Mounts)
	}
	if s.Hooks == nil || len(s.Hooks.CreateRuntime) != 1 || s.Hooks.CreateRuntime[0].Path != "/bin/true" {
		t.Errorf("hooks = %+v", s.Hooks)
	}
	if err := r.Inject(spec(), []string{"example.com/dev=null0", "example.com/dev=gone"}); !errors.Is(err, ErrUnknownDevice) {
		t.Errorf("Inject with one unknown device = %v, want ErrUnknownDevice", err)
	}
	if err := r.Inject(spec(), nil); err != nil {
		t.Errorf("Inject of no device = %v", err)
	}
	var none *Registry
	if err := none.Inject(spec(), []string{"example.com/dev=null0"}); !errors.Is(err, ErrUnknownDevice) {
		t.Errorf("Inject without a registry = %v, want ErrUnknownDevice", err)
	}
}

// TestInjectMissingHostDevice: a spec naming a device node the host lacks
// fails the injection, not the container's start.
func TestInjectMissingHostDevice(t *testing.T) {
	dir := t.TempDir()
	spec := `{"cdiVersion": "0.6.0", "kind": "example.com/dev", "devices": [{"name": "gone",
	  "containerEdits": {"deviceNodes": [{"path": "/dev/example-gone", "hostPath": "/dev/no-such-device-here"}]}}]}`
	if err := os.WriteFile(filepath.Join(dir, "example.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	r := New([]string{dir})
	defer r.Close()
	err := r.Inject(&specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{}}, []string{"example.com/dev=gone"})
	if !errors.Is(err, ErrInject) {
		t.Fatalf("Inject = %v, want ErrInject", err)
	}
}
