package podsandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/pkg/cni"
	"github.com/cri-runtimed/cri-runtimed/pkg/netns"
	"github.com/cri-runtimed/cri-runtimed/pkg/nri"
	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox/pause"
	"github.com/cri-runtimed/cri-runtimed/pkg/registrar"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
	"github.com/cri-runtimed/cri-runtimed/pkg/telemetry"
)

// Keys of meta.Sandbox.Extra.
const (
	extraHostname = "hostname"
	// extraOwnCgroup marks a cgroup parent the daemon chose (and removes).
	extraOwnCgroup = "ownCgroup"
	// The OCI runtime the pod started with, so that it keeps it after a
	// restart whatever the config then says of its handler.
	extraRuntimeBinary = "runtimeBinary"
	extraRuntimeRoot   = "runtimeRoot"
	extraOCIVersionMax = "ociVersionMax"
	// extraSandboxStart is "shim" for a pause the shim started itself.
	extraSandboxStart = "sandboxStart"
)

// sandboxOOMScoreAdj is what kubelet asks for sandboxes; it is clamped to
// what the daemon itself may set.
const sandboxOOMScoreAdj = -998

// Handler is one OCI runtime a pod can name.
type Handler struct {
	Binary string // path or name in PATH
	Root   string // runtime --root
	// Args are global options of every invocation; New sets the cgroup
	// driver's (--systemd-cgroup).
	Args []string
	// OCIVersionMax is the newest runtime-spec version the runtime
	// accepts (ociVersionMax of `<runtime> features`); empty: any.
	OCIVersionMax string
}

// Options configure the controller.
type Options struct {
	// StateDir holds per-pod directories (shim state, bundles, pod files).
	StateDir string
	// NetNSDir holds the network namespace pins.
	NetNSDir string
	// Binary is the daemon's own executable, mounted as the pause.
	Binary string
	// ShimBinary is what shims are started from (Binary when empty).
	ShimBinary     string
	Handlers       map[string]Handler
	DefaultHandler string
	// Cgroups names, creates and removes pod and container cgroups.
	Cgroups cgroups.Driver
	// MinOOMScoreAdj is the lowest oom_score_adj the daemon may set
	// (its own, lacking CAP_SYS_RESOURCE).
	MinOOMScoreAdj int
	// ShimLogLevel is passed to shims (klog -v).
	ShimLogLevel int
	// ShimStartsPause has the pod's shim start the built-in pause itself,
	// without the OCI runtime, where it can (runtime.sandbox_start
	// "shim", see pauseByShim).
	ShimStartsPause bool
	// SandboxImage, when set, supplies the sandbox process instead of
	// the built-in pause.
	SandboxImage SandboxImage
	// Network attaches pods that do not use the host's network.
	Network Network
	// Shims starts and reconnects to pods' shims; nil is real shim
	// processes.
	Shims shim.Launcher
	// Telemetry records pod start phases and shim deaths; nil records
	// nothing.
	Telemetry *telemetry.Recorder
	// NRI relays the pods' lifecycle to NRI plugins; nil is off.
	NRI nri.API
}

// SandboxImage runs the sandbox process from an image; the image side
// lives in another package, since pods know nothing of images.
type SandboxImage interface {
	// Mount mounts the image's root filesystem for sandbox id at rootfs
	// and returns the process arguments.
	Mount(ctx context.Context, id, rootfs string) ([]string, error)
	// Unmount undoes Mount; it is idempotent.
	Unmount(ctx context.Context, id, rootfs string) error
}

// Network attaches pods to the node's pod network: *cni.Manager, or a
// fake in tests.
type Network interface {
	// Setup runs CNI ADD in the pod's network namespace.
	Setup(ctx context.Context, p cni.Pod) (*cni.Result, error)
	// Teardown runs CNI DEL; it is idempotent.
	Teardown(ctx context.Context, p cni.Pod) error
	// Attached lists the IDs of the pods the CNI cache holds.
	Attached() ([]string, error)
}

// EventHandler receives the shim events of containers other than the pod's
// sandbox process; the container controller registers it.
type EventHandler func(pod *Pod, ev shim.Event)

// Controller owns every pod sandbox of the node.
type Controller struct {
	opts      Options
	db        *meta.DB
	names     *registrar.Registrar
	creations *registrar.Creations[string]

	// handlers are those of new pods; SetHandlers replaces them.
	handlers atomic.Pointer[handlerSet]
	// creating counts the pods being run (not listed until ready).
	creating atomic.Int64

	mu      sync.RWMutex
	pods    map[string]*Pod
	onEvent EventHandler
	hook    LifecycleHook

	// monitors follow each pod's shim; stopped by Close.
	monitorCtx  context.Context
	stopMonitor context.CancelFunc
	monitors    sync.WaitGroup
}

// New returns a controller; call Recover before serving.
func New(opts Options, db *meta.DB) *Controller {
	if opts.Shims == nil {
		opts.Shims = shim.Processes{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Controller{
		opts:        opts,
		db:          db,
		names:       registrar.New(),
		pods:        map[string]*Pod{},
		monitorCtx:  ctx,
		stopMonitor: cancel,
	}
	c.handlers.Store(c.newHandlerSet(opts.Handlers, opts.DefaultHandler))
	c.creations = registrar.NewCreations[string](5*time.Minute, registrar.WithExpire(func(name, id string) {
		// kubelet never came back for a pod whose creation it timed out on.
		klog.InfoS("Removing pod sandbox abandoned by a timed-out request", "pod", id, "name", name)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.Remove(ctx, id); err != nil {
			klog.ErrorS(err, "Removing abandoned pod sandbox", "pod", id)
		}
	}))
	return c
}

// CgroupDriver names the cgroup driver pods are created with, for
// kubelet's RuntimeConfig.
func (c *Controller) CgroupDriver() string { return c.opts.Cgroups.Name() }

// LifecycleHook receives each lifecycle transition of a pod sandbox, in
// order for that pod, after the change is recorded.
type LifecycleHook func(runtimeapi.ContainerEventType, *Pod)

// SetLifecycleHook registers the receiver of pod lifecycle events.
func (c *Controller) SetLifecycleHook(fn LifecycleHook) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hook = fn
}

func (c *Controller) emit(t runtimeapi.ContainerEventType, pod *Pod) {
	c.mu.RLock()
	fn := c.hook
	c.mu.RUnlock()
	if fn != nil {
		fn(t, pod)
	}
}

// SetEventHandler registers the receiver of container events.
func (c *Controller) SetEventHandler(fn EventHandler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onEvent = fn
}

// Close stops the shim monitors; pods and their shims keep running.
func (c *Controller) Close() {
	c.stopMonitor()
	c.monitors.Wait()
	c.creations.Close()
}

// Name is kubelet's unique pod name: name_namespace_uid_attempt.
func Name(m *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{m.GetName(), m.GetNamespace(), m.GetUid(), strconv.FormatUint(uint64(m.GetAttempt()), 10)}, "_")
}

func validate(cfg *runtimeapi.PodSandboxConfig) error {
	if cfg == nil {
		return fmt.Errorf("%w: config is empty", ErrInvalid)
	}
	m := cfg.GetMetadata()
	switch {
	case m == nil:
		return fmt.Errorf("%w: config.metadata is empty", ErrInvalid)
	case m.Name == "":
		return fmt.Errorf("%w: config.metadata.name is empty", ErrInvalid)
	case m.Namespace == "":
		return fmt.Errorf("%w: config.metadata.namespace is empty", ErrInvalid)
	case m.Uid == "":
		return fmt.Errorf("%w: config.metadata.uid is empty", ErrInvalid)
	}
	for field, v := range map[string]string{"name": m.Name, "namespace": m.Namespace, "uid": m.Uid} {
		// These make up file and cgroup names: no separators.
		if strings.ContainsAny(v, "/\x00") {
			return fmt.Errorf("%w: config.metadata.%s %q contains '/'", ErrInvalid, field, v)
		}
	}
	if d := cfg.GetLogDirectory(); d != "" && !filepath.IsAbs(d) {
		return fmt.Errorf("%w: config.log_directory %q is not absolute", ErrInvalid, d)
	}
	return nil
}

// Run creates and starts a pod sandbox and returns its ID. A retry of a
// request that timed out gets the pod the first request made.
func (c *Controller) Run(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	if err := validate(cfg); err != nil {
		return "", err
	}
	handler, h, ok := c.handler(handler)
	if !ok {
		return "", fmt.Errorf("%w: runtime handler %q is not configured", ErrInvalid, handler)
	}
	name := Name(cfg.GetMetadata())
	id, _, err := c.creations.Do(ctx, name, func(ctx context.Context) (string, error) {
		return c.run(ctx, name, cfg, handler, h)
	})
	return id, err
}

func (c *Controller) run(ctx context.Context, name string, cfg *runtimeapi.PodSandboxConfig, handlerName string, h Handler) (id string, retErr error) {
	c.creating.Add(1)
	defer c.creating.Add(-1)
	id = registrar.NewID()
	if err := c.names.Reserve(name, id); err != nil {
		var re *registrar.ReservedError
		if errors.As(err, &re) {
			return "", fmt.Errorf("%w: pod %q is pod sandbox %s", ErrAlreadyExists, name, re.ID)
		}
		return "", err
	}
	start := time.Now()
	raw, err := proto.Marshal(cfg)
	if err != nil {
		c.names.Release(name)
		return "", fmt.Errorf("encode pod config: %w", err)
	}
	rec := meta.Sandbox{
		ID:             id,
		Name:           name,
		Config:         raw,
		RuntimeHandler: handlerName,
		State:          meta.SandboxCreating,
		CreatedAt:      time.Now().UTC(),
	}
	parent, own, err := c.opts.Cgroups.PodCgroup(id, cfg.GetLinux().GetCgroupParent())
	if err != nil {
		c.names.Release(name)
		return "", fmt.Errorf("%w: linux.cgroup_parent: %w", ErrInvalid, err)
	}
	rec.CgroupParent = parent
	rec.Extra = map[string]string{extraRuntimeBinary: h.Binary, extraRuntimeRoot: h.Root, extraOCIVersionMax: h.OCIVersionMax}
	if own {
		rec.Extra[extraOwnCgroup] = "true"
	}
	// The record exists before any resource: a crash from here on is
	// cleaned up by Recover.
	if err := c.db.PutSandbox(rec); err != nil {
		c.names.Release(name)
		return "", fmt.Errorf("save pod record: %w", err)
	}
	pod := &Pod{rec: rec, cfg: cfg, dir: c.podDir(id), handler: h, cgroupsPath: c.sandboxCgroupsPath(rec)}
	defer func() {
		if retErr != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := c.teardown(cctx, pod); err != nil {
				klog.ErrorS(err, "Cleaning up failed pod sandbox", "pod", pod.rec.ID)
			}
			c.names.Release(name)
		}
	}()
	uids, gids, err := oci.PodUserNamespace(cfg)
	if err != nil {
		return "", err
	}
	if err := makePodDir(pod.dir, gids); err != nil {
		return "", err
	}
	if own {
		if err := c.opts.Cgroups.CreatePod(ctx, parent); err != nil {
			return "", fmt.Errorf("create pod cgroup: %w", err)
		}
	}
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	podNet := nsOpts.GetNetwork() != runtimeapi.NamespaceMode_NODE
	// A pod with a user namespace needs a network namespace that user
	// namespace owns: its sandbox process makes it, and it is pinned and
	// attached once that process runs.
	if podNet && uids == nil {
		if err := c.pinNetwork(ctx, pod, ""); err != nil {
			return "", err
		}
	}
	hostname := cfg.GetHostname()
	if nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE {
		if hn, err := os.Hostname(); err == nil {
			hostname = hn
		}
	}
	pod.hostname = hostname
	if pod.rec.Extra == nil {
		pod.rec.Extra = map[string]string{}
	}
	pod.rec.Extra[extraHostname] = hostname
	if err := writePodFiles(filesIn(pod.dir), hostname, cfg); err != nil {
		return "", err
	}
	// CNI ADD (tens of milliseconds: veth, IPAM, iptables) runs while the
	// shim and the sandbox process start; it only needs the pinned netns.
	// Every return below waits for it first, so cleanup never races it.
	var netDone chan error
	waitNet := func() error {
		if netDone == nil {
			return nil
		}
		err := <-netDone
		netDone = nil
		return err
	}
	defer func() { _ = waitNet() }()
	if podNet && uids == nil {
		netDone = make(chan error, 1)
		go func() { netDone <- c.timedNetworkSetup(ctx, pod) }()
	}

	shimBin := c.opts.ShimBinary
	if shimBin == "" {
		shimBin = c.opts.Binary
	}
	tShim := time.Now()
	client, err := c.opts.Shims.Spawn(ctx, shim.SpawnOptions{
		Binary:      shimBin,
		PodID:       id,
		StateDir:    pod.shimDir(),
		Runtime:     h.Binary,
		RuntimeRoot: h.Root,
		RuntimeArgs: h.Args,
		LogLevel:    c.opts.ShimLogLevel,
	})
	if err != nil {
		return "", fmt.Errorf("start shim: %w", err)
	}
	pod.shim = client

	bundle := pod.bundleDir(id)
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return "", fmt.Errorf("create sandbox bundle: %w", err)
	}
	opts := []oci.SpecOpt{
		oci.WithRootfs(rootfs),
		oci.WithOOMScoreAdj(max(sandboxOOMScoreAdj, c.opts.MinOOMScoreAdj)),
		oci.WithCgroupsPath(pod.cgroupsPath),
	}
	if c.opts.SandboxImage != nil {
		if uids != nil {
			return "", fmt.Errorf("%w: pods with a user namespace need the built-in pause, not sandbox_image", ErrInvalid)
		}
		args, err := c.opts.SandboxImage.Mount(ctx, id, rootfs)
		if err != nil {
			return "", err
		}
		opts = append(opts, oci.WithProcessArgs(args...))
	} else {
		if uids != nil {
			// The empty rootfs must belong to the pod's root, which creates
			// the mount points in it.
			if err := os.Chown(rootfs, int(uids[0].HostID), int(gids[0].HostID)); err != nil {
				return "", fmt.Errorf("chown sandbox rootfs: %w", err)
			}
		}
		opts = append(opts, oci.WithRootfsReadonly(), oci.WithProcessArgs(pause.ContainerPath, pause.Arg), withPauseBinary(c.opts.Binary))
	}
	spec, err := oci.SandboxSpec(id, cfg, pod.info(), opts...)
	if err != nil {
		return "", err
	}
	if err := oci.Save(spec, bundle); err != nil {
		return "", err
	}
	// Created and started in one runtime call (`runc run --detach`):
	// nothing happens to the sandbox between the two, and each runtime
	// invocation is a process start on the pod's critical path.
	byShim := c.pauseByShim(pod, spec)
	if byShim {
		pod.rec.Extra[extraSandboxStart] = "shim"
	}
	tCreate := time.Now()
	st, err := client.Create(ctx, shim.CreateRequest{ID: id, Bundle: bundle, Start: true, Pause: byShim})
	if err != nil {
		return "", fmt.Errorf("run sandbox container: %w", err)
	}
	if st.Status != shim.StatusRunning {
		return "", fmt.Errorf("sandbox container exited at start (code %d): %s", st.ExitCode, st.Message)
	}
	tStart := time.Now()
	c.findCgroup(ctx, pod, spec.Linux.Resources)
	if own {
		if err := c.limitOwnCgroup(ctx, parent, cfg); err != nil {
			return "", err
		}
	}
	if podNet && uids != nil {
		if err := c.pinNetwork(ctx, pod, fmt.Sprintf("/proc/%d/ns/net", st.Pid)); err != nil {
			return "", err
		}
		if err := c.timedNetworkSetup(ctx, pod); err != nil {
			return "", err
		}
	}
	tNet := time.Now()
	if err := waitNet(); err != nil {
		return "", err
	}
	klog.V(3).InfoS("Pod sandbox start phases", "pod", id, "prepare", tShim.Sub(start), "shim", tCreate.Sub(tShim),
		"run", tStart.Sub(tCreate), "afterRun", tNet.Sub(tStart), "networkWait", time.Since(tNet))
	c.podStartPhases(ctx, start, tShim, tCreate, tStart, tNet)
	pod.mu.Lock()
	pod.rec.Pid = st.Pid
	pod.rec.State = meta.SandboxReady
	rec = pod.rec
	pod.mu.Unlock()
	if err := c.db.PutSandbox(rec); err != nil {
		return "", fmt.Errorf("save pod record: %w", err)
	}
	// A plugin registering from here on waits for the pod to be listed,
	// or it would never hear of it.
	unblock := c.nri().BlockSync()
	defer unblock()
	if err := c.nri().RunPodSandbox(ctx, pod); err != nil {
		return "", fmt.Errorf("run pod sandbox %q: %w", name, err)
	}
	c.mu.Lock()
	c.pods[id] = pod
	c.mu.Unlock()
	c.emit(runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, pod)
	c.emit(runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, pod)
	c.monitor(pod, 0)
	klog.V(2).InfoS("Pod sandbox running", "pod", id, "name", name, "pid", st.Pid, "duration", time.Since(start))
	return id, nil
}

// Creating is the number of pods being run, not listed until ready.
func (c *Controller) Creating() int { return int(c.creating.Load()) }

// timedNetworkSetup runs CNI ADD and records it as the pod start's
// network phase.
func (c *Controller) timedNetworkSetup(ctx context.Context, pod *Pod) error {
	t := time.Now()
	err := c.setupNetwork(ctx, pod)
	c.opts.Telemetry.PodStartPhase(ctx, "network", t, time.Now())
	return err
}

// podStartPhases records the phases of a pod start that ran in sequence;
// the network phase, which overlaps them, is recorded where it runs.
func (c *Controller) podStartPhases(ctx context.Context, start, tShim, tCreate, tStart, tEnd time.Time) {
	rec := c.opts.Telemetry
	rec.PodStartPhase(ctx, "prepare", start, tShim)
	rec.PodStartPhase(ctx, "shim", tShim, tCreate)
	rec.PodStartPhase(ctx, "runc_create", tCreate, tStart)
	rec.PodStartPhase(ctx, "runc_start", tStart, tEnd)
	rec.PodStartPhase(ctx, "total", start, time.Now())
}

// pauseByShim decides whether the pod's shim starts its pause itself:
// when configured, for the built-in pause, unless the pod asks for a
// Localhost seccomp profile (the confined pause's own filter is stricter
// than RuntimeDefault, not necessarily than a custom one) or for anything
// else the shim does not do as runc does (shim.PauseStartable: systemd
// cgroups, AppArmor or SELinux labels, a privileged pod...). Those are
// started by the OCI runtime, as before.
func (c *Controller) pauseByShim(pod *Pod, spec *specs.Spec) bool {
	if !c.opts.ShimStartsPause || c.opts.SandboxImage != nil {
		return false
	}
	if oci.SandboxSeccompLocalhost(pod.cfg) {
		klog.V(3).InfoS("Pause started by the OCI runtime: Localhost seccomp profile", "pod", pod.ID())
		return false
	}
	if err := shim.PauseStartable(spec); err != nil {
		klog.V(3).InfoS("Pause started by the OCI runtime", "pod", pod.ID(), "reason", err)
		return false
	}
	return true
}

// killPause kills a pause whose shim is gone, which no OCI runtime
// knows when the shim started it, through its cgroup (as `runc delete
// --force` would), and removes that cgroup. A pause runc started is
// gone already (forceDelete), and so is its cgroup or scope.
func (c *Controller) killPause(ctx context.Context, pod *Pod) {
	l, err := cgroups.HostLayout()
	if err != nil {
		return
	}
	if err := cgroups.KillProcess(l, pod.cgroupsPath); err != nil {
		klog.ErrorS(err, "Killing the pause of a pod whose shim is gone", "pod", pod.ID())
	}
	if err := cgroups.RemoveProcess(ctx, l, pod.cgroupsPath); err != nil {
		klog.ErrorS(err, "Removing the pause's cgroup of a pod whose shim is gone", "pod", pod.ID())
	}
}

func withPauseBinary(binary string) oci.SpecOpt {
	return func(s *specs.Spec) error {
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: pause.ContainerPath,
			Type:        "bind",
			Source:      binary,
			Options:     []string{"rbind", "ro", "nosuid", "nodev"},
		})
		return nil
	}
}

// Get returns the pod with this ID or unique ID prefix.
func (c *Controller) Get(idOrPrefix string) (*Pod, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return registrar.ResolveID(c.pods, idOrPrefix, ErrNotFound, ErrAmbiguous)
}

// List returns every pod, oldest first.
func (c *Controller) List() []*Pod {
	c.mu.RLock()
	out := make([]*Pod, 0, len(c.pods))
	for _, p := range c.pods {
		out = append(out, p)
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].rec.CreatedAt.Before(out[j].rec.CreatedAt) })
	return out
}

// Stop stops the sandbox process and releases what a stopped pod no
// longer needs (release); the caller stops the pod's containers first.
// Stopping a stopped pod succeeds.
func (c *Controller) Stop(ctx context.Context, id string) error {
	pod, err := c.Get(id)
	if err != nil {
		return err
	}
	pod.op.Lock()
	defer pod.op.Unlock()
	return c.stop(ctx, pod)
}

func (c *Controller) stop(ctx context.Context, pod *Pod) error {
	id := pod.ID()
	if pod.released() {
		return nil
	}
	// The network goes first and a failure keeps the netns, so that a
	// retry can still release the IP and the host ports.
	if err := c.teardownNetwork(ctx, pod); err != nil {
		return err
	}
	if cl := pod.Shim(); cl != nil {
		if err := cl.Kill(ctx, id, syscall.SIGKILL, false); err != nil && !errors.Is(err, shim.ErrNotFound) && !errors.Is(err, shim.ErrShimGone) {
			return fmt.Errorf("stop sandbox container: %w", err)
		}
		if _, err := cl.Wait(ctx, id); err != nil && !errors.Is(err, shim.ErrNotFound) && !errors.Is(err, shim.ErrShimGone) {
			return fmt.Errorf("wait for sandbox container: %w", err)
		}
	}
	if err := c.setState(pod, meta.SandboxNotReady); err != nil {
		return err
	}
	c.nri().StopPodSandbox(ctx, pod)
	return c.release(ctx, pod)
}

// release frees what a stopped pod holds besides its record and
// directory: the shim (which deletes the runtime state of every container
// it ran; their exit states are in the daemon's records), the network
// namespace pin, /dev/shm, the sandbox's rootfs and a cgroup the daemon
// made. kubelet removes a stopped sandbox only in its garbage collection
// a minute later, and never the last sandbox of a completed pod that still exists (a Job's):
// until RemovePodSandbox those would otherwise hold a process and mounts
// per pod. The pod's network must already be torn down.
func (c *Controller) release(ctx context.Context, pod *Pod) error {
	errs := append(c.releaseShim(ctx, pod), c.releaseMounts(ctx, pod)...)
	errs = append(errs, c.releaseCgroup(ctx, pod))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	pod.mu.Lock()
	pod.rec.Released = true
	rec := pod.rec
	pod.mu.Unlock()
	if err := c.db.PutSandbox(rec); err != nil {
		return fmt.Errorf("save pod record: %w", err)
	}
	klog.V(2).InfoS("Pod sandbox released", "pod", pod.ID())
	return nil
}

// releaseShim stops the pod's shim, deleting the runtime state of the
// sandbox and of every container; without a shim, it deletes the
// sandbox from the OCI runtime directly.
func (c *Controller) releaseShim(ctx context.Context, pod *Pod) []error {
	var errs []error
	id := pod.ID()
	cl := pod.Shim()
	// Detached first, so the monitor sees a shim going away on purpose
	// rather than one that died.
	pod.setShim(nil)
	if cl == nil {
		if d, err := c.opts.Shims.Dial(ctx, pod.shimDir()); err == nil {
			cl = d
		}
	}
	if cl == nil {
		// The shim is gone: make sure nothing of the pod still runs.
		forceDelete(ctx, pod.handler, id)
		c.killPause(ctx, pod)
		return nil
	}
	if _, err := cl.Delete(ctx, id); err != nil && !errors.Is(err, shim.ErrNotFound) && !errors.Is(err, shim.ErrShimGone) {
		errs = append(errs, fmt.Errorf("delete sandbox container: %w", err))
	}
	// Forced: a container the daemon no longer knows (its record was
	// lost or corrupt) must not keep the shim, and the pod, alive.
	if err := cl.ForceShutdown(ctx); err != nil && !errors.Is(err, shim.ErrShimGone) {
		errs = append(errs, fmt.Errorf("shut down shim: %w", err))
	}
	cl.Close()
	return errs
}

// releaseCgroup removes the pod's cgroup when the daemon made it (a pod
// without a cgroup parent); kubelet's pod cgroups are kubelet's.
func (c *Controller) releaseCgroup(ctx context.Context, pod *Pod) error {
	if pod.rec.Extra[extraOwnCgroup] != "true" {
		return nil
	}
	return c.opts.Cgroups.RemovePod(ctx, pod.rec.CgroupParent)
}

// releaseMounts removes the network namespace pin and unmounts /dev/shm
// and the sandbox's rootfs.
func (c *Controller) releaseMounts(ctx context.Context, pod *Pod) []error {
	var errs []error
	id := pod.ID()
	if pod.rec.NetNSPath != "" {
		if err := netns.Remove(pod.rec.NetNSPath); err != nil {
			errs = append(errs, fmt.Errorf("remove network namespace: %w", err))
		}
	} else {
		// Maybe created, with the crash before its path was recorded;
		// removing a pin that does not exist succeeds.
		if err := netns.Remove(filepath.Join(c.opts.NetNSDir, id)); err != nil {
			errs = append(errs, fmt.Errorf("remove network namespace: %w", err))
		}
	}
	f := filesIn(pod.dir)
	if err := snapshot.UnmountAll(f.Shm); err != nil {
		errs = append(errs, err)
	}
	rootfs := filepath.Join(pod.bundleDir(id), "rootfs")
	if c.opts.SandboxImage != nil {
		if err := c.opts.SandboxImage.Unmount(ctx, id, rootfs); err != nil {
			errs = append(errs, err)
		}
	} else if err := snapshot.UnmountAll(rootfs); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// setState persists a state change of the pod.
func (c *Controller) setState(pod *Pod, state meta.SandboxState) error {
	pod.mu.Lock()
	if pod.rec.State == state {
		pod.mu.Unlock()
		return nil
	}
	pod.rec.State = state
	err := c.db.PutSandbox(pod.rec)
	pod.mu.Unlock()
	if err != nil {
		return fmt.Errorf("save pod record: %w", err)
	}
	klog.V(2).InfoS("Pod sandbox state changed", "pod", pod.ID(), "state", state)
	if state == meta.SandboxNotReady {
		c.emit(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, pod)
	}
	return nil
}

// Remove stops and deletes the pod and everything it holds; the caller
// removes the pod's containers first. Removing an unknown pod is NotFound
// for the caller to map (kubelet treats it as done).
func (c *Controller) Remove(ctx context.Context, id string) error {
	pod, err := c.Get(id)
	if err != nil {
		return err
	}
	pod.op.Lock()
	defer pod.op.Unlock()
	if err := c.stop(ctx, pod); err != nil {
		return err
	}
	c.nri().RemovePodSandbox(ctx, pod)
	if err := c.teardown(ctx, pod); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.pods, pod.ID())
	c.mu.Unlock()
	c.names.ReleaseID(pod.ID())
	c.emit(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, pod)
	klog.V(2).InfoS("Pod sandbox removed", "pod", pod.ID())
	return nil
}

// teardown releases every resource of the pod, each step idempotent, and
// deletes its record last so a crash half-way is finished by Recover.
func (c *Controller) teardown(ctx context.Context, pod *Pod) error {
	id := pod.ID()
	errs := c.releaseShim(ctx, pod)
	if err := c.teardownNetwork(ctx, pod); err != nil {
		return err
	}
	errs = append(errs, c.releaseMounts(ctx, pod)...)
	if err := c.releaseCgroup(ctx, pod); err != nil {
		errs = append(errs, err)
	}
	// Whatever is still mounted in the pod's directory (the rootfs of a
	// container whose record was lost) would keep it from going.
	if err := snapshot.UnmountUnder(pod.dir); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := os.RemoveAll(pod.dir); err != nil {
		return fmt.Errorf("remove pod directory: %w", err)
	}
	if err := c.db.DeleteSandbox(id); err != nil {
		return fmt.Errorf("delete pod record: %w", err)
	}
	return nil
}

func (c *Controller) podDir(id string) string { return filepath.Join(c.opts.StateDir, id) }

// findCgroup has the cgroup driver find the cgroup the runtime put the
// sandbox process in (and, under systemd, put limits a runtime left off
// the scope on it), for the pod's stats. On failure stats read the
// sandbox's cgroupsPath; the limits in force are the runtime's anyway.
func (c *Controller) findCgroup(ctx context.Context, pod *Pod, res *specs.LinuxResources) {
	dir, err := c.opts.Cgroups.ContainerCreated(ctx, pod.cgroupsPath, func() (*specs.LinuxResources, error) { return res, nil })
	if err != nil {
		klog.ErrorS(err, "Finding the sandbox's cgroup", "pod", pod.ID())
		return
	}
	pod.mu.Lock()
	pod.procCgroup = dir
	pod.mu.Unlock()
}

// sandboxCgroupsPath is the cgroup of the pod's sandbox process.
func (c *Controller) sandboxCgroupsPath(rec meta.Sandbox) string {
	return c.opts.Cgroups.CgroupsPath(rec.CgroupParent, rec.ID)
}

// teardownNetwork runs CNI DEL for a pod on the pod network. DEL is
// idempotent and works from the result cached at ADD, so it is safe after
// a crash at any point of the pod's creation. It runs once per pod: a
// successful DEL is remembered in the pod's record (written with the
// state change that follows), so StopPodSandbox and RemovePodSandbox,
// and kubelet's repeated stops, do not call every plugin again.
func (c *Controller) teardownNetwork(ctx context.Context, pod *Pod) error {
	cfg := pod.cfg
	if c.opts.Network == nil || cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE {
		return nil
	}
	rec := pod.Record()
	if rec.NetworkDown {
		return nil
	}
	netnsPath := rec.NetNSPath
	if netnsPath == "" {
		netnsPath = filepath.Join(c.opts.NetNSDir, rec.ID)
	}
	// Only a live namespace is handed to the plugins: a crash can leave a
	// pin file that was never mounted, which plugins refuse outright.
	if _, err := netns.Open(netnsPath); err != nil {
		netnsPath = ""
	}
	r := rec
	r.NetNSPath = netnsPath
	if err := c.opts.Network.Teardown(ctx, cniPod(r, cfg)); err != nil {
		if len(rec.IPs) == 0 {
			// The pod never got its network (its ADD failed, and a failed
			// ADD runs DEL itself, or it crashed before): a DEL failing now,
			// typically on a broken config, must not keep the rest of the
			// pod alive forever.
			klog.ErrorS(err, "CNI DEL of a pod that never got its network failed; removing the pod anyway", "pod", rec.ID)
			return nil
		}
		return fmt.Errorf("tear down pod network: %w", err)
	}
	pod.mu.Lock()
	pod.rec.NetworkDown = true
	pod.mu.Unlock()
	return nil
}

// cniPod is what CNI needs to know of a pod.
func cniPod(rec meta.Sandbox, cfg *runtimeapi.PodSandboxConfig) cni.Pod {
	p := cni.Pod{
		ID:           rec.ID,
		Name:         cfg.GetMetadata().GetName(),
		Namespace:    cfg.GetMetadata().GetNamespace(),
		UID:          cfg.GetMetadata().GetUid(),
		NetNS:        rec.NetNSPath,
		Annotations:  cfg.GetAnnotations(),
		CgroupParent: rec.CgroupParent,
	}
	for _, pm := range cfg.GetPortMappings() {
		if pm.GetHostPort() <= 0 {
			continue
		}
		p.PortMappings = append(p.PortMappings, cni.PortMapping{
			HostPort:      pm.GetHostPort(),
			ContainerPort: pm.GetContainerPort(),
			Protocol:      strings.ToLower(pm.GetProtocol().String()),
			HostIP:        pm.GetHostIp(),
		})
	}
	if d := cfg.GetDnsConfig(); d != nil {
		p.DNS = &cni.DNS{Servers: d.GetServers(), Searches: d.GetSearches(), Options: d.GetOptions()}
	}
	return p
}

// pinNetwork pins the pod's network namespace (a new one, or the one at
// nsPath) and records it before anything is attached to it.
func (c *Controller) pinNetwork(ctx context.Context, pod *Pod, nsPath string) error {
	var ns *netns.NetNS
	var err error
	if nsPath == "" {
		ns, err = netns.Create(ctx, c.opts.NetNSDir, pod.rec.ID)
	} else {
		ns, err = netns.Pin(ctx, c.opts.NetNSDir, pod.rec.ID, nsPath)
	}
	if err != nil {
		return fmt.Errorf("create network namespace: %w", err)
	}
	pod.mu.Lock()
	pod.rec.NetNSPath = ns.Path()
	rec := pod.rec
	pod.mu.Unlock()
	if err := c.db.PutSandbox(rec); err != nil {
		return fmt.Errorf("save pod record: %w", err)
	}
	return nil
}

// setupNetwork runs CNI ADD in the pod's pinned namespace and records the
// pod's IPs.
func (c *Controller) setupNetwork(ctx context.Context, pod *Pod) error {
	if c.opts.Network == nil {
		return nil
	}
	pod.mu.Lock()
	rec := pod.rec
	pod.mu.Unlock()
	// A failed ADD already ran DEL; teardown's DEL is a no-op then.
	res, err := c.opts.Network.Setup(ctx, cniPod(rec, pod.cfg))
	if err != nil {
		return fmt.Errorf("set up pod network: %w", err)
	}
	pod.mu.Lock()
	for _, ip := range res.IPs {
		pod.rec.IPs = append(pod.rec.IPs, ip.String())
	}
	rec = pod.rec
	pod.mu.Unlock()
	if err := c.db.PutSandbox(rec); err != nil {
		return fmt.Errorf("save pod record: %w", err)
	}
	return nil
}

// nri is the NRI hooks of the pods; a controller without them (tests
// building one directly) has them off.
func (c *Controller) nri() nri.API {
	if c.opts.NRI == nil {
		return nri.Off{}
	}
	return c.opts.NRI
}
