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
	return &runtimeapi.CpuUsage{
		Timestamp:            s.Timestamp.UnixNano(),
		UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: s.CPU.UsageCoreNanoSeconds},
		UsageNanoCores:       &runtimeapi.UInt64Value{Value: s.CPU.UsageNanoCores},
		Psi:                  psi(s.CPUPressure),
	}
}

// MemoryUsage is the reading in the CRI form. available_bytes is only set
// for a limited cgroup, as kubelet leaves it unset otherwise.
func (s CgroupStats) MemoryUsage() *runtimeapi.MemoryUsage {
	m := &runtimeapi.MemoryUsage{
		Timestamp:       s.Timestamp.UnixNano(),
		WorkingSetBytes: &runtimeapi.UInt64Value{Value: s.Memory.WorkingSetBytes},
		UsageBytes:      &runtimeapi.UInt64Value{Value: s.Memory.UsageBytes},
		RssBytes:        &runtimeapi.UInt64Value{Value: s.Memory.RSSBytes},
		PageFaults:      &runtimeapi.UInt64Value{Value: s.Memory.PageFaults},
		MajorPageFaults: &runtimeapi.UInt64Value{Value: s.Memory.MajorPageFaults},
		Psi:             psi(s.MemoryPressure),
	}
	if s.Memory.LimitBytes != 0 {
		m.AvailableBytes = &runtimeapi.UInt64Value{Value: s.Memory.AvailableBytes}
	}
	return m
}

// SwapUsage is the reading in the CRI form; swap_available_bytes is only
// set when swap is limited.
func (s CgroupStats) SwapUsage() *runtimeapi.SwapUsage {
	u := &runtimeapi.SwapUsage{
		Timestamp:      s.Timestamp.UnixNano(),
		SwapUsageBytes: &runtimeapi.UInt64Value{Value: s.Memory.SwapBytes},
	}
	if l := s.Memory.SwapLimitBytes; l != 0 {
		var avail uint64
		if l > s.Memory.SwapBytes {
			avail = l - s.Memory.SwapBytes
		}
		u.SwapAvailableBytes = &runtimeapi.UInt64Value{Value: avail}
	}
	return u
}

// IOUsage is the reading in the CRI form (only PSI, where available).
func (s CgroupStats) IOUsage() *runtimeapi.IoUsage {
	return &runtimeapi.IoUsage{Timestamp: s.Timestamp.UnixNano(), Psi: psi(s.IOPressure)}
}

// ProcessUsage is the reading in the CRI form.
func (s CgroupStats) ProcessUsage() *runtimeapi.ProcessUsage {
	return &runtimeapi.ProcessUsage{
		Timestamp:    s.Timestamp.UnixNano(),
		ProcessCount: &runtimeapi.UInt64Value{Value: s.Processes},
	}
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

// FilesystemUsage puts a writable layer's usage in the CRI form;
// mountpoint identifies the filesystem holding it (the snapshotter root).
func FilesystemUsage(at time.Time, mountpoint string, bytes, inodes uint64) *runtimeapi.FilesystemUsage {
	return &runtimeapi.FilesystemUsage{
		Timestamp:  at.UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: mountpoint},
		UsedBytes:  &runtimeapi.UInt64Value{Value: bytes},
		InodesUsed: &runtimeapi.UInt64Value{Value: inodes},
	}
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
