package shim

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestOOMKills(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body string
		want       int64
	}{
		{"v2 memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\noom_group_kill 0\n", 1},
		{"v1 memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", 3},
		{"no counter", "low 0\n", -1},
	} {
		f := filepath.Join(dir, tc.name)
		if err := os.WriteFile(f, []byte(tc.body), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := oomKills(f); got != tc.want {
			t.Errorf("%s: oomKills = %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := oomKills(filepath.Join(dir, "missing")); got != -1 {
		t.Errorf("missing file: oomKills = %d, want -1", got)
	}
}

// TestOOMWatcherKeepsKillsOfRemovedCgroup: a kill is counted as it
// happens, so it is still known once the cgroup (here: the file) is gone,
// as under the systemd driver, where systemd removes a scope's cgroup as
// soon as its last process died.
func TestOOMWatcherKeepsKillsOfRemovedCgroup(t *testing.T) {
	if newOOMWatcher(false).f != nil {
		t.Error("a watcher without notify holds an inotify instance")
	}
	w := newOOMWatcher(true)
	if w.f == nil {
		t.Skip("no inotify")
	}
	done := make(chan struct{})
	go func() { defer close(done); w.run() }()
	defer func() { w.close(); <-done }()

	f := filepath.Join(t.TempDir(), "memory.events")
	if err := os.WriteFile(f, []byte("oom 0\noom_kill 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := w.watchFiles(f, "")
	if at := c.read(); at != 0 || c.at != 0 {
		t.Fatalf("counter at create = %d, want 0", at)
	}
	if err := os.WriteFile(f, []byte("oom 1\noom_kill 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.seen.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the watcher did not read the change: seen %d", c.seen.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := os.Remove(f); err != nil {
		t.Fatal(err)
	}
	if got := c.read(); got != 1 {
		t.Errorf("counter after the file is gone = %d, want the 1 seen before", got)
	}
	w.unwatch(c)
	w.unwatch(c)
	w.mu.Lock()
	n := len(w.byWD)
	w.mu.Unlock()
	if n != 0 {
		t.Errorf("%d watches left after unwatch", n)
	}
	var none *oomCounter
	if none.read() != -1 || none.killed(true) || w.watch("") != nil {
		t.Error("a container without a counter must read -1 and never be OOM-killed")
	}
}

// TestOOMKilledFromPodCounter: when the container's cgroup is gone before
// its kill was seen, the pod's counter, which counts the kills of its
// containers, decides for a container that died of SIGKILL.
func TestOOMKilledFromPodCounter(t *testing.T) {
	dir := t.TempDir()
	own, pod := filepath.Join(dir, "ctr.events"), filepath.Join(dir, "pod.events")
	write := func(f string, n int) {
		if err := os.WriteFile(f, []byte("oom_kill "+strconv.Itoa(n)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name      string
		ownAfter  int // -1: the container's cgroup is gone
		podAfter  int
		killedBy9 bool
		want      bool
	}{
		{"own counter grew", 1, 3, false, true},
		{"own counter unchanged, another container's kill", 0, 3, true, false},
		{"cgroup gone, pod counter grew, SIGKILL", -1, 3, true, true},
		{"cgroup gone, pod counter grew, other exit", -1, 3, false, false},
		{"cgroup gone, pod counter unchanged", -1, 2, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write(own, 0)
			write(pod, 2)
			w := &oomWatcher{byWD: map[int32]*oomCounter{}} // no inotify: reads only
			c := w.watchFiles(own, pod)
			if tc.ownAfter < 0 {
				os.Remove(own)
			} else {
				write(own, tc.ownAfter)
			}
			write(pod, tc.podAfter)
			if got := c.killed(tc.killedBy9); got != tc.want {
				t.Errorf("killed(%v) = %v, want %v", tc.killedBy9, got, tc.want)
			}
		})
	}
}
