package image

import (
	"context"
	"errors"
	"fmt"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/content"
)

// lease marks blobs and snapshots a pull in progress uses, so that GC,
// which keeps only what image records reference, does not delete them
// before the pull writes its record. Leases live in memory: after a
// crash no pull is in progress.
type lease struct {
	s    *Service
	keys []string
}

func (s *Service) newLease() *lease { return &lease{s: s} }

func (l *lease) add(keys ...string) {
	l.s.leaseMu.Lock()
	defer l.s.leaseMu.Unlock()
	for _, k := range keys {
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

// GC deletes every blob and committed snapshot that no image record and no
// pull in progress references, and unpack snapshots left by a crash.
// Snapshots with children (a container's rootfs on top of a removed image)
// stay until their children go.
func (s *Service) GC(ctx context.Context) error {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()

	imgs, err := s.db.ListImages()
	if err != nil {
		return fmt.Errorf("gc: list images: %w", err)
	}
	keep := map[string]bool{}
	for k := range s.leases {
		keep[k] = true
	}
	for _, img := range imgs {
		keep[img.ID.String()] = true
		for _, d := range img.Blobs {
			keep[d.String()] = true
		}
		for _, c := range img.ChainIDs {
			keep[c.String()] = true
		}
	}

	var stale []digest.Digest
	if err := s.content.Walk(ctx, func(info content.Info) error {
		if !keep[info.Digest.String()] {
			stale = append(stale, info.Digest)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("gc: walk content: %w", err)
	}
	var errs []error
	for _, d := range stale {
		if err := s.content.Delete(ctx, d); err != nil && !errors.Is(err, content.ErrNotFound) {
			errs = append(errs, fmt.Errorf("delete blob %s: %w", d, err))
			continue
		}
		klog.V(3).InfoS("GC removed blob", "digest", d)
	}

	removedSnapshots, err := s.sweepSnapshots(ctx, keep)
	if err != nil {
		errs = append(errs, err)
	}
	if len(stale) > 0 || removedSnapshots > 0 {
		klog.V(2).InfoS("Garbage collected images' content", "blobs", len(stale), "snapshots", removedSnapshots)
	}
	return errors.Join(errs...)
}

// sweepSnapshots removes unreferenced snapshots leaves first, repeating
// until a pass removes nothing, since a parent becomes removable only once
// its children are gone. A snapshot that cannot be removed is reported
// and skipped; the others are still collected.
func (s *Service) sweepSnapshots(ctx context.Context, keep map[string]bool) (int, error) {
	removed := 0
	failed := map[string]error{}
	for {
		var infos []snapshot.Info
		if err := s.snap.Walk(ctx, func(i snapshot.Info) error {
			infos = append(infos, i)
			return nil
		}); err != nil {
			return removed, fmt.Errorf("gc: walk snapshots: %w", err)
		}
		children := map[string]int{}
		for _, i := range infos {
			if i.Parent != "" {
				children[i.Parent]++
			}
		}
		progress := false
		for _, i := range infos {
			collectable := (i.Kind == snapshot.KindCommitted && !keep[i.Key]) ||
				(i.Kind == snapshot.KindActive && strings.HasPrefix(i.Key, "extract-") && !keep[i.Key])
			if !collectable || children[i.Key] > 0 || failed[i.Key] != nil {
				continue
			}
			if err := s.snap.Remove(ctx, i.Key); err != nil {
				if errors.Is(err, snapshot.ErrInUse) || errors.Is(err, snapshot.ErrNotFound) {
					continue
				}
				failed[i.Key] = fmt.Errorf("gc: remove snapshot %s: %w", i.Key, err)
				continue
			}
			klog.V(3).InfoS("GC removed snapshot", "key", i.Key)
			removed++
			progress = true
		}
		if !progress {
			var errs []error
			for _, err := range failed {
				errs = append(errs, err)
			}
			return removed, errors.Join(errs...)
		}
	}
}
