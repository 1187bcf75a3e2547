package nri

import (
	"maps"
	"slices"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// podToNRI describes a pod as plugins see it, with what containerd gives
// them: metadata, labels, annotations, handler, the pod's resources and
// overhead, its cgroup, namespaces, pause pid and IPs.
func podToNRI(pod PodSandbox) *api.PodSandbox {
	cfg := pod.Config()
	info := pod.Info()
	md := cfg.GetMetadata()
	p := &api.PodSandbox{
		Id:          pod.ID(),
		Name:        md.GetName(),
		Uid:         md.GetUid(),
		Namespace:   md.GetNamespace(),
		Labels:      maps.Clone(cfg.GetLabels()),
		Annotations: maps.Clone(cfg.GetAnnotations()),
		Pid:         uint32(info.Pid),
		Linux: &api.LinuxPodSandbox{
			PodOverhead:  criResourcesToNRI(cfg.GetLinux().GetOverhead()),
			PodResources: criResourcesToNRI(cfg.GetLinux().GetResources()),
			CgroupParent: info.CgroupParent,
			Namespaces:   podNamespaces(info),
		},
	}
	if r, ok := pod.(podRecord); ok {
		rec := r.Record()
		p.RuntimeHandler = rec.RuntimeHandler
		p.Ips = rec.IPs
		p.Linux.CgroupsPath = r.CgroupsPath()
	}
	return p
}

// podNamespaces are the namespaces of the pod's sandbox, as its spec
// lists them: the pinned network namespace by path, the others created
// with the sandbox (no path); the host's are not listed.
func podNamespaces(info oci.SandboxInfo) []*api.LinuxNamespace {
	ns := []*api.LinuxNamespace{{Type: string(specs.MountNamespace)}, {Type: string(specs.UTSNamespace)}}
	if !info.HostNetwork {
		ns = append(ns, &api.LinuxNamespace{Type: string(specs.NetworkNamespace), Path: info.NetNSPath})
	}
	if !info.HostPID {
		ns = append(ns, &api.LinuxNamespace{Type: string(specs.PIDNamespace)})
	}
	if !info.HostIPC {
		ns = append(ns, &api.LinuxNamespace{Type: string(specs.IPCNamespace)})
	}
	return ns
}

// criResourcesToNRI converts CRI resources (pod resources and overhead,
// already validated by the caller) the way they reach the OCI runtime.
func criResourcesToNRI(r *runtimeapi.LinuxContainerResources) *api.LinuxResources {
	if r == nil {
		return nil
	}
	res, err := oci.ResourcesFromCRI(r)
	if err != nil {
		return nil
	}
	return api.FromOCILinuxResources(res, nil)
}

// containerToNRI describes a container from its record, CRI config and
// OCI spec (spec, or the container's own when nil).
func containerToNRI(ctr Container, spec *specs.Spec) *api.Container {
	rec := ctr.Record()
	cfg := ctr.Config()
	if spec == nil {
		spec = ctr.Spec()
	}
	c := &api.Container{
		Id:            rec.ID,
		PodSandboxId:  rec.SandboxID,
		Name:          cfg.GetMetadata().GetName(),
		State:         containerState(rec.State),
		Labels:        maps.Clone(cfg.GetLabels()),
		Annotations:   maps.Clone(cfg.GetAnnotations()),
		Pid:           uint32(rec.Pid),
		CreatedAt:     rec.CreatedAt.UnixNano(),
		ExitCode:      rec.ExitCode,
		StatusReason:  rec.Reason,
		StatusMessage: rec.Message,
		Image:         &api.Image{Name: rec.ImageName, ConfigDigest: rec.ImageID},
		Linux: &api.LinuxContainer{
			SeccompProfile: seccompProfile(cfg),
		},
	}
	if !rec.StartedAt.IsZero() {
		c.StartedAt = rec.StartedAt.UnixNano()
	}
	if !rec.FinishedAt.IsZero() {
		c.FinishedAt = rec.FinishedAt.UnixNano()
	}
	for _, d := range cfg.GetCDIDevices() {
		c.CDIDevices = append(c.CDIDevices, &api.CDIDevice{Name: d.GetName()})
	}
	if spec != nil {
		specToNRI(c, spec)
	}
	return c
}

// specToNRI fills in what the OCI spec says of the container.
func specToNRI(c *api.Container, s *specs.Spec) {
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	maps.Copy(c.Annotations, s.Annotations)
	c.Mounts = api.FromOCIMounts(s.Mounts)
	c.Hooks = api.FromOCIHooks(s.Hooks)
	if p := s.Process; p != nil {
		c.Args = append([]string(nil), p.Args...)
		c.Env = append([]string(nil), p.Env...)
		for _, l := range p.Rlimits {
			c.Rlimits = append(c.Rlimits, &api.POSIXRlimit{Type: l.Type, Hard: l.Hard, Soft: l.Soft})
		}
		c.User = &api.User{Uid: p.User.UID, Gid: p.User.GID, AdditionalGids: append([]uint32(nil), p.User.AdditionalGids...)}
		if p.OOMScoreAdj != nil {
			c.Linux.OomScoreAdj = api.Int(*p.OOMScoreAdj)
		}
		c.Linux.IoPriority = api.FromOCILinuxIOPriority(p.IOPriority)
		c.Linux.Scheduler = api.FromOCILinuxScheduler(p.Scheduler)
	}
	if l := s.Linux; l != nil {
		c.Linux.Namespaces = api.FromOCILinuxNamespaces(l.Namespaces)
		c.Linux.Devices = api.FromOCILinuxDevices(l.Devices)
		c.Linux.Resources = api.FromOCILinuxResources(l.Resources, nil)
		c.Linux.CgroupsPath = l.CgroupsPath
		if l.Seccomp != nil {
			c.Linux.SeccompPolicy = api.FromOCILinuxSeccomp(l.Seccomp)
		}
		c.Linux.Sysctl = maps.Clone(l.Sysctl)
		c.Linux.NetDevices = api.FromOCILinuxNetDevices(l.NetDevices)
	}
}

func containerState(s meta.ContainerState) api.ContainerState {
	switch s {
	case meta.ContainerCreating, meta.ContainerCreated:
		return api.ContainerState_CONTAINER_CREATED
	case meta.ContainerRunning:
		return api.ContainerState_CONTAINER_RUNNING
	case meta.ContainerExited:
		return api.ContainerState_CONTAINER_STOPPED
	}
	return api.ContainerState_CONTAINER_UNKNOWN
}

// seccompProfile is the profile kind the CRI config asked for, which the
// default validator's seccomp rules look at.
func seccompProfile(cfg *runtimeapi.ContainerConfig) *api.SecurityProfile {
	sc := cfg.GetLinux().GetSecurityContext()
	p := sc.GetSeccomp()
	if p == nil {
		return &api.SecurityProfile{ProfileType: api.SecurityProfile_UNCONFINED}
	}
	switch p.GetProfileType() {
	case runtimeapi.SecurityProfile_RuntimeDefault:
		return &api.SecurityProfile{ProfileType: api.SecurityProfile_RUNTIME_DEFAULT}
	case runtimeapi.SecurityProfile_Localhost:
		return &api.SecurityProfile{ProfileType: api.SecurityProfile_LOCALHOST, LocalhostRef: p.GetLocalhostRef()}
	}
	return &api.SecurityProfile{ProfileType: api.SecurityProfile_UNCONFINED}
}

// CRIResources is what ContainerStatus reports after an update asked
// for req (converted to the OCI resources before) was applied as after:
// req, with what plugins changed (after differs from before) overlaid.
func CRIResources(req *runtimeapi.LinuxContainerResources, before, after *specs.LinuxResources) *runtimeapi.LinuxContainerResources {
	if before == after || after == nil {
		return req
	}
	out := &runtimeapi.LinuxContainerResources{}
	if req != nil {
		out = proto.Clone(req).(*runtimeapi.LinuxContainerResources)
	}
	if before == nil {
		before = &specs.LinuxResources{}
	}
	var bc, ac specs.LinuxCPU
	if before.CPU != nil {
		bc = *before.CPU
	}
	if after.CPU != nil {
		ac = *after.CPU
	}
	if v, ok := changed(bc.Shares, ac.Shares); ok {
		out.CpuShares = int64(v)
	}
	if v, ok := changed(bc.Quota, ac.Quota); ok {
		out.CpuQuota = v
	}
	if v, ok := changed(bc.Period, ac.Period); ok {
		out.CpuPeriod = int64(v)
	}
	if ac.Cpus != bc.Cpus {
		out.CpusetCpus = ac.Cpus
	}
	if ac.Mems != bc.Mems {
		out.CpusetMems = ac.Mems
	}
	var bm, am specs.LinuxMemory
	if before.Memory != nil {
		bm = *before.Memory
	}
	if after.Memory != nil {
		am = *after.Memory
	}
	if v, ok := changed(bm.Limit, am.Limit); ok {
		out.MemoryLimitInBytes = v
	}
	if v, ok := changed(bm.Swap, am.Swap); ok {
		out.MemorySwapLimitInBytes = v
	}
	if !slices.Equal(before.HugepageLimits, after.HugepageLimits) {
		out.HugepageLimits = nil
		for _, h := range after.HugepageLimits {
			out.HugepageLimits = append(out.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.Pagesize, Limit: h.Limit})
		}
	}
	if !maps.Equal(before.Unified, after.Unified) {
		out.Unified = maps.Clone(after.Unified)
	}
	return out
}

// changed returns after's value when it is set and differs from before.
func changed[T comparable](before, after *T) (T, bool) {
	var zero T
	if after == nil || (before != nil && *before == *after) {
		return zero, false
	}
	return *after, true
}
