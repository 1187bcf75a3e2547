//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

// kubeletMaskedPaths and kubeletReadonlyPaths are the lists kubelet sends
// for the Default proc mount type (k8s.io/kubernetes/pkg/securitycontext).
var (
	kubeletMaskedPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/proc/scsi", "/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
	kubeletReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// secCtx returns the container security context of cfg, creating it.
func secCtx(cfg *runtimeapi.ContainerConfig) *runtimeapi.LinuxContainerSecurityContext {
	if cfg.Linux == nil {
		cfg.Linux = &runtimeapi.LinuxContainerConfig{}
	}
	if cfg.Linux.SecurityContext == nil {
		cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{}
	}
	return cfg.Linux.SecurityContext
}

// privilegedPod is a pod config kubelet sends when one of its containers
// is privileged.
func privilegedPod(name string) *runtimeapi.PodSandboxConfig {
	return framework.PodConfig(name, func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext.Privileged = true
	})
}

// runOnce runs `sh -c script` (stderr folded into stdout) in a new pod
// until it exits and returns the exit code and output.
func runOnce(t *testing.T, d *framework.Daemon, pc *runtimeapi.PodSandboxConfig, script string, mod func(*runtimeapi.ContainerConfig)) (int32, string) {
	t.Helper()
	cfg := framework.Shell("c", bb, "exec 2>&1; "+script)
	if mod != nil {
		mod(cfg)
	}
	st, out := runToExit(t, d, pc, cfg)
	if st.Reason != "Completed" && st.Reason != "Error" {
		t.Fatalf("container ended with reason %q (%s), exit code %d, output %q", st.Reason, st.Message, st.ExitCode, out)
	}
	return st.ExitCode, out
}

// statusField returns the value of "Name:" in /proc/<pid>/status text.
func statusField(status, name string) string {
	for _, l := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// capMask is the /proc/<pid>/status hex form of a capability set.
func capMask(bits ...uint) string {
	var m uint64
	for _, b := range bits {
		m |= 1 << b
	}
	return fmt.Sprintf("%016x", m)
}

// Capability numbers (linux/capability.h).
const (
	capNetBindService = 10
	capNetRaw         = 13
	capSysAdmin       = 21
)

// TestCapabilities checks the capability sets the security context
// produces, by what the kernel reports and by what a process can do.
func TestCapabilities(t *testing.T) {
	_, d := podEnv(t)
	i64 := func(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }
	// Prints the capability lines of the container's process, then the
	// outcome of opening a raw ICMP socket.
	const script = `grep -E '^Cap(Eff|Bnd|Amb|Prm):' /proc/self/status; ping -c1 -W2 127.0.0.1 >/tmp/ping 2>&1; echo "ping=$?"; cat /tmp/ping`
	for _, tc := range []struct {
		name     string
		caps     *runtimeapi.Capability
		user     *runtimeapi.Int64Value
		pingOK   bool
		eff, amb string // "" = not checked
	}{
		{name: "default set has NET_RAW", pingOK: true},
		{name: "drop NET_RAW", caps: &runtimeapi.Capability{DropCapabilities: []string{"NET_RAW"}}, pingOK: false},
		{name: "drop ALL", caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}, pingOK: false, eff: capMask(), amb: capMask()},
		{name: "drop ALL add NET_RAW", caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_RAW"}},
			pingOK: true, eff: capMask(capNetRaw), amb: capMask()},
		{name: "drop ALL add CAP_NET_RAW lower case", caps: &runtimeapi.Capability{DropCapabilities: []string{"all"}, AddCapabilities: []string{"cap_net_raw"}},
			pingOK: true, eff: capMask(capNetRaw)},
		{name: "ambient for a non-root user", user: i64(images.UserUID),
			caps: &runtimeapi.Capability{
				DropCapabilities:       []string{"ALL"},
				AddCapabilities:        []string{"NET_BIND_SERVICE"},
				AddAmbientCapabilities: []string{"NET_BIND_SERVICE"},
			},
			pingOK: false, eff: capMask(capNetBindService), amb: capMask(capNetBindService)},
		{name: "non-root user without ambient has none", user: i64(images.UserUID),
			caps:   &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}},
			pingOK: false, eff: capMask(), amb: capMask()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runOnce(t, d, framework.PodConfig("caps"), script, func(c *runtimeapi.ContainerConfig) {
				sc := secCtx(c)
				sc.Capabilities = tc.caps
				sc.RunAsUser = tc.user
			})
			if code != 0 {
				t.Fatalf("exit code %d, output:\n%s", code, out)
			}
			if tc.eff != "" {
				if got := statusField(out, "CapEff"); got != tc.eff {
					t.Errorf("CapEff = %s, want %s\n%s", got, tc.eff, out)
				}
				if tc.user == nil {
					if got := statusField(out, "CapBnd"); got != tc.eff {
						t.Errorf("CapBnd = %s, want %s\n%s", got, tc.eff, out)
					}
				}
			}
			if tc.amb != "" {
				if got := statusField(out, "CapAmb"); got != tc.amb {
					t.Errorf("CapAmb = %s, want %s\n%s", got, tc.amb, out)
				}
			}
			pingOK := strings.Contains(out, "ping=0")
			if pingOK != tc.pingOK {
				t.Errorf("ping (raw socket) succeeded = %v, want %v; output:\n%s", pingOK, tc.pingOK, out)
			}
			if !tc.pingOK && !strings.Contains(strings.ToLower(out), "permission denied") && !strings.Contains(out, "not permitted") {
				t.Errorf("ping failed for another reason than a permission error:\n%s", out)
			}
		})
	}

	t.Run("unknown capability", func(t *testing.T) {
		pc := framework.PodConfig("badcap")
		pod := d.RunPod(t, pc)
		for _, tc := range []struct {
			name  string
			caps  *runtimeapi.Capability
			parts []string
		}{
			{"add", &runtimeapi.Capability{AddCapabilities: []string{"NET_ADMIN", "CAP_BOGUS"}}, []string{"BOGUS", "add_capabilities[1]"}},
			{"drop", &runtimeapi.Capability{DropCapabilities: []string{"NO_SUCH_CAP"}}, []string{"NO_SUCH_CAP", "drop_capabilities"}},
			{"ambient", &runtimeapi.Capability{AddAmbientCapabilities: []string{"FLY"}}, []string{"FLY", "add_ambient_capabilities"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := sleeper("c")
				secCtx(cfg).Capabilities = tc.caps
				_, err := d.RuntimeClient().CreateContainer(testCtx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: pc})
				wantCode(t, "CreateContainer", err, codes.InvalidArgument, tc.parts...)
			})
		}
		if list, err := d.Runtime().ListContainers(testCtx(t), &runtimeapi.ContainerFilter{PodSandboxId: pod}); err != nil || len(list) != 0 {
			t.Errorf("containers after refused creations: %v, %v; want none", list, err)
		}
	})
}

// TestPrivileged compares what a privileged and an unprivileged container
// see of the host: device nodes, a writable /sys, masked paths.
func TestPrivileged(t *testing.T) {
	_, d := podEnv(t)
	hostDevs, err := os.ReadDir("/dev")
	if err != nil {
		t.Fatal(err)
	}
	// A block device of the host, to look for inside.
	hostBlock := ""
	for _, e := range hostDevs {
		if fi, err := os.Stat(filepath.Join("/dev", e.Name())); err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0 {
			hostBlock = "/dev/" + e.Name()
			break
		}
	}
	if hostBlock == "" {
		t.Fatal("the host has no block device in /dev to look for")
	}
	script := fmt.Sprintf(`echo "devs=$(ls /dev | wc -l)"; test -b %s && echo block=yes || echo block=no; echo "sys=$(grep -E '^[^ ]+ /sys sysfs' /proc/mounts | cut -d' ' -f4 | cut -d, -f1)"; echo "timerlist=$(cat /proc/timer_list | wc -c)"`, hostBlock)
	for _, tc := range []struct {
		name       string
		privileged bool
	}{
		{"privileged", true},
		{"unprivileged", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := framework.PodConfig("priv")
			if tc.privileged {
				pc = privilegedPod("priv")
			}
			code, out := runOnce(t, d, pc, script, func(c *runtimeapi.ContainerConfig) {
				sc := secCtx(c)
				sc.Privileged = tc.privileged
				// kubelet sends the default lists whatever the mode;
				// privileged must win over them.
				sc.MaskedPaths, sc.ReadonlyPaths = kubeletMaskedPaths, kubeletReadonlyPaths
			})
			if code != 0 {
				t.Fatalf("exit code %d, output:\n%s", code, out)
			}
			vals := keyValues(out)
			devs, _ := strconv.Atoi(vals["devs"])
			if tc.privileged {
				if devs < len(hostDevs)-5 || vals["block"] != "yes" {
					t.Errorf("privileged container sees %d /dev entries (host: %d), %s present: %s; want the host's devices", devs, len(hostDevs), hostBlock, vals["block"])
				}
				if vals["sys"] != "rw" {
					t.Errorf("privileged container's /sys is mounted %q, want rw", vals["sys"])
				}
				if vals["timerlist"] == "0" {
					t.Errorf("privileged container has /proc/timer_list masked")
				}
			} else {
				if devs > 25 || vals["block"] != "no" {
					t.Errorf("unprivileged container sees %d /dev entries, %s present: %s; want only the default devices", devs, hostBlock, vals["block"])
				}
				if vals["sys"] != "ro" {
					t.Errorf("unprivileged container's /sys is mounted %q, want ro", vals["sys"])
				}
			}
		})
	}

	t.Run("privileged container in an unprivileged pod", func(t *testing.T) {
		pc := framework.PodConfig("notpriv")
		pod := d.RunPod(t, pc)
		cfg := sleeper("c")
		secCtx(cfg).Privileged = true
		_, err := d.RuntimeClient().CreateContainer(testCtx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: pc})
		wantCode(t, "CreateContainer", err, codes.InvalidArgument, "privileged")
	})
}

// keyValues parses the "key=value" lines of out.
func keyValues(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			m[k] = v
		}
	}
	return m
}

// TestReadonlyRootfsAndNoNewPrivs: a read-only root refuses writes while
// volumes stay writable; no_new_privs reaches the kernel.
func TestReadonlyRootfsAndNoNewPrivs(t *testing.T) {
	_, d := podEnv(t)
	t.Run("readonly rootfs", func(t *testing.T) {
		vol := t.TempDir()
		code, out := runOnce(t, d, framework.PodConfig("ro"),
			`touch /x; echo "root=$?"; touch /tmp/x; echo "tmp=$?"; echo hello > /data/out; echo "vol=$?"`,
			func(c *runtimeapi.ContainerConfig) {
				secCtx(c).ReadonlyRootfs = true
				c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: vol}}
			})
		if code != 0 {
			t.Fatalf("exit code %d, output:\n%s", code, out)
		}
		vals := keyValues(out)
		if vals["root"] == "0" || vals["tmp"] == "0" || !strings.Contains(out, "Read-only file system") {
			t.Errorf("writes to a read-only rootfs: / exit %s, /tmp exit %s; want both to fail with EROFS; output:\n%s", vals["root"], vals["tmp"], out)
		}
		if vals["vol"] != "0" {
			t.Errorf("write to a volume of a read-only rootfs container failed:\n%s", out)
		}
		if b, err := os.ReadFile(filepath.Join(vol, "out")); err != nil || string(b) != "hello\n" {
			t.Errorf("volume file on the host: %q, %v; want \"hello\\n\"", b, err)
		}
	})
	t.Run("writable rootfs", func(t *testing.T) {
		code, out := runOnce(t, d, framework.PodConfig("rw"), `touch /x`, nil)
		if code != 0 {
			t.Errorf("touch /x in a writable rootfs: exit %d: %s", code, out)
		}
	})
	for _, nnp := range []bool{true, false} {
		t.Run(fmt.Sprintf("no_new_privs=%v", nnp), func(t *testing.T) {
			code, out := runOnce(t, d, framework.PodConfig("nnp"), `cat /proc/self/status`, func(c *runtimeapi.ContainerConfig) {
				secCtx(c).NoNewPrivs = nnp
			})
			if code != 0 {
				t.Fatalf("exit code %d: %s", code, out)
			}
			want := "0"
			if nnp {
				want = "1"
			}
			if got := statusField(out, "NoNewPrivs"); got != want {
				t.Errorf("NoNewPrivs = %q, want %s", got, want)
			}
		})
	}
}

// TestMaskedPaths checks /proc and /sys masking for the proc mount types
// kubelet sends. /proc/kcore does not exist on every kernel (this VM's has
// no CONFIG_PROC_KCORE), so /proc/timer_list (a file, masked by /dev/null)
// and /sys/firmware (a directory, masked by an empty tmpfs) are checked.
func TestMaskedPaths(t *testing.T) {
	_, d := podEnv(t)
	for _, p := range []string{"/proc/timer_list", "/sys/firmware"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("host has no %s: %v", p, err)
		}
	}
	const script = `echo "timerlist=$(cat /proc/timer_list | wc -c)"; echo "firmware=$(ls /sys/firmware | wc -l)"; echo "procsys=$(grep -E '^[^ ]+ /proc/sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1)"`
	for _, tc := range []struct {
		name   string
		mod    func(*runtimeapi.ContainerConfig)
		masked bool
	}{
		{"default proc mount (kubelet's lists)", func(c *runtimeapi.ContainerConfig) {
			sc := secCtx(c)
			sc.MaskedPaths, sc.ReadonlyPaths = kubeletMaskedPaths, kubeletReadonlyPaths
		}, true},
		{"no security context (runtime defaults)", func(c *runtimeapi.ContainerConfig) { c.Linux.SecurityContext = nil }, true},
		{"unmasked proc mount (empty lists)", func(c *runtimeapi.ContainerConfig) {
			sc := secCtx(c)
			sc.MaskedPaths, sc.ReadonlyPaths = []string{}, []string{}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runOnce(t, d, framework.PodConfig("mask"), script, tc.mod)
			if code != 0 {
				t.Fatalf("exit code %d: %s", code, out)
			}
			vals := keyValues(out)
			if tc.masked {
				if vals["timerlist"] != "0" || vals["firmware"] != "0" {
					t.Errorf("masked: /proc/timer_list has %s bytes, /sys/firmware %s entries; want both empty", vals["timerlist"], vals["firmware"])
				}
				if vals["procsys"] != "ro" {
					t.Errorf("/proc/sys is mounted %q, want a read-only bind", vals["procsys"])
				}
			} else {
				if vals["timerlist"] == "0" || vals["firmware"] == "0" {
					t.Errorf("unmasked: /proc/timer_list has %s bytes, /sys/firmware %s entries; want the host's content", vals["timerlist"], vals["firmware"])
				}
				if vals["procsys"] != "" {
					t.Errorf("unmasked: /proc/sys is a separate %q mount, want none", vals["procsys"])
				}
			}
		})
	}
}

// TestSeccomp checks the seccomp profile choices: RuntimeDefault forbids
// creating namespaces (unshare -U), Unconfined does not, a Localhost
// profile is applied, and a missing one is refused.
func TestSeccomp(t *testing.T) {
	_, d := podEnv(t)
	dir := t.TempDir()
	blockMkdir := filepath.Join(dir, "no-mkdir.json")
	if err := os.WriteFile(blockMkdir, []byte(`{
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
}`), 0o644); err != nil {
		t.Fatal(err)
	}
	profile := func(p runtimeapi.SecurityProfile_ProfileType, ref string) *runtimeapi.SecurityProfile {
		return &runtimeapi.SecurityProfile{ProfileType: p, LocalhostRef: ref}
	}
	const script = `unshare -U true; echo "unshare=$?"; mkdir /tmp/x; echo "mkdir=$?"`
	for _, tc := range []struct {
		name            string
		pod, ctr        *runtimeapi.SecurityProfile
		legacy          string
		addCaps         []string
		unshare, mkdirs bool
	}{
		{name: "RuntimeDefault", ctr: profile(runtimeapi.SecurityProfile_RuntimeDefault, ""), unshare: false, mkdirs: true},
		{name: "RuntimeDefault from the pod", pod: profile(runtimeapi.SecurityProfile_RuntimeDefault, ""), unshare: false, mkdirs: true},
		{name: "legacy runtime/default", legacy: "runtime/default", unshare: false, mkdirs: true},
		{name: "RuntimeDefault with SYS_ADMIN", ctr: profile(runtimeapi.SecurityProfile_RuntimeDefault, ""), addCaps: []string{"SYS_ADMIN"}, unshare: true, mkdirs: true},
		{name: "Unconfined", ctr: profile(runtimeapi.SecurityProfile_Unconfined, ""), unshare: true, mkdirs: true},
		{name: "container Unconfined over pod RuntimeDefault", pod: profile(runtimeapi.SecurityProfile_RuntimeDefault, ""),
			ctr: profile(runtimeapi.SecurityProfile_Unconfined, ""), unshare: true, mkdirs: true},
		{name: "Localhost", ctr: profile(runtimeapi.SecurityProfile_Localhost, blockMkdir), unshare: true, mkdirs: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := framework.PodConfig("seccomp")
			pc.Linux.SecurityContext.Seccomp = tc.pod
			code, out := runOnce(t, d, pc, script, func(c *runtimeapi.ContainerConfig) {
				sc := secCtx(c)
				sc.Seccomp = tc.ctr
				//lint:ignore SA1019 the deprecated field is the legacy path this case checks
				sc.SeccompProfilePath = tc.legacy
				sc.Capabilities = &runtimeapi.Capability{AddCapabilities: tc.addCaps}
			})
			if code != 0 {
				t.Fatalf("exit code %d: %s", code, out)
			}
			vals := keyValues(out)
			if got := vals["unshare"] == "0"; got != tc.unshare {
				t.Errorf("unshare -U succeeded = %v, want %v; output:\n%s", got, tc.unshare, out)
			}
			if got := vals["mkdir"] == "0"; got != tc.mkdirs {
				t.Errorf("mkdir succeeded = %v, want %v; output:\n%s", got, tc.mkdirs, out)
			}
			if (!tc.unshare || !tc.mkdirs) && !strings.Contains(out, "Operation not permitted") {
				t.Errorf("a blocked call did not fail with EPERM:\n%s", out)
			}
		})
	}

	t.Run("bad Localhost profiles", func(t *testing.T) {
		pc := framework.PodConfig("badseccomp")
		pod := d.RunPod(t, pc)
		missing := filepath.Join(dir, "missing.json")
		broken := filepath.Join(dir, "broken.json")
		if err := os.WriteFile(broken, []byte(`{"defaultAction": "SCMP_ACT_EXPLODE"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name  string
			p     *runtimeapi.SecurityProfile
			parts []string
		}{
			{"missing file", profile(runtimeapi.SecurityProfile_Localhost, missing), []string{missing, "seccomp"}},
			{"relative path", profile(runtimeapi.SecurityProfile_Localhost, "profiles/x.json"), []string{"profiles/x.json", "localhost_ref"}},
			{"empty ref", profile(runtimeapi.SecurityProfile_Localhost, ""), []string{"localhost_ref"}},
			{"invalid profile", profile(runtimeapi.SecurityProfile_Localhost, broken), []string{broken}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := sleeper("c")
				secCtx(cfg).Seccomp = tc.p
				_, err := d.RuntimeClient().CreateContainer(testCtx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: pc})
				wantCode(t, "CreateContainer", err, codes.InvalidArgument, tc.parts...)
			})
		}
	})
}

// TestSysctls: namespaced sysctls of the pod are set in its namespaces
// (and not on the host); others are refused.
func TestSysctls(t *testing.T) {
	_, d := podEnv(t)
	hostShm, err := os.ReadFile("/proc/sys/kernel/shm_rmid_forced")
	if err != nil {
		t.Fatal(err)
	}
	hostPort, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		t.Fatal(err)
	}
	pc := framework.PodConfig("sysctl")
	pc.Linux.Sysctls = map[string]string{
		"net.ipv4.ip_unprivileged_port_start": "0",
		"kernel.shm_rmid_forced":              "1",
		"net/ipv4/ping_group_range":           "0 2147483647", // kubelet's slash form
	}
	pod := d.RunPod(t, pc)
	id := d.CreateStarted(t, pod, sleeper("c"), pc)
	for file, want := range map[string]string{
		"/proc/sys/net/ipv4/ip_unprivileged_port_start": "0",
		"/proc/sys/kernel/shm_rmid_forced":              "1",
		"/proc/sys/net/ipv4/ping_group_range":           "0\t2147483647",
	} {
		if got := strings.TrimSpace(d.ExecOK(t, id, "cat", file)); got != want {
			t.Errorf("%s in the pod = %q, want %q", file, got, want)
		}
	}
	if b, _ := os.ReadFile("/proc/sys/kernel/shm_rmid_forced"); string(b) != string(hostShm) {
		t.Errorf("host kernel.shm_rmid_forced changed: %q, was %q", b, hostShm)
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); string(b) != string(hostPort) {
		t.Errorf("host net.ipv4.ip_unprivileged_port_start changed: %q, was %q", b, hostPort)
	}

	for _, tc := range []struct {
		name    string
		sysctls map[string]string
		hostNet bool
		parts   []string
	}{
		{"not namespaced", map[string]string{"vm.swappiness": "10"}, false, []string{"vm.swappiness"}},
		{"not namespaced kernel", map[string]string{"kernel.panic": "1"}, false, []string{"kernel.panic"}},
		{"net on a host-network pod", map[string]string{"net.ipv4.ip_forward": "1"}, true, []string{"net.ipv4.ip_forward"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := framework.PodConfig("badsysctl")
			t.Cleanup(func() { os.RemoveAll(pc.LogDirectory) })
			pc.Linux.Sysctls = tc.sysctls
			if tc.hostNet {
				pc.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
			}
			_, err := d.RuntimeClient().RunPodSandbox(testCtx(t), &runtimeapi.RunPodSandboxRequest{Config: pc})
			wantCode(t, "RunPodSandbox", err, codes.InvalidArgument, tc.parts...)
		})
	}
	list, err := d.Runtime().ListPodSandbox(testCtx(t), nil)
	if err != nil || len(list) != 1 {
		t.Errorf("pods after refused sysctls: %d, %v; want only the valid one", len(list), err)
	}
}
