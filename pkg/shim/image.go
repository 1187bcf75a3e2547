package shim

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Image is a sealed in-memory copy of the binary that shims are started
// from: cri-runtimed-shim, or the daemon's own when that is missing.
//
// Why (measured with the daemon's binary): a shim ran from the same 16 MB
// binary as the daemon, whose page cache the daemon fills with large
// folios; every page a shim touches then maps a whole folio (up to 2 MB)
// into it, and its RSS stays near 12 MB even after exepages.Trim. Pages
// of a memfd are mapped one at a time, so a shim's RSS is what it really
// uses (about 5 MB). The copy costs the node one binary's worth of
// memory, shared by every shim.
type Image struct {
	f *os.File
}

// NewImage copies the executable at src into a sealed memfd.
func NewImage(src string) (*Image, error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	fd, err := unix.MemfdCreate("cri-runtimed", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:cri-runtimed")
	if _, err := io.Copy(f, in); err != nil {
		f.Close()
		return nil, fmt.Errorf("copy %s into memfd: %w", src, err)
	}
	// Sealed, the copy cannot be changed under running shims.
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal memfd: %w", err)
	}
	return &Image{f: f}, nil
}

// Path is an executable path to the copy, valid while the Image is open.
func (i *Image) Path() string {
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), i.f.Fd())
}

// Close releases the daemon's reference; running shims keep theirs.
func (i *Image) Close() error { return i.f.Close() }
