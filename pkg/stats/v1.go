package stats

import (
	"fmt"
	"os"
	"path/filepath"
)

// userHZ is the unit of cpuacct.stat: clock ticks, 100 per second on
// every Linux architecture Go supports.
const userHZ = 100

// v1 reads cgroup v1 hierarchies, root/<controller>/<cgroup>/<file>. The
// controllers mounted are found once; a reading opens nothing else.
type v1 struct {
	root string
	has  map[string]bool // cpu, cpuacct, memory, pids
	// procs is the controller whose cgroup.procs counts processes.
	procs string
}

func newV1(root string) (*v1, error) {
	v := &v1{root: root, has: map[string]bool{}}
	for _, ctrl := range []string{"cpuacct", "memory", "cpu", "pids"} {
		if fi, err := os.Stat(filepath.Join(root, ctrl)); err == nil && fi.IsDir() {
			v.has[ctrl] = true
			if v.procs == "" || ctrl == "pids" {
				v.procs = ctrl
			}
		}
	}
	if len(v.has) == 0 {
		return nil, fmt.Errorf("no cpu, cpuacct, memory or pids cgroup v1 controller under %s", root)
	}
	return v, nil
}

// read returns the figures want asks for of the cgroup at p. The memory
// figures are the total_* (hierarchical) values, so a pod's cgroup
// includes its containers.
func (v *v1) read(r *fileReader, p string, want Figures) (CgroupStats, error) {
	var s CgroupStats
	file := func(ctrl, name string) fileKey { return fileKey{ctrl, name} }
	keep := true
	if want&(Usage|Detail) != 0 && v.has["cpuacct"] {
		var err error
		if s.CPU.UsageCoreNanoSeconds, err = r.uint(file("cpuacct", "cpuacct.usage"), keep); err != nil {
			return s, err
		}
	}
	if want&(Usage|Detail) != 0 && v.has["memory"] {
		if err := v.memory(r, file, &s, want&(Swap|Detail) != 0); err != nil {
			return s, err
		}
	}
	if want&Detail != 0 {
		if err := v.detail(r, file, &s); err != nil {
			return s, err
		}
	}
	if want&Tasks != 0 && v.has["pids"] {
		var err error
		if s.Pids.Current, err = r.uint(file("pids", "pids.current"), keep); err != nil {
			return s, err
		}
		s.HasPids = true
	}
	if want&Processes != 0 {
		// Never kept open: a cgroup.procs read again from offset 0 does
		// not always start its listing over.
		b, err := r.read(file(v.procs, "cgroup.procs"), false)
		if err != nil {
			return s, err
		}
		s.Processes = countLines(b)
	}
	return s, nil
}

func (v *v1) memory(r *fileReader, file func(ctrl, name string) fileKey, s *CgroupStats, swap bool) error {
	const keep = true
	m := &s.Memory
	var err error
	if m.UsageBytes, err = r.uint(file("memory", "memory.usage_in_bytes"), keep); err != nil {
		return err
	}
	if m.LimitBytes, err = r.limit(file("memory", "memory.limit_in_bytes"), false); err != nil {
		return err
	}
	b, err := r.read(file("memory", "memory.stat"), keep)
	if err != nil {
		return err
	}
	var inactiveFile uint64
	keyValues(b, func(k []byte, n uint64) {
		switch string(k) {
		case "total_rss":
			m.RSSBytes = n
		case "total_cache":
			m.CacheBytes = n
		case "total_mapped_file":
			m.MappedFileBytes = n
		case "total_inactive_file":
			inactiveFile = n
		case "total_pgfault":
			m.PageFaults = n
		case "total_pgmajfault":
			m.MajorPageFaults = n
		}
	})
	if !swap {
		finishMemory(m, inactiveFile)
		return nil
	}
	// memsw counts memory plus swap, and exists only with swap
	// accounting.
	memsw, err := r.optionalUint(file("memory", "memory.memsw.usage_in_bytes"), keep)
	if err != nil {
		return err
	}
	if memsw > m.UsageBytes {
		m.SwapBytes = memsw - m.UsageBytes
	}
	memswLimit, err := r.limit(file("memory", "memory.memsw.limit_in_bytes"), true)
	if err != nil {
		return err
	}
	if !unlimited(memswLimit) && !unlimited(m.LimitBytes) && memswLimit > m.LimitBytes {
		m.SwapLimitBytes = memswLimit - m.LimitBytes
	}
	finishMemory(m, inactiveFile)
	return nil
}

// detail reads the figures only the metrics report; none is kept open.
func (v *v1) detail(r *fileReader, file func(ctrl, name string) fileKey, s *CgroupStats) error {
	const keep = false
	if v.has["cpuacct"] {
		b, err := r.read(file("cpuacct", "cpuacct.stat"), keep)
		if err != nil {
			return err
		}
		keyValues(b, func(k []byte, n uint64) {
			switch string(k) {
			case "user":
				s.CPU.UserNanoSeconds = n * 1e9 / userHZ
			case "system":
				s.CPU.SystemNanoSeconds = n * 1e9 / userHZ
			}
		})
	}
	if v.has["cpu"] {
		b, err := r.read(file("cpu", "cpu.stat"), keep)
		if err != nil {
			return err
		}
		keyValues(b, func(k []byte, n uint64) {
			switch string(k) {
			case "nr_periods":
				s.CPU.Periods = n
			case "nr_throttled":
				s.CPU.ThrottledPeriods = n
			case "throttled_time":
				s.CPU.ThrottledNanoSeconds = n
			}
		})
	}
	if v.has["memory"] {
		var err error
		if s.Memory.MaxUsageBytes, err = r.uint(file("memory", "memory.max_usage_in_bytes"), keep); err != nil {
			return err
		}
		b, err := r.read(file("memory", "memory.oom_control"), keep)
		if err != nil {
			return err
		}
		keyValues(b, func(k []byte, n uint64) {
			if string(k) == "oom_kill" {
				s.Memory.OOMKills = n
			}
		})
	}
	if v.has["pids"] {
		var err error
		if s.Pids.Current, err = r.uint(file("pids", "pids.current"), keep); err != nil {
			return err
		}
		s.HasPids = true
		if s.Pids.Limit, err = r.uint(file("pids", "pids.max"), keep); err != nil {
			return err
		}
		if s.Pids.Limit == ^uint64(0) {
			s.Pids.Limit = 0
		}
	}
	return nil
}
