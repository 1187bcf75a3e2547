//go:build e2e

package framework

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// EnvInstalled says that a daemon installed by `make install` runs as the
// systemd unit cri-runtimed.service with its default config; the guest
// suite sets it. Tests of the unit skip without it: they restart a
// system service.
const EnvInstalled = "CRI_RUNTIMED_E2E_INSTALLED"

// Unit is the installed daemon's systemd unit.
const Unit = "cri-runtimed.service"

// NewInstalledEnv connects to the installed daemon (skipping the test
// unless EnvInstalled is set) and points its docker.io and
// registry.k8s.io at a local registry (new, or EnvRegistry's) through hosts.toml files in the
// daemon's certs.d, removed when the test ends, as are the test's pods.
func NewInstalledEnv(t testing.TB) *Env {
	t.Helper()
	RequireRoot(t)
	if os.Getenv(EnvInstalled) == "" {
		t.Skipf("needs the daemon installed as %s (%s=1; the guest suite runs it)", Unit, EnvInstalled)
	}
	d := &Daemon{
		Dir:        "/",
		ConfigPath: "/etc/cri-runtimed/config.toml",
		Root:       "/var/lib/cri-runtimed",
		State:      "/run/cri-runtimed",
		Socket:     "/run/cri-runtimed/cri-runtimed.sock",
		CertsDir:   "/etc/cri-runtimed/certs.d",
		// The process is systemd's, never "exited" to the test: a nil
		// channel reads as exited, and the cleanups of RunPod and
		// CreateContainer then skipped their removals and left the
		// test's pod running under the unit.
		exited: make(chan struct{}),
	}
	d.Endpoint = "unix://" + d.Socket
	reg := testRegistry(t)
	for _, r := range MirroredRegistries {
		dir := filepath.Join(d.CertsDir, r)
		if _, err := os.Stat(dir); err == nil {
			t.Fatalf("%s exists: this test will not overwrite an operator's registry config", dir)
		}
		if err := WriteHosts(d.CertsDir, r, Hosts{Server: reg.URL}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	d.Reconnect(t)
	t.Cleanup(d.disconnect)
	return &Env{Registry: reg, Daemon: d}
}

// Reconnect waits until the installed daemon serves (after systemd
// started or restarted it) and connects new clients.
func (d *Daemon) Reconnect(t testing.TB) {
	t.Helper()
	d.disconnect()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	for {
		err := d.tryVersion(ctx)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s does not serve on %s: %v\n%s", Unit, d.Socket, err, UnitStatus())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := d.connect(ctx); err != nil {
		t.Fatalf("connect to %s: %v", Unit, err)
	}
}

// Systemctl runs systemctl with args and fails the test if it fails.
func Systemctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("systemctl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemctl %s: %v: %s\n%s", strings.Join(args, " "), err, out, UnitStatus())
	}
	return strings.TrimSpace(string(out))
}

// UnitStatus is `systemctl status` of the unit, for failure messages.
func UnitStatus() string {
	out, _ := exec.Command("systemctl", "status", "--no-pager", "-l", Unit).CombinedOutput()
	return string(out)
}

// UnitMainPid is the pid of the unit's main process (0 when stopped).
func UnitMainPid(t testing.TB) int {
	t.Helper()
	pid, err := strconv.Atoi(Systemctl(t, "show", "-p", "MainPID", "--value", Unit))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// ProcessCgroup is the unified-hierarchy cgroup of pid ("0::/..." in
// /proc/<pid>/cgroup), "" if it has none or is gone.
func ProcessCgroup(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	return ""
}
