package exepages

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// region is one read-only mapping of the executable.
type region struct {
	start, end uintptr
	// cow: some page of it was copied on write (RELRO data the loader
	// relocated, then made read-only); MADV_DONTNEED would revert it to
	// the file's content.
	cow bool
}

// Evict makes the executable's read-only mappings fault in one page at a
// time and drops their resident pages, returning how many bytes of
// mappings it advised.
//
// MADV_RANDOM turns off read-ahead on faults in these mappings, so a page
// read back from the file lands in a page-sized folio; MADV_PAGEOUT then
// reclaims the pages only this process maps (pages other processes map,
// such as pause processes started from the same file, stay; pages copied
// on write are anonymous and kept without swap). Afterwards the RSS holds
// only the pages the process touches again. Each page touched again costs
// one read from the file once, so call it when the process is past its
// start-up work, not on a hot path; Trim is the cheap repeat.
//
// Writable mappings (data, bss) are left alone.
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

// Trim unmaps the resident pages of the executable's read-only mappings
// (MADV_DONTNEED) and returns how many bytes of mappings it dropped. The
// pages stay in the page cache, shared, and fault back without I/O when
// used. Mappings holding a page copied on write are skipped.
func Trim() (int, error) {
	regions, err := readOnlyRegions()
	if err != nil {
		return 0, err
	}
	return trim(regions)
}

// Mappings are the executable's read-only mappings, found once. They do
// not change once the process runs (a static executable has no loader
// relocating anything later), and a process that trims often saves the
// /proc/self/smaps read each Trim makes: 0.26 ms and 100 KB of garbage.
type Mappings struct{ regions []region }

// ReadOnlyMappings finds the executable's read-only mappings.
func ReadOnlyMappings() (*Mappings, error) {
	regions, err := readOnlyRegions()
	if err != nil {
		return nil, err
	}
	return &Mappings{regions: regions}, nil
}

// Trim is Trim for these mappings.
func (m *Mappings) Trim() (int, error) { return trim(m.regions) }

func trim(regions []region) (int, error) {
	dropped := 0
	for _, r := range regions {
		if r.cow {
			continue
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_DONTNEED); errno != 0 {
			return dropped, fmt.Errorf("madvise(MADV_DONTNEED) %#x: %w", r.start, errno)
		}
		dropped += int(r.end - r.start)
	}
	return dropped, nil
}

// ResidentPages is the process's resident set size, in pages (0 if
// /proc/self/statm cannot be read).
func ResidentPages() int {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// readOnlyRegions lists the mappings of /proc/self/exe that are not
// writable.
func readOnlyRegions() ([]region, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("find the executable: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseSmaps(f, exe)
}

// parseSmaps picks the non-writable mappings of path from text in the
// format of /proc/<pid>/smaps (or maps, which lacks the Anonymous lines).
func parseSmaps(r io.Reader, path string) ([]region, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	var (
		out []region
		cur = -1 // index in out of the mapping whose fields follow
	)
	for sc.Scan() {
		line := sc.Text()
		// A mapping: address perms offset dev inode [path]; the path may
		// hold spaces and ends in " (deleted)" once the file was replaced.
		// Field lines ("Rss:   12 kB") start with a name and a colon.
		fields := strings.SplitN(line, " ", 6)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			cur = -1
			if len(fields) < 6 || strings.TrimLeft(fields[5], " ") != path || strings.Contains(fields[1], "w") {
				continue
			}
			lo, hi, ok := strings.Cut(fields[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if !ok || err1 != nil || err2 != nil || end <= start {
				return nil, fmt.Errorf("smaps line %q: bad address range", line)
			}
			out = append(out, region{start: uintptr(start), end: uintptr(end)})
			cur = len(out) - 1
			continue
		}
		// Private_Dirty is no sign of a copy: it also counts page-cache
		// pages of a freshly written binary not yet written back.
		if cur >= 0 && strings.HasPrefix(line, "Anonymous:") {
			if f := strings.Fields(line); len(f) >= 2 && f[1] != "0" {
				out[cur].cow = true
			}
		}
	}
	return out, sc.Err()
}
