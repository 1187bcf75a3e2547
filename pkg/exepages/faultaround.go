package exepages

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The userfaultfd interface (linux/userfaultfd.h); golang.org/x/sys has
// only the system call's number.
const (
	// uffdUserModeOnly (UFFD_USER_MODE_ONLY) handles faults of user
	// mode only, which needs no CAP_SYS_PTRACE nor
	// vm.unprivileged_userfaultfd.
	uffdUserModeOnly = 1
	uffdAPI          = 0xAA
	// uffdFeatureWPAsync (UFFD_FEATURE_WP_ASYNC, Linux 6.7): the kernel
	// resolves write-protect faults itself, and write-protect mode may be
	// registered on any kind of mapping (file, memfd, anonymous).
	uffdFeatureWPAsync   = 1 << 15
	uffdioAPI            = 0xc018aa3f // _IOWR(0xAA, 0x3F, struct uffdio_api)
	uffdioRegister       = 0xc020aa00 // _IOWR(0xAA, 0x00, struct uffdio_register)
	uffdioRegisterModeWP = 2
)

// uffdioAPIArg is struct uffdio_api.
type uffdioAPIArg struct{ api, features, ioctls uint64 }

// uffdioRegisterArg is struct uffdio_register.
type uffdioRegisterArg struct{ start, len, mode, ioctls uint64 }

// DisableFaultAround makes a fault in the executable's read-only mappings
// map that one page, and returns the file that keeps it so: closing it
// restores the default. Call it once, then Trim (or Evict) to drop what is
// mapped already.
//
// Why: on a read fault in a file mapping the kernel maps the faulting
// page and every cached page around it (fault-around: the aligned 64 KiB,
// on 6.x kernels also whole large folios), even with MADV_RANDOM. A
// process that touches a few scattered pages of a large binary so keeps
// most of its file RSS in pages it never uses: an idle shim had 1.9 MiB
// of its 7 MB binary mapped after every Trim, 0.5–0.7 MiB with this.
//
// How: the only per-mapping switch for fault-around is a userfaultfd
// registration (mm/memory.c: should_fault_around). The mappings are
// registered in write-protect mode with UFFD_FEATURE_WP_ASYNC, where the
// kernel resolves any write-protect fault itself: nothing here is ever
// write-protected and the mappings are read-only, so no fault reaches the
// userfaultfd and nothing reads it. Kernels before 6.7 refuse the feature
// and get an error; the mappings keep the default then.
func DisableFaultAround() (*os.File, error) {
	regions, err := readOnlyRegions()
	if err != nil {
		return nil, err
	}
	if len(regions) == 0 {
		return nil, fmt.Errorf("no read-only mapping of the executable")
	}
	// Blocking, so that os.NewFile does not add it to the poller: it is
	// never read.
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|uffdUserModeOnly, 0, 0)
	if errno != 0 {
		return nil, fmt.Errorf("userfaultfd: %w", errno)
	}
	f := os.NewFile(fd, "userfaultfd")
	api := uffdioAPIArg{api: uffdAPI, features: uffdFeatureWPAsync}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, uffdioAPI, uintptr(unsafe.Pointer(&api))); errno != 0 {
		f.Close()
		return nil, fmt.Errorf("UFFDIO_API with UFFD_FEATURE_WP_ASYNC: %w", errno)
	}
	for _, r := range regions {
		reg := uffdioRegisterArg{start: uint64(r.start), len: uint64(r.end - r.start), mode: uffdioRegisterModeWP}
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, uffdioRegister, uintptr(unsafe.Pointer(&reg))); errno != 0 {
			f.Close()
			return nil, fmt.Errorf("UFFDIO_REGISTER %#x-%#x: %w", r.start, r.end, errno)
		}
	}
	return f, nil
}
