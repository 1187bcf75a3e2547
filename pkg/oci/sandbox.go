package oci

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// SandboxInfo holds the facts about a running pod that a container spec
// needs and the CRI config does not carry. The sandbox controller fills it.
type SandboxInfo struct {
	// ID is the sandbox id.
	ID string
	// Pid is the pause process: containers join its namespaces through
	// /proc/<Pid>/ns/*. Unused by SandboxSpec.
	Pid int
	// NetNSPath is the pinned network namespace; "" with host network.
	NetNSPath string
	// HostNetwork, HostPID and HostIPC say which namespaces are the host's.
	HostNetwork, HostPID, HostIPC bool
	// PIDMode is the default pid namespace mode for containers whose config
	// carries no namespace_options.
	PIDMode runtimeapi.NamespaceMode
	// TargetPid is the pid of the target container for PIDMode TARGET
	// (kubectl debug); the caller resolves namespace_options.target_id.
	TargetPid int
	// Hostname is the pod's hostname (kubelet sends the node name for
	// host-network pods).
	Hostname string
	// HostnamePath, HostsPath and ResolvPath are the pod files bind-mounted
	// at /etc/hostname, /etc/hosts and /etc/resolv.conf; "" skips one.
	HostnamePath, HostsPath, ResolvPath string
	// ShmPath is the pod's /dev/shm, shared by its containers; "" gives
	// each container a private one.
	ShmPath string
	// CgroupParent is the pod's cgroup: LinuxPodSandboxConfig.cgroup_parent
	// or the one the daemon made for the pod (see cgroups.Driver).
	CgroupParent string
	// OCIVersionMax is the newest runtime-spec version the pod's OCI
	// runtime accepts (its `features`' ociVersionMax); the specs say that
	// version when it is older than ours. Empty: no limit.
	OCIVersionMax string
}

// SandboxSpec builds the spec of a pod's pause process. The process is
// "/pause" with a read-only rootfs "rootfs" unless options say otherwise;
// it has no capabilities and no_new_privs, since it only holds the pod's
// namespaces.
//
// The pod's seccomp profile applies to the pause process too (resolved
// for a process without capabilities), and so do its AppArmor and SELinux
// settings.
func SandboxSpec(id string, cfg *runtimeapi.PodSandboxConfig, info SandboxInfo, opts ...SpecOpt) (*specs.Spec, error) {
	return realHostIO().sandboxSpec(id, cfg, info, opts...)
}

func (h hostIO) sandboxSpec(id string, cfg *runtimeapi.PodSandboxConfig, info SandboxInfo, opts ...SpecOpt) (*specs.Spec, error) {
	if id == "" {
		return nil, invalid("sandbox id", "empty")
	}
	if cfg == nil {
		return nil, invalid("config", "null PodSandboxConfig")
	}
	linux := cfg.GetLinux()
	sc := linux.GetSecurityContext()
	nsOpts := sc.GetNamespaceOptions()
	hostNet := info.HostNetwork || nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE
	hostPID := info.HostPID || nsOpts.GetPid() == runtimeapi.NamespaceMode_NODE
	hostIPC := info.HostIPC || nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE

	s := baseSpec(info.OCIVersionMax)
	s.Process.Args = []string{defaultPauseCommand}
	s.Process.Env = []string{defaultPath}
	s.Process.NoNewPrivileges = true
	s.Root.Readonly = true

	if sc.GetRunAsGroup() != nil && sc.GetRunAsUser() == nil {
		return nil, invalid("linux.security_context.run_as_group", "set without run_as_user")
	}
	var uid, gid *int64
	if v := sc.GetRunAsUser(); v != nil {
		uid = &v.Value
	}
	if v := sc.GetRunAsGroup(); v != nil {
		gid = &v.Value
	}
	// The pause image has no user database worth trusting: numeric only.
	u, _, err := ResolveUser("", UserRequest{
		UID: uid, GID: gid,
		SupplementalGroups: sc.GetSupplementalGroups(),
		Strict:             true,
	})
	if err != nil {
		return nil, fmt.Errorf("linux.security_context: %w", err)
	}
	s.Process.User = u

	// Namespaces. UTS follows the network: a host-network pod sees the
	// node's hostname, so it cannot have its own UTS namespace.
	s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	if !hostPID {
		setNamespace(s, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	if !hostIPC {
		setNamespace(s, specs.LinuxNamespace{Type: specs.IPCNamespace})
	}
	if !hostNet {
		setNamespace(s, specs.LinuxNamespace{Type: specs.UTSNamespace})
		setNamespace(s, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: info.NetNSPath})
		hostname := cfg.GetHostname()
		if info.Hostname != "" {
			hostname = info.Hostname
		}
		s.Hostname = hostname
	}

	sysctls, err := validSysctls(linux.GetSysctls(), hostNet, hostIPC)
	if err != nil {
		return nil, err
	}
	s.Linux.Sysctl = sysctls

	privileged := sc.GetPrivileged()
	mounts := defaultMounts(privileged)
	// The pause process needs neither the cgroup filesystem nor a shm of
	// its own; the pod's shm is created by the sandbox controller.
	mounts = slices.DeleteFunc(mounts, func(m specs.Mount) bool {
		return m.Destination == "/sys/fs/cgroup" || (hostIPC && m.Destination == devShm)
	})
	s.Mounts = mounts
	if !privileged {
		s.Linux.MaskedPaths = DefaultMaskedPaths()
		s.Linux.ReadonlyPaths = DefaultReadonlyPaths()
	}
	s.Linux.Resources.Devices = defaultDeviceRules()

	secRef, err := sandboxSeccompRef(sc)
	if err != nil {
		return nil, err
	}
	if s.Linux.Seccomp, err = h.seccompFor(secRef, nil, privileged); err != nil {
		return nil, err
	}
	aaRef, err := fromSecurityProfile("linux.security_context.apparmor", sc.GetApparmor())
	if err != nil {
		return nil, err
	}
	if s.Process.ApparmorProfile, err = h.apparmorFor(aaRef, privileged); err != nil {
		return nil, err
	}
	if s.Process.SelinuxLabel, s.Linux.MountLabel, err = h.selinuxLabels("linux.security_context.selinux_options",
		sc.GetSelinuxOptions(), nil, privileged); err != nil {
		return nil, err
	}

	res, err := sandboxResources(linux, h.cgroups())
	if err != nil {
		return nil, err
	}
	s.Linux.Resources.CPU = res.CPU
	s.Linux.Resources.Memory = res.Memory

	s.Annotations[AnnotationContainerType] = ContainerTypeSandbox
	s.Annotations[AnnotationSandboxID] = id
	s.Annotations[AnnotationSandboxName] = cfg.GetMetadata().GetName()
	s.Annotations[AnnotationSandboxNamespace] = cfg.GetMetadata().GetNamespace()
	s.Annotations[AnnotationSandboxUID] = cfg.GetMetadata().GetUid()
	s.Annotations[AnnotationSandboxLogDir] = cfg.GetLogDirectory()
	if r := linux.GetResources(); r != nil {
		s.Annotations[AnnotationSandboxCPUPeriod] = strconv.FormatInt(r.GetCpuPeriod(), 10)
		s.Annotations[AnnotationSandboxCPUQuota] = strconv.FormatInt(r.GetCpuQuota(), 10)
		s.Annotations[AnnotationSandboxCPUShares] = strconv.FormatInt(r.GetCpuShares(), 10)
		s.Annotations[AnnotationSandboxMemory] = strconv.FormatInt(r.GetMemoryLimitInBytes(), 10)
	}

	uids, gids, err := userNamespace(nsOpts.GetUsernsOptions())
	if err != nil {
		return nil, err
	}
	// The host's network is allowed (KEP-127's UserNamespacesHostNetworkSupport,
	// RuntimeFeatures.user_namespaces_host_network): its processes stay
	// unprivileged in it, and /sys is the host's, bound read-only
	// (withUserNamespace), as a user namespace that does not own the
	// network namespace cannot mount sysfs.
	if uids != nil && (hostPID || hostIPC) {
		return nil, invalid(usernsField, "a pod with a user namespace cannot share the host's pid or ipc namespace")
	}
	withUserNamespace(s, "", uids, gids)
	if err := applyOpts(s, opts); err != nil {
		return nil, err
	}
	return s, nil
}

// SandboxSeccompLocalhost reports whether the pod's sandbox asks for a
// Localhost seccomp profile (in either CRI field); an unreadable choice
// counts as one.
func SandboxSeccompLocalhost(cfg *runtimeapi.PodSandboxConfig) bool {
	ref, err := sandboxSeccompRef(cfg.GetLinux().GetSecurityContext())
	return err != nil || (!ref.unset && ref.kind == runtimeapi.SecurityProfile_Localhost)
}

// sandboxResources sizes the pause cgroup from the pod's resources plus
// the runtime class overhead. Limits only add up when the pod has one: an
// overhead alone does not limit an otherwise unlimited pod.
func sandboxResources(linux *runtimeapi.LinuxPodSandboxConfig, cg cgroupFeatures) (*specs.LinuxResources, error) {
	pod, err := linuxResources("linux.resources", linux.GetResources(), cg)
	if err != nil {
		return nil, err
	}
	over, err := linuxResources("linux.overhead", linux.GetOverhead(), cg)
	if err != nil {
		return nil, err
	}
	out := &specs.LinuxResources{CPU: pod.CPU, Memory: pod.Memory}
	if over.CPU != nil && out.CPU != nil {
		if over.CPU.Shares != nil && out.CPU.Shares != nil {
			v := min(*out.CPU.Shares+*over.CPU.Shares, maxCPUShares)
			out.CPU.Shares = &v
		}
		if over.CPU.Quota != nil && out.CPU.Quota != nil {
			// No quota (-1) on either side is no quota for the sum.
			v := int64(-1)
			if q, o := *out.CPU.Quota, *over.CPU.Quota; q > 0 && o > 0 {
				v = q + o
			}
			out.CPU.Quota = &v
		}
	}
	if over.Memory != nil && out.Memory != nil && over.Memory.Limit != nil && out.Memory.Limit != nil {
		l := *out.Memory.Limit + *over.Memory.Limit
		sw := *out.Memory.Swap + *over.Memory.Swap
		out.Memory.Limit, out.Memory.Swap = &l, &sw
	}
	return out, nil
}

// isIPCSysctl reports the sysctls the IPC namespace isolates: the
// kernel.shm*, kernel.msg* and kernel.sem families and POSIX mqueues.
func isIPCSysctl(k string) bool {
	return strings.HasPrefix(k, "kernel.shm") || strings.HasPrefix(k, "kernel.msg") ||
		k == "kernel.sem" || strings.HasPrefix(k, "fs.mqueue.")
}

// normalizeSysctl accepts kubelet's slash-separated form
// ("net/ipv4/conf/eth0.100/rp_filter") and returns the dotted one
// ("net.ipv4.conf.eth0/100.rp_filter") runc expects.
func normalizeSysctl(name string) string {
	first := strings.IndexAny(name, "./")
	if first < 0 || name[first] == '.' {
		return name
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '/':
			return '.'
		case '.':
			return '/'
		}
		return r
	}, name)
}

// sysctlName is kubelet's rule for sysctl names (IsValidSysctlName in
// k8s.io/kubernetes/pkg/apis/core/validation): non-empty segments
// separated by '.' or '/'. An empty segment is not harmless: runc turns
// "net.//.kernel.core_pattern" into /proc/sys/net///kernel/core_pattern,
// which is the host's kernel.core_pattern behind a net. prefix.
var sysctlName = regexp.MustCompile(`^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$`)

// maxSysctlName is kubelet's longest sysctl name.
const maxSysctlName = 253

func validSysctlName(name string) bool {
	return len(name) <= maxSysctlName && sysctlName.MatchString(name)
}

// validSysctls keeps only the sysctls Kubernetes calls namespaced:
// kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.* (IPC namespace) and
// net.* (network namespace). Any other would change the host for every
// pod, and a namespaced one is refused when the pod shares that namespace
// with the host.
func validSysctls(in map[string]string, hostNet, hostIPC bool) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(in))
	for raw, v := range in {
		field := fmt.Sprintf("linux.sysctls[%q]", raw)
		if !validSysctlName(raw) {
			return nil, invalid(field, "not a sysctl name (kubelet's rules: segments of [a-z0-9_-] between '.' or '/', none empty)")
		}
		k := normalizeSysctl(raw)
		if strings.ContainsRune(v, 0) {
			return nil, invalid(field, "value contains a NUL byte")
		}
		switch {
		case strings.HasPrefix(k, "net."):
			if hostNet {
				return nil, invalid(field, "net.* sysctls cannot be set for a host-network pod")
			}
		case isIPCSysctl(k):
			if hostIPC {
				return nil, invalid(field, "IPC sysctls cannot be set for a host-IPC pod")
			}
		default:
			return nil, invalid(field, "not a namespaced sysctl (allowed: kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.*)")
		}
		out[k] = v
	}
	return out, nil
}
