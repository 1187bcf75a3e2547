package podsandbox

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox/pause"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// fakeSandboxImage is a sandbox_image that is never mounted.
type fakeSandboxImage struct{}

func (fakeSandboxImage) Mount(context.Context, string, string) ([]string, error) { return nil, nil }
func (fakeSandboxImage) Unmount(context.Context, string, string) error           { return nil }

// TestPauseByShim: the shim starts the built-in pause when configured
// to, unless the pod asks for something it leaves to runc.
func TestPauseByShim(t *testing.T) {
	profile := filepath.Join(t.TempDir(), "p.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction": "SCMP_ACT_ALLOW"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	localhost := func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile}
	}
	privileged := func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.Privileged = true }
	for _, tc := range []struct {
		name   string
		on     bool
		image  bool
		change func(*runtimeapi.PodSandboxConfig)
		want   bool
	}{
		{name: "configured", on: true, want: true},
		{name: "not configured", on: false, want: false},
		{name: "sandbox image", on: true, image: true, want: false},
		{name: "localhost seccomp", on: true, change: localhost, want: false},
		{name: "privileged", on: true, change: privileged, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &runtimeapi.PodSandboxConfig{
				Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "n", Uid: "u"},
				Linux:    &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{}},
			}
			if tc.change != nil {
				tc.change(cfg)
			}
			spec, err := oci.SandboxSpec("id", cfg, oci.SandboxInfo{ID: "id", NetNSPath: "/run/netns/id"},
				oci.WithRootfs("/run/pods/id/rootfs"), oci.WithCgroupsPath("/pods/id/id"), oci.WithRootfsReadonly(),
				oci.WithProcessArgs(pause.ContainerPath, pause.Arg), withPauseBinary("/usr/bin/cri-runtimed"))
			if err != nil {
				t.Fatal(err)
			}
			c := &Controller{opts: Options{ShimStartsPause: tc.on}}
			if tc.image {
				c.opts.SandboxImage = fakeSandboxImage{}
			}
			if got := c.pauseByShim(&Pod{rec: meta.Sandbox{ID: "id"}, cfg: cfg}, spec); got != tc.want {
				t.Errorf("pauseByShim = %v, want %v", got, tc.want)
			}
		})
	}
}
