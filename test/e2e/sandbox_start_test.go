//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// pauseFacts is what the host sees of a pod's pause process: everything
// that confines it. Two pauses of the same pod config, one started by runc
// and one by the shim (runtime.sandbox_start), are compared field by
// field in TestSandboxStartConfinement.
type pauseFacts struct {
	pid    int
	status map[string]string // /proc/<pid>/status
	// ns: for each namespace type, whether it is the host's.
	ns                map[string]bool
	uidMap, gidMap    string
	oomScoreAdj       string
	cgroups           []string          // "controllers:path", the pod ID replaced by ID
	cgroupLimits      map[string]string // cgroup file: value
	devices           []string          // a v1 devices.list
	hostname, sysctls string
	limits, environ   string
	cwd               string
	sid               bool // leads its own session
	mounts            []mountFact
	rootEntries       []string
	exe               [2]uint64 // device, inode
	cmdline           string
}

type mountFact struct {
	point string
	ro    bool
	fs    string
}

func readProc(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func collectPauseFacts(t *testing.T, pid int, podID string, sysctls []string) pauseFacts {
	t.Helper()
	f := pauseFacts{pid: pid, status: map[string]string{}, ns: map[string]bool{}}
	for _, line := range strings.Split(readProc(t, pid, "status"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			f.status[k] = strings.TrimSpace(v)
		}
	}
	for _, ns := range []string{"mnt", "pid", "ipc", "uts", "net", "user", "cgroup"} {
		host, err1 := os.Readlink("/proc/self/ns/" + ns)
		its, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		f.ns[ns] = host == its
	}
	f.uidMap = strings.Join(strings.Fields(readProc(t, pid, "uid_map")), " ")
	f.gidMap = strings.Join(strings.Fields(readProc(t, pid, "gid_map")), " ")
	f.oomScoreAdj = strings.TrimSpace(readProc(t, pid, "oom_score_adj"))
	for _, line := range strings.Split(strings.TrimSpace(readProc(t, pid, "cgroup")), "\n") {
		parts := strings.SplitN(line, ":", 3)
		// The daemons' cgroup parents differ: the depth and the leaf.
		p := strings.ReplaceAll(parts[2], podID, "ID")
		f.cgroups = append(f.cgroups, fmt.Sprintf("%s:%d:%s", parts[1], strings.Count(p, "/"), path.Base(p)))
	}
	f.cgroupLimits = map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(readProc(t, pid, "cgroup")), "\n") {
		parts := strings.SplitN(line, ":", 3)
		var dir string
		var files []string
		switch parts[1] {
		case "cpu", "cpu,cpuacct":
			dir, files = "/sys/fs/cgroup/"+parts[1], []string{"cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"}
		case "memory":
			dir, files = "/sys/fs/cgroup/memory", []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"}
		case "devices":
			b, err := os.ReadFile("/sys/fs/cgroup/devices" + parts[2] + "/devices.list")
			if err != nil {
				t.Fatal(err)
			}
			f.devices = strings.Fields(string(b))
		case "":
			dir, files = "/sys/fs/cgroup", []string{"cpu.weight", "cpu.max", "memory.max", "memory.swap.max"}
		}
		for _, name := range files {
			if b, err := os.ReadFile(dir + parts[2] + "/" + name); err == nil {
				f.cgroupLimits[parts[1]+"/"+name] = strings.TrimSpace(string(b))
			}
		}
	}
	nsenter := func(flag string, args ...string) string {
		out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(pid), flag, "--"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("nsenter %s %v: %v: %s", flag, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	f.hostname = nsenter("--uts", "cat", "/proc/sys/kernel/hostname")
	for _, s := range sysctls {
		flag := "--net"
		if strings.HasPrefix(s, "kernel/") {
			flag = "--ipc"
		}
		f.sysctls += s + "=" + nsenter(flag, "cat", "/proc/sys/"+s) + " "
	}
	f.limits = readProc(t, pid, "limits")
	f.environ = readProc(t, pid, "environ")
	f.cwd, _ = os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	sid, err := exec.Command("ps", "-o", "sid=", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		t.Fatal(err)
	}
	f.sid = strings.TrimSpace(string(sid)) == strconv.Itoa(pid)
	for _, line := range strings.Split(strings.TrimSpace(readProc(t, pid, "mountinfo")), "\n") {
		fs := strings.Fields(line)
		sep := slices.Index(fs, "-")
		f.mounts = append(f.mounts, mountFact{point: fs[4], ro: slices.Contains(strings.Split(fs[5], ","), "ro"), fs: fs[sep+1]})
	}
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/root/", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		f.rootEntries = append(f.rootEntries, e.Name())
	}
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/exe", pid), &st); err != nil {
		t.Fatal(err)
	}
	f.exe = [2]uint64{st.Dev, st.Ino}
	f.cmdline = strings.ReplaceAll(readProc(t, pid, "cmdline"), "\x00", " ")
	return f
}

// startPause runs the pod in a daemon whose runtime.sandbox_start is mode
// and returns its pause's facts. The daemon and pod are gone when the
// subtest ends.
func startPause(t *testing.T, mode string, pc func() *runtimeapi.PodSandboxConfig, sysctls []string) pauseFacts {
	var facts pauseFacts
	t.Run(mode, func(t *testing.T) {
		_, d := podEnv(t, framework.WithConfig("runtime.sandbox_start", mode))
		cfg := pc()
		id := d.RunPod(t, cfg)
		st, err := d.Runtime().PodSandboxStatus(testCtx(t), id, true)
		if err != nil {
			t.Fatal(err)
		}
		facts = collectPauseFacts(t, infoPid(t, st.GetInfo()), id, sysctls)
		// It is a pod that works: a container joins its namespaces.
		c := d.CreateStarted(t, id, sleeper("c"), cfg)
		if got := d.ExecOK(t, c, "hostname"); cfg.GetHostname() != "" && !facts.ns["uts"] && strings.TrimSpace(got) != cfg.GetHostname() {
			t.Errorf("container's hostname %q, want %q", got, cfg.GetHostname())
		}
	})
	if facts.pid == 0 {
		t.FailNow()
	}
	return facts
}

// TestSandboxStartConfinement starts the pause of each pod config once
// with runc and once by the shim, and checks from the host that the shim's
// pause is confined at least as tightly: the same capabilities (none, in
// every set), no_new_privs, a seccomp filter wherever runc has one, the
// same ids, namespaces, id maps, cgroups, oom_score_adj, hostname,
// sysctls, rlimits, environment and session; and no mount runc's lacks, no
// writable mount runc's has read-only, an empty read-only root.
func TestSandboxStartConfinement(t *testing.T) {
	framework.RequireRoot(t)
	if framework.CgroupDriver() != "cgroupfs" && !cgroups.Unified() {
		t.Skip("under the systemd driver the shim starts pause itself on cgroup v2 alone; here pods use runc")
	}
	mapping := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1000, Length: 100000}}
	cases := []struct {
		name    string
		pc      func() *runtimeapi.PodSandboxConfig
		sysctls []string // read in the pause's network namespace
	}{
		{name: "default", pc: func() *runtimeapi.PodSandboxConfig { return framework.PodConfig("confine-default") }},
		{name: "runtime default seccomp, user, sysctls", sysctls: []string{"net/ipv4/ip_unprivileged_port_start", "net/ipv4/ping_group_range", "kernel/shm_rmid_forced"},
			pc: func() *runtimeapi.PodSandboxConfig {
				return framework.PodConfig("confine-secure", func(c *runtimeapi.PodSandboxConfig) {
					sc := c.Linux.SecurityContext
					sc.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
					sc.RunAsUser = &runtimeapi.Int64Value{Value: 65534}
					sc.RunAsGroup = &runtimeapi.Int64Value{Value: 65534}
					sc.SupplementalGroups = []int64{5, 6}
					c.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "80", "net.ipv4.ping_group_range": "0 2147483647", "kernel.shm_rmid_forced": "1"}
					c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 256, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20}
				})
			}},
		{name: "user namespace", pc: func() *runtimeapi.PodSandboxConfig {
			return framework.PodConfig("confine-userns", func(c *runtimeapi.PodSandboxConfig) {
				c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: mapping, Gids: mapping}
			})
		}},
		{name: "host namespaces", pc: func() *runtimeapi.PodSandboxConfig {
			return framework.PodConfig("confine-host", framework.WithPodNamespaces(runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_NODE))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runc := startPause(t, "runc", tc.pc, tc.sysctls)
			shim := startPause(t, "shim", tc.pc, tc.sysctls)
			compareConfinement(t, runc, shim)
		})
	}
}

func compareConfinement(t *testing.T, runc, shim pauseFacts) {
	t.Helper()
	// A runc-run pause has runc's mounts (/proc, /dev, /sys...), the
	// shim's its root alone: one of each kind.
	if len(runc.mounts) < 2 || len(shim.mounts) != 1 {
		t.Fatalf("not one pause of each kind: runc's has %d mounts, the shim's %d", len(runc.mounts), len(shim.mounts))
	}
	// Both show a pod's containers the same pid 1.
	if runc.cmdline != shim.cmdline {
		t.Errorf("cmdline: runc's pause %q, the shim's %q", runc.cmdline, shim.cmdline)
	}
	// NSpid and NSsid: the pid in the pod's namespace (host pids differ).
	inner := func(v string) string { f := strings.Fields(v); return strings.Join(f[1:], " ") }
	for _, k := range []string{"NSpid", "NSsid"} {
		if inner(runc.status[k]) != inner(shim.status[k]) {
			t.Errorf("%s: runc's pause %q, the shim's %q", k, runc.status[k], shim.status[k])
		}
	}
	for _, k := range []string{"Name", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Uid", "Gid", "Groups", "Threads"} {
		if runc.status[k] != shim.status[k] {
			t.Errorf("%s: runc's pause %q, the shim's %q", k, runc.status[k], shim.status[k])
		}
	}
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if shim.status[k] != "0000000000000000" {
			t.Errorf("%s of the shim's pause: %s, want none", k, shim.status[k])
		}
	}
	if shim.status["NoNewPrivs"] != "1" {
		t.Errorf("the shim's pause has no no_new_privs")
	}
	// Filtered wherever runc's is (mode 2), by at least as many filters;
	// the shim's pause is filtered even when runc's is not.
	if shim.status["Seccomp"] != "2" {
		t.Errorf("Seccomp of the shim's pause: %q, want 2 (filter); runc's: %q", shim.status["Seccomp"], runc.status["Seccomp"])
	}
	rf, _ := strconv.Atoi(runc.status["Seccomp_filters"])
	sf, _ := strconv.Atoi(shim.status["Seccomp_filters"])
	if sf < max(rf, 1) {
		t.Errorf("Seccomp_filters: runc's pause %d, the shim's %d", rf, sf)
	}
	for ns, host := range runc.ns {
		if shim.ns[ns] != host {
			t.Errorf("%s namespace: the host's for runc's pause %v, for the shim's %v", ns, host, shim.ns[ns])
		}
	}
	for _, c := range []struct{ what, runc, shim string }{
		{"uid_map", runc.uidMap, shim.uidMap},
		{"gid_map", runc.gidMap, shim.gidMap},
		{"oom_score_adj", runc.oomScoreAdj, shim.oomScoreAdj},
		{"cgroups", strings.Join(runc.cgroups, "\n"), strings.Join(shim.cgroups, "\n")},
		{"sysctls", runc.sysctls, shim.sysctls},
		{"cgroup limits", fmt.Sprint(runc.cgroupLimits), fmt.Sprint(shim.cgroupLimits)},
		{"limits", runc.limits, shim.limits},
		{"environ", runc.environ, shim.environ},
		{"cwd", runc.cwd, shim.cwd},
		{"exe", fmt.Sprint(runc.exe), fmt.Sprint(shim.exe)},
	} {
		if c.runc != c.shim {
			t.Errorf("%s: runc's pause\n%s\nthe shim's\n%s", c.what, c.runc, c.shim)
		}
	}
	// Devices: none the runc pause may not use (the shim's denies all).
	for _, d := range shim.devices {
		if !slices.Contains(runc.devices, d) {
			t.Errorf("device rule %q of the shim's pause, not runc's %v", d, runc.devices)
		}
	}
	// Each pod has its own hostname unless it is on the host's network.
	if !runc.ns["uts"] && runc.hostname != shim.hostname {
		t.Errorf("hostname: runc's pause %q, the shim's %q", runc.hostname, shim.hostname)
	}
	if runc.sid != shim.sid {
		t.Errorf("session leader: runc's pause %v, the shim's %v", runc.sid, shim.sid)
	}
	// Mounts: nothing the runc pause does not have, nothing writable that
	// it has read-only; the root read-only and empty.
	runcMounts := map[string]mountFact{}
	for _, m := range runc.mounts {
		runcMounts[m.point] = m
	}
	for _, m := range shim.mounts {
		r, ok := runcMounts[m.point]
		switch {
		case !ok:
			t.Errorf("the shim's pause has %s mounted (%s), runc's has not", m.point, m.fs)
		case r.ro && !m.ro:
			t.Errorf("%s is read-only for runc's pause, writable for the shim's", m.point)
		}
	}
	if len(shim.mounts) == 0 || shim.mounts[0].point != "/" || !shim.mounts[0].ro || !runcMounts["/"].ro {
		t.Errorf("root: runc's pause %+v, the shim's %+v; want both read-only", runcMounts["/"], shim.mounts)
	}
	for _, e := range shim.rootEntries {
		if !slices.Contains(runc.rootEntries, e) {
			t.Errorf("the shim's pause has /%s in its root, runc's has not", e)
		}
	}
	t.Logf("cgroups %v, limits %v; devices: runc's %v, the shim's %v", shim.cgroups, shim.cgroupLimits, runc.devices, shim.devices)
	t.Logf("runc's pause: %d mounts, root %v, Seccomp %s/%s; the shim's: %d mounts, root %v, Seccomp %s/%s",
		len(runc.mounts), runc.rootEntries, runc.status["Seccomp"], runc.status["Seccomp_filters"],
		len(shim.mounts), shim.rootEntries, shim.status["Seccomp"], shim.status["Seccomp_filters"])
}
