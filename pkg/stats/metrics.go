package stats

import (
	"strconv"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Label keys. Every metric carries id, name and image, as cAdvisor's did,
// so that kubelet (which adds container, pod and namespace itself) and
// existing dashboards find the series they expect.
const (
	labelID        = "id"
	labelName      = "name"
	labelImage     = "image"
	labelInterface = "interface"
	labelDevice    = "device"
	labelFailure   = "failure_type"
	labelScope     = "scope"
	labelMajor     = "major"
	labelMinor     = "minor"
	labelOperation = "operation"
)

// The metric names, cAdvisor's.
const (
	MetricCPUUsageSeconds          = "container_cpu_usage_seconds_total"
	MetricCPUUserSeconds           = "container_cpu_user_seconds_total"
	MetricCPUSystemSeconds         = "container_cpu_system_seconds_total"
	MetricCPUCFSPeriods            = "container_cpu_cfs_periods_total"
	MetricCPUCFSThrottledPeriods   = "container_cpu_cfs_throttled_periods_total"
	MetricCPUCFSThrottledSeconds   = "container_cpu_cfs_throttled_seconds_total"
	MetricMemoryUsageBytes         = "container_memory_usage_bytes"
	MetricMemoryWorkingSetBytes    = "container_memory_working_set_bytes"
	MetricMemoryRSS                = "container_memory_rss"
	MetricMemoryCache              = "container_memory_cache"
	MetricMemoryMappedFile         = "container_memory_mapped_file"
	MetricMemorySwap               = "container_memory_swap"
	MetricMemoryMaxUsageBytes      = "container_memory_max_usage_bytes"
	MetricMemoryFailures           = "container_memory_failures_total"
	MetricOOMEvents                = "container_oom_events_total"
	MetricSpecMemoryLimitBytes     = "container_spec_memory_limit_bytes"
	MetricSpecMemorySwapLimitBytes = "container_spec_memory_swap_limit_bytes"
	MetricProcesses                = "container_processes"
	MetricThreads                  = "container_threads"
	MetricThreadsMax               = "container_threads_max"
	MetricFSUsageBytes             = "container_fs_usage_bytes"
	MetricFSInodesUsed             = "container_fs_inodes_used"
	MetricFSReadsBytes             = "container_fs_reads_bytes_total"
	MetricFSWritesBytes            = "container_fs_writes_bytes_total"
	MetricFSReads                  = "container_fs_reads_total"
	MetricFSWrites                 = "container_fs_writes_total"
	MetricBlkioDeviceUsage         = "container_blkio_device_usage_total"
	MetricNetworkReceiveBytes      = "container_network_receive_bytes_total"
	MetricNetworkReceivePackets    = "container_network_receive_packets_total"
	MetricNetworkReceiveDropped    = "container_network_receive_packets_dropped_total"
	MetricNetworkReceiveErrors     = "container_network_receive_errors_total"
	MetricNetworkTransmitBytes     = "container_network_transmit_bytes_total"
	MetricNetworkTransmitPackets   = "container_network_transmit_packets_total"
	MetricNetworkTransmitDropped   = "container_network_transmit_packets_dropped_total"
	MetricNetworkTransmitErrors    = "container_network_transmit_errors_total"
	MetricStartTimeSeconds         = "container_start_time_seconds"
	MetricLastSeen                 = "container_last_seen"
)

// metricDef is one descriptor: help text and the label keys beyond the
// base id, name, image.
type metricDef struct {
	name, help string
	extra      []string
}

// metricDefs lists every metric ContainerMetrics can emit. It is a
// function, not a package variable, so no caller can change the table.
func metricDefs() []metricDef {
	iface := []string{labelInterface}
	return []metricDef{
		{MetricCPUUsageSeconds, "Cumulative cpu time consumed in seconds.", nil},
		{MetricCPUUserSeconds, "Cumulative user cpu time consumed in seconds.", nil},
		{MetricCPUSystemSeconds, "Cumulative system cpu time consumed in seconds.", nil},
		{MetricCPUCFSPeriods, "Number of elapsed enforcement period intervals.", nil},
		{MetricCPUCFSThrottledPeriods, "Number of throttled period intervals.", nil},
		{MetricCPUCFSThrottledSeconds, "Total time duration the container has been throttled.", nil},
		{MetricMemoryUsageBytes, "Current memory usage in bytes, including all memory regardless of when it was accessed.", nil},
		{MetricMemoryWorkingSetBytes, "Current working set in bytes.", nil},
		{MetricMemoryRSS, "Size of RSS in bytes.", nil},
		{MetricMemoryCache, "Number of bytes of page cache memory.", nil},
		{MetricMemoryMappedFile, "Size of memory mapped files in bytes.", nil},
		{MetricMemorySwap, "Container swap usage in bytes.", nil},
		{MetricMemoryMaxUsageBytes, "Maximum memory usage recorded in bytes.", nil},
		{MetricMemoryFailures, "Cumulative count of memory allocation failures.", []string{labelFailure, labelScope}},
		{MetricOOMEvents, "Count of out of memory events observed for the container.", nil},
		{MetricSpecMemoryLimitBytes, "Memory limit for the container.", nil},
		{MetricSpecMemorySwapLimitBytes, "Memory swap limit for the container.", nil},
		{MetricProcesses, "Number of processes running inside the container.", nil},
		{MetricThreads, "Number of threads running inside the container.", nil},
		{MetricThreadsMax, "Maximum number of threads allowed inside the container, 0 if unlimited.", nil},
		{MetricFSUsageBytes, "Number of bytes that are consumed by the container on this filesystem.", []string{labelDevice}},
		{MetricFSInodesUsed, "Number of inodes that are consumed by the container on this filesystem.", []string{labelDevice}},
		{MetricFSReadsBytes, "Cumulative count of bytes read.", []string{labelDevice}},
		{MetricFSWritesBytes, "Cumulative count of bytes written.", []string{labelDevice}},
		{MetricFSReads, "Cumulative count of reads completed.", []string{labelDevice}},
		{MetricFSWrites, "Cumulative count of writes completed.", []string{labelDevice}},
		{MetricBlkioDeviceUsage, "Blkio device bytes usage.", []string{labelDevice, labelMajor, labelMinor, labelOperation}},
		{MetricNetworkReceiveBytes, "Cumulative count of bytes received.", iface},
		{MetricNetworkReceivePackets, "Cumulative count of packets received.", iface},
		{MetricNetworkReceiveDropped, "Cumulative count of packets dropped while receiving.", iface},
		{MetricNetworkReceiveErrors, "Cumulative count of errors encountered while receiving.", iface},
		{MetricNetworkTransmitBytes, "Cumulative count of bytes transmitted.", iface},
		{MetricNetworkTransmitPackets, "Cumulative count of packets transmitted.", iface},
		{MetricNetworkTransmitDropped, "Cumulative count of packets dropped while transmitting.", iface},
		{MetricNetworkTransmitErrors, "Cumulative count of errors encountered while transmitting.", iface},
		{MetricStartTimeSeconds, "Start time of the container since unix epoch in seconds.", nil},
		{MetricLastSeen, "Last time a container was seen by the exporter.", nil},
	}
}

// MetricDescriptors returns the descriptors of every metric
// ContainerMetrics emits, for ListMetricDescriptors. Each call returns new
// messages, which the caller may keep or change.
func MetricDescriptors() []*runtimeapi.MetricDescriptor {
	defs := metricDefs()
	out := make([]*runtimeapi.MetricDescriptor, 0, len(defs))
	for _, d := range defs {
		keys := append([]string{labelID, labelName, labelImage}, d.extra...)
		out = append(out, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: keys})
	}
	return out
}

// MetricsInput is what the metrics of one container, or of a sandbox, are
// made of. Nil or zero parts are left out, so a sandbox passes its pod
// cgroup and network, a container its cgroup and writable layer.
type MetricsInput struct {
	// ID, Name and Image become the id, name and image labels: the
	// container ID, its name and image reference; for the sandbox's own
	// series the sandbox ID, "POD" and "" as kubelet's CRI metrics expect.
	ID, Name, Image string
	// Cgroup is the container's (or the pod's) cgroup reading.
	Cgroup *CgroupStats
	// Filesystem is the writable layer's usage.
	Filesystem *FilesystemStats
	// Interfaces are the pod network namespace's counters.
	Interfaces []InterfaceStats
	// StartTime is when the container started; zero omits the metric.
	StartTime time.Time
	// Now stamps container_last_seen; zero takes the cgroup reading's
	// time, or omits the metric without one.
	Now time.Time
}

// FilesystemStats is a writable layer's usage on one filesystem.
type FilesystemStats struct {
	// Device labels the series (cAdvisor put the block device there);
	// the snapshotter's mount source or root directory serves.
	Device     string
	UsedBytes  uint64
	InodesUsed uint64
}

// ContainerMetrics returns the metrics of one container or sandbox in the
// CRI form, for ListPodSandboxMetrics. Values are read live, so their
// timestamps are zero as the CRI asks. CRI metric values are integers:
// second-valued counters are truncated to whole seconds, which rate()
// over kubelet's usual windows tolerates.
func ContainerMetrics(in MetricsInput) []*runtimeapi.Metric {
	b := metricBuilder{base: []string{in.ID, in.Name, in.Image}}
	if s := in.Cgroup; s != nil {
		b.counter(MetricCPUUsageSeconds, s.CPU.UsageCoreNanoSeconds/uint64(time.Second))
		b.counter(MetricCPUUserSeconds, s.CPU.UserNanoSeconds/uint64(time.Second))
		b.counter(MetricCPUSystemSeconds, s.CPU.SystemNanoSeconds/uint64(time.Second))
		b.counter(MetricCPUCFSPeriods, s.CPU.Periods)
		b.counter(MetricCPUCFSThrottledPeriods, s.CPU.ThrottledPeriods)
		b.counter(MetricCPUCFSThrottledSeconds, s.CPU.ThrottledNanoSeconds/uint64(time.Second))
		m := s.Memory
		b.gauge(MetricMemoryUsageBytes, m.UsageBytes)
		b.gauge(MetricMemoryWorkingSetBytes, m.WorkingSetBytes)
		b.gauge(MetricMemoryRSS, m.RSSBytes)
		b.gauge(MetricMemoryCache, m.CacheBytes)
		b.gauge(MetricMemoryMappedFile, m.MappedFileBytes)
		b.gauge(MetricMemorySwap, m.SwapBytes)
		b.gauge(MetricMemoryMaxUsageBytes, m.MaxUsageBytes)
		// The kernel's fault counters are hierarchical; a container's
		// cgroup has no children, so both of cAdvisor's scopes agree.
		for _, scope := range []string{"container", "hierarchy"} {
			b.counter(MetricMemoryFailures, m.PageFaults, "pgfault", scope)
			b.counter(MetricMemoryFailures, m.MajorPageFaults, "pgmajfault", scope)
		}
		b.counter(MetricOOMEvents, m.OOMKills)
		b.gauge(MetricSpecMemoryLimitBytes, m.LimitBytes)
		b.gauge(MetricSpecMemorySwapLimitBytes, m.SwapLimitBytes)
		b.gauge(MetricProcesses, s.Processes)
		b.gauge(MetricThreads, s.Pids.Current)
		b.gauge(MetricThreadsMax, s.Pids.Limit)
		for _, io := range s.IO {
			b.counter(MetricFSReadsBytes, io.ReadBytes, io.Device)
			b.counter(MetricFSWritesBytes, io.WriteBytes, io.Device)
			b.counter(MetricFSReads, io.Reads, io.Device)
			b.counter(MetricFSWrites, io.Writes, io.Device)
			major, minor := strconv.FormatUint(io.Major, 10), strconv.FormatUint(io.Minor, 10)
			b.counter(MetricBlkioDeviceUsage, io.ReadBytes, io.Device, major, minor, "Read")
			b.counter(MetricBlkioDeviceUsage, io.WriteBytes, io.Device, major, minor, "Write")
		}
	}
	if fs := in.Filesystem; fs != nil {
		b.gauge(MetricFSUsageBytes, fs.UsedBytes, fs.Device)
		b.gauge(MetricFSInodesUsed, fs.InodesUsed, fs.Device)
	}
	for _, i := range in.Interfaces {
		b.counter(MetricNetworkReceiveBytes, i.RxBytes, i.Name)
		b.counter(MetricNetworkReceivePackets, i.RxPackets, i.Name)
		b.counter(MetricNetworkReceiveDropped, i.RxDropped, i.Name)
		b.counter(MetricNetworkReceiveErrors, i.RxErrors, i.Name)
		b.counter(MetricNetworkTransmitBytes, i.TxBytes, i.Name)
		b.counter(MetricNetworkTransmitPackets, i.TxPackets, i.Name)
		b.counter(MetricNetworkTransmitDropped, i.TxDropped, i.Name)
		b.counter(MetricNetworkTransmitErrors, i.TxErrors, i.Name)
	}
	if !in.StartTime.IsZero() && in.StartTime.Unix() > 0 {
		b.gauge(MetricStartTimeSeconds, uint64(in.StartTime.Unix()))
	}
	seen := in.Now
	if seen.IsZero() && in.Cgroup != nil {
		seen = in.Cgroup.Timestamp
	}
	if !seen.IsZero() && seen.Unix() > 0 {
		b.gauge(MetricLastSeen, uint64(seen.Unix()))
	}
	return b.out
}

// metricBuilder appends metrics sharing the base label values.
type metricBuilder struct {
	base []string
	out  []*runtimeapi.Metric
}

func (b *metricBuilder) counter(name string, v uint64, extra ...string) {
	b.add(name, runtimeapi.MetricType_COUNTER, v, extra)
}

func (b *metricBuilder) gauge(name string, v uint64, extra ...string) {
	b.add(name, runtimeapi.MetricType_GAUGE, v, extra)
}

func (b *metricBuilder) add(name string, typ runtimeapi.MetricType, v uint64, extra []string) {
	labels := make([]string, 0, len(b.base)+len(extra))
	labels = append(append(labels, b.base...), extra...)
	b.out = append(b.out, &runtimeapi.Metric{
		Name:        name,
		MetricType:  typ,
		LabelValues: labels,
		Value:       &runtimeapi.UInt64Value{Value: v},
	})
}
