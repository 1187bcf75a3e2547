package nri

import (
	"fmt"
	"slices"

	"github.com/containerd/nri/pkg/api"
	nrigen "github.com/containerd/nri/pkg/runtime-tools/generate"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// CDIInjector resolves fully qualified CDI device names into the spec.
type CDIInjector func(spec *specs.Spec, devices []string) error

// adjustSpec applies a container adjustment to spec in place, with NRI's
// own generator (the rules containerd and CRI-O apply) over specEditor.
func adjustSpec(spec *specs.Spec, adjust *api.ContainerAdjustment, cdi CDIInjector) error {
	if adjust == nil {
		return nil
	}
	if len(adjust.GetCDIDevices()) > 0 && cdi == nil {
		return fmt.Errorf("CDI devices %v: this node has no CDI support", cdiNames(adjust.GetCDIDevices()))
	}
	opts := []nrigen.GeneratorOption{}
	if cdi != nil {
		opts = append(opts, nrigen.WithCDIDeviceInjector(cdi))
	}
	g := nrigen.SpecGenerator(&specEditor{s: spec}, opts...)
	if err := g.Adjust(adjust); err != nil {
		return fmt.Errorf("apply NRI adjustment: %w", err)
	}
	return nil
}

func cdiNames(ds []*api.CDIDevice) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.GetName())
	}
	return out
}

// specEditor edits an OCI spec the way NRI's generator expects of
// runtime-tools' Generator (the subset it calls), without pulling in
// runtime-tools and its validation dependencies.
type specEditor struct{ s *specs.Spec }

var _ nrigen.UnderlyingGenerator = (*specEditor)(nil)

func (e *specEditor) Spec() *specs.Spec { return e.s }

func (e *specEditor) process() *specs.Process {
	if e.s.Process == nil {
		e.s.Process = &specs.Process{}
	}
	return e.s.Process
}

func (e *specEditor) linux() *specs.Linux {
	if e.s.Linux == nil {
		e.s.Linux = &specs.Linux{}
	}
	return e.s.Linux
}

func (e *specEditor) resources() *specs.LinuxResources {
	l := e.linux()
	if l.Resources == nil {
		l.Resources = &specs.LinuxResources{}
	}
	return l.Resources
}

func (e *specEditor) cpu() *specs.LinuxCPU {
	r := e.resources()
	if r.CPU == nil {
		r.CPU = &specs.LinuxCPU{}
	}
	return r.CPU
}

func (e *specEditor) memory() *specs.LinuxMemory {
	r := e.resources()
	if r.Memory == nil {
		r.Memory = &specs.LinuxMemory{}
	}
	return r.Memory
}

func (e *specEditor) hooks() *specs.Hooks {
	if e.s.Hooks == nil {
		e.s.Hooks = &specs.Hooks{}
	}
	return e.s.Hooks
}

func (e *specEditor) AddAnnotation(key, value string) {
	if e.s.Annotations == nil {
		e.s.Annotations = map[string]string{}
	}
	e.s.Annotations[key] = value
}

func (e *specEditor) RemoveAnnotation(key string) { delete(e.s.Annotations, key) }

// AddDevice replaces a device at the same path or adds it.
func (e *specEditor) AddDevice(d specs.LinuxDevice) {
	l := e.linux()
	for i := range l.Devices {
		if l.Devices[i].Path == d.Path {
			l.Devices[i] = d
			return
		}
	}
	l.Devices = append(l.Devices, d)
}

func (e *specEditor) RemoveDevice(path string) {
	if e.s.Linux == nil {
		return
	}
	e.s.Linux.Devices = slices.DeleteFunc(e.s.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == path })
}

func (e *specEditor) AddLinuxResourcesDevice(allow bool, devType string, major, minor *int64, access string) {
	r := e.resources()
	r.Devices = append(r.Devices, specs.LinuxDeviceCgroup{Allow: allow, Type: devType, Major: major, Minor: minor, Access: access})
}

var namespaceTypes = map[string]specs.LinuxNamespaceType{
	"pid": specs.PIDNamespace, "network": specs.NetworkNamespace, "mount": specs.MountNamespace,
	"ipc": specs.IPCNamespace, "uts": specs.UTSNamespace, "user": specs.UserNamespace,
	"cgroup": specs.CgroupNamespace, "time": specs.TimeNamespace,
	// runtime-tools' short names
	"net": specs.NetworkNamespace, "mnt": specs.MountNamespace,
}

func namespaceType(ns string) (specs.LinuxNamespaceType, error) {
	t, ok := namespaceTypes[ns]
	if !ok {
		return "", fmt.Errorf("unknown namespace type %q", ns)
	}
	return t, nil
}

func (e *specEditor) AddOrReplaceLinuxNamespace(ns, path string) error {
	t, err := namespaceType(ns)
	if err != nil {
		return err
	}
	l := e.linux()
	for i := range l.Namespaces {
		if l.Namespaces[i].Type == t {
			l.Namespaces[i].Path = path
			return nil
		}
	}
	l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: t, Path: path})
	return nil
}

func (e *specEditor) RemoveLinuxNamespace(ns string) error {
	t, err := namespaceType(ns)
	if err != nil {
		return err
	}
	if e.s.Linux != nil {
		e.s.Linux.Namespaces = slices.DeleteFunc(e.s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
	}
	return nil
}

func (e *specEditor) AddPreStartHook(h specs.Hook) {
	//lint:ignore SA1019 NRI plugins still hand us prestart hooks, and runc still runs them.
	e.hooks().Prestart = append(e.hooks().Prestart, h)
}
func (e *specEditor) AddPostStartHook(h specs.Hook) {
	e.hooks().Poststart = append(e.hooks().Poststart, h)
}
func (e *specEditor) AddPostStopHook(h specs.Hook) {
	e.hooks().Poststop = append(e.hooks().Poststop, h)
}

// AddProcessEnv sets name, replacing an earlier value.
func (e *specEditor) AddProcessEnv(name, value string) {
	if name == "" {
		return
	}
	p := e.process()
	kv := name + "=" + value
	for i, old := range p.Env {
		if envKey(old) == name {
			p.Env[i] = kv
			return
		}
	}
	p.Env = append(p.Env, kv)
}

func envKey(kv string) string {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i]
		}
	}
	return kv
}

func (e *specEditor) ClearProcessEnv() {
	if e.s.Process != nil {
		e.s.Process.Env = nil
	}
}

func (e *specEditor) AddLinuxResourcesHugepageLimit(pageSize string, limit uint64) {
	r := e.resources()
	for i := range r.HugepageLimits {
		if r.HugepageLimits[i].Pagesize == pageSize {
			r.HugepageLimits[i].Limit = limit
			return
		}
	}
	r.HugepageLimits = append(r.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: pageSize, Limit: limit})
}

func (e *specEditor) AddLinuxResourcesUnified(key, val string) {
	r := e.resources()
	if r.Unified == nil {
		r.Unified = map[string]string{}
	}
	r.Unified[key] = val
}

func (e *specEditor) AddMount(m specs.Mount) { e.s.Mounts = append(e.s.Mounts, m) }
func (e *specEditor) ClearMounts()           { e.s.Mounts = nil }
func (e *specEditor) Mounts() []specs.Mount  { return slices.Clone(e.s.Mounts) }

func (e *specEditor) RemoveMount(dest string) {
	e.s.Mounts = slices.DeleteFunc(e.s.Mounts, func(m specs.Mount) bool { return m.Destination == dest })
}

func (e *specEditor) AddLinuxSysctl(key, value string) {
	l := e.linux()
	if l.Sysctl == nil {
		l.Sysctl = map[string]string{}
	}
	l.Sysctl[key] = value
}

func (e *specEditor) RemoveLinuxSysctl(key string) {
	if e.s.Linux != nil {
		delete(e.s.Linux.Sysctl, key)
	}
}

func (e *specEditor) SetProcessArgs(args []string) { e.process().Args = slices.Clone(args) }
func (e *specEditor) SetLinuxCgroupsPath(p string) { e.linux().CgroupsPath = p }
func (e *specEditor) SetLinuxResourcesCPUCpus(v string) {
	e.cpu().Cpus = v
}
func (e *specEditor) SetLinuxResourcesCPUMems(v string)           { e.cpu().Mems = v }
func (e *specEditor) SetLinuxResourcesCPUPeriod(v uint64)         { e.cpu().Period = &v }
func (e *specEditor) SetLinuxResourcesCPUQuota(v int64)           { e.cpu().Quota = &v }
func (e *specEditor) SetLinuxResourcesCPURealtimePeriod(v uint64) { e.cpu().RealtimePeriod = &v }
func (e *specEditor) SetLinuxResourcesCPURealtimeRuntime(v int64) { e.cpu().RealtimeRuntime = &v }
func (e *specEditor) SetLinuxResourcesCPUShares(v uint64)         { e.cpu().Shares = &v }
func (e *specEditor) SetLinuxResourcesMemoryLimit(v int64)        { e.memory().Limit = &v }
func (e *specEditor) SetLinuxResourcesMemorySwap(v int64)         { e.memory().Swap = &v }
func (e *specEditor) SetProcessOOMScoreAdj(v int)                 { e.process().OOMScoreAdj = &v }

func (e *specEditor) SetLinuxRootPropagation(rp string) error {
	switch rp {
	case "", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable":
		e.linux().RootfsPropagation = rp
		return nil
	}
	return fmt.Errorf("rootfs propagation %q is not valid", rp)
}
