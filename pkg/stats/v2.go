package stats

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/cgroups/v3/cgroup2"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
)

// v2Mask is what the stats need; hugetlb and rdma would only add reads.
const v2Mask = cgroup2.StatPids | cgroup2.StatCPU | cgroup2.StatMemory | cgroup2.StatMemoryEvents | cgroup2.StatIO

// readV2 returns the stats of the cgroup at p below the cgroup2 mount.
func readV2(mount, p string) (CgroupStats, error) {
	dir := filepath.Join(mount, p)
	// cgroup2 reads missing files as zeros, so absence must be checked
	// here: before, and again after, since the cgroup can go away while
	// it is being read.
	if err := exists(dir); err != nil {
		return CgroupStats{}, err
	}
	mgr, err := cgroup2.Load(p, cgroup2.WithMountpoint(mount))
	if err != nil {
		return CgroupStats{}, fmt.Errorf("load cgroup %s: %w", p, err)
	}
	m, err := mgr.StatFiltered(v2Mask)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return CgroupStats{}, fmt.Errorf("cgroup %s: %w: %w", p, ErrNotFound, err)
		}
		return CgroupStats{}, fmt.Errorf("read cgroup %s: %w", p, err)
	}
	s := fromV2(m)
	if s.Processes, err = countProcs(dir); err != nil {
		return CgroupStats{}, err
	}
	if err := exists(dir); err != nil {
		return CgroupStats{}, err
	}
	return s, nil
}

func exists(dir string) error {
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cgroup %s: %w", dir, ErrNotFound)
		}
		return fmt.Errorf("stat cgroup %s: %w", dir, err)
	}
	return nil
}

// fromV2 converts cgroup2's metrics; v2 reports CPU time and PSI totals in
// microseconds.
func fromV2(m *v2stats.Metrics) CgroupStats {
	var s CgroupStats
	if cpu := m.GetCPU(); cpu != nil {
		s.CPU = CPUStats{
			UsageCoreNanoSeconds: cpu.GetUsageUsec() * 1000,
			UserNanoSeconds:      cpu.GetUserUsec() * 1000,
			SystemNanoSeconds:    cpu.GetSystemUsec() * 1000,
			Periods:              cpu.GetNrPeriods(),
			ThrottledPeriods:     cpu.GetNrThrottled(),
			ThrottledNanoSeconds: cpu.GetThrottledUsec() * 1000,
		}
		s.CPUPressure = fromPSI(cpu.GetPSI())
	}
	if mem := m.GetMemory(); mem != nil {
		s.Memory = MemoryStats{
			UsageBytes:      mem.GetUsage(),
			RSSBytes:        mem.GetAnon(),
			CacheBytes:      mem.GetFile(),
			MappedFileBytes: mem.GetFileMapped(),
			MaxUsageBytes:   mem.GetMaxUsage(),
			LimitBytes:      mem.GetUsageLimit(),
			SwapBytes:       mem.GetSwapUsage(),
			SwapLimitBytes:  mem.GetSwapLimit(),
			PageFaults:      mem.GetPgfault(),
			MajorPageFaults: mem.GetPgmajfault(),
		}
		finishMemory(&s.Memory, mem.GetInactiveFile())
		s.MemoryPressure = fromPSI(mem.GetPSI())
	}
	s.Memory.OOMKills = m.GetMemoryEvents().GetOomKill()
	s.IOPressure = fromPSI(m.GetIo().GetPSI())
	limit := m.GetPids().GetLimit()
	if limit == ^uint64(0) { // "max"
		limit = 0
	}
	s.Pids = PidsStats{Current: m.GetPids().GetCurrent(), Limit: limit}
	return s
}

func fromPSI(p *v2stats.PSIStats) *Pressure {
	if p == nil || (p.GetSome() == nil && p.GetFull() == nil) {
		return nil
	}
	conv := func(d *v2stats.PSIData) PressureData {
		return PressureData{
			TotalNanoSeconds: d.GetTotal() * 1000,
			Avg10:            d.GetAvg10(),
			Avg60:            d.GetAvg60(),
			Avg300:           d.GetAvg300(),
		}
	}
	return &Pressure{Some: conv(p.GetSome()), Full: conv(p.GetFull())}
}
