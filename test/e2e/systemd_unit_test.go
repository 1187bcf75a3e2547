//go:build e2e

package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// TestSystemdUnit runs the daemon as an operator does (`make install`,
// `systemctl enable --now cri-runtimed`, default config) and checks that
// restarting, and stopping then starting, the unit leaves a running pod
// running: same container process, same shim, still serving exec; and
// that every process is where the README says: the daemon and the shims
// in the unit's cgroup, the pod in its slice, the container in its scope.
func TestSystemdUnit(t *testing.T) {
	env := framework.NewInstalledEnv(t)
	d := env.Daemon
	env.PushImage(t, bb)
	for prop, want := range map[string]string{"Delegate": "yes", "KillMode": "process", "ActiveState": "active"} {
		if got := framework.Systemctl(t, "show", "-p", prop, "--value", framework.Unit); got != want {
			t.Errorf("unit %s = %q, want %q", prop, got, want)
		}
	}
	// Host network: the CNI config is whatever the node has; this test is
	// about the unit.
	pc := framework.PodConfig("unit", framework.WithPodNamespaces(runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD))
	pod := d.RunPod(t, pc)
	cfg := sleeper("c")
	cfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	ctr := d.CreateStarted(t, pod, cfg, pc)
	pid := infoPid(t, d.ContainerStatus(t, ctr).GetInfo())
	shim := d.ShimPid(t, pod)
	unitCgroup := "/system.slice/" + framework.Unit
	slice := strings.TrimSuffix(cgroups.DefaultSystemdParent, ".slice") + "-pod" + pod + ".slice"
	scope := "/" + cgroups.DefaultSystemdParent + "/" + slice + "/cri-runtimed-" + ctr + ".scope"

	check := func(when string) {
		t.Helper()
		st := d.ContainerStatus(t, ctr)
		if st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING || infoPid(t, st.GetInfo()) != pid {
			t.Fatalf("%s: container is %s with pid %d, want running with pid %d", when, st.GetStatus().GetState(), infoPid(t, st.GetInfo()), pid)
		}
		if got := d.PodStatus(t, pod).GetStatus().GetState(); got != runtimeapi.PodSandboxState_SANDBOX_READY {
			t.Errorf("%s: pod is %s, want ready", when, got)
		}
		if got := d.ShimPid(t, pod); got != shim {
			t.Errorf("%s: shim pid %d, want the first one %d", when, got, shim)
		}
		for what, p := range map[string]int{"daemon": framework.UnitMainPid(t), "shim": shim} {
			if got := framework.ProcessCgroup(p); got != unitCgroup {
				t.Errorf("%s: %s (pid %d) is in cgroup %q, want the unit's %s", when, what, p, got, unitCgroup)
			}
		}
		if got := framework.ProcessCgroup(pid); got != scope {
			t.Errorf("%s: container process is in cgroup %q, want %s", when, got, scope)
		}
		if r := d.Exec(t, ctr, 30*time.Second, "echo", "alive"); r.ExitCode != 0 || strings.TrimSpace(string(r.Stdout)) != "alive" {
			t.Errorf("%s: exec: exit %d, stdout %q, stderr %q", when, r.ExitCode, r.Stdout, r.Stderr)
		}
	}
	check("before any restart")

	daemon := framework.UnitMainPid(t)
	framework.Systemctl(t, "restart", framework.Unit)
	d.Reconnect(t)
	if framework.UnitMainPid(t) == daemon {
		t.Fatal("systemctl restart kept the daemon's pid")
	}
	check("after systemctl restart")

	framework.Systemctl(t, "stop", framework.Unit)
	for what, p := range map[string]int{"container": pid, "shim": shim} {
		if err := syscall.Kill(p, 0); err != nil {
			t.Errorf("with the unit stopped, the %s (pid %d) is gone: %v", what, p, err)
		}
	}
	framework.Systemctl(t, "start", framework.Unit)
	d.Reconnect(t)
	check("after systemctl stop and start")
}
