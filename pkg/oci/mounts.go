package oci

import (
	"fmt"
	"path"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	etcHostname   = "/etc/hostname"
	etcHosts      = "/etc/hosts"
	etcResolvConf = "/etc/resolv.conf"
	devShm        = "/dev/shm"
)

// defaultMounts are the kernel filesystems every container gets. sysfs and
// the cgroup filesystem are read-only unless privileged: writing them
// reconfigures the host.
func defaultMounts(privileged bool) []specs.Mount {
	ro := "ro"
	if privileged {
		ro = "rw"
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: devShm, Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", ro}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", ro}},
	}
}

// propagationOption maps CRI propagation to the recursive bind option and
// the rootfs propagation it needs: a shared mount inside a private rootfs
// would not propagate anything.
func propagationOption(p runtimeapi.MountPropagation) (opt, rootfs string, err error) {
	switch p {
	case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
		return "rprivate", "", nil
	case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
		return "rslave", "rslave", nil
	case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		return "rshared", "rshared", nil
	}
	return "", "", fmt.Errorf("unknown propagation %d", p)
}

// criMounts converts CRI mounts into bind mounts. It returns the rootfs
// propagation the mounts need ("" when private is fine).
//
// Host paths are taken as given: kubelet creates them, and a missing one
// makes runc fail with a clear error. SELinux relabeling is the caller's
// business (selinux_relabel is ignored here).
func criMounts(ms []*runtimeapi.Mount) ([]specs.Mount, string, error) {
	var out []specs.Mount
	rootProp := ""
	seen := map[string]int{}
	for i, m := range ms {
		field := fmt.Sprintf("mounts[%d]", i)
		if m == nil {
			return nil, "", invalid(field, "null mount")
		}
		dst := m.GetContainerPath()
		if !path.IsAbs(dst) {
			return nil, "", invalid(field+".container_path", "%q is not absolute", dst)
		}
		dst = path.Clean(dst)
		if dst == "/" {
			return nil, "", invalid(field+".container_path", "cannot mount over the root filesystem")
		}
		if j, dup := seen[dst]; dup {
			return nil, "", invalid(field+".container_path", "%q is also the target of mounts[%d]", dst, j)
		}
		seen[dst] = i
		src := m.GetHostPath()
		if src == "" {
			if m.GetImage() != nil {
				// The image must be pulled and mounted by the caller, who
				// then passes that mount as host_path.
				return nil, "", invalid(field+".image", "image volumes need the caller to resolve host_path")
			}
			return nil, "", invalid(field+".host_path", "empty")
		}
		if !path.IsAbs(src) {
			return nil, "", invalid(field+".host_path", "%q is not absolute", src)
		}
		prop, rp, err := propagationOption(m.GetPropagation())
		if err != nil {
			return nil, "", invalid(field+".propagation", "%v", err)
		}
		switch {
		case rp == "rshared":
			rootProp = "rshared"
		case rp == "rslave" && rootProp == "":
			rootProp = "rslave"
		}
		opts := []string{"rbind", prop}
		if m.GetReadonly() {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		if m.GetImage().GetImage() != "" {
			// An image volume (KEP-4639): read-only, and nothing in it
			// runs or acts as a device.
			if !m.GetReadonly() {
				return nil, "", invalid(field+".readonly", "an image volume is read-only")
			}
			opts = append(opts, "nosuid", "nodev", "noexec")
		}
		if m.GetRecursiveReadOnly() {
			if !m.GetReadonly() {
				return nil, "", invalid(field+".recursive_read_only", "needs readonly")
			}
			if m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				return nil, "", invalid(field+".recursive_read_only", "needs PROPAGATION_PRIVATE, got %s", m.GetPropagation())
			}
			// runc applies "rro" with mount_setattr(AT_RECURSIVE), so
			// submounts of the volume are read-only too.
			opts = append(opts, "rro")
		}
		for j, o := range m.GetMountOptions() {
			if o == "" || strings.ContainsAny(o, ",\x00") {
				return nil, "", invalid(fmt.Sprintf("%s.mount_options[%d]", field, j), "%q is not a single mount option", o)
			}
			if !slices.Contains(opts, o) {
				opts = append(opts, o)
			}
		}
		sm := specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts}
		for _, id := range m.GetUidMappings() {
			sm.UIDMappings = append(sm.UIDMappings, specs.LinuxIDMapping{ContainerID: id.GetContainerId(), HostID: id.GetHostId(), Size: id.GetLength()})
		}
		for _, id := range m.GetGidMappings() {
			sm.GIDMappings = append(sm.GIDMappings, specs.LinuxIDMapping{ContainerID: id.GetContainerId(), HostID: id.GetHostId(), Size: id.GetLength()})
		}
		out = append(out, sm)
	}
	return out, rootProp, nil
}

// mergeMounts puts user mounts over defaults: a default at a destination
// a user mount takes is dropped so nothing is mounted twice. A user mount
// of /dev (privileged tooling binds the host's) also drops the default
// mounts below /dev, as Docker does: a devpts or mqueue instance on top of
// the host's /dev is not what such a container asked for. Defaults below
// other user mounts stay (the pod's /etc/hosts over an /etc volume).
func mergeMounts(defaults, user []specs.Mount) []specs.Mount {
	userDev := slices.ContainsFunc(user, func(u specs.Mount) bool { return u.Destination == "/dev" })
	out := make([]specs.Mount, 0, len(defaults)+len(user))
	for _, d := range defaults {
		dst := path.Clean(d.Destination)
		shadowed := slices.ContainsFunc(user, func(u specs.Mount) bool { return u.Destination == dst }) ||
			(userDev && hasPrefixDir(dst, "/dev"))
		if !shadowed {
			out = append(out, d)
		}
	}
	return append(out, user...)
}

// sortMounts orders mounts so a parent directory is mounted before
// anything below it; otherwise the parent would hide the child. The sort
// is stable so mounts at the same depth keep their given order.
func sortMounts(ms []specs.Mount) {
	depth := func(p string) int {
		p = path.Clean(p)
		if p == "/" {
			return 0
		}
		return strings.Count(p, "/")
	}
	slices.SortStableFunc(ms, func(a, b specs.Mount) int {
		return depth(a.Destination) - depth(b.Destination)
	})
}
