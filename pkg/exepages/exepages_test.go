package exepages

import (
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestParseSmaps(t *testing.T) {
	const exe = "/usr/bin/cri runtimed"
	tests := []struct {
		name  string
		smaps string
		want  []region
	}{
		{
			name: "text and rodata, not data, heap or other files",
			smaps: `00400000-00fb2000 r-xp 00000000 fd:00 123   /usr/bin/cri runtimed
Rss:                7448 kB
Anonymous:             0 kB
00fb2000-01c39000 r--p 00bb2000 fd:00 123   /usr/bin/cri runtimed
Anonymous:             0 kB
01c39000-01c3d000 rw-p 01839000 fd:00 123   /usr/bin/cri runtimed
Anonymous:            16 kB
01c3d000-01c60000 rw-p 00000000 00:00 0     [heap]
7f0000000000-7f0000001000 r--p 00000000 fd:00 99    /usr/lib/other
`,
			want: []region{{start: 0x400000, end: 0xfb2000}, {start: 0xfb2000, end: 0x1c39000}},
		},
		{
			name: "a read-only mapping with a page copied on write",
			smaps: `00400000-00401000 r--p 00000000 fd:00 123 /usr/bin/cri runtimed
Anonymous:             4 kB
00401000-00402000 r-xp 00001000 fd:00 123 /usr/bin/cri runtimed
Anonymous:             0 kB
`,
			want: []region{{start: 0x400000, end: 0x401000, cow: true}, {start: 0x401000, end: 0x402000}},
		},
		{
			name:  "anonymous mappings have no path",
			smaps: "c000000000-c004000000 rw-p 00000000 00:00 0 \nAnonymous:  4 kB\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSmaps(strings.NewReader(tt.smaps), exe)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
	if _, err := parseSmaps(strings.NewReader("zz-00 r--p 0 fd:00 1 "+exe+"\n"), exe); err == nil {
		t.Error("a bad address range was accepted")
	}
}

// exeMappings sums Rss over the executable's read-only mappings and says
// whether every one of them carries flag in VmFlags ("rr": MADV_RANDOM,
// "uw": registered with a userfaultfd in write-protect mode).
func exeMappings(t *testing.T, flag string) (rssKB int, all bool) {
	t.Helper()
	regions, err := readOnlyRegions()
	if err != nil || len(regions) == 0 {
		t.Fatalf("read-only mappings of the executable: %v %v", regions, err)
	}
	in := map[string]bool{}
	for _, r := range regions {
		in[strconv.FormatUint(uint64(r.start), 16)] = true
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	all = true
	cur := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			lo, _, _ := strings.Cut(f[0], "-")
			cur = in[strings.TrimLeft(lo, "0")]
		case cur && len(f) >= 2 && f[0] == "Rss:":
			n, _ := strconv.Atoi(f[1])
			rssKB += n
		case cur && f != nil && f[0] == "VmFlags:":
			all = all && strings.Contains(line+" ", " "+flag+" ")
		}
	}
	return rssKB, all
}

func TestEvict(t *testing.T) {
	// The test binary was just written: its pages must be clean to be
	// reclaimed, as an installed binary's are.
	if f, err := os.Open("/proc/self/exe"); err == nil {
		_ = f.Sync()
		f.Close()
	}
	before, _ := exeMappings(t, "rr")
	n, err := Evict()
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("Evict advised no mapping")
	}
	after, random := exeMappings(t, "rr")
	if !random {
		t.Error("a read-only mapping of the executable lacks MADV_RANDOM after Evict")
	}
	checkShrank(t, before, after)
}

// checkShrank fails t unless the executable's resident read-only pages
// (KiB, from exeMappings) shrank from before to after.
func checkShrank(t *testing.T, before, after int) {
	t.Helper()
	t.Logf("resident read-only pages of the executable: %d KiB before, %d KiB after", before, after)
	if after >= before {
		t.Errorf("resident read-only pages of the executable did not shrink: %d KiB before, %d KiB after", before, after)
	}
}

func TestTrim(t *testing.T) {
	if f, err := os.Open("/proc/self/exe"); err == nil {
		_ = f.Sync()
		f.Close()
	}
	m, err := ReadOnlyMappings()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		trim func() (int, error)
	}{
		{"Trim", Trim},
		{"Mappings.Trim", m.Trim},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Fault the executable's pages in again after any earlier test.
			if _, err := os.ReadFile("/proc/self/exe"); err != nil {
				t.Fatal(err)
			}
			runtime.GC()
			before, _ := exeMappings(t, "")
			n, err := tc.trim()
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Fatal("no mapping dropped")
			}
			after, _ := exeMappings(t, "")
			checkShrank(t, before, after)
		})
	}
	if ResidentPages() <= 0 {
		t.Error("ResidentPages() is not positive")
	}
}

func TestDisableFaultAround(t *testing.T) {
	// The same work after each Trim: a GC (it reads the function tables of
	// every stack) and the read of smaps. What it maps back is what the
	// work touched, plus what fault-around maps beside it. Fault-around
	// maps only pages in the page cache (TestEvict dropped some): reading
	// the executable puts them all there.
	afterWork := func(flag string) (int, bool) {
		t.Helper()
		if _, err := os.ReadFile("/proc/self/exe"); err != nil {
			t.Fatal(err)
		}
		if _, err := Trim(); err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		return exeMappings(t, flag)
	}
	afterWork("")
	withFaultAround, _ := afterWork("")
	f, err := DisableFaultAround()
	if err != nil {
		t.Fatal(err)
	}
	pageByPage, registered := afterWork("uw")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	_, stillRegistered := afterWork("uw")
	t.Logf("read-only pages of the executable mapped by the same work: %d KiB with fault-around, %d KiB without", withFaultAround, pageByPage)
	if !registered {
		t.Error("a read-only mapping of the executable is not registered with the userfaultfd")
	}
	if stillRegistered {
		t.Error("closing the userfaultfd left a mapping registered")
	}
	// Fault-around maps 16 pages for one; half is a wide margin.
	if pageByPage*2 > withFaultAround {
		t.Errorf("the same work mapped %d KiB page by page, %d KiB with fault-around: not less than half", pageByPage, withFaultAround)
	}
}
