//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// TestRuntimeFeatures: Status advertises what the runtime does, and each
// advertised feature works: mount_options on bind mounts, user-namespace
// pods on the host network; the verbose info documents the features.
func TestRuntimeFeatures(t *testing.T) {
	_, d := podEnv(t)
	parityTraversable(t, d.State)
	h, resp := parityHandler(t, d)
	f := resp.GetFeatures()
	if !f.GetMountOptions() || !f.GetUserNamespacesHostNetwork() || !f.GetSupplementalGroupsPolicy() {
		t.Errorf("runtime features %v, want mount_options, user_namespaces_host_network and supplemental_groups_policy", f)
	}
	if !h.GetFeatures().GetUserNamespaces() || !h.GetFeatures().GetRecursiveReadOnlyMounts() {
		t.Errorf("default handler features %v, want user namespaces and recursive read-only mounts (kernel 6, runc with rro)", h.GetFeatures())
	}
	verbose, err := d.Runtime().Status(testCtx(t), true)
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(verbose.GetInfo()["supportedFeatures"]), &info); err != nil {
		t.Fatalf("verbose info features %q: %v", verbose.GetInfo()["supportedFeatures"], err)
	}
	for _, k := range []string{"mountOptions", "userNamespacesHostNetwork", "imageVolumes", "imageVolumeArtifacts", "containerStopSignals", "eventedPLEG"} {
		if info[k] != true {
			t.Errorf("verbose info features[%s] = %v, want true: %v", k, info[k], info)
		}
	}

	t.Run("mount_options", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(dir+"/prog", []byte("#!/bin/sh\necho ran\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		pc := framework.PodConfig("mountopts")
		pod := d.RunPod(t, pc)
		cfg := sleeper("c")
		cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/opts", HostPath: dir, MountOptions: []string{"noexec", "nodev", "nosuid"}}}
		id := d.CreateStarted(t, pod, cfg, pc)
		opts := mountOptions(t, d, id, "/opts")
		for _, o := range []string{"noexec", "nodev", "nosuid", "rw"} {
			if !slices.Contains(opts, o) {
				t.Errorf("/opts options %v lack %s", opts, o)
			}
		}
		if r := d.Exec(t, id, 10*time.Second, "/opts/prog"); r.ExitCode == 0 {
			t.Errorf("a program on a noexec mount ran: %q", r.Stdout)
		}
	})

	t.Run("user namespace on the host network", func(t *testing.T) {
		hostIfaces, err := os.ReadDir("/sys/class/net")
		if err != nil {
			t.Fatal(err)
		}
		mapping := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1000, Length: 100000}}
		pc := framework.PodConfig("userns-hostnet", framework.WithPodNamespaces(runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_POD),
			func(c *runtimeapi.PodSandboxConfig) {
				c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: mapping, Gids: mapping}
			})
		pod := d.RunPod(t, pc)
		id := d.CreateStarted(t, pod, sleeper("c"), pc)
		if got := strings.Fields(d.ExecOK(t, id, "cat", "/proc/self/uid_map")); !slices.Equal(got, []string{"0", "1000", "100000"}) {
			t.Errorf("uid_map %v, want 0 1000 100000", got)
		}
		// The host's interfaces, seen through the host's /sys.
		ifaces := strings.Fields(d.ExecOK(t, id, "ls", "/sys/class/net"))
		for _, i := range hostIfaces {
			if !slices.Contains(ifaces, i.Name()) && !strings.HasPrefix(i.Name(), "veth") {
				t.Errorf("interface %s of the host not seen in the container (%v)", i.Name(), ifaces)
			}
		}
		// Root of the pod is nobody on the host's network.
		if r := d.Exec(t, id, 10*time.Second, "ip", "link", "add", "e2edummy0", "type", "dummy"); r.ExitCode == 0 {
			t.Errorf("the user namespace's root created a link in the host's network namespace")
		}
		if r := d.Exec(t, id, 10*time.Second, "touch", "/sys/x"); r.ExitCode == 0 {
			t.Errorf("/sys is writable")
		}
		// The host's pid namespace stays refused.
		bad := framework.PodConfig("userns-hostpid", framework.WithPodNamespaces(runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_POD),
			func(c *runtimeapi.PodSandboxConfig) {
				c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: mapping, Gids: mapping}
			})
		_, err = d.Runtime().RunPodSandbox(testCtx(t), bad, "")
		wantCode(t, "RunPodSandbox with a user namespace and the host's pid namespace", err, codes.InvalidArgument, "pid")
	})
}
