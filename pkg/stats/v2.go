package stats

import (
	"bytes"
	"strconv"
)

// v2 reads the unified hierarchy mounted at root. cpu.stat exists in
// every cgroup whatever controllers are enabled, so a missing cpu.stat
// means a missing cgroup; the files of controllers not enabled for the
// cgroup read as zero, as the kernel has no figure for them.
type v2 struct{ root string }

// read returns the figures want asks for of the cgroup at p. CPU time
// and PSI totals are in microseconds in v2.
func (v *v2) read(r *fileReader, p string, want Figures) (CgroupStats, error) {
	var s CgroupStats
	file := func(name string) fileKey { return fileKey{name: name} }
	if want&(Usage|Detail) != 0 {
		b, err := r.read(file("cpu.stat"), true)
		if err != nil {
			return s, err
		}
		keyValues(b, func(k []byte, n uint64) {
			switch string(k) {
			case "usage_usec":
				s.CPU.UsageCoreNanoSeconds = n * 1000
			case "user_usec":
				s.CPU.UserNanoSeconds = n * 1000
			case "system_usec":
				s.CPU.SystemNanoSeconds = n * 1000
			case "nr_periods":
				s.CPU.Periods = n
			case "nr_throttled":
				s.CPU.ThrottledPeriods = n
			case "throttled_usec":
				s.CPU.ThrottledNanoSeconds = n * 1000
			}
		})
		if err := v.memory(r, file, &s, want&(Swap|Detail) != 0); err != nil {
			return s, err
		}
		for _, psi := range []struct {
			name string
			dst  **Pressure
		}{{"cpu.pressure", &s.CPUPressure}, {"memory.pressure", &s.MemoryPressure}, {"io.pressure", &s.IOPressure}} {
			b, err := r.read(file(psi.name), true)
			if err != nil {
				if gone(err) { // PSI disabled
					continue
				}
				return s, err
			}
			*psi.dst = parsePressure(b)
		}
	}
	if want&Detail != 0 {
		if err := v.detail(r, file, &s); err != nil {
			return s, err
		}
	}
	if want&Tasks != 0 {
		// Absent where the pids controller is not enabled for the cgroup.
		b, err := r.read(file("pids.current"), true)
		switch {
		case err == nil:
			if s.Pids.Current, err = parseUint(b, "pids.current"); err != nil {
				return s, err
			}
			s.HasPids = true
		case !gone(err):
			return s, err
		}
	}
	if want&Processes != 0 {
		// Never kept open: a cgroup.procs read again from offset 0 does
		// not always start its listing over.
		b, err := r.read(file("cgroup.procs"), false)
		if err != nil {
			return s, err
		}
		s.Processes = countLines(b)
	}
	return s, nil
}

func (v *v2) memory(r *fileReader, file func(string) fileKey, s *CgroupStats, swap bool) error {
	const keep = true
	m := &s.Memory
	var err error
	if m.UsageBytes, err = r.optionalUint(file("memory.current"), keep); err != nil {
		return err
	}
	if m.LimitBytes, err = r.limit(file("memory.max"), true); err != nil {
		return err
	}
	b, err := r.read(file("memory.stat"), keep)
	if err != nil && !gone(err) {
		return err
	}
	var inactiveFile uint64
	keyValues(b, func(k []byte, n uint64) {
		switch string(k) {
		case "anon":
			m.RSSBytes = n
		case "file":
			m.CacheBytes = n
		case "file_mapped":
			m.MappedFileBytes = n
		case "inactive_file":
			inactiveFile = n
		case "pgfault":
			m.PageFaults = n
		case "pgmajfault":
			m.MajorPageFaults = n
		}
	})
	if swap {
		if m.SwapBytes, err = r.optionalUint(file("memory.swap.current"), keep); err != nil {
			return err
		}
		if m.SwapLimitBytes, err = r.limit(file("memory.swap.max"), true); err != nil {
			return err
		}
	}
	finishMemory(m, inactiveFile)
	return nil
}

// detail reads the figures only the metrics report; none is kept open.
func (v *v2) detail(r *fileReader, file func(string) fileKey, s *CgroupStats) error {
	const keep = false
	var err error
	if s.Memory.MaxUsageBytes, err = r.optionalUint(file("memory.peak"), keep); err != nil {
		return err
	}
	b, err := r.read(file("memory.events"), keep)
	if err != nil && !gone(err) {
		return err
	}
	keyValues(b, func(k []byte, n uint64) {
		if string(k) == "oom_kill" {
			s.Memory.OOMKills = n
		}
	})
	b, err = r.read(file("pids.current"), keep)
	switch {
	case err == nil:
		if s.Pids.Current, err = parseUint(b, "pids.current"); err != nil {
			return err
		}
		s.HasPids = true
	case !gone(err):
		return err
	}
	if s.Pids.Limit, err = r.optionalUint(file("pids.max"), keep); err != nil {
		return err
	}
	if s.Pids.Limit == ^uint64(0) {
		s.Pids.Limit = 0
	}
	b, err = r.read(file("io.stat"), keep)
	if err != nil && !gone(err) {
		return err
	}
	s.IO = parseIOStat(b)
	return nil
}

// parseIOStat reads io.stat lines: "254:0 rbytes=4096 wbytes=0 rios=1
// wios=0 dbytes=0 dios=0".
func parseIOStat(b []byte) []IOStats {
	var out []IOStats
	for _, line := range bytes.Split(b, []byte("\n")) {
		fields := bytes.Fields(line)
		if len(fields) == 0 {
			continue
		}
		maj, min, ok := bytes.Cut(fields[0], []byte(":"))
		if !ok {
			continue
		}
		var e IOStats
		var err1, err2 error
		e.Major, err1 = strconv.ParseUint(string(maj), 10, 64)
		e.Minor, err2 = strconv.ParseUint(string(min), 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		for _, f := range fields[1:] {
			k, v, _ := bytes.Cut(f, []byte("="))
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				continue
			}
			switch string(k) {
			case "rbytes":
				e.ReadBytes = n
			case "wbytes":
				e.WriteBytes = n
			case "rios":
				e.Reads = n
			case "wios":
				e.Writes = n
			}
		}
		out = append(out, e)
	}
	return out
}
