package main

import (
	"os"
	"runtime"
	"testing"
)

// TestMemoryTrimDecisions: the trim follows anonymous growth above the
// lowest level seen since the last trim (not the level right after it,
// which the heap's GC headroom exceeds at once) and the binary's pages'
// growth above their level after the last trim; it does nothing before
// the eviction arms it.
func TestMemoryTrimDecisions(t *testing.T) {
	mib := (1 << 20) / os.Getpagesize()
	type step struct {
		anon, file   int // MiB read at the check
		after        [2]int
		heap, binary bool
	}
	for _, tc := range []struct {
		name  string
		armed bool
		steps []step
	}{
		{"not armed", false, []step{{anon: 50, file: 50}}},
		{"quiet node", true, []step{
			{anon: 6, file: 6}, {anon: 7, file: 6}, {anon: 7, file: 7}, {anon: 6, file: 6}, {anon: 7, file: 7},
		}},
		{"burst of garbage", true, []step{
			{anon: 6, file: 6},
			{anon: 9, file: 7, after: [2]int{6, 7}, heap: true},
			// The first check after a trim sets the level; the heap's
			// headroom comes back without a trim.
			{anon: 8, file: 7}, {anon: 7, file: 7}, {anon: 8, file: 7},
			{anon: 9, file: 7, after: [2]int{6, 7}, heap: true},
		}},
		{"binary pages", true, []step{
			{anon: 6, file: 12}, // the eviction left 5
			{anon: 6, file: 13, after: [2]int{6, 5}, heap: true, binary: true},
			{anon: 6, file: 12}, {anon: 6, file: 13, after: [2]int{6, 5}, heap: true, binary: true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var anon, file int
			var calls []string
			m := &memoryTrim{
				usage:      func() (int, int) { return anon, file },
				freeHeap:   func() { calls = append(calls, "heap") },
				trimBinary: func() { calls = append(calls, "binary") },
			}
			if tc.armed {
				anon, file = 6*mib, 5*mib
				m.evicted()
			}
			for i, s := range tc.steps {
				anon, file = s.anon*mib, s.file*mib
				calls = nil
				usage := m.usage
				if s.heap {
					// What the trim leaves, read after it.
					m.usage = func() (int, int) {
						if len(calls) == 0 {
							return anon, file
						}
						return s.after[0] * mib, s.after[1] * mib
					}
				}
				heap, binary := m.check()
				m.usage = usage
				if heap != s.heap || binary != s.binary {
					t.Errorf("check %d (anon %d MiB, file %d MiB): heap %v binary %v, want %v %v", i, s.anon, s.file, heap, binary, s.heap, s.binary)
				}
				want := []string{}
				if s.heap {
					want = append(want, "heap")
				}
				if s.binary {
					want = append(want, "binary")
				}
				if len(calls) != len(want) || (len(want) > 0 && calls[0] != want[0]) || (len(want) > 1 && calls[1] != want[1]) {
					t.Errorf("check %d: calls %v, want %v (the GC before the binary's trim)", i, calls, want)
				}
			}
		})
	}
}

// garbage keeps the test's allocation from being optimised away.
var garbage [][]byte

// TestMemoryTrimReturnsGarbage: with the process's own memory, a burst of
// garbage above the level of the first check is returned to the kernel
// by the next, though the process's RSS grew by less than the 8 MiB the
// trim used to wait for.
func TestMemoryTrimReturnsGarbage(t *testing.T) {
	m := newMemoryTrim()
	m.trimBinary = func() {} // the test binary's pages are not the point
	runtime.GC()
	m.evicted()
	m.check() // the level
	for range 6 {
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = 1
		}
		garbage = append(garbage, b)
	}
	garbage = nil
	runtime.GC() // garbage now, and free heap the runtime keeps
	before, _ := residentPages()
	heap, _ := m.check()
	after, _ := residentPages()
	mib := (1 << 20) / os.Getpagesize()
	if !heap || after > before-3*mib {
		t.Errorf("after a 6 MiB burst: trimmed %v, anonymous memory %d -> %d KiB, want at least 3 MiB returned", heap, before*os.Getpagesize()>>10, after*os.Getpagesize()>>10)
	}
}
