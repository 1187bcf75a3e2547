package cgroups

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	sd "github.com/coreos/go-systemd/v22/dbus"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"k8s.io/klog/v2"
)

// UpdateContainer sets the resources on the container's scope unit as
// unit properties (runtime ones, gone with the unit).
//
// runc's `update` does this itself, but crun before 1.8.5 (Debian 12
// ships 1.8.1) writes only the cgroup files of its "container" sub-cgroup
// and leaves the scope's limits as they were at creation
// (containers/crun#1217): a raised memory or CPU limit stayed capped by
// the scope, and systemd would rewrite the scope's files from its stale
// properties on the next daemon-reload anyway. The unit belongs to the
// driver's world, so the driver sets it, for every runtime: for runc it
// repeats what runc set, at one D-Bus call per update (never on a hot
// path).
func (d *systemd) UpdateContainer(ctx context.Context, cgroupsPath string, r *specs.LinuxResources) error {
	unit, err := scopeUnit(cgroupsPath)
	if err != nil {
		return err
	}
	props, err := scopeProperties(r)
	if err != nil {
		return fmt.Errorf("resources of %s: %w", unit, err)
	}
	return d.setProperties(ctx, unit, props)
}

// setProperties sets runtime properties of a unit (none: nothing to do).
// A connection that systemd dropped (daemon-reexec) is replaced once.
func (d *systemd) setProperties(ctx context.Context, unit string, props []sd.Property) error {
	if len(props) == 0 {
		return nil
	}
	for attempt := 0; ; attempt++ {
		bus, err := d.connect(ctx)
		if err != nil {
			return err
		}
		if err := bus.SetUnitPropertiesContext(ctx, unit, true, props...); err != nil {
			if attempt == 0 && !bus.Connected() {
				d.drop(bus)
				continue
			}
			return fmt.Errorf("systemd set-property %s: %w", unit, err)
		}
		klog.V(3).InfoS("Unit properties set", "unit", unit, "properties", len(props))
		return nil
	}
}

// scopeUnit is the scope unit runc and crun make for a "slice:prefix:name"
// cgroups path: prefix-name.scope.
func scopeUnit(cgroupsPath string) (string, error) {
	parts := strings.Split(cgroupsPath, ":")
	if len(parts) != 3 || parts[2] == "" {
		return "", fmt.Errorf("cgroups path %q is not the systemd driver's slice:prefix:name", cgroupsPath)
	}
	if parts[1] == "" {
		return parts[2] + ".scope", nil
	}
	return parts[1] + "-" + parts[2] + ".scope", nil
}

// infinity is systemd's "no limit" for byte, task and time properties.
const infinity = uint64(math.MaxUint64)

// scopeProperties converts the resources a CRI update (or an NRI plugin)
// can change into systemd's unit properties, with the conversions runc
// uses so that both runtimes end with the same cgroup files. Resources
// systemd has no property for (hugetlb, unified, rdt) are the runtime's
// alone.
func scopeProperties(r *specs.LinuxResources) ([]sd.Property, error) {
	if r == nil {
		return nil, nil
	}
	var props []sd.Property
	if m := r.Memory; m != nil {
		if m.Limit != nil && *m.Limit != 0 {
			props = append(props, prop("MemoryMax", limit(*m.Limit)))
		}
		// OCI's swap is memory+swap (v1's memsw); v2 limits swap alone.
		if m.Swap != nil && *m.Swap != 0 {
			switch {
			case *m.Swap < 0:
				props = append(props, prop("MemorySwapMax", infinity))
			case m.Limit != nil && *m.Limit > 0 && *m.Swap >= *m.Limit:
				props = append(props, prop("MemorySwapMax", uint64(*m.Swap-*m.Limit)))
			}
		}
	}
	if c := r.CPU; c != nil {
		if c.Shares != nil && *c.Shares != 0 {
			props = append(props, prop("CPUWeight", cpuWeight(*c.Shares)))
		}
		if p := cpuQuotaProperties(c); p != nil {
			props = append(props, p...)
		}
		for _, set := range []struct{ name, list string }{{"AllowedCPUs", c.Cpus}, {"AllowedMemoryNodes", c.Mems}} {
			if set.list == "" {
				continue
			}
			bits, err := listToBits(set.list)
			if err != nil {
				return nil, fmt.Errorf("%s %q: %w", set.name, set.list, err)
			}
			props = append(props, prop(set.name, bits))
		}
	}
	if p := r.Pids; p != nil && p.Limit != nil && *p.Limit != 0 {
		props = append(props, prop("TasksMax", limit(*p.Limit)))
	}
	return props, nil
}

// limit is a byte or count limit, negative meaning none.
func limit(v int64) uint64 {
	if v < 0 {
		return infinity
	}
	return uint64(v)
}

// cpuWeight converts cgroup v1 shares [2, 262144] to v2 weight [1, 10000]
// as runc and kubelet do.
func cpuWeight(shares uint64) uint64 {
	if shares < 2 {
		shares = 2
	}
	return 1 + ((shares-2)*9999)/262142
}

// cpuQuotaProperties: systemd keeps a quota per second in units of 10 ms
// (1% of a CPU), so a quota that is not a multiple is rounded up, as runc
// does, to leave the container at least what it asked for.
func cpuQuotaProperties(c *specs.LinuxCPU) []sd.Property {
	var period uint64
	if c.Period != nil {
		period = *c.Period
	}
	var quota int64
	if c.Quota != nil {
		quota = *c.Quota
	}
	if quota == 0 && period == 0 {
		return nil
	}
	var props []sd.Property
	if period != 0 {
		props = append(props, prop("CPUQuotaPeriodUSec", period))
	}
	perSec := infinity
	if quota > 0 {
		if period == 0 {
			period = 100000
		}
		perSec = uint64(quota) * 1000000 / period
		if perSec%10000 != 0 {
			perSec = (perSec/10000 + 1) * 10000
		}
	}
	return append(props, prop("CPUQuotaPerSecUSec", perSec))
}

// listToBits converts a CPU or NUMA node list ("0-3,6") to the bit mask
// systemd's AllowedCPUs takes: bit n of byte n/8 for CPU n.
func listToBits(list string) ([]byte, error) {
	var bits []byte
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		first, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, err
		}
		last := first
		if isRange {
			if last, err = strconv.ParseUint(hi, 10, 16); err != nil {
				return nil, err
			}
		}
		if last < first {
			return nil, fmt.Errorf("range %d-%d ends before it starts", first, last)
		}
		for n := first; n <= last; n++ {
			for len(bits) <= int(n/8) {
				bits = append(bits, 0)
			}
			bits[n/8] |= 1 << (n % 8)
		}
	}
	return bits, nil
}
