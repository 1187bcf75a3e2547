package cgroups

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"k8s.io/klog/v2"
)

// D-Bus errors systemd answers that mean "already as asked".
const (
	errUnitExists = "org.freedesktop.systemd1.UnitExists"
	errNoSuchUnit = "org.freedesktop.systemd1.NoSuchUnit"
	errNotLoaded  = "org.freedesktop.systemd1.NotLoaded"
)

// unitManager is the part of systemd's D-Bus API the driver uses.
type unitManager interface {
	StartTransientUnitContext(ctx context.Context, name, mode string, props []sd.Property, ch chan<- string) (int, error)
	StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	ResetFailedUnitContext(ctx context.Context, name string) error
	SetUnitPropertiesContext(ctx context.Context, name string, runtime bool, props ...sd.Property) error
	Connected() bool
	Close()
}

func dialSystemd(ctx context.Context) (unitManager, error) {
	c, err := sd.NewWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	return c, nil
}

// systemd makes each pod cgroup a slice unit and has runc make each
// container a scope unit in it ("slice:prefix:name" cgroups paths and
// runc's --systemd-cgroup), so that systemd, which owns the cgroup tree on
// such a node, knows every cgroup and never resets what runc set.
type systemd struct {
	defaultParent string
	dial          func(context.Context) (unitManager, error)
	layout        func() (Layout, error)

	mu  sync.Mutex
	bus unitManager // connected on first use, again after systemd restarts
}

func newSystemd(o options) (*systemd, error) {
	p := o.defaultParent
	if p == "" {
		p = DefaultSystemdParent
	}
	if err := validSlice(p); err != nil {
		return nil, fmt.Errorf("default cgroup parent: %w", err)
	}
	return &systemd{defaultParent: p, dial: o.bus, layout: o.layout}, nil
}

func (d *systemd) Name() string          { return SystemdName }
func (d *systemd) RuntimeArgs() []string { return []string{"--systemd-cgroup"} }

func (d *systemd) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bus != nil {
		d.bus.Close()
		d.bus = nil
	}
	return nil
}

// validSlice checks a slice unit name: "x.slice" whose dash-separated
// parts are not empty ("-.slice", the root slice, is valid too).
func validSlice(name string) error {
	if strings.ContainsAny(name, "/:") || !strings.HasSuffix(name, ".slice") {
		return fmt.Errorf("%w %q: the systemd driver needs a slice unit name such as kubepods-besteffort-pod<uid>.slice", ErrInvalidParent, name)
	}
	if _, err := expandSlice(name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidParent, err)
	}
	return nil
}

func (d *systemd) PodCgroup(podID, configured string) (string, bool, error) {
	if configured == "" {
		base := strings.TrimSuffix(d.defaultParent, ".slice")
		if base == "-" {
			return "pod" + podID + ".slice", true, nil
		}
		return base + "-pod" + podID + ".slice", true, nil
	}
	// Some kubelets send the slice's whole path
	// (/kubepods.slice/kubepods-besteffort.slice/...-pod<uid>.slice).
	if err := validSlice(path.Base(configured)); err != nil {
		return "", false, fmt.Errorf("%w (kubelet's cgroupDriver must match the runtime's)", err)
	}
	return configured, false, nil
}

func (d *systemd) CgroupsPath(parent, id string) string {
	slice := path.Base(parent)
	if parent == "" || slice == "/" || slice == "." {
		slice = d.defaultParent
	}
	return slice + ":" + runtimePrefix + ":" + id
}

// CreatePod starts the pod's slice as a transient unit, with the
// accounting runc turns on for its scopes so that systemd enables the
// controllers down to them.
func (d *systemd) CreatePod(ctx context.Context, parent string) error {
	props := []sd.Property{
		sd.PropDescription("cri-runtimed pod " + parent),
		prop("DefaultDependencies", false),
		prop("MemoryAccounting", true),
		prop("CPUAccounting", true),
		prop("IOAccounting", true),
		prop("TasksAccounting", true),
	}
	err := d.job(ctx, "start", parent, func(bus unitManager, ch chan string) (int, error) {
		return bus.StartTransientUnitContext(ctx, parent, "replace", props, ch)
	})
	if dbusErrorIs(err, errUnitExists) {
		return nil
	}
	return err
}

// RemovePod stops the pod's slice; systemd removes the transient unit and
// its cgroup.
func (d *systemd) RemovePod(ctx context.Context, parent string) error {
	err := d.job(ctx, "stop", parent, func(bus unitManager, ch chan string) (int, error) {
		return bus.StopUnitContext(ctx, parent, "replace", ch)
	})
	if dbusErrorIs(err, errNoSuchUnit) || dbusErrorIs(err, errNotLoaded) {
		return nil
	}
	if err != nil {
		return err
	}
	// A transient unit that failed stays loaded until reset.
	if bus, berr := d.connect(ctx); berr == nil {
		_ = bus.ResetFailedUnitContext(ctx, parent)
	}
	return nil
}

// UpdatePod sets the pod slice's unit properties, so that systemd keeps
// the limits (a daemon-reload re-applies what it knows), then writes the
// cgroup files as runc's systemd driver does: systemd rounds a CPU quota
// to 1% and converts weights (on cgroup v1 it applies CPUWeight and
// MemoryMax as cpu.shares and memory.limit_in_bytes), the files take the
// exact values.
func (d *systemd) UpdatePod(ctx context.Context, parent string, res *specs.LinuxResources) error {
	slice := path.Base(parent)
	if err := validSlice(slice); err != nil {
		return fmt.Errorf("update pod cgroup: %w", err)
	}
	dir, err := Resolve(parent)
	if err != nil {
		return err
	}
	l, err := d.layout()
	if err != nil {
		return err
	}
	res = podLimits(res)
	props, err := scopeProperties(res)
	if err != nil {
		return fmt.Errorf("resources of %s: %w", slice, err)
	}
	if err := d.setProperties(ctx, slice, props); err != nil {
		return err
	}
	if err := writePodResources(l, dir, res); err != nil {
		return fmt.Errorf("update pod cgroup %s: %w", parent, err)
	}
	return nil
}

// job runs one systemd job and waits for its result. A connection that
// systemd dropped (daemon-reexec) is replaced once.
func (d *systemd) job(ctx context.Context, what, unit string, call func(unitManager, chan string) (int, error)) error {
	for attempt := 0; ; attempt++ {
		bus, err := d.connect(ctx)
		if err != nil {
			return err
		}
		ch := make(chan string, 1)
		if _, err := call(bus, ch); err != nil {
			if attempt == 0 && !bus.Connected() {
				d.drop(bus)
				continue
			}
			return fmt.Errorf("systemd %s %s: %w", what, unit, err)
		}
		select {
		case res := <-ch:
			if res != "done" {
				return fmt.Errorf("systemd %s %s: job %s", what, unit, res)
			}
			klog.V(3).InfoS("Systemd job done", "job", what, "unit", unit)
			return nil
		case <-ctx.Done():
			return fmt.Errorf("systemd %s %s: %w", what, unit, ctx.Err())
		}
	}
}

func (d *systemd) connect(ctx context.Context) (unitManager, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bus != nil && d.bus.Connected() {
		return d.bus, nil
	}
	if d.bus != nil {
		d.bus.Close()
		d.bus = nil
	}
	bus, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	d.bus = bus
	return bus, nil
}

func (d *systemd) drop(bus unitManager) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bus == bus {
		d.bus.Close()
		d.bus = nil
	}
}

func prop(name string, v any) sd.Property {
	return sd.Property{Name: name, Value: dbus.MakeVariant(v)}
}

func dbusErrorIs(err error, name string) bool {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name == name
	}
	var dp *dbus.Error
	return errors.As(err, &dp) && dp.Name == name
}
