package image

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/reference"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// OCI artifacts (image-spec 1.1's "guidelines for artifact usage") are
// manifests whose config is not an image config, or that name an
// artifactType: Helm charts, models, policy bundles. Nothing runs them;
// they are pulled to be mounted as image volumes (KEP-4639), as CRI-O
// does. Each layer becomes part of a snapshot chain, as an image's
// layers do, so an image volume mounts an artifact exactly as an image:
//
//   - a layer whose media type names a tar (".tar", ".tar+gzip",
//     ".tar+zstd", Docker's "rootfs.diff.tar.gzip") is unpacked at the
//     root, through the same hardened apply as image layers;
//   - any other layer is one file, named by its
//     org.opencontainers.image.title annotation (else CNAI's
//     org.cnai.model.filepath, else its digest as "sha256-<hex>"), with
//     mode 0644.
//
// The record's ID is the manifest digest (an artifact's config is most
// often the shared empty blob, which cannot tell two artifacts apart).

// ErrArtifact: the image is an OCI artifact, which has no root
// filesystem to run: it can only be mounted as an image volume.
var ErrArtifact = errors.New("an OCI artifact, not a runnable image")

// annotationModelFilePath names a layer's file in CNAI model artifacts.
const annotationModelFilePath = "org.cnai.model.filepath"

// artifactKind is what makes manifest an artifact: its artifactType, or
// its config's media type when that is not an image config; "" for an
// image.
func artifactKind(m ocispec.Manifest) string {
	if m.ArtifactType != "" {
		return m.ArtifactType
	}
	switch m.Config.MediaType {
	case "", ocispec.MediaTypeImageConfig, mediaTypeDockerConfig:
		return ""
	}
	return m.Config.MediaType
}

const mediaTypeDockerConfig = "application/vnd.docker.container.image.v1+json"

// artifactLayer is how one artifact layer becomes part of its snapshot
// chain: unpacked (tar) or as the file name.
type artifactLayer struct {
	tar  bool
	name string
}

func (l artifactLayer) String() string {
	if l.tar {
		return "tar"
	}
	return "file " + l.name
}

// artifactLayers classifies an artifact's layers and checks their file
// names, which come from the registry: relative, inside the volume, and
// no overlay whiteout.
func artifactLayers(m ocispec.Manifest) ([]artifactLayer, error) {
	out := make([]artifactLayer, len(m.Layers))
	for i, l := range m.Layers {
		if strings.Contains(l.MediaType, ".tar") {
			out[i] = artifactLayer{tar: true}
			continue
		}
		name := l.Annotations[ocispec.AnnotationTitle]
		if name == "" {
			name = l.Annotations[annotationModelFilePath]
		}
		if name == "" {
			name = l.Digest.Algorithm().String() + "-" + l.Digest.Encoded()
		}
		if path.Clean(name) != name || !filepath.IsLocal(name) {
			return nil, fmt.Errorf("%w: artifact layer %s: file name %q is not a plain relative path", ErrInvalidImage, l.Digest, name)
		}
		for _, part := range strings.Split(name, "/") {
			if strings.HasPrefix(part, ".wh.") {
				return nil, fmt.Errorf("%w: artifact layer %s: file name %q is an overlay whiteout", ErrInvalidImage, l.Digest, name)
			}
		}
		out[i] = artifactLayer{name: name}
	}
	return out, nil
}

// artifactChainIDs name the snapshots of an artifact's layers. An artifact
// has no diff IDs: each snapshot is named by the one below it, the
// layer's verified blob digest and how it is laid out, which decide its
// content. The "artifact" domain keeps them apart from image chain IDs.
func artifactChainIDs(m ocispec.Manifest, layers []artifactLayer) []digest.Digest {
	out := make([]digest.Digest, len(layers))
	var parent digest.Digest
	for i, l := range layers {
		parent = digest.FromString(fmt.Sprintf("artifact %s %s %s", parent, m.Layers[i].Digest, l))
		out[i] = parent
	}
	return out
}

// pullArtifact is the rest of pull for an artifact's manifest: its layers
// downloaded and laid out into snapshots, and its record written.
func (s *Service) pullArtifact(ctx context.Context, lease *lease, repo *registry.Repository, ref reference.Ref, desc, manifestDesc ocispec.Descriptor, m ocispec.Manifest, kind string, blobs []digest.Digest, tResolve time.Time) (meta.Image, error) {
	layers, err := artifactLayers(m)
	if err != nil {
		return meta.Image{}, err
	}
	chainIDs := artifactChainIDs(m, layers)
	for i := range chainIDs {
		lease.add(m.Layers[i].Digest.String(), chainIDs[i].String())
	}
	tLayers := time.Now()
	s.telemetry.PullPhase(ctx, "resolve", tResolve, tLayers)
	b := newBudget(s.pulls().maxUncompressed)
	err = s.fetchLayers(ctx, repo, m.Layers, chainIDs, func(ctx context.Context, i int, parent digest.Digest) error {
		return s.unpackArtifactLayer(ctx, m.Layers[i], layers[i], chainIDs[i], parent, b)
	})
	if err != nil {
		return meta.Image{}, err
	}
	tRecord := time.Now()
	s.telemetry.PullPhase(ctx, "layers", tLayers, tRecord)
	defer func() { s.telemetry.PullPhase(ctx, "record", tRecord, time.Now()) }()
	klog.V(2).InfoS("Pulled an OCI artifact", "ref", ref.String(), "artifactType", kind, "layers", len(layers))
	return s.save(s.newArtifactRecord(manifestDesc.Digest, m, kind, chainIDs, blobs, pullTags(ref), []string{ref.RepoDigest(desc.Digest)}), ref)
}

// newArtifactRecord is the record of a pulled artifact; blobs are the
// index and manifest blobs that led to it (its layers are added; its
// config, often the empty blob, is neither fetched nor kept).
func (s *Service) newArtifactRecord(manifestDigest digest.Digest, m ocispec.Manifest, kind string, chainIDs, blobs []digest.Digest, tags, repoDigests []string) meta.Image {
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
		blobs = append(blobs, l.Digest)
	}
	img := meta.Image{
		ID:           manifestDigest,
		Manifest:     manifestDigest,
		ArtifactType: kind,
		RepoTags:     tags,
		RepoDigests:  repoDigests,
		Size:         size,
		ChainIDs:     chainIDs,
		Blobs:        blobs,
		Snapshotter:  s.snap.Name(),
		Created:      time.Now().UTC(),
	}
	if old, err := s.db.GetImage(img.ID); err == nil {
		img.Blobs = unionDigests(old.Blobs, img.Blobs)
	}
	return img
}

// unpackArtifactLayer makes snapshot chainID on parent from one artifact
// layer: its tar unpacked, or its blob as one file.
func (s *Service) unpackArtifactLayer(ctx context.Context, desc ocispec.Descriptor, l artifactLayer, chainID, parent digest.Digest, b *budget) error {
	return s.commitLayer(ctx, desc, chainID, parent, func(key string, blob *os.File) error {
		if !l.tar {
			st, err := blob.Stat()
			if err != nil {
				return err
			}
			return s.applyFile(ctx, key, l.name, st.Size(), b.limit(blob))
		}
		r, closeDec, err := decompress(bufio.NewReaderSize(blob, 64<<10))
		if err != nil {
			return err
		}
		defer closeDec()
		if _, err := s.snap.Apply(ctx, key, b.limit(r)); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		return nil
	})
}

// applyFile applies a one-file layer, name (with its parent directories)
// holding the size bytes of r, to snapshot key.
func (s *Service) applyFile(ctx context.Context, key, name string, size int64, r io.Reader) error {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(writeFileTar(pw, name, size, r))
	}()
	_, err := s.snap.Apply(ctx, key, pr)
	// Apply may stop before the end of the stream (an error, or the tar
	// end marker): the writer then fails at once and returns.
	pr.CloseWithError(io.ErrClosedPipe)
	<-done
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	return nil
}

// writeFileTar writes a tar holding name's parent directories (0755) and
// name (0644, size bytes read from r), owned by root.
func writeFileTar(w io.Writer, name string, size int64, r io.Reader) error {
	tw := tar.NewWriter(w)
	var dir string
	parts := strings.Split(name, "/")
	for _, p := range parts[:len(parts)-1] {
		dir = path.Join(dir, p)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, Format: tar.FormatPAX}); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, r, size); err != nil {
		return fmt.Errorf("read blob: %w", err)
	}
	return tw.Close()
}
