package stats

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Figures selects what a cgroup reading includes. Each figure costs the
// read of one or more cgroup files per cgroup, and kubelet asks for the
// stats of every container every few seconds, so callers ask for what
// they report and nothing more.
type Figures uint8

const (
	// Usage is what ContainerStats and PodSandboxStats report: CPU time
	// (and the nano-cores rate), memory usage, working set, RSS, page
	// faults, the limit, and PSI where the kernel keeps it. Its files are
	// kept open between readings of the same key.
	Usage Figures = 1 << iota
	// Processes is the number of processes in the cgroup itself
	// (cgroup.procs), not in cgroups below it.
	Processes
	// Detail is what the cAdvisor-style metrics add: user and system CPU
	// time, throttling, peak memory, OOM kills, the pids counter and
	// block I/O per device (cgroup v2).
	Detail
	// Tasks is the pids controller's counter (pids.current) alone: every
	// task, threads included, in the cgroup and the cgroups below it,
	// kept open like Usage's files. CgroupStats.HasPids says whether the
	// cgroup has the controller. One small file for a whole pod where
	// Processes needs a cgroup.procs listing per member.
	Tasks
	// Swap is the swap usage and limit, with Usage (Detail reads them
	// too): a container's stats report them, a pod's have no swap field,
	// and on a full node the two files are a third of a pod reading's.
	Swap

	// All is every figure.
	All = Usage | Processes | Detail | Tasks | Swap
)

// maxOpenFiles bounds the cgroup files kept open over all keys; past it,
// files are opened for each reading. 500 containers on cgroup v1 keep
// about 3000 open.
const maxOpenFiles = 8192

// fileKey names a cgroup file of a reading: the v1 controller ("" on
// v2) and the file name. Paths are built only to open a file.
type fileKey struct{ ctrl, name string }

// openFiles are the files of one key's cgroup kept open between
// readings: opening a cgroup file walks its path through kernfs, and on a
// full node that is most of the cost of a reading. They are raw
// descriptors, not *os.File: cgroup files are pollable, so os would
// register each with the netpoller and switch it back to blocking mode
// (a fcntl) on every Fd call.
type openFiles struct {
	mu sync.Mutex
	// raw is the cgroups path the key was last read with, path what it
	// resolves to: the cgroup below the root these files belong to.
	raw, path string
	files     map[fileKey]int
	// limits are the limits read since limitsAt (see fileReader.limit).
	limits   map[fileKey]uint64
	limitsAt time.Time
	// dropped: no longer in Collector.files, nothing may be kept in it.
	dropped bool
}

// drop closes the files for good, once f is out of Collector.files.
func (f *openFiles) drop(c *Collector) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closeAll(c)
	f.dropped = true
}

// closeAll closes every kept file and forgets the limits read; f.mu is
// held.
func (f *openFiles) closeAll(c *Collector) {
	for k, fd := range f.files {
		_ = unix.Close(fd)
		delete(f.files, k)
		c.openCount.Add(-1)
	}
	clear(f.limits)
}

// limitTTL is how long a key keeps the limits it read (memory and swap
// limits): they change only when the container or pod is updated, which
// the daemon tells the Collector of (RefreshLimits), so the TTL only
// bounds how long a change made by someone else (kubelet resizing the
// pod cgroup it manages before it calls UpdatePodSandboxResources, an NRI
// plugin) goes unseen. Two preads per container of a full node's stats
// call otherwise.
const limitTTL = 30 * time.Second

// fileReader reads the files of one reading of the cgroup at cgroup
// into a reused buffer. Its results are valid until the next read.
type fileReader struct {
	c      *Collector
	open   *openFiles // nil: every file is opened and closed
	buf    []byte
	cgroup string
	at     time.Time // when the reading started
}

// readerPool holds fileReaders with their buffers, so that a reading
// allocates neither.
var readerPool = sync.Pool{New: func() any { return &fileReader{buf: make([]byte, 8192)} }}

// release returns r to readerPool.
func (r *fileReader) release() {
	*r = fileReader{buf: r.buf}
	readerPool.Put(r)
}

// errGone marks a file whose cgroup does not exist (any more): ENOENT
// when opening, ENODEV when reading a file kept open across an rmdir.
var errGone = errors.New("cgroup file gone")

func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV) || errors.Is(err, errGone)
}

// path is the file's path: root/ctrl/cgroup/name on v1, root/cgroup/name
// on v2.
func (r *fileReader) path(k fileKey) string {
	if k.ctrl == "" {
		return filepath.Join(r.c.root, r.cgroup, k.name)
	}
	return filepath.Join(r.c.root, k.ctrl, r.cgroup, k.name)
}

// read returns the content of the file k; keep keeps it open for the
// next reading of the same key.
func (r *fileReader) read(k fileKey, keep bool) ([]byte, error) {
	if keep && r.open != nil {
		fd, ok := r.open.files[k]
		if !ok {
			var err error
			if fd, err = openFile(r.path(k)); err != nil {
				return nil, err
			}
			if r.c.openCount.Add(1) <= maxOpenFiles {
				r.open.files[k] = fd
			} else {
				r.c.openCount.Add(-1)
				defer unix.Close(fd)
			}
		}
		b, err := r.pread(fd)
		if err != nil {
			// The cgroup was removed (and maybe made again at the same
			// path): the next reading opens the file anew.
			if cur, ok := r.open.files[k]; ok && cur == fd {
				_ = unix.Close(fd)
				delete(r.open.files, k)
				r.c.openCount.Add(-1)
				// A cgroup made again has its own limits.
				clear(r.open.limits)
			}
			return nil, fmt.Errorf("read %s: %w", r.path(k), err)
		}
		return b, nil
	}
	fd, err := openFile(r.path(k))
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	b, err := r.pread(fd)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", r.path(k), err)
	}
	return b, nil
}

func openFile(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

// pread reads the whole file from offset 0: cgroup files are generated
// on each read from the start, so one large read returns all of it.
func (r *fileReader) pread(fd int) ([]byte, error) {
	for {
		n, err := unix.Pread(fd, r.buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n < len(r.buf) {
			return r.buf[:n], nil
		}
		r.buf = make([]byte, 2*len(r.buf))
	}
}

// uint reads a file holding one number; "max" reads as the largest value
// (which unlimited recognizes).
func (r *fileReader) uint(k fileKey, keep bool) (uint64, error) {
	b, err := r.read(k, keep)
	if err != nil {
		return 0, err
	}
	return parseUint(b, k.name)
}

// limit is uint (optionalUint if optional) for a file holding a limit,
// which changes only when someone updates the cgroup: a key's reading
// takes the value read earlier, until limitTTL has passed or
// RefreshLimits was called.
func (r *fileReader) limit(k fileKey, optional bool) (uint64, error) {
	if r.open != nil {
		if v, ok := r.open.limits[k]; ok {
			return v, nil
		}
	}
	var v uint64
	var err error
	if optional {
		v, err = r.optionalUint(k, true)
	} else {
		v, err = r.uint(k, true)
	}
	if err == nil && r.open != nil {
		r.open.limits[k] = v
	}
	return v, err
}

// optionalUint is uint for a file that only some kernels or
// configurations have (swap accounting, memory.peak): absent is zero.
// A cgroup removed meanwhile shows at the next required file.
func (r *fileReader) optionalUint(k fileKey, keep bool) (uint64, error) {
	v, err := r.uint(k, keep)
	if err != nil && gone(err) {
		return 0, nil
	}
	return v, err
}

func parseUint(b []byte, what string) (uint64, error) {
	b = bytes.TrimSpace(b)
	if string(b) == "max" {
		return ^uint64(0), nil
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", what, err)
	}
	return v, nil
}

// keyValues calls fn for every "key value" line of a flat-keyed cgroup
// file (memory.stat, cpu.stat, memory.events...). Lines whose value is
// not a number are skipped.
func keyValues(b []byte, fn func(key []byte, v uint64)) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		k, v, ok := bytes.Cut(line, []byte{' '})
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64); err == nil {
			fn(k, n)
		}
	}
}

// countLines counts the entries of a cgroup.procs file.
func countLines(b []byte) uint64 {
	n := uint64(bytes.Count(b, []byte{'\n'}))
	if len(b) > 0 && b[len(b)-1] != '\n' {
		n++
	}
	return n
}

// parsePressure parses a PSI file ("some avg10=1.50 avg60=0.00
// avg300=0.00 total=100" and a "full" line); totals are microseconds.
func parsePressure(b []byte) *Pressure {
	var p Pressure
	found := false
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		fields := bytes.Fields(line)
		if len(fields) == 0 {
			continue
		}
		var d *PressureData
		switch string(fields[0]) {
		case "some":
			d = &p.Some
		case "full":
			d = &p.Full
		default:
			continue
		}
		found = true
		for _, f := range fields[1:] {
			k, v, ok := bytes.Cut(f, []byte{'='})
			if !ok {
				continue
			}
			switch string(k) {
			case "avg10":
				d.Avg10, _ = strconv.ParseFloat(string(v), 64)
			case "avg60":
				d.Avg60, _ = strconv.ParseFloat(string(v), 64)
			case "avg300":
				d.Avg300, _ = strconv.ParseFloat(string(v), 64)
			case "total":
				us, _ := strconv.ParseUint(string(v), 10, 64)
				d.TotalNanoSeconds = us * 1000
			}
		}
	}
	if !found {
		return nil
	}
	return &p
}
