package stats

import (
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The conversions below are the thin ones pkg/server needs to fill
// ContainerStats and PodSandboxStats; they keep the unit conventions
// (nanosecond timestamps, "unlimited" as absent) in one place.

// CPUUsage is the reading in the CRI form.
func (s CgroupStats) CPUUsage() *runtimeapi.CpuUsage {
	return s.cpuUsage(new(runtimeapi.CpuUsage), new([2]runtimeapi.UInt64Value))
}

func (s CgroupStats) cpuUsage(u *runtimeapi.CpuUsage, v *[2]runtimeapi.UInt64Value) *runtimeapi.CpuUsage {
	v[0].Value, v[1].Value = s.CPU.UsageCoreNanoSeconds, s.CPU.UsageNanoCores
	u.Timestamp = s.Timestamp.UnixNano()
	u.UsageCoreNanoSeconds, u.UsageNanoCores = &v[0], &v[1]
	u.Psi = psi(s.CPUPressure)
	return u
}

// MemoryUsage is the reading in the CRI form. available_bytes is only set
// for a limited cgroup, as kubelet leaves it unset otherwise.
func (s CgroupStats) MemoryUsage() *runtimeapi.MemoryUsage {
	return s.memoryUsage(new(runtimeapi.MemoryUsage), new([6]runtimeapi.UInt64Value))
}

func (s CgroupStats) memoryUsage(m *runtimeapi.MemoryUsage, v *[6]runtimeapi.UInt64Value) *runtimeapi.MemoryUsage {
	v[0].Value, v[1].Value, v[2].Value = s.Memory.WorkingSetBytes, s.Memory.UsageBytes, s.Memory.RSSBytes
	v[3].Value, v[4].Value = s.Memory.PageFaults, s.Memory.MajorPageFaults
	m.Timestamp = s.Timestamp.UnixNano()
	m.WorkingSetBytes, m.UsageBytes, m.RssBytes = &v[0], &v[1], &v[2]
	m.PageFaults, m.MajorPageFaults = &v[3], &v[4]
	m.Psi = psi(s.MemoryPressure)
	if s.Memory.LimitBytes != 0 {
		v[5].Value = s.Memory.AvailableBytes
		m.AvailableBytes = &v[5]
	}
	return m
}

// SwapUsage is the reading in the CRI form; swap_available_bytes is only
// set when swap is limited.
func (s CgroupStats) SwapUsage() *runtimeapi.SwapUsage {
	return s.swapUsage(new(runtimeapi.SwapUsage), new([2]runtimeapi.UInt64Value))
}

func (s CgroupStats) swapUsage(u *runtimeapi.SwapUsage, v *[2]runtimeapi.UInt64Value) *runtimeapi.SwapUsage {
	v[0].Value = s.Memory.SwapBytes
	u.Timestamp = s.Timestamp.UnixNano()
	u.SwapUsageBytes = &v[0]
	if l := s.Memory.SwapLimitBytes; l != 0 {
		if l > s.Memory.SwapBytes {
			v[1].Value = l - s.Memory.SwapBytes
		}
		u.SwapAvailableBytes = &v[1]
	}
	return u
}

// IOUsage is the reading in the CRI form (only PSI, where available).
func (s CgroupStats) IOUsage() *runtimeapi.IoUsage {
	return s.ioUsage(new(runtimeapi.IoUsage))
}

func (s CgroupStats) ioUsage(u *runtimeapi.IoUsage) *runtimeapi.IoUsage {
	u.Timestamp, u.Psi = s.Timestamp.UnixNano(), psi(s.IOPressure)
	return u
}

// ProcessUsage is the reading in the CRI form.
func (s CgroupStats) ProcessUsage() *runtimeapi.ProcessUsage {
	return s.processUsage(new(runtimeapi.ProcessUsage), new(runtimeapi.UInt64Value))
}

func (s CgroupStats) processUsage(u *runtimeapi.ProcessUsage, v *runtimeapi.UInt64Value) *runtimeapi.ProcessUsage {
	v.Value = s.Processes
	u.Timestamp, u.ProcessCount = s.Timestamp.UnixNano(), v
	return u
}

// containerBlock holds the messages of a container's CRI stats other
// than its figures, and usageBlock those of its figures: a stats call of a
// full node builds them for every container, in two allocations instead
// of about twenty (one for a container that is not running, whose figures
// would be a waste of a block).
type containerBlock struct {
	st   runtimeapi.ContainerStats
	fs   runtimeapi.FilesystemUsage
	fsID runtimeapi.FilesystemIdentifier
	fsV  [2]runtimeapi.UInt64Value
}

type usageBlock struct {
	cpu   runtimeapi.CpuUsage
	mem   runtimeapi.MemoryUsage
	swap  runtimeapi.SwapUsage
	io    runtimeapi.IoUsage
	cpuV  [2]runtimeapi.UInt64Value
	memV  [6]runtimeapi.UInt64Value
	swapV [2]runtimeapi.UInt64Value
}

// ContainerStats is a container's stats in the CRI form: attrs, the
// figures of the reading cg (none when nil: a container not running), and
// the usage of its writable layer on the filesystem at mountpoint (none
// when layer is nil).
func ContainerStats(attrs *runtimeapi.ContainerAttributes, cg *CgroupStats, layer *LayerUsage, mountpoint string) *runtimeapi.ContainerStats {
	b := new(containerBlock)
	st := &b.st
	st.Attributes = attrs
	if cg != nil {
		u := new(usageBlock)
		st.Cpu = cg.cpuUsage(&u.cpu, &u.cpuV)
		st.Memory = cg.memoryUsage(&u.mem, &u.memV)
		st.Swap = cg.swapUsage(&u.swap, &u.swapV)
		st.Io = cg.ioUsage(&u.io)
	}
	if layer != nil {
		st.WritableLayer = filesystemUsage(&b.fs, &b.fsID, &b.fsV, layer.At, mountpoint, layer.Bytes, layer.Inodes)
	}
	return st
}

// podBlock holds the messages of a pod's own CRI figures, allocated
// together.
type podBlock struct {
	cpu   runtimeapi.CpuUsage
	mem   runtimeapi.MemoryUsage
	proc  runtimeapi.ProcessUsage
	io    runtimeapi.IoUsage
	cpuV  [2]runtimeapi.UInt64Value
	memV  [6]runtimeapi.UInt64Value
	procV runtimeapi.UInt64Value
}

// PodUsage sets l's cpu, memory, process and io figures to the reading of
// the pod's cgroup.
func (s CgroupStats) PodUsage(l *runtimeapi.LinuxPodSandboxStats) {
	b := new(podBlock)
	l.Cpu = s.cpuUsage(&b.cpu, &b.cpuV)
	l.Memory = s.memoryUsage(&b.mem, &b.memV)
	l.Process = s.processUsage(&b.proc, &b.procV)
	l.Io = s.ioUsage(&b.io)
}

// DefaultInterface is the interface kubelet reports as a pod's default:
// the one CNI plugins create in the pod ("eth0", kubelet's
// network.DefaultInterfaceName).
const DefaultInterface = "eth0"

// NetworkUsage puts interface counters in the CRI form, with defaultIface
// (DefaultInterface when empty) as default_interface and the others in
// interfaces. kubelet (1.34 at least) dereferences default_interface of
// any network usage it gets and panics on a nil one, so without
// defaultIface (a pod whose eth0 is gone mid-teardown, or named
// otherwise) the first interface takes its place, and without any
// interface there is no network usage (nil).
func NetworkUsage(at time.Time, ifaces []InterfaceStats, defaultIface string) *runtimeapi.NetworkUsage {
	if len(ifaces) == 0 {
		return nil
	}
	if defaultIface == "" {
		defaultIface = DefaultInterface
	}
	n := &runtimeapi.NetworkUsage{Timestamp: at.UnixNano()}
	for _, i := range ifaces {
		u := &runtimeapi.NetworkInterfaceUsage{
			Name:     i.Name,
			RxBytes:  &runtimeapi.UInt64Value{Value: i.RxBytes},
			RxErrors: &runtimeapi.UInt64Value{Value: i.RxErrors},
			TxBytes:  &runtimeapi.UInt64Value{Value: i.TxBytes},
			TxErrors: &runtimeapi.UInt64Value{Value: i.TxErrors},
		}
		if i.Name == defaultIface && n.DefaultInterface == nil {
			n.DefaultInterface = u
			continue
		}
		n.Interfaces = append(n.Interfaces, u)
	}
	if n.DefaultInterface == nil {
		n.DefaultInterface, n.Interfaces = n.Interfaces[0], n.Interfaces[1:]
	}
	return n
}

// filesystemUsage puts a writable layer's usage in the CRI form;
// mountpoint identifies the filesystem holding it (the snapshotter root).
func filesystemUsage(u *runtimeapi.FilesystemUsage, id *runtimeapi.FilesystemIdentifier, v *[2]runtimeapi.UInt64Value, at time.Time, mountpoint string, bytes, inodes uint64) *runtimeapi.FilesystemUsage {
	id.Mountpoint = mountpoint
	v[0].Value, v[1].Value = bytes, inodes
	u.Timestamp, u.FsId, u.UsedBytes, u.InodesUsed = at.UnixNano(), id, &v[0], &v[1]
	return u
}

func psi(p *Pressure) *runtimeapi.PsiStats {
	if p == nil {
		return nil
	}
	conv := func(d PressureData) *runtimeapi.PsiData {
		return &runtimeapi.PsiData{Total: d.TotalNanoSeconds, Avg10: d.Avg10, Avg60: d.Avg60, Avg300: d.Avg300}
	}
	return &runtimeapi.PsiStats{Some: conv(p.Some), Full: conv(p.Full)}
}
