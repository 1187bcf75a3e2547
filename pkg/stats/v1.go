package stats

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/cgroups/v3/cgroup1"
	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
)

// v1Reader reads cgroup v1 hierarchies. The controller list is built once:
// cgroup1's default hierarchy re-reads /proc/self/mountinfo and probes
// every controller on each Load, which would dominate the cost of reading
// a hundred containers, and we only need four controllers.
type v1Reader struct {
	subsystems []cgroup1.Subsystem
	// procsDir is the hierarchy whose cgroup.procs counts processes.
	procsDir string
}

func newV1Reader(root string) (*v1Reader, error) {
	candidates := []cgroup1.Subsystem{
		cgroup1.NewCpu(root),
		cgroup1.NewCpuacct(root),
		// kmem figures are unused and deprecated (and gone from newer
		// kernels); memsw exists only with swap accounting enabled.
		cgroup1.NewMemory(root, cgroup1.IgnoreModules("kmem", "kmem.tcp"), cgroup1.OptionalSwap()),
		cgroup1.NewPids(root),
	}
	r := &v1Reader{}
	for _, s := range candidates {
		dir := filepath.Join(root, string(s.Name()))
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		r.subsystems = append(r.subsystems, s)
		if r.procsDir == "" || s.Name() == cgroup1.Pids {
			r.procsDir = dir
		}
	}
	if len(r.subsystems) == 0 {
		return nil, fmt.Errorf("no cpu, cpuacct, memory or pids cgroup v1 controller under %s", root)
	}
	return r, nil
}

func (r *v1Reader) hierarchy() ([]cgroup1.Subsystem, error) { return r.subsystems, nil }

// read returns the stats of the cgroup at p in every hierarchy that has it.
func (r *v1Reader) read(p string) (CgroupStats, error) {
	cg, err := cgroup1.Load(cgroup1.StaticPath(p), cgroup1.WithHierarchy(r.hierarchy))
	if err != nil {
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			return CgroupStats{}, fmt.Errorf("cgroup %s: %w", p, ErrNotFound)
		}
		return CgroupStats{}, fmt.Errorf("load cgroup %s: %w", p, err)
	}
	m, err := cg.Stat()
	if err != nil {
		// The cgroup was removed between Load and Stat.
		if errors.Is(err, fs.ErrNotExist) {
			return CgroupStats{}, fmt.Errorf("cgroup %s: %w: %w", p, ErrNotFound, err)
		}
		return CgroupStats{}, fmt.Errorf("read cgroup %s: %w", p, err)
	}
	s := fromV1(m)
	if s.Processes, err = countProcs(filepath.Join(r.procsDir, p)); err != nil {
		return CgroupStats{}, err
	}
	return s, nil
}

// fromV1 converts cgroup1's metrics. The memory figures use the total_*
// (hierarchical) values, so a pod cgroup includes its containers.
func fromV1(m *v1stats.Metrics) CgroupStats {
	var s CgroupStats
	if cpu := m.GetCPU(); cpu != nil {
		s.CPU.UsageCoreNanoSeconds = cpu.GetUsage().GetTotal()
		s.CPU.UserNanoSeconds = cpu.GetUsage().GetUser()
		s.CPU.SystemNanoSeconds = cpu.GetUsage().GetKernel()
		s.CPU.Periods = cpu.GetThrottling().GetPeriods()
		s.CPU.ThrottledPeriods = cpu.GetThrottling().GetThrottledPeriods()
		s.CPU.ThrottledNanoSeconds = cpu.GetThrottling().GetThrottledTime()
	}
	if mem := m.GetMemory(); mem != nil {
		s.Memory = MemoryStats{
			UsageBytes:      mem.GetUsage().GetUsage(),
			RSSBytes:        mem.GetTotalRSS(),
			CacheBytes:      mem.GetTotalCache(),
			MappedFileBytes: mem.GetTotalMappedFile(),
			MaxUsageBytes:   mem.GetUsage().GetMax(),
			LimitBytes:      mem.GetUsage().GetLimit(),
			PageFaults:      mem.GetTotalPgFault(),
			MajorPageFaults: mem.GetTotalPgMajFault(),
		}
		// memsw counts memory plus swap; without swap accounting its
		// entries are all zero.
		if sw := mem.GetSwap(); sw.GetUsage() > mem.GetUsage().GetUsage() {
			s.Memory.SwapBytes = sw.GetUsage() - mem.GetUsage().GetUsage()
		}
		if sw := mem.GetSwap(); !unlimited(sw.GetLimit()) && !unlimited(mem.GetUsage().GetLimit()) && sw.GetLimit() > mem.GetUsage().GetLimit() {
			s.Memory.SwapLimitBytes = sw.GetLimit() - mem.GetUsage().GetLimit()
		}
		finishMemory(&s.Memory, mem.GetTotalInactiveFile())
	}
	s.Memory.OOMKills = m.GetMemoryOomControl().GetOomKill()
	s.Pids = PidsStats{Current: m.GetPids().GetCurrent(), Limit: m.GetPids().GetLimit()}
	return s
}
