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
