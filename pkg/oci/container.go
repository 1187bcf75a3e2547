package oci

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerSpec builds the spec of an application container in the pod
// described by sandboxCfg and info. img is the container image's config;
// rootfs is the host path of the container's mounted root filesystem: it
// becomes root.path (override with WithRootfs) and is where the user
// database is read from.
//
// Besides reading rootfs's /etc/passwd and /etc/group it stats the host
// device nodes named in cfg.devices (and lists /dev for a privileged
// container).
func ContainerSpec(id string, cfg *runtimeapi.ContainerConfig, sandboxCfg *runtimeapi.PodSandboxConfig, img ocispec.ImageConfig, info SandboxInfo, rootfs string, opts ...SpecOpt) (*specs.Spec, error) {
	return realHostIO().containerSpec(id, cfg, sandboxCfg, img, info, rootfs, opts...)
}

func (h hostIO) containerSpec(id string, cfg *runtimeapi.ContainerConfig, sandboxCfg *runtimeapi.PodSandboxConfig, img ocispec.ImageConfig, info SandboxInfo, rootfs string, opts ...SpecOpt) (*specs.Spec, error) {
	if id == "" {
		return nil, invalid("container id", "empty")
	}
	if cfg == nil {
		return nil, invalid("config", "null ContainerConfig")
	}
	if cfg.GetMetadata().GetName() == "" {
		return nil, invalid("metadata.name", "empty")
	}
	sc := cfg.GetLinux().GetSecurityContext()
	privileged := sc.GetPrivileged()
	if privileged && !sandboxCfg.GetLinux().GetSecurityContext().GetPrivileged() {
		// kubelet marks the sandbox privileged whenever one of its
		// containers is; a mismatch means a hand-made request that would
		// escalate past what the pod was admitted with.
		return nil, invalid("linux.security_context.privileged", "privileged container in a sandbox that is not privileged")
	}

	s := baseSpec(info.OCIVersionMax)
	if rootfs != "" {
		s.Root.Path = rootfs
	}
	s.Root.Readonly = sc.GetReadonlyRootfs()

	// Process.
	args, err := processArgs(cfg.GetCommand(), cfg.GetArgs(), img)
	if err != nil {
		return nil, err
	}
	s.Process.Args = args
	cwd, err := workingDir(cfg.GetWorkingDir(), img.WorkingDir)
	if err != nil {
		return nil, err
	}
	s.Process.Cwd = cwd
	hostname := info.Hostname
	if hostname == "" {
		hostname = sandboxCfg.GetHostname()
	}
	env, err := buildEnv(hostname, img.Env, cfg.GetEnvs())
	if err != nil {
		return nil, err
	}
	s.Process.Terminal = cfg.GetTty()

	var uid, gid *int64
	if v := sc.GetRunAsUser(); v != nil {
		uid = &v.Value
	}
	if v := sc.GetRunAsGroup(); v != nil {
		gid = &v.Value
	}
	strict := false
	switch p := sc.GetSupplementalGroupsPolicy(); p {
	case runtimeapi.SupplementalGroupsPolicy_Merge:
	case runtimeapi.SupplementalGroupsPolicy_Strict:
		strict = true
	default:
		return nil, invalid("linux.security_context.supplemental_groups_policy", "unknown policy %d", p)
	}
	u, home, err := ResolveUser(rootfs, UserRequest{
		UID: uid, Username: sc.GetRunAsUsername(), GID: gid,
		Image:              img.User,
		SupplementalGroups: sc.GetSupplementalGroups(),
		Strict:             strict,
	})
	if err != nil {
		if errors.Is(err, ErrInvalid) {
			return nil, fmt.Errorf("linux.security_context: %w", err)
		}
		return nil, err
	}
	s.Process.User = u
	env = setDefaultEnv(env, "HOME", home)
	if cfg.GetTty() {
		env = setDefaultEnv(env, "TERM", "xterm")
	}
	s.Process.Env = env
	s.Process.NoNewPrivileges = sc.GetNoNewPrivs()

	caps, err := capabilities("linux.security_context.capabilities", sc.GetCapabilities(), privileged, h.grantableCaps())
	if err != nil {
		return nil, err
	}
	s.Process.Capabilities = caps

	// Seccomp, AppArmor and SELinux. The seccomp profile's
	// capability-conditional rules follow the final bounding set, so
	// add_capabilities: [SYS_ADMIN] also allows mount(2).
	podSC := sandboxCfg.GetLinux().GetSecurityContext()
	secRef, err := containerSeccompRef(sc, podSC)
	if err != nil {
		return nil, err
	}
	if s.Linux.Seccomp, err = h.seccompFor(secRef, caps.Bounding, privileged); err != nil {
		return nil, err
	}
	aaRef, err := containerAppArmorRef(sc)
	if err != nil {
		return nil, err
	}
	if s.Process.ApparmorProfile, err = h.apparmorFor(aaRef, privileged); err != nil {
		return nil, err
	}
	if s.Process.SelinuxLabel, s.Linux.MountLabel, err = h.selinuxLabels("linux.security_context.selinux_options",
		sc.GetSelinuxOptions(), podSC.GetSelinuxOptions(), privileged); err != nil {
		return nil, err
	}

	// Namespaces.
	ns, err := containerNamespaces(sc.GetNamespaceOptions(), info)
	if err != nil {
		return nil, err
	}
	s.Linux.Namespaces = ns
	hostIPC := info.HostIPC || sc.GetNamespaceOptions().GetIpc() == runtimeapi.NamespaceMode_NODE

	// Mounts.
	defaults := defaultMounts(privileged)
	shm := specs.Mount{Destination: devShm, Type: "bind", Options: []string{"rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"}}
	switch {
	case hostIPC:
		// POSIX shared memory lives in /dev/shm: sharing the host's IPC
		// namespace without its /dev/shm would be half a share.
		shm.Source = devShm
	case info.ShmPath != "":
		shm.Source = info.ShmPath
	}
	if shm.Source != "" {
		defaults = slices.DeleteFunc(defaults, func(m specs.Mount) bool { return m.Destination == devShm })
		defaults = append(defaults, shm)
	}
	podFileMode := "rw"
	if sc.GetReadonlyRootfs() {
		podFileMode = "ro"
	}
	for _, f := range []struct{ dst, src string }{
		{etcHostname, info.HostnamePath},
		{etcHosts, info.HostsPath},
		{etcResolvConf, info.ResolvPath},
	} {
		if f.src != "" {
			defaults = append(defaults, specs.Mount{Destination: f.dst, Type: "bind", Source: f.src, Options: []string{"rbind", "rprivate", podFileMode}})
		}
	}
	user, rootProp, err := criMounts(cfg.GetMounts())
	if err != nil {
		return nil, err
	}
	s.Mounts = mergeMounts(defaults, user)
	sortMounts(s.Mounts)
	s.Linux.RootfsPropagation = rootProp

	// Masked and read-only paths. kubelet (1.12+) always sends the lists
	// for the Default proc mount and empty ones for Unmasked; the two cannot
	// be told apart from "not given" on the wire, so the lists are taken
	// verbatim whenever a security context is present, and the defaults
	// apply only to requests without one (hand-written crictl configs).
	switch {
	case privileged:
	case sc == nil:
		s.Linux.MaskedPaths = DefaultMaskedPaths()
		s.Linux.ReadonlyPaths = DefaultReadonlyPaths()
	default:
		s.Linux.MaskedPaths = slices.Clone(sc.GetMaskedPaths())
		s.Linux.ReadonlyPaths = slices.Clone(sc.GetReadonlyPaths())
	}

	// Resources and devices.
	res, err := linuxResources("linux.resources", cfg.GetLinux().GetResources(), h.cgroups())
	if err != nil {
		return nil, err
	}
	s.Linux.Resources = res
	if r := cfg.GetLinux().GetResources(); r != nil {
		adj, err := oomScoreAdj("linux.resources.oom_score_adj", r.GetOomScoreAdj())
		if err != nil {
			return nil, err
		}
		s.Process.OOMScoreAdj = adj
	}
	devs, rules, err := h.criDevices(cfg.GetDevices())
	if err != nil {
		return nil, err
	}
	if privileged {
		hostDevs, err := h.hostDevices()
		if err != nil {
			return nil, err
		}
		devs = mergeDevices(hostDevs, devs)
		res.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	} else {
		res.Devices = append(defaultDeviceRules(), rules...)
	}
	s.Linux.Devices = devs

	s.Annotations[AnnotationContainerType] = ContainerTypeContainer
	s.Annotations[AnnotationSandboxID] = info.ID
	s.Annotations[AnnotationContainerName] = cfg.GetMetadata().GetName()
	s.Annotations[AnnotationSandboxName] = sandboxCfg.GetMetadata().GetName()
	s.Annotations[AnnotationSandboxNamespace] = sandboxCfg.GetMetadata().GetNamespace()
	s.Annotations[AnnotationSandboxUID] = sandboxCfg.GetMetadata().GetUid()
	imageName := cfg.GetImage().GetUserSpecifiedImage()
	if imageName == "" {
		imageName = cfg.GetImage().GetImage()
	}
	s.Annotations[AnnotationImageName] = imageName

	// User namespace: the pod's, when it has one.
	uids, gids, err := userNamespace(sandboxCfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions())
	if err != nil {
		return nil, err
	}
	if uids != nil {
		if privileged {
			return nil, invalid("linux.security_context.privileged", "privileged containers cannot run in a pod with a user namespace")
		}
		p, err := sandboxUserNamespacePath(info.Pid)
		if err != nil {
			return nil, err
		}
		withUserNamespace(s, p, uids, gids)
	}
	if err := applyOpts(s, opts); err != nil {
		return nil, err
	}
	return s, nil
}

// processArgs merges CRI command/args with the image the way kubelet
// documents and Docker does: command replaces the entrypoint and drops
// the image Cmd; args alone replace the Cmd.
func processArgs(command, args []string, img ocispec.ImageConfig) ([]string, error) {
	var out []string
	if len(command) > 0 {
		out = append(append(out, command...), args...)
	} else {
		entry := img.Entrypoint
		// `ENTRYPOINT [""]` is how an image says "no entrypoint".
		if len(entry) == 1 && entry[0] == "" {
			entry = nil
		}
		out = append(out, entry...)
		if len(args) > 0 {
			out = append(out, args...)
		} else {
			out = append(out, img.Cmd...)
		}
	}
	if len(out) == 0 || out[0] == "" {
		return nil, invalid("command", "no command: command, args, and the image's Entrypoint and Cmd are all empty")
	}
	return out, nil
}

func workingDir(cri, image string) (string, error) {
	if cri != "" {
		if !path.IsAbs(cri) {
			return "", invalid("working_dir", "%q is not absolute", cri)
		}
		return path.Clean(cri), nil
	}
	if image != "" {
		// Docker resolves a relative WORKDIR against "/" at build time;
		// images from other builders may not have.
		return path.Join("/", image), nil
	}
	return "/", nil
}

func envKey(kv string) string {
	k, _, _ := strings.Cut(kv, "=")
	return k
}

// setEnv sets kv, replacing a variable of the same name in place so the
// order stays that of first appearance.
func setEnv(env []string, kv string) []string {
	k := envKey(kv)
	for i, e := range env {
		if envKey(e) == k {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

func setDefaultEnv(env []string, key, value string) []string {
	for _, e := range env {
		if envKey(e) == key {
			return env
		}
	}
	return append(env, key+"="+value)
}

// buildEnv layers HOSTNAME, the image Env and the CRI envs, later ones
// overriding earlier by name, and adds PATH when nobody set it.
func buildEnv(hostname string, image []string, cri []*runtimeapi.KeyValue) ([]string, error) {
	var env []string
	if hostname != "" {
		env = setEnv(env, "HOSTNAME="+hostname)
	}
	for i, e := range image {
		if envKey(e) == "" || strings.ContainsRune(e, 0) {
			return nil, invalid(fmt.Sprintf("image config Env[%d]", i), "%q is not a valid variable", e)
		}
		env = setEnv(env, e)
	}
	for i, kv := range cri {
		k, v := kv.GetKey(), string(kv.GetValue())
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, invalid(fmt.Sprintf("envs[%d].key", i), "%q is not a valid variable name", k)
		}
		if strings.ContainsRune(v, 0) {
			return nil, invalid(fmt.Sprintf("envs[%d].value", i), "contains a NUL byte")
		}
		env = setEnv(env, k+"="+v)
	}
	if !slices.ContainsFunc(env, func(e string) bool { return envKey(e) == "PATH" }) {
		env = append([]string{defaultPath}, env...)
	}
	return env, nil
}

// containerNamespaces lists the namespaces of a container: its own mount
// namespace, the pod's network, IPC and UTS, and a pid namespace chosen by
// the pid mode. Host namespaces are simply absent.
func containerNamespaces(opts *runtimeapi.NamespaceOption, info SandboxInfo) ([]specs.LinuxNamespace, error) {
	proc := func(pid int, ns string) (string, error) {
		if pid <= 0 {
			return "", fmt.Errorf("oci: cannot join the sandbox %s namespace: sandbox pid unknown", ns)
		}
		return fmt.Sprintf("/proc/%d/ns/%s", pid, ns), nil
	}
	out := []specs.LinuxNamespace{{Type: specs.MountNamespace}}

	mode := info.PIDMode
	if info.HostPID {
		mode = runtimeapi.NamespaceMode_NODE
	}
	if opts != nil {
		mode = opts.GetPid()
	}
	switch mode {
	case runtimeapi.NamespaceMode_POD:
		p, err := proc(info.Pid, "pid")
		if err != nil {
			return nil, err
		}
		out = append(out, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: p})
	case runtimeapi.NamespaceMode_CONTAINER:
		out = append(out, specs.LinuxNamespace{Type: specs.PIDNamespace})
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_TARGET:
		if info.TargetPid <= 0 {
			return nil, invalid("linux.security_context.namespace_options.target_id", "target container %q is not running", opts.GetTargetId())
		}
		p, _ := proc(info.TargetPid, "pid")
		out = append(out, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: p})
	default:
		return nil, invalid("linux.security_context.namespace_options.pid", "unknown mode %d", mode)
	}

	if !info.HostIPC && opts.GetIpc() != runtimeapi.NamespaceMode_NODE {
		p, err := proc(info.Pid, "ipc")
		if err != nil {
			return nil, err
		}
		out = append(out, specs.LinuxNamespace{Type: specs.IPCNamespace, Path: p})
	}
	if !info.HostNetwork && opts.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		p, err := proc(info.Pid, "uts")
		if err != nil {
			return nil, err
		}
		out = append(out, specs.LinuxNamespace{Type: specs.UTSNamespace, Path: p})
		netns := info.NetNSPath
		if netns == "" {
			if netns, err = proc(info.Pid, "net"); err != nil {
				return nil, err
			}
		}
		out = append(out, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: netns})
	}
	return out, nil
}

// mergeDevices adds extra to base, an extra device replacing a base one
// at the same container path.
func mergeDevices(base, extra []specs.LinuxDevice) []specs.LinuxDevice {
	out := slices.DeleteFunc(slices.Clone(base), func(b specs.LinuxDevice) bool {
		return slices.ContainsFunc(extra, func(e specs.LinuxDevice) bool { return e.Path == b.Path })
	})
	return append(out, extra...)
}
