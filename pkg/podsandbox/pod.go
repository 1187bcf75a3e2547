package podsandbox

import (
	"context"
	"path/filepath"
	"sync"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// Pod is one pod sandbox. Its methods are safe for concurrent use;
// lifecycle operations on one pod are serialized by op.
type Pod struct {
	op sync.Mutex // held through Stop and Remove

	mu       sync.Mutex // guards rec and shim
	rec      meta.Sandbox
	shim     shim.API
	cfg      *runtimeapi.PodSandboxConfig
	dir      string
	handler  Handler
	hostname string
	// cgroupsPath is the sandbox process's linux.cgroupsPath.
	cgroupsPath string
	// procCgroup is the cgroup the sandbox process runs in, as the cgroup
	// driver found it once the runtime created it (crun uses a
	// sub-cgroup of its scope); "" until then.
	procCgroup string
}

// ID is the pod's 64-hex-character ID.
func (p *Pod) ID() string { return p.rec.ID }

// Config is the CRI config the pod was created with, with the resources
// of its last UpdateResources.
func (p *Pod) Config() *runtimeapi.PodSandboxConfig {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg
}

// Record returns a copy of the pod's record.
func (p *Pod) Record() meta.Sandbox {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rec
	r.IPs = append([]string(nil), p.rec.IPs...)
	return r
}

// Ready reports whether the sandbox process runs.
func (p *Pod) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rec.State == meta.SandboxReady
}

// released reports whether the pod was stopped and its shim, network
// namespace and mounts are gone.
func (p *Pod) released() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rec.Released
}

// Shim is the client of the pod's shim, nil when the shim is gone.
func (p *Pod) Shim() shim.API {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shim
}

func (p *Pod) setShim(c shim.API) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shim = c
}

// CgroupsPath is the cgroup of the sandbox process itself (below the
// pod's cgroup parent), as given to the OCI runtime.
func (p *Pod) CgroupsPath() string { return p.cgroupsPath }

// StatsCgroup is the cgroup the sandbox process runs in (a form
// cgroups.Resolve accepts): once known, the one the runtime put it in,
// else CgroupsPath.
func (p *Pod) StatsCgroup() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.procCgroup != "" {
		return p.procCgroup
	}
	return p.cgroupsPath
}

// Runtime is the OCI runtime the pod's containers run with.
func (p *Pod) Runtime() Handler { return p.handler }

// Dir is the pod's state directory.
func (p *Pod) Dir() string { return p.dir }

// BundleDir is where the OCI bundle of one of the pod's containers lives.
func (p *Pod) BundleDir(containerID string) string { return p.bundleDir(containerID) }

func (p *Pod) bundleDir(id string) string { return filepath.Join(p.dir, "bundles", id) }
func (p *Pod) shimDir() string            { return filepath.Join(p.dir, "shim") }

// Info is what a container spec needs to join the pod.
func (p *Pod) Info() oci.SandboxInfo { return p.info() }

func (p *Pod) info() oci.SandboxInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	ns := p.cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	f := filesIn(p.dir)
	info := oci.SandboxInfo{
		ID:           p.rec.ID,
		Pid:          p.rec.Pid,
		NetNSPath:    p.rec.NetNSPath,
		HostNetwork:  ns.GetNetwork() == runtimeapi.NamespaceMode_NODE,
		HostPID:      ns.GetPid() == runtimeapi.NamespaceMode_NODE,
		HostIPC:      ns.GetIpc() == runtimeapi.NamespaceMode_NODE,
		PIDMode:      ns.GetPid(),
		Hostname:     p.hostname,
		HostnamePath: f.Hostname,
		HostsPath:    f.Hosts,
		ResolvPath:   f.Resolv,
		CgroupParent: p.rec.CgroupParent,
		// The containers' specs go to the same runtime as the sandbox's.
		OCIVersionMax: p.handler.OCIVersionMax,
	}
	if !info.HostIPC {
		info.ShmPath = f.Shm
	}
	return info
}

// ForceDelete kills and deletes a container of the pod through the OCI
// runtime directly, for when the pod's shim is gone.
func (p *Pod) ForceDelete(ctx context.Context, containerID string) {
	forceDelete(ctx, p.handler, containerID)
}
