package nri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	nri "github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/adaptation/builtin"
	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	validator "github.com/containerd/nri/plugins/default-validator/builtin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/telemetry"
)

// Options configure the adapter; zero values take NRI's defaults.
type Options struct {
	SocketPath       string
	PluginPath       string
	PluginConfigPath string
	// DisableConnections: only the plugins of PluginPath run.
	DisableConnections  bool
	RegistrationTimeout time.Duration
	RequestTimeout      time.Duration
	// Validator configures NRI's default validator; nil or not enabled:
	// none.
	Validator *ValidatorConfig
	// CDI injects CDI devices plugins ask for; nil refuses them.
	CDI CDIInjector
	// Builtin are in-process plugins (tests).
	Builtin []*builtin.BuiltinPlugin
	// Telemetry counts plugin requests, failures and latency; nil
	// counts nothing.
	Telemetry *telemetry.Recorder
}

// ValidatorConfig configures NRI's default validator.
type ValidatorConfig = validator.DefaultValidatorConfig

// Adapter relays the daemon's lifecycle to NRI plugins.
type Adapter struct {
	opts     Options
	nri      *nri.Adaptation
	failures *failures

	// rt is set by Start, before any plugin can register.
	rt Runtime

	// mu serializes the hooks, as the relayed events must reach plugins
	// in the order they happened, and guards state.
	mu    sync.Mutex
	state map[string]lifecycle

	// started is set once Start returned: the adaptation's plugin count
	// (failures.count) is true from then on.
	started atomic.Bool
	// registering counts the plugins synchronized since the last
	// BlockSync: the adaptation adds such a plugin to the ones it relays
	// to, and counts it, only after the synchronization returned. A
	// BlockSync waits for registrations to end, so after one the count
	// includes them (see Idle). Raised under mu, so that a hook sees it.
	registering atomic.Int64

	// bg runs the relays that do not block their caller (a container's
	// own exit, evictions); Stop waits for them.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
}

var _ API = (*Adapter)(nil)

// lifecycle is what plugins were last told of a pod or container, so that
// a stop is relayed once and nothing is relayed for what they never saw.
type lifecycle int

const (
	created lifecycle = iota + 1
	running
	stopped
)

// New sets NRI up; plugins start and connect once Start is called.
func New(name, version string, opts Options) (*Adapter, error) {
	nrilog.Set(klogLogger{})
	SetTimeouts(opts.RegistrationTimeout, opts.RequestTimeout)
	bgCtx, cancel := context.WithCancel(context.Background())
	a := &Adapter{opts: opts, failures: &failures{rec: opts.Telemetry}, state: map[string]lifecycle{}, bgCtx: bgCtx, bgCancel: cancel}
	nopts := []nri.Option{nri.WithMetrics(a.failures)}
	if opts.SocketPath != "" {
		nopts = append(nopts, nri.WithSocketPath(opts.SocketPath))
	}
	if opts.PluginPath != "" {
		nopts = append(nopts, nri.WithPluginPath(opts.PluginPath))
	}
	if opts.PluginConfigPath != "" {
		nopts = append(nopts, nri.WithPluginConfigPath(opts.PluginConfigPath))
	}
	if opts.DisableConnections {
		nopts = append(nopts, nri.WithDisabledExternalConnections())
	}
	if opts.Validator != nil {
		nopts = append(nopts, nri.WithDefaultValidator(opts.Validator))
	}
	if len(opts.Builtin) > 0 {
		nopts = append(nopts, nri.WithBuiltinPlugins(opts.Builtin...))
	}
	adapt, err := nri.New(name, version, a.synchronize, a.updateFromPlugin, nopts...)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("set up NRI: %w", err)
	}
	a.nri = adapt
	return a, nil
}

// Start starts the plugins of the plugin path, synchronizes them with
// the pods and containers rt lists, and accepts plugin connections.
func (a *Adapter) Start(ctx context.Context, rt Runtime) error {
	a.rt = rt
	if err := a.nri.Start(); err != nil {
		return fmt.Errorf("start NRI: %w", err)
	}
	// The adaptation counted the plugins it started before returning;
	// the block waits for a plugin that connected meanwhile to register.
	a.BlockSync()()
	a.started.Store(true)
	klog.InfoS("NRI started", "socket", a.opts.SocketPath, "pluginPath", a.opts.PluginPath, "connections", !a.opts.DisableConnections)
	return nil
}

// SetTimeouts sets how long plugins have to register and to answer a
// request; zero keeps NRI's value. NRI reads them at every registration
// and request, so they apply at once, to every running Adapter (the
// library holds them process-wide).
func SetTimeouts(registration, request time.Duration) {
	if registration > 0 {
		nri.SetPluginRegistrationTimeout(registration)
	}
	if request > 0 {
		nri.SetPluginRequestTimeout(request)
	}
}

// Stop closes plugin connections, stops the plugins the daemon started,
// waits for background relays and removes the socket, so that a plugin
// connecting to it after a reload moved it fails at once.
func (a *Adapter) Stop() {
	a.bgCancel()
	a.bg.Wait()
	a.nri.Stop()
	if !a.opts.DisableConnections {
		socket := a.opts.SocketPath
		if socket == "" {
			socket = nri.DefaultSocketPath
		}
		if err := disconnect(socket); err != nil {
			klog.ErrorS(err, "Closing the connections of external NRI plugins", "socket", socket)
		}
		os.Remove(socket)
	}
	a.opts.Telemetry.NRIPlugins(0)
}

// disconnect shuts down every connection accepted on the unix socket at
// path. NRI's Stop closes its listener and stops the plugins it started,
// but leaves external plugins connected (the library expects the process
// to exit next): after a reload they would wait forever on an NRI that
// sends them nothing, instead of seeing the connection close and
// reconnecting. Shutdown, not close: the fds stay NRI's to close.
func disconnect(path string) error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// Not a socket, or not this one: left alone. An fd closed and
		// reused since the listing is checked as what it is now.
		if sa, err := unix.Getsockname(fd); err == nil {
			if u, ok := sa.(*unix.SockaddrUnix); ok && u.Name == path {
				_ = unix.Shutdown(fd, unix.SHUT_RDWR)
			}
		}
	}
	return nil
}

// BlockSync implements API. Once it holds, no plugin is half way
// through its registration: those that synchronized are counted.
func (a *Adapter) BlockSync() func() {
	b := a.nri.BlockPluginSync()
	// No registration runs while b holds (each holds NRI's sync lock for
	// writing): none is cleared that has not been counted.
	a.registering.Store(0)
	return b.Unblock
}

// Idle implements API: started, no plugin counted, and none synchronized
// since the last BlockSync (one may not be counted yet, but it must hear
// of what happens after its synchronization).
//
// A hook that finds NRI idle keeps its bookkeeping (state) but converts
// nothing and relays nothing: the conversion reads the container's
// config.json, and no plugin would receive it. The hooks ask with mu
// held, which synchronize holds too: a plugin registering after the
// hook learns of the container from its synchronization, one registering
// before makes the hook relay.
func (a *Adapter) Idle() bool {
	return a.started.Load() && a.failures.count.Load() == 0 && a.registering.Load() == 0
}

func (a *Adapter) needsStop(id string) bool {
	s := a.state[id]
	return s == created || s == running
}

func (a *Adapter) set(id string, s lifecycle) { a.state[id] = s }
func (a *Adapter) forget(id string)           { delete(a.state, id) }

// RunPodSandbox implements API.
func (a *Adapter) RunPodSandbox(ctx context.Context, pod PodSandbox) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := podToNRI(pod)
	a.set(pod.ID(), running)
	a.failures.reset()
	err := a.nri.RunPodSandbox(ctx, &nri.RunPodSandboxRequest{Pod: p})
	if err == nil {
		return nil
	}
	err = a.failures.name("RunPodSandbox", err)
	// The pod will not run: plugins that saw it must forget it.
	a.stopPod(ctx, p)
	a.removePod(ctx, p)
	return err
}

// UpdatePodSandbox implements API.
func (a *Adapter) UpdatePodSandbox(ctx context.Context, pod PodSandbox, overhead, resources *runtimeapi.LinuxContainerResources) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failures.reset()
	_, err := a.nri.UpdatePodSandbox(ctx, &nri.UpdatePodSandboxRequest{
		Pod:                    podToNRI(pod),
		OverheadLinuxResources: criResourcesToNRI(overhead),
		LinuxResources:         criResourcesToNRI(resources),
	})
	return a.failures.name("UpdatePodSandbox", err)
}

// PostUpdatePodSandbox implements API.
func (a *Adapter) PostUpdatePodSandbox(ctx context.Context, pod PodSandbox) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.logged("PostUpdatePodSandbox", pod.ID(), a.nri.PostUpdatePodSandbox(ctx, &nri.PostUpdatePodSandboxRequest{Pod: podToNRI(pod)}))
}

// StopPodSandbox implements API.
func (a *Adapter) StopPodSandbox(ctx context.Context, pod PodSandbox) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.needsStop(pod.ID()) {
		a.stopPod(ctx, podToNRI(pod))
	}
}

func (a *Adapter) stopPod(ctx context.Context, p *api.PodSandbox) {
	a.set(p.Id, stopped)
	a.logged("StopPodSandbox", p.Id, a.nri.StopPodSandbox(ctx, &nri.StopPodSandboxRequest{Pod: p}))
}

// RemovePodSandbox implements API.
func (a *Adapter) RemovePodSandbox(ctx context.Context, pod PodSandbox) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, known := a.state[pod.ID()]; !known {
		return
	}
	p := podToNRI(pod)
	if a.needsStop(pod.ID()) {
		a.stopPod(ctx, p)
	}
	a.removePod(ctx, p)
}

func (a *Adapter) removePod(ctx context.Context, p *api.PodSandbox) {
	a.forget(p.Id)
	a.logged("RemovePodSandbox", p.Id, a.nri.RemovePodSandbox(ctx, &nri.RemovePodSandboxRequest{Pod: p}))
}

// CreateContainer implements API.
func (a *Adapter) CreateContainer(ctx context.Context, pod PodSandbox, ctr Container, spec *specs.Spec) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.set(ctr.ID(), created)
	a.failures.reset()
	resp, err := a.nri.CreateContainer(ctx, &nri.CreateContainerRequest{Pod: podToNRI(pod), Container: containerToNRI(ctr, spec)})
	if err != nil {
		return a.failures.name("CreateContainer", err)
	}
	if err := adjustSpec(spec, resp.GetAdjust(), a.opts.CDI); err != nil {
		return err
	}
	a.applyUpdates(ctx, "CreateContainer", resp.GetUpdate())
	a.evict(resp.GetEvict())
	return nil
}

// UndoCreateContainer implements API.
func (a *Adapter) UndoCreateContainer(ctx context.Context, pod PodSandbox, ctr Container) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, known := a.state[ctr.ID()]; !known {
		return
	}
	if a.Idle() {
		a.forget(ctr.ID())
		return
	}
	p, c := podToNRI(pod), containerToNRI(ctr, nil)
	a.stopContainer(ctx, p, c)
	a.removeContainer(ctx, p, c)
}

// PostCreateContainer implements API.
func (a *Adapter) PostCreateContainer(ctx context.Context, pod PodSandbox, ctr Container) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.Idle() {
		return
	}
	a.logged("PostCreateContainer", ctr.ID(), a.nri.PostCreateContainer(ctx, &nri.PostCreateContainerRequest{Pod: podToNRI(pod), Container: containerToNRI(ctr, nil)}))
}

// StartContainer implements API.
func (a *Adapter) StartContainer(ctx context.Context, pod PodSandbox, ctr Container) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.set(ctr.ID(), running)
	if a.Idle() {
		return nil
	}
	a.failures.reset()
	err := a.nri.StartContainer(ctx, &nri.StartContainerRequest{Pod: podToNRI(pod), Container: containerToNRI(ctr, nil)})
	return a.failures.name("StartContainer", err)
}

// PostStartContainer implements API.
func (a *Adapter) PostStartContainer(ctx context.Context, pod PodSandbox, ctr Container) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.Idle() {
		return
	}
	a.logged("PostStartContainer", ctr.ID(), a.nri.PostStartContainer(ctx, &nri.PostStartContainerRequest{Pod: podToNRI(pod), Container: containerToNRI(ctr, nil)}))
}

// UpdateContainer implements API.
func (a *Adapter) UpdateContainer(ctx context.Context, pod PodSandbox, ctr Container, res *specs.LinuxResources) (*specs.LinuxResources, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failures.reset()
	resp, err := a.nri.UpdateContainer(ctx, &nri.UpdateContainerRequest{
		Pod:            podToNRI(pod),
		Container:      containerToNRI(ctr, nil),
		LinuxResources: api.FromOCILinuxResources(res, nil),
	})
	if err != nil {
		return nil, a.failures.name("UpdateContainer", err)
	}
	a.evict(resp.GetEvict())
	// The last update is the container's own, as the plugins left it;
	// the others are for other containers.
	updates := resp.GetUpdate()
	var own *api.LinuxResources
	if n := len(updates); n > 0 && updates[n-1].GetContainerId() == ctr.ID() {
		own = updates[n-1].GetLinux().GetResources()
		updates = updates[:n-1]
	}
	a.applyUpdates(ctx, "UpdateContainer", updates)
	if own == nil || proto.Equal(own, api.FromOCILinuxResources(res, nil)) {
		// No plugin changed it.
		return res, nil
	}
	out := own.ToOCI()
	// Devices are the container's own, never part of an update.
	out.Devices = nil
	return out, nil
}

// PostUpdateContainer implements API.
func (a *Adapter) PostUpdateContainer(ctx context.Context, pod PodSandbox, ctr Container) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.Idle() {
		return
	}
	a.logged("PostUpdateContainer", ctr.ID(), a.nri.PostUpdateContainer(ctx, &nri.PostUpdateContainerRequest{Pod: podToNRI(pod), Container: containerToNRI(ctr, nil)}))
}

// StopContainer implements API.
func (a *Adapter) StopContainer(ctx context.Context, pod PodSandbox, ctr Container) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case !a.needsStop(ctr.ID()):
	case a.Idle():
		a.set(ctr.ID(), stopped)
	default:
		a.stopContainer(ctx, podToNRI(pod), containerToNRI(ctr, nil))
	}
}

// ContainerExited implements API.
func (a *Adapter) ContainerExited(pod PodSandbox, ctr Container) {
	a.bg.Go(func() {
		ctx, cancel := context.WithTimeout(a.bgCtx, time.Minute)
		defer cancel()
		a.StopContainer(ctx, pod, ctr)
	})
}

func (a *Adapter) stopContainer(ctx context.Context, p *api.PodSandbox, c *api.Container) {
	a.set(c.Id, stopped)
	resp, err := a.nri.StopContainer(ctx, &nri.StopContainerRequest{Pod: p, Container: c})
	a.logged("StopContainer", c.Id, err)
	a.applyUpdates(ctx, "StopContainer", resp.GetUpdate())
}

// RemoveContainer implements API.
func (a *Adapter) RemoveContainer(ctx context.Context, pod PodSandbox, ctr Container) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, known := a.state[ctr.ID()]; !known {
		return
	}
	if a.Idle() {
		a.forget(ctr.ID())
		return
	}
	p, c := podToNRI(pod), containerToNRI(ctr, nil)
	if a.needsStop(ctr.ID()) {
		a.stopContainer(ctx, p, c)
	}
	a.removeContainer(ctx, p, c)
}

func (a *Adapter) removeContainer(ctx context.Context, p *api.PodSandbox, c *api.Container) {
	a.forget(c.Id)
	a.logged("RemoveContainer", c.Id, a.nri.RemoveContainer(ctx, &nri.RemoveContainerRequest{Pod: p, Container: c}))
}

// logged logs the failure of a relay that cannot fail its operation.
func (a *Adapter) logged(op, id string, err error) {
	if err != nil {
		klog.ErrorS(err, "NRI plugins failed an event", "event", op, "id", id)
	}
}

// synchronize gives a registering plugin every pod and container, and
// applies the updates it answers with. The adaptation calls it with
// plugin registration blocked, so no creation is half way.
func (a *Adapter) synchronize(ctx context.Context, cb nri.SyncCB) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.registering.Add(1)
	var pods []*api.PodSandbox
	for _, pod := range a.rt.PodSandboxes() {
		p := podToNRI(pod)
		pods = append(pods, p)
		if _, known := a.state[p.Id]; !known {
			if pod.Info().Pid != 0 && podReady(pod) {
				a.set(p.Id, running)
			} else {
				a.set(p.Id, stopped)
			}
		}
	}
	var ctrs []*api.Container
	for _, pc := range a.rt.Containers() {
		c := containerToNRI(pc.Container, nil)
		switch c.State {
		case api.ContainerState_CONTAINER_CREATED:
			a.set(c.Id, created)
		case api.ContainerState_CONTAINER_RUNNING:
			a.set(c.Id, running)
		default:
			// Exited containers are not synchronized (as in containerd);
			// their removal is still relayed.
			a.set(c.Id, stopped)
			continue
		}
		ctrs = append(ctrs, c)
	}
	klog.V(2).InfoS("Synchronizing NRI plugin", "pods", len(pods), "containers", len(ctrs))
	updates, err := cb(ctx, pods, ctrs)
	if err != nil {
		return err
	}
	a.applyUpdates(ctx, "Synchronize", updates)
	return nil
}

// podReady: a pod of the pod controller reports its state.
func podReady(pod PodSandbox) bool {
	if r, ok := pod.(interface{ Ready() bool }); ok {
		return r.Ready()
	}
	return true
}

// updateFromPlugin carries out updates a plugin asks for on its own, and
// returns those that failed.
func (a *Adapter) updateFromPlugin(ctx context.Context, updates []*nri.ContainerUpdate) ([]*nri.ContainerUpdate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	failed := a.applyUpdates(ctx, "UpdateContainers", updates)
	if len(failed) > 0 {
		return failed, fmt.Errorf("%d of %d container updates failed", len(failed), len(updates))
	}
	return nil, nil
}

// applyUpdates applies container updates plugins asked for, without
// relaying them back to the plugins, and returns those that failed.
func (a *Adapter) applyUpdates(ctx context.Context, op string, updates []*nri.ContainerUpdate) []*nri.ContainerUpdate {
	var failed []*nri.ContainerUpdate
	for _, u := range updates {
		if u == nil {
			continue
		}
		res := u.GetLinux().GetResources().ToOCI()
		if res != nil {
			res.Devices = nil
		}
		err := a.rt.UpdateContainer(ctx, u.GetContainerId(), res)
		if err == nil {
			klog.V(2).InfoS("NRI plugin updated a container", "container", u.GetContainerId(), "after", op)
			continue
		}
		if u.GetIgnoreFailure() {
			klog.V(2).InfoS("NRI container update failed (ignored)", "container", u.GetContainerId(), "err", err)
			continue
		}
		klog.ErrorS(err, "NRI container update failed", "container", u.GetContainerId(), "after", op)
		failed = append(failed, u)
	}
	return failed
}

// evict stops the containers plugins evicted, in the background: the
// stop relays its own StopContainer, which waits for the hook that
// asked for the eviction to finish.
func (a *Adapter) evict(evictions []*api.ContainerEviction) {
	for _, e := range evictions {
		a.bg.Go(func() {
			ctx, cancel := context.WithTimeout(a.bgCtx, 2*time.Minute)
			defer cancel()
			klog.InfoS("NRI plugin evicts a container", "container", e.GetContainerId(), "reason", e.GetReason())
			if err := a.rt.EvictContainer(ctx, e.GetContainerId(), e.GetReason()); err != nil {
				klog.ErrorS(err, "Evicting container for NRI plugin", "container", e.GetContainerId())
			}
		})
	}
}

// failures remembers the plugin whose request failed last, so that the
// error of a hook can name it (the adaptation returns what the plugin
// said, without its name). It is NRI's metrics hook; hooks run one at a
// time, so the failure recorded during a hook is that hook's. It also
// passes every request, failure and latency on to the daemon's metrics.
type failures struct {
	rec *telemetry.Recorder
	// count is the number of plugins NRI relays to, as it last said.
	count  atomic.Int64
	mu     sync.Mutex
	plugin string
	err    error
}

var _ nri.Metrics = (*failures)(nil)

func (f *failures) reset() {
	f.mu.Lock()
	f.plugin, f.err = "", nil
	f.mu.Unlock()
}

// name wraps err, naming the plugin that failed it when known.
func (f *failures) name(op string, err error) error {
	if err == nil {
		return nil
	}
	f.mu.Lock()
	plugin, perr := f.plugin, f.err
	f.mu.Unlock()
	// The plugin's own words, without the transport's status wrapping,
	// which would otherwise decide the CRI error code.
	msg := status.Convert(err).Message()
	if plugin != "" && (errors.Is(err, perr) || err.Error() == perr.Error()) {
		return fmt.Errorf("%w: NRI plugin %q failed %s: %s", ErrRejected, plugin, op, msg)
	}
	return fmt.Errorf("%w: NRI %s: %s", ErrRejected, op, msg)
}

func (f *failures) RecordPluginInvocation(plugin, request string, err error) {
	f.rec.NRIPluginRequest(plugin, request, err)
	if err == nil {
		return
	}
	f.mu.Lock()
	f.plugin, f.err = plugin, err
	f.mu.Unlock()
}

func (f *failures) RecordPluginLatency(_, request string, d time.Duration) {
	f.rec.NRIPluginLatency(request, d)
}
func (f *failures) RecordPluginAdjustments(string, string, *nri.ContainerAdjustment, int, int) {
}
func (f *failures) UpdatePluginCount(n int) {
	f.count.Store(int64(n))
	f.rec.NRIPlugins(n)
	klog.V(3).InfoS("NRI plugins", "count", n)
}

// ErrRejected: an NRI plugin or validator refused an operation.
var ErrRejected = errors.New("rejected by NRI")

// klogLogger routes NRI's own log lines to klog.
type klogLogger struct{}

func (klogLogger) Debugf(_ context.Context, format string, args ...any) {
	klog.V(4).InfoS("NRI: " + fmt.Sprintf(format, args...))
}
func (klogLogger) Infof(_ context.Context, format string, args ...any) {
	klog.V(2).InfoS("NRI: " + fmt.Sprintf(format, args...))
}
func (klogLogger) Warnf(_ context.Context, format string, args ...any) {
	klog.InfoS("NRI warning: " + fmt.Sprintf(format, args...))
}
func (klogLogger) Errorf(_ context.Context, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.Contains(msg, nri.ErrWasmDisabled.Error()) {
		// Built without WASM plugins on purpose (nri_no_wasm).
		klog.V(2).InfoS("NRI: " + msg)
		return
	}
	klog.ErrorS(nil, "NRI: "+msg)
}
