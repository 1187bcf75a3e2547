package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// procRoot is where procfs is mounted; a variable so tests can point it
// at a fake tree.
var procRoot = "/proc"

// Mem is the memory of one process or the sum over several, in bytes.
type Mem struct {
	RSS int64 `json:"rss_bytes"`
	PSS int64 `json:"pss_bytes"`
}

// Add returns m + o.
func (m Mem) Add(o Mem) Mem { return Mem{RSS: m.RSS + o.RSS, PSS: m.PSS + o.PSS} }

// procStat is the part of /proc/<pid>/stat the driver needs.
type procStat struct {
	Comm  string
	PPID  int
	UTime uint64 // clock ticks
	STime uint64 // clock ticks
}

// readStat parses /proc/<pid>/stat. comm is in parentheses and may itself
// contain spaces and parentheses, so the fields are split after the last
// ')'.
func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(data)
}

func parseStat(data []byte) (procStat, error) {
	open := bytes.IndexByte(data, '(')
	closing := bytes.LastIndexByte(data, ')')
	if open < 0 || closing < open {
		return procStat{}, fmt.Errorf("malformed stat %q", data)
	}
	st := procStat{Comm: string(data[open+1 : closing])}
	// After ')': state(3) ppid(4) ... utime(14) stime(15), 1-based as in
	// proc(5); fields[0] is state.
	fields := strings.Fields(string(data[closing+1:]))
	if len(fields) < 13 {
		return procStat{}, fmt.Errorf("short stat %q", data)
	}
	var err error
	if st.PPID, err = strconv.Atoi(fields[1]); err != nil {
		return procStat{}, fmt.Errorf("stat ppid: %w", err)
	}
	if st.UTime, err = strconv.ParseUint(fields[11], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("stat utime: %w", err)
	}
	if st.STime, err = strconv.ParseUint(fields[12], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("stat stime: %w", err)
	}
	return st, nil
}

// readMem returns VmRSS (status) and Pss (smaps_rollup) of pid. A kernel
// without smaps_rollup leaves PSS at 0 rather than failing the run.
func readMem(pid int) (Mem, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return Mem{}, err
	}
	var m Mem
	if m.RSS, err = kbField(status, "VmRSS:"); err != nil {
		return Mem{}, fmt.Errorf("pid %d status: %w", pid, err)
	}
	rollup, err := os.ReadFile(filepath.Join(dir, "smaps_rollup"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return m, nil
		}
		return Mem{}, err
	}
	if m.PSS, err = kbField(rollup, "Pss:"); err != nil {
		return Mem{}, fmt.Errorf("pid %d smaps_rollup: %w", pid, err)
	}
	return m, nil
}

// kbField finds "<key> <n> kB" in a /proc file and returns n in bytes. A
// missing key is 0: kernel threads and zombies have no VmRSS line.
func kbField(data []byte, key string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, key) {
			continue
		}
		f := strings.Fields(line[len(key):])
		if len(f) == 0 {
			return 0, fmt.Errorf("empty %s", key)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", key, err)
		}
		return n << 10, nil
	}
	return 0, sc.Err()
}

// processTable is a snapshot of every process's parent and command name,
// taken once per sample so that the tree walks are consistent and cheap.
type processTable struct {
	stat     map[int]procStat
	children map[int][]int
}

func snapshotProcesses() (*processTable, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	t := &processTable{stat: map[int]procStat{}, children: map[int][]int{}}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue // exited since ReadDir
		}
		t.stat[pid] = st
		t.children[st.PPID] = append(t.children[st.PPID], pid)
	}
	return t, nil
}

// ancestors returns pid's parent, grandparent, ... up to and excluding
// PID 0.
func (t *processTable) ancestors(pid int) []int {
	var out []int
	seen := map[int]bool{pid: true}
	for {
		st, ok := t.stat[pid]
		if !ok || st.PPID <= 0 || seen[st.PPID] {
			return out
		}
		pid = st.PPID
		seen[pid] = true
		out = append(out, pid)
	}
}

// descendants returns every process below pid (not pid itself).
func (t *processTable) descendants(pid int) []int {
	var out []int
	stack := slices.Clone(t.children[pid])
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		out = append(out, p)
		stack = append(stack, t.children[p]...)
	}
	return out
}

// boundary is the set of processes a per-pod walk must stop at: PID 1, the
// daemon and its ancestors, and the driver and its ancestors. Stopping at
// the driver's ancestors matters when the shims are reparented to a child
// subreaper (a service manager, a test harness) instead of PID 1: that
// subreaper is not a per-pod process.
func (t *processTable) boundary(daemonPID int) map[int]bool {
	b := map[int]bool{1: true}
	for _, root := range []int{daemonPID, os.Getpid()} {
		if root <= 0 {
			continue
		}
		b[root] = true
		for _, a := range t.ancestors(root) {
			b[a] = true
		}
	}
	return b
}

// podProcesses splits a pod's processes into the runtime's overhead
// ("shim": ancestors of the workload PIDs below the boundary and their
// other descendants) and the workload trees (the sandbox PID's and each
// container PID's own subtree). workload lists the sandbox PID first when
// there is one.
func (t *processTable) podProcesses(daemonPID int, workload []int) (shims []int) {
	stop := t.boundary(daemonPID)
	own := map[int]bool{}
	for _, w := range workload {
		own[w] = true
		for _, d := range t.descendants(w) {
			own[d] = true
		}
	}
	tops := map[int]bool{}
	for _, w := range workload {
		for _, a := range t.ancestors(w) {
			if stop[a] {
				break
			}
			if !own[a] {
				tops[a] = true
			}
		}
	}
	set := map[int]bool{}
	for a := range tops {
		set[a] = true
		for _, d := range t.descendants(a) {
			if !own[d] && !stop[d] {
				set[d] = true
			}
		}
	}
	for p := range set {
		shims = append(shims, p)
	}
	slices.Sort(shims)
	return shims
}

// sumMem adds up the memory of pids, skipping those that exited meanwhile.
func sumMem(pids []int) Mem {
	var total Mem
	for _, p := range pids {
		m, err := readMem(p)
		if err == nil {
			total = total.Add(m)
		}
	}
	return total
}

// findDaemon picks the daemon process: an explicit PID, else the only
// process whose comm is name, else the process holding the listening
// unix socket path. 0 means not found, which disables the daemon rows but
// not the rest of the report.
func findDaemon(pid int, name, socketPath string) (int, error) {
	if pid > 0 {
		if _, err := readStat(pid); err != nil {
			return 0, fmt.Errorf("--daemon-pid %d: %w", pid, err)
		}
		return pid, nil
	}
	if name != "" {
		t, err := snapshotProcesses()
		if err != nil {
			return 0, err
		}
		var found []int
		for p, st := range t.stat {
			if st.Comm == name {
				found = append(found, p)
			}
		}
		switch len(found) {
		case 1:
			return found[0], nil
		case 0:
			return 0, fmt.Errorf("no process named %q", name)
		default:
			slices.Sort(found)
			return 0, fmt.Errorf("%d processes named %q (%v): pick one with --daemon-pid", len(found), name, found)
		}
	}
	if socketPath == "" {
		return 0, nil
	}
	return socketOwner(socketPath)
}

// socketOwner finds the process serving the unix socket at path: the
// kernel records who called listen(2) on it and hands that to every
// client that connects (SO_PEERCRED). /proc/net/unix is no help: it shows
// the name the socket was bound to, and a daemon that binds a temporary
// name and renames it into place (cri-runtimed does, so that the socket
// never exists with the wrong mode) is not found under path there.
func socketOwner(path string) (int, error) {
	conn, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return 0, fmt.Errorf("connect to %s: %w", path, err)
	}
	defer conn.Close()
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		cred *unix.Ucred
		cerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, fmt.Errorf("SO_PEERCRED of %s: %w", path, cerr)
	}
	if cred.Pid <= 0 {
		return 0, fmt.Errorf("no process behind unix socket %s", path)
	}
	return int(cred.Pid), nil
}

// cpuTicks is utime+stime of pid in clock ticks (USER_HZ, 100 on Linux).
func cpuTicks(pid int) uint64 {
	st, err := readStat(pid)
	if err != nil {
		return 0
	}
	return st.UTime + st.STime
}
