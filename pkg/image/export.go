package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/reference"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// Export writes the images named by names to w as an OCI image layout in
// a tar stream: oci-layout, each blob once under blobs/, and index.json
// with one entry per name, annotated with the reference it was asked by
// (or, for an image asked by ID, each of its tags). Import, containerd's
// `ctr images import` and skopeo's oci-archive read it.
func (s *Service) Export(ctx context.Context, w io.Writer, names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: export names no image", reference.ErrInvalid)
	}
	lease := s.newLease()
	defer lease.release()
	var entries []ocispec.Descriptor
	var blobs []digest.Digest
	seen := map[digest.Digest]bool{}
	for _, name := range names {
		img, kind, err := s.lookup(name)
		if err != nil {
			return err
		}
		if img.ArtifactType != "" {
			// Its config (and so a whole OCI layout) is not kept.
			return fmt.Errorf("export %s: image %s is %w", name, img.ID, ErrArtifact)
		}
		// Held for the export: a removal meanwhile must not take them.
		for _, b := range img.Blobs {
			lease.add(b.String())
		}
		desc, layers, err := s.exportManifest(ctx, img)
		if err != nil {
			return err
		}
		for _, d := range append([]digest.Digest{img.Manifest, img.ID}, layers...) {
			if !seen[d] {
				seen[d] = true
				blobs = append(blobs, d)
			}
		}
		entries = append(entries, indexEntries(desc, img, name, kind)...)
	}
	tw := tar.NewWriter(w)
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err := writeTarFile(tw, ocispec.ImageLayoutFile, layout); err != nil {
		return err
	}
	for _, d := range blobs {
		if err := s.exportBlob(ctx, tw, d); err != nil {
			return err
		}
	}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: entries}
	idx.SchemaVersion = 2
	b, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := writeTarFile(tw, "index.json", b); err != nil {
		return err
	}
	return tw.Close()
}

// exportManifest is the descriptor of img's manifest and its layers.
func (s *Service) exportManifest(ctx context.Context, img meta.Image) (ocispec.Descriptor, []digest.Digest, error) {
	body, err := s.content.ReadAll(ctx, img.Manifest, s.pulls().maxManifestSize)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("manifest of image %s: %w", img.ID, err)
	}
	m, err := parseManifest(body, img.Manifest)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	var layers []digest.Digest
	for _, l := range m.Layers {
		layers = append(layers, l.Digest)
	}
	desc := ocispec.Descriptor{
		MediaType: detectMediaType(ocispec.MediaTypeImageManifest, body),
		Digest:    img.Manifest,
		Size:      int64(len(body)),
	}
	return desc, layers, nil
}

// indexEntries are index.json's entries for img asked for by name.
func indexEntries(desc ocispec.Descriptor, img meta.Image, name string, kind matchKind) []ocispec.Descriptor {
	var refs []reference.Ref
	if kind == matchTag {
		if r, err := reference.Parse(name); err == nil {
			refs = append(refs, r)
		}
	} else {
		for _, t := range img.RepoTags {
			if r, err := reference.Parse(t); err == nil {
				refs = append(refs, r)
			}
		}
	}
	if len(refs) == 0 {
		return []ocispec.Descriptor{desc}
	}
	var out []ocispec.Descriptor
	for _, r := range refs {
		d := desc
		d.Annotations = map[string]string{annotationImageName: r.String(), annotationRefName: r.Tag()}
		out = append(out, d)
	}
	return out
}

func (s *Service) exportBlob(ctx context.Context, tw *tar.Writer, d digest.Digest) error {
	f, err := s.content.Open(ctx, d)
	if err != nil {
		return fmt.Errorf("export blob %s: %w", d, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("export blob %s: %w", d, err)
	}
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     "blobs/" + d.Algorithm().String() + "/" + d.Encoded(),
		Mode:     0o444,
		Size:     fi.Size(),
		ModTime:  time.Unix(0, 0),
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("export blob %s: %w", d, err)
	}
	return nil
}

func writeTarFile(tw *tar.Writer, name string, b []byte) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o444, Size: int64(len(b)), ModTime: time.Unix(0, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}
