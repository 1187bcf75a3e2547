package shim

import (
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
)

// pauseSpec is a pause bundle as the daemon writes it for a pod with its
// own network namespace.
func pauseSpec() *specs.Spec {
	limit := int64(64 << 20)
	return &specs.Spec{
		Root: &specs.Root{Path: "/run/pods/x/rootfs", Readonly: true},
		Process: &specs.Process{
			Args:            []string{"/pause", "pause"},
			Env:             []string{"PATH=/bin"},
			User:            specs.User{UID: 65534, GID: 65534, AdditionalGids: []uint32{5, 6}},
			Capabilities:    &specs.LinuxCapabilities{},
			NoNewPrivileges: true,
		},
		Hostname: "pod",
		Mounts:   []specs.Mount{{Destination: "/proc", Type: "proc"}, {Destination: "/pause", Type: "bind", Source: "/usr/bin/cri-runtimed"}},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.PIDNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.NetworkNamespace, Path: "/run/netns/x"}},
			CgroupsPath:   "/kubepods/pod1/x",
			Resources:     &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}, Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
			Sysctl:        map[string]string{"net.ipv4.conf.eth0/100.rp_filter": "1", "kernel.shm_rmid_forced": "1"},
			MaskedPaths:   []string{"/proc/kcore"},
			ReadonlyPaths: []string{"/proc/sys"},
		},
	}
}

func TestPlanPause(t *testing.T) {
	plan, err := planPause(pauseSpec())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"root=/run/pods/x/rootfs", "netns=/run/netns/x", "hostname=pod",
		"sysctl=kernel/shm_rmid_forced=1", "sysctl=net/ipv4/conf/eth0.100/rp_filter=1", "uid=65534", "gid=65534", "groups=5,6"}
	if !slices.Equal(plan.args, want) {
		t.Errorf("args %q, want %q", plan.args, want)
	}
	if f := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS); plan.cloneflags != f {
		t.Errorf("cloneflags %#x, want %#x (the network namespace is joined, not new)", plan.cloneflags, f)
	}
	if plan.binary != "/usr/bin/cri-runtimed" || !slices.Contains(plan.env, "HOME=/") {
		t.Errorf("binary %q env %q", plan.binary, plan.env)
	}

	userns := pauseSpec()
	userns.Linux.Namespaces = append(userns.Linux.Namespaces[:4], specs.LinuxNamespace{Type: specs.NetworkNamespace}, specs.LinuxNamespace{Type: specs.UserNamespace})
	userns.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	userns.Linux.GIDMappings = userns.Linux.UIDMappings
	plan, err = planPause(userns)
	if err != nil {
		t.Fatal(err)
	}
	if plan.cloneflags&(unix.CLONE_NEWUSER|unix.CLONE_NEWNET) != unix.CLONE_NEWUSER|unix.CLONE_NEWNET || len(plan.uidMap) != 1 || plan.uidMap[0].HostID != 100000 {
		t.Errorf("user namespace pod: cloneflags %#x, uid map %+v", plan.cloneflags, plan.uidMap)
	}
}

// TestPlanPauseSystemd: a systemd cgroups path is the shim's on a
// unified host only (runc's systemd driver joins v1 hierarchies too).
func TestPlanPauseSystemd(t *testing.T) {
	s := pauseSpec()
	s.Linux.CgroupsPath = "kubepods.slice:cri-runtimed:x"
	_, err := planPause(s)
	if cgroups.Unified() != (err == nil) {
		t.Errorf("unified host %v, planPause: %v", cgroups.Unified(), err)
	}
}

// TestPlanPauseRefuses: whatever the confined pause does not do exactly
// as runc would is left to runc.
func TestPlanPauseRefuses(t *testing.T) {
	pids := int64(10)
	for _, tc := range []struct {
		name   string
		change func(*specs.Spec)
	}{
		{"apparmor", func(s *specs.Spec) { s.Process.ApparmorProfile = "cri-runtimed-default" }},
		{"selinux", func(s *specs.Spec) { s.Process.SelinuxLabel = "system_u:system_r:container_t:s0" }},
		{"privileged", func(s *specs.Spec) { s.Linux.MaskedPaths = nil }},
		{"capabilities", func(s *specs.Spec) { s.Process.Capabilities.Bounding = []string{"CAP_NET_RAW"} }},
		{"no no_new_privs", func(s *specs.Spec) { s.Process.NoNewPrivileges = false }},
		{"pids limit", func(s *specs.Spec) { s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &pids} }},
		{"cpuset", func(s *specs.Spec) { s.Linux.Resources.CPU = &specs.LinuxCPU{Cpus: "0"} }},
		{"joined pid namespace", func(s *specs.Spec) { s.Linux.Namespaces[1].Path = "/proc/1/ns/pid" }},
		{"cgroup namespace", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
		}},
		{"hooks", func(s *specs.Spec) { s.Hooks = &specs.Hooks{} }},
		{"seccomp listener", func(s *specs.Spec) { s.Linux.Seccomp = &specs.LinuxSeccomp{ListenerPath: "/run/agent.sock"} }},
		{"sandbox image", func(s *specs.Spec) { s.Process.Args = []string{"/pause"} }},
		{"rlimits", func(s *specs.Spec) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1, Soft: 1}}
		}},
		{"user namespace without mappings", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		}},
		{"writable root", func(s *specs.Spec) { s.Root.Readonly = false }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := pauseSpec()
			tc.change(s)
			if _, err := planPause(s); err == nil || !strings.Contains(err.Error(), "cannot start") {
				t.Errorf("planPause accepted it: %v", err)
			}
		})
	}
}
