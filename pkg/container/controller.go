package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/cdi"
	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/nri"
	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
	"github.com/cri-runtimed/cri-runtimed/pkg/registrar"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
	"github.com/cri-runtimed/cri-runtimed/pkg/userns"
)

// ErrExecTimeout: an ExecSync command ran past its timeout and was killed.
var ErrExecTimeout = errors.New("exec timed out")

// Sandbox is what a container needs of its pod.
type Sandbox interface {
	ID() string
	Config() *runtimeapi.PodSandboxConfig
	Ready() bool
	Shim() shim.API
	Info() oci.SandboxInfo
	BundleDir(containerID string) string
	// ForceDelete kills and deletes a container through the OCI runtime
	// directly, for when the shim is gone.
	ForceDelete(ctx context.Context, containerID string)
}

// Options configure the controller.
type Options struct {
	// Cgroups names the containers' cgroups.
	Cgroups        cgroups.Driver
	MinOOMScoreAdj int
	MaxExecOutput  int
	// CDI resolves the CDI devices containers ask for; nil refuses them.
	CDI *cdi.Registry
	// NRI relays the containers' lifecycle to NRI plugins; nil is off.
	NRI nri.API
	// CgroupNamespace gives every unprivileged container its own cgroup
	// namespace. The daemon sets it on cgroup v2 hosts, where it is what
	// kubelet and workloads expect: a container sees its own cgroup as
	// /sys/fs/cgroup (memory.max, cpu.max) and nothing of the node's tree.
	// On v1 the namespace would hide nothing the bind-mounted controllers
	// show, so runtimes leave it off there.
	CgroupNamespace bool
}

// Controller owns every container of the node.
type Controller struct {
	opts      Options
	db        *meta.DB
	images    *image.Service
	snap      snapshot.Snapshotter
	names     *registrar.Registrar
	creations *registrar.Creations[string]
	pod       func(id string) (Sandbox, error)

	mu   sync.RWMutex
	ctrs map[string]*Container
	// order is ctrs oldest first (creation time, then ID), and byPod
	// the same by pod ID: kubelet lists all containers, or one pod's
	// (PodSandboxStatus, pod stats), many times a minute, and sorting
	// them at each call was most of a list's own cost.
	order []*Container
	// byPod indexes ctrs by pod ID: kubelet asks for one pod's
	// containers (PodSandboxStatus, pod stats) many times a minute.
	byPod map[string][]*Container
	hook  EventHook
	// refs counts the listed containers' references to images.
	refs imageRefs
}

// EventHook receives each lifecycle transition of a container, in order
// for that container, after the change is recorded.
type EventHook func(runtimeapi.ContainerEventType, *Container)

// SetEventHook registers the receiver of lifecycle events.
func (c *Controller) SetEventHook(fn EventHook) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hook = fn
}

func (c *Controller) emit(t runtimeapi.ContainerEventType, ctr *Container) {
	c.mu.RLock()
	fn := c.hook
	c.mu.RUnlock()
	if fn != nil {
		fn(t, ctr)
	}
}

// New returns a controller; pod finds a pod by exact ID.
func New(opts Options, db *meta.DB, images *image.Service, pod func(id string) (Sandbox, error)) *Controller {
	c := &Controller{
		opts:   opts,
		db:     db,
		images: images,
		snap:   images.Snapshotter(),
		names:  registrar.New(),
		pod:    pod,
		ctrs:   map[string]*Container{},
		byPod:  map[string][]*Container{},
	}
	c.creations = registrar.NewCreations[string](5*time.Minute, registrar.WithExpire(func(name, id string) {
		klog.InfoS("Removing container abandoned by a timed-out request", "container", id, "name", name)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Remove(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
			klog.ErrorS(err, "Removing abandoned container", "container", id)
		}
	}))
	return c
}

// Close stops background work.
func (c *Controller) Close() { c.creations.Close() }

// Name is kubelet's unique container name.
func Name(m *runtimeapi.ContainerMetadata, pod *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{m.GetName(), pod.GetName(), pod.GetNamespace(), pod.GetUid(), strconv.FormatUint(uint64(m.GetAttempt()), 10)}, "_")
}

func validate(cfg *runtimeapi.ContainerConfig) error {
	switch {
	case cfg == nil:
		return fmt.Errorf("%w: config is empty", ErrInvalid)
	case cfg.GetMetadata() == nil:
		return fmt.Errorf("%w: config.metadata is empty", ErrInvalid)
	case cfg.GetMetadata().GetName() == "":
		return fmt.Errorf("%w: config.metadata.name is empty", ErrInvalid)
	case cfg.GetImage().GetImage() == "":
		return fmt.Errorf("%w: config.image.image is empty", ErrInvalid)
	}
	if p := cfg.GetLogPath(); p != "" && (!filepath.IsLocal(p) || strings.ContainsRune(p, 0)) {
		return fmt.Errorf("%w: config.log_path %q must be relative to the pod's log directory", ErrInvalid, cfg.GetLogPath())
	}
	if _, err := signalFromCRI(cfg.GetStopSignal()); err != nil {
		return err
	}
	for i, m := range cfg.GetMounts() {
		if !filepath.IsAbs(m.GetContainerPath()) {
			return fmt.Errorf("%w: config.mounts[%d].container_path %q is not absolute", ErrInvalid, i, m.GetContainerPath())
		}
		if m.GetHostPath() != "" && !filepath.IsAbs(m.GetHostPath()) {
			return fmt.Errorf("%w: config.mounts[%d].host_path %q is not absolute", ErrInvalid, i, m.GetHostPath())
		}
	}
	return nil
}

// Create creates a container in a ready pod; a retry of a request that
// timed out gets the container the first request made.
func (c *Controller) Create(ctx context.Context, pod Sandbox, cfg *runtimeapi.ContainerConfig, opts ...CreateOption) (string, error) {
	var o createOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := validate(cfg); err != nil {
		return "", err
	}
	if !pod.Ready() {
		return "", fmt.Errorf("%w: cannot create container %q in pod sandbox %s", errNotReady, cfg.GetMetadata().GetName(), pod.ID())
	}
	name := Name(cfg.GetMetadata(), pod.Config().GetMetadata())
	id, _, err := c.creations.Do(ctx, name, func(ctx context.Context) (string, error) {
		return c.create(ctx, name, pod, cfg, o)
	})
	return id, err
}

// CreateOption is an optional setting of Create.
type CreateOption func(*createOptions)

type createOptions struct {
	restorable func() error
}

// IfRestorable has a create from a checkpoint (an archive, a pod
// checkpoint's container directory or a checkpoint image) ask check
// first and fail with its error: whether CRIU works on this node.
func IfRestorable(check func() error) CreateOption {
	return func(o *createOptions) { o.restorable = check }
}

var errNotReady = fmt.Errorf("%w: pod sandbox is not ready", ErrState)

func (c *Controller) create(ctx context.Context, name string, pod Sandbox, cfg *runtimeapi.ContainerConfig, o createOptions) (id string, retErr error) {
	// A checkpoint as the image: the container is restored from it (its
	// image, filesystem changes and process) at Start.
	ckpt, cfg, err := c.unpackCheckpoint(ctx, pod, cfg, o)
	if err != nil {
		return "", err
	}
	if ckpt != nil {
		defer func() {
			if retErr != nil {
				os.RemoveAll(ckpt.Dir)
			}
		}()
	}
	devices, err := cdi.Requested(cfg)
	if err != nil {
		return "", err
	}
	img, err := c.images.Get(ctx, cfg.GetImage().GetImage())
	if err != nil {
		return "", fmt.Errorf("image %q: %w", cfg.GetImage().GetImage(), err)
	}
	imgCfg, err := c.images.Config(ctx, img)
	if err != nil {
		return "", err
	}
	volumes, err := c.resolveImageVolumes(ctx, cfg)
	if err != nil {
		return "", err
	}
	id = registrar.NewID()
	if err := c.names.Reserve(name, id); err != nil {
		var re *registrar.ReservedError
		if errors.As(err, &re) {
			return "", fmt.Errorf("%w: container %q is container %s", ErrAlreadyExists, name, re.ID)
		}
		return "", err
	}
	start := time.Now()
	raw, err := proto.Marshal(cfg)
	if err != nil {
		c.names.Release(name)
		return "", fmt.Errorf("encode container config: %w", err)
	}
	imageRef := img.ID.String()
	if len(img.RepoDigests) > 0 {
		imageRef = img.RepoDigests[0]
	}
	rec := meta.Container{
		ID:          id,
		SandboxID:   pod.ID(),
		Name:        name,
		Config:      raw,
		ImageID:     img.ID.String(),
		ImageRef:    imageRef,
		ImageName:   cfg.GetImage().GetImage(),
		SnapshotKey: id,
		State:       meta.ContainerCreating,
		CreatedAt:   time.Now().UTC(),
		StopSignal:  signalName(effectiveStopSignal(cfg, imgCfg.Config.StopSignal)),
	}
	for _, v := range volumes {
		rec.ImageVolumes = append(rec.ImageVolumes, v.ID.String())
	}
	if dir, p := pod.Config().GetLogDirectory(), cfg.GetLogPath(); dir != "" && p != "" {
		rec.LogPath = filepath.Join(dir, p)
	}
	if err := c.db.PutContainer(rec); err != nil {
		c.names.Release(name)
		return "", fmt.Errorf("save container record: %w", err)
	}
	ctr := &Container{rec: rec, cfg: cfg, pod: pod}
	defer func() {
		if retErr != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			c.nri().UndoCreateContainer(cctx, pod, ctr)
			if err := c.teardown(cctx, ctr); err != nil {
				klog.ErrorS(err, "Cleaning up failed container", "container", id)
			}
			c.names.Release(name)
		}
	}()

	bundle := pod.BundleDir(id)
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.MkdirAll(rootfs, 0o711); err != nil {
		return "", fmt.Errorf("create bundle: %w", err)
	}
	mounts, err := c.snap.Prepare(ctx, id, img.TopChainID().String())
	if err != nil {
		return "", fmt.Errorf("prepare rootfs: %w", err)
	}
	uids, gids, err := oci.PodUserNamespace(pod.Config())
	if err != nil {
		return "", err
	}
	if uids == nil {
		if err := snapshot.MountAll(mounts, rootfs); err != nil {
			return "", fmt.Errorf("mount rootfs: %w", err)
		}
	} else {
		// In a pod with a user namespace the image's files (owned by host
		// root on disk) are shown through idmapped layers as owned by the
		// pod's root.
		if err := userns.MountRootfs(mounts, rootfs, filepath.Join(bundle, "idmap"), uids, gids); err != nil {
			return "", fmt.Errorf("mount rootfs for the pod's user namespace: %w", err)
		}
	}
	if err := c.prepareRestore(ctx, ckpt, bundle, rootfs); err != nil {
		return "", err
	}
	specCfg, err := c.mountImageVolumes(ctx, id, bundle, cfg, volumes, uids, gids)
	if err != nil {
		return "", err
	}
	if err := createHostPaths(cfg); err != nil {
		return "", err
	}
	if rec.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(rec.LogPath), 0o755); err != nil {
			return "", fmt.Errorf("create log directory: %w", err)
		}
	}
	podCfg := pod.Config()
	info := pod.Info()
	if ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(); ns.GetPid() == runtimeapi.NamespaceMode_TARGET {
		// kubectl debug: share the PID namespace of another container.
		target, err := c.Get(ns.GetTargetId())
		if err != nil {
			return "", fmt.Errorf("%w: namespace_options.target_id %q: %v", ErrInvalid, ns.GetTargetId(), err)
		}
		trec := target.Record()
		if trec.State != meta.ContainerRunning || trec.Pid == 0 {
			return "", fmt.Errorf("%w: namespace_options.target_id %s is not running", ErrState, trec.ID)
		}
		info.PIDMode = runtimeapi.NamespaceMode_TARGET
		info.TargetPid = trec.Pid
	}
	oom := int(cfg.GetLinux().GetResources().GetOomScoreAdj())
	specOpts := []oci.SpecOpt{
		oci.WithRootfs(rootfs),
		oci.WithOOMScoreAdj(max(oom, c.opts.MinOOMScoreAdj)),
		oci.WithCgroupsPath(c.opts.Cgroups.CgroupsPath(info.CgroupParent, id)),
	}
	if c.opts.CgroupNamespace && !cfg.GetLinux().GetSecurityContext().GetPrivileged() {
		specOpts = append(specOpts, oci.WithNewCgroupNamespace())
	}
	spec, err := oci.ContainerSpec(id, specCfg, podCfg, imgCfg.Config, info, rootfs, specOpts...)
	if err != nil {
		return "", err
	}
	if err := c.opts.CDI.Inject(spec, devices); err != nil {
		return "", err
	}
	// A plugin registering from here on waits for the container to be
	// listed, or it would never hear of it.
	unblock := c.nri().BlockSync()
	defer unblock()
	if err := c.nriAdjust(ctx, ctr, spec); err != nil {
		return "", err
	}
	if ckpt != nil {
		if err := restoreIntoNewCgroup(spec, ckpt); err != nil {
			return "", err
		}
	}
	if err := oci.Save(spec, bundle); err != nil {
		return "", err
	}
	ctr.setSpec(spec)
	// The OCI runtime creates the container at its start (runtimeCreate),
	// as containerd does: a created container costs a record, a mounted
	// rootfs and a bundle, no process.
	if pod.Shim() == nil {
		return "", fmt.Errorf("%w: the pod's shim is gone", errNotReady)
	}
	ctr.rec.State = meta.ContainerCreated
	if err := c.db.PutContainer(ctr.rec); err != nil {
		return "", fmt.Errorf("save container record: %w", err)
	}
	c.add(ctr)
	c.nri().PostCreateContainer(ctx, pod, ctr)
	c.emit(runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, ctr)
	klog.V(2).InfoS("Container created", "container", id, "name", name, "pod", pod.ID(), "duration", time.Since(start))
	return id, nil
}

// createHostPaths creates bind-mount sources kubelet names that do not
// exist yet, as kubelet expects of a runtime.
func createHostPaths(cfg *runtimeapi.ContainerConfig) error {
	for i, m := range cfg.GetMounts() {
		if m.GetHostPath() == "" {
			continue
		}
		if _, err := os.Stat(m.GetHostPath()); os.IsNotExist(err) {
			if err := os.MkdirAll(m.GetHostPath(), 0o755); err != nil {
				return fmt.Errorf("config.mounts[%d]: create host path %s: %w", i, m.GetHostPath(), err)
			}
		}
	}
	return nil
}

// Start starts a created container. A start that fails leaves the
// container exited with the runtime's reason.
//
// The runtime creates the container here. Between its create and its
// start only NRI's StartContainer hook runs, for plugins that act on the
// created container; with NRI idle (no plugin connected or registering:
// nri.API.Idle), the two are one runtime call (`runc run --detach`,
// runsAtOnce), one process start less on the pod's critical path. Start
// holds NRI's BlockSync throughout, so that no plugin registers between
// that choice and the container's start.
func (c *Controller) Start(ctx context.Context, id string) error {
	begin := time.Now()
	ctr, err := c.Get(id)
	if err != nil {
		return err
	}
	// Taken before the container's lock: a plugin's synchronization may
	// update any container, which takes that lock.
	unblock := c.nri().BlockSync()
	defer unblock()
	ctr.op.Lock()
	defer ctr.op.Unlock()
	rec := ctr.Record()
	if rec.State != meta.ContainerCreated {
		return fmt.Errorf("%w: container %s is %s, not created", ErrState, rec.ID, rec.State)
	}
	cl := ctr.pod.Shim()
	if cl == nil {
		return fmt.Errorf("%w: the shim of pod %s is gone", ErrState, rec.SandboxID)
	}
	atOnce := c.runsAtOnce(ctr)
	tCreate := time.Now()
	if !atOnce {
		if _, err := c.runtimeCreate(ctx, ctr, cl, false); err != nil {
			return c.startFailed(ctx, ctr, cl, err)
		}
	}
	// Idle, the hook only records that the container starts.
	if err := c.nri().StartContainer(ctx, ctr.pod, ctr); err != nil {
		// As containerd: the container will not run.
		c.apply(ctr, shim.State{Status: shim.StatusExited, ExitCode: 128, FinishedAt: time.Now().UTC(), Reason: "StartError", Message: err.Error()})
		return fmt.Errorf("start container %s: %w", rec.ID, err)
	}
	tStart := time.Now()
	var st shim.State
	if atOnce {
		if st, err = c.runtimeCreate(ctx, ctr, cl, true); err != nil {
			return c.startFailed(ctx, ctr, cl, err)
		}
	} else if st, err = cl.Start(ctx, rec.ID); err != nil {
		return c.startFailed(ctx, ctr, cl, err)
	}
	c.apply(ctr, st)
	if st.Status == shim.StatusExited && st.Reason != "" {
		return fmt.Errorf("start container %s: %s: %s", rec.ID, st.Reason, st.Message)
	}
	c.nri().PostStartContainer(ctx, ctr.pod, ctr)
	tEnd := time.Now()
	klog.V(3).InfoS("Container start phases", "container", rec.ID, "lock", tCreate.Sub(begin), "create", tStart.Sub(tCreate), "start", tEnd.Sub(tStart), "atOnce", atOnce)
	klog.V(2).InfoS("Container started", "container", rec.ID, "pid", st.Pid)
	return nil
}

// runsAtOnce tells whether Start may create and start the container in
// one runtime call: nothing needs it created and not started. That is
// NRI idle, a container the runtime does not hold yet (one a failed start
// or the daemon before a restart left created there is only started),
// and no checkpoint to restore (the restore is its own runtime call).
// Called under BlockSync, which keeps NRI idle until the start ends.
func (c *Controller) runsAtOnce(ctr *Container) bool {
	return c.nri().Idle() && !ctr.isInRuntime() && restoreImages(ctr.pod.BundleDir(ctr.ID())) == ""
}

// startFailed records a container whose runtime create or start failed
// as exited, as the shim recorded it (the shim kills an init whose start
// failed and records its exit) or else with StartError, and returns the
// start's error. As containerd, whose task is created at the start too:
// the container will not run.
func (c *Controller) startFailed(ctx context.Context, ctr *Container, cl shim.API, err error) error {
	st, serr := cl.State(ctx, ctr.ID())
	if serr != nil || st.Status != shim.StatusExited {
		st = shim.State{Status: shim.StatusExited, ExitCode: 128, FinishedAt: time.Now().UTC(), Reason: "StartError", Message: err.Error()}
	}
	c.apply(ctr, st)
	return fmt.Errorf("start container %s: %w", ctr.ID(), err)
}

// runtimeCreate has the pod's shim create the container in the OCI
// runtime from its bundle, unless it did already (a start that failed
// after it, or a container created before a restart of the daemon); with
// start, it is started too, in the same runtime call when the shim did
// not hold it yet, and the shim's state of the started container is
// returned. Nothing is recorded: until the start is, a restart finds the
// container in the shim as created or running (recoverOne), and a start
// creates it only once. The runtime lock keeps a resource update either
// in the bundle before the create or applied to the container after it.
func (c *Controller) runtimeCreate(ctx context.Context, ctr *Container, cl shim.API, start bool) (shim.State, error) {
	ctr.runtime.Lock()
	defer ctr.runtime.Unlock()
	rec := ctr.Record()
	if !ctr.inRuntime {
		cfg := ctr.Config()
		st, err := cl.Create(ctx, shim.CreateRequest{
			ID:        rec.ID,
			Bundle:    ctr.pod.BundleDir(rec.ID),
			Stdin:     cfg.GetStdin(),
			StdinOnce: cfg.GetStdinOnce(),
			Terminal:  cfg.GetTty(),
			LogPath:   rec.LogPath,
			// A container created from a checkpoint: the start restores it.
			RestoreFrom: restoreImages(ctr.pod.BundleDir(rec.ID)),
			Start:       start,
		})
		if err == nil {
			ctr.inRuntime = true
			c.findCgroup(ctx, ctr)
			return st, nil
		}
		if !errors.Is(err, shim.ErrAlreadyExists) {
			return shim.State{}, fmt.Errorf("create container in the runtime: %w", err)
		}
		// The shim held it already: it is only started.
		ctr.inRuntime = true
		c.findCgroup(ctx, ctr)
	}
	if !start {
		return shim.State{}, nil
	}
	return cl.Start(ctx, rec.ID)
}

// findCgroup has the cgroup driver find the cgroup the runtime runs the
// container's processes in (and, under systemd, put limits a runtime left
// off the scope on it); stats read it from then on. On failure stats read
// linux.cgroupsPath, and the limits in force are the runtime's anyway.
func (c *Controller) findCgroup(ctx context.Context, ctr *Container) {
	dir, err := c.opts.Cgroups.ContainerCreated(ctx, ctr.CgroupsPath(), func() (*specs.LinuxResources, error) {
		return currentResources(ctr)
	})
	if err != nil {
		klog.ErrorS(err, "Finding the container's cgroup", "container", ctr.ID())
		return
	}
	ctr.setProcCgroup(dir)
}

// isInRuntime tells whether the pod's shim has created the container.
func (ctr *Container) isInRuntime() bool {
	ctr.runtime.Lock()
	defer ctr.runtime.Unlock()
	return ctr.inRuntime
}

// markInRuntime records that the pod's shim knows the container.
func (ctr *Container) markInRuntime() {
	ctr.runtime.Lock()
	ctr.inRuntime = true
	ctr.runtime.Unlock()
}

// apply records a state the shim reported.
func (c *Controller) apply(ctr *Container, st shim.State) {
	ctr.events.Lock()
	defer ctr.events.Unlock()
	if ev, changed := c.record(ctr, st); changed {
		if ev == runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
			c.nri().ContainerExited(ctr.pod, ctr)
		}
		c.emit(ev, ctr)
	}
}

// record updates and persists the container's record; it reports the
// event of a state change, if there was one. States only move forward
// (created, running, exited): Start's "running" reply and the exit event
// of a container that exits at once race, and whichever lands last must
// not undo the exit. A late report can still fill in what the record
// lacks (the pid, the start time).
func (c *Controller) record(ctr *Container, st shim.State) (runtimeapi.ContainerEventType, bool) {
	ctr.mu.Lock()
	defer ctr.mu.Unlock()
	r := &ctr.rec
	before := *r
	var state meta.ContainerState
	switch st.Status {
	case shim.StatusCreated:
		state = meta.ContainerCreated
	case shim.StatusRunning:
		state = meta.ContainerRunning
	case shim.StatusExited:
		state = meta.ContainerExited
	default:
		return 0, false
	}
	forward := stateRank(state) > stateRank(r.State)
	if forward {
		r.State = state
		if state == meta.ContainerExited {
			c.unpinExited(ctr)
			r.ExitCode = st.ExitCode
			r.FinishedAt = st.FinishedAt
			r.Reason, r.Message = exitReason(st)
		}
	}
	if st.Pid != 0 && (forward || r.Pid == 0) {
		r.Pid = st.Pid
	}
	if !st.StartedAt.IsZero() && (forward || r.StartedAt.IsZero()) {
		r.StartedAt = st.StartedAt
	}
	if before.State == r.State && before.ExitCode == r.ExitCode && before.Pid == r.Pid && before.StartedAt.Equal(r.StartedAt) {
		return 0, false
	}
	if err := c.db.PutContainer(*r); err != nil {
		klog.ErrorS(err, "Saving container state", "container", r.ID)
	}
	if before.State == r.State {
		return 0, false
	}
	switch r.State {
	case meta.ContainerRunning:
		return runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, true
	case meta.ContainerExited:
		return runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, true
	}
	return 0, false
}

// stateRank orders the states a container goes through.
func stateRank(s meta.ContainerState) int {
	switch s {
	case meta.ContainerCreating:
		return 1
	case meta.ContainerCreated:
		return 2
	case meta.ContainerRunning:
		return 3
	case meta.ContainerExited:
		return 4
	}
	return 0
}

func exitReason(st shim.State) (string, string) {
	switch {
	case st.OOMKilled:
		return "OOMKilled", st.Message
	case st.Reason != "":
		return st.Reason, st.Message
	case st.ExitCode == 0:
		return "Completed", st.Message
	}
	return "Error", st.Message
}

// Stop stops a running container: its stop signal (the config's, else the
// image's, else SIGTERM), then SIGKILL after timeout seconds. Stopping a container
// that does not run succeeds.
func (c *Controller) Stop(ctx context.Context, id string, timeout int64) error {
	ctr, err := c.Get(id)
	if err != nil {
		return err
	}
	ctr.op.Lock()
	defer ctr.op.Unlock()
	if err := c.stop(ctx, ctr, timeout); err != nil {
		return err
	}
	if ctr.State() == meta.ContainerExited {
		c.nri().StopContainer(ctx, ctr.pod, ctr)
	}
	return nil
}

func (c *Controller) stop(ctx context.Context, ctr *Container, timeout int64) error {
	rec := ctr.Record()
	if rec.State != meta.ContainerRunning {
		return nil
	}
	cl := ctr.pod.Shim()
	if cl == nil {
		ctr.pod.ForceDelete(ctx, rec.ID)
		c.apply(ctr, shim.State{Status: shim.StatusExited, ExitCode: 137, FinishedAt: time.Now(), Reason: "Error", Message: "the pod's shim is gone"})
		return nil
	}
	if timeout > 0 {
		sig := parseSignalName(rec.StopSignal)
		if sig == 0 {
			sig = c.imageStopSignal(ctx, rec)
		}
		if err := cl.Kill(ctx, rec.ID, sig, false); err != nil && !errors.Is(err, shim.ErrNotFound) {
			return fmt.Errorf("signal container %s: %w", rec.ID, err)
		}
		wctx, cancel := context.WithTimeout(ctx, time.Duration(timeout)*time.Second)
		st, err := cl.Wait(wctx, rec.ID)
		cancel()
		if err == nil {
			c.apply(ctr, st)
			klog.V(2).InfoS("Container stopped", "container", rec.ID, "exitCode", st.ExitCode)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err := cl.Kill(ctx, rec.ID, syscall.SIGKILL, true); err != nil && !errors.Is(err, shim.ErrNotFound) {
		return fmt.Errorf("kill container %s: %w", rec.ID, err)
	}
	st, err := cl.Wait(ctx, rec.ID)
	if err != nil {
		return fmt.Errorf("wait for container %s: %w", rec.ID, err)
	}
	c.apply(ctr, st)
	klog.V(2).InfoS("Container killed", "container", rec.ID, "exitCode", st.ExitCode)
	return nil
}

// effectiveStopSignal is the signal a stop sends first: the config's
// stop_signal (KEP-4960, validated), else the image's StopSignal, else
// SIGTERM.
func effectiveStopSignal(cfg *runtimeapi.ContainerConfig, imageSignal string) syscall.Signal {
	if sig, _ := signalFromCRI(cfg.GetStopSignal()); sig != 0 {
		return sig
	}
	if sig := parseSignalName(imageSignal); sig != 0 {
		return sig
	}
	return syscall.SIGTERM
}

// imageStopSignal is the stop signal of a container whose record
// predates StopSignal: the image's, else SIGTERM.
func (c *Controller) imageStopSignal(ctx context.Context, rec meta.Container) syscall.Signal {
	img, err := c.images.Get(ctx, rec.ImageID)
	if err != nil {
		return syscall.SIGTERM
	}
	cfg, err := c.images.Config(ctx, img)
	if err != nil {
		return syscall.SIGTERM
	}
	return effectiveStopSignal(nil, cfg.Config.StopSignal)
}

// Remove deletes a container, stopping it first if it runs. Removing an
// unknown container is NotFound for the caller to treat as done.
func (c *Controller) Remove(ctx context.Context, id string) error {
	ctr, err := c.Get(id)
	if err != nil {
		return err
	}
	ctr.op.Lock()
	defer ctr.op.Unlock()
	if err := c.stop(ctx, ctr, 0); err != nil {
		return err
	}
	c.nri().RemoveContainer(ctx, ctr.pod, ctr)
	if err := c.teardown(ctx, ctr); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.ctrs, ctr.rec.ID)
	c.order = without(c.order, ctr)
	if pod := without(c.byPod[ctr.rec.SandboxID], ctr); len(pod) > 0 {
		c.byPod[ctr.rec.SandboxID] = pod
	} else {
		delete(c.byPod, ctr.rec.SandboxID)
	}
	c.mu.Unlock()
	// Unlisted, it can no longer be pinned again (add pins under c.mu).
	c.unpin(ctr)
	c.names.ReleaseID(ctr.rec.ID)
	c.emit(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, ctr)
	klog.V(2).InfoS("Container removed", "container", ctr.rec.ID)
	// The container may have held the last reference to a removed image's
	// layers: the next GC pass, which the pod's other removals share,
	// frees them.
	c.images.ScheduleGC()
	return nil
}

// Release unmounts the rootfs of an exited container of a pod being
// stopped: kubelet keeps a stopped pod's containers (and their exit
// states and logs) until its garbage collection, or as long as a
// completed pod exists. RemoveContainer removes the rest.
func (c *Controller) Release(ctx context.Context, id string) error {
	ctr, err := c.Get(id)
	if err != nil {
		return err
	}
	ctr.op.Lock()
	defer ctr.op.Unlock()
	if ctr.Record().State != meta.ContainerExited {
		return nil
	}
	bundle := ctr.pod.BundleDir(id)
	if err := userns.UnmountRootfs(filepath.Join(bundle, "rootfs"), filepath.Join(bundle, "idmap")); err != nil {
		return fmt.Errorf("unmount rootfs of %s: %w", id, err)
	}
	return nil
}

// teardown releases the container's resources, each step idempotent,
// and deletes the record last.
func (c *Controller) teardown(ctx context.Context, ctr *Container) error {
	id := ctr.rec.ID
	start := time.Now()
	if cl := ctr.pod.Shim(); cl != nil {
		if _, err := cl.Delete(ctx, id); err != nil && !errors.Is(err, shim.ErrNotFound) && !errors.Is(err, shim.ErrShimGone) {
			return fmt.Errorf("delete container %s: %w", id, err)
		}
	} else {
		ctr.pod.ForceDelete(ctx, id)
	}
	tRuntime := time.Now()
	bundle := ctr.pod.BundleDir(id)
	if err := userns.UnmountRootfs(filepath.Join(bundle, "rootfs"), filepath.Join(bundle, "idmap")); err != nil {
		return fmt.Errorf("unmount rootfs of %s: %w", id, err)
	}
	if err := c.unmountImageVolumes(ctx, ctr.rec, bundle); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	tUnmount := time.Now()
	if err := c.snap.Remove(ctx, ctr.rec.SnapshotKey); err != nil && !errors.Is(err, snapshot.ErrNotFound) {
		return fmt.Errorf("remove rootfs snapshot of %s: %w", id, err)
	}
	tSnapshot := time.Now()
	if err := os.RemoveAll(bundle); err != nil {
		return fmt.Errorf("remove bundle of %s: %w", id, err)
	}
	if err := c.db.DeleteContainer(id); err != nil {
		return fmt.Errorf("delete container record: %w", err)
	}
	klog.V(3).InfoS("Container teardown phases", "container", id, "runtime", tRuntime.Sub(start), "unmount", tUnmount.Sub(tRuntime),
		"snapshot", tSnapshot.Sub(tUnmount), "record", time.Since(tSnapshot))
	return nil
}

// Get returns the container with this ID or unique ID prefix.
func (c *Controller) Get(idOrPrefix string) (*Container, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return registrar.ResolveID(c.ctrs, idOrPrefix, ErrNotFound, ErrAmbiguous)
}

// List returns every container, oldest first.
func (c *Controller) List() []*Container {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append(make([]*Container, 0, len(c.order)), c.order...)
}

// ImagesInUse returns the image IDs of the containers that have not
// exited and of every container's image volumes: image lookups ask it on
// every call, so it is kept as counts, not gathered from the containers.
func (c *Controller) ImagesInUse() map[string]bool { return c.refs.set() }

// ImageInUse reports whether the image with this ID is in ImagesInUse:
// one map read, ImageStatus asks it on every call.
func (c *Controller) ImageInUse(id string) bool { return c.refs.has(id) }

// add lists ctr, under its ID and its pod's.
func (c *Controller) add(ctr *Container) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ctrs[ctr.rec.ID] = ctr
	c.order = inserted(c.order, ctr)
	c.byPod[ctr.rec.SandboxID] = inserted(c.byPod[ctr.rec.SandboxID], ctr)
	c.pin(ctr)
}

// olderFirst orders containers by creation time, then ID (records made
// in the same instant).
func olderFirst(a, b *Container) int {
	if c := a.rec.CreatedAt.Compare(b.rec.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.rec.ID, b.rec.ID)
}

// inserted adds ctr to s, kept in olderFirst order. A new container is
// almost always the newest: the search costs log n, the copy nothing.
func inserted(s []*Container, ctr *Container) []*Container {
	i, _ := slices.BinarySearchFunc(s, ctr, olderFirst)
	return slices.Insert(s, i, ctr)
}

// without removes ctr from s, kept in olderFirst order.
func without(s []*Container, ctr *Container) []*Container {
	i, ok := slices.BinarySearchFunc(s, ctr, olderFirst)
	if !ok || s[i] != ctr {
		// Not where its order says: never, but removal must not miss it.
		i = slices.Index(s, ctr)
	}
	if i < 0 {
		return s
	}
	return slices.Delete(s, i, i+1)
}

// ListByPod returns the containers of one pod.
func (c *Controller) ListByPod(podID string) []*Container {
	c.mu.RLock()
	defer c.mu.RUnlock()
	pod := c.byPod[podID]
	return append(make([]*Container, 0, len(pod)), pod...)
}

// ExecSyncResult is the outcome of a command run to completion.
type ExecSyncResult struct {
	Stdout, Stderr []byte
	ExitCode       int32
}

// ExecSync runs cmd in a running container and returns its output, each
// stream capped; past timeout (0: none) the command is killed and
// ErrExecTimeout returned.
func (c *Controller) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (ExecSyncResult, error) {
	if len(cmd) == 0 {
		return ExecSyncResult{}, fmt.Errorf("%w: cmd is empty", ErrInvalid)
	}
	ctr, err := c.Get(id)
	if err != nil {
		return ExecSyncResult{}, err
	}
	rec := ctr.Record()
	if rec.State != meta.ContainerRunning {
		return ExecSyncResult{}, fmt.Errorf("%w: container %s is %s", ErrNotRunning, rec.ID, rec.State)
	}
	proc, err := c.execProcess(ctr, cmd, false)
	if err != nil {
		return ExecSyncResult{}, err
	}
	cl := ctr.pod.Shim()
	if cl == nil {
		return ExecSyncResult{}, fmt.Errorf("%w: the pod's shim is gone", ErrNotRunning)
	}
	res, err := cl.ExecSync(ctx, shim.ExecSyncRequest{ID: rec.ID, Process: proc, Timeout: timeout, MaxOutput: c.opts.MaxExecOutput})
	if err != nil {
		if errors.Is(err, shim.ErrNotRunning) {
			return ExecSyncResult{}, fmt.Errorf("%w: container %s", ErrNotRunning, rec.ID)
		}
		return ExecSyncResult{}, fmt.Errorf("exec in container %s: %w", rec.ID, err)
	}
	out := ExecSyncResult{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}
	if res.TimedOut {
		return out, fmt.Errorf("%w: command %q in container %s did not finish within %v and was killed", ErrExecTimeout, strings.Join(cmd, " "), rec.ID, timeout)
	}
	return out, nil
}

// execProcess derives an exec's process from the container's own: same
// user, environment, working directory, capabilities and limits.
func (c *Controller) execProcess(ctr *Container, cmd []string, tty bool) ([]byte, error) {
	spec, err := oci.Load(ctr.pod.BundleDir(ctr.rec.ID))
	if err != nil {
		return nil, fmt.Errorf("read container spec: %w", err)
	}
	if spec.Process == nil {
		return nil, fmt.Errorf("container %s has no process in its spec", ctr.rec.ID)
	}
	p := *spec.Process
	p.Args = cmd
	p.Terminal = tty
	p.ConsoleSize = nil
	if tty && !hasEnv(p.Env, "TERM") {
		p.Env = append(append([]string(nil), p.Env...), "TERM=xterm")
	}
	return json.Marshal(&p)
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// ReopenLog makes the shim reopen the container's log file after kubelet
// rotated it.
func (c *Controller) ReopenLog(ctx context.Context, id string) error {
	ctr, err := c.Get(id)
	if err != nil {
		return err
	}
	rec := ctr.Record()
	if rec.State != meta.ContainerRunning {
		return fmt.Errorf("%w: container %s is %s", ErrNotRunning, rec.ID, rec.State)
	}
	cl := ctr.pod.Shim()
	if cl == nil {
		return fmt.Errorf("%w: the pod's shim is gone", ErrNotRunning)
	}
	return cl.ReopenLog(ctx, rec.ID)
}

// WritableLayer is the directory holding the container's own changes to
// its root filesystem (the overlay upperdir, or the native copy). It is
// looked up once: stats ask for it on every call, and a container keeps
// its snapshot for life.
func (c *Controller) WritableLayer(ctx context.Context, ctr *Container) (string, error) {
	ctr.mu.Lock()
	dir, key := ctr.writable, ctr.rec.SnapshotKey
	ctr.mu.Unlock()
	if dir != "" {
		return dir, nil
	}
	mounts, err := c.snap.Mounts(ctx, key)
	if err != nil {
		return "", err
	}
	for _, m := range mounts {
		for _, o := range m.Options {
			if d, ok := strings.CutPrefix(o, "upperdir="); ok {
				dir = d
			}
		}
		if dir == "" && m.Type == "bind" {
			dir = m.Source
		}
		if dir != "" {
			ctr.mu.Lock()
			ctr.writable = dir
			ctr.mu.Unlock()
			return dir, nil
		}
	}
	return "", fmt.Errorf("container %s: no writable layer in its mounts", ctr.ID())
}

// SnapshotRoot is where writable layers live, for stats' mountpoints.
func (c *Controller) SnapshotRoot() string { return c.snap.Root() }

// UpdateResources applies new resource limits to a running (or created)
// container through the OCI runtime, as NRI plugins adjust them, and
// records them so that status reports them, also after a restart of the
// daemon.
func (c *Controller) UpdateResources(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return fmt.Errorf("%w: linux resources are empty", ErrInvalid)
	}
	ctr, err := c.Get(id)
	if err != nil {
		return err
	}
	ctr.op.Lock()
	defer ctr.op.Unlock()
	rec := ctr.Record()
	if rec.State != meta.ContainerRunning && rec.State != meta.ContainerCreated {
		return fmt.Errorf("%w: cannot update the resources of container %s: it is %s", ErrState, rec.ID, rec.State)
	}
	res, err := oci.ResourcesFromCRI(r)
	if err != nil {
		return err
	}
	// Devices are the container's own; an update must not replace them.
	res.Devices = nil
	adjusted, err := c.nri().UpdateContainer(ctx, ctr.pod, ctr, res)
	if err != nil {
		return fmt.Errorf("update resources of container %s: %w", rec.ID, err)
	}
	if err := c.applyResources(ctx, ctr, adjusted, nri.CRIResources(r, res, adjusted)); err != nil {
		return err
	}
	c.nri().PostUpdateContainer(ctx, ctr.pod, ctr)
	klog.V(2).InfoS("Container resources updated", "container", rec.ID)
	return nil
}

// ApplyResources applies resources an NRI plugin asked for, without
// relaying them to the plugins. It does not wait for the container's
// other operations (the plugin may be answering a hook of one of them);
// one that removed the container makes it fail.
func (c *Controller) ApplyResources(ctx context.Context, id string, res *specs.LinuxResources) error {
	ctr, err := c.Get(id)
	if err != nil {
		return err
	}
	if ctr.ID() != id {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if st := ctr.State(); st != meta.ContainerRunning && st != meta.ContainerCreated {
		return fmt.Errorf("%w: cannot update the resources of container %s: it is %s", ErrState, id, st)
	}
	cur := ctr.Config().GetLinux().GetResources()
	before, err := oci.ResourcesFromCRI(cur)
	if err != nil {
		before = nil
	}
	return c.applyResources(ctx, ctr, res, nri.CRIResources(cur, before, res))
}

// applyResources has the shim apply res and records them (criRes is
// what ContainerStatus reports).
func (c *Controller) applyResources(ctx context.Context, ctr *Container, res *specs.LinuxResources, criRes *runtimeapi.LinuxContainerResources) error {
	rec := ctr.Record()
	raw, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode resources: %w", err)
	}
	cl := ctr.pod.Shim()
	if cl == nil {
		return fmt.Errorf("%w: the shim of pod %s is gone", ErrState, rec.SandboxID)
	}
	if err := c.updateRuntime(ctx, ctr, cl, res, raw); err != nil {
		return fmt.Errorf("update resources of container %s: %w", rec.ID, err)
	}
	ctr.mu.Lock()
	cfg := proto.Clone(ctr.cfg).(*runtimeapi.ContainerConfig)
	if cfg.Linux == nil {
		cfg.Linux = &runtimeapi.LinuxContainerConfig{}
	}
	cfg.Linux.Resources = criRes
	b, err := proto.Marshal(cfg)
	if err != nil {
		ctr.mu.Unlock()
		return fmt.Errorf("encode container config: %w", err)
	}
	ctr.cfg = cfg
	ctr.rec.Config = b
	ctr.rec.Resources = raw
	saved := ctr.rec
	ctr.mu.Unlock()
	if err := c.db.PutContainer(saved); err != nil {
		return fmt.Errorf("save container record: %w", err)
	}
	return nil
}

// updateRuntime applies res through the runtime and the cgroup driver,
// or, to a container the runtime has not created yet (it has no cgroup
// or scope either), writes them into its bundle's config.json for the
// start to create it with (the fields res sets replace the spec's, as
// runc update does; devices stay).
func (c *Controller) updateRuntime(ctx context.Context, ctr *Container, cl shim.API, res *specs.LinuxResources, raw []byte) error {
	ctr.runtime.Lock()
	defer ctr.runtime.Unlock()
	if ctr.inRuntime {
		if err := cl.Update(ctx, ctr.ID(), raw); err != nil {
			return err
		}
		return c.opts.Cgroups.UpdateContainer(ctx, ctr.CgroupsPath(), res)
	}
	bundle := ctr.pod.BundleDir(ctr.ID())
	spec, err := oci.Load(bundle)
	if err != nil {
		return err
	}
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	spec.Linux.Resources = mergeResources(spec.Linux.Resources, res)
	return oci.Save(spec, bundle)
}

// currentResources are the container's limits: the bundle's, with the
// last update applied to the running container (the record's) over them.
func currentResources(ctr *Container) (*specs.LinuxResources, error) {
	s, err := oci.Load(ctr.pod.BundleDir(ctr.ID()))
	if err != nil {
		return nil, err
	}
	var res *specs.LinuxResources
	if s.Linux != nil {
		res = s.Linux.Resources
	}
	if raw := ctr.Record().Resources; len(raw) > 0 {
		var last specs.LinuxResources
		if err := json.Unmarshal(raw, &last); err != nil {
			return nil, fmt.Errorf("resources of container %s: %w", ctr.ID(), err)
		}
		res = mergeResources(res, &last)
	}
	return res, nil
}

// mergeResources is cur with every group res sets replaced; cur's devices
// stay.
func mergeResources(cur, res *specs.LinuxResources) *specs.LinuxResources {
	out := &specs.LinuxResources{}
	if cur != nil {
		*out = *cur
	}
	if res == nil {
		return out
	}
	if res.Memory != nil {
		out.Memory = res.Memory
	}
	if res.CPU != nil {
		out.CPU = res.CPU
	}
	if res.Pids != nil {
		out.Pids = res.Pids
	}
	if res.BlockIO != nil {
		out.BlockIO = res.BlockIO
	}
	if res.HugepageLimits != nil {
		out.HugepageLimits = res.HugepageLimits
	}
	if res.Network != nil {
		out.Network = res.Network
	}
	if res.Rdma != nil {
		out.Rdma = res.Rdma
	}
	if res.Unified != nil {
		out.Unified = res.Unified
	}
	return out
}

// nriAdjust has NRI plugins see the container about to be created and
// applies their adjustments to its spec.
func (c *Controller) nriAdjust(ctx context.Context, ctr *Container, spec *specs.Spec) error {
	if err := c.nri().CreateContainer(ctx, ctr.pod, ctr, spec); err != nil {
		return fmt.Errorf("create container %q: %w", ctr.cfg.GetMetadata().GetName(), err)
	}
	return nil
}

// nri is the NRI hooks of the containers; a controller without them (tests
// building one directly) has them off.
func (c *Controller) nri() nri.API {
	if c.opts.NRI == nil {
		return nri.Off{}
	}
	return c.opts.NRI
}
