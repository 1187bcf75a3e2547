//go:build e2e && kubelet

package kubelet_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The CRI features of Kubernetes 1.33-1.37 as kubelet drives them.

// dataImage is an image of data, not programs, for image volumes:
// data/hello, data/nested/deep and top (pushImages).
const dataImage = "e2e-data:1"

// dataArtifact is an OCI artifact (pushImages): a tar layer with
// model/README and a file layer titled config.json.
const dataArtifact = "e2e-artifact:1"

// testImageVolume (ImageVolume, KEP-4639): kubelet pulls the image of an
// image volume and mounts it through Mount.image; the container sees its
// files read-only, and a subPath mount (Mount.image_sub_path) only that
// directory. An OCI artifact mounts the same way.
func (n *node) testImageVolume(t *testing.T) {
	t.Parallel()
	pod := newPod("imagevolume", shell("c", "exec sleep 3600"))
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "data", VolumeSource: corev1.VolumeSource{
			Image: &corev1.ImageVolumeSource{Reference: dataImage, PullPolicy: corev1.PullIfNotPresent}}},
		{Name: "art", VolumeSource: corev1.VolumeSource{
			Image: &corev1.ImageVolumeSource{Reference: dataArtifact, PullPolicy: corev1.PullIfNotPresent}}},
	}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{
		{Name: "data", MountPath: "/data"},
		{Name: "data", MountPath: "/sub", SubPath: "data/nested"},
		{Name: "art", MountPath: "/art"},
	}
	n.add(t, pod)
	p := n.waitReady(t, pod.Name)
	if out := n.exec(t, p, "c", "cat", "/data/data/hello"); out != "hello from the image\n" {
		t.Errorf("/data/data/hello = %q", out)
	}
	if out := n.exec(t, p, "c", "cat", "/art/config.json", "/art/model/README"); out != `{"threshold": 3}`+"\n"+"a model\n" {
		t.Errorf("the artifact volume's config.json and model/README = %q", out)
	}
	if out := strings.Fields(n.exec(t, p, "c", "ls", "/sub")); len(out) != 1 || out[0] != "deep" {
		t.Errorf("the subPath mount holds %q, want only deep", out)
	}
	id := containerID(t, p, "c")
	if r := n.env.Daemon.Exec(t, id, 30*time.Second, "touch", "/data/new"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "Read-only") {
		t.Errorf("write into the image volume: exit %d %q, want a read-only file system", r.ExitCode, r.Stderr)
	}
	// kubelet pulled the image through the runtime, which keeps it
	// pinned while it is mounted.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ref := range []string{dataImage, dataArtifact} {
		st, err := n.env.Daemon.Images().ImageStatus(ctx, &runtimeapi.ImageSpec{Image: ref}, false)
		if err != nil || st.GetImage() == nil || !st.GetImage().GetPinned() {
			t.Errorf("image status of the mounted %s = %v, %v; want pinned", ref, st.GetImage(), err)
		}
	}
}

// testPodResize (InPlacePodVerticalScaling): a resize reaches kubelet
// as an update of the pod's spec through the API server's resize
// subresource; a standalone kubelet has no API server, and a changed
// static pod manifest is a new pod to it (the manifest's hash is the
// pod's UID), never a resize. So kubelet makes the pod, its pod cgroup
// and containers, and the test then makes the CRI calls kubelet's resize
// makes with the values it computes (UpdatePodSandboxResources with the
// pod's resources and overhead, UpdateContainerResources with the
// container's); the pod cgroup kubelet made and the container's cgroup
// take them, the pod keeps running, ContainerStatus.resources reports
// them, and kubelet's syncs undo nothing.
func (n *node) testPodResize(t *testing.T) {
	t.Parallel()
	c := shell("c", "exec sleep 3600")
	c.Resources = limits("200m", "64Mi")
	n.add(t, newPod("resize", c))
	p := n.waitReady(t, "resize")
	uid := string(p.UID)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rs := n.env.Daemon.Runtime()
	pods, err := rs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"io.kubernetes.pod.uid": uid},
		State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}})
	if err != nil || len(pods) != 1 {
		t.Fatalf("ready sandboxes of the pod: %v, %v", pods, err)
	}
	const mi = 1 << 20
	// 400m and 128Mi, as kubelet converts them (MilliCPUToShares,
	// MilliCPUToQuota with the 100ms period).
	res := &runtimeapi.LinuxContainerResources{CpuShares: 409, CpuQuota: 40000, CpuPeriod: 100000, MemoryLimitInBytes: 128 * mi}
	if _, err := n.env.Daemon.RuntimeClient().UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{
		PodSandboxId: pods[0].Id, Resources: res, Overhead: &runtimeapi.LinuxContainerResources{}}); err != nil {
		t.Fatalf("UpdatePodSandboxResources: %v", err)
	}
	if err := rs.UpdateContainerResources(ctx, containerID(t, p, "c"), &runtimeapi.ContainerResources{Linux: res}); err != nil {
		t.Fatalf("UpdateContainerResources: %v", err)
	}
	want := map[[2]string]string{
		{"memory", "memory.limit_in_bytes"}: strconv.Itoa(128 * mi),
		{"cpu", "cpu.cfs_quota_us"}:         "40000",
		{"cpu", "cpu.shares"}:               "409",
	}
	if n.cgroup2 {
		want = map[[2]string]string{{"", "memory.max"}: strconv.Itoa(128 * mi), {"", "cpu.max"}: "40000 100000", {"", "cpu.weight"}: "16"}
	}
	for f, v := range want {
		if got := n.podCgroupFile(t, uid, f[0], f[1]); got != v {
			t.Errorf("pod cgroup %s = %q, want %q", f[1], got, v)
		}
	}
	limit := "/sys/fs/cgroup/memory/memory.limit_in_bytes"
	if n.cgroup2 {
		limit = "/sys/fs/cgroup/memory.max"
	}
	if got := strings.TrimSpace(n.exec(t, p, "c", "cat", limit)); got != strconv.Itoa(128*mi) {
		t.Errorf("container memory limit %s = %q, want %d", limit, got, 128*mi)
	}
	// kubelet's syncs (every 10 s here) keep the pod as it is and do
	// not undo the resize: kubelet compares a pod's spec with the
	// resources it actuated itself, not with the runtime's.
	n.checkUnchanged(t, "resize", n.snapshot(t, p), 25*time.Second)
	for f, v := range want {
		if got := n.podCgroupFile(t, uid, f[0], f[1]); got != v {
			t.Errorf("pod cgroup %s after kubelet's syncs = %q, want %q", f[1], got, v)
		}
	}
	// What kubelet reads into the pod's status when it next refreshes
	// the container (its relist refreshes only containers whose state
	// changed, so a standalone kubelet never shows it).
	st, err := rs.ContainerStatus(ctx, containerID(t, p, "c"), false)
	if err != nil || st.GetStatus().GetResources().GetLinux().GetMemoryLimitInBytes() != 128*mi {
		t.Errorf("container status resources = %v, %v; want the 128Mi limit", st.GetStatus().GetResources(), err)
	}
}

// podCgroupFile reads a file of the pod cgroup kubelet made for the pod
// with uid: in the v1 controller's hierarchy, or the v2 one (controller
// "").
func (n *node) podCgroupFile(t *testing.T, uid, controller, file string) string {
	t.Helper()
	for _, dir := range n.podCgroups(uid) {
		if controller != "" && !strings.HasPrefix(dir, filepath.Join("/sys/fs/cgroup", controller)+"/") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			continue
		}
		return strings.TrimSpace(string(b))
	}
	t.Fatalf("no %s in the pod cgroups of %s: %v", file, uid, n.podCgroups(uid))
	return ""
}
