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
		var file string
		switch {
		case l.Unified() && f[0] == "0":
			file = filepath.Join(l.V2Root, f[2], "memory.max")
		case !l.Unified() && strings.Contains(","+f[1]+",", ",memory,"):
			file = filepath.Join(l.V1Root, "memory", f[2], "memory.limit_in_bytes")
		default:
			continue
		}
		v, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.TrimSpace(string(v))
		if s == "max" || s == "9223372036854771712" {
			return -1
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	t.Fatalf("no memory cgroup for the sandbox of pod %s in %q", pod, b)
	return 0
}

// TestUpdatePodSandboxResources: the pod's resources plus its overhead
// size the sandbox's cgroup at creation and again after kubelet's
// UpdatePodSandboxResources (in-place pod resize); the pod's config keeps
// them; bad values are InvalidArgument and an unknown pod NotFound.
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
