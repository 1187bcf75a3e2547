package exepages

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// region is one mapping of the executable.
type region struct{ start, end uintptr }

// Evict makes the executable's read-only mappings fault in one page at a
// time and drops their resident pages, returning how many bytes of
// mappings it advised.
//
// MADV_RANDOM turns off read-ahead on faults in these mappings, so a page
// read back from the file lands in a page-sized folio; MADV_PAGEOUT then
// reclaims the pages only this process maps (pages other processes map,
// such as pause processes started from the same file, stay). Afterwards
// the RSS holds only the pages the process touches again. Each page
// touched again costs one read from the file once, so call it when the
// process is past its start-up work, not on a hot path; calling it again
// only evicts the working set.
//
// Writable mappings (data, and anything copied on write) are left alone.
func Evict() (int, error) {
	regions, err := readOnlyRegions()
	if err != nil {
		return 0, err
	}
	advised := 0
	for _, r := range regions {
		n := r.end - r.start
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, n, unix.MADV_RANDOM); errno != 0 {
			return advised, fmt.Errorf("madvise(MADV_RANDOM) %#x: %w", r.start, errno)
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, n, unix.MADV_PAGEOUT); errno != 0 {
			return advised, fmt.Errorf("madvise(MADV_PAGEOUT) %#x: %w", r.start, errno)
		}
		advised += int(n)
	}
	return advised, nil
}

// readOnlyRegions lists the mappings of /proc/self/exe that are not
// writable.
func readOnlyRegions() ([]region, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("find the executable: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMaps(bufio.NewScanner(f), exe)
}

// parseMaps picks the non-writable mappings of path from lines in the
// format of /proc/<pid>/maps.
func parseMaps(sc *bufio.Scanner, path string) ([]region, error) {
	var out []region
	for sc.Scan() {
		// address perms offset dev inode [path]; the path may hold spaces
		// and ends in " (deleted)" once the file was replaced.
		fields := strings.SplitN(sc.Text(), " ", 6)
		if len(fields) < 6 || strings.TrimLeft(fields[5], " ") != path || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("maps line %q: bad address range", sc.Text())
		}
		out = append(out, region{uintptr(start), uintptr(end)})
	}
	return out, sc.Err()
}
