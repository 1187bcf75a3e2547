package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/exepages"
)

// What the daemon's memory trim watches (memoryTrim), in bytes:
//   - anonymous memory above the lowest level seen since the last trim:
//     the Go heap's garbage and free spans after a burst of work (pod
//     starts, pulls). The Go runtime returns them on its own only after a
//     forced GC (every two minutes) and slowly; a full GC and release
//     returns them at once;
//   - file-backed pages (mostly the binary's, evicted 5 s after the
//     daemon serves) above their level after the last trim: they fault
//     back in one at a time as code runs.
//
// Until fault-around went off for the binary, total RSS grew by 8 MiB
// after any burst through its binary pages alone, and the one trigger on
// total RSS caught the heap's garbage with them; since, the binary's
// pages grow little and the garbage stayed (10.5 against 7.7-8.1 MiB of
// anonymous memory after the e2e churn test).
const (
	memoryTrimAnonGrowth = 2 << 20
	memoryTrimFileGrowth = 8 << 20
)

// memoryTrim decides, at each check (memoryTrimCheck), whether the
// daemon gives memory back. Its anonymous memory is compared with the
// lowest level a check saw since the last trim, not with the level right
// after it: the heap grows back by its GC headroom with any work, and a
// busy node's steady level must not trim at every check.
type memoryTrim struct {
	// usage reads the resident anonymous and file-backed pages.
	usage func() (anon, file int)
	// freeHeap runs a full GC and returns the free heap to the kernel;
	// trimBinary unmaps the binary's resident pages (they stay cached).
	freeHeap, trimBinary func()

	armed   bool // set once the binary's pages were evicted
	anonLow int  // lowest anonymous pages a check saw since the last trim; 0: none yet
	fileAt  int  // file pages after the last trim or the eviction
}

// newMemoryTrim watches the daemon's own memory.
func newMemoryTrim() *memoryTrim {
	return &memoryTrim{
		usage:    residentPages,
		freeHeap: debug.FreeOSMemory,
		trimBinary: func() {
			if _, err := exepages.Trim(); err != nil {
				klog.ErrorS(err, "Trimming the binary's resident pages")
			}
		},
	}
}

// evicted arms the trim: the binary's pages were just evicted.
func (m *memoryTrim) evicted() {
	_, m.fileAt = m.usage()
	m.anonLow = 0
	m.armed = true
}

// check trims if the memory grew, and says what it did.
func (m *memoryTrim) check() (heap, binary bool) {
	if !m.armed {
		return false, false
	}
	anon, file := m.usage()
	page := os.Getpagesize()
	if m.anonLow == 0 || anon < m.anonLow {
		m.anonLow = anon
	}
	heap = anon >= m.anonLow+memoryTrimAnonGrowth/page
	binary = file >= m.fileAt+memoryTrimFileGrowth/page
	if !heap && !binary {
		return false, false
	}
	// The GC first, in both cases: it reads the binary's function tables
	// for every goroutine's stack, which the binary's trim then unmaps.
	m.freeHeap()
	if binary {
		m.trimBinary()
	}
	anonAfter, fileAfter := m.usage()
	klog.V(2).InfoS("Trimmed memory", "anonBytes", anon*page, "anonAfterBytes", anonAfter*page,
		"fileBytes", file*page, "fileAfterBytes", fileAfter*page, "binary", binary)
	m.fileAt = fileAfter
	m.anonLow = 0
	return true, binary
}

// residentPages reads the process's resident anonymous and file-backed
// (with shared memory) pages from /proc/self/statm: resident minus shared,
// and shared. Zero when it cannot be read.
func residentPages() (anon, file int) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0, 0
	}
	resident, _ := strconv.Atoi(f[1])
	shared, _ := strconv.Atoi(f[2])
	return max(resident-shared, 0), shared
}
