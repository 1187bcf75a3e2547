package stats

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// LayerUsage is the measured usage of a writable layer.
type LayerUsage struct {
	Bytes, Inodes uint64
	// At is when the walk that measured it started.
	At time.Time
}

// ctxCheckEvery is how many entries a walk visits between context checks:
// often enough to stop a huge walk promptly, rarely enough to cost nothing.
const ctxCheckEvery = 1024

// layerWalker measures writable layers on its own goroutine, one layer
// at a time, so that no stats call ever waits for a directory walk: a
// call gets the last measurement, and asks for a new one when that is
// older than the TTL. A layer a container keeps writing to is thus
// walked at most once per TTL, and only while someone asks for its usage.
type layerWalker struct {
	ttl time.Duration
	now func() time.Time

	mu     sync.Mutex
	layers map[string]*layerEntry
	// first holds the keys never measured, walked before any refresh
	// and at once; queue the measured ones whose measurement is old,
	// oldest first, walked at a pace (see pace).
	first []string
	queue []string
	wake  chan struct{} // capacity 1: first or queue has keys
	// wakeFirst (capacity 1) cuts a pause short: first has keys.
	wakeFirst chan struct{}
	stopped   bool

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// walked counts finished walks, for tests.
	walked int
}

type layerEntry struct {
	dir    string
	usage  LayerUsage
	valid  bool
	queued bool
}

func newLayerWalker(ttl time.Duration, now func() time.Time) *layerWalker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &layerWalker{
		ttl: ttl, now: now,
		layers:    map[string]*layerEntry{},
		wake:      make(chan struct{}, 1),
		wakeFirst: make(chan struct{}, 1),
		ctx:       ctx, cancel: cancel,
		done: make(chan struct{}),
	}
	go w.run()
	return w
}

// LayerUsage returns the last measured usage (allocated blocks, as du
// counts them, and inodes) of dir, the writable layer of key (the overlay
// upperdir or the native snapshot directory), and false when it has not
// been measured yet. It never walks dir itself: when the measurement is
// missing, older than the TTL (10s by default) or of another directory,
// it queues a walk on the Collector's walker. Calling it once when a
// container is created has the first measurement ready by the time
// anyone asks.
//
// Files hardlinked within dir count once, and the walk stays on dir's
// filesystem: anything mounted below it (a volume, a bind mount) is not the
// layer's usage.
func (c *Collector) LayerUsage(key, dir string) (LayerUsage, bool) {
	return c.layers.get(key, dir)
}

func (w *layerWalker) get(key, dir string) (LayerUsage, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.layers[key]
	if e == nil {
		e = &layerEntry{dir: dir}
		w.layers[key] = e
	}
	if e.dir != dir {
		*e = layerEntry{dir: dir}
	}
	now := w.now()
	stale := !e.valid || now.Sub(e.usage.At) >= w.ttl || now.Before(e.usage.At)
	if stale && !e.queued && !w.stopped {
		e.queued = true
		if e.valid {
			w.queue = append(w.queue, key)
		} else {
			w.first = append(w.first, key)
			select {
			case w.wakeFirst <- struct{}{}:
			default:
			}
		}
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return e.usage, e.valid
}

func (w *layerWalker) run() {
	defer close(w.done)
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-w.wake:
		}
		for {
			w.mu.Lock()
			if w.ctx.Err() != nil {
				w.mu.Unlock()
				return
			}
			var key string
			refresh := false
			switch {
			case len(w.first) > 0:
				key, w.first = w.first[0], w.first[1:]
			case len(w.queue) > 0:
				key, w.queue = w.queue[0], w.queue[1:]
				refresh = true
			}
			if len(w.first) == 0 {
				// A signal for keys already taken must not cut a pause.
				select {
				case <-w.wakeFirst:
				default:
				}
			}
			e := w.layers[key]
			pause := w.pace()
			more := len(w.queue) > 0
			w.mu.Unlock()
			if key == "" {
				break
			}
			if e == nil {
				continue // forgotten while queued
			}
			w.walk(key, e)
			if refresh && more && !w.sleep(pause) {
				return
			}
		}
	}
}

// pace is the pause after a refresh walk when more are waiting: the
// refreshes of every known layer spread over a quarter of the TTL. A
// stats call of a full node finds all its layers' measurements old at
// once, and walking 500 of them in a row would take a CPU from the calls
// that follow it; a first measurement is never paced.
func (w *layerWalker) pace() time.Duration {
	if len(w.layers) == 0 {
		return 0
	}
	return w.ttl / time.Duration(4*len(w.layers))
}

// sleep waits d, or less when a first measurement is asked for; false
// when the walker is stopped.
func (w *layerWalker) sleep(d time.Duration) bool {
	if d <= 0 {
		return w.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.ctx.Done():
		return false
	case <-t.C:
	case <-w.wakeFirst:
	}
	return true
}

// walk measures one entry; the entry may be forgotten or pointed at
// another directory meanwhile, in which case the result is dropped.
func (w *layerWalker) walk(key string, e *layerEntry) {
	w.mu.Lock()
	dir := e.dir
	w.mu.Unlock()
	at := w.now()
	bytes, inodes, err := walkUsage(w.ctx, dir)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.walked++
	e.queued = false
	if w.layers[key] != e || e.dir != dir {
		return
	}
	if err != nil {
		// A layer that is gone must not keep reporting its old usage.
		e.valid = false
		if !errors.Is(err, ErrNotFound) && w.ctx.Err() == nil {
			klog.V(4).InfoS("Measuring writable layer failed", "key", key, "dir", dir, "err", err)
		}
		return
	}
	e.usage = LayerUsage{Bytes: bytes, Inodes: inodes, At: at}
	e.valid = true
}

func (w *layerWalker) forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.layers, key)
}

func (w *layerWalker) retain(keep func(string) bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.layers {
		if !keep(k) {
			delete(w.layers, k)
		}
	}
}

// close stops the walker, interrupting a walk in progress.
func (w *layerWalker) close() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.cancel()
	<-w.done
}

// walkUsage measures dir without caching.
func walkUsage(ctx context.Context, dir string) (bytes, inodes uint64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	rootInfo, err := os.Lstat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, 0, fmt.Errorf("usage of %s: %w: %w", dir, ErrNotFound, err)
		}
		return 0, 0, fmt.Errorf("usage of %s: %w", dir, err)
	}
	if !rootInfo.IsDir() {
		return 0, 0, fmt.Errorf("usage of %s: not a directory", dir)
	}
	dev := rootInfo.Sys().(*syscall.Stat_t).Dev
	// Inodes with several links, by number; within one filesystem the
	// number identifies the inode.
	seen := map[uint64]struct{}{}
	visited := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, werr error) error {
		if werr != nil {
			// The container keeps writing while we walk: an entry
			// removed since its directory was listed is no error.
			if p != dir && errors.Is(werr, fs.ErrNotExist) {
				return nil
			}
			return werr
		}
		visited++
		if visited%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("no stat data for %s", p)
		}
		if st.Dev != dev {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.IsDir() && st.Nlink > 1 {
			if _, dup := seen[st.Ino]; dup {
				return nil
			}
			seen[st.Ino] = struct{}{}
		}
		inodes++
		bytes += uint64(st.Blocks) * 512
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("usage of %s: %w", dir, err)
	}
	return bytes, inodes, nil
}
