package stats

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testParent holds every cgroup the live tests create; a per-process child
// keeps concurrent runs apart.
const testParent = "/cri-runtimed-stats-test"

// v1Controllers are the hierarchies the Collector reads on v1.
var v1Controllers = [...]string{"cpu", "cpuacct", "memory", "pids"}

// liveCollector returns a Collector for the host's cgroups, skipping unless
// the test runs as root on a cgroup v1 host (the layout the live tests
// create cgroups for).
func liveCollector(t testing.TB) *Collector {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	c, err := NewCollector()
	if err != nil {
		t.Skipf("no cgroups: %v", err)
	}
	if c.Mode() != ModeV1 {
		t.Skipf("live tests create cgroup v1 groups; host is %v", c.Mode())
	}
	for _, ctrl := range v1Controllers {
		if _, err := os.Stat(filepath.Join(c.Root(), ctrl)); err != nil {
			t.Skipf("controller %s not mounted: %v", ctrl, err)
		}
	}
	return c
}

// makeCgroups creates the cgroups (paths below testParent/<pid>) in every
// v1 controller and removes them, and the parents if empty, at cleanup.
func makeCgroups(t testing.TB, root string, names ...string) []string {
	t.Helper()
	base := path.Join(testParent, strconv.Itoa(os.Getpid()))
	var paths []string
	for _, n := range names {
		paths = append(paths, path.Join(base, n))
	}
	t.Cleanup(func() {
		for _, ctrl := range v1Controllers {
			for _, p := range paths {
				rmdirCgroup(t, filepath.Join(root, ctrl, p))
			}
			_ = unix.Rmdir(filepath.Join(root, ctrl, base))
			_ = unix.Rmdir(filepath.Join(root, ctrl, testParent)) // busy if another run is active
		}
	})
	for _, ctrl := range v1Controllers {
		for _, p := range paths {
			if err := os.MkdirAll(filepath.Join(root, ctrl, p), 0o755); err != nil {
				t.Fatalf("create cgroup: %v", err)
			}
		}
	}
	return paths
}

// rmdirCgroup removes an empty cgroup, retrying while the kernel finishes
// tearing down a process that just exited (EBUSY).
func rmdirCgroup(t testing.TB, dir string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			t.Errorf("remove cgroup %s: %v", dir, err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startWorkload starts the helper process, moves it into the cgroup at p
// in every controller and lets it start allocating and spinning. It is
// killed at cleanup, before the cgroups are removed.
func startWorkload(t *testing.T, root, p string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for _, ctrl := range v1Controllers {
		procs := filepath.Join(root, ctrl, p, "cgroup.procs")
		if err := os.WriteFile(procs, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			t.Fatalf("move workload into %s: %v", procs, err)
		}
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func TestLiveCgroup(t *testing.T) {
	c := liveCollector(t)
	ctx := context.Background()
	p := makeCgroups(t, c.Root(), "live")[0]
	cmd := startWorkload(t, c.Root(), p)

	// Wait for the allocation to be charged.
	var s1 CgroupStats
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		s1, err = c.Cgroup(ctx, "live", p, All)
		if err != nil {
			t.Fatal(err)
		}
		if s1.Memory.UsageBytes >= 32<<20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(minCPUInterval + 200*time.Millisecond)
	s2, err := c.Cgroup(ctx, "live", p, All)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first: cpu %dns; second: cpu %dns %d nano-cores; memory usage %d working set %d rss %d; pids %d processes %d",
		s1.CPU.UsageCoreNanoSeconds, s2.CPU.UsageCoreNanoSeconds, s2.CPU.UsageNanoCores,
		s2.Memory.UsageBytes, s2.Memory.WorkingSetBytes, s2.Memory.RSSBytes, s2.Pids.Current, s2.Processes)

	if s2.CPU.UsageCoreNanoSeconds <= s1.CPU.UsageCoreNanoSeconds {
		t.Errorf("cpu usage did not grow: %d then %d", s1.CPU.UsageCoreNanoSeconds, s2.CPU.UsageCoreNanoSeconds)
	}
	// A spinning thread uses about one core; allow for a loaded host.
	if s2.CPU.UsageNanoCores < 1e8 || s2.CPU.UsageNanoCores > 4e9 {
		t.Errorf("nano-cores = %d, want about 1e9", s2.CPU.UsageNanoCores)
	}
	if s2.Memory.UsageBytes < 32<<20 {
		t.Errorf("memory usage %d, want >= 32MiB", s2.Memory.UsageBytes)
	}
	if s2.Memory.WorkingSetBytes == 0 || s2.Memory.WorkingSetBytes > s2.Memory.UsageBytes {
		t.Errorf("working set %d, usage %d", s2.Memory.WorkingSetBytes, s2.Memory.UsageBytes)
	}
	if s2.Memory.RSSBytes < 30<<20 {
		t.Errorf("rss %d, want about 32MiB", s2.Memory.RSSBytes)
	}
	if s2.Memory.LimitBytes != 0 || s2.Memory.AvailableBytes != 0 {
		t.Errorf("unlimited cgroup: limit %d available %d, want 0 0", s2.Memory.LimitBytes, s2.Memory.AvailableBytes)
	}
	if s2.Pids.Current < 1 {
		t.Errorf("pids current %d, want >= 1", s2.Pids.Current)
	}
	if s2.Processes != 1 {
		t.Errorf("processes %d, want 1", s2.Processes)
	}

	// A limit shows up as limit and available bytes, once the key's
	// kept limits are refreshed (the daemon does it when it updates a
	// container or pod).
	limit := uint64(256 << 20)
	if err := os.WriteFile(filepath.Join(c.Root(), "memory", p, "memory.limit_in_bytes"), []byte(strconv.FormatUint(limit, 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Cgroup(ctx, "live", p, All); err != nil || s.Memory.LimitBytes != 0 {
		t.Errorf("limit before RefreshLimits: %d, %v; want the kept 0", s.Memory.LimitBytes, err)
	}
	c.RefreshLimits("live")
	s3, err := c.Cgroup(ctx, "live", p, All)
	if err != nil {
		t.Fatal(err)
	}
	if s3.Memory.LimitBytes != limit || s3.Memory.AvailableBytes != limit-s3.Memory.WorkingSetBytes {
		t.Errorf("limited: limit %d available %d working set %d", s3.Memory.LimitBytes, s3.Memory.AvailableBytes, s3.Memory.WorkingSetBytes)
	}

	// Once the workload is gone and its cgroup removed, reads say so.
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	for _, ctrl := range v1Controllers {
		rmdirCgroup(t, filepath.Join(c.Root(), ctrl, p))
	}
	if _, err := c.Cgroup(ctx, "live", p, All); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed cgroup: err = %v, want ErrNotFound", err)
	}
}

// TestCgroup100 reads 100 cgroups twice, as ListContainerStats on a full
// node does: the first round keeps their files open and the second opens
// none (its cost is BenchmarkCgroup100's, not a test's).
func TestCgroup100(t *testing.T) {
	c := liveCollector(t)
	paths := makeCgroups(t, c.Root(), names100()...)
	ctx := context.Background()
	var kept int64
	for round := range 2 {
		for i, p := range paths {
			if _, err := c.Cgroup(ctx, strconv.Itoa(i), p, Usage); err != nil {
				t.Fatal(err)
			}
		}
		n := c.openCount.Load()
		t.Logf("round %d: %d files kept open", round, n)
		if round == 0 {
			if n < int64(len(paths)) {
				t.Fatalf("%d files kept open for %d cgroups, want at least one each", n, len(paths))
			}
			kept = n
		} else if n != kept {
			t.Errorf("the second round changed the files kept open from %d to %d", kept, n)
		}
	}
}

func BenchmarkCgroup100(b *testing.B) {
	c := liveCollector(b)
	paths := makeCgroups(b, c.Root(), names100()...)
	ctx := context.Background()
	for b.Loop() {
		for i, p := range paths {
			if _, err := c.Cgroup(ctx, strconv.Itoa(i), p, Usage); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func names100() []string {
	names := make([]string, 100)
	for i := range names {
		names[i] = fmt.Sprintf("c%03d", i)
	}
	return names
}

// TestLiveProcesses: the process count of a key read repeatedly
// still shows processes joining and leaving.
func TestLiveProcesses(t *testing.T) {
	c := liveCollector(t)
	ctx := context.Background()
	p := makeCgroups(t, c.Root(), "procs")[0]
	count := func() uint64 {
		t.Helper()
		s, err := c.Cgroup(ctx, "procs", p, Processes)
		if err != nil {
			t.Fatal(err)
		}
		return s.Processes
	}
	if n := count(); n != 0 {
		t.Fatalf("empty cgroup: %d processes", n)
	}
	var cmds []*exec.Cmd
	for i := range 2 {
		cmd := exec.Command("sleep", "100")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		for _, ctrl := range v1Controllers {
			if err := os.WriteFile(filepath.Join(c.Root(), ctrl, p, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if n := count(); n != uint64(i+1) {
			t.Errorf("after moving %d processes in: %d", i+1, n)
		}
	}
	for _, cmd := range cmds {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	if n := count(); n != 0 {
		t.Errorf("after the processes exited: %d", n)
	}
}
