package stats

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"

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
	// faults, the limit, swap, and PSI where the kernel keeps it. Its
	// files are kept open between readings of the same key.
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

	// All is every figure.
	All = Usage | Processes | Detail | Tasks
)

// maxOpenFiles bounds the cgroup files kept open over all keys; past it,
// files are opened for each reading. 500 containers on cgroup v1 keep
// about 3000 open.
const maxOpenFiles = 8192

// openFiles are the files of one key's cgroup kept open between
// readings: opening a cgroup file walks its path through kernfs, and on a
// full node that is most of the cost of a reading.
type openFiles struct {
	mu    sync.Mutex
	path  string // the cgroup below the root these files belong to
	files map[string]*os.File
}

// closeAll closes every kept file; f.mu is held or f is unreachable.
func (f *openFiles) closeAll(c *Collector) {
	for name, file := range f.files {
		_ = file.Close()
		delete(f.files, name)
		c.openCount.Add(-1)
	}
}

// fileReader reads the files of one reading into a reused buffer. Its
// results are valid until the next read.
type fileReader struct {
	c    *Collector
	open *openFiles // nil: every file is opened and closed
	buf  []byte
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 8192); return &b }}

// errGone marks a file whose cgroup does not exist (any more): ENOENT
// when opening, ENODEV when reading a file kept open across an rmdir.
var errGone = errors.New("cgroup file gone")

func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV) || errors.Is(err, errGone)
}

// read returns the content of the file at path; keep keeps it open for
// the next reading of the same key.
func (r *fileReader) read(path string, keep bool) ([]byte, error) {
	if keep && r.open != nil {
		f := r.open.files[path]
		if f == nil {
			var err error
			if f, err = openFile(path); err != nil {
				return nil, err
			}
			if r.c.openCount.Add(1) <= maxOpenFiles {
				r.open.files[path] = f
			} else {
				r.c.openCount.Add(-1)
				defer f.Close()
			}
		}
		b, err := r.pread(f)
		if err != nil {
			// The cgroup was removed (and maybe made again at the same
			// path): the next reading opens the file anew.
			if r.open.files[path] == f {
				_ = f.Close()
				delete(r.open.files, path)
				r.c.openCount.Add(-1)
			}
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		return b, nil
	}
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := r.pread(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}

// pread reads the whole file from offset 0: cgroup files are generated
// on each read from the start, so one large read returns all of it.
func (r *fileReader) pread(f *os.File) ([]byte, error) {
	for {
		n, err := unix.Pread(int(f.Fd()), r.buf, 0)
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
func (r *fileReader) uint(path string, keep bool) (uint64, error) {
	b, err := r.read(path, keep)
	if err != nil {
		return 0, err
	}
	return parseUint(b, path)
}

// optionalUint is uint for a file that only some kernels or
// configurations have (swap accounting, memory.peak): absent is zero.
// A cgroup removed meanwhile shows at the next required file.
func (r *fileReader) optionalUint(path string, keep bool) (uint64, error) {
	v, err := r.uint(path, keep)
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
