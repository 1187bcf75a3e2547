package stats

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeTree creates files (path relative to root -> content).
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fakeV1 is a cgroup v1 tree for the cgroup at p with the given memory
// limit and usage figures.
func fakeV1(p string, usage, inactiveFile, limit uint64, swap bool) map[string]string {
	u := strconv.FormatUint
	files := map[string]string{
		"cpu/" + p + "/cpu.stat":                 "nr_periods 10\nnr_throttled 2\nthrottled_time 5000\n",
		"cpuacct/" + p + "/cpuacct.usage":        "3000000000\n",
		"cpuacct/" + p + "/cpuacct.usage_percpu": "1000000000 2000000000\n",
		"cpuacct/" + p + "/cpuacct.stat":         "user 100\nsystem 50\n",
		"memory/" + p + "/memory.stat": "cache 10\nrss 20\ntotal_cache 4096\ntotal_rss 8192\ntotal_mapped_file 1024\n" +
			"total_inactive_file " + u(inactiveFile, 10) + "\ntotal_pgfault 77\ntotal_pgmajfault 3\n",
		"memory/" + p + "/memory.oom_control":        "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
		"memory/" + p + "/memory.usage_in_bytes":     u(usage, 10) + "\n",
		"memory/" + p + "/memory.max_usage_in_bytes": u(usage+100, 10) + "\n",
		"memory/" + p + "/memory.failcnt":            "0\n",
		"memory/" + p + "/memory.limit_in_bytes":     u(limit, 10) + "\n",
		"pids/" + p + "/pids.current":                "7\n",
		"pids/" + p + "/pids.max":                    "max\n",
		"pids/" + p + "/cgroup.procs":                "10\n11\n",
		"memory/memory.usage_in_bytes":               "1\n",
		"cpu/cpu.stat":                               "",
		"cpuacct/cpuacct.usage":                      "0\n",
		"pids/pids.current":                          "0\n",
	}
	// The memsw files exist only with swap accounting.
	if swap {
		files["memory/memory.memsw.usage_in_bytes"] = "1\n"
		files["memory/"+p+"/memory.memsw.usage_in_bytes"] = u(usage+500, 10) + "\n"
		for _, f := range []string{"max_usage_in_bytes", "failcnt"} {
			files["memory/"+p+"/memory.memsw."+f] = "0\n"
		}
		files["memory/"+p+"/memory.memsw.limit_in_bytes"] = u(limit+1000, 10) + "\n"
	}
	return files
}

func fakeV2(p string, usage, inactiveFile uint64, limit string) map[string]string {
	u := strconv.FormatUint
	return map[string]string{
		p + "/cpu.stat":            "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\nnr_periods 10\nnr_throttled 2\nthrottled_usec 5\n",
		p + "/cpu.pressure":        "some avg10=1.50 avg60=0.00 avg300=0.00 total=100\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=40\n",
		p + "/memory.stat":         "anon 8192\nfile 4096\nfile_mapped 1024\ninactive_file " + u(inactiveFile, 10) + "\npgfault 77\npgmajfault 3\n",
		p + "/memory.current":      u(usage, 10) + "\n",
		p + "/memory.max":          limit + "\n",
		p + "/memory.peak":         u(usage+100, 10) + "\n",
		p + "/memory.swap.current": "500\n",
		p + "/memory.swap.max":     "max\n",
		p + "/memory.events":       "low 0\nhigh 0\nmax 1\noom 1\noom_kill 4\n",
		p + "/io.stat":             "254:0 rbytes=4096 wbytes=5242880 rios=1 wios=40 dbytes=0 dios=0\n7:1 rbytes=512 wbytes=0 rios=2 wios=0 dbytes=0 dios=0\n",
		p + "/io.pressure":         "some avg10=0.00 avg60=0.00 avg300=0.00 total=7\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=3\n",
		p + "/pids.current":        "7\n",
		p + "/pids.max":            "100\n",
		p + "/cgroup.procs":        "10\n11\n",
	}
}

func TestFakeCgroup(t *testing.T) {
	const p = "kubepods/pod1/ctr"
	tests := []struct {
		name  string
		mode  Mode
		files map[string]string
		check func(t *testing.T, s CgroupStats)
	}{
		{
			name:  "v1 limited with swap accounting",
			mode:  ModeV1,
			files: fakeV1(p, 100000, 30000, 200000, true),
			check: func(t *testing.T, s CgroupStats) {
				eq(t, "usage core ns", s.CPU.UsageCoreNanoSeconds, 3000000000)
				eq(t, "throttled periods", s.CPU.ThrottledPeriods, 2)
				eq(t, "throttled ns", s.CPU.ThrottledNanoSeconds, 5000)
				if s.CPU.UserNanoSeconds == 0 || s.CPU.SystemNanoSeconds == 0 {
					t.Errorf("user/system = %d/%d, want both > 0", s.CPU.UserNanoSeconds, s.CPU.SystemNanoSeconds)
				}
				eq(t, "usage", s.Memory.UsageBytes, 100000)
				eq(t, "working set", s.Memory.WorkingSetBytes, 70000)
				eq(t, "limit", s.Memory.LimitBytes, 200000)
				eq(t, "available", s.Memory.AvailableBytes, 130000)
				eq(t, "rss", s.Memory.RSSBytes, 8192)
				eq(t, "cache", s.Memory.CacheBytes, 4096)
				eq(t, "mapped", s.Memory.MappedFileBytes, 1024)
				eq(t, "swap", s.Memory.SwapBytes, 500)
				eq(t, "swap limit", s.Memory.SwapLimitBytes, 1000)
				eq(t, "pgfault", s.Memory.PageFaults, 77)
				eq(t, "pgmajfault", s.Memory.MajorPageFaults, 3)
				eq(t, "oom kills", s.Memory.OOMKills, 4)
				eq(t, "pids", s.Pids.Current, 7)
				eq(t, "pids limit (max)", s.Pids.Limit, 0)
				eq(t, "processes", s.Processes, 2)
				if s.CPUPressure != nil {
					t.Errorf("v1 has no PSI, got %+v", s.CPUPressure)
				}
			},
		},
		{
			name:  "v1 unlimited without swap accounting",
			mode:  ModeV1,
			files: fakeV1(p, 100000, 200000, 9223372036854771712, false),
			check: func(t *testing.T, s CgroupStats) {
				eq(t, "working set floors at 0", s.Memory.WorkingSetBytes, 0)
				eq(t, "limit", s.Memory.LimitBytes, 0)
				eq(t, "available", s.Memory.AvailableBytes, 0)
				eq(t, "swap", s.Memory.SwapBytes, 0)
			},
		},
		{
			name:  "v2 unlimited",
			mode:  ModeV2,
			files: fakeV2(p, 100000, 30000, "max"),
			check: func(t *testing.T, s CgroupStats) {
				eq(t, "usage core ns", s.CPU.UsageCoreNanoSeconds, 3000000000)
				eq(t, "user ns", s.CPU.UserNanoSeconds, 2000000000)
				eq(t, "throttled ns", s.CPU.ThrottledNanoSeconds, 5000)
				eq(t, "working set", s.Memory.WorkingSetBytes, 70000)
				eq(t, "limit", s.Memory.LimitBytes, 0)
				eq(t, "available", s.Memory.AvailableBytes, 0)
				eq(t, "swap", s.Memory.SwapBytes, 500)
				eq(t, "swap limit", s.Memory.SwapLimitBytes, 0)
				eq(t, "oom kills", s.Memory.OOMKills, 4)
				eq(t, "pids limit", s.Pids.Limit, 100)
				eq(t, "processes", s.Processes, 2)
				if s.CPUPressure == nil || s.CPUPressure.Some.TotalNanoSeconds != 100000 || s.CPUPressure.Some.Avg10 != 1.5 {
					t.Errorf("cpu pressure = %+v, want some total 100000ns avg10 1.5", s.CPUPressure)
				}
				if s.IOPressure == nil || s.IOPressure.Full.TotalNanoSeconds != 3000 {
					t.Errorf("io pressure = %+v, want full total 3000ns", s.IOPressure)
				}
				want := []IOStats{
					{Major: 254, Minor: 0, Device: "/dev/vda", ReadBytes: 4096, WriteBytes: 5242880, Reads: 1, Writes: 40},
					{Major: 7, Minor: 1, Device: "7:1", ReadBytes: 512, Reads: 2},
				}
				if !slices.Equal(s.IO, want) {
					t.Errorf("io = %+v, want %+v", s.IO, want)
				}
			},
		},
		{
			name:  "v2 limited",
			mode:  ModeV2,
			files: fakeV2(p, 100000, 30000, "200000"),
			check: func(t *testing.T, s CgroupStats) {
				eq(t, "limit", s.Memory.LimitBytes, 200000)
				eq(t, "available", s.Memory.AvailableBytes, 130000)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tt.files)
			sys := t.TempDir()
			writeTree(t, sys, map[string]string{"254:0/uevent": "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n"})
			c, err := NewCollector(WithCgroupRoot(root), WithCgroupMode(tt.mode), withSysBlock(sys))
			if err != nil {
				t.Fatal(err)
			}
			if c.Mode() != tt.mode {
				t.Fatalf("mode %v, want %v", c.Mode(), tt.mode)
			}
			s, err := c.Cgroup(context.Background(), "k", "/"+p, All)
			if err != nil {
				t.Fatal(err)
			}
			if s.Timestamp.IsZero() {
				t.Error("zero timestamp")
			}
			tt.check(t, s)
			// Swap is read only when asked for (a pod's stats have none).
			usage, err := c.Cgroup(context.Background(), "usage", "/"+p, Usage)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "swap without Swap", usage.Memory.SwapBytes, 0)
			eq(t, "swap limit without Swap", usage.Memory.SwapLimitBytes, 0)
			eq(t, "working set without Swap", usage.Memory.WorkingSetBytes, s.Memory.WorkingSetBytes)
			withSwap, err := c.Cgroup(context.Background(), "swap", "/"+p, Usage|Swap)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "swap with Swap", withSwap.Memory.SwapBytes, s.Memory.SwapBytes)
			eq(t, "swap limit with Swap", withSwap.Memory.SwapLimitBytes, s.Memory.SwapLimitBytes)

			_, err = c.Cgroup(context.Background(), "gone", "/kubepods/pod1/gone", Usage)
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("missing cgroup: err = %v, want ErrNotFound", err)
			}
		})
	}
}

func eq(t *testing.T, what string, got, want uint64) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %d, want %d", what, got, want)
	}
}

// TestNanoCores drives the rate computation with a fake clock and fake
// cpuacct.usage values.
func TestNanoCores(t *testing.T) {
	const p = "ctr"
	type step struct {
		at     time.Duration // since the start
		usage  uint64
		forget bool // Forget the key before this step
		want   uint64
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "first sample is zero", steps: []step{{at: 0, usage: 1e9, want: 0}}},
		{name: "one core", steps: []step{{0, 1e9, false, 0}, {2 * time.Second, 3e9, false, 1e9}}},
		{name: "half a core", steps: []step{{0, 0, false, 0}, {4 * time.Second, 2e9, false, 5e8}}},
		{name: "short window reuses last rate", steps: []step{
			{0, 1e9, false, 0}, {2 * time.Second, 3e9, false, 1e9},
			{2*time.Second + 100*time.Millisecond, 9e9, false, 1e9},
			{4 * time.Second, 7e9, false, 2e9},
		}},
		{name: "counter reset starts over", steps: []step{{0, 5e9, false, 0}, {2 * time.Second, 1e9, false, 0}, {4 * time.Second, 3e9, false, 1e9}}},
		{name: "forget starts over", steps: []step{{0, 1e9, false, 0}, {2 * time.Second, 3e9, true, 0}, {4 * time.Second, 5e9, false, 1e9}}},
		{name: "big window does not overflow", steps: []step{{0, 0, false, 0}, {100 * time.Second, 64 * 100e9, false, 64e9}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, fakeV1(p, 1, 0, 0, false))
			start := time.Unix(1700000000, 0)
			now := start
			c, err := NewCollector(WithCgroupRoot(root), WithCgroupMode(ModeV1), withClock(func() time.Time { return now }))
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range tt.steps {
				now = start.Add(st.at)
				writeTree(t, root, map[string]string{"cpuacct/" + p + "/cpuacct.usage": strconv.FormatUint(st.usage, 10)})
				if st.forget {
					c.Forget("key")
				}
				s, err := c.Cgroup(context.Background(), "key", p, Usage)
				if err != nil {
					t.Fatal(err)
				}
				if s.CPU.UsageNanoCores != st.want {
					t.Errorf("step %d: nano-cores = %d, want %d", i, s.CPU.UsageNanoCores, st.want)
				}
			}
		})
	}
}

func TestNewCollectorDetectsHost(t *testing.T) {
	c, err := NewCollector()
	if err != nil {
		t.Skipf("no cgroups on this host: %v", err)
	}
	t.Logf("host: %v at %s", c.Mode(), c.Root())
	if c.Root() == "" {
		t.Fatal("empty root")
	}
}

// TestProcesses: the Processes figure counts the cgroup's own
// cgroup.procs, never walking the cgroups below it (the daemon sums a
// pod's members itself).
func TestProcesses(t *testing.T) {
	tests := []struct {
		name  string
		mode  Mode
		files map[string]string
		path  string
		want  uint64
	}{
		{
			name: "v2 container",
			mode: ModeV2,
			files: merge(fakeV2("pod/c1", 1, 0, "max"), map[string]string{
				"pod/c1/cgroup.procs":   "1\n2\n",
				"pod/c1/x/cgroup.procs": "4\n",
			}),
			path: "/pod/c1", want: 2,
		},
		{
			name: "v1 empty pod cgroup",
			mode: ModeV1,
			files: merge(fakeV1("pod", 1, 0, 0, false), map[string]string{
				"pids/pod/cgroup.procs":    "",
				"pids/pod/c1/cgroup.procs": "1\n2\n3\n",
			}),
			path: "/pod", want: 0,
		},
		{
			name:  "v1 without a final newline",
			mode:  ModeV1,
			files: merge(fakeV1("c", 1, 0, 0, false), map[string]string{"pids/c/cgroup.procs": "7\n8"}),
			path:  "/c", want: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tt.files)
			c, err := NewCollector(WithCgroupRoot(root), WithCgroupMode(tt.mode))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := c.Cgroup(context.Background(), "", tt.path, Processes)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "processes", s.Processes, tt.want)
		})
	}
}

// TestFilesKeptOpen: the usage files of a key stay open between
// readings, so a second reading does not look the paths up again; Forget
// and Close release them.
func TestFilesKeptOpen(t *testing.T) {
	for _, mode := range []Mode{ModeV1, ModeV2} {
		t.Run(mode.String(), func(t *testing.T) {
			root := t.TempDir()
			files, usageFile := fakeV1("c", 100, 0, 0, true), "memory/c/memory.usage_in_bytes"
			if mode == ModeV2 {
				files, usageFile = fakeV2("c", 100, 0, "max"), "c/memory.current"
			}
			writeTree(t, root, files)
			c, err := NewCollector(WithCgroupRoot(root), WithCgroupMode(mode))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			read := func(key string) uint64 {
				t.Helper()
				s, err := c.Cgroup(ctx, key, "/c", Usage)
				if err != nil {
					t.Fatal(err)
				}
				return s.Memory.UsageBytes
			}
			eq(t, "first reading", read("k"), 100)
			if c.openCount.Load() == 0 {
				t.Fatal("no file kept open")
			}
			// A new file at the same path: the kept-open one is still
			// the old inode, an unkeyed reading opens the path.
			p := filepath.Join(root, usageFile)
			if err := os.Rename(p, p+".old"); err != nil {
				t.Fatal(err)
			}
			writeTree(t, root, map[string]string{usageFile: "200\n"})
			eq(t, "kept open", read("k"), 100)
			eq(t, "without a key", read(""), 200)
			c.Forget("k")
			if n := c.openCount.Load(); n != 0 {
				t.Errorf("%d files open after Forget", n)
			}
			eq(t, "after Forget", read("k"), 200)
			c.Close()
			if n := c.openCount.Load(); n != 0 {
				t.Errorf("%d files open after Close", n)
			}
		})
	}
}

func TestRetain(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, fakeV2("c", 1, 0, "max"))
	c, err := NewCollector(WithCgroupRoot(root), WithCgroupMode(ModeV2))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		if _, err := c.Cgroup(ctx, k, "/c", Usage); err != nil {
			t.Fatal(err)
		}
		c.LayerUsage(k, root)
	}
	c.Retain(func(k string) bool { return k == "b" })
	c.mu.Lock()
	defer c.mu.Unlock()
	c.layers.mu.Lock()
	defer c.layers.mu.Unlock()
	if len(c.cpu) != 1 || len(c.files) != 1 || len(c.layers.layers) != 1 {
		t.Fatalf("after Retain: %d cpu samples, %d open file sets, %d layers; want 1 of each", len(c.cpu), len(c.files), len(c.layers.layers))
	}
	if _, ok := c.cpu["b"]; !ok {
		t.Fatal("kept key b was dropped")
	}
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// TestTasks: the Tasks figure is pids.current alone, HasPids saying
// whether the cgroup has the pids controller.
func TestTasks(t *testing.T) {
	withoutPids := func(files map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range files {
			if filepath.Base(k) != "pids.current" && !strings.HasPrefix(k, "pids/") {
				out[k] = v
			}
		}
		return out
	}
	tests := []struct {
		name    string
		mode    Mode
		files   map[string]string
		want    uint64
		hasPids bool
	}{
		{"v1", ModeV1, fakeV1("pod", 1, 0, 0, false), 7, true},
		{"v1 without the pids controller", ModeV1, withoutPids(fakeV1("pod", 1, 0, 0, false)), 0, false},
		{"v2", ModeV2, fakeV2("pod", 1, 0, "max"), 7, true},
		{"v2 without pids enabled", ModeV2, withoutPids(fakeV2("pod", 1, 0, "max")), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tt.files)
			c, err := NewCollector(WithCgroupRoot(root), WithCgroupMode(tt.mode))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Twice with a key: the second reading uses the kept file.
			for range 2 {
				s, err := c.Cgroup(context.Background(), "pod", "/pod", Usage|Tasks)
				if err != nil {
					t.Fatal(err)
				}
				eq(t, "tasks", s.Pids.Current, tt.want)
				if s.HasPids != tt.hasPids {
					t.Errorf("HasPids = %v, want %v", s.HasPids, tt.hasPids)
				}
				eq(t, "processes (not asked for)", s.Processes, 0)
			}
		})
	}
}

// TestLimitsKept: a key's memory and swap limits are read once and kept
// until RefreshLimits or limitTTL, while the usage is read at every
// reading; an unkeyed reading reads them every time.
func TestLimitsKept(t *testing.T) {
	type files struct{ limit, swapLimit, usage string }
	tests := []struct {
		mode                   Mode
		tree                   map[string]string
		files                  files
		limit, swapLimit       [2]string // contents: first, then changed
		wantLimit, wantSwapLim [2]uint64
	}{
		{
			mode:  ModeV1,
			tree:  fakeV1("c", 100, 0, 1000, true),
			files: files{"memory/c/memory.limit_in_bytes", "memory/c/memory.memsw.limit_in_bytes", "memory/c/memory.usage_in_bytes"},
			limit: [2]string{"1000", "4000"}, swapLimit: [2]string{"3000", "9000"},
			wantLimit: [2]uint64{1000, 4000}, wantSwapLim: [2]uint64{2000, 5000},
		},
		{
			mode:  ModeV2,
			tree:  fakeV2("c", 100, 0, "1000"),
			files: files{"c/memory.max", "c/memory.swap.max", "c/memory.current"},
			limit: [2]string{"1000", "4000"}, swapLimit: [2]string{"300", "max"},
			wantLimit: [2]uint64{1000, 4000}, wantSwapLim: [2]uint64{300, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tt.tree)
			set := func(i int, usage string) {
				writeTree(t, root, map[string]string{tt.files.limit: tt.limit[i] + "\n", tt.files.swapLimit: tt.swapLimit[i] + "\n", tt.files.usage: usage + "\n"})
			}
			set(0, "100")
			now := time.Unix(1700000000, 0)
			c, err := NewCollector(WithCgroupRoot(root), WithCgroupMode(tt.mode), withClock(func() time.Time { return now }))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			read := func(what, key string, usage uint64, limits int) {
				t.Helper()
				s, err := c.Cgroup(context.Background(), key, "/c", Usage|Swap)
				if err != nil {
					t.Fatal(err)
				}
				eq(t, what+": usage", s.Memory.UsageBytes, usage)
				eq(t, what+": limit", s.Memory.LimitBytes, tt.wantLimit[limits])
				eq(t, what+": swap limit", s.Memory.SwapLimitBytes, tt.wantSwapLim[limits])
			}
			read("first reading", "k", 100, 0)
			set(1, "200")
			read("changed limits", "k", 200, 0)
			read("changed limits, unkeyed", "", 200, 1)
			c.RefreshLimits("k")
			read("after RefreshLimits", "k", 200, 1)
			set(0, "300")
			now = now.Add(limitTTL - time.Second)
			read("before the TTL", "k", 300, 1)
			now = now.Add(time.Second)
			read("after the TTL", "k", 300, 0)
			c.RefreshLimits("nobody") // no entry: nothing to do
		})
	}
}
