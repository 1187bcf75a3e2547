package oci

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func hasRule(s *specs.LinuxSeccomp, name string) bool {
	return slices.ContainsFunc(s.Syscalls, func(r specs.LinuxSyscall) bool {
		return slices.Contains(r.Names, name) && r.Action == specs.ActAllow
	})
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const ociProfile = `{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
	"syscalls":[{"names":["read","write","exit_group"],"action":"SCMP_ACT_ALLOW"}]}`

const dockerProfile = `{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
	"archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86","SCMP_ARCH_X32"]},
		{"architecture":"SCMP_ARCH_AARCH64","subArchitectures":["SCMP_ARCH_ARM"]}],
	"syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[],"comment":"","includes":{},"excludes":{}},
		{"name":"mount","action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}}]}`

func TestContainerSeccomp(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.json", ociProfile)
	docker := writeFile(t, dir, "docker.json", dockerProfile)
	broken := writeFile(t, dir, "broken.json", `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [`)
	badAction := writeFile(t, dir, "bad-action.json", `{"defaultAction": "SCMP_ACT_NOPE"}`)
	missing := filepath.Join(dir, "missing.json")

	rd := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	unconf := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
	local := func(p string) *runtimeapi.SecurityProfile {
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: p}
	}
	tests := []struct {
		name       string
		ctr        *runtimeapi.SecurityProfile
		ctrPath    string
		pod        *runtimeapi.SecurityProfile
		podPath    string
		caps       *runtimeapi.Capability
		privileged bool
		// want: "none", "default", "good" (ociProfile) or "docker".
		want    string
		check   func(t *testing.T, s *specs.LinuxSeccomp)
		wantErr []string // substrings of the error, the first being the field
	}{
		{name: "unset is unconfined", want: "none"},
		{name: "runtime default", ctr: rd, want: "default"},
		{name: "unconfined", ctr: unconf, want: "none"},
		{name: "legacy runtime/default", ctrPath: "runtime/default", want: "default"},
		{name: "legacy docker/default", ctrPath: "docker/default", want: "default"},
		{name: "legacy unconfined", ctrPath: "unconfined", want: "none"},
		{name: "legacy localhost", ctrPath: "localhost/" + good, want: "good"},
		{name: "legacy garbage", ctrPath: "strict", wantErr: []string{"linux.security_context.seccomp_profile_path", "strict"}},
		{name: "field wins over legacy string", ctr: unconf, ctrPath: "runtime/default", want: "none"},
		{name: "pod default applies", pod: rd, want: "default"},
		{name: "pod legacy default applies", podPath: "runtime/default", want: "default"},
		{name: "container overrides pod", ctr: unconf, pod: rd, want: "none"},
		{name: "pod localhost missing", pod: local(missing), wantErr: []string{"sandbox_config.linux.security_context.seccomp.localhost_ref", missing}},
		{name: "localhost oci", ctr: local(good), want: "good"},
		{name: "localhost docker format", ctr: local(docker), want: "docker", check: func(t *testing.T, s *specs.LinuxSeccomp) {
			if hasRule(s, "mount") {
				t.Error("mount allowed without CAP_SYS_ADMIN")
			}
		}},
		{name: "localhost docker format with sys_admin", ctr: local(docker), caps: &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}, want: "docker",
			check: func(t *testing.T, s *specs.LinuxSeccomp) {
				if !hasRule(s, "mount") {
					t.Error("mount not allowed with CAP_SYS_ADMIN")
				}
			}},
		{name: "localhost missing", ctr: local(missing), wantErr: []string{"linux.security_context.seccomp.localhost_ref", missing, "does not exist"}},
		{name: "localhost invalid json", ctr: local(broken), wantErr: []string{"linux.security_context.seccomp.localhost_ref", broken}},
		{name: "localhost invalid action", ctr: local(badAction), wantErr: []string{"linux.security_context.seccomp.localhost_ref", "SCMP_ACT_NOPE"}},
		{name: "localhost directory", ctr: local(dir), wantErr: []string{"linux.security_context.seccomp.localhost_ref", "not a regular file"}},
		{name: "localhost relative", ctr: local("profiles/good.json"), wantErr: []string{"linux.security_context.seccomp.localhost_ref", "not absolute"}},
		{name: "localhost empty ref", ctr: local(""), wantErr: []string{"linux.security_context.seccomp.localhost_ref", "empty"}},
		{name: "unknown profile type", ctr: &runtimeapi.SecurityProfile{ProfileType: 9}, wantErr: []string{"linux.security_context.seccomp.profile_type"}},
		{name: "privileged is unconfined", ctr: rd, privileged: true, want: "none"},
		{name: "privileged ignores a broken profile", ctr: local(missing), privileged: true, want: "none"},
		{name: "default follows added capabilities", ctr: rd, caps: &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN", "sys_time"}}, want: "default",
			check: func(t *testing.T, s *specs.LinuxSeccomp) {
				for _, n := range []string{"mount", "setns", "settimeofday", "clone3"} {
					if !hasRule(s, n) {
						t.Errorf("%s not allowed with CAP_SYS_ADMIN+CAP_SYS_TIME", n)
					}
				}
			}},
		{name: "default follows dropped capabilities", ctr: rd, caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}, want: "default",
			check: func(t *testing.T, s *specs.LinuxSeccomp) {
				if hasRule(s, "chroot") {
					t.Error("chroot allowed without CAP_SYS_CHROOT")
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(func(c *runtimeapi.ContainerConfig) {
				sc(c).Seccomp = tc.ctr
				//lint:ignore SA1019 the deprecated CRI field is still sent by older kubelets and crictl
				sc(c).SeccompProfilePath = tc.ctrPath
				sc(c).Capabilities = tc.caps
				sc(c).Privileged = tc.privileged
			})
			s, err := build(t, cfg, testImage, func(_ *SandboxInfo, sb *runtimeapi.PodSandboxConfig) {
				sb.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
					//lint:ignore SA1019 the deprecated CRI field is still sent by older kubelets and crictl
					Seccomp: tc.pod, SeccompProfilePath: tc.podPath, Privileged: tc.privileged,
				}
			})
			if len(tc.wantErr) > 0 {
				wantInvalid(t, err, tc.wantErr[0])
				for _, w := range tc.wantErr[1:] {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("err = %v, want it to mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sec := s.Linux.Seccomp
			switch tc.want {
			case "none":
				if sec != nil {
					t.Fatalf("seccomp = %+v, want none", sec)
				}
			case "default":
				if sec == nil || sec.DefaultAction != specs.ActErrno || !hasRule(sec, "execve") || hasRule(sec, "keyctl") {
					t.Fatalf("seccomp = %s, want RuntimeDefault", jsonString(t, sec))
				}
			case "good":
				if sec == nil || len(sec.Syscalls) != 1 || !slices.Equal(sec.Syscalls[0].Names, []string{"read", "write", "exit_group"}) {
					t.Fatalf("seccomp = %s, want the file's profile", jsonString(t, sec))
				}
			case "docker":
				if sec == nil || !hasRule(sec, "read") || len(sec.Architectures) == 0 {
					t.Fatalf("seccomp = %s, want the converted docker profile", jsonString(t, sec))
				}
			}
			if tc.check != nil {
				tc.check(t, sec)
			}
		})
	}
}

func TestSandboxSeccomp(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.json")
	tests := []struct {
		name    string
		sc      *runtimeapi.LinuxSandboxSecurityContext
		want    bool
		wantErr string
	}{
		{name: "unset", sc: nil},
		{name: "runtime default", sc: &runtimeapi.LinuxSandboxSecurityContext{Seccomp: &runtimeapi.SecurityProfile{}}, want: true},
		//lint:ignore SA1019 the deprecated CRI field is still sent by older kubelets and crictl
		{name: "legacy", sc: &runtimeapi.LinuxSandboxSecurityContext{SeccompProfilePath: "runtime/default"}, want: true},
		{name: "privileged", sc: &runtimeapi.LinuxSandboxSecurityContext{Privileged: true, Seccomp: &runtimeapi.SecurityProfile{}}},
		{name: "localhost missing", sc: &runtimeapi.LinuxSandboxSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: missing}},
			wantErr: "linux.security_context.seccomp.localhost_ref"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testSandboxConfig()
			cfg.Linux.SecurityContext = tc.sc
			s, err := fakeHost(nil, nil).sandboxSpec("sb1", cfg, SandboxInfo{})
			if tc.wantErr != "" {
				wantInvalid(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (s.Linux.Seccomp != nil) != tc.want {
				t.Fatalf("seccomp = %v, want set=%v", s.Linux.Seccomp, tc.want)
			}
			// The pause process has no capabilities: nothing conditional.
			if s.Linux.Seccomp != nil && (hasRule(s.Linux.Seccomp, "chroot") || !hasRule(s.Linux.Seccomp, "pause")) {
				t.Errorf("pause profile = %s", jsonString(t, s.Linux.Seccomp))
			}
		})
	}
}

func TestAppArmor(t *testing.T) {
	rd := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	unconf := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
	local := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "k8s-nginx"}
	tests := []struct {
		name       string
		enabled    bool
		profile    *runtimeapi.SecurityProfile
		legacy     string
		privileged bool
		want       string
		wantErr    string
	}{
		{name: "disabled: unset", want: ""},
		{name: "disabled: runtime default ignored", profile: rd, want: ""},
		{name: "disabled: unconfined ignored", profile: unconf, want: ""},
		{name: "disabled: localhost refused", profile: local, wantErr: "linux.security_context.apparmor.localhost_ref"},
		{name: "disabled: legacy localhost refused", legacy: "localhost/k8s-nginx", wantErr: "linux.security_context.apparmor_profile"},
		{name: "enabled: unset", enabled: true, want: ""},
		{name: "enabled: runtime default", enabled: true, profile: rd, want: DefaultAppArmorProfile},
		{name: "enabled: legacy runtime default", enabled: true, legacy: "runtime/default", want: DefaultAppArmorProfile},
		{name: "enabled: unconfined", enabled: true, profile: unconf, want: ""},
		{name: "enabled: localhost", enabled: true, profile: local, want: "k8s-nginx"},
		{name: "enabled: legacy localhost", enabled: true, legacy: "localhost/k8s-nginx", want: "k8s-nginx"},
		{name: "enabled: privileged", enabled: true, profile: rd, privileged: true, want: ""},
		{name: "legacy garbage", legacy: "enforce", wantErr: "linux.security_context.apparmor_profile"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := fakeHost(testDevices, testDirs)
			h.apparmor = func() bool { return tc.enabled }
			cfg := testConfig(func(c *runtimeapi.ContainerConfig) {
				sc(c).Apparmor = tc.profile
				//lint:ignore SA1019 the deprecated field must keep working
				sc(c).ApparmorProfile = tc.legacy
				sc(c).Privileged = tc.privileged
			})
			sb := testSandboxConfig()
			sb.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: tc.privileged}
			s, err := h.containerSpec("c1", cfg, sb, testImage, testSandboxInfo(), "")
			if tc.wantErr != "" {
				wantInvalid(t, err, tc.wantErr)
				if !tc.enabled && !strings.Contains(err.Error(), "enforce") && !strings.Contains(err.Error(), "AppArmor is not enabled on this node") {
					t.Errorf("err = %v, want it to say AppArmor is not enabled", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Process.ApparmorProfile != tc.want {
				t.Fatalf("apparmorProfile = %q, want %q", s.Process.ApparmorProfile, tc.want)
			}
		})
	}

	t.Run("sandbox", func(t *testing.T) {
		for _, enabled := range []bool{false, true} {
			h := fakeHost(nil, nil)
			h.apparmor = func() bool { return enabled }
			cfg := testSandboxConfig()
			cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Apparmor: rd}
			s, err := h.sandboxSpec("sb1", cfg, SandboxInfo{})
			if err != nil {
				t.Fatal(err)
			}
			want := ""
			if enabled {
				want = DefaultAppArmorProfile
			}
			if s.Process.ApparmorProfile != want {
				t.Errorf("enabled=%v: apparmorProfile = %q, want %q", enabled, s.Process.ApparmorProfile, want)
			}
		}
	})
	// The real detection must not panic and must agree with the file.
	b, _ := os.ReadFile(apparmorEnabledFile)
	if AppArmorEnabled() != strings.HasPrefix(string(b), "Y") {
		t.Errorf("AppArmorEnabled() = %v, %s says %q", AppArmorEnabled(), apparmorEnabledFile, b)
	}
}

func TestSELinux(t *testing.T) {
	tests := []struct {
		name           string
		enabled        bool
		opts, podOpts  *runtimeapi.SELinuxOption
		privileged     bool
		process, mount string
		wantErr        string
	}{
		{name: "disabled: options ignored", opts: &runtimeapi.SELinuxOption{Type: "container_t", Level: "s0:c1,c2"}},
		{name: "disabled: still checked", opts: &runtimeapi.SELinuxOption{User: "a:b"}, wantErr: "linux.security_context.selinux_options.user"},
		{name: "enabled: no options", enabled: true, process: "system_u:system_r:container_t:s0", mount: "system_u:object_r:container_file_t:s0"},
		{name: "enabled: full", enabled: true, opts: &runtimeapi.SELinuxOption{User: "u", Role: "r", Type: "t", Level: "s0:c1,c2"},
			process: "u:r:t:s0:c1,c2", mount: "u:object_r:container_file_t:s0:c1,c2"},
		{name: "enabled: level from the pod", enabled: true, opts: &runtimeapi.SELinuxOption{Type: "my_t"}, podOpts: &runtimeapi.SELinuxOption{Level: "s0:c5,c9"},
			process: "system_u:system_r:my_t:s0:c5,c9", mount: "system_u:object_r:container_file_t:s0:c5,c9"},
		{name: "enabled: privileged", enabled: true, privileged: true, process: "system_u:system_r:spc_t:s0", mount: "system_u:object_r:container_file_t:s0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := fakeHost(testDevices, testDirs)
			h.selinux = func() bool { return tc.enabled }
			cfg := testConfig(func(c *runtimeapi.ContainerConfig) {
				sc(c).SelinuxOptions = tc.opts
				sc(c).Privileged = tc.privileged
			})
			sb := testSandboxConfig()
			sb.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{SelinuxOptions: tc.podOpts, Privileged: tc.privileged}
			s, err := h.containerSpec("c1", cfg, sb, testImage, testSandboxInfo(), "")
			if tc.wantErr != "" {
				wantInvalid(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Process.SelinuxLabel != tc.process || s.Linux.MountLabel != tc.mount {
				t.Fatalf("labels = %q %q, want %q %q", s.Process.SelinuxLabel, s.Linux.MountLabel, tc.process, tc.mount)
			}
		})
	}
}

func TestRunAsNonRoot(t *testing.T) {
	rootfs := fakeRootfs(t, map[string]string{"etc/passwd": testPasswd, "etc/group": testGroup})
	tests := []struct {
		name    string
		req     UserRequest
		uid     uint32
		wantErr string // substring of the message
	}{
		{name: "run_as_user 0", req: UserRequest{UID: i64(0)}, wantErr: `run_as_user "0" resolves to uid 0`},
		{name: "run_as_user 1000", req: UserRequest{UID: i64(1000)}, uid: 1000},
		{name: "run_as_username root", req: UserRequest{Username: "root"}, wantErr: `run_as_username "root"`},
		{name: "image user name resolving to 0", req: UserRequest{Image: "root"}, wantErr: `image USER "root" resolves to uid 0`},
		{name: "image user 0:1000", req: UserRequest{Image: "0:1000"}, wantErr: "uid 0"},
		{name: "image without user", req: UserRequest{}, wantErr: "sets no USER"},
		{name: "image user name", req: UserRequest{Image: "app"}, uid: 1000},
		{name: "run_as_user wins over a root image", req: UserRequest{UID: i64(1001), Image: "root"}, uid: 1001},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.NonRoot = true
			u, _, err := ResolveUser(rootfs, tc.req)
			if tc.wantErr != "" {
				wantInvalid(t, err, "run_as_non_root")
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.UID != tc.uid {
				t.Fatalf("uid = %d, want %d", u.UID, tc.uid)
			}
		})
	}

	t.Run("WithRunAsNonRoot", func(t *testing.T) {
		h := fakeHost(testDevices, testDirs)
		for _, c := range []struct {
			image string
			fail  bool
		}{{"root", true}, {"", true}, {"app", false}, {"1001", false}} {
			_, err := h.containerSpec("c1", testConfig(nil), testSandboxConfig(), ocispec.ImageConfig{Cmd: []string{"/x"}, User: c.image}, testSandboxInfo(), rootfs, WithRunAsNonRoot())
			if c.fail {
				wantInvalid(t, err, "run_as_non_root")
			} else if err != nil {
				t.Errorf("image user %q: %v", c.image, err)
			}
		}
	})
}

func TestCapabilityNames(t *testing.T) {
	// The static list must cover every capability golang.org/x/sys knows.
	if got, want := len(AllCapabilities()), int(unix.CAP_LAST_CAP)+1; got != want {
		t.Errorf("AllCapabilities has %d entries, the kernel headers %d", got, want)
	}
	tests := []struct {
		name    string
		caps    *runtimeapi.Capability
		bound   []string
		ambient []string
		wantErr []string
	}{
		{name: "case and prefix insensitive", caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"cap_net_admin", "Sys_Time", "CAP_BPF"}},
			bound: []string{"CAP_NET_ADMIN", "CAP_SYS_TIME", "CAP_BPF"}},
		{name: "ambient survives a drop", caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddAmbientCapabilities: []string{"net_raw"}},
			bound: []string{"CAP_NET_RAW"}, ambient: []string{"CAP_NET_RAW"}},
		{name: "ambient ALL", caps: &runtimeapi.Capability{AddAmbientCapabilities: []string{"ALL"}}, wantErr: []string{"add_ambient_capabilities[0]", "ALL"}},
		{name: "unknown ambient", caps: &runtimeapi.Capability{AddAmbientCapabilities: []string{"NET_BIND_SERVICE", "CAP_TELEPORT"}}, wantErr: []string{"add_ambient_capabilities[1]", "CAP_TELEPORT"}},
		{name: "unknown add names the capability", caps: &runtimeapi.Capability{AddCapabilities: []string{"sys_magic"}}, wantErr: []string{"add_capabilities[0]", "sys_magic"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := build(t, testConfig(func(c *runtimeapi.ContainerConfig) { sc(c).Capabilities = tc.caps }), testImage)
			if tc.wantErr != nil {
				wantInvalid(t, err, "linux.security_context.capabilities."+tc.wantErr[0])
				if !strings.Contains(err.Error(), tc.wantErr[1]) {
					t.Errorf("err = %v, want it to name %q", err, tc.wantErr[1])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := s.Process.Capabilities
			for name, got := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
				if !slices.Equal(got, tc.bound) {
					t.Errorf("%s = %v, want %v", name, got, tc.bound)
				}
			}
			if !slices.Equal(c.Ambient, tc.ambient) || !slices.Equal(c.Inheritable, tc.ambient) {
				t.Errorf("ambient %v inheritable %v, want %v", c.Ambient, c.Inheritable, tc.ambient)
			}
		})
	}
}
