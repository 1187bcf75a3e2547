package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// errNotDevice is returned by a device stat for a file that is not a
// device node; directories are walked, other files skipped.
var errNotDevice = errors.New("not a device node")

// hostIO is the host I/O ContainerSpec needs besides the rootfs; tests
// replace it so they run without real devices.
type hostIO struct {
	// statDevice describes the device node at a host path, following
	// symlinks (kubelet and device plugins often name /dev/disk/by-id/...).
	// isDir is true for a directory; other non-device files give
	// errNotDevice.
	statDevice func(hostPath string) (specs.LinuxDevice, bool, error)
	// readDir lists a host directory for device directories such as /dev/snd.
	readDir func(dir string) ([]string, error)
	// readProfile reads a Localhost seccomp profile from the node.
	readProfile func(path string) ([]byte, error)
	// apparmor, selinux, cgroup2 and hugetlb report host features; nil
	// means off.
	apparmor, selinux, cgroup2, hugetlb func() bool
	// grantable lists the capabilities the node can hand out; nil means
	// GrantableCapabilities.
	grantable func() []string
}

func (h hostIO) grantableCaps() []string {
	if h.grantable == nil {
		return GrantableCapabilities()
	}
	return h.grantable()
}

func realHostIO() hostIO {
	return hostIO{
		statDevice:  statDevice,
		readDir:     readDirNames,
		readProfile: readProfileFile,
		apparmor:    AppArmorEnabled,
		selinux:     SELinuxEnabled,
		cgroup2:     CgroupV2,
		hugetlb:     HugetlbController,
	}
}

func (h hostIO) apparmorEnabled() bool { return h.apparmor != nil && h.apparmor() }
func (h hostIO) selinuxEnabled() bool  { return h.selinux != nil && h.selinux() }
func (h hostIO) cgroupV2() bool        { return h.cgroup2 != nil && h.cgroup2() }

// cgroups is what linuxResources needs to know of the host's cgroups.
func (h hostIO) cgroups() cgroupFeatures {
	return cgroupFeatures{v2: h.cgroupV2(), hugetlb: h.hugetlb != nil && h.hugetlb()}
}

// statDevice stats p. isDir is true for a directory; a file that is
// neither a directory nor a device node gives errNotDevice.
func statDevice(p string) (dev specs.LinuxDevice, isDir bool, err error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return dev, false, err
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return dev, true, nil
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	case unix.S_IFIFO:
		typ = "p"
	default:
		return dev, false, errNotDevice
	}
	mode := fs.FileMode(st.Mode & 0o777)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{
		Path:     p,
		Type:     typ,
		Major:    int64(unix.Major(uint64(st.Rdev))), //nolint:unconvert // Rdev's type differs by arch
		Minor:    int64(unix.Minor(uint64(st.Rdev))), //nolint:unconvert
		FileMode: &mode,
		UID:      &uid,
		GID:      &gid,
	}, false, nil
}

func readDirNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// validPermissions checks a CRI device permission string ("rwm" subset).
func validPermissions(p string) bool {
	if p == "" {
		return false
	}
	for _, c := range p {
		if !strings.ContainsRune("rwm", c) {
			return false
		}
	}
	return true
}

// criDevices resolves CRI devices into spec devices and the cgroup rules
// that allow them. A host directory (e.g. /dev/snd) brings every device
// below it, placed under container_path.
func (h hostIO) criDevices(devs []*runtimeapi.Device) ([]specs.LinuxDevice, []specs.LinuxDeviceCgroup, error) {
	var out []specs.LinuxDevice
	var rules []specs.LinuxDeviceCgroup
	for i, d := range devs {
		field := fmt.Sprintf("devices[%d]", i)
		if d == nil {
			return nil, nil, invalid(field, "null device")
		}
		perms := d.GetPermissions()
		if perms == "" {
			perms = defaultDevicePermissions
		}
		if !validPermissions(perms) {
			return nil, nil, invalid(field+".permissions", "%q is not a subset of \"rwm\"", d.GetPermissions())
		}
		host, ctr := d.GetHostPath(), d.GetContainerPath()
		if !path.IsAbs(host) {
			return nil, nil, invalid(field+".host_path", "%q is not absolute", host)
		}
		if ctr == "" {
			ctr = host
		}
		if !path.IsAbs(ctr) {
			return nil, nil, invalid(field+".container_path", "%q is not absolute", ctr)
		}
		found, err := h.walkDevices(path.Clean(host), path.Clean(ctr), 0)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.host_path %q: %w", field, host, err)
		}
		if len(found) == 0 {
			return nil, nil, fmt.Errorf("%s.host_path %q: no device nodes found", field, host)
		}
		for _, dev := range found {
			major, minor := dev.Major, dev.Minor
			rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: dev.Type, Major: &major, Minor: &minor, Access: perms})
			out = append(out, dev)
		}
	}
	return out, rules, nil
}

// maxDeviceDepth bounds directory recursion (device trees are shallow; a
// symlink loop must not spin forever).
const maxDeviceDepth = 8

func (h hostIO) walkDevices(host, ctr string, depth int) ([]specs.LinuxDevice, error) {
	dev, isDir, err := h.statDevice(host)
	if err != nil {
		return nil, err
	}
	if !isDir {
		dev.Path = ctr
		return []specs.LinuxDevice{dev}, nil
	}
	if depth >= maxDeviceDepth {
		return nil, nil
	}
	names, err := h.readDir(host)
	if err != nil {
		return nil, err
	}
	var out []specs.LinuxDevice
	for _, n := range names {
		sub, err := h.walkDevices(filepath.Join(host, n), path.Join(ctr, n), depth+1)
		if errors.Is(err, errNotDevice) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sub...)
	}
	return out, nil
}

// hostDevices lists every device node under the host's /dev for a
// privileged container, as Docker does for --privileged; pseudo-terminal
// and shm trees are skipped because the container gets its own.
func (h hostIO) hostDevices() ([]specs.LinuxDevice, error) {
	names, err := h.readDir("/dev")
	if err != nil {
		return nil, fmt.Errorf("oci: list host devices: %w", err)
	}
	var out []specs.LinuxDevice
	for _, n := range names {
		switch n {
		case "pts", "shm", "mqueue", "fd", "stdin", "stdout", "stderr", "console", "ptmx", "core":
			continue
		}
		p := path.Join("/dev", n)
		devs, err := h.walkDevices(p, p, 1)
		if errors.Is(err, errNotDevice) || errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("oci: host device %s: %w", p, err)
		}
		out = append(out, devs...)
	}
	return out, nil
}
