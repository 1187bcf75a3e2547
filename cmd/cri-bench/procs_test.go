package main

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

func TestParseStat(t *testing.T) {
	// comm may hold spaces and ')': fields are taken after the last ')'.
	line := "4242 (a b) c)) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 1 2 3\n"
	st, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.Comm != "a b) c)" || st.PPID != 17 || st.UTime != 250 || st.STime != 75 {
		t.Fatalf("parseStat = %+v", st)
	}
	if _, err := parseStat([]byte("1 (x) S 0")); err == nil {
		t.Fatal("short stat: no error")
	}
}

func TestKBField(t *testing.T) {
	status := []byte("Name:\tx\nVmRSS:\t    1364 kB\nRssAnon:\t 100 kB\n")
	if n, err := kbField(status, "VmRSS:"); err != nil || n != 1364<<10 {
		t.Fatalf("VmRSS = %d, %v", n, err)
	}
	if n, err := kbField(status, "Pss:"); err != nil || n != 0 {
		t.Fatalf("missing key = %d, %v; want 0, nil", n, err)
	}
}

// fakeProc writes a /proc tree with one stat/status/smaps_rollup per
// process: pid -> (comm, ppid).
func fakeProc(t *testing.T, procs map[int]struct {
	comm string
	ppid int
}) {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := strconv.Itoa(pid) + " (" + p.comm + ") S " + strconv.Itoa(p.ppid) + " 0 0 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0\n"
		files := map[string]string{
			"stat":         stat,
			"status":       "VmRSS:\t" + strconv.Itoa(pid) + " kB\n",
			"smaps_rollup": "Rss: 1 kB\nPss:\t1 kB\n",
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	old := procRoot
	procRoot = root
	t.Cleanup(func() { procRoot = old })
}

func TestPodProcesses(t *testing.T) {
	type p = struct {
		comm string
		ppid int
	}
	// 1 init; 10 daemon; 20 shim of the pod (reparented to 1) with a
	// helper 21; 30 pause and 40 container under the shim, 41 a child of
	// the container; 50 a shim of another pod.
	fakeProc(t, map[int]p{
		1:  {"init", 0},
		10: {"containerd", 1},
		20: {"containerd-shim", 1},
		21: {"helper", 20},
		30: {"pause", 20},
		40: {"sleep", 20},
		41: {"sh", 40},
		50: {"containerd-shim", 1},
		51: {"pause", 50},
	})
	table, err := snapshotProcesses()
	if err != nil {
		t.Fatal(err)
	}
	if got := table.podProcesses(10, []int{30, 40}); !slices.Equal(got, []int{20, 21}) {
		t.Fatalf("podProcesses = %v, want [20 21]", got)
	}
	// A runtime whose daemon is the direct parent has no per-pod
	// process.
	fakeProc(t, map[int]p{1: {"init", 0}, 10: {"daemon", 1}, 30: {"pause", 10}})
	if table, err = snapshotProcesses(); err != nil {
		t.Fatal(err)
	}
	if got := table.podProcesses(10, []int{30}); len(got) != 0 {
		t.Fatalf("podProcesses = %v, want none", got)
	}
	if m := sumMem([]int{10, 30, 999}); m.RSS != 40<<10 || m.PSS != 2<<10 {
		t.Fatalf("sumMem = %+v", m)
	}
}

func TestInfoPID(t *testing.T) {
	if pid, err := infoPID(map[string]string{"info": `{"pid": 123, "processStatus": "running"}`}); err != nil || pid != 123 {
		t.Fatalf("infoPID = %d, %v", pid, err)
	}
	for _, info := range []map[string]string{nil, {"info": `{}`}, {"info": `{"pid": 0}`}, {"info": `not json`}} {
		if _, err := infoPID(info); err == nil {
			t.Errorf("infoPID(%v): no error", info)
		}
	}
}

// TestSocketOwnerRenamed: the daemon serving a socket is found even when
// the socket was bound under another name and renamed into place, as
// cri-runtimed does.
func TestSocketOwnerRenamed(t *testing.T) {
	dir := t.TempDir()
	tmp, final := filepath.Join(dir, ".sock.tmp"), filepath.Join(dir, "daemon.sock")
	lis, err := net.Listen("unix", tmp)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if err := os.Rename(tmp, final); err != nil {
		t.Fatal(err)
	}
	pid, err := socketOwner(final)
	if err != nil || pid != os.Getpid() {
		t.Errorf("socketOwner = %d, %v; want this process, %d", pid, err, os.Getpid())
	}
	if _, err := socketOwner(filepath.Join(dir, "none.sock")); err == nil {
		t.Error("socketOwner of a path without a socket succeeded")
	}
}
