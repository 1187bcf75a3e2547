//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

const mib = 1 << 20

// ctrCgroup is a container's cgroup on this node.
type ctrCgroup struct {
	// dir is below the mount root, from the container's cgroupsPath in
	// either driver's form.
	dir    string
	layout cgroups.Layout
}

// containerCgroup finds the cgroup of container id from linux.cgroupsPath
// of its verbose runtimeSpec.
func containerCgroup(t *testing.T, d *framework.Daemon, id string) ctrCgroup {
	t.Helper()
	info := verboseInfo(t, d.ContainerStatus(t, id).GetInfo())
	spec, _ := info["runtimeSpec"].(map[string]any)
	linux, _ := spec["linux"].(map[string]any)
	p, _ := linux["cgroupsPath"].(string)
	if p == "" {
		t.Fatalf("container %s: no cgroupsPath in its verbose runtimeSpec", id)
	}
	if systemd := strings.Count(p, ":") == 2; systemd != (framework.CgroupDriver() == cgroups.SystemdName) {
		t.Errorf("cgroupsPath %q is not in the %s driver's form", p, framework.CgroupDriver())
	}
	l, err := cgroups.HostLayout()
	if err != nil {
		t.Fatal(err)
	}
	return ctrCgroup{dir: framework.CgroupDir(t, p), layout: l}
}

// path is file of the cgroup: in the v1 controller's hierarchy, or in the
// unified tree (controller unused).
func (c ctrCgroup) path(controller, file string) string {
	if c.layout.Unified() {
		return filepath.Join(c.layout.V2Root, c.dir, file)
	}
	return filepath.Join(c.layout.V1Root, controller, c.dir, file)
}

func (c ctrCgroup) read(t *testing.T, controller, file string) string {
	t.Helper()
	b, err := os.ReadFile(c.path(controller, file))
	if err != nil {
		t.Fatalf("cgroup file: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// requireCgroups skips unless the node has cgroup v1 resource controllers
// or is unified cgroup v2 (a hybrid node's empty v2 tree alone is not).
func requireCgroups(t *testing.T) cgroups.Layout {
	t.Helper()
	l, err := cgroups.HostLayout()
	if err != nil {
		t.Fatal(err)
	}
	if !l.Unified() {
		for _, c := range []string{"cpu", "cpuset", "memory", "pids"} {
			if _, err := os.Stat(filepath.Join(l.V1Root, c, "tasks")); err != nil {
				t.Skipf("cgroup v1 %s hierarchy not mounted at %s: %v", c, filepath.Join(l.V1Root, c), err)
			}
		}
	}
	return l
}

// requireUnified skips on nodes without the unified cgroup v2 hierarchy;
// the guest suite (make test-guest) runs these tests.
func requireUnified(t *testing.T) {
	t.Helper()
	if !cgroups.Unified() {
		t.Skip("needs the unified cgroup v2 hierarchy; runs in the guest (make test-guest)")
	}
}

// cpuWeight is cgroup v2's cpu.weight for CPU shares as the OCI runtime
// converts them: runc up to 1.3 and crun up to 1.22 map [2, 262144]
// linearly onto [1, 10000]; later versions use a curve matching the
// shares' proportions better. Either is accepted.
func cpuWeight(shares uint64) []string {
	linear := 1 + ((shares-2)*9999)/262142
	l := math.Log2(float64(shares))
	curve := uint64(math.Ceil(math.Pow(10, (l*l+125*l)/612.0-7.0/34.0)))
	return []string{strconv.FormatUint(linear, 10), strconv.FormatUint(curve, 10)}
}

// withResources sets the container's linux resources.
func withResources(cfg *runtimeapi.ContainerConfig, r *runtimeapi.LinuxContainerResources) *runtimeapi.ContainerConfig {
	cfg.Linux.Resources = r
	return cfg
}

// TestMemoryLimitOOM: a container allocating past its memory limit is
// killed by the kernel and reported as OOMKilled with exit code 137.
func TestMemoryLimitOOM(t *testing.T) {
	requireCgroups(t)
	_, d := podEnv(t)
	// awk doubles a string until the allocation fails.
	const hog = `BEGIN { s = "xxxxxxxxxxxxxxxx"; while (1) s = s s }`
	for _, tc := range []struct {
		name string
		cfg  *runtimeapi.ContainerConfig
	}{
		{"main process", framework.ContainerConfig("hog", bb, "awk", hog)},
		// kubelet (and containerd) report OOMKilled when the OOM killer
		// hit the container's cgroup, whichever process it chose.
		{"child of the main process", framework.Shell("hog", bb, fmt.Sprintf("awk '%s'; exit $?", hog))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := withResources(tc.cfg, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 * mib})
			pc := framework.PodConfig("oom")
			pod := d.RunPod(t, pc)
			id := d.CreateStarted(t, pod, cfg, pc)
			st := d.WaitExited(t, id, time.Minute)
			if st.ExitCode != 137 || st.Reason != "OOMKilled" {
				t.Errorf("container over its memory limit: exit code %d, reason %q (message %q); want 137, OOMKilled", st.ExitCode, st.Reason, st.Message)
			}
		})
	}
	t.Run("within the limit", func(t *testing.T) {
		cfg := withResources(framework.Shell("small", bb, `dd if=/dev/zero of=/dev/null bs=1M count=64`),
			&runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 * mib})
		st, _ := runToExit(t, d, framework.PodConfig("nooom"), cfg)
		if st.ExitCode != 0 || st.Reason != "Completed" {
			t.Errorf("container within its limit: exit code %d reason %q, want 0 Completed", st.ExitCode, st.Reason)
		}
	})
}

// TestResourceLimitsInCgroups: the CRI resources land in the container's
// cgroup files, and the container's processes are in that cgroup. Under
// the systemd driver that is the scope, whichever runtime: crun writes
// its own sub-cgroup, and the driver sets the scope's unit properties.
func TestResourceLimitsInCgroups(t *testing.T) {
	requireCgroups(t)
	_, d := podEnv(t)
	pc := framework.PodConfig("limits")
	pod := d.RunPod(t, pc)
	res := &runtimeapi.LinuxContainerResources{
		CpuShares:          512,
		CpuPeriod:          100000,
		CpuQuota:           50000,
		CpusetCpus:         "0",
		MemoryLimitInBytes: 64 * mib,
	}
	id := d.CreateStarted(t, pod, withResources(framework.Shell("c", bb, "sleep 100000 & sleep 100000 & wait"), res), pc)
	d.WaitContainerState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	cg := containerCgroup(t, d, id)
	type want struct {
		controller, file string
		values           []string
	}
	wants := []want{
		{"cpu", "cpu.shares", []string{"512"}},
		{"cpu", "cpu.cfs_period_us", []string{"100000"}},
		{"cpu", "cpu.cfs_quota_us", []string{"50000"}},
		{"cpuset", "cpuset.cpus", []string{"0"}},
		{"memory", "memory.limit_in_bytes", []string{strconv.Itoa(64 * mib)}},
		// No swap beyond the limit unless asked for.
		{"memory", "memory.memsw.limit_in_bytes", []string{strconv.Itoa(64 * mib)}},
	}
	if cg.layout.Unified() {
		wants = []want{
			{"", "cpu.weight", cpuWeight(512)},
			{"", "cpu.max", []string{"50000 100000"}},
			{"", "cpuset.cpus", []string{"0"}},
			{"", "memory.max", []string{strconv.Itoa(64 * mib)}},
			{"", "memory.swap.max", []string{"0"}},
		}
	}
	for _, w := range wants {
		if w.file == "memory.memsw.limit_in_bytes" {
			if _, err := os.Stat(cg.path(w.controller, w.file)); err != nil {
				t.Logf("no swap accounting on this kernel: %v", err)
				continue
			}
		}
		if got := cg.read(t, w.controller, w.file); !slices.Contains(w.values, got) {
			t.Errorf("%s = %q, want one of %q", cg.path(w.controller, w.file), got, w.values)
		}
	}
	// The container's three processes are counted in its pids cgroup and
	// listed in its cpu cgroup.
	pid := strconv.Itoa(infoPid(t, d.ContainerStatus(t, id).GetInfo()))
	framework.Eventually(t, 10*time.Second, func() (bool, string) {
		n, _ := strconv.Atoi(cg.read(t, "pids", "pids.current"))
		return n >= 3, fmt.Sprintf("pids.current = %d, want >= 3 (sh and two sleeps)", n)
	})
	if cg.layout.Unified() {
		// crun runs the processes in a sub-cgroup of its systemd scope,
		// with the same limits; runc in the scope (or cgroup) itself.
		b, err := os.ReadFile("/proc/" + pid + "/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		own := strings.TrimSpace(strings.TrimPrefix(string(b), "0::"))
		if want := []string{cg.dir, cg.dir + "/" + cgroups.RuntimeSubgroup}; !slices.Contains(want, own) {
			t.Errorf("container pid %s is in cgroup %s, want one of %q", pid, own, want)
		}
	} else if procs := strings.Fields(cg.read(t, "cpu", "cgroup.procs")); !slices.Contains(procs, pid) {
		t.Errorf("container pid %s not in its cpu cgroup's procs %v", pid, procs)
	}
	if got := d.ContainerStatus(t, id).GetStatus().GetResources().GetLinux(); !proto.Equal(got, res) {
		t.Errorf("ContainerStatus.resources = %v, want %v", got, res)
	}
	// The pod's process count in its stats covers the container's.
	ps, err := d.Runtime().PodSandboxStats(testCtx(t), pod)
	if err != nil {
		t.Fatalf("PodSandboxStats: %v", err)
	}
	if n := ps.GetLinux().GetProcess().GetProcessCount().GetValue(); n < 3 {
		t.Errorf("pod process count = %d, want >= 3", n)
	}
}

// TestUpdateContainerResources changes the limits of a running container
// live and checks the cgroup, ContainerStatus (also after a daemon
// restart) and the errors for bad updates.
func TestUpdateContainerResources(t *testing.T) {
	requireCgroups(t)
	_, d := podEnv(t)
	pc := framework.PodConfig("update")
	pod := d.RunPod(t, pc)
	before := &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 64 * mib}
	id := d.CreateStarted(t, pod, withResources(sleeper("c"), before), pc)
	cg := containerCgroup(t, d, id)
	memFile, memWant := "memory.limit_in_bytes", strconv.Itoa(128*mib)
	if cg.layout.Unified() {
		memFile = "memory.max"
	}
	pid := infoPid(t, d.ContainerStatus(t, id).GetInfo())
	// The stats' available bytes are the limit less the working set (a
	// sleeper's few hundred KiB); the daemon keeps the limit it read
	// until it updates the container itself.
	available := func() uint64 {
		t.Helper()
		r, err := d.RuntimeClient().ContainerStats(testCtx(t), &runtimeapi.ContainerStatsRequest{ContainerId: id})
		if err != nil {
			t.Fatalf("ContainerStats: %v", err)
		}
		return r.GetStats().GetMemory().GetAvailableBytes().GetValue()
	}
	if a := available(); a > 64*mib || a < 32*mib {
		t.Errorf("available bytes under a 64 MiB limit = %d", a)
	}

	after := &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 20000, CpuShares: 256, MemoryLimitInBytes: 128 * mib}
	if err := d.Runtime().UpdateContainerResources(testCtx(t), id, &runtimeapi.ContainerResources{Linux: after}); err != nil {
		t.Fatalf("UpdateContainerResources: %v", err)
	}
	if a := available(); a > 128*mib || a <= 64*mib {
		t.Errorf("available bytes right after the update to a 128 MiB limit = %d", a)
	}
	check := func(when string) {
		t.Helper()
		wants := []struct {
			controller, file string
			values           []string
		}{
			{"memory", memFile, []string{memWant}},
			{"cpu", "cpu.cfs_quota_us", []string{"20000"}},
			{"cpu", "cpu.shares", []string{"256"}},
		}
		if cg.layout.Unified() {
			wants[1].file, wants[1].values = "cpu.max", []string{"20000 100000"}
			wants[2].file, wants[2].values = "cpu.weight", cpuWeight(256)
		}
		for _, c := range wants {
			if got := cg.read(t, c.controller, c.file); !slices.Contains(c.values, got) {
				t.Errorf("%s: %s = %q, want one of %q", when, cg.path(c.controller, c.file), got, c.values)
			}
		}
		st := d.ContainerStatus(t, id).GetStatus()
		if got := st.GetResources().GetLinux(); !proto.Equal(got, after) {
			t.Errorf("%s: ContainerStatus.resources = %v, want %v", when, got, after)
		}
		if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("%s: container is %s, want running", when, st.State)
		}
	}
	check("after the update")
	if framework.CgroupDriver() == cgroups.SystemdName {
		// systemd rewrites every unit's cgroup from the unit's properties
		// on a reload: an update that only wrote the cgroup files would
		// be undone here.
		if out, err := exec.Command("systemctl", "daemon-reload").CombinedOutput(); err != nil {
			t.Fatalf("systemctl daemon-reload: %v: %s", err, out)
		}
		check("after systemctl daemon-reload")
	}
	d.Restart(t)
	check("after a daemon restart")
	if got := infoPid(t, d.ContainerStatus(t, id).GetInfo()); got != pid {
		t.Errorf("container pid %d after the update and restart, was %d", got, pid)
	}

	t.Run("invalid", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			r     *runtimeapi.LinuxContainerResources
			parts []string
		}{
			{"negative memory", &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -1}, []string{"memory_limit_in_bytes"}},
			{"negative cpu quota", &runtimeapi.LinuxContainerResources{CpuQuota: -5}, []string{"cpu_quota"}},
			{"bad cpuset", &runtimeapi.LinuxContainerResources{CpusetCpus: "0-x"}, []string{"cpuset_cpus"}},
			{"no linux resources", nil, []string{"linux"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := d.RuntimeClient().UpdateContainerResources(testCtx(t), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: tc.r})
				wantCode(t, "UpdateContainerResources", err, codes.InvalidArgument, tc.parts...)
			})
		}
		// Nothing changed.
		if got := cg.read(t, "memory", memFile); got != memWant {
			t.Errorf("%s after refused updates = %s, want %s", memFile, got, memWant)
		}
	})
	t.Run("unknown container", func(t *testing.T) {
		_, err := d.RuntimeClient().UpdateContainerResources(testCtx(t), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: strings.Repeat("ab", 32), Linux: after})
		wantCode(t, "UpdateContainerResources", err, codes.NotFound)
	})
	t.Run("stopped container", func(t *testing.T) {
		if err := d.Runtime().StopContainer(testCtx(t), id, 0); err != nil {
			t.Fatalf("StopContainer: %v", err)
		}
		_, err := d.RuntimeClient().UpdateContainerResources(testCtx(t), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: before})
		wantCode(t, "UpdateContainerResources", err, codes.FailedPrecondition, id)
		if got := d.ContainerStatus(t, id).GetStatus().GetResources().GetLinux(); !proto.Equal(got, after) {
			t.Errorf("resources of the stopped container after a refused update = %v, want %v", got, after)
		}
	})
}

// containerStats is ContainerStats through cri-client.
func containerStats(t *testing.T, d *framework.Daemon, id string) *runtimeapi.ContainerStats {
	t.Helper()
	st, err := d.Runtime().ContainerStats(testCtx(t), id)
	if err != nil {
		t.Fatalf("ContainerStats(%s): %v", id, err)
	}
	return st
}

// hostAddrFor returns the host address on the pod's network: the address
// of the host interface (the test network's bridge) whose subnet holds
// the pod's IP. The test network sets no default route, so the pod cannot
// tell.
func hostAddrFor(t *testing.T, d *framework.Daemon, pod string) string {
	t.Helper()
	podIP := net.ParseIP(d.PodStatus(t, pod).GetStatus().GetNetwork().GetIp())
	if podIP == nil {
		t.Fatalf("pod %s has no IP in its status", pod)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.Contains(podIP) && !n.IP.Equal(podIP) {
			return n.IP.String()
		}
	}
	t.Fatalf("no host address on the network of pod IP %s", podIP)
	return ""
}

// TestContainerAndPodStats checks the usage figures kubelet's summary
// API is built from.
func TestContainerAndPodStats(t *testing.T) {
	_, d := podEnv(t)
	pc := framework.PodConfig("stats", framework.WithPodLabels(map[string]string{"stats": "busy"}))
	pod := d.RunPod(t, pc)
	busyCfg := framework.Shell("busy", bb, "while :; do :; done")
	busyCfg.Labels["role"] = "busy"
	busy := d.CreateStarted(t, pod, busyCfg, pc)
	idleCfg := sleeper("idle")
	idleCfg.Labels["role"] = "idle"
	idle := d.CreateStarted(t, pod, idleCfg, pc)

	t.Run("cpu and memory", func(t *testing.T) {
		first := containerStats(t, d, busy)
		if first.GetAttributes().GetId() != busy || first.GetAttributes().GetMetadata().GetName() != "busy" || first.GetAttributes().GetLabels()["role"] != "busy" {
			t.Errorf("attributes = %v, want the busy container's id, metadata and labels", first.GetAttributes())
		}
		if first.GetCpu().GetTimestamp() == 0 {
			t.Errorf("cpu stats without a timestamp: %v", first.GetCpu())
		}
		framework.Eventually(t, 20*time.Second, func() (bool, string) {
			now := containerStats(t, d, busy)
			a, b := first.GetCpu().GetUsageCoreNanoSeconds().GetValue(), now.GetCpu().GetUsageCoreNanoSeconds().GetValue()
			cores := now.GetCpu().GetUsageNanoCores().GetValue()
			// A busy loop uses a whole core on an idle machine; 0.05
			// cores leaves room for a loaded one.
			return b > a+100_000_000 && cores > 50_000_000 && now.GetCpu().GetTimestamp() > first.GetCpu().GetTimestamp(),
				fmt.Sprintf("cpu usage %d -> %d ns, nano cores %d; want growing usage and > 0.05 cores", a, b, cores)
		})
		mem := containerStats(t, d, busy).GetMemory()
		if mem.GetWorkingSetBytes().GetValue() == 0 || mem.GetUsageBytes().GetValue() == 0 || mem.GetTimestamp() == 0 {
			t.Errorf("memory stats of a running container = %v, want working set and usage > 0", mem)
		}
		// The idle container uses next to no CPU.
		framework.Eventually(t, 20*time.Second, func() (bool, string) {
			c := containerStats(t, d, idle).GetCpu()
			return c.GetUsageNanoCores() != nil && c.GetUsageNanoCores().GetValue() < 20_000_000,
				fmt.Sprintf("idle container nano cores = %v, want a value below 0.02 cores", c.GetUsageNanoCores())
		})
	})

	t.Run("writable layer", func(t *testing.T) {
		before := containerStats(t, d, idle).GetWritableLayer()
		if before.GetFsId().GetMountpoint() == "" {
			t.Errorf("writable layer without a mountpoint: %v", before)
		}
		d.ExecOK(t, idle, "dd", "if=/dev/urandom", "of=/big", "bs=1M", "count=5")
		b0 := before.GetUsedBytes().GetValue()
		framework.Eventually(t, 40*time.Second, func() (bool, string) {
			wl := containerStats(t, d, idle).GetWritableLayer()
			return wl.GetUsedBytes().GetValue() >= b0+5*mib && wl.GetInodesUsed().GetValue() > before.GetInodesUsed().GetValue(),
				fmt.Sprintf("writable layer %d bytes %d inodes, was %d bytes %d inodes; want +5 MiB and +1 inode",
					wl.GetUsedBytes().GetValue(), wl.GetInodesUsed().GetValue(), b0, before.GetInodesUsed().GetValue())
		})
	})

	// A container created but not started has a cgroup holding only the
	// runtime's init waiting for the start: its figures are not the
	// container's, so none are reported (as containerd, which has no
	// task to ask yet) until it starts; its writable layer is.
	t.Run("created container", func(t *testing.T) {
		created := d.CreateContainer(t, pod, sleeper("created"), pc)
		st := containerStats(t, d, created)
		if st.GetAttributes().GetId() != created || st.GetAttributes().GetMetadata().GetName() != "created" {
			t.Errorf("attributes = %v, want the created container's", st.GetAttributes())
		}
		if st.GetCpu() != nil || st.GetMemory() != nil {
			t.Errorf("a created container reports cpu %v, memory %v; want none before it starts", st.GetCpu(), st.GetMemory())
		}
		// The layer is measured in the background from the creation on:
		// a loaded (or emulated) node may answer before the first walk.
		framework.Eventually(t, 20*time.Second, func() (bool, string) {
			wl := containerStats(t, d, created).GetWritableLayer()
			return wl.GetFsId().GetMountpoint() != "", fmt.Sprintf("a created container's writable layer = %v, want one", wl)
		})
		list, err := d.Runtime().ListContainerStats(testCtx(t), &runtimeapi.ContainerStatsFilter{Id: created})
		if err != nil || len(list) != 1 || list[0].GetCpu() != nil {
			t.Errorf("ListContainerStats(%s) = %v, %v; want it listed without cpu", created, list, err)
		}
		d.StartContainer(t, created)
		framework.Eventually(t, 20*time.Second, func() (bool, string) {
			st := containerStats(t, d, created)
			return st.GetCpu().GetTimestamp() != 0 && st.GetMemory().GetWorkingSetBytes().GetValue() > 0,
				fmt.Sprintf("started container stats cpu %v memory %v; want both", st.GetCpu(), st.GetMemory())
		})
		if err := d.Runtime().StopContainer(testCtx(t), created, 0); err != nil {
			t.Fatalf("StopContainer: %v", err)
		}
		if err := d.Runtime().RemoveContainer(testCtx(t), created); err != nil {
			t.Fatalf("RemoveContainer: %v", err)
		}
	})

	t.Run("cgroup v2 pressure and io", func(t *testing.T) {
		requireUnified(t)
		st := containerStats(t, d, busy)
		if st.GetCpu().GetPsi() == nil || st.GetMemory().GetPsi() == nil || st.GetIo().GetPsi() == nil {
			t.Errorf("PSI on cgroup v2: cpu %v, memory %v, io %v; want all three", st.GetCpu().GetPsi(), st.GetMemory().GetPsi(), st.GetIo().GetPsi())
		}
		if st.GetIo().GetTimestamp() == 0 {
			t.Errorf("io stats without a timestamp: %v", st.GetIo())
		}
		d.ExecOK(t, idle, "dd", "if=/dev/zero", "of=/io-test", "bs=1M", "count=5", "conv=fsync")
		framework.Eventually(t, 30*time.Second, func() (bool, string) {
			written := ctrMetric(t, d, idle, "container_fs_writes_bytes_total")
			return written >= 5*mib, fmt.Sprintf("container_fs_writes_bytes_total = %d, want >= 5 MiB after a synced 5 MiB write", written)
		})
	})

	t.Run("pod network and containers", func(t *testing.T) {
		podStats := func() *runtimeapi.PodSandboxStats {
			st, err := d.Runtime().PodSandboxStats(testCtx(t), pod)
			if err != nil {
				t.Fatalf("PodSandboxStats: %v", err)
			}
			return st
		}
		before := podStats()
		if before.GetAttributes().GetId() != pod || before.GetAttributes().GetLabels()["stats"] != "busy" {
			t.Errorf("pod attributes = %v", before.GetAttributes())
		}
		iface := before.GetLinux().GetNetwork().GetDefaultInterface()
		if iface.GetName() != "eth0" {
			t.Fatalf("pod network default interface = %v, want eth0", before.GetLinux().GetNetwork())
		}
		if before.GetLinux().GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || before.GetLinux().GetMemory().GetWorkingSetBytes().GetValue() == 0 {
			t.Errorf("pod cpu/memory = %v / %v, want usage", before.GetLinux().GetCpu(), before.GetLinux().GetMemory())
		}
		var ids []string
		for _, c := range before.GetLinux().GetContainers() {
			ids = append(ids, c.GetAttributes().GetId())
		}
		if !sameSet(ids, []string{busy, idle}) {
			t.Errorf("pod stats containers = %v, want %v", ids, []string{busy, idle})
		}
		gw := hostAddrFor(t, d, pod)
		if r := d.Exec(t, idle, 30*time.Second, "ping", "-c", "5", "-i", "0.2", "-s", "1000", gw); r.ExitCode != 0 {
			t.Fatalf("ping %s from the pod: exit %d %s %s", gw, r.ExitCode, r.Stdout, r.Stderr)
		}
		// Five 1000-byte echo requests out, five replies in.
		framework.Eventually(t, 20*time.Second, func() (bool, string) {
			now := podStats().GetLinux().GetNetwork().GetDefaultInterface()
			rx, tx := now.GetRxBytes().GetValue()-iface.GetRxBytes().GetValue(), now.GetTxBytes().GetValue()-iface.GetTxBytes().GetValue()
			return rx >= 5000 && tx >= 5000, fmt.Sprintf("eth0 grew by rx %d tx %d bytes, want >= 5000 each", rx, tx)
		})
	})
}

// ctrMetric sums the values of the container's series named name in
// ListPodSandboxMetrics.
func ctrMetric(t *testing.T, d *framework.Daemon, id, name string) uint64 {
	t.Helper()
	resp, err := d.RuntimeClient().ListPodSandboxMetrics(testCtx(t), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatalf("ListPodSandboxMetrics: %v", err)
	}
	var sum uint64
	for _, pm := range resp.GetPodMetrics() {
		for _, cm := range pm.GetContainerMetrics() {
			if cm.GetContainerId() != id {
				continue
			}
			for _, m := range cm.GetMetrics() {
				if m.GetName() == name {
					sum += m.GetValue().GetValue()
				}
			}
		}
	}
	return sum
}

// TestStatsFiltersAndStreams checks the List and Stream forms of the
// stats RPCs and their filters, and the metrics RPCs.
func TestStatsFiltersAndStreams(t *testing.T) {
	_, d := podEnv(t)
	ctx := testCtx(t)
	pcA := framework.PodConfig("a", framework.WithPodLabels(map[string]string{"group": "a"}))
	pcB := framework.PodConfig("b", framework.WithPodLabels(map[string]string{"group": "b"}))
	podA, podB := d.RunPod(t, pcA), d.RunPod(t, pcB)
	mk := func(pod, name, tier string, pc *runtimeapi.PodSandboxConfig) string {
		cfg := sleeper(name)
		cfg.Labels["tier"] = tier
		return d.CreateStarted(t, pod, cfg, pc)
	}
	a1, a2, b1 := mk(podA, "a1", "front", pcA), mk(podA, "a2", "back", pcA), mk(podB, "b1", "front", pcB)

	ctrIDs := func(list []*runtimeapi.ContainerStats) []string {
		var out []string
		for _, s := range list {
			out = append(out, s.GetAttributes().GetId())
		}
		return out
	}
	podIDs := func(list []*runtimeapi.PodSandboxStats) []string {
		var out []string
		for _, s := range list {
			out = append(out, s.GetAttributes().GetId())
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		filter *runtimeapi.ContainerStatsFilter
		want   []string
	}{
		{"no filter", nil, []string{a1, a2, b1}},
		{"id", &runtimeapi.ContainerStatsFilter{Id: a2}, []string{a2}},
		{"id prefix", &runtimeapi.ContainerStatsFilter{Id: a2[:12]}, []string{a2}},
		{"pod", &runtimeapi.ContainerStatsFilter{PodSandboxId: podA}, []string{a1, a2}},
		{"label", &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"tier": "front"}}, []string{a1, b1}},
		{"pod and label", &runtimeapi.ContainerStatsFilter{PodSandboxId: podB, LabelSelector: map[string]string{"tier": "front"}}, []string{b1}},
		{"unknown id", &runtimeapi.ContainerStatsFilter{Id: strings.Repeat("0", 64)}, nil},
	} {
		t.Run("containers "+tc.name, func(t *testing.T) {
			list, err := d.Runtime().ListContainerStats(ctx, tc.filter)
			if err != nil {
				t.Fatalf("ListContainerStats: %v", err)
			}
			if got := ctrIDs(list); !sameSet(got, tc.want) {
				t.Errorf("ListContainerStats(%v) = %v, want %v", tc.filter, got, tc.want)
			}
			for _, s := range list {
				if s.GetCpu() == nil || s.GetMemory() == nil || s.GetWritableLayer() == nil {
					t.Errorf("stats of running container %s lack cpu, memory or writable layer: %v", s.GetAttributes().GetId(), s)
				}
			}
			stream, err := d.RuntimeClient().StreamContainerStats(ctx, &runtimeapi.StreamContainerStatsRequest{Filter: tc.filter})
			if err != nil {
				t.Fatalf("StreamContainerStats: %v", err)
			}
			var streamed []*runtimeapi.ContainerStats
			for {
				resp, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("StreamContainerStats Recv: %v", err)
				}
				streamed = append(streamed, resp.GetContainerStats()...)
			}
			if got := ctrIDs(streamed); !sameSet(got, tc.want) {
				t.Errorf("StreamContainerStats(%v) = %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name   string
		filter *runtimeapi.PodSandboxStatsFilter
		want   []string
	}{
		{"no filter", nil, []string{podA, podB}},
		{"id", &runtimeapi.PodSandboxStatsFilter{Id: podB}, []string{podB}},
		{"label", &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"group": "a"}}, []string{podA}},
		{"unmatched label", &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"group": "c"}}, nil},
	} {
		t.Run("pods "+tc.name, func(t *testing.T) {
			list, err := d.Runtime().ListPodSandboxStats(ctx, tc.filter)
			if err != nil {
				t.Fatalf("ListPodSandboxStats: %v", err)
			}
			if got := podIDs(list); !sameSet(got, tc.want) {
				t.Errorf("ListPodSandboxStats(%v) = %v, want %v", tc.filter, got, tc.want)
			}
			for _, s := range list {
				want := map[string][]string{podA: {a1, a2}, podB: {b1}}[s.GetAttributes().GetId()]
				if got := ctrIDs(s.GetLinux().GetContainers()); !sameSet(got, want) {
					t.Errorf("pod %s stats hold containers %v, want %v", s.GetAttributes().GetId(), got, want)
				}
			}
			stream, err := d.RuntimeClient().StreamPodSandboxStats(ctx, &runtimeapi.StreamPodSandboxStatsRequest{Filter: tc.filter})
			if err != nil {
				t.Fatalf("StreamPodSandboxStats: %v", err)
			}
			var streamed []*runtimeapi.PodSandboxStats
			for {
				resp, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("StreamPodSandboxStats Recv: %v", err)
				}
				streamed = append(streamed, resp.GetPodSandboxStats()...)
			}
			if got := podIDs(streamed); !sameSet(got, tc.want) {
				t.Errorf("StreamPodSandboxStats(%v) = %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
	t.Run("unknown ids", func(t *testing.T) {
		_, err := d.RuntimeClient().ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: strings.Repeat("0", 64)})
		wantCode(t, "ContainerStats", err, codes.NotFound)
		_, err = d.RuntimeClient().PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: strings.Repeat("0", 64)})
		wantCode(t, "PodSandboxStats", err, codes.NotFound)
	})

	t.Run("metrics", func(t *testing.T) {
		descs, err := d.RuntimeClient().ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
		if err != nil {
			t.Fatalf("ListMetricDescriptors: %v", err)
		}
		if len(descs.GetDescriptors()) == 0 {
			t.Fatal("ListMetricDescriptors returned nothing")
		}
		known := map[string]*runtimeapi.MetricDescriptor{}
		for _, m := range descs.GetDescriptors() {
			if m.GetName() == "" || m.GetHelp() == "" {
				t.Errorf("descriptor without a name or help: %v", m)
			}
			known[m.GetName()] = m
		}
		resp, err := d.RuntimeClient().ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
		if err != nil {
			t.Fatalf("ListPodSandboxMetrics: %v", err)
		}
		var pods []string
		seen := map[string]bool{}
		checkMetric := func(owner string, m *runtimeapi.Metric) {
			seen[m.GetName()] = true
			desc, ok := known[m.GetName()]
			if !ok {
				t.Errorf("%s: metric %q has no descriptor", owner, m.GetName())
				return
			}
			if len(m.GetLabelValues()) != len(desc.GetLabelKeys()) {
				t.Errorf("%s: metric %q has %d label values, its descriptor %d keys %v", owner, m.GetName(), len(m.GetLabelValues()), len(desc.GetLabelKeys()), desc.GetLabelKeys())
			}
		}
		for _, pm := range resp.GetPodMetrics() {
			pods = append(pods, pm.GetPodSandboxId())
			for _, m := range pm.GetMetrics() {
				checkMetric("pod "+pm.GetPodSandboxId(), m)
			}
			var ctrs []string
			for _, cm := range pm.GetContainerMetrics() {
				ctrs = append(ctrs, cm.GetContainerId())
				if len(cm.GetMetrics()) == 0 {
					t.Errorf("container %s has no metrics", cm.GetContainerId())
				}
				for _, m := range cm.GetMetrics() {
					checkMetric("container "+cm.GetContainerId(), m)
				}
			}
			want := map[string][]string{podA: {a1, a2}, podB: {b1}}[pm.GetPodSandboxId()]
			if !sameSet(ctrs, want) {
				t.Errorf("pod %s metrics hold containers %v, want %v", pm.GetPodSandboxId(), ctrs, want)
			}
		}
		if !sameSet(pods, []string{podA, podB}) {
			t.Errorf("ListPodSandboxMetrics pods = %v, want %v", pods, []string{podA, podB})
		}
		for _, name := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes"} {
			if known[name] != nil && !seen[name] {
				t.Errorf("metric %s is described but never reported", name)
			}
		}
	})
}

// TestStatsManyContainers: the stats lists of 100 running containers in
// 10 pods hold every container, each with its figures, and each pod with
// its own ten. How fast they come back is cri-bench --scale's to measure
// (test/bench/README.md), not a test's.
func TestStatsManyContainers(t *testing.T) {
	const pods, perPod = 10, 10
	_, d := podEnv(t)
	ctx := testCtx(t)
	var all []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, pods*perPod)
	for p := range pods {
		pc := framework.PodConfig(fmt.Sprintf("many-%d", p))
		pod := d.RunPod(t, pc)
		for c := range perPod {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id, err := d.Runtime().CreateContainer(ctx, pod, framework.ContainerConfig(fmt.Sprintf("c%d", c), bb, "sleep", "3600"), pc)
				if err == nil {
					err = d.Runtime().StartContainer(ctx, id)
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				all = append(all, id)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("creating containers: %v", err)
	}
	// The pods' cleanup removes the containers; stopping them first in
	// parallel keeps it short.
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, id := range all {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = d.Runtime().StopContainer(ctx, id, 0)
			}()
		}
		wg.Wait()
	})

	for i := range 3 {
		list, err := d.Runtime().ListContainerStats(ctx, nil)
		if err != nil {
			t.Fatalf("ListContainerStats: %v", err)
		}
		if len(list) != pods*perPod {
			t.Fatalf("ListContainerStats #%d returned %d containers, want %d", i+1, len(list), pods*perPod)
		}
		for _, s := range list {
			if s.GetCpu() == nil || s.GetMemory() == nil || s.GetWritableLayer() == nil {
				t.Fatalf("stats of %s lack cpu, memory or writable layer: %v", s.GetAttributes().GetId(), s)
			}
		}
	}
	plist, err := d.Runtime().ListPodSandboxStats(ctx, nil)
	if err != nil || len(plist) != pods {
		t.Fatalf("ListPodSandboxStats: %d pods, %v; want %d", len(plist), err, pods)
	}
	seen := map[string]bool{}
	for _, p := range plist {
		ctrs := p.GetLinux().GetContainers()
		if len(ctrs) != perPod {
			t.Errorf("pod %s stats hold %d containers, want %d", p.GetAttributes().GetId(), len(ctrs), perPod)
		}
		for _, c := range ctrs {
			seen[c.GetAttributes().GetId()] = true
		}
	}
	for _, id := range all {
		if !seen[id] {
			t.Errorf("container %s is in no pod's stats", id)
		}
	}
}
