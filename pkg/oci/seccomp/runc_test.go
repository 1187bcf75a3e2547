package seccomp

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestRuntimeDefaultUnderRunc proves runc (and the libseccomp it links)
// loads the embedded profile: busybox runs, and creating a user namespace
// fails with EPERM. Needs root, runc and a static busybox.
func TestRuntimeDefaultUnderRunc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	// make deps installs both: their absence is a broken setup, not a
	// reason to test less.
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatal("runc not installed (make deps)")
	}
	busybox := "/bin/busybox"
	if out, err := exec.Command("file", "-L", busybox).Output(); err != nil || !strings.Contains(string(out), "statically linked") {
		t.Fatalf("no static busybox at %s (Debian busybox-static, make deps): %s %v", busybox, out, err)
	}

	profile, err := RuntimeDefault(defaultCaps)
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()

	run := func(t *testing.T, sc *specs.LinuxSeccomp, args ...string) (string, error) {
		t.Helper()
		bundle := t.TempDir()
		rootfs := filepath.Join(bundle, "rootfs")
		for _, d := range []string{"bin", "proc", "dev", "tmp"} {
			if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		copyFile(t, busybox, filepath.Join(rootfs, "bin", "busybox"))
		id := fmt.Sprintf("cri-runtimed-seccomp-%d-%d", os.Getpid(), time.Now().UnixNano())
		spec := &specs.Spec{
			Version: specs.Version,
			Root:    &specs.Root{Path: "rootfs", Readonly: true},
			Process: &specs.Process{
				Args: append([]string{"/bin/busybox"}, args...),
				Env:  []string{"PATH=/bin"},
				Cwd:  "/",
				Capabilities: &specs.LinuxCapabilities{
					Bounding: defaultCaps, Effective: defaultCaps, Permitted: defaultCaps,
				},
				NoNewPrivileges: true,
			},
			Mounts: []specs.Mount{
				{Destination: "/proc", Type: "proc", Source: "proc"},
				{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755"}},
			},
			Linux: &specs.Linux{
				Namespaces: []specs.LinuxNamespace{
					{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
					{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace},
				},
				CgroupsPath: "/" + id,
				Seccomp:     sc,
			},
		}
		data, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = exec.Command(runc, "--root", state, "delete", "--force", id).Run() })
		cmd := exec.Command(runc, "--root", state, "run", "--bundle", bundle, id)
		cmd.Stdin = nil
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	if out, err := run(t, profile, "true"); err != nil {
		t.Fatalf("busybox true under RuntimeDefault: %v\n%s", err, out)
	}
	if out, err := run(t, profile, "sh", "-c", "echo ok > /dev/x && cat /dev/x && busybox ps >/dev/null"); err != nil || !strings.Contains(out, "ok") {
		t.Fatalf("shell under RuntimeDefault: %v\n%s", err, out)
	}
	out, err := run(t, profile, "unshare", "-U", "true")
	if err == nil {
		t.Fatalf("busybox unshare -U succeeded under RuntimeDefault:\n%s", out)
	}
	if !strings.Contains(out, "Operation not permitted") {
		t.Fatalf("busybox unshare -U: %v, want EPERM:\n%s", err, out)
	}
	// The control: without the filter the same command works, which shows
	// the EPERM above came from the profile. Only a node that forbids user
	// namespaces altogether cannot run it.
	if out, err := run(t, nil, "unshare", "-U", "true"); err != nil {
		if b, rerr := os.ReadFile("/proc/sys/user/max_user_namespaces"); rerr == nil && strings.TrimSpace(string(b)) == "0" {
			t.Skipf("user namespaces are disabled on this node (user.max_user_namespaces=0): the EPERM above proves nothing about the profile")
		}
		t.Fatalf("control without seccomp failed too, so the EPERM above may not come from the profile: %v\n%s", err, out)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
