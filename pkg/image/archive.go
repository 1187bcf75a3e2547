package image

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/reference"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/content"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// ErrInvalidArchive means an image archive is malformed or hostile: an
// entry outside the archive, a blob whose bytes do not match its digest,
// a truncated stream, a blob an image needs that is not there.
var ErrInvalidArchive = errors.New("invalid image archive")

// Annotations naming an image in an OCI layout's index.json: containerd
// writes the full reference in the first, the OCI spec the second (often
// only a tag, which names nothing on its own).
const (
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = ocispec.AnnotationRefName
)

// archive is what an import read from the stream: every blob it
// committed to the content store, by entry name, and the small metadata
// files (index.json, manifest.json, legacy configs), by entry name.
type archive struct {
	blobs map[string]digest.Digest
	small map[string][]byte
	// links are symbolic and hard links between entries (`docker save`
	// links a layer shared by two images), resolved once all are read.
	links map[string]string
}

// Import reads an image archive from r — an OCI image layout or a
// `docker save` archive, each as a tar stream, plain, gzip or zstd —
// and records every image in it. Each blob goes through the content
// store's verified commit (digest and size checked, as in a pull) and
// each layer through the same unpack, checked against the config's diff
// IDs. The images are recorded in one transaction once all of them are
// unpacked: a failed import records nothing, and the next GC pass takes
// what it had stored.
func (s *Service) Import(ctx context.Context, r io.Reader) ([]meta.Image, error) {
	start := time.Now()
	lease := s.newLease()
	defer lease.release()
	imgs, err := s.importArchive(ctx, r, lease)
	if err != nil {
		s.ScheduleGC()
		return nil, fmt.Errorf("import: %w", err)
	}
	for _, img := range imgs {
		klog.V(2).InfoS("Imported image", "image", img.ID, "tags", img.RepoTags, "size", img.Size, "duration", time.Since(start))
	}
	return imgs, nil
}

func (s *Service) importArchive(ctx context.Context, r io.Reader, lease *lease) ([]meta.Image, error) {
	stream, closeDec, err := decompress(bufio.NewReaderSize(r, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidArchive, err)
	}
	defer closeDec()
	a, err := s.readArchive(ctx, stream, lease)
	if err != nil {
		return nil, err
	}
	var found []archiveImage
	switch {
	case a.small["manifest.json"] != nil:
		found, err = s.dockerImages(ctx, a, lease)
	case a.small["index.json"] != nil:
		found, err = s.ociImages(ctx, a, lease)
	default:
		err = fmt.Errorf("%w: neither index.json (OCI image layout) nor manifest.json (docker save) in the archive", ErrInvalidArchive)
	}
	if err != nil {
		return nil, err
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("%w: the archive names no image", ErrInvalidArchive)
	}
	var records []meta.Image
	for _, ai := range found {
		img, err := s.unpackImported(ctx, ai, lease)
		if err != nil {
			return nil, err
		}
		records = append(records, img)
	}
	untagged, err := s.db.SaveImages(records)
	s.written()
	if err != nil {
		return nil, fmt.Errorf("save image records: %w", err)
	}
	for _, id := range untagged {
		klog.V(2).InfoS("Tag moved to an imported image", "from", id)
	}
	out := make([]meta.Image, 0, len(records))
	for _, img := range records {
		rec, err := s.db.GetImage(img.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// readArchive reads every entry: blobs into the content store, metadata
// files into memory. Entry names are checked before anything else, so a
// name escaping the archive fails the import even though nothing is
// written at a path taken from the archive.
func (s *Service) readArchive(ctx context.Context, stream io.Reader, lease *lease) (*archive, error) {
	// The tar reader takes the end of the stream for the end of the
	// archive; the stream ending before the end-of-archive blocks is a
	// truncated archive.
	er := &eofReader{r: stream}
	tr := tar.NewReader(er)
	a := &archive{blobs: map[string]digest.Digest{}, small: map[string][]byte{}, links: map[string]string{}}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	ingest := "import-" + hex.EncodeToString(rnd[:])
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if n == 0 {
				return nil, fmt.Errorf("%w: empty archive", ErrInvalidArchive)
			}
			if er.eof {
				return nil, fmt.Errorf("%w: the stream ends after %d entries without the end of the archive (the archive is truncated)", ErrInvalidArchive, n)
			}
			return a, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: after %d entries: %v%s", ErrInvalidArchive, n, err, truncated(err))
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return nil, err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
		case tar.TypeSymlink, tar.TypeLink:
			target := hdr.Linkname
			if hdr.Typeflag == tar.TypeSymlink && !path.IsAbs(target) {
				target = path.Join(path.Dir(name), target)
			}
			if a.links[name], err = entryName(target); err != nil {
				return nil, fmt.Errorf("%w (link target of %q)", err, name)
			}
		case tar.TypeReg:
			if err := s.readEntry(ctx, a, tr, hdr, name, fmt.Sprintf("%s-%d", ingest, n), lease); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: entry %q is of type %q, not a file, directory or link", ErrInvalidArchive, name, hdr.Typeflag)
		}
	}
}

// entryName cleans an archive entry's name and refuses one that leaves
// the archive.
func entryName(raw string) (string, error) {
	if path.IsAbs(raw) {
		return "", fmt.Errorf("%w: entry %q has an absolute path", ErrInvalidArchive, raw)
	}
	name := path.Clean(raw)
	if name == ".." || strings.HasPrefix(name, "../") {
		return "", fmt.Errorf("%w: entry %q points outside the archive", ErrInvalidArchive, raw)
	}
	return name, nil
}

// eofReader notes whether its reader reached its end.
type eofReader struct {
	r   io.Reader
	eof bool
}

func (e *eofReader) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	// Some decompressors return the last bytes with io.EOF: only a
	// read that finds nothing more tells that the stream ended early.
	if n == 0 && errors.Is(err, io.EOF) {
		e.eof = true
	}
	return n, err
}

// truncated explains an unexpected end of the stream.
func truncated(err error) string {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return " (the archive is truncated)"
	}
	return ""
}

// isMetadata tells the small files read into memory from the blobs.
func isMetadata(name string) bool {
	switch base := path.Base(name); {
	case name == "index.json", name == "manifest.json", name == "oci-layout", name == "repositories":
		return true
	case strings.HasPrefix(name, "blobs/"):
		return false
	case base == "json", base == "VERSION", strings.HasSuffix(base, ".json"):
		return true
	}
	return false
}

func (s *Service) readEntry(ctx context.Context, a *archive, tr *tar.Reader, hdr *tar.Header, name, ingest string, lease *lease) error {
	if isMetadata(name) {
		limit := s.pulls().maxManifestSize
		if hdr.Size > limit {
			return fmt.Errorf("%w: entry %q is %d bytes, over the %d byte limit of metadata", ErrInvalidArchive, name, hdr.Size, limit)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return fmt.Errorf("%w: entry %q: %v%s", ErrInvalidArchive, name, err, truncated(err))
		}
		a.small[name] = b
		return nil
	}
	// blobs/<algorithm>/<encoded> names its digest; anything else (a
	// legacy docker layer.tar) is stored under the digest of its bytes.
	var expected digest.Digest
	if parts := strings.Split(name, "/"); len(parts) == 3 && parts[0] == "blobs" {
		expected = digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[2])
		if err := expected.Validate(); err != nil {
			return fmt.Errorf("%w: entry %q is not named by a digest: %v", ErrInvalidArchive, name, err)
		}
		// Leased before the store is asked, so that a GC pass cannot
		// take a blob this import found already there.
		lease.add(expected.String())
	}
	d, err := s.storeEntry(ctx, tr, ingest, expected, hdr.Size)
	if err != nil {
		return fmt.Errorf("entry %q: %w", name, err)
	}
	if expected == "" {
		lease.add(d.String())
	}
	a.blobs[name] = d
	return nil
}

// storeEntry commits one archive entry to the content store, verified
// against expected (when the entry's name gave it) and its size.
func (s *Service) storeEntry(ctx context.Context, r io.Reader, ingest string, expected digest.Digest, size int64) (digest.Digest, error) {
	w, err := s.content.Writer(ctx, ingest, expected, size)
	if errors.Is(err, content.ErrExists) {
		// The store's copy was verified when it was committed. The
		// archive's is read through all the same (a tar stream is read to
		// reach the next entry), so hashing it costs only the hash: an
		// archive with a corrupt copy fails here as it does on a node
		// without the blob, instead of importing only where the blob is.
		return expected, verifyEntry(r, expected, size)
	}
	if err != nil {
		return "", err
	}
	committed := false
	defer func() {
		if !committed {
			w.Close()
			// An import is not resumed: its partial bytes go now.
			if err := s.content.Abort(context.WithoutCancel(ctx), ingest); err != nil && !errors.Is(err, content.ErrNotFound) {
				klog.ErrorS(err, "Dropping the ingest of a failed import", "ref", ingest)
			}
		}
	}()
	if err := w.Truncate(0); err != nil {
		return "", err
	}
	n, err := io.Copy(w, r)
	if err != nil {
		return "", fmt.Errorf("%w: %v%s", ErrInvalidArchive, err, truncated(err))
	}
	if n != size {
		return "", fmt.Errorf("%w: %d bytes where the header says %d", ErrInvalidArchive, n, size)
	}
	d := w.Digest()
	if err := w.Commit(ctx); err != nil {
		if errors.Is(err, content.ErrDigestMismatch) || errors.Is(err, content.ErrSizeMismatch) {
			return "", fmt.Errorf("%w: %v", ErrInvalidArchive, err)
		}
		return "", err
	}
	committed = true
	return d, nil
}

// verifyEntry reads an entry whose blob the store already has and checks
// its bytes against the digest its name gives and the header's size.
func verifyEntry(r io.Reader, expected digest.Digest, size int64) error {
	dg := expected.Algorithm().Digester()
	n, err := io.Copy(dg.Hash(), r)
	if err != nil {
		return fmt.Errorf("%w: %v%s", ErrInvalidArchive, err, truncated(err))
	}
	if n != size {
		return fmt.Errorf("%w: %d bytes where the header says %d", ErrInvalidArchive, n, size)
	}
	if got := dg.Digest(); got != expected {
		return fmt.Errorf("%w: expected %s, got %s (the store has the blob; this copy of it is corrupt): %w", ErrInvalidArchive, expected, got, content.ErrDigestMismatch)
	}
	return nil
}

// archiveImage is one image an archive names: its manifest (already in
// the content store) and the names it is imported under.
type archiveImage struct {
	blobs    []digest.Digest // index (if any) and manifest
	manifest ocispec.Descriptor
	tags     []string
	digests  []string
}

// resolve follows links to the blob an entry name stands for.
func (a *archive) resolve(name string) (digest.Digest, bool) {
	for i := 0; i < 16; i++ {
		if d, ok := a.blobs[name]; ok {
			return d, true
		}
		next, ok := a.links[name]
		if !ok {
			return "", false
		}
		name = next
	}
	return "", false
}

// ociImages reads an OCI image layout's index.json: each entry is an
// image manifest, or an index from which this node's platform is picked.
func (s *Service) ociImages(ctx context.Context, a *archive, lease *lease) ([]archiveImage, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(a.small["index.json"], &idx); err != nil {
		return nil, fmt.Errorf("%w: index.json: %v", ErrInvalidArchive, err)
	}
	var out []archiveImage
	for _, desc := range idx.Manifests {
		if err := desc.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("%w: index.json: manifest digest: %v", ErrInvalidArchive, err)
		}
		ai := archiveImage{blobs: []digest.Digest{desc.Digest}, manifest: desc}
		body, err := s.archiveBlob(ctx, desc, lease)
		if err != nil {
			return nil, err
		}
		switch detectMediaType(desc.MediaType, body) {
		case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
			if ai.manifest, err = registry.SelectPlatform(body, s.platform); err != nil {
				return nil, fmt.Errorf("%w: index %s: %v", ErrInvalidArchive, desc.Digest, err)
			}
			ai.blobs = append(ai.blobs, ai.manifest.Digest)
		}
		if name := imageName(desc.Annotations); name != "" {
			ref, err := reference.Parse(name)
			if err != nil {
				return nil, fmt.Errorf("%w: index.json names an image %q: %v", ErrInvalidArchive, name, err)
			}
			if ref.Tag() != "" {
				ai.tags = []string{ref.String()}
			}
			ai.digests = []string{ref.RepoDigest(desc.Digest)}
		}
		out = append(out, ai)
	}
	return out, nil
}

// imageName is the reference an index.json entry names, if any: the
// OCI ref.name annotation counts only when it is a whole name, not a
// bare tag.
func imageName(ann map[string]string) string {
	if n := ann[annotationImageName]; n != "" {
		return n
	}
	if n := ann[annotationRefName]; strings.ContainsAny(n, "/:") {
		return n
	}
	return ""
}

// dockerManifest is one entry of a `docker save` archive's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// dockerImages reads a `docker save` archive's manifest.json and writes
// each image an OCI manifest (stored like a pulled one), so that every
// image on the node has one, whatever it came from.
func (s *Service) dockerImages(ctx context.Context, a *archive, lease *lease) ([]archiveImage, error) {
	var entries []dockerManifest
	if err := json.Unmarshal(a.small["manifest.json"], &entries); err != nil {
		return nil, fmt.Errorf("%w: manifest.json: %v", ErrInvalidArchive, err)
	}
	var out []archiveImage
	for i, e := range entries {
		cfg, err := s.dockerConfig(ctx, a, e.Config, lease)
		if err != nil {
			return nil, fmt.Errorf("manifest.json entry %d: %w", i, err)
		}
		m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg}
		m.SchemaVersion = 2
		for _, l := range e.Layers {
			name, err := entryName(l)
			if err != nil {
				return nil, err
			}
			d, ok := a.resolve(name)
			if !ok {
				return nil, fmt.Errorf("%w: manifest.json entry %d: layer %q is not in the archive", ErrInvalidArchive, i, l)
			}
			info, err := s.content.Info(ctx, d)
			if err != nil {
				return nil, fmt.Errorf("layer %q: %w", l, err)
			}
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: info.Size})
		}
		body, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		md := digest.FromBytes(body)
		lease.add(md.String())
		if err := s.storeSmall(ctx, md, body); err != nil {
			return nil, err
		}
		ai := archiveImage{blobs: []digest.Digest{md}, manifest: ocispec.Descriptor{MediaType: m.MediaType, Digest: md, Size: int64(len(body))}}
		for _, t := range e.RepoTags {
			ref, err := reference.Parse(t)
			if err != nil {
				return nil, fmt.Errorf("%w: manifest.json entry %d: tag %q: %v", ErrInvalidArchive, i, t, err)
			}
			ai.tags = append(ai.tags, ref.String())
		}
		out = append(out, ai)
	}
	return out, nil
}

// dockerConfig finds an image config named by manifest.json: a blob of
// a newer archive, or a legacy `<hex>.json` whose name is its digest.
func (s *Service) dockerConfig(ctx context.Context, a *archive, raw string, lease *lease) (ocispec.Descriptor, error) {
	name, err := entryName(raw)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig}
	if d, ok := a.resolve(name); ok {
		info, err := s.content.Info(ctx, d)
		if err != nil {
			return desc, fmt.Errorf("config %q: %w", raw, err)
		}
		desc.Digest, desc.Size = d, info.Size
		return desc, nil
	}
	b, ok := a.small[name]
	if !ok {
		return desc, fmt.Errorf("%w: config %q is not in the archive", ErrInvalidArchive, raw)
	}
	desc.Digest, desc.Size = digest.FromBytes(b), int64(len(b))
	if want := strings.TrimSuffix(path.Base(name), ".json"); len(want) == 64 && want != desc.Digest.Encoded() {
		return desc, fmt.Errorf("%w: config %q has digest %s", ErrInvalidArchive, raw, desc.Digest)
	}
	lease.add(desc.Digest.String())
	if err := s.storeSmall(ctx, desc.Digest, b); err != nil {
		return desc, err
	}
	return desc, nil
}

// archiveBlob reads a manifest, index or config the archive stored,
// checking its size against the descriptor that named it.
func (s *Service) archiveBlob(ctx context.Context, desc ocispec.Descriptor, lease *lease) ([]byte, error) {
	lease.add(desc.Digest.String())
	if err := s.checkBlob(ctx, desc); err != nil {
		return nil, err
	}
	return s.content.ReadAll(ctx, desc.Digest, s.pulls().maxManifestSize)
}

// checkBlob fails unless desc's blob is in the content store (stored by
// this import or already there) with the size desc says.
func (s *Service) checkBlob(ctx context.Context, desc ocispec.Descriptor) error {
	info, err := s.content.Info(ctx, desc.Digest)
	if errors.Is(err, content.ErrNotFound) {
		return fmt.Errorf("%w: blob %s is missing", ErrInvalidArchive, desc.Digest)
	}
	if err != nil {
		return err
	}
	if desc.Size > 0 && info.Size != desc.Size {
		return fmt.Errorf("%w: blob %s is %d bytes, its descriptor says %d", ErrInvalidArchive, desc.Digest, info.Size, desc.Size)
	}
	return nil
}

// unpackImported checks one image's manifest and config and unpacks its
// layers as a pull does, and returns the record to save.
func (s *Service) unpackImported(ctx context.Context, ai archiveImage, lease *lease) (meta.Image, error) {
	body, err := s.archiveBlob(ctx, ai.manifest, lease)
	if err != nil {
		return meta.Image{}, err
	}
	switch mt := detectMediaType(ai.manifest.MediaType, body); mt {
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
	default:
		return meta.Image{}, fmt.Errorf("%w: manifest %s has unsupported media type %q", ErrInvalidArchive, ai.manifest.Digest, mt)
	}
	manifest, err := parseManifest(body, ai.manifest.Digest)
	if err != nil {
		return meta.Image{}, err
	}
	cfgBytes, err := s.archiveBlob(ctx, manifest.Config, lease)
	if err != nil {
		return meta.Image{}, err
	}
	cfg, err := parseConfig(cfgBytes, manifest)
	if err != nil {
		return meta.Image{}, err
	}
	chainIDs := ChainIDs(cfg.RootFS.DiffIDs)
	for i, l := range manifest.Layers {
		lease.add(l.Digest.String(), chainIDs[i].String())
		if err := s.checkBlob(ctx, l); err != nil {
			return meta.Image{}, fmt.Errorf("layer %d: %w", i, err)
		}
	}
	b := newBudget(s.pulls().maxUncompressed)
	for i, l := range manifest.Layers {
		var parent digest.Digest
		if i > 0 {
			parent = chainIDs[i-1]
		}
		err := s.unpacks.do(ctx, chainIDs[i].String(), func(ctx context.Context) error {
			return s.unpack(ctx, l, cfg.RootFS.DiffIDs[i], chainIDs[i], parent, b)
		})
		if err != nil {
			return meta.Image{}, fmt.Errorf("unpack layer %s: %w", l.Digest, err)
		}
	}
	return s.newRecord(ai.manifest.Digest, manifest, cfg, ai.blobs, ai.tags, ai.digests), nil
}
