package image

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/content"
)

// Default GC scheduling: a pass runs once removals have been quiet for
// gcQuiet, and at the latest gcMaxDelay after the first request, so that
// removing a pod's twenty containers (or a hundred images) costs one
// pass, and a steady stream of removals still gets collected.
const (
	defaultGCQuiet    = time.Second
	defaultGCMaxDelay = 10 * time.Second
)

// WithGCDelay sets how long after the last request for a GC pass the
// pass runs (default 1s); max bounds the wait after the first request
// (default 10s).
func WithGCDelay(quiet, max time.Duration) Option {
	return func(s *Service) { s.gc.quiet, s.gc.maxDelay = quiet, max }
}

// lease marks blobs and snapshots a pull in progress uses, so that GC,
// which keeps only what image records reference, does not delete them
// before the pull writes its record. Leases live in memory: after a
// crash no pull is in progress.
type lease struct {
	s    *Service
	keys []string
}

func (s *Service) newLease() *lease { return &lease{s: s} }

// add leases keys. A key a GC pass is deleting right now is leased once
// the deletion is done, so that what the pull then checks (is the blob
// there, is the snapshot committed) is the truth.
func (l *lease) add(keys ...string) {
	l.s.leaseMu.Lock()
	defer l.s.leaseMu.Unlock()
	for _, k := range keys {
		for l.s.deleting[k] {
			l.s.deleted.Wait()
		}
		l.s.leases[k]++
		l.keys = append(l.keys, k)
	}
}

func (l *lease) release() {
	l.s.leaseMu.Lock()
	defer l.s.leaseMu.Unlock()
	for _, k := range l.keys {
		if l.s.leases[k]--; l.s.leases[k] <= 0 {
			delete(l.s.leases, k)
		}
	}
	l.keys = nil
}

// ScheduleGC asks for a garbage collection pass off the caller's path:
// requests in a burst (every container of a removed pod, a batch of image
// removals) are served by one pass once they stop.
func (s *Service) ScheduleGC() { s.gc.request() }

// Close stops the GC scheduler, interrupting a pass in progress.
// Requests still pending are dropped: the GC at the next start collects
// what they would have.
func (s *Service) Close() { s.gc.close() }

// GC deletes every blob and committed snapshot that no image record and no
// pull in progress references, and unpack snapshots left by a crash.
// Snapshots with children (a container's rootfs on top of a removed image)
// stay until their children go. Passes run one at a time. The lease lock
// is held only while deciding what to delete (the image records and the
// leases are read under it), never while deleting: a pull that leases
// something being deleted waits for that deletion alone.
func (s *Service) GC(ctx context.Context) error {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()

	var blobs []string
	sizes := map[string]int64{}
	if err := s.content.Walk(ctx, func(info content.Info) error {
		blobs = append(blobs, info.Digest.String())
		sizes[info.Digest.String()] = info.Size
		return nil
	}); err != nil {
		return fmt.Errorf("gc: walk content: %w", err)
	}
	stale, err := s.decide(blobs)
	if err != nil {
		return err
	}
	var errs []error
	var reclaimed int64
	for _, d := range stale {
		if s.beforeDelete != nil {
			s.beforeDelete(d)
		}
		if err := s.content.Delete(ctx, digest.Digest(d)); err != nil && !errors.Is(err, content.ErrNotFound) {
			errs = append(errs, fmt.Errorf("delete blob %s: %w", d, err))
		} else {
			klog.V(3).InfoS("GC removed blob", "digest", d)
			reclaimed += sizes[d]
		}
	}
	s.doneDeleting(stale)

	removedSnapshots, snapBytes, err := s.sweepSnapshots(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	s.telemetry.GCDone(reclaimed + snapBytes)
	if len(stale) > 0 || removedSnapshots > 0 {
		klog.V(2).InfoS("Garbage collected images' content", "blobs", len(stale), "snapshots", removedSnapshots)
	}
	return errors.Join(errs...)
}

// decide returns the candidates no image record and no lease keeps, and
// marks them as being deleted; the caller deletes them without the lock
// and then calls doneDeleting.
func (s *Service) decide(candidates []string) ([]string, error) {
	if len(candidates) == 0 {
		return nil, nil
	}
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	imgs, err := s.db.ListImages()
	if err != nil {
		return nil, fmt.Errorf("gc: list images: %w", err)
	}
	keep := map[string]bool{}
	for _, img := range imgs {
		keep[img.ID.String()] = true
		for _, d := range img.Blobs {
			keep[d.String()] = true
		}
		for _, c := range img.ChainIDs {
			keep[c.String()] = true
		}
	}
	var stale []string
	for _, c := range candidates {
		if keep[c] || s.leases[c] > 0 || s.deleting[c] {
			continue
		}
		s.deleting[c] = true
		stale = append(stale, c)
	}
	return stale, nil
}

func (s *Service) doneDeleting(keys []string) {
	if len(keys) == 0 {
		return
	}
	s.leaseMu.Lock()
	for _, k := range keys {
		delete(s.deleting, k)
	}
	s.leaseMu.Unlock()
	s.deleted.Broadcast()
}

// sweepSnapshots removes unreferenced snapshots leaves first, repeating
// until a round removes nothing, since a parent becomes removable only
// once its children are gone. A snapshot that cannot be removed is
// reported and skipped; the others are still collected.
// It returns how many it removed and the bytes of the committed ones.
func (s *Service) sweepSnapshots(ctx context.Context) (int, int64, error) {
	removed := 0
	var bytes int64
	failed := map[string]error{}
	for {
		var infos []snapshot.Info
		if err := s.snap.Walk(ctx, func(i snapshot.Info) error {
			infos = append(infos, i)
			return nil
		}); err != nil {
			return removed, bytes, fmt.Errorf("gc: walk snapshots: %w", err)
		}
		children := map[string]int{}
		for _, i := range infos {
			if i.Parent != "" {
				children[i.Parent]++
			}
		}
		var candidates []string
		committed := map[string]bool{}
		for _, i := range infos {
			committed[i.Key] = i.Kind == snapshot.KindCommitted
			collectable := i.Kind == snapshot.KindCommitted ||
				(i.Kind == snapshot.KindActive && strings.HasPrefix(i.Key, "extract-"))
			if collectable && children[i.Key] == 0 && failed[i.Key] == nil {
				candidates = append(candidates, i.Key)
			}
		}
		stale, err := s.decide(candidates)
		if err != nil {
			return removed, bytes, err
		}
		progress := false
		for _, key := range stale {
			if s.beforeDelete != nil {
				s.beforeDelete(key)
			}
			// Stored at commit: reading it walks nothing. Extraction
			// leftovers are not measured.
			var usage snapshot.Usage
			if committed[key] {
				usage, _ = s.snap.Usage(ctx, key)
			}
			// A child made since the walk (a container's rootfs) makes
			// Remove refuse: the snapshot stays.
			if err := s.snap.Remove(ctx, key); err != nil {
				if !errors.Is(err, snapshot.ErrInUse) && !errors.Is(err, snapshot.ErrNotFound) {
					failed[key] = fmt.Errorf("gc: remove snapshot %s: %w", key, err)
				}
				continue
			}
			klog.V(3).InfoS("GC removed snapshot", "key", key)
			removed++
			bytes += usage.Size
			progress = true
		}
		s.doneDeleting(stale)
		if !progress {
			var errs []error
			for _, err := range failed {
				errs = append(errs, err)
			}
			return removed, bytes, errors.Join(errs...)
		}
	}
}

// gcScheduler coalesces requests for GC passes and runs them on its own
// goroutine, started at the first request and stopped by close.
type gcScheduler struct {
	quiet, maxDelay time.Duration
	run             func(context.Context) error

	mu          sync.Mutex
	pending     bool
	first, last time.Time
	started     bool
	closed      bool
	wake        chan struct{}
	ctx         context.Context
	cancel      context.CancelFunc
	done        chan struct{}
	// passes counts the passes run, for tests.
	passes int
}

func (g *gcScheduler) request() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	now := time.Now()
	if !g.pending {
		g.pending, g.first = true, now
	}
	g.last = now
	if !g.started {
		g.started = true
		g.wake = make(chan struct{}, 1)
		g.ctx, g.cancel = context.WithCancel(context.Background())
		g.done = make(chan struct{})
		go g.loop()
	}
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

func (g *gcScheduler) loop() {
	defer close(g.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		g.mu.Lock()
		due, pending := g.last.Add(g.quiet), g.pending
		if limit := g.first.Add(g.maxDelay); limit.Before(due) {
			due = limit
		}
		g.mu.Unlock()
		if pending {
			timer.Reset(time.Until(due))
		}
		select {
		case <-g.ctx.Done():
			timer.Stop()
			return
		case <-g.wake:
			timer.Stop()
			continue
		case <-timer.C:
		}
		g.mu.Lock()
		if !g.pending || time.Now().Before(due) {
			g.mu.Unlock()
			continue
		}
		g.pending = false
		g.mu.Unlock()
		if err := g.run(g.ctx); err != nil && g.ctx.Err() == nil {
			klog.ErrorS(err, "Garbage collection of images' content")
		}
		g.mu.Lock()
		g.passes++
		g.mu.Unlock()
	}
}

func (g *gcScheduler) close() {
	g.mu.Lock()
	g.closed = true
	started := g.started
	g.mu.Unlock()
	if started {
		g.cancel()
		<-g.done
	}
}
