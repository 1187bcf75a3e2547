package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Pod cgroups carry the limits kubelet sizes pods by: CPU weight, CPU
// quota and memory. The rest of LinuxResources (pids, hugepages, swap,
// devices, unified keys) stays with the containers.

// podLimits is the part of res a pod cgroup takes: CPU weight and quota,
// and the memory limit.
func podLimits(res *specs.LinuxResources) *specs.LinuxResources {
	out := &specs.LinuxResources{}
	if c := res.CPU; c != nil {
		out.CPU = &specs.LinuxCPU{Shares: c.Shares, Quota: c.Quota, Period: c.Period}
	}
	if m := res.Memory; m != nil && m.Limit != nil {
		out.Memory = &specs.LinuxMemory{Limit: m.Limit}
	}
	return out
}

// writePodResources writes res into the pod cgroup at dir (below the mount
// roots) in the hierarchies the host has; a nil field is left as it is.
func writePodResources(l Layout, dir string, res *specs.LinuxResources) error {
	if l.Unified() {
		return writeV2(filepath.Join(l.V2Root, dir), res)
	}
	if l.V1Root == "" {
		return fmt.Errorf("no cgroup v1 resource controller is mounted")
	}
	return writeV1(l.V1Root, dir, res)
}

func writeV1(root, dir string, res *specs.LinuxResources) error {
	if cpu := res.CPU; cpu != nil {
		d := filepath.Join(root, "cpu", dir)
		if cpu.Shares != nil {
			if err := writeFile(d, "cpu.shares", strconv.FormatUint(*cpu.Shares, 10)); err != nil {
				return err
			}
		}
		if err := writeV1Quota(d, cpu.Quota, cpu.Period); err != nil {
			return err
		}
	}
	if m := res.Memory; m != nil && m.Limit != nil {
		if err := writeFile(filepath.Join(root, "memory", dir), "memory.limit_in_bytes", strconv.FormatInt(*m.Limit, 10)); err != nil {
			return err
		}
	}
	return nil
}

// writeV1Quota writes the CFS period and quota. The kernel checks each
// write against the other value, so a period change that the old quota
// makes invalid succeeds once the quota is written first (as runc does).
func writeV1Quota(dir string, quota *int64, period *uint64) error {
	writeQuota := func() error {
		if quota == nil {
			return nil
		}
		q := *quota
		if q == 0 {
			q = -1
		}
		return writeFile(dir, "cpu.cfs_quota_us", strconv.FormatInt(q, 10))
	}
	if period == nil || *period == 0 {
		return writeQuota()
	}
	p := strconv.FormatUint(*period, 10)
	if err := writeFile(dir, "cpu.cfs_period_us", p); err != nil {
		if !errors.Is(err, unix.EINVAL) {
			return err
		}
		if err := writeQuota(); err != nil {
			return err
		}
		return writeFile(dir, "cpu.cfs_period_us", p)
	}
	return writeQuota()
}

func writeV2(dir string, res *specs.LinuxResources) error {
	if cpu := res.CPU; cpu != nil {
		if cpu.Shares != nil && *cpu.Shares != 0 {
			if err := writeFile(dir, "cpu.weight", strconv.FormatUint(cpuWeight(*cpu.Shares), 10)); err != nil {
				return err
			}
		}
		if v, ok := cpuMax(cpu.Quota, cpu.Period); ok {
			if err := writeFile(dir, "cpu.max", v); err != nil {
				return err
			}
		}
	}
	if m := res.Memory; m != nil && m.Limit != nil {
		v := "max"
		if *m.Limit > 0 {
			v = strconv.FormatInt(*m.Limit, 10)
		}
		if err := writeFile(dir, "memory.max", v); err != nil {
			return err
		}
	}
	return nil
}

// cpuMax is cpu.max for a quota and period ("max" for no quota; the
// kernel's 100ms period when none is given).
func cpuMax(quota *int64, period *uint64) (string, bool) {
	if quota == nil && (period == nil || *period == 0) {
		return "", false
	}
	q := "max"
	if quota != nil && *quota > 0 {
		q = strconv.FormatInt(*quota, 10)
	}
	p := uint64(100000)
	if period != nil && *period != 0 {
		p = *period
	}
	return q + " " + strconv.FormatUint(p, 10), true
}

// writeFile writes one cgroup file, which must exist: a pod cgroup that is
// missing is an error, not something to create.
func writeFile(dir, name, value string) error {
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("set %s: %w", p, err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("set %s to %s: %w", p, value, err)
	}
	return nil
}
