package oci

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fuzzPasswd is the fuzzed image's /etc/passwd: users with ids past 31
// bits, which a truncation would turn into root.
const fuzzPasswd = "root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n" +
	"evil:x:4294967296:1000::/:/bin/sh\nevilgid:x:1001:4294967296::/:/bin/sh\nbig:x:2147483648:0::/:/bin/sh\n"

// FuzzContainerSpec: any CRI container and pod config (as kubelet or a
// hostile client could send them) either yields a spec a runtime can run
// or an InvalidArgument error, never a panic; and an accepted spec keeps
// the security invariants checkSpecInvariants lists.
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
	withSC := func(sc *runtimeapi.LinuxContainerSecurityContext) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Command: []string{"sh"}, Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: sc}}
	}
	for _, sc := range []*runtimeapi.LinuxContainerSecurityContext{
		{RunAsUsername: "evil"},
		{RunAsUsername: "evilgid"},
		{RunAsUsername: "big"},
		{RunAsUser: &runtimeapi.Int64Value{Value: 1 << 32}},
		{RunAsUser: &runtimeapi.Int64Value{Value: 1000}, RunAsGroup: &runtimeapi.Int64Value{Value: 1<<32 + 5}},
		{RunAsUser: &runtimeapi.Int64Value{Value: 1000}, SupplementalGroups: []int64{10, 1 << 32}},
		{RunAsUser: &runtimeapi.Int64Value{Value: 1000}, Capabilities: &runtimeapi.Capability{
			DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"CHOWN"}, AddAmbientCapabilities: []string{"net_bind_service"}}},
		{MaskedPaths: []string{"/proc/kcore", "/proc/keys"}, ReadonlyPaths: []string{"/proc/sys"}},
		{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"ALL"}}},
	} {
		seed(withSC(sc), pod)
	}
	rootfs := f.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte(fuzzPasswd), 0o644); err != nil {
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
		checkSpecInvariants(t, &c, spec)
		if _, err := SandboxSpec("s", &p, info); err != nil {
			return
		}
	})
}

// checkSpecInvariants asserts what no accepted container config may
// produce: an inheritable capability not asked for as ambient (it would
// survive execve into a setuid or file-capability binary), a capability
// the node cannot grant, a uid or gid past 2^31-1 or other than the one
// asked for (a truncated 33-bit id is root), and, unless privileged, a
// masked or read-only path dropped.
func checkSpecInvariants(t *testing.T, c *runtimeapi.ContainerConfig, spec *specs.Spec) {
	t.Helper()
	sc := c.GetLinux().GetSecurityContext()
	caps := spec.Process.Capabilities
	if caps == nil {
		t.Fatal("accepted spec has no capabilities: runc would keep its own")
	}
	var ambient []string
	for _, a := range sc.GetCapabilities().GetAddAmbientCapabilities() {
		ambient = append(ambient, normalizeCap(a))
	}
	for _, c := range caps.Inheritable {
		if !slices.Contains(caps.Ambient, c) {
			t.Errorf("inheritable %s is not ambient: inheritable %v, ambient %v", c, caps.Inheritable, caps.Ambient)
		}
	}
	for _, c := range caps.Ambient {
		if !slices.Contains(ambient, c) {
			t.Errorf("ambient %s was not asked for (asked: %v)", c, ambient)
		}
	}
	grantable := GrantableCapabilities()
	for _, c := range caps.Bounding {
		if !slices.Contains(grantable, c) {
			t.Errorf("bounding set holds %s, which the node cannot grant", c)
		}
	}

	u := spec.Process.User
	for _, id := range append([]uint32{u.UID, u.GID}, u.AdditionalGids...) {
		if id > math.MaxInt32 {
			t.Errorf("id %d is past 2^31-1: user %+v", id, u)
		}
	}
	switch {
	case sc.GetRunAsUsername() != "":
		uid, gid, ok := fuzzIDs(sc.GetRunAsUsername())
		if !ok || int64(u.UID) != uid {
			t.Errorf("run_as_username %q gave uid %d, want %d (known: %v)", sc.GetRunAsUsername(), u.UID, uid, ok)
		}
		if sc.GetRunAsGroup() == nil && int64(u.GID) != gid {
			t.Errorf("run_as_username %q gave gid %d, want %d", sc.GetRunAsUsername(), u.GID, gid)
		}
	case sc.GetRunAsUser() != nil:
		if int64(u.UID) != sc.GetRunAsUser().GetValue() {
			t.Errorf("run_as_user %d gave uid %d", sc.GetRunAsUser().GetValue(), u.UID)
		}
	}
	if g := sc.GetRunAsGroup(); g != nil && int64(u.GID) != g.GetValue() {
		t.Errorf("run_as_group %d gave gid %d", g.GetValue(), u.GID)
	}
	for _, g := range sc.GetSupplementalGroups() {
		if !slices.ContainsFunc(u.AdditionalGids, func(a uint32) bool { return int64(a) == g }) {
			t.Errorf("supplemental group %d missing from %v", g, u.AdditionalGids)
		}
	}

	if sc.GetPrivileged() {
		return
	}
	wantMasked, wantRO := sc.GetMaskedPaths(), sc.GetReadonlyPaths()
	if sc == nil {
		wantMasked, wantRO = DefaultMaskedPaths(), DefaultReadonlyPaths()
	}
	for _, p := range wantMasked {
		if !slices.Contains(spec.Linux.MaskedPaths, p) {
			t.Errorf("masked path %s dropped from an unprivileged container: %v", p, spec.Linux.MaskedPaths)
		}
	}
	for _, p := range wantRO {
		if !slices.Contains(spec.Linux.ReadonlyPaths, p) {
			t.Errorf("read-only path %s dropped from an unprivileged container: %v", p, spec.Linux.ReadonlyPaths)
		}
	}
}

// fuzzIDs are the uid and gid a run_as_username resolves to in
// fuzzPasswd (a numeric name is a uid, group 0), as 64-bit numbers: no
// truncation.
func fuzzIDs(name string) (uid, gid int64, ok bool) {
	for _, l := range strings.Split(fuzzPasswd, "\n") {
		f := strings.Split(l, ":")
		if len(f) > 3 && f[0] == name {
			uid, err1 := strconv.ParseInt(f[2], 10, 64)
			gid, err2 := strconv.ParseInt(f[3], 10, 64)
			return uid, gid, err1 == nil && err2 == nil
		}
	}
	uid, err := strconv.ParseInt(name, 10, 64)
	return uid, 0, err == nil
}
