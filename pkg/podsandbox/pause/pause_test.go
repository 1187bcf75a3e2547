package pause

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary itself act as the pause process: the
// constructor only runs when argv[1] is "pause", so the test re-executes
// itself with that argument.
func TestPauseProcess(t *testing.T) {
	cmd := exec.Command(os.Args[0], Arg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// It must stay up (a Go test binary would otherwise run the tests and exit).
	select {
	case err := <-done:
		t.Fatalf("pause exited on its own: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmRSS:") || strings.HasPrefix(line, "Threads:") {
			t.Log(line)
		}
		// No Go runtime: a single thread.
		if strings.HasPrefix(line, "Threads:") && strings.TrimSpace(strings.TrimPrefix(line, "Threads:")) != "1" {
			t.Errorf("pause runs %s threads; the Go runtime started", line)
		}
	}
	checkPageByPage(t, cmd.Process.Pid)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pause exit after SIGTERM: %v", err)
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatal("pause ignored SIGTERM")
	}
}

// checkPageByPage asserts that the clean read-only mappings of pid's
// executable are registered with a userfaultfd ("uw" in VmFlags), which
// turns off fault-around for them, and logs what they hold.
func checkPageByPage(t *testing.T, pid int) {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid)
	exe, err := os.Readlink(dir + "/exe")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dir + "/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var (
		name          string // the current mapping, if a read-only one of exe
		rss, mappings int
		clean         bool
	)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			name = ""
			if len(f) >= 6 && strings.Join(f[5:], " ") == exe && (f[1] == "r-xp" || f[1] == "r--p") {
				name = f[0] + " " + f[1]
			}
		case name != "" && len(f) >= 2 && f[0] == "Rss:":
			n, _ := strconv.Atoi(f[1])
			rss += n
		case name != "" && len(f) >= 2 && f[0] == "Anonymous:":
			clean = f[1] == "0"
		case name != "" && len(f) >= 1 && f[0] == "VmFlags:":
			mappings++
			if clean && !strings.Contains(line+" ", " uw ") {
				t.Errorf("pause's mapping %s of its executable is not registered with a userfaultfd (fault-around stays on): %s", name, line)
			}
			name = ""
		}
	}
	if mappings == 0 {
		t.Fatalf("no read-only mapping of %s in pause's smaps", exe)
	}
	t.Logf("read-only mappings of the executable: %d, resident %d KiB", mappings, rss)
}
