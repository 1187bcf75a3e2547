//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// sandboxMemoryLimit is the memory limit of pod's sandbox process's
// cgroup, in bytes (-1: none).
func sandboxMemoryLimit(t *testing.T, d *framework.Daemon, pod string) int64 {
	t.Helper()
	return cgroupValue(t, d, pod, false, "memory", "memory.limit_in_bytes", "memory.max")
}

// cgroupValue reads a file of the cgroup of pod's sandbox process, or of
// its parent, the pod cgroup, when parent is set: the v1 file in
// controller's hierarchy or the v2 one ("max" and v1's unlimited page
// count read as -1).
func cgroupValue(t *testing.T, d *framework.Daemon, pod string, parent bool, controller, v1File, v2File string) int64 {
	t.Helper()
	resp, err := d.Runtime().PodSandboxStatus(testCtx(t), pod, true)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := verboseInfo(t, resp.GetInfo())["pid"].(float64)
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	l, err := cgroups.HostLayout()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		dir := f[2]
		if parent {
			dir = filepath.Dir(dir)
		}
		var file string
		switch {
		case l.Unified() && f[0] == "0":
			file = filepath.Join(l.V2Root, dir, v2File)
		case !l.Unified() && strings.Contains(","+f[1]+",", ","+controller+","):
			file = filepath.Join(l.V1Root, controller, dir, v1File)
		default:
			continue
		}
		v, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.Fields(string(v))[0]
		if s == "max" || s == "9223372036854771712" {
			return -1
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	t.Fatalf("no %s cgroup for the sandbox of pod %s in %q", controller, pod, b)
	return 0
}

// TestUpdatePodSandboxResources: the pod's resources plus its overhead
// size the sandbox's cgroup and the pod cgroup at creation and, after kubelet's
// UpdatePodSandboxResources (in-place pod resize), the sandbox's and the
// pod cgroup, the parent of its containers; the pod's config keeps them;
// bad values are InvalidArgument and an unknown pod NotFound.
func TestUpdatePodSandboxResources(t *testing.T) {
	_, d := podEnv(t)
	const mi = 1 << 20
	pc := framework.PodConfig("podresize", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 * mi}
	})
	pod := d.RunPod(t, pc)
	if got := sandboxMemoryLimit(t, d, pod); got != 128*mi {
		t.Fatalf("sandbox memory limit at creation = %d, want %d", got, 128*mi)
	}
	// The pod has no cgroup parent (crictl): the pod cgroup the daemon
	// made is sized at creation too, not only at the first resize.
	if got := cgroupValue(t, d, pod, true, "memory", "memory.limit_in_bytes", "memory.max"); got != 128*mi {
		t.Fatalf("pod cgroup memory limit at creation = %d, want %d", got, 128*mi)
	}
	_, err := d.RuntimeClient().UpdatePodSandboxResources(testCtx(t), &runtimeapi.UpdatePodSandboxResourcesRequest{
		PodSandboxId: pod,
		Resources:    &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 256 * mi},
		Overhead:     &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 * mi},
	})
	if err != nil {
		t.Fatalf("UpdatePodSandboxResources: %v", err)
	}
	if got := sandboxMemoryLimit(t, d, pod); got != 320*mi {
		t.Errorf("sandbox memory limit after the update = %d, want %d (resources + overhead)", got, 320*mi)
	}
	if got := cgroupValue(t, d, pod, true, "memory", "memory.limit_in_bytes", "memory.max"); got != 320*mi {
		t.Errorf("pod cgroup memory limit after the update = %d, want %d (resources + overhead)", got, 320*mi)
	}
	resp, err := d.Runtime().PodSandboxStatus(testCtx(t), pod, true)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := verboseInfo(t, resp.GetInfo())["config"].(map[string]any)
	if linux, _ := cfg["linux"].(map[string]any); linux == nil || linux["resources"] == nil || linux["overhead"] == nil {
		t.Errorf("the pod's config does not keep the updated resources and overhead: %v", cfg["linux"])
	}

	_, err = d.RuntimeClient().UpdatePodSandboxResources(testCtx(t), &runtimeapi.UpdatePodSandboxResourcesRequest{
		PodSandboxId: pod, Resources: &runtimeapi.LinuxContainerResources{CpuShares: -1}})
	wantCode(t, "UpdatePodSandboxResources with negative cpu shares", err, codes.InvalidArgument)
	_, err = d.RuntimeClient().UpdatePodSandboxResources(testCtx(t), &runtimeapi.UpdatePodSandboxResourcesRequest{
		PodSandboxId: strings.Repeat("f", 64), Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 256 * mi}})
	wantCode(t, "UpdatePodSandboxResources of an unknown pod", err, codes.NotFound)
}

// TestPodCgroupCPUResize: a pod's CPU quota grows and shrinks in place in
// the pod cgroup while a container with its own quota runs below it, as
// kubelet resizes (a shrinking pod's containers first). On cgroup v1 the
// kernel refuses a parent's quota below a child's, so this also checks
// that the sandbox's cgroup is shrunk before the pod's.
func TestPodCgroupCPUResize(t *testing.T) {
	_, d := podEnv(t)
	pc := framework.PodConfig("podcpu", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuQuota: 50000, CpuPeriod: 100000, CpuShares: 512}
	})
	pod := d.RunPod(t, pc)
	ctr := sleeper("c")
	ctr.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpuQuota: 40000, CpuPeriod: 100000}}
	c := d.CreateStarted(t, pod, ctr, pc)
	quota := func() int64 { return cgroupValue(t, d, pod, true, "cpu", "cpu.cfs_quota_us", "cpu.max") }
	if got := quota(); got != 50000 {
		t.Errorf("pod cgroup CPU quota at creation = %d, want 50000", got)
	}
	resize := func(q int64) {
		t.Helper()
		_, err := d.RuntimeClient().UpdatePodSandboxResources(testCtx(t), &runtimeapi.UpdatePodSandboxResourcesRequest{
			PodSandboxId: pod,
			Resources:    &runtimeapi.LinuxContainerResources{CpuQuota: q, CpuPeriod: 100000, CpuShares: 512},
		})
		if err != nil {
			t.Fatalf("UpdatePodSandboxResources to quota %d: %v", q, err)
		}
		if got := quota(); got != q {
			t.Errorf("pod cgroup CPU quota after resizing to %d = %d", q, got)
		}
	}
	resize(200000)
	if err := d.Runtime().UpdateContainerResources(testCtx(t), c, &runtimeapi.ContainerResources{Linux: &runtimeapi.LinuxContainerResources{
		CpuQuota: 20000, CpuPeriod: 100000}}); err != nil {
		t.Fatalf("UpdateContainerResources: %v", err)
	}
	resize(30000)
	// kubelet lifts a pod's quota with -1 (a pod resized to no CPU
	// limit); InvalidArgument here failed the upstream in-place resize
	// conformance specs.
	resize(-1)
}
