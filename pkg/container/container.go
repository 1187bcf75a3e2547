package container

import (
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/oci"

	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// Container is one container. Lifecycle operations on it are serialized
// by op; mu guards its record.
type Container struct {
	op sync.Mutex
	// events orders a state change with its event: without it, Start's
	// "running" and the exit of a container that exits at once could be
	// recorded in order but published STOPPED then STARTED.
	events sync.Mutex
	mu     sync.Mutex
	rec    meta.Container
	cfg    *runtimeapi.ContainerConfig
	pod    Sandbox
	// facts caches what status and stats calls need of the bundle's
	// config.json: set at creation, read from the bundle once after a
	// restart. The whole spec is not kept (memory per container).
	facts *specFacts
	// pinsImage and pinsVolumes: the controller's image reference counts
	// include this container's image, its image volumes (see imageRefs).
	pinsImage, pinsVolumes bool
	// writable caches the directory of the container's writable layer.
	writable string
	// procCgroup is the cgroup the container's processes run in, as the
	// cgroup driver found it once the runtime created the container (crun
	// uses a sub-cgroup of its scope); "" until then.
	procCgroup string
	// runtime guards the OCI runtime's side of the container: whether the
	// pod's shim has created it yet (inRuntime), and the bundle's
	// config.json until it has. CreateContainer only prepares the bundle;
	// the runtime creates the container when it starts, as containerd
	// does, so that a created container costs no process.
	runtime   sync.Mutex
	inRuntime bool
}

// ID is the container's 64-hex-character ID.
func (c *Container) ID() string { return c.rec.ID }

// Config is the CRI config the container was created with, with the
// resources of its last update.
func (c *Container) Config() *runtimeapi.ContainerConfig {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg
}

// Record returns a copy of the container's record.
func (c *Container) Record() meta.Container {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec
}

// State is the container's recorded state.
func (c *Container) State() meta.ContainerState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec.State
}

// Pod is the container's pod.
func (c *Container) Pod() Sandbox { return c.pod }

// Spec is the container's OCI spec as written to its bundle, read from
// it at each call (verbose status, tests); nil if it cannot be read.
func (c *Container) Spec() *specs.Spec {
	s, err := oci.Load(c.pod.BundleDir(c.rec.ID))
	if err != nil {
		return nil
	}
	return s
}

// specFacts is what the status and stats calls need of the spec.
type specFacts struct {
	user        *specs.User
	cgroupsPath string
}

func factsOf(s *specs.Spec) *specFacts {
	f := &specFacts{}
	if s.Process != nil {
		u := s.Process.User
		f.user = &u
	}
	if s.Linux != nil {
		f.cgroupsPath = s.Linux.CgroupsPath
	}
	return f
}

// specFacts returns the cached facts, reading the bundle the first time
// (nil while it cannot be read).
func (c *Container) specFacts() *specFacts {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.facts == nil {
		if s, err := oci.Load(c.pod.BundleDir(c.rec.ID)); err == nil {
			c.facts = factsOf(s)
		}
	}
	return c.facts
}

// setSpec records the facts of the spec just written to the bundle.
func (c *Container) setSpec(s *specs.Spec) {
	c.mu.Lock()
	c.facts = factsOf(s)
	c.mu.Unlock()
}

// User is the user the container's process runs as.
func (c *Container) User() *specs.User {
	if f := c.specFacts(); f != nil {
		return f.user
	}
	return nil
}

// CgroupsPath is the container's linux.cgroupsPath, "" if unknown.
func (c *Container) CgroupsPath() string {
	if f := c.specFacts(); f != nil {
		return f.cgroupsPath
	}
	return ""
}

// StatsCgroup is the cgroup whose files describe the container's
// processes (a form cgroups.Resolve accepts): where the runtime runs them,
// once known, else linux.cgroupsPath.
func (c *Container) StatsCgroup() string {
	c.mu.Lock()
	p := c.procCgroup
	c.mu.Unlock()
	if p != "" {
		return p
	}
	return c.CgroupsPath()
}

func (c *Container) setProcCgroup(p string) {
	c.mu.Lock()
	c.procCgroup = p
	c.mu.Unlock()
}

// StopSignal is the signal StopContainer sends first, RUNTIME_DEFAULT
// where the record predates it (the image decides at the stop).
func (c *Container) StopSignal() runtimeapi.Signal {
	c.mu.Lock()
	defer c.mu.Unlock()
	return signalToCRI(parseSignalName(c.rec.StopSignal))
}
