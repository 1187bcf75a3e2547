package cgroups

import (
	"context"
	"errors"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Driver names, as kubelet's cgroupDriver setting spells them.
const (
	CgroupfsName = "cgroupfs"
	SystemdName  = "systemd"
)

// Default parents of pods whose config names no cgroup parent (crictl):
// each such pod gets its own cgroup below it.
const (
	DefaultCgroupfsParent = "/cri-runtimed"
	// DefaultSystemdParent is a top-level slice. A '-' in a slice name
	// nests it ("a-b.slice" is a child of "a.slice"), hence the '_'.
	DefaultSystemdParent = "cri_runtimed.slice"
)

// runtimePrefix names the scopes runc creates for our containers under the
// systemd driver (cri-runtimed-<id>.scope).
const runtimePrefix = "cri-runtimed"

// ErrInvalidParent is wrapped by the errors of PodCgroup for a cgroup
// parent the driver cannot use (a cgroupfs path given to the systemd driver
// or the other way round: kubelet's cgroupDriver does not match ours).
var ErrInvalidParent = errors.New("invalid cgroup parent")

// Driver is how the node's pod and container cgroups are named, created
// and removed: by the daemon and runc directly (cgroupfs), or as systemd
// units (systemd). The daemon chooses one at start (New) and hands it to
// everything that names or manages cgroups.
type Driver interface {
	// Name is CgroupfsName or SystemdName.
	Name() string
	// PodCgroup returns the cgroup parent of a pod's sandbox and
	// containers. A configured parent (LinuxPodSandboxConfig.cgroup_parent,
	// the pod cgroup kubelet made) is checked and used as is, own false.
	// Without one the pod gets a cgroup of its own below the driver's
	// default parent, own true: the daemon creates it (CreatePod) and
	// removes it (RemovePod).
	PodCgroup(podID, configured string) (parent string, own bool, err error)
	// CreatePod creates a pod cgroup PodCgroup returned as own; creating
	// one that exists succeeds.
	CreatePod(ctx context.Context, parent string) error
	// RemovePod removes a pod cgroup the daemon owns once its processes
	// are gone; removing one that does not exist succeeds.
	RemovePod(ctx context.Context, parent string) error
	// UpdatePod sets the CPU weight, CPU quota and memory limit of res on
	// the pod cgroup parent (kubelet's or the daemon's), the cgroup all
	// of the pod's containers share (UpdatePodSandboxResources). Nil
	// fields stay as they are; the cgroup must exist.
	UpdatePod(ctx context.Context, parent string, res *specs.LinuxResources) error
	// CgroupsPath is linux.cgroupsPath of the sandbox or container id in
	// the pod cgroup parent.
	CgroupsPath(parent, id string) string
	// RuntimeArgs are the OCI runtime's global options for this driver,
	// given to every runc or crun invocation (create, update, delete...).
	RuntimeArgs() []string
	// UpdateContainer makes a resource update of the container whose
	// linux.cgroupsPath is cgroupsPath stick, after the OCI runtime
	// applied it: nothing for cgroupfs; for systemd the properties of
	// the container's scope unit (see systemd_update.go).
	UpdateContainer(ctx context.Context, cgroupsPath string, r *specs.LinuxResources) error
	// ContainerCreated is called once the OCI runtime has created the
	// container whose linux.cgroupsPath is cgroupsPath (and again when
	// the daemon recovers it). It returns the cgroup the container's
	// processes run in, below the mount root, which stats read: crun
	// puts them in a sub-cgroup of its systemd scope (RuntimeSubgroup).
	// resources gives the container's current limits, for a driver that
	// must apply them to its own unit (see subgroup.go).
	ContainerCreated(ctx context.Context, cgroupsPath string, resources func() (*specs.LinuxResources, error)) (string, error)
	// Close releases the driver's connections.
	Close() error
}

// Option configures a driver.
type Option func(*options)

type options struct {
	defaultParent string
	bus           func(context.Context) (unitManager, error)
	layout        func() (Layout, error)
}

// WithDefaultParent sets the parent of the pod cgroups the daemon makes
// for pods without a cgroup parent: an absolute path for cgroupfs, a slice
// name for systemd. Empty keeps the driver's default.
func WithDefaultParent(p string) Option { return func(o *options) { o.defaultParent = p } }

// withBus replaces the systemd D-Bus connection, for tests.
func withBus(f func(context.Context) (unitManager, error)) Option {
	return func(o *options) { o.bus = f }
}

// withLayout replaces the host's cgroup mounts, for tests.
func withLayout(f func() (Layout, error)) Option { return func(o *options) { o.layout = f } }

// SystemdRuns reports whether systemd is the init system, the test
// sd_booted(3) makes.
func SystemdRuns() bool {
	_, err := os.Stat("/run/systemd/system")
	return err == nil
}

// New returns the driver named name; empty picks systemd where systemd
// runs the node (what kubelet's default expects) and cgroupfs elsewhere.
func New(name string, opts ...Option) (Driver, error) {
	o := options{bus: dialSystemd, layout: HostLayout}
	for _, opt := range opts {
		opt(&o)
	}
	if name == "" {
		name = CgroupfsName
		if SystemdRuns() {
			name = SystemdName
		}
	}
	switch name {
	case CgroupfsName:
		return newCgroupfs(o)
	case SystemdName:
		return newSystemd(o)
	}
	return nil, fmt.Errorf("cgroup driver %q is not one of %s, %s", name, CgroupfsName, SystemdName)
}
