//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry/registrytest"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

// TestSandboxImage: with runtime.sandbox_image set, the pod's sandbox
// process is that image's entrypoint (pulled on first use) instead of the
// built-in pause, containers still join it, and removal leaves nothing.
func TestSandboxImage(t *testing.T) {
	const ref = "registry.k8s.io/pause:e2e"
	env := framework.NewPodEnv(t, framework.WithConfig("runtime.sandbox_image", ref), framework.WithoutStart())
	pause, err := images.Busybox(images.WithEntrypoint("/bin/sleep", "2147483647"), images.WithCmd())
	if err != nil {
		t.Fatal(err)
	}
	env.Push(t, ref, pause)
	d := env.Daemon
	d.Start(t)
	// busybox shares its only layer with the pause image, so the layer is
	// there before the pod and no snapshot of the pod's own remains after.
	env.PushImage(t, "busybox")
	ctx, cancel := context.WithTimeout(context.Background(), framework.CallTimeout)
	defer cancel()
	if img, err := d.Images().ImageStatus(ctx, &runtimeapi.ImageSpec{Image: ref}, false); err != nil || img.GetImage() != nil {
		t.Fatalf("sandbox image present before any pod: %v %v", img, err)
	}
	before := d.Leaks(t)

	podCfg := framework.PodConfig("sandbox-image")
	pod := d.RunPod(t, podCfg)
	pid := infoPid(t, d.PodStatus(t, pod).GetInfo())
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " "); got != "/bin/sleep 2147483647" {
		t.Fatalf("sandbox process runs %q, want the image's entrypoint", got)
	}
	// The image was pulled on first use.
	img, err := d.Images().ImageStatus(ctx, &runtimeapi.ImageSpec{Image: ref}, false)
	if err != nil || img.GetImage() == nil {
		t.Fatalf("sandbox image not listed after the pod started: %v", err)
	}

	// A container joins the sandbox's namespaces.
	ctr := d.CreateStarted(t, pod, framework.ContainerConfig("c", "busybox", "sleep", "3600"), podCfg)
	want, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(d.ExecOK(t, ctr, "readlink", "/proc/self/ns/net")); got != want {
		t.Fatalf("the container's network namespace is %s, the sandbox's %s", got, want)
	}
	d.RemovePodAtCleanup(t, pod)
	d.CheckNoLeaks(t, before, 30*time.Second)
}

// TestSandboxImageCredentialsAndPinning: a sandbox image in a registry
// that wants credentials is pulled with runtime.sandbox_image_auth_file
// (kubelet sends none for it); it is reported pinned, and so is the image
// of a container until that container exits, so kubelet's image GC keeps
// both.
func TestSandboxImageCredentialsAndPinning(t *testing.T) {
	reg := registrytest.New(t, registrytest.WithBasicAuth("pause-user", "pause-pass"))
	ref := reg.Host() + "/private/pause:1"
	authFile := filepath.Join(t.TempDir(), "auth.json")
	auth := base64.StdEncoding.EncodeToString([]byte("pause-user:pause-pass"))
	if err := os.WriteFile(authFile, []byte(`{"auths": {"`+reg.Host()+`": {"auth": "`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := framework.NewPodEnv(t, framework.WithConfig("runtime.sandbox_image", ref),
		framework.WithConfig("runtime.sandbox_image_auth_file", authFile), framework.WithoutStart())
	d := env.Daemon
	if err := framework.WriteHosts(d.CertsDir, reg.Host(), framework.Hosts{Server: reg.URL()}); err != nil {
		t.Fatal(err)
	}
	pause, err := images.Busybox(images.WithEntrypoint("/bin/sleep", "2147483647"), images.WithCmd())
	if err != nil {
		t.Fatal(err)
	}
	hostilePushBlobs(reg, "private/pause", pause)
	hostilePushManifest(t, reg, "private/pause", "1", pause, nil)
	d.Start(t)
	env.PushImage(t, "busybox")

	podCfg := framework.PodConfig("private-sandbox")
	pod := d.RunPod(t, podCfg)
	pinned := func(name string) bool {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), framework.CallTimeout)
		defer cancel()
		st, err := d.Images().ImageStatus(ctx, &runtimeapi.ImageSpec{Image: name}, false)
		if err != nil || st.GetImage() == nil {
			t.Fatalf("ImageStatus(%s): %v %v", name, st, err)
		}
		list, err := d.Images().ListImages(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range list {
			if img.Id == st.GetImage().GetId() && img.Pinned != st.GetImage().GetPinned() {
				t.Errorf("%s: ListImages says pinned=%v, ImageStatus %v", name, img.Pinned, st.GetImage().GetPinned())
			}
		}
		return st.GetImage().GetPinned()
	}
	if !pinned(ref) {
		t.Errorf("the sandbox image is not pinned")
	}
	if pinned("busybox") {
		t.Errorf("busybox is pinned before any container uses it")
	}
	ctr := d.CreateStarted(t, pod, framework.ContainerConfig("c", "busybox", "sleep", "3600"), podCfg)
	if !pinned("busybox") {
		t.Errorf("busybox is not pinned while a container runs it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), framework.CallTimeout)
	defer cancel()
	if err := d.Runtime().StopContainer(ctx, ctr, 0); err != nil {
		t.Fatal(err)
	}
	if pinned("busybox") {
		t.Errorf("busybox is still pinned after its only container exited")
	}
	if !pinned(ref) {
		t.Errorf("the sandbox image is no longer pinned")
	}
}
