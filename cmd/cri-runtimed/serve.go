package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/admin"
	"github.com/cri-runtimed/cri-runtimed/pkg/cdi"
	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/pkg/checkpoint"
	"github.com/cri-runtimed/cri-runtimed/pkg/cni"
	"github.com/cri-runtimed/cri-runtimed/pkg/config"
	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/exepages"
	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/nri"
	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox/pause"
	"github.com/cri-runtimed/cri-runtimed/pkg/server"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
	"github.com/cri-runtimed/cri-runtimed/pkg/stats"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/content"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
	"github.com/cri-runtimed/cri-runtimed/pkg/streaming"
	"github.com/cri-runtimed/cri-runtimed/pkg/telemetry"
	"github.com/cri-runtimed/cri-runtimed/pkg/userns"
	"github.com/cri-runtimed/cri-runtimed/pkg/version"
)

// lockTimeout bounds the wait for meta.db's lock: a second daemon on the
// same root must fail at once, not hang.
const lockTimeout = time.Second

// shutdownGrace bounds how long in-flight RPCs may finish on SIGTERM.
const shutdownGrace = 10 * time.Second

// exePagesEvictDelay is how long after it serves the daemon evicts its
// binary's resident pages (see exepages.Evict): past the start-up work,
// and before kubelet's pods are usually all back after a restart.
const exePagesEvictDelay = 5 * time.Second

// memoryTrimCheck is how often the daemon looks whether its memory grew
// (memoryTrim): a read of /proc/self/statm. A trim costs a full GC (and a
// read of /proc/self/smaps when the binary's pages grew); kubelet's
// periodic calls alone do not grow the memory that much, so on a quiet
// node it does not repeat.
const memoryTrimCheck = 30 * time.Second

// serve runs the daemon with cfg until ctx ends; load re-reads the config
// on SIGHUP.
// setVerbosity applies log_verbosity on reload; nil when -v was given.
func serve(ctx context.Context, cfg *config.Config, load func() (*config.Config, error), setVerbosity func(int) error) error {
	procs := maxProcs(cfg.MaxProcs)
	klog.InfoS("Starting cri-runtimed", "version", version.Version, "root", cfg.Root, "state", cfg.State, "maxProcs", procs)
	for _, dir := range []string{cfg.Root, cfg.State, filepath.Dir(cfg.GRPC.Address)} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	// The root of a pod with a user namespace is an unprivileged host
	// user that must reach its bundle under the state directory.
	if err := traversable(cfg.State); err != nil {
		return err
	}
	// `criu check` takes about half a second: it runs while the rest
	// starts, once (its answer holds for the daemon's life). The
	// channel is buffered, so the probe ends even if serve returns early.
	criuProbe := make(chan checkpoint.Availability, 1)
	go func() { criuProbe <- checkpoint.Probe(ctx) }()
	db, err := meta.Open(cfg.MetaDBPath(), lockTimeout)
	if err != nil {
		return err
	}
	defer db.Close()

	cs, err := content.New(cfg.ContentDir())
	if err != nil {
		return fmt.Errorf("content store: %w", err)
	}
	snap, err := openSnapshotter(ctx, cfg, db)
	if err != nil {
		return err
	}
	defer snap.Close()

	rec, err := newRecorder(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		// Flush the spans of the last calls.
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := rec.Close(fctx); err != nil {
			klog.ErrorS(err, "Flushing traces")
		}
	}()
	images := image.New(db, cs, snap, newRegistry(cfg),
		append(pullOptions(cfg), image.WithTelemetry(rec))...,
	)
	defer images.Close()
	recoverState(ctx, cfg, cs, snap, images)
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	if cfg.Runtime.SandboxImage == "" {
		if err := pause.CheckStatic(self); err != nil {
			return fmt.Errorf("built-in pause: %w", err)
		}
	}
	// Shims start from their own small binary when it is installed beside
	// the daemon and of the same build; else from the daemon's own.
	shimSrc := self
	if p, err := shim.FindBinary(ctx, self, shim.VersionLine(version.Version, version.Revision)); err == nil {
		shimSrc = p
	} else {
		klog.InfoS("Starting shims from the daemon's binary", "reason", err)
	}
	shimBin := shimSrc
	if img, err := shim.NewImage(shimSrc); err == nil {
		// Open until the daemon exits: its path is how shims are started.
		defer img.Close()
		shimBin = img.Path()
	} else {
		klog.InfoS("Starting shims from the binary on disk", "reason", err)
	}
	network, err := cni.New(ctx, cni.Options{
		ConfDir:       cfg.CNI.ConfDir,
		BinDirs:       cfg.CNI.BinDirs,
		CacheDir:      cfg.CNICacheDir(),
		PluginTimeout: time.Duration(cfg.CNI.PluginTimeout),
	})
	if err != nil {
		return fmt.Errorf("cni: %w", err)
	}
	defer network.Close()
	cgroupDriver, err := cgroups.New(cfg.Runtime.CgroupDriver, cgroups.WithDefaultParent(cfg.Runtime.DefaultCgroupParent))
	if err != nil {
		return fmt.Errorf("runtime.cgroup_driver: %w", err)
	}
	defer cgroupDriver.Close()
	klog.InfoS("Cgroup driver", "driver", cgroupDriver.Name())
	features := handlerFeatures(ctx, cfg)
	devices := cdi.New(cfg.Runtime.CDISpecDirs)
	defer devices.Close()
	nriRun, err := newNRIRunner(cfg.NRI, devices, rec)
	if err != nil {
		return err
	}
	pods, ctrs, err := runtimeControllers(ctx, cfg, db, images, self, shimBin, network, cgroupDriver, features, devices, rec, nriRun.sw)
	if err != nil {
		return err
	}
	defer pods.Close()
	defer ctrs.Close()

	collector, err := stats.NewCollector()
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	defer collector.Close()
	rec.WatchStates(objectStates(pods, ctrs))
	criu := <-criuProbe
	klog.InfoS("Checkpoint/restore", "usable", criu.Usable, "criu", criu.Path, "version", criu.Version, "reason", criu.Reason)
	cri := server.New(cfg, images, pods, ctrs, network, collector, server.WithTelemetry(rec), server.WithCheckpoint(criu))
	// Plugins connect and are synchronized once every pod and container
	// is known; stopped before the controllers close.
	if err := nriRun.start(ctx, cri.NRIRuntime()); err != nil {
		return err
	}
	defer nriRun.stop()
	cri.SetHandlers(cfg.Runtime.DefaultHandler, serverFeatures(cfg, features, snap.Root()))
	streams, err := streaming.New(streaming.Config{
		Addr:            cfg.Streaming.Address,
		TLSCertFile:     cfg.Streaming.TLSCertFile,
		TLSKeyFile:      cfg.Streaming.TLSKeyFile,
		IdleTimeout:     time.Duration(cfg.Streaming.IdleTimeout),
		CreationTimeout: time.Duration(cfg.Streaming.CreationTimeout),
	}, cri.StreamRuntime())
	if err != nil {
		return err
	}
	// Deferred after the controllers' Close, so it runs before them: open
	// streams end while their containers' shims are still reachable.
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := streams.Close(sctx); err != nil {
			klog.ErrorS(err, "Stopping the streaming server")
		}
	}()
	cri.SetStreaming(streams)

	adminLis, err := listen(config.GRPC{Address: cfg.AdminSocketPath(), Mode: "0600"})
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	adm := admin.Serve(adminLis, images)
	defer func() {
		actx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := adm.Close(actx); err != nil {
			klog.ErrorS(err, "Stopping the admin socket")
		}
		os.Remove(cfg.AdminSocketPath())
	}()

	lis, err := listen(cfg.GRPC)
	if err != nil {
		return err
	}
	running := *cfg // the reloader's copy: it changes reloaded keys
	reload := &reloader{load: load, cfg: &running, images: images, rec: rec,
		pods: pods, cri: cri, network: network, nri: nriRun, snapRoot: snap.Root(), setVerbosity: setVerbosity}
	if err := reload.setMetrics(cfg.Metrics.Address); err != nil {
		return err
	}
	defer reload.closeMetrics()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// The telemetry interceptors are outermost: they see the code the
	// client gets, after the server's own mapping.
	unary, stream := server.Interceptors()
	mUnary, mStream := rec.Interceptors()
	grpcOpts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(cri.Codec()),
		grpc.ChainUnaryInterceptor(mUnary, unary),
		grpc.ChainStreamInterceptor(mStream, stream),
		grpc.MaxRecvMsgSize(cfg.GRPC.MaxRecvMessageSize),
		grpc.MaxSendMsgSize(cfg.GRPC.MaxSendMessageSize),
		// Traces calls while tracing.endpoint is set; reload turns it on
		// and off under the running server.
		grpc.StatsHandler(rec.StatsHandler()),
	}
	g := grpc.NewServer(grpcOpts...)
	cri.Register(g)

	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	klog.InfoS("Serving CRI", "address", cfg.GRPC.Address, "snapshotter", snap.Name())

	// Once start-up (recovery, CNI and config loading, the first
	// requests) is behind, the binary's pages are evicted, to come back
	// one page at a time as they are used: an idle daemon's RSS drops from
	// about 29 to 6 MiB (test/bench/README.md, issue 19). Work (pulls, pod
	// starts) maps pages back and grows the heap; once either grew (see
	// memoryTrim), the next check returns the free heap to the kernel and
	// unmaps the binary's pages again (they stay cached).
	evict := time.After(exePagesEvictDelay)
	trimCheck := time.NewTicker(memoryTrimCheck)
	defer trimCheck.Stop()
	trim := newMemoryTrim()
	for done := false; !done; {
		select {
		case <-evict:
			// Fault-around off first: each page the daemon touches later
			// maps that page, not the 64 KiB or large folio around it.
			if uffd, err := exepages.DisableFaultAround(); err != nil {
				klog.V(2).InfoS("Binary pages keep fault-around", "err", err)
			} else {
				defer uffd.Close()
			}
			if n, err := exepages.Evict(); err != nil {
				klog.ErrorS(err, "Evicting the binary's resident pages")
			} else {
				klog.V(2).InfoS("Evicted the binary's resident pages", "bytes", n)
			}
			trim.evicted()
		case <-trimCheck.C:
			trim.check()
		case err := <-errc:
			return fmt.Errorf("grpc server: %w", err)
		case <-hup:
			klog.InfoS("SIGHUP: reloading the config")
			reload.reload(ctx)
		case <-ctx.Done():
			done = true
		}
	}
	klog.InfoS("Shutting down")
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(shutdownGrace):
		g.Stop()
		<-stopped
	}
	os.Remove(cfg.GRPC.Address)
	klog.InfoS("Stopped")
	return nil
}

// runtimeControllers builds the pod and container controllers and
// reconnects them to the pods and containers that outlived the last run.
func runtimeControllers(ctx context.Context, cfg *config.Config, db *meta.DB, images *image.Service, self, shimBin string, network *cni.Manager, cgroupDriver cgroups.Driver, features map[string]runtimeFeatures, devices *cdi.Registry, rec *telemetry.Recorder, nriAPI nri.API) (*podsandbox.Controller, *container.Controller, error) {
	minOOM := ownOOMScoreAdj()
	podOpts := podsandbox.Options{
		StateDir:       filepath.Join(cfg.State, "pods"),
		NetNSDir:       filepath.Join(cfg.State, "netns"),
		Binary:         self,
		ShimBinary:     shimBin,
		Handlers:       podHandlers(cfg, features),
		DefaultHandler: cfg.Runtime.DefaultHandler,
		Cgroups:        cgroupDriver,
		MinOOMScoreAdj: minOOM,
		ShimLogLevel:   int(klogVerbosity()),
		Network:        network,
		Telemetry:      rec,
		NRI:            nriAPI,
		// Pods it cannot start so fall back to the OCI runtime.
		ShimStartsPause: cfg.Runtime.SandboxStart == config.SandboxStartShim,
	}
	if cfg.Runtime.SandboxImage != "" {
		podOpts.SandboxImage = &container.SandboxImage{Ref: cfg.Runtime.SandboxImage, Images: images, AuthFile: cfg.Runtime.SandboxImageAuthFile}
	}
	pods := podsandbox.New(podOpts, db)
	ctrs := container.New(container.Options{
		Cgroups:        cgroupDriver,
		MinOOMScoreAdj: minOOM,
		MaxExecOutput:  cfg.Runtime.MaxExecSyncOutput,
		CDI:            devices,
		NRI:            nriAPI,
		// Private cgroup namespaces on cgroup v2 hosts, as kubelet expects.
		CgroupNamespace: cgroups.Unified(),
	}, db, images, func(id string) (container.Sandbox, error) {
		pod, err := pods.Get(id)
		if err != nil || pod.ID() != id {
			return nil, fmt.Errorf("pod %s: %w", id, podsandbox.ErrNotFound)
		}
		return pod, nil
	})
	pods.SetEventHandler(func(pod *podsandbox.Pod, ev shim.Event) { ctrs.HandleEvent(pod, ev) })
	if err := pods.Recover(ctx); err != nil {
		pods.Close()
		ctrs.Close()
		return nil, nil, fmt.Errorf("recover pods: %w", err)
	}
	if err := ctrs.Recover(ctx); err != nil {
		pods.Close()
		ctrs.Close()
		return nil, nil, fmt.Errorf("recover containers: %w", err)
	}
	return pods, ctrs, nil
}

// podHandlers are the runtime handlers of cfg as pods run them.
func podHandlers(cfg *config.Config, features map[string]runtimeFeatures) map[string]podsandbox.Handler {
	handlers := map[string]podsandbox.Handler{}
	for name, h := range cfg.Runtime.Handlers {
		bin, err := exec.LookPath(h.Binary)
		if err != nil {
			klog.InfoS("OCI runtime of handler not found; pods naming it will fail", "handler", name, "binary", h.Binary, "err", err)
			bin = h.Binary
		}
		handlers[name] = podsandbox.Handler{Binary: bin, Root: cfg.HandlerRoot(name), OCIVersionMax: features[name].ociVersionMax}
	}
	return handlers
}

// newRecorder makes the daemon's telemetry, exporting traces when
// tracing.endpoint is set.
func newRecorder(ctx context.Context, cfg *config.Config) (*telemetry.Recorder, error) {
	opts := []telemetry.Option{telemetry.WithVersion(version.Version)}
	if cfg.Tracing.Endpoint != "" {
		exp, err := telemetry.NewOTLPExporter(ctx, cfg.Tracing.Endpoint, cfg.Tracing.Insecure)
		if err != nil {
			return nil, err
		}
		opts = append(opts, telemetry.WithTracing(exp, cfg.Tracing.SamplingRatio))
		klog.InfoS("Exporting traces", "endpoint", cfg.Tracing.Endpoint, "samplingRatio", cfg.Tracing.SamplingRatio)
	}
	return telemetry.New(opts...), nil
}

// objectStates counts pods, containers and live shims for the metrics,
// when Prometheus scrapes.
func objectStates(pods *podsandbox.Controller, ctrs *container.Controller) telemetry.States {
	return telemetry.States{
		Pods: func() map[string]int {
			n := map[string]int{}
			for _, st := range []meta.SandboxState{meta.SandboxCreating, meta.SandboxReady, meta.SandboxNotReady} {
				n[string(st)] = 0
			}
			for _, p := range pods.List() {
				n[string(p.Record().State)]++
			}
			// Pods are listed once ready; those on their way are counted
			// by the controller.
			n[string(meta.SandboxCreating)] += pods.Creating()
			return n
		},
		Containers: func() map[string]int {
			n := map[string]int{}
			for _, st := range []meta.ContainerState{meta.ContainerCreating, meta.ContainerCreated, meta.ContainerRunning, meta.ContainerExited, meta.ContainerUnknown} {
				n[string(st)] = 0
			}
			for _, c := range ctrs.List() {
				n[string(c.State())]++
			}
			return n
		},
		Shims: func() int {
			n := 0
			for _, p := range pods.List() {
				if p.Shim() != nil {
					n++
				}
			}
			return n
		},
	}
}

// ownOOMScoreAdj is the lowest oom_score_adj the daemon may give its
// children: without CAP_SYS_RESOURCE it cannot go below its own, and
// runc fails with an opaque error when asked to.
func ownOOMScoreAdj() int {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	if slices.Contains(oci.GrantableCapabilities(), "CAP_SYS_RESOURCE") {
		return -1000
	}
	return v
}

func openSnapshotter(ctx context.Context, cfg *config.Config, db *meta.DB) (snapshot.Snapshotter, error) {
	name := cfg.Image.Snapshotter
	if name == "overlayfs" {
		dir := cfg.SnapshotDir("overlayfs")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
		if err := snapshot.OverlaySupported(dir); err != nil {
			// Not fatal, but slow (every container gets a full copy of its
			// image): said as an error, and Status's verbose info names the
			// snapshotter in use.
			klog.ErrorS(err, "overlayfs is not usable here; falling back to the native snapshotter", "dir", dir)
			name = "native"
		}
	}
	snap, err := snapshot.New(ctx, name, cfg.SnapshotDir(name), db.Bolt(), snapshot.WithRemoveUpdate(db.Update))
	if err != nil {
		return nil, fmt.Errorf("snapshotter %s: %w", name, err)
	}
	return snap, nil
}

// recoverState removes what a crash left half done: snapshot directories
// without records, unpack snapshots of pulls that never finished, blobs no
// image holds, and partial downloads too old to be worth resuming. None of
// it is fatal: a leftover that cannot be removed (a busy or immutable
// file, say) costs disk space, a runtime that does not start costs the
// node. What failed is logged and retried at the next start or GC.
func recoverState(ctx context.Context, cfg *config.Config, cs *content.Store, snap snapshot.Snapshotter, images *image.Service) {
	if err := snap.Cleanup(ctx); err != nil {
		klog.ErrorS(err, "Cleaning up snapshots at start failed; continuing")
	}
	if err := cs.CleanupIngests(ctx, time.Duration(cfg.Image.StaleIngestAge)); err != nil {
		klog.ErrorS(err, "Cleaning up partial downloads at start failed; continuing")
	}
	if err := images.GC(ctx); err != nil {
		klog.ErrorS(err, "Garbage collection at start failed; continuing")
	}
}

// listen opens the CRI socket with the configured mode and group. A socket
// file left by a daemon that died is replaced; a live one is not, so two
// daemons pointed at the same socket do not silently steal it.
func listen(g config.GRPC) (net.Listener, error) {
	if fi, err := os.Lstat(g.Address); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", g.Address)
		}
		if c, err := net.DialTimeout("unix", g.Address, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another process is serving on %s", g.Address)
		}
		if err := os.Remove(g.Address); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	mode, err := g.FileMode()
	if err != nil {
		return nil, err
	}
	gid := -1
	if g.Group != "" {
		if gid, err = lookupGroup(g.Group); err != nil {
			return nil, err
		}
	}
	// Bind in a private directory and move the socket into place once its
	// mode and group are set, so nobody connects while it has the mode the
	// umask gave it. (Changing the umask instead would race with every
	// other goroutine creating files.)
	// A crash between here and the rename leaves one behind.
	stale, _ := filepath.Glob(filepath.Join(filepath.Dir(g.Address), ".bind-*"))
	for _, d := range stale {
		_ = os.RemoveAll(d)
	}
	tmpDir, err := os.MkdirTemp(filepath.Dir(g.Address), ".bind-")
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", g.Address, err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", g.Address, err)
	}
	// Its bound name is gone after the rename; serve removes the socket.
	lis.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, mode); err != nil {
		lis.Close()
		return nil, fmt.Errorf("chmod %s: %w", g.Address, err)
	}
	if gid >= 0 {
		if err := os.Chown(tmp, 0, gid); err != nil {
			lis.Close()
			return nil, fmt.Errorf("chown %s: %w", g.Address, err)
		}
	}
	if err := os.Rename(tmp, g.Address); err != nil {
		lis.Close()
		return nil, fmt.Errorf("listen on %s: %w", g.Address, err)
	}
	return lis, nil
}

func lookupGroup(name string) (int, error) {
	if gid, err := strconv.Atoi(name); err == nil {
		return gid, nil
	}
	grp, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("grpc.group %q: %w", name, err)
	}
	gid, err := strconv.Atoi(grp.Gid)
	if err != nil {
		return 0, errors.New("grpc.group: non-numeric gid " + grp.Gid)
	}
	return gid, nil
}

// runtimeFeatures is what one OCI runtime says it supports.
type runtimeFeatures struct {
	recursiveReadOnly bool
	ociVersionMax     string
}

// preFeaturesOCIVersion is what a runtime without `features` accepts:
// the features command came with runtime-spec 1.1, so such a runtime
// predates it (crun 1.8, Debian 12's, refuses any spec version but 1.0.x
// and has no `features`).
const preFeaturesOCIVersion = "1.0.2"

// handlerFeatures asks each OCI runtime what it supports (`<runtime>
// features`, from the OCI runtime features spec); a runtime that cannot
// tell supports nothing optional and runtime-spec 1.0 only.
func handlerFeatures(ctx context.Context, cfg *config.Config) map[string]runtimeFeatures {
	out := map[string]runtimeFeatures{}
	for name, h := range cfg.Runtime.Handlers {
		out[name] = runtimeFeaturesOf(ctx, name, h.Binary)
	}
	return out
}

// serverFeatures are what Status reports of each handler: what the
// runtime said, and what this node's kernel and snapshot filesystem
// allow (probed once).
func serverFeatures(cfg *config.Config, features map[string]runtimeFeatures, snapshotRoot string) map[string]server.HandlerFeatures {
	idmapErr := userns.Probe(snapshotRoot)
	if idmapErr != nil {
		klog.InfoS("Idmapped mounts do not work on the snapshots' filesystem; user namespaces are not reported", "dir", snapshotRoot, "err", idmapErr)
	}
	mountSetattr := userns.MountSetattrSupported()
	out := map[string]server.HandlerFeatures{}
	for name := range cfg.Runtime.Handlers {
		f := features[name]
		out[name] = server.HandlerFeatures{
			RecursiveReadOnly: f.recursiveReadOnly && mountSetattr,
			UserNamespaces:    idmapErr == nil,
		}
	}
	return out
}

// runtimeFeaturesOf runs `<binary> features` for handler name.
func runtimeFeaturesOf(ctx context.Context, name, binary string) runtimeFeatures {
	none := runtimeFeatures{ociVersionMax: preFeaturesOCIVersion}
	// Generous: it runs once at start, and a loaded or emulated machine
	// (the guest suite) can take seconds to start a runtime.
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	b, err := exec.CommandContext(fctx, binary, "features").Output()
	if err != nil {
		klog.InfoS("OCI runtime did not report its features; assuming runtime-spec 1.0", "handler", name, "err", err)
		return none
	}
	var f struct {
		OCIVersionMax string   `json:"ociVersionMax"`
		MountOptions  []string `json:"mountOptions"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		klog.InfoS("OCI runtime's features unreadable; assuming runtime-spec 1.0", "handler", name, "err", err)
		return none
	}
	return runtimeFeatures{recursiveReadOnly: slices.Contains(f.MountOptions, "rro"), ociVersionMax: f.OCIVersionMax}
}

// traversable makes dir searchable by everyone (o+x, listing stays
// private) and checks that its ancestors are.
func traversable(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o001 == 0 {
		if err := os.Chmod(dir, fi.Mode().Perm()|0o011); err != nil {
			return fmt.Errorf("make %s traversable: %w", dir, err)
		}
	}
	for p := filepath.Dir(dir); p != "/" && p != "."; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o001 == 0 {
			klog.InfoS("A parent of the state directory is not traversable by other users; pods with user namespaces will fail", "dir", p, "mode", fi.Mode().Perm())
		}
	}
	return nil
}
