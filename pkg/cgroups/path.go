package cgroups

import (
	"fmt"
	"path"
	"strings"
)

// defaultSystemdSlice is where runc's systemd driver puts a unit whose
// cgroupsPath names no slice; readers must look where runc created it.
const defaultSystemdSlice = "system.slice"

// Resolve turns a cgroups path as the daemon stores it (a container's
// linux.cgroupsPath or a pod's cgroup parent, in either driver's form) into
// the cgroup's directory below the cgroup mount root
// ("/kubepods/burstable/pod<uid>/<id>"). The form says which driver made
// it, so the shim and the stats reader call it without a driver. It
// accepts:
//
//   - a cgroupfs path (linux.cgroupsPath for the cgroupfs driver, or a pod
//     cgroup parent), cleaned and made absolute so that ".." cannot climb
//     out of the hierarchy;
//   - the systemd driver's "slice:prefix:name", which runc places at
//     <expanded slice>/<prefix>-<name>.scope;
//   - a bare systemd slice name ("kubepods-burstable-pod<uid>.slice"), the
//     form kubelet uses for a pod's cgroup parent under the systemd driver.
//
// The translation mirrors runc's, because the cgroup to read is the one
// runc (or systemd on its behalf) created.
func Resolve(cgroupsPath string) (string, error) {
	p := strings.TrimSpace(cgroupsPath)
	if p == "" {
		return "", fmt.Errorf("empty cgroups path")
	}
	if !strings.HasPrefix(p, "/") {
		if parts := strings.Split(p, ":"); len(parts) == 3 {
			return systemdPath(parts[0], parts[1], parts[2])
		}
		if strings.HasSuffix(p, ".slice") && !strings.Contains(p, "/") {
			return expandSlice(p)
		}
	}
	return path.Clean("/" + p), nil
}

// systemdPath resolves runc's "slice:prefix:name" form.
func systemdPath(slice, prefix, name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("systemd cgroups path %q: empty unit name", slice+":"+prefix+":"+name)
	}
	if strings.Contains(name, "/") || strings.Contains(prefix, "/") {
		return "", fmt.Errorf("systemd cgroups path %q: unit name contains '/'", slice+":"+prefix+":"+name)
	}
	if slice == "" {
		slice = defaultSystemdSlice
	}
	dir, err := expandSlice(slice)
	if err != nil {
		return "", err
	}
	return path.Join(dir, unitName(prefix, name)), nil
}

// unitName is the systemd unit runc creates for a container: a scope unless
// the name already is a slice.
func unitName(prefix, name string) string {
	if strings.HasSuffix(name, ".slice") {
		return name
	}
	if prefix == "" {
		return name + ".scope"
	}
	return prefix + "-" + name + ".scope"
}

// expandSlice maps a slice unit name to its cgroup directory: systemd nests
// "a-b-c.slice" as /a.slice/a-b.slice/a-b-c.slice, and "-.slice" is the
// root slice.
func expandSlice(slice string) (string, error) {
	if !strings.HasSuffix(slice, ".slice") || strings.Contains(slice, "/") {
		return "", fmt.Errorf("invalid systemd slice name %q", slice)
	}
	name := strings.TrimSuffix(slice, ".slice")
	if name == "-" {
		return "/", nil
	}
	var b strings.Builder
	prefix := ""
	for _, comp := range strings.Split(name, "-") {
		if comp == "" {
			return "", fmt.Errorf("invalid systemd slice name %q: empty component", slice)
		}
		b.WriteString("/")
		b.WriteString(prefix)
		b.WriteString(comp)
		b.WriteString(".slice")
		prefix += comp + "-"
	}
	return b.String(), nil
}
