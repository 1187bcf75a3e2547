package stats

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
)

// ErrNotFound is wrapped by the errors of Cgroup and Network when
// the thing to read no longer exists: a container removed between listing
// and reading its stats is a normal race, and callers skip it (or map it
// to NotFound) rather than fail the whole ListContainerStats.
var ErrNotFound = errors.New("not found")

// Mode is the cgroup hierarchy layout the Collector reads.
type Mode int

const (
	// ModeAuto detects the layout from the mounts (or from the filesystem
	// type of the root given with WithCgroupRoot).
	ModeAuto Mode = iota
	// ModeV1 reads per-controller v1 hierarchies under the root
	// (root/cpu, root/cpuacct, root/memory, root/pids).
	ModeV1
	// ModeV2 reads the unified hierarchy mounted at the root.
	ModeV2
)

func (m Mode) String() string {
	switch m {
	case ModeV1:
		return "cgroup v1"
	case ModeV2:
		return "cgroup v2"
	default:
		return "auto"
	}
}

const (
	// defaultDirUsageTTL bounds how often one writable layer is walked.
	// kubelet's housekeeping polls every 10s, so a 10s TTL walks each
	// layer about once per poll however many RPCs ask in between.
	defaultDirUsageTTL = 10 * time.Second
	// minCPUInterval is the shortest window nano-cores are computed over.
	// Two stats calls a few milliseconds apart (crictl stats next to
	// kubelet's poll) would otherwise turn scheduler jitter into a wildly
	// wrong rate and, worse, replace the long window kubelet relies on.
	minCPUInterval = time.Second
)

// Option configures a Collector.
type Option func(*config) error

type config struct {
	root      string
	mode      Mode
	dirTTL    time.Duration
	minCPUWin time.Duration
	now       func() time.Time
	mountinfo string
	sysBlock  string
}

// WithCgroupRoot reads cgroups below root instead of the detected mount
// point: the directory holding the v1 controller directories, or the
// cgroup2 mount. Tests point it at a fake tree.
func WithCgroupRoot(root string) Option {
	return func(c *config) error {
		if !filepath.IsAbs(root) {
			return fmt.Errorf("cgroup root %q is not absolute", root)
		}
		c.root = filepath.Clean(root)
		return nil
	}
}

// WithCgroupMode forces the layout instead of detecting it; useful with
// WithCgroupRoot on a fake tree, whose filesystem type says nothing.
func WithCgroupMode(m Mode) Option {
	return func(c *config) error {
		if m < ModeAuto || m > ModeV2 {
			return fmt.Errorf("invalid cgroup mode %d", m)
		}
		c.mode = m
		return nil
	}
}

// WithDirUsageTTL sets how old a writable layer's measured usage may get
// before a request for it has the layer walked again (default 10s); zero
// walks again on every request, still in the background.
func WithDirUsageTTL(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("negative dir usage TTL %s", d)
		}
		c.dirTTL = d
		return nil
	}
}

// withClock replaces time.Now, for tests of the rate computation.
func withClock(now func() time.Time) Option {
	return func(c *config) error {
		c.now = now
		return nil
	}
}

// Collector reads cgroup statistics and writable layer usage. It keeps
// the previous CPU sample per key to compute nano-cores, the files of each
// key's cgroup open between readings, and the last measured usage of each
// key's writable layer, measured by a background walker (see LayerUsage).
// It is safe for concurrent use; Close stops the walker and closes the
// files.
type Collector struct {
	mode      Mode
	root      string
	minCPUWin time.Duration
	dirTTL    time.Duration
	now       func() time.Time
	read      func(r *fileReader, p string, want Figures) (CgroupStats, error)
	sysBlock  string

	openCount atomic.Int64 // cgroup files kept open, over all keys

	mu    sync.Mutex
	cpu   map[string]cpuSample
	files map[string]*openFiles
	// nets are the pods' net/dev files kept open (PodNetwork).
	nets   map[string]*netFile
	layers *layerWalker
	// devices caches block device names by "major:minor".
	devices map[string]string

	// lookedUp, if set, is called between a reading's lookup of its
	// key's kept files and the lock of them: tests run a Forget there.
	lookedUp func(key string)
}

// cpuSample is the reading nano-cores are computed against.
type cpuSample struct {
	at        time.Time
	usage     uint64
	nanoCores uint64
}

// NewCollector detects the cgroup layout and mount point (or takes them
// from the options) and returns a Collector for it. On a hybrid host (v1
// controllers plus an empty cgroup2 mount, as systemd's "hybrid" mode
// sets up) it reads v1, because that is where runc puts the controllers.
func NewCollector(opts ...Option) (*Collector, error) {
	cfg := config{
		mode:      ModeAuto,
		dirTTL:    defaultDirUsageTTL,
		minCPUWin: minCPUInterval,
		now:       time.Now,
		mountinfo: "/proc/self/mountinfo",
		sysBlock:  "/sys/dev/block",
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("stats collector: %w", err)
		}
	}
	mode, root, err := detect(cfg)
	if err != nil {
		return nil, fmt.Errorf("stats collector: %w", err)
	}
	c := &Collector{
		mode:      mode,
		root:      root,
		minCPUWin: cfg.minCPUWin,
		dirTTL:    cfg.dirTTL,
		now:       cfg.now,
		sysBlock:  cfg.sysBlock,
		cpu:       map[string]cpuSample{},
		files:     map[string]*openFiles{},
		nets:      map[string]*netFile{},
		devices:   map[string]string{},
	}
	if mode == ModeV1 {
		v, err := newV1(root)
		if err != nil {
			return nil, fmt.Errorf("stats collector: %w", err)
		}
		c.read = v.read
	} else {
		c.read = (&v2{root: root}).read
	}
	c.layers = newLayerWalker(cfg.dirTTL, cfg.now)
	return c, nil
}

// Close stops the layer walker and closes the cgroup and net/dev files
// kept open. The entries are taken out under c.mu and closed after it is
// released: a reading holds its entry's lock while it takes c.mu (for the
// CPU sample), so holding c.mu while waiting for an entry would deadlock.
func (c *Collector) Close() {
	c.layers.close()
	c.mu.Lock()
	files, nets := c.files, c.nets
	c.files, c.nets = map[string]*openFiles{}, map[string]*netFile{}
	c.mu.Unlock()
	for _, f := range files {
		f.drop(c)
	}
	for _, f := range nets {
		f.drop(c)
	}
}

// Mode is the layout the Collector reads.
func (c *Collector) Mode() Mode { return c.mode }

// Root is the cgroup mount root the Collector reads below.
func (c *Collector) Root() string { return c.root }

// detect picks the layout and root from the options or the mounts.
func detect(cfg config) (Mode, string, error) {
	if cfg.root != "" {
		if cfg.mode != ModeAuto {
			return cfg.mode, cfg.root, nil
		}
		var st unix.Statfs_t
		if err := unix.Statfs(cfg.root, &st); err != nil {
			return 0, "", fmt.Errorf("statfs cgroup root %s: %w", cfg.root, err)
		}
		if st.Type == unix.CGROUP2_SUPER_MAGIC {
			return ModeV2, cfg.root, nil
		}
		return ModeV1, cfg.root, nil
	}
	l, err := cgroups.ReadLayout(cfg.mountinfo)
	if err != nil {
		return 0, "", err
	}
	v1Root, v2Root := l.V1Root, l.V2Root
	switch {
	case cfg.mode == ModeV1 && v1Root == "":
		return 0, "", errors.New("no cgroup v1 controller is mounted")
	case cfg.mode == ModeV2 && v2Root == "":
		return 0, "", errors.New("no cgroup2 filesystem is mounted")
	case cfg.mode == ModeV2:
		return ModeV2, v2Root, nil
	case v1Root != "":
		return ModeV1, v1Root, nil
	case v2Root != "":
		return ModeV2, v2Root, nil
	}
	return 0, "", errors.New("no cgroup filesystem is mounted")
}

// Cgroup returns the figures want asks for of the cgroup at cgroupsPath
// (see cgroups.Resolve for the accepted forms). key names the sample series
// for nano-cores and the files kept open, normally the container or
// sandbox ID (keys of pods and containers share one namespace, which
// random IDs never collide in); an empty key keeps nothing and reports
// zero nano-cores. A cgroup that does not exist yields an error wrapping
// ErrNotFound.
func (c *Collector) Cgroup(ctx context.Context, key, cgroupsPath string, want Figures) (CgroupStats, error) {
	if err := ctx.Err(); err != nil {
		return CgroupStats{}, err
	}
	r := readerPool.Get().(*fileReader)
	defer r.release()
	r.c, r.at = c, c.now()
	if key != "" {
		var err error
		if r.open, err = c.openFilesOf(key, cgroupsPath); err != nil {
			return CgroupStats{}, fmt.Errorf("cgroup stats: %w", err)
		}
	}
	if r.open != nil {
		defer r.open.mu.Unlock()
		r.cgroup = r.open.path
		if r.at.Sub(r.open.limitsAt) >= limitTTL || r.at.Before(r.open.limitsAt) {
			clear(r.open.limits)
			r.open.limitsAt = r.at
		}
	} else {
		p, err := cgroups.Resolve(cgroupsPath)
		if err != nil {
			return CgroupStats{}, fmt.Errorf("cgroup stats: %w", err)
		}
		r.cgroup = p
	}
	s, err := c.read(r, r.cgroup, want)
	if err != nil {
		if gone(err) {
			return CgroupStats{}, fmt.Errorf("cgroup %s: %w: %w", cgroupsPath, ErrNotFound, err)
		}
		return CgroupStats{}, fmt.Errorf("cgroup stats of %s: %w", cgroupsPath, err)
	}
	s.Timestamp = r.at
	if want&Usage != 0 {
		s.CPU.UsageNanoCores = c.nanoCores(key, r.at, s.CPU.UsageCoreNanoSeconds)
	}
	for i := range s.IO {
		s.IO[i].Device = c.deviceName(s.IO[i].Major, s.IO[i].Minor)
	}
	return s, nil
}

// RefreshLimits has the next reading of key read its cgroup's limits
// again instead of taking the ones kept (see fileReader.limit); the
// daemon calls it when it has changed the resources of the container or
// pod keyed key.
func (c *Collector) RefreshLimits(key string) {
	c.mu.Lock()
	f := c.files[key]
	c.mu.Unlock()
	if f == nil {
		return
	}
	f.mu.Lock()
	clear(f.limits)
	f.mu.Unlock()
}

// deviceName names a block device as cAdvisor's device label did
// ("/dev/vda"), from sysfs once per device.
func (c *Collector) deviceName(major, minor uint64) string {
	id := strconv.FormatUint(major, 10) + ":" + strconv.FormatUint(minor, 10)
	c.mu.Lock()
	name, ok := c.devices[id]
	c.mu.Unlock()
	if ok {
		return name
	}
	name = id
	if b, err := os.ReadFile(filepath.Join(c.sysBlock, id, "uevent")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "DEVNAME="); ok && v != "" {
				name = "/dev/" + v
			}
		}
	}
	c.mu.Lock()
	c.devices[id] = name
	c.mu.Unlock()
	return name
}

// withSysBlock replaces /sys/dev/block, where device names are found.
func withSysBlock(dir string) Option {
	return func(c *config) error {
		c.sysBlock = dir
		return nil
	}
}

// openFilesOf returns key's open files, locked, for the cgroup at
// cgroupsPath, or nil when the key was forgotten between the lookup and
// the lock (the reading then keeps nothing). The path is resolved once per
// key and path; a key whose cgroup changed drops the files of the old one.
func (c *Collector) openFilesOf(key, cgroupsPath string) (*openFiles, error) {
	c.mu.Lock()
	f := c.files[key]
	if f == nil {
		f = &openFiles{files: map[fileKey]int{}, limits: map[fileKey]uint64{}}
		c.files[key] = f
	}
	c.mu.Unlock()
	if c.lookedUp != nil {
		c.lookedUp(key)
	}
	f.mu.Lock()
	if f.dropped {
		f.mu.Unlock()
		return nil, nil
	}
	if f.raw != cgroupsPath || f.path == "" {
		p, err := cgroups.Resolve(cgroupsPath)
		if err != nil {
			f.mu.Unlock()
			return nil, err
		}
		if f.path != p {
			f.closeAll(c)
			f.path = p
		}
		f.raw = cgroupsPath
	}
	return f, nil
}

// nanoCores records the sample and returns the rate since the stored one.
func (c *Collector) nanoCores(key string, at time.Time, usage uint64) uint64 {
	if key == "" {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, ok := c.cpu[key]
	// A counter that went backwards means the key now names a new cgroup
	// (a restarted container reusing its key): start a new series.
	if !ok || usage < prev.usage || !at.After(prev.at) {
		c.cpu[key] = cpuSample{at: at, usage: usage}
		return 0
	}
	dt := at.Sub(prev.at)
	if dt < c.minCPUWin {
		return prev.nanoCores
	}
	// float64: (usage delta) * 1e9 overflows uint64 after ~18s of CPU time
	// in one window, which a busy pod on a big node reaches easily.
	nc := uint64(float64(usage-prev.usage) / dt.Seconds())
	c.cpu[key] = cpuSample{at: at, usage: usage, nanoCores: nc}
	return nc
}

// Retain forgets every key for which keep returns false; the daemon calls
// it with the set of live containers and sandboxes after a restart or a
// listing, so that samples of removals it missed do not pile up.
func (c *Collector) Retain(keep func(key string) bool) {
	c.mu.Lock()
	for k := range c.cpu {
		if !keep(k) {
			delete(c.cpu, k)
		}
	}
	var drop []*openFiles
	for k, f := range c.files {
		if !keep(k) {
			drop = append(drop, f)
			delete(c.files, k)
		}
	}
	var dropNets []*netFile
	for k, f := range c.nets {
		if !keep(k) {
			dropNets = append(dropNets, f)
			delete(c.nets, k)
		}
	}
	c.mu.Unlock()
	for _, f := range drop {
		f.drop(c)
	}
	for _, f := range dropNets {
		f.drop(c)
	}
	c.layers.retain(keep)
}

// Forget drops the CPU sample, open files and layer usage kept for key;
// the daemon calls it when the container or sandbox is removed.
func (c *Collector) Forget(key string) {
	c.mu.Lock()
	delete(c.cpu, key)
	c.mu.Unlock()
	c.forgetFiles(key)
	c.ForgetNetwork(key)
	c.layers.forget(key)
}

// forgetFiles closes the cgroup files kept for key.
func (c *Collector) forgetFiles(key string) {
	if f := take(c, c.files, key); f != nil {
		f.drop(c)
	}
}

// take removes key's entry from m, one of the Collector's maps of kept
// files, under c.mu. The caller then drops the entry under the entry's
// own lock, which marks it dropped: a reading that looked the entry up
// before the removal and locks it after must see that, or it would keep
// files in an entry nobody holds any more (a descriptor leak).
func take[E any](c *Collector, m map[string]E, key string) E {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := m[key]
	delete(m, key)
	return e
}
