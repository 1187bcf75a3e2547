package main

import (
	"fmt"

	"github.com/containerd/nri/pkg/api"
	"golang.org/x/sys/unix"
)

// hostDevice describes the host's device node at path, to appear at
// ctrPath in the container.
func hostDevice(path, ctrPath string) (*api.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("device %s: %w", path, err)
	}
	typ := ""
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return nil, fmt.Errorf("%s is not a device", path)
	}
	d := &api.LinuxDevice{
		Path:  ctrPath,
		Type:  typ,
		Major: int64(unix.Major(uint64(st.Rdev))),
		Minor: int64(unix.Minor(uint64(st.Rdev))),
	}
	d.FileMode = api.FileMode(st.Mode & 0o777)
	return d, nil
}
