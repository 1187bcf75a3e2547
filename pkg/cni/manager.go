package cni

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containernetworking/cni/libcni"
	"k8s.io/klog/v2"
)

// Defaults for Options.
const (
	DefaultConfDir       = "/etc/cni/net.d"
	DefaultCacheDir      = "/var/lib/cri-runtimed/cni/cache"
	DefaultPluginTimeout = 60 * time.Second
	DefaultPollInterval  = time.Second
)

// DefaultBinDirs returns the dirs searched for plugin binaries, in order:
// the upstream install location first, then Debian's package. A function,
// not a variable, so no caller can change another's defaults.
func DefaultBinDirs() []string { return []string{"/opt/cni/bin", "/usr/lib/cni"} }

// PodInterface is the interface name every pod's network gets, as kubelet
// expects.
const PodInterface = "eth0"

// loopbackConf is the network the loopback plugin runs with when
// Options.Loopback is set.
const loopbackConf = `{"cniVersion":"1.0.0","name":"cri-runtimed-loopback","type":"loopback"}`

// Options configure a Manager. Zero values take the defaults.
type Options struct {
	// ConfDir holds the network config files.
	ConfDir string
	// BinDirs are searched in order for plugin binaries; also the
	// plugins' CNI_PATH.
	BinDirs []string
	// CacheDir is libcni's cache of ADD results, config and arguments,
	// which Teardown needs after a restart; it must persist across
	// daemon restarts.
	CacheDir string
	// PluginTimeout bounds every plugin execution. 60s by default:
	// bridge and host-local take milliseconds, but IPAM plugins that
	// talk to a cluster datastore (Calico, Cilium) take seconds under
	// load, and a timed-out ADD costs the pod a full retry.
	PluginTimeout time.Duration
	// PollInterval is how often the conf dir is checked for changes.
	PollInterval time.Duration
	// Loopback runs the loopback plugin for "lo" in Setup and Teardown.
	// Off by default because pkg/netns already brings lo up.
	Loopback bool
}

func (o *Options) setDefaults() {
	if o.ConfDir == "" {
		o.ConfDir = DefaultConfDir
	}
	if len(o.BinDirs) == 0 {
		o.BinDirs = DefaultBinDirs()
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	if o.PluginTimeout <= 0 {
		o.PluginTimeout = DefaultPluginTimeout
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
}

// Manager attaches pods to the network described by the conf dir and
// watches that directory. Its methods are safe for concurrent use; calls
// for the same pod must not overlap (the pod controller serializes them).
type Manager struct {
	opts     Options
	loopback *libcni.PluginConfig
	// dirs are the conf dir and the plugin client (its bin dirs), which
	// Reconfigure replaces.
	dirs atomic.Pointer[dirs]

	// reloadMu serializes config loads (the watcher's and Setup's).
	reloadMu sync.Mutex

	mu     sync.RWMutex
	net    *network // nil when not ready
	err    error    // *NotReadyError when net is nil
	sig    string   // signature of the loaded (or failed) conf dir state
	ranges [][]ipRange
	closed bool

	stop context.CancelFunc
	done chan struct{}
}

// New loads the network config and starts watching the conf dir until
// Close. A missing or invalid config is not an error: Status reports it
// until a valid one appears. ctx bounds the initial load only.
func New(ctx context.Context, opts Options) (*Manager, error) {
	opts.setDefaults()
	lo, err := libcni.NetworkPluginConfFromBytes([]byte(loopbackConf))
	if err != nil {
		return nil, fmt.Errorf("loopback config: %w", err)
	}
	m := &Manager{
		opts:     opts,
		loopback: lo,
		err:      &NotReadyError{Reason: ReasonNoConfig, Message: "network config not loaded yet"},
		done:     make(chan struct{}),
	}
	m.dirs.Store(m.newDirs(opts.ConfDir, opts.BinDirs))
	m.reload(ctx, true)
	wctx, stop := context.WithCancel(context.Background())
	m.stop = stop
	go m.watch(wctx)
	return m, nil
}

// dirs is where configs and plugins are found.
type dirs struct {
	confDir string
	cni     *libcni.CNIConfig
}

func (m *Manager) newDirs(confDir string, binDirs []string) *dirs {
	exec := &pluginExec{timeout: m.opts.PluginTimeout}
	return &dirs{confDir: confDir, cni: libcni.NewCNIConfigWithCacheDir(binDirs, m.opts.CacheDir, exec)}
}

// cni is the plugin client of the current bin dirs.
func (m *Manager) cni() *libcni.CNIConfig { return m.dirs.Load().cni }

// Reconfigure switches to another conf dir and bin dirs (SIGHUP) and
// loads the network config from there at once. Pods already attached
// keep their network; their DEL runs from the CNI cache (which does not
// move) with the plugins of the new bin dirs.
func (m *Manager) Reconfigure(ctx context.Context, confDir string, binDirs []string) {
	if confDir == "" {
		confDir = DefaultConfDir
	}
	if len(binDirs) == 0 {
		binDirs = DefaultBinDirs()
	}
	m.dirs.Store(m.newDirs(confDir, binDirs))
	m.reload(ctx, true)
}

// Close stops the watcher and waits for it. Calls in flight finish;
// Status reports ReasonClosed afterwards.
func (m *Manager) Close() error {
	m.stop()
	<-m.done
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}

// Status returns nil when a valid network config is loaded, else a
// *NotReadyError whose Reason and Message belong in the CRI NetworkReady
// condition.
func (m *Manager) Status() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return &NotReadyError{Reason: ReasonClosed, Message: "CNI manager closed"}
	}
	if m.net == nil {
		return m.err
	}
	return nil
}

// UpdatePodCIDR sets the node's pod CIDR(s) from UpdateRuntimeConfig
// (comma-separated for dual-stack; empty clears it). Plugins declaring the
// ipRanges capability allocate from it for pods set up afterwards.
func (m *Manager) UpdatePodCIDR(cidr string) error {
	ranges, err := parsePodCIDRs(cidr)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.ranges = ranges
	m.mu.Unlock()
	klog.InfoS("Pod CIDR updated", "podCIDR", cidr)
	return nil
}

// watch polls the conf dir until ctx is done.
func (m *Manager) watch(ctx context.Context) {
	defer close(m.done)
	t := time.NewTicker(m.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.reload(ctx, false)
		}
	}
}

// reload loads the conf dir when its signature changed, or whenever no
// valid config is loaded (a plugin binary may have been installed since),
// or when force is set.
func (m *Manager) reload(ctx context.Context, force bool) {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	d := m.dirs.Load()
	sig := signature(d.confDir)
	m.mu.RLock()
	unchanged := sig == m.sig && m.net != nil
	prevErr, prevNet := m.err, m.net
	m.mu.RUnlock()
	if unchanged && !force {
		return
	}
	n, err := loadNetwork(d.confDir)
	if err == nil {
		err = validatePlugins(ctx, d.cni, n)
	}
	if err != nil && ctx.Err() != nil {
		// Shutting down, or the caller gave up: keep what we had
		// rather than report a failure that is ours.
		return
	}
	m.mu.Lock()
	m.sig = sig
	if err != nil {
		m.net, m.err = nil, err
	} else {
		m.net, m.err = n, nil
	}
	m.mu.Unlock()

	switch {
	case err != nil && (prevErr == nil || prevErr.Error() != err.Error()):
		klog.InfoS("Pod network not ready", "confDir", d.confDir, "err", err)
	case err == nil && (prevNet == nil || prevNet.file != n.file || string(prevNet.list.Bytes) != string(n.list.Bytes)):
		klog.InfoS("Pod network config loaded", "file", n.file, "network", n.list.Name, "cniVersion", n.list.CNIVersion, "plugins", len(n.list.Plugins))
	}
}

// current returns the loaded network; when none is, it first tries a
// load, so a pod started right after the config appeared need not wait
// for the next poll.
func (m *Manager) current(ctx context.Context) (*network, [][]ipRange, error) {
	m.mu.RLock()
	n, ranges, closed := m.net, m.ranges, m.closed
	m.mu.RUnlock()
	if closed {
		return nil, nil, &NotReadyError{Reason: ReasonClosed, Message: "CNI manager closed"}
	}
	if n != nil {
		return n, ranges, nil
	}
	m.reload(ctx, false)
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.net == nil {
		return nil, nil, m.err
	}
	return m.net, m.ranges, nil
}
