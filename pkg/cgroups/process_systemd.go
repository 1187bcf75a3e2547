package cgroups

import (
	"context"
	"fmt"
	"strings"

	sd "github.com/coreos/go-systemd/v22/dbus"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Process scopes: under the systemd driver, on a unified host, the cgroup
// of a process no OCI runtime started is a transient scope unit made as
// runc's systemd driver makes a container's: the scope
// <prefix>-<name>.scope in the slice of the "slice:prefix:name" cgroups
// path, the process's pid in it from the start, Delegate, no default
// dependencies, accounting on, the resources as unit properties and then
// written to the files with their exact values, and DevicePolicy=strict
// with nothing allowed (runc allows the default devices; the process's
// root holds no device node anyway).

// IsSystemdPath reports whether cgroupsPath is the systemd driver's
// "slice:prefix:name".
func IsSystemdPath(cgroupsPath string) bool {
	return !strings.HasPrefix(cgroupsPath, "/") && len(strings.Split(cgroupsPath, ":")) == 3
}

// StartProcessScope starts the scope of the systemd cgroups path
// cgroupsPath with pid in it, on a unified host.
func StartProcessScope(ctx context.Context, cgroupsPath string, pid int, res *specs.LinuxResources) error {
	unit, err := scopeUnit(cgroupsPath)
	if err != nil {
		return err
	}
	l, err := HostLayout()
	if err != nil {
		return err
	}
	if !l.Unified() {
		return fmt.Errorf("process scope %s: the host is not on cgroup v2 alone", unit)
	}
	dir, err := Resolve(cgroupsPath)
	if err != nil {
		return err
	}
	slice := strings.Split(cgroupsPath, ":")[0]
	if slice == "" {
		slice = defaultSystemdSlice
	}
	props := []sd.Property{
		sd.PropDescription("cri-runtimed pause " + unit),
		sd.PropSlice(slice),
		sd.PropPids(uint32(pid)),
		prop("Delegate", true),
		prop("DefaultDependencies", false),
		prop("MemoryAccounting", true),
		prop("CPUAccounting", true),
		prop("IOAccounting", true),
		prop("TasksAccounting", true),
		prop("DevicePolicy", "strict"),
	}
	res = processLimits(res)
	rp, err := scopeProperties(res)
	if err != nil {
		return fmt.Errorf("resources of %s: %w", unit, err)
	}
	props = append(props, rp...)
	d := &systemd{dial: dialSystemd, layout: HostLayout}
	defer d.Close()
	if err := d.job(ctx, "start", unit, func(bus unitManager, ch chan string) (int, error) {
		return bus.StartTransientUnitContext(ctx, unit, "replace", props, ch)
	}); err != nil {
		return err
	}
	// The exact values, as runc writes them after systemd rounded them.
	if err := writeProcessFiles(l, dir, res); err != nil {
		return fmt.Errorf("process scope %s: %w", unit, err)
	}
	return nil
}

// setScopeProperties sets res on the process scope's unit.
func setScopeProperties(ctx context.Context, cgroupsPath string, res *specs.LinuxResources) error {
	unit, err := scopeUnit(cgroupsPath)
	if err != nil {
		return err
	}
	props, err := scopeProperties(processLimits(res))
	if err != nil {
		return fmt.Errorf("resources of %s: %w", unit, err)
	}
	d := &systemd{dial: dialSystemd, layout: HostLayout}
	defer d.Close()
	return d.setProperties(ctx, unit, props)
}

// processLimits is the part of res a process cgroup takes: a pod's
// limits and the memory+swap limit.
func processLimits(res *specs.LinuxResources) *specs.LinuxResources {
	if res == nil {
		return &specs.LinuxResources{}
	}
	out := podLimits(res)
	if res.Memory != nil && res.Memory.Swap != nil {
		if out.Memory == nil {
			out.Memory = &specs.LinuxMemory{}
		}
		out.Memory.Swap = res.Memory.Swap
	}
	return out
}

// StopProcessScope stops the scope of cgroupsPath (its processes are
// gone or are killed) and resets it if it failed; one that is gone
// already is stopped.
func StopProcessScope(ctx context.Context, cgroupsPath string) error {
	unit, err := scopeUnit(cgroupsPath)
	if err != nil {
		return err
	}
	d := &systemd{dial: dialSystemd, layout: HostLayout}
	defer d.Close()
	err = d.job(ctx, "stop", unit, func(bus unitManager, ch chan string) (int, error) {
		return bus.StopUnitContext(ctx, unit, "replace", ch)
	})
	if err != nil && !dbusErrorIs(err, errNoSuchUnit) && !dbusErrorIs(err, errNotLoaded) {
		return err
	}
	if bus, berr := d.connect(ctx); berr == nil {
		_ = bus.ResetFailedUnitContext(ctx, unit)
	}
	return nil
}
