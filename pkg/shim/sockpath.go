package shim

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maxSockPath is sun_path's 108 bytes less the terminating NUL.
const maxSockPath = 107

// socketPath returns a name for dir/name that fits in a unix socket
// address, and a func releasing what it holds. A long state directory
// (the pod ID alone is 64 characters) is reached through an O_PATH file
// descriptor of the directory as /proc/<pid>/fd/<fd>/name, which resolves
// to the same file for this process (and, being root, for any other).
func socketPath(dir, name string) (string, func(), error) {
	p := filepath.Join(dir, name)
	if len(p) <= maxSockPath {
		return p, func() {}, nil
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("open %s: %w", dir, err)
	}
	short := fmt.Sprintf("/proc/%d/fd/%d/%s", os.Getpid(), fd, name)
	if len(short) > maxSockPath {
		unix.Close(fd)
		return "", nil, fmt.Errorf("socket name %q is too long", name)
	}
	return short, func() { unix.Close(fd) }, nil
}
