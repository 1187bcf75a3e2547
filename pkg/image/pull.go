package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/reference"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/content"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// Media types of the Docker schema 2 family, which OCI did not define.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerSchema1      = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1Sig   = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// downloadAttempts is how often one blob download is resumed after the
// stream broke before the pull gives up.
const downloadAttempts = 4

// Pull fetches the image named by name into the node and returns its
// record. Layers download concurrently and unpack in order as they arrive.
func (s *Service) Pull(ctx context.Context, name string, creds registry.Credentials) (meta.Image, error) {
	ref, err := reference.Parse(name)
	if err != nil {
		return meta.Image{}, err
	}
	start := time.Now()
	img, err := s.pull(ctx, ref, creds)
	if err != nil {
		// A failed pull may have committed some layers and blobs no image
		// will use; the next GC pass takes them. Only partial downloads
		// stay, for the next pull to resume.
		s.ScheduleGC()
		return meta.Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	klog.V(2).InfoS("Pulled image", "ref", ref.String(), "image", img.ID, "size", img.Size, "duration", time.Since(start))
	return img, nil
}

func (s *Service) pull(ctx context.Context, ref reference.Ref, creds registry.Credentials) (meta.Image, error) {
	lease := s.newLease()
	defer lease.release()

	tResolve := time.Now()
	repo, err := s.pulls().registry.Repository(ctx, ref.Named(), creds)
	if err != nil {
		return meta.Image{}, err
	}
	desc, err := repo.Resolve(ctx, ref.Named())
	if err != nil {
		return meta.Image{}, err
	}
	lease.add(desc.Digest.String())
	body, err := s.fetchManifest(ctx, repo, desc)
	if err != nil {
		return meta.Image{}, err
	}
	blobs := []digest.Digest{desc.Digest}

	manifestDesc := desc
	mediaType := detectMediaType(desc.MediaType, body)
	switch mediaType {
	case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
		manifestDesc, err = registry.SelectPlatform(body, s.platform)
		if err != nil {
			return meta.Image{}, err
		}
		lease.add(manifestDesc.Digest.String())
		if body, err = s.fetchManifest(ctx, repo, manifestDesc); err != nil {
			return meta.Image{}, err
		}
		blobs = append(blobs, manifestDesc.Digest)
		mediaType = detectMediaType(manifestDesc.MediaType, body)
	}
	switch mediaType {
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
	case mediaTypeDockerSchema1, mediaTypeDockerSchema1Sig:
		return meta.Image{}, fmt.Errorf("%w: Docker schema 1 manifests are not supported; push the image again with a current client", registry.ErrSchema1)
	default:
		return meta.Image{}, fmt.Errorf("%w: manifest %s has unsupported media type %q", ErrInvalidImage, manifestDesc.Digest, mediaType)
	}
	manifest, err := parseManifest(body, manifestDesc.Digest)
	if err != nil {
		return meta.Image{}, err
	}
	if kind := artifactKind(manifest); kind != "" {
		return s.pullArtifact(ctx, lease, repo, ref, desc, manifestDesc, manifest, kind, blobs, tResolve)
	}
	lease.add(manifest.Config.Digest.String())
	cfgBytes, err := s.fetchConfig(ctx, repo, manifest.Config)
	if err != nil {
		return meta.Image{}, err
	}
	cfg, err := parseConfig(cfgBytes, manifest)
	if err != nil {
		return meta.Image{}, err
	}
	chainIDs := ChainIDs(cfg.RootFS.DiffIDs)
	for i := range chainIDs {
		lease.add(manifest.Layers[i].Digest.String(), chainIDs[i].String())
	}
	tLayers := time.Now()
	s.telemetry.PullPhase(ctx, "resolve", tResolve, tLayers)
	b := newBudget(s.pulls().maxUncompressed)
	err = s.fetchLayers(ctx, repo, manifest.Layers, chainIDs, func(ctx context.Context, i int, parent digest.Digest) error {
		return s.unpack(ctx, manifest.Layers[i], cfg.RootFS.DiffIDs[i], chainIDs[i], parent, b)
	})
	if err != nil {
		return meta.Image{}, err
	}
	tRecord := time.Now()
	s.telemetry.PullPhase(ctx, "layers", tLayers, tRecord)
	defer func() { s.telemetry.PullPhase(ctx, "record", tRecord, time.Now()) }()

	return s.save(s.newRecord(manifestDesc.Digest, manifest, cfg, blobs, pullTags(ref), []string{ref.RepoDigest(desc.Digest)}), ref)
}

// pullTags are the RepoTags a pull of ref gives its image.
func pullTags(ref reference.Ref) []string {
	if ref.Tag() == "" {
		return nil
	}
	return []string{ref.String()}
}

// save writes the record of a pulled image (its tag moves to it) and
// returns it as stored.
func (s *Service) save(img meta.Image, ref reference.Ref) (meta.Image, error) {
	untagged, err := s.db.SaveImage(img)
	s.written()
	if err != nil {
		return meta.Image{}, fmt.Errorf("save image record: %w", err)
	}
	for _, id := range untagged {
		klog.V(2).InfoS("Tag moved to another image", "tag", ref.String(), "from", id, "to", img.ID)
	}
	return s.db.GetImage(img.ID)
}

// newRecord is the image record of an unpacked manifest; blobs are the
// index and manifest blobs that led to it (config and layers are added).
func (s *Service) newRecord(manifestDigest digest.Digest, manifest ocispec.Manifest, cfg ocispec.Image, blobs []digest.Digest, tags, repoDigests []string) meta.Image {
	size := manifest.Config.Size
	blobs = append(blobs, manifest.Config.Digest)
	for _, l := range manifest.Layers {
		size += l.Size
		blobs = append(blobs, l.Digest)
	}
	img := meta.Image{
		ID:          manifest.Config.Digest,
		Manifest:    manifestDigest,
		RepoTags:    tags,
		RepoDigests: repoDigests,
		Size:        size,
		ChainIDs:    ChainIDs(cfg.RootFS.DiffIDs),
		Blobs:       blobs,
		Snapshotter: s.snap.Name(),
		User:        cfg.Config.User,
		Created:     time.Now().UTC(),
	}
	if old, err := s.db.GetImage(img.ID); err == nil {
		// Keep blobs of earlier pulls through other indexes alive too.
		img.Blobs = unionDigests(old.Blobs, img.Blobs)
	}
	return img
}

func unionDigests(a, b []digest.Digest) []digest.Digest {
	seen := map[digest.Digest]bool{}
	var out []digest.Digest
	for _, l := range [][]digest.Digest{a, b} {
		for _, d := range l {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	return out
}

// parseManifest decodes an image manifest from a registry and checks what
// the pull relies on: valid digests and sane sizes.
func parseManifest(body []byte, dgst digest.Digest) (ocispec.Manifest, error) {
	var manifest ocispec.Manifest
	if err := json.Unmarshal(body, &manifest); err != nil {
		return manifest, fmt.Errorf("%w: decode manifest %s: %v", ErrInvalidImage, dgst, err)
	}
	if err := manifest.Config.Digest.Validate(); err != nil {
		return manifest, fmt.Errorf("%w: manifest %s: config digest: %v", ErrInvalidImage, dgst, err)
	}
	if manifest.Config.Size < 0 {
		return manifest, fmt.Errorf("%w: manifest %s: negative config size", ErrInvalidImage, dgst)
	}
	if len(manifest.Layers) > maxLayers {
		return manifest, fmt.Errorf("%w: manifest %s has %d layers, more than %d", ErrInvalidImage, dgst, len(manifest.Layers), maxLayers)
	}
	for i, l := range manifest.Layers {
		if err := l.Digest.Validate(); err != nil {
			return manifest, fmt.Errorf("%w: manifest %s: layer %d digest: %v", ErrInvalidImage, dgst, i, err)
		}
		if l.Size < 0 {
			return manifest, fmt.Errorf("%w: manifest %s: layer %s has negative size", ErrInvalidImage, dgst, l.Digest)
		}
	}
	return manifest, nil
}

// parseConfig decodes an image config and checks it against its manifest.
func parseConfig(b []byte, manifest ocispec.Manifest) (ocispec.Image, error) {
	var cfg ocispec.Image
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("%w: decode config %s: %v", ErrInvalidImage, manifest.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(manifest.Layers) {
		return cfg, fmt.Errorf("%w: config %s lists %d diff IDs for %d layers", ErrInvalidImage, manifest.Config.Digest, len(cfg.RootFS.DiffIDs), len(manifest.Layers))
	}
	for i, d := range cfg.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return cfg, fmt.Errorf("%w: config %s: diff ID %d: %v", ErrInvalidImage, manifest.Config.Digest, i, err)
		}
	}
	return cfg, nil
}

// maxLayers bounds a manifest's layer list: overlay cannot stack more
// than a few hundred lower directories anyway.
const maxLayers = 500

// ChainIDs computes the chain ID of each layer from the diff IDs, as the
// OCI image spec defines it: a layer's snapshot is identified by the whole
// stack under it, so shared bases are stored once.
func ChainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(out[i-1].String() + " " + d.String())
	}
	return out
}

// detectMediaType trusts the manifest's own mediaType field over the
// registry's Content-Type, which some registries get wrong.
func detectMediaType(fromRegistry string, body []byte) string {
	var probe struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
		Config        json.RawMessage `json:"config"`
		FSLayers      json.RawMessage `json:"fsLayers"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return fromRegistry
	}
	switch {
	case probe.MediaType != "":
		return probe.MediaType
	case probe.SchemaVersion == 1 || probe.FSLayers != nil:
		return mediaTypeDockerSchema1
	case probe.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	case probe.Config != nil:
		return ocispec.MediaTypeImageManifest
	}
	return fromRegistry
}

// fetchManifest returns the manifest bytes, from the content store when a
// previous pull stored them, else from the registry (which verifies them).
func (s *Service) fetchManifest(ctx context.Context, repo *registry.Repository, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > s.pulls().maxManifestSize {
		return nil, fmt.Errorf("manifest %s is %d bytes, over the %d limit: %w", desc.Digest, desc.Size, s.pulls().maxManifestSize, registry.ErrTooLarge)
	}
	if b, err := s.content.ReadAll(ctx, desc.Digest, s.pulls().maxManifestSize); err == nil {
		return b, nil
	}
	b, err := repo.FetchManifest(ctx, desc)
	if err != nil {
		return nil, err
	}
	if err := s.storeSmall(ctx, desc.Digest, b); err != nil {
		return nil, err
	}
	return b, nil
}

// fetchConfig downloads an image config, bounded by the manifest size limit.
func (s *Service) fetchConfig(ctx context.Context, repo *registry.Repository, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > s.pulls().maxManifestSize {
		return nil, fmt.Errorf("image config %s is %d bytes, over the %d limit: %w", desc.Digest, desc.Size, s.pulls().maxManifestSize, registry.ErrTooLarge)
	}
	if b, err := s.content.ReadAll(ctx, desc.Digest, s.pulls().maxManifestSize); err == nil {
		return b, nil
	}
	rc, err := repo.FetchBlob(ctx, desc, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, s.pulls().maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("read image config %s: %w", desc.Digest, err)
	}
	if int64(len(b)) > s.pulls().maxManifestSize {
		return nil, fmt.Errorf("image config %s is over the %d byte limit: %w", desc.Digest, s.pulls().maxManifestSize, registry.ErrTooLarge)
	}
	if got := digest.FromBytes(b); got != desc.Digest || (desc.Size > 0 && int64(len(b)) != desc.Size) {
		return nil, fmt.Errorf("image config %s: got %s (%d bytes): %w", desc.Digest, got, len(b), registry.ErrDigestMismatch)
	}
	if err := s.storeSmall(ctx, desc.Digest, b); err != nil {
		return nil, err
	}
	return b, nil
}

func (s *Service) storeSmall(ctx context.Context, dgst digest.Digest, b []byte) error {
	w, err := s.content.Writer(ctx, dgst.String(), dgst, int64(len(b)))
	if errors.Is(err, content.ErrExists) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store %s: %w", dgst, err)
	}
	defer w.Close()
	if err := w.Truncate(0); err != nil {
		return fmt.Errorf("store %s: %w", dgst, err)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("store %s: %w", dgst, err)
	}
	if err := w.Commit(ctx); err != nil {
		return fmt.Errorf("store %s: %w", dgst, err)
	}
	return nil
}

// fetchLayers downloads the layers that are missing (at most
// maxDownloads at once) and unpacks each in order as soon as it and the
// layers below it are there: unpack(i, parent) makes snapshot chainIDs[i]
// on parent, once per chain ID however many pulls want it. The first layer that fails cancels every
// other download, so a refused or corrupt layer fails the pull at once
// instead of after the rest of the image (possibly gigabytes) arrived.
func (s *Service) fetchLayers(ctx context.Context, repo *registry.Repository, layers []ocispec.Descriptor, chainIDs []digest.Digest, unpack func(ctx context.Context, i int, parent digest.Digest) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	// One deferred call, cancel before wait: the downloads still running
	// must see the cancellation, or Wait waits for them to finish.
	defer func() {
		cancel(nil)
		wg.Wait()
	}()

	type job struct {
		done chan struct{}
		err  error
	}
	jobs := make([]*job, len(layers))
	sem := make(chan struct{}, s.pulls().maxDownloads)
	for i, l := range layers {
		j := &job{done: make(chan struct{})}
		jobs[i] = j
		if s.snapshotExists(ctx, chainIDs[i]) {
			close(j.done)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(j.done)
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				j.err = context.Cause(ctx)
				return
			}
			defer func() { <-sem }()
			j.err = s.blobs.do(ctx, l.Digest.String(), func(ctx context.Context) error {
				return s.download(ctx, repo, l)
			})
			if j.err != nil && ctx.Err() == nil {
				cancel(fmt.Errorf("layer %s: %w", l.Digest, j.err))
			}
		}()
	}
	for i, l := range layers {
		select {
		case <-jobs[i].done:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if err := jobs[i].err; err != nil {
			if ctx.Err() != nil {
				// Cancelled because another layer failed (or the caller
				// went away): that is the error to report.
				return context.Cause(ctx)
			}
			return fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		var parent digest.Digest
		if i > 0 {
			parent = chainIDs[i-1]
		}
		err := s.unpacks.do(ctx, chainIDs[i].String(), func(ctx context.Context) error {
			return unpack(ctx, i, parent)
		})
		if err != nil {
			return fmt.Errorf("unpack layer %s: %w", l.Digest, err)
		}
	}
	return nil
}

func (s *Service) snapshotExists(ctx context.Context, chainID digest.Digest) bool {
	info, err := s.snap.Stat(ctx, chainID.String())
	return err == nil && info.Kind == snapshot.KindCommitted
}

// download brings one blob into the content store, resuming a partial
// ingest left by an earlier attempt or an earlier pull.
func (s *Service) download(ctx context.Context, repo *registry.Repository, desc ocispec.Descriptor) error {
	var lastErr error
	for attempt := 0; attempt < downloadAttempts; attempt++ {
		done, err := s.downloadOnce(ctx, repo, desc)
		if done || err == nil {
			return err
		}
		lastErr = err
		if ctx.Err() != nil || errors.Is(err, ErrPullStuck) || !resumable(err) {
			return err
		}
		klog.V(3).InfoS("Resuming interrupted download", "digest", desc.Digest, "attempt", attempt+1, "err", err)
	}
	return lastErr
}

// resumable tells a broken stream (worth resuming) from a refusal.
func resumable(err error) bool {
	switch {
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrUnauthorized),
		errors.Is(err, content.ErrDigestMismatch), errors.Is(err, content.ErrSizeMismatch),
		errors.Is(err, registry.ErrDigestMismatch), errors.Is(err, registry.ErrTooLarge):
		return false
	}
	return true
}

// downloadOnce returns done=true when the blob is committed (or already was).
func (s *Service) downloadOnce(ctx context.Context, repo *registry.Repository, desc ocispec.Descriptor) (bool, error) {
	w, err := s.content.Writer(ctx, desc.Digest.String(), desc.Digest, desc.Size)
	if errors.Is(err, content.ErrExists) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("open ingest: %w", err)
	}
	defer w.Close()
	offset := w.Offset()
	if desc.Size > 0 && offset > desc.Size {
		if err := w.Truncate(0); err != nil {
			return false, err
		}
		offset = 0
	}
	if desc.Size > 0 && offset == desc.Size {
		return true, w.Commit(ctx)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rc, err := repo.FetchBlob(ctx, desc, offset)
	if err != nil {
		return false, progressErr(ctx, err, s.pulls().progressTimeout)
	}
	defer rc.Close()

	pr := &progressReader{r: rc}
	pr.touch()
	stopWatch := s.watchProgress(ctx, cancel, pr)
	limit := io.Reader(pr)
	if desc.Size > 0 {
		// Never store more than the manifest promised: an endless body
		// fails at commit instead of filling the disk.
		limit = io.LimitReader(pr, desc.Size-offset+1)
	}
	n, err := io.Copy(w, limit)
	stopWatch()
	s.telemetry.PulledBytes(n)
	if err != nil {
		return false, progressErr(ctx, fmt.Errorf("download %s (from byte %d): %w", desc.Digest, offset, err), s.pulls().progressTimeout)
	}
	if err := w.Commit(ctx); err != nil {
		return true, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	return true, nil
}

func progressErr(ctx context.Context, err error, timeout time.Duration) error {
	if errors.Is(context.Cause(ctx), ErrPullStuck) {
		return fmt.Errorf("%w: no bytes received for %v", ErrPullStuck, timeout)
	}
	return err
}

type progressReader struct {
	r    io.Reader
	last atomic.Int64
}

func (p *progressReader) touch() { p.last.Store(time.Now().UnixNano()) }

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.touch()
	}
	return n, err
}

// watchProgress cancels the download when no byte arrived for the
// progress timeout. The returned func stops the watcher and waits for it.
func (s *Service) watchProgress(ctx context.Context, cancel context.CancelCauseFunc, pr *progressReader) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	tick := s.pulls().progressTimeout / 10
	if tick > time.Second {
		tick = time.Second
	}
	if tick < time.Millisecond {
		tick = time.Millisecond
	}
	go func() {
		defer close(done)
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if time.Since(time.Unix(0, pr.last.Load())) > s.pulls().progressTimeout {
					cancel(ErrPullStuck)
					return
				}
			}
		}
	}()
	return func() { close(stop); <-done }
}

// unpack applies one layer on top of its parent snapshot and commits it as
// chainID, checking the uncompressed bytes against the config's diff ID
// and counting them against the pull's budget.
func (s *Service) unpack(ctx context.Context, desc ocispec.Descriptor, diffID, chainID, parent digest.Digest, b *budget) error {
	return s.commitLayer(ctx, desc, chainID, parent, func(key string, blob *os.File) error {
		r, closeDec, err := decompress(bufio.NewReaderSize(blob, 64<<10))
		if err != nil {
			return err
		}
		defer closeDec()
		d := digest.SHA256.Digester()
		tee := io.TeeReader(b.limit(r), d.Hash())
		if _, err := s.snap.Apply(ctx, key, tee); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		// The diff ID covers the whole uncompressed stream, tar padding too.
		if _, err := io.Copy(io.Discard, tee); err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		if got := d.Digest(); got != diffID {
			return fmt.Errorf("%w: uncompressed layer %s has digest %s, config says %s", ErrInvalidImage, desc.Digest, got, diffID)
		}
		return nil
	})
}

// commitLayer makes snapshot chainID on parent from layer desc: apply
// writes the blob's content into the active snapshot key, which is then
// committed, or removed when anything failed. Nothing is done when the
// snapshot exists.
func (s *Service) commitLayer(ctx context.Context, desc ocispec.Descriptor, chainID, parent digest.Digest, apply func(key string, blob *os.File) error) (retErr error) {
	if s.snapshotExists(ctx, chainID) {
		return nil
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	key := "extract-" + hex.EncodeToString(rnd[:]) + "-" + chainID.Encoded()
	// The unpack is shared between pulls, so it holds its own lease.
	l := s.newLease()
	defer l.release()
	l.add(key)
	if _, err := s.snap.Prepare(ctx, key, parent.String()); err != nil {
		return fmt.Errorf("prepare snapshot: %w", err)
	}
	defer func() {
		if retErr != nil {
			if err := s.snap.Remove(context.WithoutCancel(ctx), key); err != nil && !errors.Is(err, snapshot.ErrNotFound) {
				klog.ErrorS(err, "Removing failed unpack snapshot", "key", key)
			}
		}
	}()
	f, err := s.content.Open(ctx, desc.Digest)
	if err != nil {
		return fmt.Errorf("open blob: %w", err)
	}
	defer f.Close()
	if err := apply(key, f); err != nil {
		return err
	}
	if err := s.snap.Commit(ctx, chainID.String(), key); err != nil {
		if errors.Is(err, snapshot.ErrAlreadyExists) {
			return s.snap.Remove(ctx, key)
		}
		return fmt.Errorf("commit snapshot: %w", err)
	}
	return nil
}

// decompress picks the decoder by the stream's magic bytes rather than
// the media type, which registries and tools sometimes get wrong.
func decompress(br *bufio.Reader) (io.Reader, func(), error) {
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("read layer: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip layer: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd layer: %w", err)
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}
