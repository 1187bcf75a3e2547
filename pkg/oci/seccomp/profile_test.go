package seccomp

import (
	"errors"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultCaps is Docker's default set, which pkg/oci grants too.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// rulesFor returns the rules naming syscall.
func rulesFor(s *specs.LinuxSeccomp, syscall string) []specs.LinuxSyscall {
	var out []specs.LinuxSyscall
	for _, r := range s.Syscalls {
		if slices.Contains(r.Names, syscall) {
			out = append(out, r)
		}
	}
	return out
}

// allowedAlways reports whether syscall has an unconditional allow rule.
func allowedAlways(s *specs.LinuxSeccomp, syscall string) bool {
	return slices.ContainsFunc(rulesFor(s, syscall), func(r specs.LinuxSyscall) bool {
		return r.Action == specs.ActAllow && len(r.Args) == 0
	})
}

func resolveDefault(t *testing.T, env Env) *specs.LinuxSeccomp {
	t.Helper()
	if env.Kernel == "" {
		env.Kernel = "6.1.0-18-amd64"
	}
	s, err := Default().Resolve(env)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDefaultProfileShape(t *testing.T) {
	s := resolveDefault(t, Env{Caps: defaultCaps, GOARCH: "amd64"})
	if s.DefaultAction != specs.ActErrno || s.DefaultErrnoRet == nil || *s.DefaultErrnoRet != 1 {
		t.Fatalf("default action %s errno %v, want SCMP_ACT_ERRNO EPERM", s.DefaultAction, s.DefaultErrnoRet)
	}
	if !slices.Equal(s.Architectures, []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}) {
		t.Errorf("architectures = %v", s.Architectures)
	}
	for _, name := range []string{
		"read", "write", "openat", "close", "execve", "exit_group", "mmap", "futex",
		"epoll_pwait", "accept4", "rt_sigaction", "getrandom", "prctl", "wait4",
		"setuid", "capset", "chroot", "arch_prctl", "ptrace", "process_vm_readv", "pidfd_open",
	} {
		if !allowedAlways(s, name) {
			t.Errorf("%s is not allowed", name)
		}
	}
	for _, name := range []string{
		"keyctl", "add_key", "request_key", "kexec_load", "mount", "umount2", "setns",
		"bpf", "perf_event_open", "userfaultfd", "open_by_handle_at", "init_module",
		"reboot", "swapon", "acct", "settimeofday", "clock_settime", "io_uring_setup",
		"pivot_root", "fsopen", "syslog", "kcmp", "iopl",
	} {
		if r := rulesFor(s, name); len(r) != 0 {
			t.Errorf("%s has rules %+v, want none (blocked by default)", name, r)
		}
	}
	for _, r := range s.Syscalls {
		if r.Action == s.DefaultAction && (r.ErrnoRet == nil || *r.ErrnoRet == *s.DefaultErrnoRet) {
			t.Errorf("rule %v repeats the default action", r.Names)
		}
	}

	// clone: only without namespace flags.
	clone := rulesFor(s, "clone")
	if len(clone) != 1 || len(clone[0].Args) != 1 || clone[0].Args[0].Op != specs.OpMaskedEqual ||
		clone[0].Args[0].Value&0x10000000 == 0 || clone[0].Args[0].ValueTwo != 0 {
		t.Errorf("clone rules = %+v, want one masked rule covering CLONE_NEWUSER", clone)
	}
	// unshare: the same, so unshare(CLONE_NEWUSER) fails.
	unshare := rulesFor(s, "unshare")
	if len(unshare) != 1 || unshare[0].Args[0].Op != specs.OpMaskedEqual || unshare[0].Args[0].Value&0x10000000 == 0 {
		t.Errorf("unshare rules = %+v, want one masked rule covering CLONE_NEWUSER", unshare)
	}
	// clone3: ENOSYS, so glibc falls back to clone.
	c3 := rulesFor(s, "clone3")
	if len(c3) != 1 || c3[0].Action != specs.ActErrno || c3[0].ErrnoRet == nil || *c3[0].ErrnoRet != 38 {
		t.Errorf("clone3 rules = %+v, want ERRNO ENOSYS", c3)
	}
	// personality: the fixed list of values.
	var pers []uint64
	for _, r := range rulesFor(s, "personality") {
		pers = append(pers, r.Args[0].Value)
	}
	if !slices.Equal(pers, []uint64{0, 8, 0x20000, 0x20008, 0xffffffff}) {
		t.Errorf("personality values = %#x", pers)
	}
	// socket: everything but AF_VSOCK.
	sock := rulesFor(s, "socket")
	if len(sock) != 1 || sock[0].Args[0].Op != specs.OpNotEqual || sock[0].Args[0].Value != 40 {
		t.Errorf("socket rules = %+v, want != AF_VSOCK", sock)
	}
}

func TestDefaultProfileConditions(t *testing.T) {
	tests := []struct {
		name         string
		env          Env
		allowed      []string
		blocked      []string
		cloneMasked  bool
		clone3NoSys  bool
		wantArches   []specs.Arch
		unconditions []string // names expected with an unconditional allow
	}{
		{name: "sys_admin", env: Env{Caps: append(slices.Clone(defaultCaps), "CAP_SYS_ADMIN"), GOARCH: "amd64"},
			allowed: []string{"mount", "umount2", "setns", "unshare", "clone", "clone3", "bpf", "perf_event_open", "syslog", "sethostname"},
			blocked: []string{"keyctl", "kexec_load", "open_by_handle_at", "init_module"}},
		{name: "bpf and perfmon", env: Env{Caps: []string{"CAP_BPF", "perfmon"}, GOARCH: "amd64"},
			allowed: []string{"bpf", "perf_event_open"}, blocked: []string{"mount"}, cloneMasked: true, clone3NoSys: true},
		{name: "sys_time", env: Env{Caps: []string{"CAP_SYS_TIME"}, GOARCH: "amd64"},
			allowed: []string{"settimeofday", "clock_settime"}, blocked: []string{"mount"}, cloneMasked: true, clone3NoSys: true},
		{name: "sys_ptrace", env: Env{Caps: []string{"CAP_SYS_PTRACE"}, GOARCH: "amd64", Kernel: "4.4.0"},
			allowed: []string{"ptrace", "kcmp", "userfaultfd", "pidfd_getfd"}, cloneMasked: true, clone3NoSys: true},
		{name: "old kernel without sys_ptrace", env: Env{GOARCH: "amd64", Kernel: "4.4.0-200"},
			blocked: []string{"ptrace", "process_vm_writev"}, cloneMasked: true, clone3NoSys: true},
		{name: "module boot pacct rawio", env: Env{Caps: []string{"CAP_SYS_MODULE", "CAP_SYS_BOOT", "CAP_SYS_PACCT", "CAP_SYS_RAWIO", "CAP_DAC_READ_SEARCH"}, GOARCH: "amd64"},
			allowed: []string{"init_module", "finit_module", "reboot", "acct", "iopl", "open_by_handle_at"}, blocked: []string{"kexec_load", "swapon"}, cloneMasked: true, clone3NoSys: true},
		{name: "no capabilities", env: Env{GOARCH: "amd64"}, blocked: []string{"chroot", "mount", "keyctl"}, cloneMasked: true, clone3NoSys: true},
		{name: "arm64", env: Env{Caps: defaultCaps, GOARCH: "arm64"}, allowed: []string{"set_tls", "cacheflush"}, blocked: []string{"arch_prctl", "modify_ldt"},
			cloneMasked: true, clone3NoSys: true, wantArches: []specs.Arch{specs.ArchAARCH64, specs.ArchARM}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := resolveDefault(t, tc.env)
			for _, n := range tc.allowed {
				if !allowedAlways(s, n) {
					t.Errorf("%s not allowed", n)
				}
			}
			for _, n := range tc.blocked {
				if r := rulesFor(s, n); len(r) != 0 {
					t.Errorf("%s has rules %+v, want blocked", n, r)
				}
			}
			masked := slices.ContainsFunc(rulesFor(s, "clone"), func(r specs.LinuxSyscall) bool { return len(r.Args) > 0 })
			if masked != tc.cloneMasked {
				t.Errorf("clone masked = %v, want %v", masked, tc.cloneMasked)
			}
			nosys := slices.ContainsFunc(rulesFor(s, "clone3"), func(r specs.LinuxSyscall) bool { return r.Action == specs.ActErrno })
			if nosys != tc.clone3NoSys {
				t.Errorf("clone3 ENOSYS = %v, want %v", nosys, tc.clone3NoSys)
			}
			if tc.wantArches != nil && !slices.Equal(s.Architectures, tc.wantArches) {
				t.Errorf("architectures = %v, want %v", s.Architectures, tc.wantArches)
			}
		})
	}
}

func TestDefaultJSONIsOCI(t *testing.T) {
	// The embedded file must be usable as plain OCI LinuxSeccomp too.
	if !strings.Contains(string(DefaultJSON()), `"defaultAction": "SCMP_ACT_ERRNO"`) {
		t.Fatal("default.json lost its defaultAction")
	}
	if _, err := RuntimeDefault(defaultCaps); err != nil {
		t.Fatal(err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		goarch  string
		caps    []string
		check   func(t *testing.T, s *specs.LinuxSeccomp)
		wantErr string
	}{
		{
			name: "oci form",
			json: `{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],"syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"},{"names":["kill"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}`,
			check: func(t *testing.T, s *specs.LinuxSeccomp) {
				// kill repeats the default (ERRNO without errnoRet is EPERM).
				if len(s.Syscalls) != 1 || !slices.Equal(s.Syscalls[0].Names, []string{"read", "write"}) {
					t.Errorf("syscalls = %+v", s.Syscalls)
				}
				if !slices.Equal(s.Architectures, []specs.Arch{specs.ArchX86_64}) {
					t.Errorf("architectures = %v", s.Architectures)
				}
			},
		},
		{
			name:   "docker form",
			goarch: "arm64",
			caps:   []string{"CAP_SYS_ADMIN"},
			json: `{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
				"archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]},{"architecture":"SCMP_ARCH_AARCH64","subArchitectures":["SCMP_ARCH_ARM"]}],
				"syscalls":[{"name":"read","action":"SCMP_ACT_ALLOW","args":[]},
					{"names":["mount"],"action":"SCMP_ACT_ALLOW","comment":"x","includes":{"caps":["CAP_SYS_ADMIN"]}},
					{"names":["reboot"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_BOOT"]}},
					{"names":["arch_prctl"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd64"]}},
					{"names":["clone3"],"action":"SCMP_ACT_ERRNO","errnoRet":38,"excludes":{"caps":["CAP_SYS_ADMIN"]}},
					{"names":["ptrace"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"4.8"}}]}`,
			check: func(t *testing.T, s *specs.LinuxSeccomp) {
				var names []string
				for _, r := range s.Syscalls {
					names = append(names, r.Names...)
				}
				if !slices.Equal(names, []string{"read", "mount", "ptrace"}) {
					t.Errorf("names = %v, want read mount ptrace", names)
				}
				if !slices.Equal(s.Architectures, []specs.Arch{specs.ArchAARCH64, specs.ArchARM}) {
					t.Errorf("architectures = %v", s.Architectures)
				}
			},
		},
		{name: "not json", json: `{"defaultAction":`, wantErr: "unexpected EOF"},
		{name: "trailing data", json: `{"defaultAction":"SCMP_ACT_ALLOW"} {}`, wantErr: "trailing"},
		{name: "no default action", json: `{"syscalls":[]}`, wantErr: "defaultAction is missing"},
		{name: "unknown default action", json: `{"defaultAction":"SCMP_ACT_MAYBE"}`, wantErr: "SCMP_ACT_MAYBE"},
		{name: "unknown rule action", json: `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"ALLOW"}]}`, wantErr: "syscalls[0]: unknown action"},
		{name: "no names", json: `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_LOG"}]}`, wantErr: "no syscall names"},
		{name: "unknown op", json: `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_LOG","args":[{"index":0,"value":1,"op":"SCMP_CMP_LIKE"}]}]}`, wantErr: "SCMP_CMP_LIKE"},
		{name: "arg index", json: `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_LOG","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}`, wantErr: "index 6"},
		{name: "unknown arch", json: `{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_Z80"]}`, wantErr: "SCMP_ARCH_Z80"},
		{name: "both arch forms", json: `{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}`, wantErr: "both"},
		{name: "notify without listener", json: `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_NOTIFY"}]}`, wantErr: "listenerPath"},
		{name: "bad minKernel", json: `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_LOG","includes":{"minKernel":"four"}}]}`, wantErr: "minKernel"},
		{name: "unknown flag", json: `{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_FAST"]}`, wantErr: "FLAG_FAST"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.json))
			if tc.wantErr != "" {
				if !errors.Is(err, ErrInvalidProfile) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrInvalidProfile containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			goarch := tc.goarch
			if goarch == "" {
				goarch = "amd64"
			}
			s, err := p.Resolve(Env{Caps: tc.caps, GOARCH: goarch, Kernel: "5.10.0"})
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s)
		})
	}
}

func TestParseKernel(t *testing.T) {
	tests := []struct {
		in      string
		want    kernelVersion
		wantErr bool
	}{
		{in: "6.18.44-fc-v509", want: kernelVersion{6, 18}},
		{in: "4.8", want: kernelVersion{4, 8}},
		{in: "5.10.0-28-amd64", want: kernelVersion{5, 10}},
		{in: "5", wantErr: true},
		{in: "x.y", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tc := range tests {
		got, err := parseKernel(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseKernel(%q) = %v, %v", tc.in, got, err)
		}
	}
	if !(kernelVersion{4, 4}).less(kernelVersion{4, 8}) || (kernelVersion{5, 0}).less(kernelVersion{4, 8}) {
		t.Error("less is wrong")
	}
	if KernelRelease() == "" {
		t.Error("KernelRelease is empty")
	}
}
