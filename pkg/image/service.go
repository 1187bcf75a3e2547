package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/reference"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/content"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
	"github.com/cri-runtimed/cri-runtimed/pkg/telemetry"
)

var (
	// ErrNotFound means no local image matches.
	ErrNotFound = errors.New("image not found")
	// ErrPullStuck means a download received no bytes for the progress timeout.
	ErrPullStuck = errors.New("pull made no progress")
	// ErrInvalidImage means the registry served something that is not a
	// usable image (bad manifest, config, layer count or diff ID).
	ErrInvalidImage = errors.New("invalid image")
	// ErrTooLarge means an image's layers expand beyond the node's
	// uncompressed size limit (a decompression bomb, or an image too big
	// for the node).
	ErrTooLarge = errors.New("image too large")
)

// Service owns the images of the node.
type Service struct {
	db      *meta.DB
	content *content.Store
	snap    snapshot.Snapshotter

	platform ocispec.Platform
	// settings are what Reconfigure may change while the daemon runs;
	// init collects them from the options in New.
	settings atomic.Pointer[pullSettings]
	init     pullSettings

	blobs   flights // downloads shared by concurrent pulls, by digest
	unpacks flights // layer unpacks shared by concurrent pulls, by chain ID

	// leases protects what pulls in progress are using from GC. A GC
	// pass decides what to delete under leaseMu and marks it deleting;
	// a pull leasing a key being deleted waits on deleted.
	leaseMu  sync.Mutex
	leases   map[string]int
	deleting map[string]bool
	deleted  *sync.Cond
	// gcMu runs GC passes one at a time; gc schedules them.
	gcMu sync.Mutex
	gc   gcScheduler
	// beforeDelete, when set (by tests), is called before GC deletes a
	// blob or snapshot.
	beforeDelete func(key string)

	// list caches what List last read, valid while no image record has
	// been written since (gen counts the writes): kubelet lists the
	// node's images every few seconds, and decoding hundreds of records
	// each time is most of the call.
	listMu  sync.Mutex
	gen     uint64
	list    []meta.Image
	listGen uint64
	// index finds list's records by ID and name, built from it the first
	// time Get asks after List cached it; nil with list.
	index *listIndex
	// telemetry counts downloaded bytes and GC passes; nil counts nothing.
	telemetry *telemetry.Recorder
}

// Option sets an optional Service setting.
type Option func(*Service)

// WithPlatform sets the platform picked from multi-arch images.
func WithPlatform(p ocispec.Platform) Option { return func(s *Service) { s.platform = p } }

// WithMaxConcurrentDownloads bounds the layers downloaded at once per pull.
func WithMaxConcurrentDownloads(n int) Option { return func(s *Service) { s.init.maxDownloads = n } }

// WithProgressTimeout cancels a download that receives nothing for d.
func WithProgressTimeout(d time.Duration) Option {
	return func(s *Service) { s.init.progressTimeout = d }
}

// WithMaxManifestSize bounds manifests and image configs.
func WithMaxManifestSize(n int64) Option { return func(s *Service) { s.init.maxManifestSize = n } }

// WithMaxUncompressedSize bounds the uncompressed bytes of the layers one
// pull unpacks; 0 means no bound.
func WithMaxUncompressedSize(n int64) Option { return func(s *Service) { s.init.maxUncompressed = n } }

// WithTelemetry records downloaded bytes and GC passes in rec.
func WithTelemetry(rec *telemetry.Recorder) Option { return func(s *Service) { s.telemetry = rec } }

// New returns the image service.
func New(db *meta.DB, cs *content.Store, snap snapshot.Snapshotter, reg *registry.Client, opts ...Option) *Service {
	s := &Service{
		db:       db,
		content:  cs,
		snap:     snap,
		platform: ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH},
		init: pullSettings{
			registry:        reg,
			maxDownloads:    3,
			progressTimeout: 5 * time.Minute,
			maxManifestSize: 4 << 20,
		},
		leases:   map[string]int{},
		deleting: map[string]bool{},
	}
	s.deleted = sync.NewCond(&s.leaseMu)
	s.gc = gcScheduler{quiet: defaultGCQuiet, maxDelay: defaultGCMaxDelay, run: s.GC}
	for _, o := range opts {
		o(s)
	}
	st := s.init
	s.settings.Store(&st)
	return s
}

// pullSettings are the registry client and the limits of pulls.
type pullSettings struct {
	registry        *registry.Client
	maxDownloads    int
	progressTimeout time.Duration
	maxManifestSize int64
	maxUncompressed int64
}

// pulls returns the current pull settings. A pull reads them as it goes:
// one running during a Reconfigure may see old and new values, each of
// them valid.
func (s *Service) pulls() *pullSettings { return s.settings.Load() }

// Reconfigure replaces the registry client and the pull limits of the
// options given (WithMaxConcurrentDownloads, WithProgressTimeout,
// WithMaxManifestSize, WithMaxUncompressedSize; others are ignored) for
// the pulls that start from now on, on a running daemon (SIGHUP).
func (s *Service) Reconfigure(reg *registry.Client, opts ...Option) {
	tmp := &Service{init: *s.pulls()}
	tmp.init.registry = reg
	for _, o := range opts {
		o(tmp)
	}
	st := tmp.init
	s.settings.Store(&st)
}

// Snapshotter is the snapshotter images are unpacked with.
func (s *Service) Snapshotter() snapshot.Snapshotter { return s.snap }

// List returns every image. The slice is the caller's; the records'
// own slices are shared and must not be modified.
func (s *Service) List(ctx context.Context) ([]meta.Image, error) {
	s.listMu.Lock()
	gen := s.gen
	if s.list != nil && s.listGen == gen {
		out := slices.Clone(s.list)
		s.listMu.Unlock()
		return out, nil
	}
	s.listMu.Unlock()
	imgs, err := s.db.ListImages()
	if err != nil {
		return nil, err
	}
	if imgs == nil {
		imgs = []meta.Image{}
	}
	s.listMu.Lock()
	// A write since gen was read leaves the cache to the next List.
	if s.gen == gen {
		s.list, s.listGen, s.index = imgs, gen, nil
	}
	s.listMu.Unlock()
	return slices.Clone(imgs), nil
}

// written records that image records changed: List reads them again.
// Callers call it after the write is committed.
func (s *Service) written() {
	s.listMu.Lock()
	s.gen++
	s.list, s.index = nil, nil
	s.listMu.Unlock()
}

// listIndex positions in Service.list by image ID and by name (a tag or
// digest reference, as the records hold them).
type listIndex struct {
	byID   map[string]int
	byName map[string]int
}

func newListIndex(list []meta.Image) *listIndex {
	x := &listIndex{byID: make(map[string]int, len(list)), byName: make(map[string]int, 2*len(list))}
	for i, img := range list {
		x.byID[img.ID.String()] = i
		for _, t := range img.RepoTags {
			x.byName[t] = i
		}
		for _, d := range img.RepoDigests {
			x.byName[d] = i
		}
	}
	return x
}

// cached finds the image named by an image ID or a tag or digest
// reference in what List last read, when that is still valid. kubelet
// asks ImageStatus before each container it creates and lists the images
// every few seconds, so the records are usually there, decoded. A miss
// says nothing (prefixes, a stale cache): lookup reads the store.
func (s *Service) cached(name string) (meta.Image, bool) {
	id, isID := reference.LooksLikeImageID(name)
	s.listMu.Lock()
	defer s.listMu.Unlock()
	if s.list == nil || s.listGen != s.gen {
		return meta.Image{}, false
	}
	if s.index == nil {
		s.index = newListIndex(s.list)
	}
	if isID {
		if i, ok := s.index.byID[id.String()]; ok {
			return s.list[i], true
		}
	}
	// The records hold normalized references: a name given that way
	// needs no parsing.
	if i, ok := s.index.byName[name]; ok {
		return s.list[i], true
	}
	ref, err := reference.Parse(name)
	if err != nil {
		return meta.Image{}, false
	}
	if i, ok := s.index.byName[ref.String()]; ok {
		return s.list[i], true
	}
	return meta.Image{}, false
}

// Get finds the image named by an image ID (full, or with its sha256:
// prefix), a tag reference or a digest reference, or by a unique prefix of
// an image ID of at least 12 characters.
//
// The record's slices may be shared with other callers and must not be
// modified.
func (s *Service) Get(ctx context.Context, name string) (meta.Image, error) {
	if img, ok := s.cached(name); ok {
		return img, nil
	}
	img, _, err := s.lookup(name)
	return img, err
}

type matchKind int

const (
	matchID matchKind = iota
	matchTag
	matchDigest
)

// lookup finds an image with one read of the metadata store's name index
// (or of the record, by ID); it never decodes every record, as kubelet
// asks for an image's status before each container it creates.
func (s *Service) lookup(name string) (meta.Image, matchKind, error) {
	if name == "" {
		return meta.Image{}, 0, fmt.Errorf("%w: empty image name", reference.ErrInvalid)
	}
	if id, ok := reference.LooksLikeImageID(name); ok {
		img, err := s.db.GetImage(id)
		if err == nil {
			return img, matchID, nil
		}
		if !errors.Is(err, meta.ErrNotFound) {
			return meta.Image{}, 0, err
		}
	}
	ref, perr := reference.Parse(name)
	if perr == nil {
		img, err := s.db.ImageByName(ref.String())
		if err == nil {
			if ref.Digest() != "" {
				return img, matchDigest, nil
			}
			return img, matchTag, nil
		}
		if !errors.Is(err, meta.ErrNotFound) {
			return meta.Image{}, 0, err
		}
	}
	if hex := strings.TrimPrefix(name, "sha256:"); len(hex) >= 12 && isHex(hex) {
		found, err := s.db.ImagesByIDPrefix("sha256:"+hex, 2)
		if err != nil {
			return meta.Image{}, 0, err
		}
		if len(found) == 1 {
			return found[0], matchID, nil
		}
		if len(found) > 1 {
			return meta.Image{}, 0, fmt.Errorf("%w: image ID prefix %q is ambiguous", reference.ErrInvalid, name)
		}
	}
	if perr != nil {
		if _, ok := reference.LooksLikeImageID(name); !ok {
			return meta.Image{}, 0, perr
		}
	}
	return meta.Image{}, 0, fmt.Errorf("%w: %s", ErrNotFound, name)
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Config reads the image's OCI config from the content store.
func (s *Service) Config(ctx context.Context, img meta.Image) (ocispec.Image, error) {
	var cfg ocispec.Image
	if img.ArtifactType != "" {
		return cfg, fmt.Errorf("image %s is %w (%s)", img.ID, ErrArtifact, img.ArtifactType)
	}
	b, err := s.content.ReadAll(ctx, img.ID, s.pulls().maxManifestSize)
	if err != nil {
		return cfg, fmt.Errorf("read config of image %s: %w", img.ID, err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("decode config of image %s: %w", img.ID, err)
	}
	return cfg, nil
}

// RemoveOption is an optional setting of Remove.
type RemoveOption func(*removeOptions)

type removeOptions struct {
	keep func(meta.Image) error
}

// KeepIf refuses the removal of an image, not of one of its tags, when
// keep returns an error (which Remove returns): an image a container
// mounts stays, while removing one of its several tags only untags it.
func KeepIf(keep func(meta.Image) error) RemoveOption {
	return func(o *removeOptions) { o.keep = keep }
}

// Remove deletes the image named by name. Naming it by one of several
// tags only removes that tag; naming it by ID, digest or its last tag
// removes the image, and a GC pass soon after frees what no other image
// uses. An unknown image is not an error, as kubelet expects.
func (s *Service) Remove(ctx context.Context, name string, opts ...RemoveOption) error {
	var o removeOptions
	for _, opt := range opts {
		opt(&o)
	}
	img, kind, err := s.lookup(name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if kind == matchTag && len(img.RepoTags) > 1 {
		ref, _ := reference.Parse(name)
		defer s.written()
		err := s.db.UpdateImage(img.ID, func(i *meta.Image) error {
			out := i.RepoTags[:0]
			for _, t := range i.RepoTags {
				if t != ref.String() {
					out = append(out, t)
				}
			}
			i.RepoTags = out
			return nil
		})
		if err != nil && !errors.Is(err, meta.ErrNotFound) {
			return fmt.Errorf("untag %s: %w", name, err)
		}
		klog.V(2).InfoS("Untagged image", "image", img.ID, "tag", ref.String())
		return nil
	}
	if o.keep != nil {
		if err := o.keep(img); err != nil {
			return err
		}
	}
	err = s.db.DeleteImage(img.ID)
	s.written()
	if err != nil {
		return fmt.Errorf("remove image %s: %w", img.ID, err)
	}
	klog.V(2).InfoS("Removed image", "image", img.ID, "tags", img.RepoTags)
	// What only this image held goes with the next GC pass, which a
	// batch of removals shares.
	s.ScheduleGC()
	return nil
}

// FsUsage reports the bytes and inodes the images use on disk: committed
// snapshots plus the content store, and the directory they live in. Both
// are totals their stores keep as content comes and goes, so kubelet's
// polling costs no disk access however many images there are.
func (s *Service) FsUsage(ctx context.Context) (mountpoint string, bytes, inodes int64, err error) {
	cb, ci, err := s.content.Usage(ctx)
	if err != nil {
		return "", 0, 0, fmt.Errorf("content usage: %w", err)
	}
	su := s.snap.CommittedUsage()
	return s.snap.Root(), su.Size + cb, su.Inodes + ci, nil
}
