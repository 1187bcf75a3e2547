package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/oci/seccomp"
)

// Legacy profile strings of the deprecated seccomp_profile_path and
// apparmor_profile fields. kubelet stopped sending them, but crictl
// configs and older tooling still do.
const (
	profileRuntimeDefault = "runtime/default"
	profileDockerDefault  = "docker/default"
	profileUnconfined     = "unconfined"
	profileLocalhost      = "localhost/"
)

// DefaultAppArmorProfile is the AppArmor profile RuntimeDefault selects
// when the kernel has AppArmor enabled. The daemon must have loaded it.
const DefaultAppArmorProfile = "cri-runtimed-default"

// SELinux defaults for labels whose parts the request leaves out. They are
// the container policy's standard types (container-selinux).
const (
	selinuxUser     = "system_u"
	selinuxRole     = "system_r"
	selinuxType     = "container_t"
	selinuxFileRole = "object_r"
	selinuxFileType = "container_file_t"
	selinuxLevel    = "s0"
	selinuxSpcType  = "spc_t" // privileged containers run unconfined
)

// profileRef is a resolved security profile choice.
type profileRef struct {
	kind  runtimeapi.SecurityProfile_ProfileType
	ref   string // Localhost: the path (seccomp) or profile name (AppArmor)
	field string // the CRI field it came from, for errors
	unset bool   // nothing was asked for
}

// fromSecurityProfile reads a SecurityProfile message; nil is unset.
func fromSecurityProfile(field string, p *runtimeapi.SecurityProfile) (profileRef, error) {
	if p == nil {
		return profileRef{unset: true}, nil
	}
	switch t := p.GetProfileType(); t {
	case runtimeapi.SecurityProfile_RuntimeDefault, runtimeapi.SecurityProfile_Unconfined:
		return profileRef{kind: t, field: field}, nil
	case runtimeapi.SecurityProfile_Localhost:
		if p.GetLocalhostRef() == "" {
			return profileRef{}, invalid(field+".localhost_ref", "empty for a Localhost profile")
		}
		return profileRef{kind: t, ref: p.GetLocalhostRef(), field: field + ".localhost_ref"}, nil
	default:
		return profileRef{}, invalid(field+".profile_type", "unknown profile type %d", t)
	}
}

// fromLegacy reads a deprecated profile string; "" is unset.
func fromLegacy(field, s string) (profileRef, error) {
	switch {
	case s == "":
		return profileRef{unset: true}, nil
	case s == profileRuntimeDefault || s == profileDockerDefault:
		return profileRef{kind: runtimeapi.SecurityProfile_RuntimeDefault, field: field}, nil
	case s == profileUnconfined:
		return profileRef{kind: runtimeapi.SecurityProfile_Unconfined, field: field}, nil
	case strings.HasPrefix(s, profileLocalhost) && len(s) > len(profileLocalhost):
		return profileRef{kind: runtimeapi.SecurityProfile_Localhost, ref: strings.TrimPrefix(s, profileLocalhost), field: field}, nil
	}
	return profileRef{}, invalid(field, "%q is none of %q, %q, %q, %q", s, profileRuntimeDefault, profileDockerDefault, profileUnconfined, profileLocalhost+"<path>")
}

// firstProfile returns the first choice that is set, trying the
// structured field before the deprecated string at each level.
func firstProfile(choices ...func() (profileRef, error)) (profileRef, error) {
	for _, c := range choices {
		r, err := c()
		if err != nil || !r.unset {
			return r, err
		}
	}
	return profileRef{unset: true}, nil
}

// containerSeccompRef picks the container's seccomp profile: its own
// field, else its deprecated string, else the pod's (the pod-level
// profile is the default for its containers). Nothing set at all means
// Unconfined, as CRI documents: kubelet sends RuntimeDefault explicitly
// when the pod asks for it (or its SeccompDefault feature does).
func containerSeccompRef(sc *runtimeapi.LinuxContainerSecurityContext, pod *runtimeapi.LinuxSandboxSecurityContext) (profileRef, error) {
	return firstProfile(
		func() (profileRef, error) {
			return fromSecurityProfile("linux.security_context.seccomp", sc.GetSeccomp())
		},
		func() (profileRef, error) {
			//lint:ignore SA1019 the deprecated CRI field is still sent by older kubelets and crictl
			return fromLegacy("linux.security_context.seccomp_profile_path", sc.GetSeccompProfilePath())
		},
		func() (profileRef, error) {
			return fromSecurityProfile("sandbox_config.linux.security_context.seccomp", pod.GetSeccomp())
		},
		func() (profileRef, error) {
			//lint:ignore SA1019 the deprecated CRI field is still sent by older kubelets and crictl
			return fromLegacy("sandbox_config.linux.security_context.seccomp_profile_path", pod.GetSeccompProfilePath())
		},
	)
}

func sandboxSeccompRef(sc *runtimeapi.LinuxSandboxSecurityContext) (profileRef, error) {
	return firstProfile(
		func() (profileRef, error) {
			return fromSecurityProfile("linux.security_context.seccomp", sc.GetSeccomp())
		},
		func() (profileRef, error) {
			//lint:ignore SA1019 the deprecated CRI field is still sent by older kubelets and crictl
			return fromLegacy("linux.security_context.seccomp_profile_path", sc.GetSeccompProfilePath())
		},
	)
}

// seccompFor turns a profile choice into linux.seccomp for a process
// whose bounding capability set is caps. nil means no filter.
func (h hostIO) seccompFor(ref profileRef, caps []string, privileged bool) (*specs.LinuxSeccomp, error) {
	if privileged || ref.unset || ref.kind == runtimeapi.SecurityProfile_Unconfined {
		// A privileged container is unconfined whatever it asks for:
		// it can do everything the filter would stop anyway.
		return nil, nil
	}
	env := seccomp.Env{Caps: caps}
	if ref.kind == runtimeapi.SecurityProfile_RuntimeDefault {
		out, err := seccomp.Default().Resolve(env)
		if err != nil {
			return nil, fmt.Errorf("oci: default seccomp profile: %w", err)
		}
		return out, nil
	}
	if !path.IsAbs(ref.ref) {
		return nil, invalid(ref.field, "seccomp profile path %q is not absolute", ref.ref)
	}
	file := path.Clean(ref.ref)
	if h.readProfile == nil {
		return nil, invalid(ref.field, "cannot read seccomp profile %s on this host", file)
	}
	data, err := h.readProfile(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, invalid(ref.field, "seccomp profile %s does not exist", file)
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, invalid(ref.field, "seccomp profile %s: %v", file, err)
	}
	p, err := seccomp.Parse(data)
	if err != nil {
		return nil, invalid(ref.field, "seccomp profile %s: %v", file, err)
	}
	out, err := p.Resolve(env)
	if err != nil {
		return nil, invalid(ref.field, "seccomp profile %s: %v", file, err)
	}
	return out, nil
}

// containerAppArmorRef reads the container's AppArmor choice. There is no
// pod-level default for containers: kubelet resolves it per container.
func containerAppArmorRef(sc *runtimeapi.LinuxContainerSecurityContext) (profileRef, error) {
	return firstProfile(
		func() (profileRef, error) {
			return fromSecurityProfile("linux.security_context.apparmor", sc.GetApparmor())
		},
		func() (profileRef, error) {
			//lint:ignore SA1019 the deprecated CRI field is still sent by older kubelets and crictl
			return fromLegacy("linux.security_context.apparmor_profile", sc.GetApparmorProfile())
		},
	)
}

// apparmorFor returns process.apparmorProfile. Without AppArmor in the
// kernel, RuntimeDefault and Unconfined mean nothing and are ignored; a
// Localhost profile cannot be honoured, and silently running the
// container unconfined would defeat the pod's intent, so it is refused.
func (h hostIO) apparmorFor(ref profileRef, privileged bool) (string, error) {
	enabled := h.apparmorEnabled()
	if ref.kind == runtimeapi.SecurityProfile_Localhost && !ref.unset {
		if !enabled {
			return "", invalid(ref.field, "AppArmor profile %q requested but AppArmor is not enabled on this node", ref.ref)
		}
		if strings.ContainsAny(ref.ref, "\x00\n") {
			return "", invalid(ref.field, "%q is not an AppArmor profile name", ref.ref)
		}
	}
	if !enabled || privileged || ref.unset || ref.kind == runtimeapi.SecurityProfile_Unconfined {
		return "", nil
	}
	if ref.kind == runtimeapi.SecurityProfile_Localhost {
		return ref.ref, nil
	}
	return DefaultAppArmorProfile, nil
}

// selinuxLabels builds the process and mount labels from the request's
// SELinux options, each missing part taken from fallback (the pod's
// options, for a container) and then from the container policy defaults.
// With SELinux off the options are checked for shape and ignored.
//
// Each pod should get its own MCS level; kubelet or the admission chain
// passes it in level, and without one all containers share "s0".
func (h hostIO) selinuxLabels(field string, o, fallback *runtimeapi.SELinuxOption, privileged bool) (process, mount string, err error) {
	for name, v := range map[string]string{"user": o.GetUser(), "role": o.GetRole(), "type": o.GetType(), "level": o.GetLevel()} {
		if strings.ContainsAny(v, "\x00\n ") || (name != "level" && strings.Contains(v, ":")) {
			return "", "", invalid(field+"."+name, "%q is not an SELinux %s", v, name)
		}
	}
	if !h.selinuxEnabled() {
		return "", "", nil
	}
	pick := func(a, b, def string) string {
		if a != "" {
			return a
		}
		if b != "" {
			return b
		}
		return def
	}
	user := pick(o.GetUser(), fallback.GetUser(), selinuxUser)
	role := pick(o.GetRole(), fallback.GetRole(), selinuxRole)
	typ := pick(o.GetType(), fallback.GetType(), selinuxType)
	level := pick(o.GetLevel(), fallback.GetLevel(), selinuxLevel)
	if privileged && o.GetType() == "" {
		typ = selinuxSpcType
	}
	process = strings.Join([]string{user, role, typ, level}, ":")
	mount = strings.Join([]string{user, selinuxFileRole, selinuxFileType, level}, ":")
	return process, mount, nil
}
