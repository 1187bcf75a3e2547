package oci

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestSandboxSpecNamespaces(t *testing.T) {
	type ns map[specs.LinuxNamespaceType]string
	tests := []struct {
		name     string
		info     SandboxInfo
		nsOpts   *runtimeapi.NamespaceOption
		want     ns
		hostname string
	}{
		{
			name:     "pod namespaces",
			info:     SandboxInfo{NetNSPath: "/run/netns/x", Hostname: "web-0"},
			want:     ns{"mount": "", "pid": "", "ipc": "", "uts": "", "network": "/run/netns/x"},
			hostname: "web-0",
		},
		{
			name:     "host network implies host UTS",
			info:     SandboxInfo{HostNetwork: true, Hostname: "node1"},
			want:     ns{"mount": "", "pid": "", "ipc": ""},
			hostname: "",
		},
		{
			name:     "host pid and ipc from info",
			info:     SandboxInfo{HostPID: true, HostIPC: true, NetNSPath: "/run/netns/x"},
			want:     ns{"mount": "", "uts": "", "network": "/run/netns/x"},
			hostname: "cfg-host",
		},
		{
			name:   "host namespaces from config",
			nsOpts: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE},
			want:   ns{"mount": ""},
		},
		{
			name:     "hostname from config when info has none",
			info:     SandboxInfo{NetNSPath: "/run/netns/x"},
			want:     ns{"mount": "", "pid": "", "ipc": "", "uts": "", "network": "/run/netns/x"},
			hostname: "cfg-host",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testSandboxConfig()
			cfg.Hostname = "cfg-host"
			cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: tc.nsOpts}
			s, err := SandboxSpec("sb1", cfg, tc.info)
			if err != nil {
				t.Fatal(err)
			}
			got := ns{}
			for _, n := range s.Linux.Namespaces {
				got[n.Type] = n.Path
			}
			if len(got) != len(tc.want) {
				t.Fatalf("namespaces = %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if p, ok := got[k]; !ok || p != v {
					t.Fatalf("namespaces = %v, want %v", got, tc.want)
				}
			}
			if s.Hostname != tc.hostname {
				t.Errorf("hostname = %q, want %q", s.Hostname, tc.hostname)
			}
		})
	}
}

func TestSandboxSpecDefaults(t *testing.T) {
	cfg := testSandboxConfig()
	cfg.LogDirectory = "/var/log/pods/x"
	s, err := SandboxSpec("sb1", cfg, SandboxInfo{CgroupParent: "/kubepods/pod1", NetNSPath: "/run/netns/x"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Process.Args, []string{"/pause"}) || !s.Root.Readonly || s.Root.Path != "rootfs" {
		t.Errorf("process/root = %v %+v", s.Process.Args, s.Root)
	}
	c := s.Process.Capabilities
	if c == nil || len(c.Bounding)+len(c.Effective)+len(c.Permitted)+len(c.Inheritable)+len(c.Ambient) != 0 {
		t.Errorf("capabilities = %+v, want none", c)
	}
	if !s.Process.NoNewPrivileges {
		t.Error("no_new_privs not set")
	}
	if s.Linux.CgroupsPath != "" {
		t.Errorf("cgroupsPath = %q without WithCgroupsPath; the cgroup driver sets it", s.Linux.CgroupsPath)
	}
	if !slices.Equal(s.Linux.MaskedPaths, DefaultMaskedPaths()) || !slices.Equal(s.Linux.ReadonlyPaths, DefaultReadonlyPaths()) {
		t.Errorf("masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	want := map[string]string{
		AnnotationContainerType:    "sandbox",
		AnnotationSandboxID:        "sb1",
		AnnotationSandboxName:      "web-0",
		AnnotationSandboxNamespace: "default",
		AnnotationSandboxUID:       "uid-1",
		AnnotationSandboxLogDir:    "/var/log/pods/x",
	}
	for k, v := range want {
		if s.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, s.Annotations[k], v)
		}
	}
	if s.Process.OOMScoreAdj != nil {
		t.Errorf("oomScoreAdj = %d without option", *s.Process.OOMScoreAdj)
	}
	if _, ok := mountAt(s, "/proc"); !ok {
		t.Error("no /proc")
	}
	if _, ok := mountAt(s, "/sys/fs/cgroup"); ok {
		t.Error("pause does not need the cgroup filesystem")
	}

	s, err = SandboxSpec("sb1", cfg, SandboxInfo{}, WithProcessArgs("/bin/pause", "-v"), WithRootfs("/usr/share/pause"), WithOOMScoreAdj(-998))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Process.Args, []string{"/bin/pause", "-v"}) || s.Root.Path != "/usr/share/pause" || *s.Process.OOMScoreAdj != -998 {
		t.Errorf("options not applied: %v %v %v", s.Process.Args, s.Root.Path, *s.Process.OOMScoreAdj)
	}
	if _, err := SandboxSpec("sb1", cfg, SandboxInfo{}, WithProcessArgs()); err == nil {
		t.Error("WithProcessArgs() accepted no arguments")
	}
	if _, err := SandboxSpec("", cfg, SandboxInfo{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty id: %v", err)
	}
	if _, err := SandboxSpec("x", nil, SandboxInfo{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil config: %v", err)
	}
}

func TestSandboxSecurityContext(t *testing.T) {
	tests := []struct {
		name       string
		sc         *runtimeapi.LinuxSandboxSecurityContext
		uid, gid   uint32
		gids       []uint32
		privileged bool
		wantErr    string
	}{
		{name: "root by default", sc: nil, gids: []uint32{0}},
		{name: "run as user and group", sc: &runtimeapi.LinuxSandboxSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: 65535}, RunAsGroup: &runtimeapi.Int64Value{Value: 65534}, SupplementalGroups: []int64{5, 6}},
			uid: 65535, gid: 65534, gids: []uint32{65534, 5, 6}},
		{name: "group without user", sc: &runtimeapi.LinuxSandboxSecurityContext{RunAsGroup: &runtimeapi.Int64Value{Value: 1}}, wantErr: "run_as_group"},
		{name: "negative user", sc: &runtimeapi.LinuxSandboxSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: -4}}, wantErr: "run_as_user"},
		{name: "privileged sandbox unmasked", sc: &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}, gids: []uint32{0}, privileged: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testSandboxConfig()
			cfg.Linux.SecurityContext = tc.sc
			s, err := SandboxSpec("sb1", cfg, SandboxInfo{})
			if tc.wantErr != "" {
				wantInvalid(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			u := s.Process.User
			if u.UID != tc.uid || u.GID != tc.gid || !slices.Equal(u.AdditionalGids, tc.gids) {
				t.Errorf("user = %+v", u)
			}
			if tc.privileged != (len(s.Linux.MaskedPaths) == 0) {
				t.Errorf("privileged=%v masked=%v", tc.privileged, s.Linux.MaskedPaths)
			}
		})
	}
}

func TestSandboxSysctls(t *testing.T) {
	tests := []struct {
		name    string
		sysctls map[string]string
		info    SandboxInfo
		want    map[string]string
		wantErr string
	}{
		{name: "none", want: nil},
		{name: "namespaced", sysctls: map[string]string{"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "20",
			"kernel.msgmnb": "1024", "kernel.sem": "250 32000 32 128", "kernel.shmmax": "1", "kernel.msg_next_id": "5"},
			want: map[string]string{"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "20",
				"kernel.msgmnb": "1024", "kernel.sem": "250 32000 32 128", "kernel.shmmax": "1", "kernel.msg_next_id": "5"}},
		{name: "uts sysctl is not allowed", sysctls: map[string]string{"kernel.domainname": "x"}, wantErr: `linux.sysctls["kernel.domainname"]`},
		{name: "kernel.semx is not kernel.sem", sysctls: map[string]string{"kernel.semx": "1"}, wantErr: `linux.sysctls["kernel.semx"]`},
		{name: "net with host ipc is fine", sysctls: map[string]string{"net.core.somaxconn": "1024"}, info: SandboxInfo{HostIPC: true},
			want: map[string]string{"net.core.somaxconn": "1024"}},
		{name: "ipc with host network is fine", sysctls: map[string]string{"kernel.shmmni": "8"}, info: SandboxInfo{HostNetwork: true},
			want: map[string]string{"kernel.shmmni": "8"}},
		{name: "mqueue with host ipc", sysctls: map[string]string{"fs.mqueue.queues_max": "1"}, info: SandboxInfo{HostIPC: true}, wantErr: `linux.sysctls["fs.mqueue.queues_max"]`},
		{name: "bad name", sysctls: map[string]string{"net..x": "1"}, wantErr: `linux.sysctls["net..x"]`},
		// runc would write /proc/sys/net///kernel/core_pattern: the host's.
		{name: "empty segments escape net.", sysctls: map[string]string{"net.//.kernel.core_pattern": "|/x"}, wantErr: "not a sysctl name"},
		{name: "empty segment in slash form", sysctls: map[string]string{"net/ipv4//conf/all/rp_filter": "1"}, wantErr: "not a sysctl name"},
		{name: "leading separator", sysctls: map[string]string{".net.core.somaxconn": "1"}, wantErr: "not a sysctl name"},
		{name: "trailing separator", sysctls: map[string]string{"net.core.somaxconn.": "1"}, wantErr: "not a sysctl name"},
		{name: "upper case", sysctls: map[string]string{"net.core.SOMAXCONN": "1"}, wantErr: "not a sysctl name"},
		{name: "newline", sysctls: map[string]string{"net.core.somaxconn\nkernel.core_pattern": "1"}, wantErr: "not a sysctl name"},
		{name: "longer than 253", sysctls: map[string]string{"net." + strings.Repeat("a", 250): "1"}, wantErr: "not a sysctl name"},
		{name: "253 is fine", sysctls: map[string]string{"net." + strings.Repeat("a", 249): "1"}, want: map[string]string{"net." + strings.Repeat("a", 249): "1"}},
		{name: "NUL in value", sysctls: map[string]string{"net.core.somaxconn": "1\x00"}, wantErr: `linux.sysctls["net.core.somaxconn"]`},
		{name: "slash form", sysctls: map[string]string{"net/ipv4/conf/eth0.100/rp_filter": "2"},
			want: map[string]string{"net.ipv4.conf.eth0/100.rp_filter": "2"}},
		{name: "not namespaced", sysctls: map[string]string{"vm.overcommit_memory": "1"}, wantErr: `linux.sysctls["vm.overcommit_memory"]`},
		{name: "kernel non-ipc", sysctls: map[string]string{"kernel.panic": "1"}, wantErr: `linux.sysctls["kernel.panic"]`},
		{name: "net with host network", sysctls: map[string]string{"net.core.somaxconn": "1024"}, info: SandboxInfo{HostNetwork: true}, wantErr: `linux.sysctls["net.core.somaxconn"]`},
		{name: "ipc with host ipc", sysctls: map[string]string{"kernel.msgmax": "1"}, info: SandboxInfo{HostIPC: true}, wantErr: `linux.sysctls["kernel.msgmax"]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testSandboxConfig()
			cfg.Linux.Sysctls = tc.sysctls
			s, err := SandboxSpec("sb1", cfg, tc.info)
			if tc.wantErr != "" {
				wantInvalid(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, s.Linux.Sysctl, tc.want) {
				t.Errorf("sysctl = %v, want %v", s.Linux.Sysctl, tc.want)
			}
		})
	}
}

func TestSandboxResources(t *testing.T) {
	tests := []struct {
		name       string
		res, over  *runtimeapi.LinuxContainerResources
		shares     uint64
		quota      int64
		mem        int64
		noCPU      bool
		noMem      bool
		annotation string // expected sandbox-memory annotation, "" = absent
		wantErr    string
	}{
		{name: "none", noCPU: true, noMem: true},
		{name: "resources", res: &runtimeapi.LinuxContainerResources{CpuShares: 1024, CpuQuota: 200000, CpuPeriod: 100000, MemoryLimitInBytes: 512 << 20},
			shares: 1024, quota: 200000, mem: 512 << 20, annotation: "536870912"},
		{name: "plus overhead", res: &runtimeapi.LinuxContainerResources{CpuShares: 1024, CpuQuota: 200000, CpuPeriod: 100000, MemoryLimitInBytes: 512 << 20},
			over:   &runtimeapi.LinuxContainerResources{CpuShares: 100, CpuQuota: 10000, MemoryLimitInBytes: 64 << 20},
			shares: 1124, quota: 210000, mem: 576 << 20, annotation: "536870912"},
		{name: "no quota plus overhead", res: &runtimeapi.LinuxContainerResources{CpuShares: 1024, CpuQuota: -1, CpuPeriod: 100000},
			over:   &runtimeapi.LinuxContainerResources{CpuShares: 100, CpuQuota: 10000},
			shares: 1124, quota: -1, noMem: true, annotation: "0"},
		{name: "overhead alone does not limit", over: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20}, noCPU: true, noMem: true},
		{name: "bad resources", res: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -1}, wantErr: "linux.resources.memory_limit_in_bytes"},
		{name: "bad overhead", over: &runtimeapi.LinuxContainerResources{CpuShares: -1}, wantErr: "linux.overhead.cpu_shares"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testSandboxConfig()
			cfg.Linux.Resources, cfg.Linux.Overhead = tc.res, tc.over
			s, err := SandboxSpec("sb1", cfg, SandboxInfo{})
			if tc.wantErr != "" {
				wantInvalid(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := s.Linux.Resources
			if tc.noCPU != (r.CPU == nil) || tc.noMem != (r.Memory == nil) {
				t.Fatalf("resources = %s", jsonString(t, r))
			}
			if !tc.noCPU && (*r.CPU.Shares != tc.shares || *r.CPU.Quota != tc.quota) {
				t.Errorf("cpu = %s", jsonString(t, r.CPU))
			}
			if !tc.noMem && (*r.Memory.Limit != tc.mem || *r.Memory.Swap != tc.mem) {
				t.Errorf("memory = %s", jsonString(t, r.Memory))
			}
			if got := s.Annotations[AnnotationSandboxMemory]; got != tc.annotation {
				t.Errorf("memory annotation = %q, want %q", got, tc.annotation)
			}
		})
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	s, err := SandboxSpec("sb1", testSandboxConfig(), SandboxInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Save(s, dir); err != nil {
		t.Fatal(err)
	}
	// Overwrite works and leaves no temporary files behind.
	s.Hostname = "second"
	if err := Save(s, dir); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "config.json" {
		t.Fatalf("bundle holds %v, want only config.json", ents)
	}
	fi, err := os.Stat(filepath.Join(dir, "config.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config.json mode = %v, %v; want 0600", fi.Mode(), err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, got, s) {
		t.Fatalf("round trip differs:\n%s\n%s", jsonString(t, got), jsonString(t, s))
	}
	if err := Save(s, filepath.Join(dir, "missing")); err == nil {
		t.Fatal("Save into a missing directory succeeded")
	}
	if err := Save(nil, dir); err == nil {
		t.Fatal("Save(nil) succeeded")
	}
}

// TestOCIVersionMax: the spec says the runtime's newest version when that
// is older than ours (crun 1.8 refuses anything but 1.0.x), ours otherwise.
func TestOCIVersionMax(t *testing.T) {
	for _, tc := range []struct{ max, want string }{
		{"", specs.Version},
		{"1.0.2-dev", "1.0.2-dev"},
		{"1.1.0", "1.1.0"},
		{"9.0.0", specs.Version},
		{specs.Version, specs.Version},
	} {
		s, err := SandboxSpec("sb1", testSandboxConfig(), SandboxInfo{OCIVersionMax: tc.max})
		if err != nil {
			t.Fatal(err)
		}
		c, err := fakeHost(testDevices, testDirs).containerSpec("c1", testConfig(nil), testSandboxConfig(), testImage, SandboxInfo{ID: "sb1", Pid: 1, OCIVersionMax: tc.max}, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if s.Version != tc.want || c.Version != tc.want {
			t.Errorf("ociVersionMax %q: sandbox spec %q, container spec %q; want %q", tc.max, s.Version, c.Version, tc.want)
		}
	}
}
