package cgroups

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestRmdirWaitsWhileBusy: a pod cgroup is busy for a moment after its
// containers were stopped (a killed process still exiting, a leaf runc has
// not removed yet); removal waits for that instead of failing with EBUSY.
func TestRmdirWaitsWhileBusy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a cgroup")
	}
	tests := []struct {
		name string
		busy func(t *testing.T, dir string) (release func())
	}{
		{"process leaves late", func(t *testing.T, dir string) func() {
			cmd := exec.Command("sleep", "60")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
				cmd.Process.Kill()
				t.Fatal(err)
			}
			return func() { cmd.Process.Kill(); cmd.Wait() }
		}},
		{"child removed late", func(t *testing.T, dir string) func() {
			child := filepath.Join(dir, "leaf")
			if err := os.Mkdir(child, 0o755); err != nil {
				t.Fatal(err)
			}
			return func() { os.Remove(child) }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join("/sys/fs/cgroup/pids", "cri-runtimed-test-rmdir-"+strconv.Itoa(os.Getpid()))
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(dir) })
			release := tt.busy(t, dir)
			done := make(chan struct{})
			go func() {
				defer close(done)
				time.Sleep(300 * time.Millisecond)
				release()
			}()
			defer func() { <-done }()
			if err := rmdirBusy(context.Background(), dir); err != nil {
				t.Fatalf("rmdir of a cgroup that is busy for 300ms: %v", err)
			}
		})
	}
}
