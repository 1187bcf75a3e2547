package oci

import (
	"fmt"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// linuxResources converts LinuxContainerResources. Zero means "not set"
// for every numeric field, as in CRI; negative values and combinations the
// kernel would reject are ErrInvalid errors naming the field (prefix is the
// path of r in the request, e.g. "linux.resources").
func linuxResources(prefix string, r *runtimeapi.LinuxContainerResources) (*specs.LinuxResources, error) {
	out := &specs.LinuxResources{}
	if r == nil {
		return out, nil
	}
	f := func(name string) string { return prefix + "." + name }

	cpu := &specs.LinuxCPU{}
	cpuSet := false
	if v := r.GetCpuShares(); v != 0 {
		if v < 0 || v > maxCPUShares {
			return nil, invalid(f("cpu_shares"), "%d outside [0, %d]", v, maxCPUShares)
		}
		s := uint64(v)
		cpu.Shares, cpuSet = &s, true
	}
	if v := r.GetCpuPeriod(); v != 0 {
		if v < minCPUPeriod || v > maxCPUPeriod {
			return nil, invalid(f("cpu_period"), "%d outside [%d, %d] microseconds", v, minCPUPeriod, maxCPUPeriod)
		}
		p := uint64(v)
		cpu.Period, cpuSet = &p, true
	}
	if v := r.GetCpuQuota(); v != 0 {
		if v < 0 {
			return nil, invalid(f("cpu_quota"), "%d is negative", v)
		}
		if v < minCPUQuota {
			return nil, invalid(f("cpu_quota"), "%d is below the kernel's minimum of %d microseconds", v, minCPUQuota)
		}
		q := v
		cpu.Quota, cpuSet = &q, true
	}
	if v := r.GetCpusetCpus(); v != "" {
		if err := validCPUList(v); err != nil {
			return nil, invalid(f("cpuset_cpus"), "%q: %v", v, err)
		}
		cpu.Cpus, cpuSet = v, true
	}
	if v := r.GetCpusetMems(); v != "" {
		if err := validCPUList(v); err != nil {
			return nil, invalid(f("cpuset_mems"), "%q: %v", v, err)
		}
		cpu.Mems, cpuSet = v, true
	}
	if cpuSet {
		out.CPU = cpu
	}

	limit, swap := r.GetMemoryLimitInBytes(), r.GetMemorySwapLimitInBytes()
	if limit < 0 {
		return nil, invalid(f("memory_limit_in_bytes"), "%d is negative", limit)
	}
	if swap < 0 {
		return nil, invalid(f("memory_swap_limit_in_bytes"), "%d is negative", swap)
	}
	switch {
	case limit == 0 && swap != 0:
		return nil, invalid(f("memory_swap_limit_in_bytes"), "set without memory_limit_in_bytes")
	case swap != 0 && swap < limit:
		// The OCI swap value is memory+swap, so it can never be below the
		// memory limit.
		return nil, invalid(f("memory_swap_limit_in_bytes"), "%d is below memory_limit_in_bytes %d", swap, limit)
	case limit != 0:
		if swap == 0 {
			// No swap unless asked for: kubelet's memory accounting
			// assumes a container cannot page out past its limit.
			swap = limit
		}
		l, s := limit, swap
		out.Memory = &specs.LinuxMemory{Limit: &l, Swap: &s}
	}

	for i, h := range r.GetHugepageLimits() {
		if h.GetPageSize() == "" {
			return nil, invalid(fmt.Sprintf("%s[%d].page_size", f("hugepage_limits"), i), "empty")
		}
		out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.GetPageSize(), Limit: h.GetLimit()})
	}

	if len(r.GetUnified()) > 0 {
		out.Unified = make(map[string]string, len(r.GetUnified()))
		for k, v := range r.GetUnified() {
			// Keys are cgroup v2 file names; a path would let a request
			// write outside the container's cgroup.
			if k == "" || strings.ContainsAny(k, "/\x00") || k == "." || k == ".." {
				return nil, invalid(f("unified"), "key %q is not a cgroup file name", k)
			}
			out.Unified[k] = v
		}
	}
	return out, nil
}

// validCPUList checks the kernel's list format: "0-3,5,7-8".
func validCPUList(s string) error {
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return fmt.Errorf("bad element %q", part)
		}
		if isRange {
			b, err := strconv.ParseUint(hi, 10, 16)
			if err != nil || b < a {
				return fmt.Errorf("bad range %q", part)
			}
		}
	}
	return nil
}

// oomScoreAdj validates the CRI oom_score_adj; the caller clamps it (to
// no lower than the daemon's own score) before or through WithOOMScoreAdj.
func oomScoreAdj(field string, v int64) (*int, error) {
	if v < minOOMScoreAdj || v > maxOOMScore {
		return nil, invalid(field, "%d outside [%d, %d]", v, minOOMScoreAdj, maxOOMScore)
	}
	i := int(v)
	return &i, nil
}
