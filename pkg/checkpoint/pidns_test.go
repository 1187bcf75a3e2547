package checkpoint

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pidnsWithSleeps starts a shell as pid 1 of a new PID namespace with two
// children (pids 2 and 3 there) and returns the shell's host pid.
func pidnsWithSleeps(t *testing.T) int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a PID namespace")
	}
	cmd := exec.Command("unshare", "--pid", "--fork", "--kill-child", "/bin/sh", "-c", "sleep 300 & sleep 300 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// unshare forks the shell: wait for it and its two children.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := exec.Command("pgrep", "-P", strconv.Itoa(cmd.Process.Pid)).Output()
		if f := strings.Fields(string(out)); len(f) == 1 {
			sh, _ := strconv.Atoi(f[0])
			if kids, _ := exec.Command("pgrep", "-P", f[0]).Output(); len(strings.Fields(string(kids))) == 2 {
				return sh
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the namespace's shell and its children did not appear")
	return 0
}

// nextPid is the pid a new process gets in the namespace of pid.
func nextPid(t *testing.T, pid int) int {
	t.Helper()
	out, err := exec.Command("nsenter", "--target", strconv.Itoa(pid), "--pid", "--", "/bin/sh", "-c", "echo $$").Output()
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestHighestPidAndSetLastPid(t *testing.T) {
	sh := pidnsWithSleeps(t)
	got, err := HighestPid(sh)
	if err != nil {
		t.Fatal(err)
	}
	if got != 3 {
		t.Fatalf("HighestPid = %d, want 3 (sh 1, sleeps 2 and 3)", got)
	}
	for _, last := range []int{500, 900} {
		if err := SetLastPid(context.Background(), sh, last); err != nil {
			t.Fatal(err)
		}
		if n := nextPid(t, sh); n != last+1 {
			t.Fatalf("after SetLastPid(%d) a new process got pid %d, want %d", last, n, last+1)
		}
	}
}

func TestPidNSRefusesTheNodes(t *testing.T) {
	if _, err := HighestPid(os.Getpid()); err == nil {
		t.Error("HighestPid walked the caller's own PID namespace")
	}
	if err := SetLastPid(context.Background(), os.Getpid(), 1000); err == nil {
		t.Error("SetLastPid moved the caller's own PID namespace's allocator")
	}
}
