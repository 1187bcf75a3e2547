package nri

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// PodSandbox is a pod as the hooks need it. A pod that also has the
// methods of podRecord (the pod controller's pods do) gives plugins its
// runtime handler, IPs and sandbox cgroup too.
type PodSandbox interface {
	ID() string
	Config() *runtimeapi.PodSandboxConfig
	Info() oci.SandboxInfo
}

// podRecord is what a pod of the pod controller adds to PodSandbox.
type podRecord interface {
	Record() meta.Sandbox
	CgroupsPath() string
}

// Container is a container as the hooks need it.
type Container interface {
	ID() string
	Config() *runtimeapi.ContainerConfig
	Record() meta.Container
	// Spec is the container's OCI spec, nil before it is written.
	Spec() *specs.Spec
}

// API is what the controllers call at each moment of a pod's and a
// container's life. Hooks that return an error can fail the CRI request
// (a plugin rejected it); the others log what failed, as the operation
// they follow has already happened.
type API interface {
	// RunPodSandbox: the pod's sandbox runs and its network is up. An
	// error fails RunPodSandbox; the plugins are told the pod stopped and
	// was removed.
	RunPodSandbox(ctx context.Context, pod PodSandbox) error
	// UpdatePodSandbox: before new pod-level resources are accepted.
	UpdatePodSandbox(ctx context.Context, pod PodSandbox, overhead, resources *runtimeapi.LinuxContainerResources) error
	PostUpdatePodSandbox(ctx context.Context, pod PodSandbox)
	// StopPodSandbox: the pod's containers and sandbox are stopped.
	StopPodSandbox(ctx context.Context, pod PodSandbox)
	// RemovePodSandbox: before the pod's resources are released.
	RemovePodSandbox(ctx context.Context, pod PodSandbox)

	// CreateContainer: the spec is generated and not yet given to the
	// OCI runtime; the plugins' adjustments are applied to it in place.
	// An error (a plugin or the validator rejected the container) fails
	// CreateContainer; the caller then calls UndoCreateContainer.
	CreateContainer(ctx context.Context, pod PodSandbox, ctr Container, spec *specs.Spec) error
	// UndoCreateContainer tells the plugins that a container they saw
	// created is gone, after a failure later in its creation.
	UndoCreateContainer(ctx context.Context, pod PodSandbox, ctr Container)
	PostCreateContainer(ctx context.Context, pod PodSandbox, ctr Container)
	// StartContainer: before the OCI runtime starts the container; an
	// error fails StartContainer.
	StartContainer(ctx context.Context, pod PodSandbox, ctr Container) error
	PostStartContainer(ctx context.Context, pod PodSandbox, ctr Container)
	// UpdateContainer: before new resources reach the OCI runtime; it
	// returns the resources to apply, as the plugins adjusted them.
	UpdateContainer(ctx context.Context, pod PodSandbox, ctr Container, res *specs.LinuxResources) (*specs.LinuxResources, error)
	PostUpdateContainer(ctx context.Context, pod PodSandbox, ctr Container)
	// StopContainer: the container has stopped (it was stopped, or
	// exited by itself and a stop or a removal noticed). Told once.
	StopContainer(ctx context.Context, pod PodSandbox, ctr Container)
	// ContainerExited: the container exited by itself; the plugins are
	// told in the background, as a StopContainer.
	ContainerExited(pod PodSandbox, ctr Container)
	// RemoveContainer: before the container's resources are released.
	RemoveContainer(ctx context.Context, pod PodSandbox, ctr Container)

	// BlockSync keeps plugins from registering (and being synchronized)
	// until the returned function is called, so that a pod or container
	// being created is either in a new plugin's synchronization or told
	// to it by its hooks, never neither. Call it before any other hook of
	// the creation, never while holding a lock a hook may need.
	BlockSync() (unblock func())
	// Idle tells that no plugin would hear of a container event now:
	// none is connected and none is registering. Asked while BlockSync
	// holds, it stays true until the unblock (only a registration makes
	// it false), so a caller can do without what only a plugin needs
	// (a created container's start apart from its creation).
	Idle() bool
}

// Off is NRI disabled: every hook does nothing.
type Off struct{}

var _ API = Off{}

func noop() {}

func (Off) RunPodSandbox(context.Context, PodSandbox) error { return nil }
func (Off) UpdatePodSandbox(context.Context, PodSandbox, *runtimeapi.LinuxContainerResources, *runtimeapi.LinuxContainerResources) error {
	return nil
}
func (Off) PostUpdatePodSandbox(context.Context, PodSandbox)                          {}
func (Off) StopPodSandbox(context.Context, PodSandbox)                                {}
func (Off) RemovePodSandbox(context.Context, PodSandbox)                              {}
func (Off) CreateContainer(context.Context, PodSandbox, Container, *specs.Spec) error { return nil }
func (Off) UndoCreateContainer(context.Context, PodSandbox, Container)                {}
func (Off) PostCreateContainer(context.Context, PodSandbox, Container)                {}
func (Off) StartContainer(context.Context, PodSandbox, Container) error               { return nil }
func (Off) PostStartContainer(context.Context, PodSandbox, Container)                 {}
func (Off) UpdateContainer(_ context.Context, _ PodSandbox, _ Container, r *specs.LinuxResources) (*specs.LinuxResources, error) {
	return r, nil
}
func (Off) PostUpdateContainer(context.Context, PodSandbox, Container) {}
func (Off) StopContainer(context.Context, PodSandbox, Container)       {}
func (Off) ContainerExited(PodSandbox, Container)                      {}
func (Off) RemoveContainer(context.Context, PodSandbox, Container)     {}
func (Off) BlockSync() func()                                          { return noop }
func (Off) Idle() bool                                                 { return true }

// Runtime is what the adapter needs of the daemon to synchronize plugins
// and to carry out what they ask for unsolicited.
type Runtime interface {
	// PodSandboxes lists every pod.
	PodSandboxes() []PodSandbox
	// Containers lists every container with its pod.
	Containers() []PodContainer
	// UpdateContainer applies resources to a container without calling
	// the hooks (the plugins asked for them).
	UpdateContainer(ctx context.Context, id string, res *specs.LinuxResources) error
	// EvictContainer stops a container a plugin evicted, hooks included.
	EvictContainer(ctx context.Context, id, reason string) error
}

// PodContainer is a container and its pod.
type PodContainer struct {
	Pod       PodSandbox
	Container Container
}
