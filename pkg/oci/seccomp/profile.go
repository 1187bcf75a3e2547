package seccomp

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ErrInvalidProfile marks a profile that cannot be used: malformed JSON,
// an unknown action, operator or architecture. Callers add the CRI field
// and file name.
var ErrInvalidProfile = errors.New("invalid seccomp profile")

//go:embed default.json
var defaultJSON []byte

// DefaultJSON returns a copy of the embedded RuntimeDefault profile.
func DefaultJSON() []byte { return bytes.Clone(defaultJSON) }

// Default parses the embedded RuntimeDefault profile. It panics if the
// embedded file is broken, which the package tests rule out.
func Default() *Profile {
	p, err := Parse(defaultJSON)
	if err != nil {
		panic("seccomp: embedded default.json: " + err.Error())
	}
	return p
}

// RuntimeDefault resolves the default profile for a container whose
// bounding capability set is caps, on this host.
func RuntimeDefault(caps []string) (*specs.LinuxSeccomp, error) {
	return Default().Resolve(Env{Caps: caps})
}

// Profile is the union of the OCI LinuxSeccomp form and Docker/moby's
// profile form.
type Profile struct {
	Comment          string                   `json:"comment,omitempty"`
	DefaultAction    specs.LinuxSeccompAction `json:"defaultAction"`
	DefaultErrnoRet  *uint                    `json:"defaultErrnoRet,omitempty"`
	Architectures    []specs.Arch             `json:"architectures,omitempty"`
	ArchMap          []ArchMap                `json:"archMap,omitempty"`
	Flags            []specs.LinuxSeccompFlag `json:"flags,omitempty"`
	ListenerPath     string                   `json:"listenerPath,omitempty"`
	ListenerMetadata string                   `json:"listenerMetadata,omitempty"`
	Syscalls         []Rule                   `json:"syscalls,omitempty"`
}

// ArchMap is Docker's way to list an architecture with the
// sub-architectures a process on it may also use (x86 on x86_64).
type ArchMap struct {
	Arch      specs.Arch   `json:"architecture"`
	SubArches []specs.Arch `json:"subArchitectures,omitempty"`
}

// Rule is one entry of "syscalls".
type Rule struct {
	// Name is Docker's legacy single-name form.
	Name     string                   `json:"name,omitempty"`
	Names    []string                 `json:"names,omitempty"`
	Action   specs.LinuxSeccompAction `json:"action"`
	ErrnoRet *uint                    `json:"errnoRet,omitempty"`
	Args     []specs.LinuxSeccompArg  `json:"args,omitempty"`
	Comment  string                   `json:"comment,omitempty"`
	Includes *Filter                  `json:"includes,omitempty"`
	Excludes *Filter                  `json:"excludes,omitempty"`
}

// Filter is a rule condition; see the package documentation.
type Filter struct {
	Caps      []string `json:"caps,omitempty"`
	Arches    []string `json:"arches,omitempty"`
	MinKernel string   `json:"minKernel,omitempty"`
}

// Env is what a profile's conditions are evaluated against.
type Env struct {
	// Caps is the container's bounding capability set ("CAP_" names).
	Caps []string
	// GOARCH is the host architecture; "" means runtime.GOARCH.
	GOARCH string
	// Kernel is the kernel release ("6.1.0-18-amd64"); "" means uname's.
	Kernel string
}

var knownActions = []specs.LinuxSeccompAction{
	specs.ActKill, specs.ActKillProcess, specs.ActKillThread, specs.ActTrap,
	specs.ActErrno, specs.ActTrace, specs.ActAllow, specs.ActLog, specs.ActNotify,
}

var knownOps = []specs.LinuxSeccompOperator{
	specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
	specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual,
}

var knownArches = []specs.Arch{
	specs.ArchX86, specs.ArchX86_64, specs.ArchX32, specs.ArchARM, specs.ArchAARCH64,
	specs.ArchMIPS, specs.ArchMIPS64, specs.ArchMIPS64N32, specs.ArchMIPSEL,
	specs.ArchMIPSEL64, specs.ArchMIPSEL64N32, specs.ArchPPC, specs.ArchPPC64,
	specs.ArchPPC64LE, specs.ArchS390, specs.ArchS390X, specs.ArchPARISC,
	specs.ArchPARISC64, specs.ArchRISCV64, specs.ArchLOONGARCH64,
}

var knownFlags = []specs.LinuxSeccompFlag{
	specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow,
	specs.LinuxSeccompFlagWaitKillableRecv, "SECCOMP_FILTER_FLAG_TSYNC",
}

// maxArgIndex: a syscall has at most six arguments.
const maxArgIndex = 5

// Parse decodes and checks a profile. It rejects what runc would reject
// only at container start, so the error reaches the CRI caller instead.
func Parse(data []byte) (*Profile, error) {
	var p Profile
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidProfile, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalidProfile)
	}
	if p.DefaultAction == "" {
		return nil, fmt.Errorf("%w: defaultAction is missing", ErrInvalidProfile)
	}
	if !slices.Contains(knownActions, p.DefaultAction) {
		return nil, fmt.Errorf("%w: unknown defaultAction %q", ErrInvalidProfile, p.DefaultAction)
	}
	if p.DefaultAction == specs.ActNotify {
		return nil, fmt.Errorf("%w: defaultAction SCMP_ACT_NOTIFY would stop every syscall", ErrInvalidProfile)
	}
	if len(p.Architectures) > 0 && len(p.ArchMap) > 0 {
		return nil, fmt.Errorf("%w: both architectures and archMap are set", ErrInvalidProfile)
	}
	for _, a := range p.Architectures {
		if !slices.Contains(knownArches, a) {
			return nil, fmt.Errorf("%w: unknown architecture %q", ErrInvalidProfile, a)
		}
	}
	for _, m := range p.ArchMap {
		for _, a := range append([]specs.Arch{m.Arch}, m.SubArches...) {
			if !slices.Contains(knownArches, a) {
				return nil, fmt.Errorf("%w: archMap: unknown architecture %q", ErrInvalidProfile, a)
			}
		}
	}
	for _, f := range p.Flags {
		if !slices.Contains(knownFlags, f) {
			return nil, fmt.Errorf("%w: unknown flag %q", ErrInvalidProfile, f)
		}
	}
	for i, r := range p.Syscalls {
		where := fmt.Sprintf("syscalls[%d]", i)
		if r.Name != "" && len(r.Names) > 0 {
			return nil, fmt.Errorf("%w: %s: both name and names are set", ErrInvalidProfile, where)
		}
		if r.Name == "" && len(r.Names) == 0 {
			return nil, fmt.Errorf("%w: %s: no syscall names", ErrInvalidProfile, where)
		}
		for _, n := range append([]string{r.Name}, r.Names...) {
			if strings.ContainsAny(n, " \t\n\x00") {
				return nil, fmt.Errorf("%w: %s: %q is not a syscall name", ErrInvalidProfile, where, n)
			}
		}
		if !slices.Contains(knownActions, r.Action) {
			return nil, fmt.Errorf("%w: %s: unknown action %q", ErrInvalidProfile, where, r.Action)
		}
		if r.Action == specs.ActNotify && p.ListenerPath == "" {
			// runc refuses a notify rule without a listener, and the
			// daemon runs no seccomp agent to be one.
			return nil, fmt.Errorf("%w: %s: SCMP_ACT_NOTIFY needs listenerPath", ErrInvalidProfile, where)
		}
		for j, a := range r.Args {
			if !slices.Contains(knownOps, a.Op) {
				return nil, fmt.Errorf("%w: %s.args[%d]: unknown operator %q", ErrInvalidProfile, where, j, a.Op)
			}
			if a.Index > maxArgIndex {
				return nil, fmt.Errorf("%w: %s.args[%d]: index %d is above %d", ErrInvalidProfile, where, j, a.Index, maxArgIndex)
			}
		}
		for _, f := range []*Filter{r.Includes, r.Excludes} {
			if f == nil || f.MinKernel == "" {
				continue
			}
			if _, err := parseKernel(f.MinKernel); err != nil {
				return nil, fmt.Errorf("%w: %s: minKernel: %v", ErrInvalidProfile, where, err)
			}
		}
	}
	return &p, nil
}

// Resolve evaluates the profile's conditions in env and returns the OCI
// form. Rules whose action equals the default action are dropped: they
// change nothing, and libseccomp refuses them.
func (p *Profile) Resolve(env Env) (*specs.LinuxSeccomp, error) {
	goarch := env.GOARCH
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	release := env.Kernel
	if release == "" {
		release = KernelRelease()
	}
	kernel, kerr := parseKernel(release)

	out := &specs.LinuxSeccomp{
		DefaultAction:    p.DefaultAction,
		DefaultErrnoRet:  cloneUint(p.DefaultErrnoRet),
		Flags:            slices.Clone(p.Flags),
		ListenerPath:     p.ListenerPath,
		ListenerMetadata: p.ListenerMetadata,
	}
	switch {
	case len(p.ArchMap) > 0:
		native := nativeArch(goarch)
		for _, m := range p.ArchMap {
			if m.Arch == native {
				out.Architectures = append([]specs.Arch{m.Arch}, m.SubArches...)
			}
		}
	default:
		out.Architectures = hostArches(goarch, p.Architectures)
	}

	for _, r := range p.Syscalls {
		if inc := r.Includes; inc != nil {
			if !containsAll(env.Caps, inc.Caps) {
				continue
			}
			if len(inc.Arches) > 0 && !slices.Contains(inc.Arches, goarch) {
				continue
			}
			if inc.MinKernel != "" {
				minK, _ := parseKernel(inc.MinKernel)
				if kerr != nil || kernel.less(minK) {
					continue
				}
			}
		}
		if exc := r.Excludes; exc != nil {
			if containsAny(env.Caps, exc.Caps) || slices.Contains(exc.Arches, goarch) {
				continue
			}
			if exc.MinKernel != "" {
				minK, _ := parseKernel(exc.MinKernel)
				if kerr == nil && !kernel.less(minK) {
					continue
				}
			}
		}
		if sameAction(r.Action, r.ErrnoRet, p.DefaultAction, p.DefaultErrnoRet) {
			continue
		}
		names := r.Names
		if r.Name != "" {
			names = []string{r.Name}
		}
		out.Syscalls = append(out.Syscalls, specs.LinuxSyscall{
			Names:    slices.Clone(names),
			Action:   r.Action,
			ErrnoRet: cloneUint(r.ErrnoRet),
			Args:     slices.Clone(r.Args),
		})
	}
	return out, nil
}

func cloneUint(u *uint) *uint {
	if u == nil {
		return nil
	}
	v := *u
	return &v
}

// sameAction reports whether a rule does what the default action does.
// An errno action without errnoRet returns EPERM in runc.
func sameAction(a specs.LinuxSeccompAction, errno *uint, def specs.LinuxSeccompAction, defErrno *uint) bool {
	if a != def {
		return false
	}
	if a != specs.ActErrno && a != specs.ActTrace {
		return true
	}
	get := func(u *uint) uint {
		if u == nil {
			return uint(unix.EPERM)
		}
		return *u
	}
	return get(errno) == get(defErrno)
}

func normCap(c string) string {
	c = strings.ToUpper(strings.TrimSpace(c))
	if !strings.HasPrefix(c, "CAP_") {
		c = "CAP_" + c
	}
	return c
}

func hasCap(set []string, c string) bool {
	c = normCap(c)
	return slices.ContainsFunc(set, func(s string) bool { return normCap(s) == c })
}

func containsAll(set, want []string) bool {
	for _, w := range want {
		if !hasCap(set, w) {
			return false
		}
	}
	return true
}

func containsAny(set, want []string) bool {
	return slices.ContainsFunc(want, func(w string) bool { return hasCap(set, w) })
}

// nativeArch maps GOARCH to the libseccomp name of the native ABI.
func nativeArch(goarch string) specs.Arch {
	switch goarch {
	case "amd64":
		return specs.ArchX86_64
	case "386":
		return specs.ArchX86
	case "arm64":
		return specs.ArchAARCH64
	case "arm":
		return specs.ArchARM
	case "ppc64":
		return specs.ArchPPC64
	case "ppc64le":
		return specs.ArchPPC64LE
	case "s390x":
		return specs.ArchS390X
	case "riscv64":
		return specs.ArchRISCV64
	case "loong64":
		return specs.ArchLOONGARCH64
	case "mips":
		return specs.ArchMIPS
	case "mipsle":
		return specs.ArchMIPSEL
	case "mips64":
		return specs.ArchMIPS64
	case "mips64le":
		return specs.ArchMIPSEL64
	}
	return ""
}

// executable lists the ABIs a process on each native architecture can
// use. A filter for any other ABI would be dead weight.
var executable = map[specs.Arch][]specs.Arch{
	specs.ArchX86_64:      {specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
	specs.ArchX86:         {specs.ArchX86},
	specs.ArchAARCH64:     {specs.ArchAARCH64, specs.ArchARM},
	specs.ArchARM:         {specs.ArchARM},
	specs.ArchPPC64:       {specs.ArchPPC64, specs.ArchPPC},
	specs.ArchPPC64LE:     {specs.ArchPPC64LE},
	specs.ArchS390X:       {specs.ArchS390X, specs.ArchS390},
	specs.ArchRISCV64:     {specs.ArchRISCV64},
	specs.ArchLOONGARCH64: {specs.ArchLOONGARCH64},
	specs.ArchMIPS:        {specs.ArchMIPS},
	specs.ArchMIPSEL:      {specs.ArchMIPSEL},
	specs.ArchMIPS64:      {specs.ArchMIPS64, specs.ArchMIPS, specs.ArchMIPS64N32},
	specs.ArchMIPSEL64:    {specs.ArchMIPSEL64, specs.ArchMIPSEL, specs.ArchMIPSEL64N32},
}

// hostArches keeps the listed architectures this host can execute, in
// their listed order. On a host this table does not know, the list is
// kept as written.
func hostArches(goarch string, listed []specs.Arch) []specs.Arch {
	ok, known := executable[nativeArch(goarch)]
	if !known {
		return slices.Clone(listed)
	}
	var out []specs.Arch
	for _, a := range listed {
		if slices.Contains(ok, a) {
			out = append(out, a)
		}
	}
	return out
}

type kernelVersion struct{ major, minor int }

func (k kernelVersion) less(o kernelVersion) bool {
	return k.major < o.major || (k.major == o.major && k.minor < o.minor)
}

// parseKernel reads "major.minor" from a kernel release or a minKernel
// value ("4.8", "6.1.0-18-amd64").
func parseKernel(s string) (kernelVersion, error) {
	majS, rest, ok := strings.Cut(s, ".")
	if !ok {
		return kernelVersion{}, fmt.Errorf("%q is not major.minor", s)
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(rest)
	}
	maj, err1 := strconv.Atoi(majS)
	mnr, err2 := strconv.Atoi(rest[:end])
	if err1 != nil || err2 != nil || maj < 0 || mnr < 0 {
		return kernelVersion{}, fmt.Errorf("%q is not major.minor", s)
	}
	return kernelVersion{maj, mnr}, nil
}

// KernelRelease returns uname's release string, "" when unknown.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
