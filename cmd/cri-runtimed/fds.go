package main

import (
	"errors"
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// closeOnExecInherited marks every fd above stderr close-on-exec. The
// daemon opens all its own fds that way, but whatever started it (a
// supervisor, an operator's shell, `make`) may have left fds open
// without it, and each would pass on to every shim, CNI plugin and
// runtime the daemon starts, for as long as they live. The daemon keeps
// them itself: they are not its to close.
func closeOnExecInherited() error {
	err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) {
		return err
	}
	// Before Linux 5.11 there is no CLOSE_RANGE_CLOEXEC.
	return closeOnExecFromProc()
}

// closeOnExecFromProc does what closeOnExecInherited does one fd at a
// time, listed in /proc.
func closeOnExecFromProc() error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		// The directory's own fd is gone by now: EBADF is not an error.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && !errors.Is(err, unix.EBADF) {
			return err
		}
	}
	return nil
}
