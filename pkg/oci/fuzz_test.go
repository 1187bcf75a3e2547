package oci

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// FuzzContainerSpec: any CRI container and pod config (as kubelet or a
// hostile client could send them) either yields a spec a runtime can run
// or an InvalidArgument error, never a panic.
func FuzzContainerSpec(f *testing.F) {
	seed := func(c *runtimeapi.ContainerConfig, p *runtimeapi.PodSandboxConfig) {
		cb, _ := proto.Marshal(c)
		pb, _ := proto.Marshal(p)
		f.Add(cb, pb)
	}
	pod := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "n", Uid: "u"}, Hostname: "p"}
	seed(&runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: "busybox"}, Command: []string{"sh"}}, pod)
	seed(&runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: "busybox"}, Args: []string{"a"},
		Mounts: []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/tmp", Readonly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}},
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{CpuQuota: 50000, MemoryLimitInBytes: 1 << 20, OomScoreAdj: 1000, HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}}},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"NET_ADMIN"}, DropCapabilities: []string{"ALL"}},
				RunAsUser:    &runtimeapi.Int64Value{Value: 1000}, ReadonlyRootfs: true, NoNewPrivs: true,
				Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
			},
		},
	}, pod)
	seed(&runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}}}, &runtimeapi.PodSandboxConfig{})
	rootfs := f.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	img := ocispec.ImageConfig{Entrypoint: []string{"/bin/sh"}, Cmd: []string{"-c", "true"}, Env: []string{"PATH=/bin"}}
	f.Fuzz(func(t *testing.T, cb, pb []byte) {
		var c runtimeapi.ContainerConfig
		var p runtimeapi.PodSandboxConfig
		if proto.Unmarshal(cb, &c) != nil || proto.Unmarshal(pb, &p) != nil {
			return
		}
		info := SandboxInfo{ID: "s", Pid: 1, NetNSPath: "/run/netns/x", Hostname: "h", ShmPath: "/dev/shm", CgroupParent: "/pods/x"}
		spec, err := ContainerSpec("c", &c, &p, img, info, rootfs)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, os.ErrPermission) {
				// Host lookups (devices, profiles) may fail otherwise; they
				// must still not panic.
				t.Logf("non-InvalidArgument error: %v", err)
			}
			return
		}
		if spec.Process == nil || len(spec.Process.Args) == 0 || spec.Root == nil || spec.Linux == nil {
			t.Fatalf("accepted config gave an unrunnable spec: %+v", spec)
		}
		for _, m := range spec.Mounts {
			if !filepath.IsAbs(m.Destination) {
				t.Fatalf("mount destination %q is not absolute", m.Destination)
			}
		}
		if _, err := SandboxSpec("s", &p, info); err != nil {
			return
		}
	})
}
