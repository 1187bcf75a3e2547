package checkpoint

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// A pod whose containers share its PID namespace is checkpointed in one
// cut, but restored one container at a time: the first restored container
// runs (and forks) while the next is still to be restored. CRIU puts each
// restored process back on its old pid (clone3's set_tid), which does not
// move the namespace's pid allocator, so the first container's new
// children take the lowest free pids — the very pids the next container's
// checkpoint holds, and its restore fails ("Can't fork for N: File
// exists"). Moving the new namespace's allocator past the highest pid the
// checkpoint holds before anything is restored keeps new pids out of the
// way of every restore.

// HighestPid is the highest pid, as seen inside the PID namespace of the
// process pid, of any process in that namespace; 0 if none is found.
// It walks /proc: for checkpoints, never on a hot path.
func HighestPid(pid int) (int, error) {
	want, err := ownPidNS(pid)
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	highest := 0
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p)); err != nil || ns != want {
			continue // gone, or another namespace
		}
		if n := innermostPid(p); n > highest {
			highest = n
		}
	}
	return highest, nil
}

// ownPidNS is the PID namespace of pid, refused when it is the caller's:
// a pod's namespace is never the node's, and the node's allocator is not
// ours to move.
func ownPidNS(pid int) (string, error) {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		return "", fmt.Errorf("pid namespace of %d: %w", pid, err)
	}
	if self, err := os.Readlink("/proc/self/ns/pid"); err != nil || self == ns {
		return "", fmt.Errorf("process %d is not in a PID namespace of its own", pid)
	}
	return ns, nil
}

// innermostPid is the last field of NSpid in /proc/<pid>/status: the
// process's pid in its own PID namespace (0 when unreadable).
func innermostPid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "NSpid:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0
			}
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	return 0
}

// SetLastPid moves the pid allocator of the PID namespace of the process
// pid so that the next process created in it gets a pid above last.
// kernel.ns_last_pid acts on the writer's own PID namespace, and a process
// enters one only through a fork after setns, so a child does it:
// nsenter forks into the namespace and the shell writes the sysctl.
func SetLastPid(ctx context.Context, pid, last int) error {
	if _, err := ownPidNS(pid); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "nsenter", "--target", strconv.Itoa(pid), "--pid", "--",
		"/bin/sh", "-c", `echo "$1" > /proc/sys/kernel/ns_last_pid`, "sh", strconv.Itoa(last))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("set ns_last_pid %d in the pid namespace of %d: %w: %s", last, pid, err, bytes.TrimSpace(out))
	}
	return nil
}
