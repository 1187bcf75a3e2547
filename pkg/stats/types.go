package stats

import "time"

// CgroupStats is one reading of a cgroup. Counters are cumulative since the
// cgroup was created; fields a layout does not provide are zero (PSI is
// nil on cgroup v1).
type CgroupStats struct {
	// Timestamp is when the reading started.
	Timestamp time.Time
	CPU       CPUStats
	Memory    MemoryStats
	Pids      PidsStats
	// HasPids says whether Pids.Current was read (Tasks or Detail asked
	// for it and the cgroup has the pids controller).
	HasPids bool
	// Processes is the number of processes in the cgroup and the cgroups
	// below it (cgroup.procs), where Pids.Current counts every thread.
	Processes uint64
	// CPUPressure, MemoryPressure and IOPressure are the cgroup's PSI
	// figures; nil where the kernel has none (cgroup v1, PSI disabled).
	CPUPressure, MemoryPressure, IOPressure *Pressure
	// IO is the cgroup's block I/O per device (cgroup v2's io.stat; none
	// on v1).
	IO []IOStats
}

// IOStats is the block I/O of a cgroup on one device, cumulative.
type IOStats struct {
	Major, Minor uint64
	// Device is the device node ("/dev/vda"), or "major:minor" when the
	// device has none.
	Device                string
	ReadBytes, WriteBytes uint64
	Reads, Writes         uint64
}

// CPUStats is CPU time in nanoseconds, summed over all CPUs.
type CPUStats struct {
	UsageCoreNanoSeconds uint64
	// UsageNanoCores is the average rate since the previous sample of the
	// same key (core-nanoseconds per second); zero on a key's first
	// sample.
	UsageNanoCores    uint64
	UserNanoSeconds   uint64
	SystemNanoSeconds uint64
	// CFS bandwidth control: periods elapsed, periods in which the cgroup
	// was throttled, and the total time it was throttled.
	Periods              uint64
	ThrottledPeriods     uint64
	ThrottledNanoSeconds uint64
}

// MemoryStats is in bytes, as kubelet and cAdvisor define the figures:
// working set is usage minus inactive file pages, the memory the kernel
// cannot easily reclaim, which is what eviction and OOM decisions use.
type MemoryStats struct {
	UsageBytes      uint64
	WorkingSetBytes uint64
	// RSSBytes is anonymous and swap cache memory (v1 total_rss, v2 anon).
	RSSBytes        uint64
	CacheBytes      uint64
	MappedFileBytes uint64
	MaxUsageBytes   uint64
	// LimitBytes is the memory limit; zero when unlimited.
	LimitBytes uint64
	// AvailableBytes is LimitBytes - WorkingSetBytes when limited, zero
	// otherwise.
	AvailableBytes uint64
	SwapBytes      uint64
	// SwapLimitBytes is the swap limit (v1: memsw limit minus memory
	// limit); zero when unlimited or unknown.
	SwapLimitBytes  uint64
	PageFaults      uint64
	MajorPageFaults uint64
	// OOMKills counts processes of the cgroup killed by the OOM killer.
	OOMKills uint64
}

// PidsStats is the number of tasks (threads) and its limit, zero when
// unlimited.
type PidsStats struct {
	Current, Limit uint64
}

// Pressure is a PSI reading ("some" tasks stalled, "full": all stalled).
type Pressure struct {
	Some, Full PressureData
}

// PressureData is one PSI line: the total stall time and its averages in
// percent over 10s, 60s and 300s.
type PressureData struct {
	TotalNanoSeconds     uint64
	Avg10, Avg60, Avg300 float64
}

// unlimited reports whether a memory limit read from the kernel means "no
// limit". cgroup v1 reports the page counter's maximum rounded down to the
// page size and v2 "max"; like kubelet, anything above 2^62 counts.
func unlimited(v uint64) bool {
	return v == 0 || v > 1<<62
}

// finishMemory derives the figures computed from the raw ones.
func finishMemory(m *MemoryStats, inactiveFile uint64) {
	if m.UsageBytes > inactiveFile {
		m.WorkingSetBytes = m.UsageBytes - inactiveFile
	}
	if unlimited(m.LimitBytes) {
		m.LimitBytes = 0
	}
	if unlimited(m.SwapLimitBytes) {
		m.SwapLimitBytes = 0
	}
	if m.LimitBytes != 0 && m.LimitBytes > m.WorkingSetBytes {
		m.AvailableBytes = m.LimitBytes - m.WorkingSetBytes
	}
}
