package shim

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// TrimBinaryPages drops the resident pages of the read-only, file-backed
// mappings of the running executable. The daemon binary's package inits
// (gRPC, protobuf registries) touch megabytes of text and rodata that the
// shim never uses again; they stay in the page cache, shared, and are
// faulted back in if ever needed, but no longer count in the shim's RSS.
// Mappings holding copied-on-write pages (e.g. RELRO data written by the
// loader and then made read-only) are skipped, because MADV_DONTNEED would
// revert them to the file's content.
func TrimBinaryPages() {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		klog.V(2).InfoS("TrimBinaryPages: readlink", "err", err)
		return
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		klog.V(2).InfoS("TrimBinaryPages: open smaps", "err", err)
		return
	}
	type region struct{ start, end uintptr }
	var (
		todo      []region
		cur       region
		candidate bool
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if strings.Contains(fields[0], "-") && len(fields) >= 5 && !strings.HasSuffix(fields[0], ":") {
			if candidate {
				todo = append(todo, cur)
			}
			candidate = false
			lo, hi, ok := strings.Cut(fields[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			perms := fields[1]
			path := ""
			if len(fields) >= 6 {
				path = strings.Join(fields[5:], " ") // keeps " (deleted)"
			}
			if ok && err1 == nil && err2 == nil && path == exe && !strings.Contains(perms, "w") {
				cur, candidate = region{uintptr(start), uintptr(end)}, true
			}
			continue
		}
		// A page copied on write (e.g. RELRO data relocated by the loader)
		// counts as Anonymous and makes the mapping unsafe to drop.
		// Private_Dirty is no signal: it also counts page-cache pages of a
		// freshly written binary that are not yet written back.
		if candidate && fields[0] == "Anonymous:" && len(fields) >= 2 && fields[1] != "0" {
			candidate = false
		}
	}
	if candidate {
		todo = append(todo, cur)
	}
	f.Close()
	var dropped uintptr
	for _, r := range todo {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_DONTNEED); errno != 0 {
			klog.V(2).InfoS("TrimBinaryPages: madvise", "start", r.start, "err", errno)
			continue
		}
		dropped += r.end - r.start
	}
	klog.V(4).InfoS("Trimmed binary pages", "mappings", len(todo), "bytes", dropped)
}
