package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Operation names, in the order the report lists them.
const (
	opRunPodSandbox    = "RunPodSandbox"
	opCreateContainer  = "CreateContainer"
	opStartContainer   = "StartContainer"
	opRunToRunning     = "run→running"
	opStopContainer    = "StopContainer"
	opRemoveContainer  = "RemoveContainer"
	opStopPodSandbox   = "StopPodSandbox"
	opRemovePodSandbox = "RemovePodSandbox"
)

var opOrder = []string{
	opRunPodSandbox, opCreateContainer, opStartContainer, opRunToRunning,
	opStopContainer, opRemoveContainer, opStopPodSandbox, opRemovePodSandbox,
}

// Latency summarizes the durations of one operation, in milliseconds so
// the JSON is readable without unit conversion.
type Latency struct {
	Count  int     `json:"count"`
	P50ms  float64 `json:"p50_ms"`
	P90ms  float64 `json:"p90_ms"`
	P99ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
	MeanMs float64 `json:"mean_ms"`
}

// percentile is the nearest-rank percentile of sorted: the smallest value
// with at least p% of the samples at or below it. With 20 samples p99 is
// the maximum, which is the honest answer for so few samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func summarize(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var total time.Duration
	for _, d := range s {
		total += d
	}
	return Latency{
		Count:  len(s),
		P50ms:  ms(percentile(s, 50)),
		P90ms:  ms(percentile(s, 90)),
		P99ms:  ms(percentile(s, 99)),
		MaxMs:  ms(s[len(s)-1]),
		MeanMs: ms(total / time.Duration(len(s))),
	}
}

// MemStats summarizes one kind of per-pod process memory over the pods.
type MemStats struct {
	Pods      int   `json:"pods"`
	Processes int   `json:"processes"`
	RSSp50    int64 `json:"rss_p50_bytes"`
	RSSmax    int64 `json:"rss_max_bytes"`
	PSSp50    int64 `json:"pss_p50_bytes"`
	PSSmax    int64 `json:"pss_max_bytes"`
	RSSTotal  int64 `json:"rss_total_bytes"`
	PSSTotal  int64 `json:"pss_total_bytes"`
}

func summarizeMem(perPod []Mem, processes int) MemStats {
	st := MemStats{Pods: len(perPod), Processes: processes}
	if len(perPod) == 0 {
		return st
	}
	rss := make([]int64, len(perPod))
	pss := make([]int64, len(perPod))
	for i, m := range perPod {
		rss[i], pss[i] = m.RSS, m.PSS
		st.RSSTotal += m.RSS
		st.PSSTotal += m.PSS
	}
	slices.Sort(rss)
	slices.Sort(pss)
	mid := (len(perPod) - 1) / 2
	st.RSSp50, st.RSSmax = rss[mid], rss[len(rss)-1]
	st.PSSp50, st.PSSmax = pss[mid], pss[len(pss)-1]
	return st
}

// Level is the result of one parallelism level.
type Level struct {
	Parallel int                `json:"parallel"`
	Pods     int                `json:"pods"`
	WallSecs float64            `json:"wall_seconds"`
	Ops      map[string]Latency `json:"ops"`
	// Daemon memory before any pod of this level exists, with all pods
	// running, and after they are all removed.
	DaemonBefore  *Mem `json:"daemon_before,omitempty"`
	DaemonRunning *Mem `json:"daemon_running,omitempty"`
	DaemonAfter   *Mem `json:"daemon_after,omitempty"`
	// DaemonCPUSecs is the daemon's user+system CPU time over the level.
	DaemonCPUSecs float64 `json:"daemon_cpu_seconds"`
	// Per-pod process memory with all pods running (after --settle).
	Shim      MemStats `json:"shim"`
	Pause     MemStats `json:"pause"`
	Container MemStats `json:"container"`
	// AfterStart is the same sample taken right after the last pod
	// started, when --settle waits before the one above: the memory of a
	// node just after a burst of pod starts.
	AfterStart *PodMemory `json:"after_start,omitempty"`
	// Notes are caveats found while sampling (missing pids...).
	Notes []string `json:"notes,omitempty"`
}

// PodMemory is one sample of the per-pod processes.
type PodMemory struct {
	Daemon    *Mem     `json:"daemon,omitempty"`
	Shim      MemStats `json:"shim"`
	Pause     MemStats `json:"pause"`
	Container MemStats `json:"container"`
}

// Report is the whole run, as written by --json.
type Report struct {
	Endpoint       string    `json:"endpoint"`
	RuntimeName    string    `json:"runtime_name"`
	RuntimeVersion string    `json:"runtime_version"`
	RuntimeHandler string    `json:"runtime_handler,omitempty"`
	Image          string    `json:"image"`
	ImagePullMs    float64   `json:"image_pull_ms,omitempty"`
	HostNetwork    bool      `json:"host_network"`
	DaemonPID      int       `json:"daemon_pid,omitempty"`
	DaemonComm     string    `json:"daemon_comm,omitempty"`
	Started        time.Time `json:"started"`
	Levels         []*Level  `json:"levels"`
}

func mib(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

// WriteTable prints the human-readable report. Write errors are left to
// the caller's writer: stdout has nowhere better to report them.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "\nruntime %s %s at %s, image %s", r.RuntimeName, r.RuntimeVersion, r.Endpoint, r.Image)
	if r.RuntimeHandler != "" {
		fmt.Fprintf(w, ", handler %q", r.RuntimeHandler)
	}
	if r.HostNetwork {
		fmt.Fprint(w, ", host network")
	}
	fmt.Fprintln(w)
	if r.DaemonPID > 0 {
		fmt.Fprintf(w, "daemon pid %d (%s)\n", r.DaemonPID, r.DaemonComm)
	}
	if r.ImagePullMs > 0 {
		fmt.Fprintf(w, "image pulled in %.1f ms\n", r.ImagePullMs)
	}
	for _, l := range r.Levels {
		fmt.Fprintf(w, "\n== %d pods, parallel %d: %.2fs wall, %.2f pods/s, daemon CPU %.2fs\n",
			l.Pods, l.Parallel, l.WallSecs, float64(l.Pods)/max(l.WallSecs, 1e-9), l.DaemonCPUSecs)
		fmt.Fprintf(w, "%-20s %4s %8s %8s %8s %8s %8s\n", "operation (ms)", "n", "p50", "p90", "p99", "max", "mean")
		for _, name := range opOrder {
			lat, ok := l.Ops[name]
			if !ok {
				continue
			}
			fmt.Fprintf(w, "%-20s %4d %8.1f %8.1f %8.1f %8.1f %8.1f\n", name, lat.Count,
				lat.P50ms, lat.P90ms, lat.P99ms, lat.MaxMs, lat.MeanMs)
		}
		fmt.Fprintf(w, "\n%-20s %5s %8s %8s %8s %8s %8s %8s\n", "memory (MiB)", "procs", "RSS p50", "RSS max", "PSS p50", "PSS max", "RSS sum", "PSS sum")
		for _, d := range []struct {
			name string
			m    *Mem
		}{{"daemon, before", l.DaemonBefore}, {"daemon, pods up", l.DaemonRunning}, {"daemon, after", l.DaemonAfter}} {
			if d.m == nil {
				continue
			}
			fmt.Fprintf(w, "%-20s %5d %8s %8s %8s %8s\n", d.name, 1, mib(d.m.RSS), "", mib(d.m.PSS), "")
		}
		type row struct {
			name string
			s    MemStats
		}
		rows := []row{{"shim, per pod", l.Shim}, {"pause, per pod", l.Pause}, {"container, per pod", l.Container}}
		if a := l.AfterStart; a != nil {
			if a.Daemon != nil {
				fmt.Fprintf(w, "%-20s %5d %8s %8s %8s %8s\n", "daemon, at start end", 1, mib(a.Daemon.RSS), "", mib(a.Daemon.PSS), "")
			}
			rows = append(rows, row{"shim, at start end", a.Shim}, row{"pause, at start end", a.Pause})
		}
		for _, p := range rows {
			if p.s.Pods == 0 {
				continue
			}
			fmt.Fprintf(w, "%-20s %5d %8s %8s %8s %8s %8s %8s\n", p.name, p.s.Processes,
				mib(p.s.RSSp50), mib(p.s.RSSmax), mib(p.s.PSSp50), mib(p.s.PSSmax), mib(p.s.RSSTotal), mib(p.s.PSSTotal))
		}
		if len(l.Notes) > 0 {
			fmt.Fprintf(w, "notes:\n  %s\n", strings.Join(l.Notes, "\n  "))
		}
	}
}
