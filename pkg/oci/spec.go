package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrInvalid marks a spec that cannot be built because the CRI request (or
// the image config) is malformed or contradictory; the wrapping message
// names the field.
var ErrInvalid = errors.New("invalid argument")

// invalid builds an ErrInvalid-wrapping error naming the CRI field at fault.
func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// Annotation keys set on every spec. They use the names containerd's CRI
// plugin made common, because OCI hooks, NRI plugins and node tooling look
// for exactly these keys.
const (
	AnnotationContainerType    = "io.kubernetes.cri.container-type"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	AnnotationSandboxLogDir    = "io.kubernetes.cri.sandbox-log-directory"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	AnnotationImageName        = "io.kubernetes.cri.image-name"
	AnnotationSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	AnnotationSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	AnnotationSandboxCPUShares = "io.kubernetes.cri.sandbox-cpu-shares"
	AnnotationSandboxMemory    = "io.kubernetes.cri.sandbox-memory"

	// Values of AnnotationContainerType.
	ContainerTypeSandbox   = "sandbox"
	ContainerTypeContainer = "container"
)

const (
	defaultPath              = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	defaultRootfs            = "rootfs"
	defaultPauseCommand      = "/pause"
	defaultDevicePermissions = "rwm"
	configFile               = "config.json"

	// Kernel limits checked up front so a bad request fails with the CRI
	// field named instead of an opaque runc error at start.
	minCPUPeriod, maxCPUPeriod  = 1000, 1000000
	minCPUQuota                 = 1000
	maxCPUShares                = 262144
	minOOMScoreAdj, maxOOMScore = -1000, 1000
)

// SpecOpt adjusts a generated spec. Options run after the CRI config has
// been applied, so they win over it.
type SpecOpt func(*specs.Spec) error

func applyOpts(s *specs.Spec, opts []SpecOpt) error {
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(s); err != nil {
			return err
		}
	}
	return nil
}

// WithProcessArgs replaces the process arguments (the pause binary for a
// sandbox).
func WithProcessArgs(args ...string) SpecOpt {
	return func(s *specs.Spec) error {
		if len(args) == 0 {
			return errors.New("oci: WithProcessArgs needs at least one argument")
		}
		s.Process.Args = append([]string(nil), args...)
		return nil
	}
}

// WithRootfs sets root.path: absolute, or relative to the bundle directory.
func WithRootfs(p string) SpecOpt {
	return func(s *specs.Spec) error {
		s.Root.Path = p
		return nil
	}
}

// WithRootfsReadonly mounts the root filesystem read-only.
func WithRootfsReadonly() SpecOpt {
	return func(s *specs.Spec) error {
		s.Root.Readonly = true
		return nil
	}
}

// WithOOMScoreAdj sets process.oomScoreAdj. The caller clamps adj to what
// the daemon may grant (never below its own score); only the kernel's range
// is checked here.
func WithOOMScoreAdj(adj int) SpecOpt {
	return func(s *specs.Spec) error {
		if adj < minOOMScoreAdj || adj > maxOOMScore {
			return invalid("oom_score_adj", "%d outside [%d, %d]", adj, minOOMScoreAdj, maxOOMScore)
		}
		s.Process.OOMScoreAdj = &adj
		return nil
	}
}

// WithCgroupsPath sets linux.cgroupsPath; the cgroup driver (pkg/cgroups)
// builds it, in its cgroupfs or systemd form. Without it the spec has none.
func WithCgroupsPath(p string) SpecOpt {
	return func(s *specs.Spec) error {
		s.Linux.CgroupsPath = p
		return nil
	}
}

// WithMountLabel sets the SELinux label for the container's mounts.
func WithMountLabel(label string) SpecOpt {
	return func(s *specs.Spec) error {
		s.Linux.MountLabel = label
		return nil
	}
}

// WithProcessLabel sets the SELinux label of the container process.
func WithProcessLabel(label string) SpecOpt {
	return func(s *specs.Spec) error {
		s.Process.SelinuxLabel = label
		return nil
	}
}

// WithApparmorProfile sets the AppArmor profile of the container process.
func WithApparmorProfile(profile string) SpecOpt {
	return func(s *specs.Spec) error {
		s.Process.ApparmorProfile = profile
		return nil
	}
}

// WithRunAsNonRoot refuses a spec whose process runs as uid 0: the
// runAsNonRoot check done on the uid the user lookup resolved (an image
// USER given as a name included), for callers that learn runAsNonRoot
// outside the CRI config. ResolveUser's UserRequest.NonRoot does the same
// with a more precise message.
func WithRunAsNonRoot() SpecOpt {
	return func(s *specs.Spec) error {
		if s.Process.User.UID == 0 {
			return invalid("run_as_non_root", "container must run as a non-root user, but its user resolves to uid 0")
		}
		return nil
	}
}

// WithPidsLimit caps the number of tasks in the container's cgroup; kubelet
// enforces its pod pids limit at the pod level, so this is the daemon's own
// per-container knob. limit <= 0 means unlimited.
func WithPidsLimit(limit int64) SpecOpt {
	return func(s *specs.Spec) error {
		if limit <= 0 {
			return nil
		}
		res := resources(s)
		res.Pids = &specs.LinuxPids{Limit: &limit}
		return nil
	}
}

// WithNewCgroupNamespace gives the process its own cgroup namespace. It is
// an option because it only makes sense on cgroup v2 hosts (where it is the
// Kubernetes default) and the caller knows which kind of host it runs on.
func WithNewCgroupNamespace() SpecOpt {
	return func(s *specs.Spec) error {
		setNamespace(s, specs.LinuxNamespace{Type: specs.CgroupNamespace})
		return nil
	}
}

// WithAnnotations adds annotations, e.g. the pod annotations an operator
// chose to pass through to OCI hooks. Existing keys are overwritten.
func WithAnnotations(a map[string]string) SpecOpt {
	return func(s *specs.Spec) error {
		if s.Annotations == nil {
			s.Annotations = make(map[string]string, len(a))
		}
		for k, v := range a {
			s.Annotations[k] = v
		}
		return nil
	}
}

// WithMaskedPaths replaces linux.maskedPaths.
func WithMaskedPaths(paths []string) SpecOpt {
	return func(s *specs.Spec) error {
		s.Linux.MaskedPaths = append([]string(nil), paths...)
		return nil
	}
}

// WithReadonlyPaths replaces linux.readonlyPaths.
func WithReadonlyPaths(paths []string) SpecOpt {
	return func(s *specs.Spec) error {
		s.Linux.ReadonlyPaths = append([]string(nil), paths...)
		return nil
	}
}

// olderVersion reports whether semantic version a ("1.0.2-dev") is older
// than b, comparing major, minor and patch numbers.
func olderVersion(a, b string) bool {
	pa, pb := versionParts(a), versionParts(b)
	for i := range pa {
		if pa[i] != pb[i] {
			return pa[i] < pb[i]
		}
	}
	return false
}

func versionParts(v string) [3]int {
	var out [3]int
	core, _, _ := strings.Cut(strings.TrimPrefix(v, "v"), "-")
	for i, p := range strings.SplitN(core, ".", 3) {
		out[i], _ = strconv.Atoi(p)
	}
	return out
}

// WithRlimits sets process.rlimits (none by default: the container inherits
// the shim's limits, which the daemon's systemd unit sets).
func WithRlimits(r []specs.POSIXRlimit) SpecOpt {
	return func(s *specs.Spec) error {
		s.Process.Rlimits = append([]specs.POSIXRlimit(nil), r...)
		return nil
	}
}

// baseSpec is the skeleton both spec kinds start from. maxVersion caps
// the runtime-spec version it says: crun before 1.9 refuses any but 1.0.x
// (Debian 12's crun says ociVersionMax 1.0.2-dev), runc reads any 1.x.
func baseSpec(maxVersion string) *specs.Spec {
	version := specs.Version
	if maxVersion != "" && olderVersion(maxVersion, version) {
		version = maxVersion
	}
	return &specs.Spec{
		Version: version,
		Root:    &specs.Root{Path: defaultRootfs},
		Process: &specs.Process{
			Cwd:  "/",
			User: specs.User{},
			// An explicitly empty set: the process gets no capabilities
			// unless a caller fills them in.
			Capabilities: &specs.LinuxCapabilities{},
		},
		Annotations: map[string]string{},
		Linux: &specs.Linux{
			Resources: &specs.LinuxResources{},
		},
	}
}

func resources(s *specs.Spec) *specs.LinuxResources {
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	return s.Linux.Resources
}

// setNamespace adds ns, replacing an entry of the same type.
func setNamespace(s *specs.Spec, ns specs.LinuxNamespace) {
	for i := range s.Linux.Namespaces {
		if s.Linux.Namespaces[i].Type == ns.Type {
			s.Linux.Namespaces[i] = ns
			return
		}
	}
	s.Linux.Namespaces = append(s.Linux.Namespaces, ns)
}

// Save writes spec as bundleDir/config.json. The file is written to a
// temporary name, synced and renamed so a crash never leaves a torn
// config.json for a restarted daemon or shim to trip over. It is mode 0600
// because process.env routinely carries secrets.
func Save(spec *specs.Spec, bundleDir string) (err error) {
	if spec == nil {
		return errors.New("oci: save: nil spec")
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("oci: encode spec: %w", err)
	}
	tmp, err := os.CreateTemp(bundleDir, "."+configFile+".*")
	if err != nil {
		return fmt.Errorf("oci: save spec: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("oci: save spec: %w", err)
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("oci: save spec: %w", err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("oci: save spec: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("oci: save spec: %w", err)
	}
	if err = os.Rename(tmp.Name(), filepath.Join(bundleDir, configFile)); err != nil {
		return fmt.Errorf("oci: save spec: %w", err)
	}
	// The rename is only durable once the directory entry is.
	if d, derr := os.Open(bundleDir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// Load reads bundleDir/config.json, e.g. when the daemon restarts and
// needs a container's spec again.
func Load(bundleDir string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundleDir, configFile))
	if err != nil {
		return nil, fmt.Errorf("oci: load spec: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("oci: decode %s: %w", filepath.Join(bundleDir, configFile), err)
	}
	return &s, nil
}

// hasPrefixDir reports whether p is dir or below it (both cleaned, absolute).
func hasPrefixDir(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}
