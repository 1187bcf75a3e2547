package oci

import (
	"fmt"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ValidateResources checks the resources of an UpdateContainerResources
// request (or any LinuxContainerResources) without building anything;
// errors wrap ErrInvalid and name the field below "linux".
func ValidateResources(r *runtimeapi.LinuxContainerResources) error {
	_, err := ResourcesFromCRI(r)
	return err
}

// ResourcesFromCRI converts LinuxContainerResources into the OCI form
// runc update applies to a running container, with the same rules
// ContainerSpec applies at creation. oom_score_adj is checked for range
// but is not a cgroup resource and is not part of the result. "unified"
// is accepted only on a cgroup v2 host.
func ResourcesFromCRI(r *runtimeapi.LinuxContainerResources) (*specs.LinuxResources, error) {
	res, err := linuxResources("linux", r, realHostIO().cgroups())
	if err != nil {
		return nil, err
	}
	if _, err := oomScoreAdj("linux.oom_score_adj", r.GetOomScoreAdj()); err != nil {
		return nil, err
	}
	return res, nil
}

// SandboxResources are the limits of a pod's sandbox cgroup: the pod's
// resources plus its overhead (as at creation), for UpdatePodSandboxResources.
func SandboxResources(linux *runtimeapi.LinuxPodSandboxConfig) (*specs.LinuxResources, error) {
	return sandboxResources(linux, realHostIO().cgroups())
}

// cgroupFeatures are the host cgroup facts that decide which resources a
// spec may carry.
type cgroupFeatures struct {
	// v2: the host runs the unified hierarchy only.
	v2 bool
	// hugetlb: runc can apply hugepage limits (HugetlbController).
	hugetlb bool
}

// linuxResources converts LinuxContainerResources. Zero means "not set"
// for every numeric field, as in CRI; negative values and combinations the
// kernel would reject are ErrInvalid errors naming the field (prefix is the
// path of r in the request, e.g. "linux.resources"). cg says whether
// "unified" can be applied on this host and whether hugepage limits can:
// without the hugetlb controller they are validated and left out.
func linuxResources(prefix string, r *runtimeapi.LinuxContainerResources, cg cgroupFeatures) (*specs.LinuxResources, error) {
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
	// A quota without a period is fine: the kernel's period (100ms)
	// applies.
	if v := r.GetCpuPeriod(); v != 0 {
		if v < minCPUPeriod || v > maxCPUPeriod {
			return nil, invalid(f("cpu_period"), "%d outside [%d, %d] microseconds", v, minCPUPeriod, maxCPUPeriod)
		}
		p := uint64(v)
		cpu.Period, cpuSet = &p, true
	}
	// -1 is no quota: kubelet sends it to lift one (a pod resized without
	// a CPU limit, CFS quota disabled), and the cgroup writers and the OCI
	// runtimes take it as such (cfs_quota_us -1, cpu.max "max").
	if v := r.GetCpuQuota(); v != 0 {
		if v < -1 {
			return nil, invalid(f("cpu_quota"), "%d is negative (only -1, no quota, is allowed)", v)
		}
		if v > 0 && v < minCPUQuota {
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
	if swap < -1 {
		return nil, invalid(f("memory_swap_limit_in_bytes"), "%d is negative (only -1, unlimited swap, is allowed)", swap)
	}
	switch {
	case swap == -1:
		// Unlimited swap, which kubelet asks for with swap behaviour
		// UnlimitedSwap.
		m := &specs.LinuxMemory{Swap: &swap}
		if limit != 0 {
			l := limit
			m.Limit = &l
		}
		out.Memory = m
	case limit == 0 && swap != 0:
		return nil, invalid(f("memory_swap_limit_in_bytes"), "set without memory_limit_in_bytes")
	case swap != 0 && swap < limit:
		// The OCI swap value is memory+swap, so it can never be below the
		// memory limit.
		return nil, invalid(f("memory_swap_limit_in_bytes"), "%d is below memory_limit_in_bytes %d", swap, limit)
	case limit != 0 && swap == 0 && hasKey(r.GetUnified(), "memory.swap.max"):
		// kubelet sets swap on cgroup v2 as memory.swap.max (LimitedSwap
		// and NoSwap): that value alone decides, so no OCI swap value
		// may fight it.
		l := limit
		out.Memory = &specs.LinuxMemory{Limit: &l}
	case limit != 0:
		if swap == 0 {
			// No swap unless asked for: kubelet's memory accounting
			// assumes a container cannot page out past its limit.
			swap = limit
		}
		l, s := limit, swap
		out.Memory = &specs.LinuxMemory{Limit: &l, Swap: &s}
	}

	seenPage := map[string]int{}
	for i, h := range r.GetHugepageLimits() {
		field := fmt.Sprintf("%s[%d].page_size", f("hugepage_limits"), i)
		ps := h.GetPageSize()
		if ps == "" {
			return nil, invalid(field, "empty")
		}
		if !validPageSize(ps) {
			return nil, invalid(field, "%q is not a page size such as \"2MB\" or \"1GB\"", ps)
		}
		if j, dup := seenPage[ps]; dup {
			return nil, invalid(field, "%q is also the page size of hugepage_limits[%d]", ps, j)
		}
		seenPage[ps] = i
		if !cg.hugetlb {
			continue
		}
		out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: ps, Limit: h.GetLimit()})
	}

	if len(r.GetUnified()) > 0 {
		if !cg.v2 {
			return nil, invalid(f("unified"), "cgroup v2 settings given but this node does not run the unified cgroup v2 hierarchy")
		}
		out.Unified = make(map[string]string, len(r.GetUnified()))
		for k, v := range r.GetUnified() {
			// Keys are cgroup v2 file names ("memory.high"); a path would
			// let a request write outside the container's cgroup.
			if k == "" || strings.ContainsAny(k, "/\x00") || !strings.Contains(k, ".") || strings.HasPrefix(k, ".") {
				return nil, invalid(f("unified"), "key %q is not a cgroup file name", k)
			}
			if strings.ContainsRune(v, 0) {
				return nil, invalid(fmt.Sprintf("%s[%q]", f("unified"), k), "value contains a NUL byte")
			}
			out.Unified[k] = v
		}
	}
	return out, nil
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// validPageSize checks the size format of the kernel's hugetlb cgroup
// files (hugetlb.2MB.limit_in_bytes): a positive integer and KB, MB, GB,
// TB or PB.
func validPageSize(s string) bool {
	for _, unit := range []string{"KB", "MB", "GB", "TB", "PB"} {
		if n, ok := strings.CutSuffix(s, unit); ok {
			v, err := strconv.ParseUint(n, 10, 32)
			return err == nil && v > 0 && n[0] != '0'
		}
	}
	return false
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
