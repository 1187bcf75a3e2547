//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// TestCDIDevices: a CDI spec of our own, written after the daemon started
// (the spec directory is watched), injects a device node (the host's
// /dev/null under another path), environment variables, a bind mount and
// a createRuntime hook into containers asking for its device by
// CDI_devices or by a cdi.k8s.io/ annotation; an unknown device is a
// clear InvalidArgument.
func TestCDIDevices(t *testing.T) {
	specDir := t.TempDir()
	shared := t.TempDir()
	if err := os.WriteFile(filepath.Join(shared, "hello"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hookOut := filepath.Join(t.TempDir(), "hook")
	env, d := podEnv(t, framework.WithConfig("runtime.cdi_spec_dirs", []string{filepath.Join(t.TempDir(), "missing"), specDir}))
	_ = env
	pc := framework.PodConfig("cdi")
	pod := d.RunPod(t, pc)

	dev := "e2e.example.com/null=null0"
	cfg := func(name string) *runtimeapi.ContainerConfig {
		return framework.ContainerConfig(name, bb, "sleep", "100000")
	}
	byField := cfg("field")
	byField.CDIDevices = []*runtimeapi.CDIDevice{{Name: dev}}
	// Before the spec exists, the device is unknown.
	_, err := d.Runtime().CreateContainer(testCtx(t), pod, byField, pc)
	wantCode(t, "CreateContainer with an unknown CDI device", err, codes.InvalidArgument, dev)

	spec := fmt.Sprintf(`{
  "cdiVersion": "0.6.0",
  "kind": "e2e.example.com/null",
  "containerEdits": {"env": ["CDI_VENDOR=e2e"]},
  "devices": [{
    "name": "null0",
    "containerEdits": {
      "env": ["CDI_NULL0=yes"],
      "deviceNodes": [{"path": "/dev/e2e-null", "hostPath": "/dev/null"}],
      "mounts": [{"hostPath": %q, "containerPath": "/cdi-shared", "options": ["ro", "bind"]}],
      "hooks": [{"hookName": "createRuntime", "path": "/bin/sh", "args": ["sh", "-c", "cat > %s-$$"]}]
    }
  }]
}`, shared, hookOut)
	if err := os.WriteFile(filepath.Join(specDir, "e2e.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}

	byAnnotation := cfg("annotation")
	byAnnotation.Annotations = map[string]string{"cdi.k8s.io/e2e-plugin_dev0": dev}
	for _, c := range []*runtimeapi.ContainerConfig{byField, byAnnotation} {
		t.Run(c.Metadata.Name, func(t *testing.T) {
			var id string
			framework.Eventually(t, 10*time.Second, func() (bool, string) {
				var err error
				id, err = d.Runtime().CreateContainer(testCtx(t), pod, c, pc)
				return err == nil, fmt.Sprintf("CreateContainer: %v", err)
			})
			d.StartContainer(t, id)
			if out := d.ExecOK(t, id, "stat", "-c", "%F %t:%T", "/dev/e2e-null"); strings.TrimSpace(out) != "character special file 1:3" {
				t.Errorf("/dev/e2e-null is %q, want the character device 1:3", out)
			}
			// The device cgroup lets the container use it.
			d.ExecOK(t, id, "sh", "-c", "echo data > /dev/e2e-null && head -c 1 /dev/e2e-null")
			envOut := d.ExecOK(t, id, "env")
			for _, v := range []string{"CDI_VENDOR=e2e", "CDI_NULL0=yes"} {
				if !strings.Contains(envOut, v) {
					t.Errorf("env lacks %s:\n%s", v, envOut)
				}
			}
			if out := d.ExecOK(t, id, "cat", "/cdi-shared/hello"); out != "from the host\n" {
				t.Errorf("/cdi-shared/hello = %q", out)
			}
			if r := d.Exec(t, id, 10*time.Second, "touch", "/cdi-shared/x"); r.ExitCode == 0 {
				t.Errorf("the CDI mount is writable although the spec made it ro")
			}
			// The hook got the container's state on stdin.
			found := false
			matches, _ := filepath.Glob(hookOut + "-*")
			for _, m := range matches {
				if b, err := os.ReadFile(m); err == nil && strings.Contains(string(b), id) {
					found = true
				}
			}
			if !found {
				t.Errorf("no createRuntime hook output names container %s (files %v)", id, matches)
			}
		})
	}

	bad := cfg("bad")
	bad.CDIDevices = []*runtimeapi.CDIDevice{{Name: "e2e.example.com/null=nope"}}
	_, err = d.Runtime().CreateContainer(testCtx(t), pod, bad, pc)
	wantCode(t, "CreateContainer with a device the spec lacks", err, codes.InvalidArgument, "e2e.example.com/null=nope")
	malformed := cfg("malformed")
	malformed.CDIDevices = []*runtimeapi.CDIDevice{{Name: "gpu0"}}
	_, err = d.Runtime().CreateContainer(testCtx(t), pod, malformed, pc)
	wantCode(t, "CreateContainer with a malformed CDI name", err, codes.InvalidArgument, "gpu0")
}
