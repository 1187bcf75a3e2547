//go:build e2e

package framework

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Helpers for crash and recovery tests: finding and killing a pod's shim,
// checking that processes are gone, and listing everything a daemon can
// leave behind on the node.

// ShimPids returns the pids of the shim processes serving pods of d, by
// pod ID: processes whose command line is `<binary> shim ... --state-dir
// <d.State>/pods/<podID>/shim ...`.
func (d *Daemon) ShimPids() map[string][]int {
	out := map[string][]int{}
	prefix := filepath.Join(d.State, "pods") + "/"
	for pid, args := range processes() {
		if !slices.Contains(args, "shim") {
			continue
		}
		for i, a := range args {
			var dir string
			switch {
			case (a == "--state-dir" || a == "-state-dir") && i+1 < len(args):
				dir = args[i+1]
			case strings.HasPrefix(a, "--state-dir="):
				dir = strings.TrimPrefix(a, "--state-dir=")
			default:
				continue
			}
			if rest, ok := strings.CutPrefix(filepath.Clean(dir), prefix); ok {
				pod, _, _ := strings.Cut(rest, "/")
				out[pod] = append(out[pod], pid)
			}
		}
	}
	return out
}

// ShimPid is the pid of the one shim serving podID; it fails the test if
// there is none or more than one.
func (d *Daemon) ShimPid(t testing.TB, podID string) int {
	t.Helper()
	pids := d.ShimPids()[podID]
	if len(pids) != 1 {
		t.Fatalf("shim processes of pod %s: %v, want exactly one (all shims: %v)", podID, pids, d.ShimPids())
	}
	return pids[0]
}

// processes maps every pid to its argv.
func processes() map[int][]string {
	out := map[int][]string{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		out[pid] = strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	}
	return out
}

// ProcessAlive reports whether pid exists and is not a zombie.
func ProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// ProcessStartTime is the start time of pid in clock ticks since boot
// (field 22 of /proc/pid/stat), to tell a process from a later one that
// reuses its pid; 0 if pid does not exist.
func ProcessStartTime(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is the state (field 3); starttime is field 22.
	if len(fields) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(fields[19], 10, 64)
	return v
}

// WaitProcessGone polls until pid is gone (or a zombie) and reports
// whether that happened within timeout.
func WaitProcessGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for ProcessAlive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// SnapshotDirs lists the snapshot directories of the daemon's snapshotter
// (committed image layers and container rootfs alike).
func (d *Daemon) SnapshotDirs() []string {
	var out []string
	for _, name := range []string{"overlayfs", "native"} {
		dir := filepath.Join(d.Root, "snapshots", name, "snapshots")
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// ShimRecord is the exit state the shim of podID persisted for
// container id (<state>/pods/<podID>/shim/<id>/state.json): what lets
// the daemon report an exit that happened while it was down. ok is false
// if there is no readable record.
func (d *Daemon) ShimRecord(podID, id string) (st ShimState, ok bool) {
	data, err := os.ReadFile(filepath.Join(d.State, "pods", podID, "shim", id, "state.json"))
	if err != nil {
		return st, false
	}
	var rec struct{ State ShimState }
	if err := json.Unmarshal(data, &rec); err != nil {
		return st, false
	}
	return rec.State, true
}

// ShimState is the part of a shim's state.json the tests read.
type ShimState struct {
	Pid        int
	Status     string
	ExitCode   int32
	FinishedAt time.Time
	Reason     string
}

// fsImmutableFL is FS_IMMUTABLE_FL of linux/fs.h (x/sys/unix lacks it).
const fsImmutableFL = 0x10

// SetImmutable sets or clears the immutable attribute (chattr +i) of
// path: nobody, root included, can then remove, rename or change it, as
// with a file the daemon cannot clean up.
func SetImmutable(path string, on bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return fmt.Errorf("get flags of %s: %w", path, err)
	}
	if on {
		flags |= fsImmutableFL
	} else {
		flags &^= fsImmutableFL
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags); err != nil {
		return fmt.Errorf("set flags of %s: %w", path, err)
	}
	return nil
}
