package oci

import (
	"fmt"
	"math"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// usernsField names the CRI field of a pod's user namespace options.
const usernsField = "linux.security_context.namespace_options.userns_options"

// userNamespace reads a pod's user namespace options: nil mappings for the
// host's user namespace (NODE, the default), the ID mappings kubelet chose
// for a pod-wide user namespace (POD). kubelet allocates the host ranges;
// the runtime applies them as given, one range per kind, mapping the
// container's root.
func userNamespace(o *runtimeapi.UserNamespace) (uids, gids []specs.LinuxIDMapping, err error) {
	if o == nil {
		// Absent options are the host's user namespace; POD is the
		// enum's zero value, so the mode alone cannot tell.
		return nil, nil, nil
	}
	switch o.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		return nil, nil, nil
	case runtimeapi.NamespaceMode_POD:
	default:
		return nil, nil, invalid(usernsField+".mode", "%s is not supported for user namespaces (only POD and NODE)", o.GetMode())
	}
	if uids, err = idMappings(usernsField+".uids", o.GetUids()); err != nil {
		return nil, nil, err
	}
	if gids, err = idMappings(usernsField+".gids", o.GetGids()); err != nil {
		return nil, nil, err
	}
	return uids, gids, nil
}

func idMappings(field string, in []*runtimeapi.IDMapping) ([]specs.LinuxIDMapping, error) {
	if len(in) != 1 {
		return nil, invalid(field, "exactly one mapping is supported, got %d", len(in))
	}
	m := in[0]
	switch {
	case m.GetContainerId() != 0:
		return nil, invalid(field, "the mapping must start at container ID 0, not %d", m.GetContainerId())
	case m.GetLength() == 0:
		return nil, invalid(field, "the mapping length is 0")
	case uint64(m.GetHostId())+uint64(m.GetLength()) > math.MaxUint32:
		return nil, invalid(field, "host IDs %d+%d overflow", m.GetHostId(), m.GetLength())
	}
	return []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.GetHostId(), Size: m.GetLength()}}, nil
}

// withUserNamespace puts s in a user namespace with the given mappings:
// a new one (the pod's sandbox), or the sandbox's (path set).
func withUserNamespace(s *specs.Spec, path string, uids, gids []specs.LinuxIDMapping) {
	if uids == nil {
		return
	}
	setNamespace(s, specs.LinuxNamespace{Type: specs.UserNamespace, Path: path})
	s.Linux.UIDMappings = uids
	s.Linux.GIDMappings = gids
	// sysfs can only be mounted by the user namespace owning the network
	// namespace, which the daemon created: bind the host's instead, read
	// only, as rootless runtimes do.
	for i, m := range s.Mounts {
		if m.Destination == "/sys" && m.Type == "sysfs" {
			s.Mounts[i] = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
		}
	}
}

// sandboxUserNamespacePath is where a container joins its pod's user
// namespace.
func sandboxUserNamespacePath(pid int) (string, error) {
	if pid <= 0 {
		return "", fmt.Errorf("oci: cannot join the sandbox user namespace: sandbox pid unknown")
	}
	return fmt.Sprintf("/proc/%d/ns/user", pid), nil
}

// PodUserNamespace returns the ID mappings of a pod's user namespace, nil
// when the pod uses the host's.
func PodUserNamespace(cfg *runtimeapi.PodSandboxConfig) (uids, gids []specs.LinuxIDMapping, err error) {
	return userNamespace(cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions())
}
