package shim

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
)

// bundleCgroupsPath reads linux.cgroupsPath from the bundle's config.json.
func bundleCgroupsPath(bundle string) string {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return ""
	}
	var spec struct {
		Linux *struct {
			CgroupsPath string `json:"cgroupsPath"`
		} `json:"linux"`
	}
	if json.Unmarshal(b, &spec) != nil || spec.Linux == nil {
		return ""
	}
	return spec.Linux.CgroupsPath
}

// oomFiles returns the files holding the oom_kill counters of the
// container's cgroup and of the pod's (its parent) for a cgroups path in
// either driver's form; "" where unknown. The pod's is only given on
// cgroup v2, whose memory.events counts the kills below the cgroup too.
func oomFiles(cgroupsPath string) (own, pod string) {
	if cgroupsPath == "" {
		return "", ""
	}
	dir, err := cgroups.Resolve(cgroupsPath)
	if err != nil {
		klog.InfoS("No OOM detection for an unreadable cgroups path", "cgroupsPath", cgroupsPath, "err", err)
		return "", ""
	}
	l, err := cgroups.HostLayout()
	if err != nil {
		klog.InfoS("No OOM detection: cgroup mounts unknown", "err", err)
		return "", ""
	}
	if l.Unified() && filepath.Dir(dir) != "/" {
		pod = l.OOMFile(filepath.Dir(dir))
	}
	return l.OOMFile(dir), pod
}

// oomKills reads the oom_kill counter (same key in v1 oom_control and v2
// memory.events); -1 if unavailable.
func oomKills(file string) int64 {
	if file == "" {
		return -1
	}
	f, err := os.Open(file)
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == "oom_kill" {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// oomCounter is one container's oom_kill counter.
type oomCounter struct {
	file string
	wd   int32 // inotify watch, -1 when none
	seen atomic.Int64
	// at is the counter when the container was created.
	at int64
	// pod is the pod cgroup's counter and podAt its value at create: it
	// outlives the container's cgroup.
	pod   string
	podAt int64
}

// read returns the highest value of the counter seen so far, reading the
// file now too; -1 if it was never readable.
func (o *oomCounter) read() int64 {
	if o == nil {
		return -1
	}
	n := oomKills(o.file)
	for {
		old := o.seen.Load()
		if n <= old {
			return old
		}
		if o.seen.CompareAndSwap(old, n) {
			return n
		}
	}
}

// killed reports whether the OOM killer hit a process of the container
// since its creation. killedBy9 says the container's init died of SIGKILL
// or exited with 137, as a shell does when its child was OOM-killed.
//
// The container's own counter decides when it is known. When the cgroup
// is gone before a kill was seen (systemd removed the scope at once and
// the kernel's change notification, which it delays up to 10ms after
// another, came too late) the pod's counter, which counts its containers'
// kills and stays, decides for a container killed by SIGKILL.
func (o *oomCounter) killed(killedBy9 bool) bool {
	if o == nil || o.at < 0 {
		return false
	}
	if o.read() > o.at {
		return true
	}
	return killedBy9 && oomKills(o.file) < 0 && o.podAt >= 0 && oomKills(o.pod) > o.podAt
}

// oomWatcher reads oom_kill counters as the kernel changes them (a change
// of memory.events is an inotify modify event). Under the systemd driver
// systemd removes a container's scope, cgroup included, as soon as its
// last process is gone, which is often before the shim reads the counter
// at the container's exit; the value read when the kill happened remains.
// On cgroup v1 (no notification) the counter is read at create and exit
// only, which works there because runc removes the cgroup at delete.
type oomWatcher struct {
	f *os.File // nil when inotify is unavailable

	mu   sync.Mutex
	byWD map[int32]*oomCounter
}

// newOOMWatcher returns a watcher; with notify (a unified host, the only
// one with memory.events to follow), one that holds an inotify instance.
// Elsewhere it holds none: the kernel allows 128 per user by default, and
// with one per shim a node of 110 pods left kubelet's cAdvisor none
// ("inotify_init: too many open files", kubelet does not start).
func newOOMWatcher(notify bool) *oomWatcher {
	w := &oomWatcher{byWD: map[int32]*oomCounter{}}
	if !notify {
		return w
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		klog.InfoS("OOM kills are only read at container exit", "err", err)
		return w
	}
	// Non-blocking, so reads go through the runtime poller and Close
	// ends a pending one.
	w.f = os.NewFile(uintptr(fd), "inotify")
	return w
}

// watch starts following the counters of the container with cgroupsPath,
// once its cgroup exists, and reads their current values.
func (w *oomWatcher) watch(cgroupsPath string) *oomCounter {
	file, pod := oomFiles(cgroupsPath)
	return w.watchFiles(file, pod)
}

func (w *oomWatcher) watchFiles(file, pod string) *oomCounter {
	if file == "" {
		return nil
	}
	o := &oomCounter{file: file, wd: -1, pod: pod, podAt: -1}
	o.seen.Store(-1)
	if pod != "" {
		o.podAt = oomKills(pod)
	}
	if w.f != nil && strings.HasSuffix(file, "memory.events") {
		wd, err := unix.InotifyAddWatch(int(w.f.Fd()), file, unix.IN_MODIFY)
		if err == nil {
			o.wd = int32(wd)
			w.mu.Lock()
			w.byWD[o.wd] = o
			w.mu.Unlock()
		} else {
			klog.V(2).InfoS("Cannot watch the OOM counter", "file", file, "err", err)
		}
	}
	o.at = o.read()
	return o
}

// unwatch stops following o (its container is deleted).
func (w *oomWatcher) unwatch(o *oomCounter) {
	if o == nil || o.wd < 0 {
		return
	}
	w.mu.Lock()
	_, live := w.byWD[o.wd]
	delete(w.byWD, o.wd)
	w.mu.Unlock()
	if live {
		// Fails harmlessly if the kernel dropped the watch with the cgroup.
		_, _ = unix.InotifyRmWatch(int(w.f.Fd()), uint32(o.wd))
	}
}

// run reads the watches' events until close.
func (w *oomWatcher) run() {
	if w.f == nil {
		return
	}
	buf := make([]byte, 4096)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			w.mu.Lock()
			o := w.byWD[ev.Wd]
			if ev.Mask&unix.IN_IGNORED != 0 {
				delete(w.byWD, ev.Wd) // the cgroup is gone
			}
			w.mu.Unlock()
			if o != nil && ev.Mask&unix.IN_MODIFY != 0 {
				o.read()
			}
		}
	}
}

func (w *oomWatcher) close() {
	if w.f != nil {
		w.f.Close()
	}
}
