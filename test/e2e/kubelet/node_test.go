//go:build e2e && kubelet

package kubelet_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/kubeletnode"
)

// runtimeView is what the runtime holds for one pod: its sandboxes and
// containers.
type runtimeView struct {
	sandboxes, containers []string
}

// inRuntime lists the runtime's sandboxes and containers of the pod with
// uid (kubelet labels both with io.kubernetes.pod.uid).
func (n *node) inRuntime(t *testing.T, uid string) runtimeView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs := n.env.Daemon.Runtime()
	sel := map[string]string{"io.kubernetes.pod.uid": uid}
	pods, err := rs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: sel})
	if err != nil {
		t.Fatalf("ListPodSandbox: %v", err)
	}
	ctrs, err := rs.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: sel})
	if err != nil {
		t.Fatalf("ListContainers: %v", err)
	}
	var v runtimeView
	for _, p := range pods {
		v.sandboxes = append(v.sandboxes, p.Id+" "+p.State.String())
	}
	for _, c := range ctrs {
		v.containers = append(v.containers, c.Id+" "+c.State.String())
	}
	slices.Sort(v.sandboxes)
	slices.Sort(v.containers)
	return v
}

// podSnapshot is what must not change while a node component restarts:
// the container IDs and restart counts kubelet reports, and what the
// runtime holds.
type podSnapshot struct {
	ids      map[string]string
	restarts map[string]int32
	runtime  runtimeView
}

func (n *node) snapshot(t *testing.T, pod *corev1.Pod) podSnapshot {
	t.Helper()
	s := podSnapshot{ids: map[string]string{}, restarts: map[string]int32{}, runtime: n.inRuntime(t, string(pod.UID))}
	for _, cs := range pod.Status.ContainerStatuses {
		s.ids[cs.Name], s.restarts[cs.Name] = cs.ContainerID, cs.RestartCount
	}
	return s
}

// checkUnchanged watches the pod for a while (kubelet relists every
// second and syncs pods every 10 s here) and fails at the first change of
// container IDs, restart counts, readiness or the runtime's objects.
func (n *node) checkUnchanged(t *testing.T, name string, before podSnapshot, watch time.Duration) {
	t.Helper()
	deadline := time.Now().Add(watch)
	for time.Now().Before(deadline) {
		p, ok, err := n.kubelet.Pod(context.Background(), name)
		if err != nil || !ok {
			t.Fatalf("kubelet lost the pod: ok %v, err %v", ok, err)
		}
		now := n.snapshot(t, &p)
		if !podReady(&p) || fmt.Sprint(now) != fmt.Sprint(before) {
			t.Fatalf("the pod changed:\nbefore %+v\nnow    %+v\n%s", before, now, describe(&p))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func survivorPod(name string) *corev1.Pod {
	p := newPod(name, shell("main", "exec sleep 3600"), shell("second", "exec sleep 3600"))
	p.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}
	return p
}

// heldBy lists what the runtime holds on the node (Leaks) that names
// one of ids: mounts, netns pins, pod directories, runc state, shims.
func (n *node) heldBy(t *testing.T, ids []string) []string {
	t.Helper()
	var out []string
	for kind, items := range n.env.Daemon.Leaks(t) {
		for _, it := range items {
			for _, id := range ids {
				if strings.Contains(it, id) {
					out = append(out, kind+": "+it)
					break
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// runtimeIDs are the IDs of the runtime's sandboxes and containers of
// the pod with uid.
func (n *node) runtimeIDs(t *testing.T, uid string) []string {
	t.Helper()
	v := n.inRuntime(t, uid)
	var ids []string
	for _, s := range append(v.sandboxes, v.containers...) {
		id, _, _ := strings.Cut(s, " ")
		ids = append(ids, id)
	}
	return ids
}

// checkReleased waits until the stopped sandboxes and containers with
// these IDs hold nothing on the node but their pod directories: kubelet keeps a
// stopped sandbox for a minute after a pod's removal (its garbage
// collection period) and as long as a completed pod exists.
func (n *node) checkReleased(t *testing.T, ids []string) {
	t.Helper()
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		var held []string
		for _, h := range n.heldBy(t, ids) {
			if !strings.HasPrefix(h, framework.LeakPodDirs) {
				held = append(held, h)
			}
		}
		return len(held) == 0, fmt.Sprintf("stopped pod (%d sandboxes and containers) still holds:\n  %s", len(ids), strings.Join(held, "\n  "))
	})
}

// testRemoveLeavesNothing: removing a manifest removes the pod and
// everything the runtime made for it: at once what a stopped pod does
// not need, the rest when kubelet's garbage collection removes the
// sandbox (within its one-minute period).
func (n *node) testRemoveLeavesNothing(t *testing.T) {
	d := n.env.Daemon
	d.Pull(t, busybox)
	before := d.Leaks(t)
	ipsBefore := n.net.AllocatedIPs()
	if err := n.kubelet.AddPod(survivorPod("leaks")); err != nil {
		t.Fatal(err)
	}
	pod := n.waitReady(t, "leaks")
	uid := string(pod.UID)
	if during := before.New(d.Leaks(t)); len(during) == 0 {
		t.Fatal("a running pod holds nothing the leak check can see: the check is blind")
	}
	ids := n.runtimeIDs(t, uid)
	n.remove(t, "leaks")
	n.checkReleased(t, ids)
	if ips := n.net.AllocatedIPs(); len(ips) != len(ipsBefore) {
		t.Errorf("IP allocations before %v, after the pod's removal %v", ipsBefore, ips)
	}
	framework.Eventually(t, 100*time.Second, func() (bool, string) {
		v := n.inRuntime(t, uid)
		return len(v.sandboxes)+len(v.containers) == 0, fmt.Sprintf("kubelet's garbage collection left %+v", v)
	})
	d.CheckNoLeaks(t, before, 30*time.Second)
	podDir := filepath.Join(n.kubelet.RootDir, "pods", uid)
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		_, err := os.Stat(podDir)
		return os.IsNotExist(err), "kubelet did not remove " + podDir
	})
}

// testDaemonKilled: kill -9 of the daemon while kubelet runs; the daemon
// comes back and kubelet sees the same containers, nothing restarts.
func (n *node) testDaemonKilled(t *testing.T) {
	n.add(t, survivorPod("survivor"))
	pod := n.waitReady(t, "survivor")
	before := n.snapshot(t, pod)
	n.env.Daemon.Kill(t)
	// kubelet's relists fail while the runtime is away.
	time.Sleep(2 * time.Second)
	n.env.Daemon.Start(t)
	n.checkUnchanged(t, "survivor", before, 15*time.Second)
	n.exec(t, pod, "main", "true")
}

// testKubeletRestarted: the same for a restart of kubelet itself.
func (n *node) testKubeletRestarted(t *testing.T) {
	n.add(t, survivorPod("steady"))
	pod := n.waitReady(t, "steady")
	before := n.snapshot(t, pod)
	if err := n.kubelet.Stop(); err != nil {
		t.Fatal(err)
	}
	n.startKubelet(t)
	n.waitReady(t, "steady")
	n.checkUnchanged(t, "steady", before, 15*time.Second)
}

// testNodeReboot: every shim and container killed, the daemon's volatile
// state wiped (as /run is on a reboot), then the daemon and kubelet
// started again: kubelet recreates the pod.
func (n *node) testNodeReboot(t *testing.T) {
	n.add(t, survivorPod("rebooted"))
	pod := n.waitReady(t, "rebooted")
	before := n.snapshot(t, pod)

	d := n.env.Daemon
	n.kubelet.Kill()
	d.Kill(t)
	if err := framework.KillMarked(d.Dir); err != nil {
		t.Fatal(err)
	}
	if err := kubeletnode.KillPods(n.driver); err != nil {
		t.Fatal(err)
	}
	if err := framework.UnmountAll(d.State); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(d.State)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(d.State, e.Name())); err != nil {
			t.Fatal(err)
		}
	}

	d.Start(t)
	n.startKubelet(t)
	pod = n.waitPod(t, "rebooted", 2*podTimeout, func(p *corev1.Pod) (bool, string) {
		if !podReady(p) {
			return false, "not ready after the reboot"
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.ContainerID == before.ids[cs.Name] {
				return false, "container " + cs.Name + " still has its old ID"
			}
		}
		return true, ""
	})
	v := n.inRuntime(t, string(pod.UID))
	ready := 0
	for _, s := range v.sandboxes {
		if strings.HasSuffix(s, runtimeapi.PodSandboxState_SANDBOX_READY.String()) {
			ready++
		}
	}
	if ready != 1 {
		t.Errorf("want one ready sandbox after the reboot, the runtime has %v", v.sandboxes)
	}
	n.exec(t, pod, "main", "true")
}
