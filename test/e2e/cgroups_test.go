//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// podCgroupParent is the pod's cgroup parent from its verbose status.
func podCgroupParent(t *testing.T, d *framework.Daemon, pod string) string {
	t.Helper()
	resp, err := d.Runtime().PodSandboxStatus(testCtx(t), pod, true)
	if err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	p, _ := verboseInfo(t, resp.GetInfo())["cgroupParent"].(string)
	if p == "" {
		t.Fatalf("pod %s: no cgroupParent in its verbose status", pod)
	}
	return p
}

// unitProperty is `systemctl show -p name --value unit`.
func unitProperty(t *testing.T, unit, name string) string {
	t.Helper()
	out, err := exec.Command("systemctl", "show", "-p", name, "--value", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemctl show %s: %v: %s", unit, err, out)
	}
	return strings.TrimSpace(string(out))
}

// memoryDir is the directory of cgroup rel in the memory controller's
// hierarchy.
func memoryDir(l cgroups.Layout, rel string) string {
	if l.Unified() {
		return filepath.Join(l.V2Root, rel)
	}
	return filepath.Join(l.V1Root, "memory", rel)
}

// TestPodCgroup: a pod whose config names no cgroup parent (crictl) gets a
// cgroup of its own below the daemon's default parent, a slice under the
// systemd driver, which holds the pod's sandbox and containers and goes
// away with the pod; a pod with a parent (kubelet's pod cgroup) is put in
// it, and it stays when the pod goes; a parent of the other driver's form
// is refused.
func TestPodCgroup(t *testing.T) {
	l := requireCgroups(t)
	_, d := podEnv(t)
	systemd := framework.CgroupDriver() == cgroups.SystemdName
	defParent := d.Config.String("runtime.default_cgroup_parent")

	// checkPod runs a pod with a container in parent (or its own cgroup
	// when empty), removes it, and returns the pod's cgroup directory.
	checkPod := func(t *testing.T, name, parent string) string {
		t.Helper()
		pc := framework.PodConfig(name)
		if parent != "" {
			pc = framework.PodConfig(name, framework.WithCgroupParent(parent))
		}
		pod := d.RunPod(t, pc)
		ctr := d.CreateStarted(t, pod, sleeper("c"), pc)
		got := podCgroupParent(t, d, pod)
		want := parent
		if parent == "" {
			want = filepath.Join(defParent, pod)
			if systemd {
				want = strings.TrimSuffix(defParent, ".slice") + "-pod" + pod + ".slice"
			}
		}
		if got != want {
			t.Errorf("pod cgroup parent = %q, want %q", got, want)
		}
		dir := framework.CgroupDir(t, got)
		if cg := containerCgroup(t, d, ctr); filepath.Dir(cg.dir) != dir {
			t.Errorf("container cgroup %s is not directly below the pod's %s", cg.dir, dir)
		}
		if _, err := os.Stat(memoryDir(l, dir)); err != nil {
			t.Errorf("pod cgroup: %v", err)
		}
		if systemd {
			// Ours is a transient unit the daemon started; kubelet's is
			// whatever kubelet made.
			if s := unitProperty(t, got, "ActiveState"); s != "active" {
				t.Errorf("pod slice %s is %s, want active", got, s)
			}
			if tr := unitProperty(t, got, "Transient"); parent == "" && tr != "yes" {
				t.Errorf("the pod's own slice %s is not a transient unit (Transient=%s): the daemon did not create it", got, tr)
			}
		}
		if err := d.Runtime().StopPodSandbox(testCtx(t), pod); err != nil {
			t.Fatalf("StopPodSandbox: %v", err)
		}
		if err := d.Runtime().RemovePodSandbox(testCtx(t), pod); err != nil {
			t.Fatalf("RemovePodSandbox: %v", err)
		}
		return dir
	}

	t.Run("own", func(t *testing.T) {
		dir := checkPod(t, "own", "")
		if _, err := os.Stat(memoryDir(l, dir)); !os.IsNotExist(err) {
			t.Errorf("the pod's own cgroup %s is still there after the pod's removal (%v)", memoryDir(l, dir), err)
		}
		if systemd {
			// Any slice name loads as a unit (systemd makes slices up on
			// demand), so "gone" is: not active, and not our transient
			// unit any more.
			slice := filepath.Base(dir)
			framework.Eventually(t, 20*time.Second, func() (bool, string) {
				active, transient := unitProperty(t, slice, "ActiveState"), unitProperty(t, slice, "Transient")
				return active == "inactive" && transient == "no",
					"pod slice " + slice + " is " + active + " (transient " + transient + ") after the pod's removal, want inactive and no longer transient"
			})
		}
	})
	t.Run("kubelet's", func(t *testing.T) {
		// kubelet makes the pod cgroup before the pod and removes it after.
		parent := filepath.Join(defParent, "kubepod"+framework.RandomID(4))
		if systemd {
			parent = strings.TrimSuffix(defParent, ".slice") + "-kubepod" + framework.RandomID(4) + ".slice"
			if out, err := exec.Command("systemctl", "start", parent).CombinedOutput(); err != nil {
				t.Fatalf("systemctl start %s: %v: %s", parent, err, out)
			}
		}
		dir := checkPod(t, "kube", parent)
		if _, err := os.Stat(memoryDir(l, dir)); err != nil {
			t.Errorf("kubelet's pod cgroup was removed with the pod: %v", err)
		}
		if systemd {
			if s := unitProperty(t, parent, "ActiveState"); s != "active" {
				t.Errorf("kubelet's pod slice is %s after the pod's removal, want active", s)
			}
		}
	})
	t.Run("other driver's form", func(t *testing.T) {
		parent := "kubepods-besteffort-pod" + framework.RandomID(4) + ".slice"
		if systemd {
			parent = "/kubepods/besteffort/pod" + framework.RandomID(4)
		}
		_, err := d.Runtime().RunPodSandbox(testCtx(t), framework.PodConfig("wrong", framework.WithCgroupParent(parent)), "")
		wantCode(t, "RunPodSandbox", err, codes.InvalidArgument, "cgroup_parent")
	})
}

// swapActive reports whether the node has swap (kubelet's LimitedSwap
// needs it).
func swapActive(t *testing.T) bool {
	b, err := os.ReadFile("/proc/swaps")
	if err != nil {
		t.Fatal(err)
	}
	return len(strings.Split(strings.TrimSpace(string(b)), "\n")) > 1
}

// TestSwapLimit: swap as kubelet's LimitedSwap sets it on cgroup v2
// (memory.swap.max in "unified", next to the memory limit): the container
// may page out up to that much beyond its memory limit and its stats show
// the swap it uses; with kubelet's NoSwap (memory.swap.max 0) the same
// container is OOM-killed.
func TestSwapLimit(t *testing.T) {
	requireUnified(t)
	if !swapActive(t) {
		t.Skip("no swap on this node (the guest suite adds a swap file)")
	}
	_, d := podEnv(t)
	// 48 MB held by a process under a 32 MiB limit.
	const hog = `BEGIN { s = sprintf("%48000000s", ""); print "allocated"; fflush(); while (1) system("sleep 1") }`
	run := func(t *testing.T, name, swapMax string) (string, ctrCgroup) {
		cfg := withResources(framework.ContainerConfig(name, bb, "awk", hog), &runtimeapi.LinuxContainerResources{
			MemoryLimitInBytes: 32 * mib,
			Unified:            map[string]string{"memory.swap.max": swapMax},
		})
		pc := framework.PodConfig(name)
		pod := d.RunPod(t, pc)
		id := d.CreateStarted(t, pod, cfg, pc)
		cg := containerCgroup(t, d, id)
		if got := cg.read(t, "", "memory.swap.max"); got != swapMax {
			t.Errorf("memory.swap.max = %q, want %s", got, swapMax)
		}
		return id, cg
	}
	t.Run("LimitedSwap", func(t *testing.T) {
		id, cg := run(t, "limited", strconv.Itoa(128*mib))
		framework.Eventually(t, 2*time.Minute, func() (bool, string) {
			sw := containerStats(t, d, id).GetSwap()
			used := sw.GetSwapUsageBytes().GetValue()
			return used >= 16*mib && sw.GetSwapAvailableBytes() != nil,
				"swap usage " + strconv.FormatUint(used, 10) + " bytes (available " + sw.GetSwapAvailableBytes().String() + "), want >= 16 MiB and an available figure"
		})
		if st := d.ContainerStatus(t, id).GetStatus(); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("container with swap is %s (%s), want running", st.State, st.Reason)
		}
		if got, _ := strconv.Atoi(cg.read(t, "", "memory.swap.current")); got < 16*mib {
			t.Errorf("memory.swap.current = %d, want >= 16 MiB", got)
		}
	})
	t.Run("NoSwap", func(t *testing.T) {
		id, _ := run(t, "noswap", "0")
		st := d.WaitExited(t, id, 2*time.Minute)
		if st.ExitCode != 137 || st.Reason != "OOMKilled" {
			t.Errorf("container without swap over its limit: exit %d reason %q, want 137 OOMKilled", st.ExitCode, st.Reason)
		}
	})
}
