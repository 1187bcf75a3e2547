//go:build e2e

package images

import (
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// OCIArtifact is an OCI artifact as image-spec 1.1's guidelines make one
// (oras push does the same): an image manifest with an artifactType, the
// empty config, and layers of any media type.
type OCIArtifact struct {
	ManifestBlob Blob
	Config       Blob
	LayerBlobs   []Blob
}

// ArtifactLayer is one layer of an artifact: its blob, and its title
// annotation (org.opencontainers.image.title) unless empty.
type ArtifactLayer struct {
	Blob  Blob
	Title string
}

// FileBlob is a layer blob of mediaType holding data as it is.
func FileBlob(mediaType string, data []byte) Blob {
	return Blob{MediaType: mediaType, Digest: digest.FromBytes(data), Data: data}
}

// LayerBlob is a built layer as a blob of mediaType (a tar, say).
func LayerBlob(mediaType string, l Layer) Blob {
	return Blob{MediaType: mediaType, Digest: l.Digest, Data: l.Data}
}

// NewArtifact builds an artifact of artifactType from layers.
func NewArtifact(artifactType string, layers ...ArtifactLayer) (*OCIArtifact, error) {
	a := &OCIArtifact{Config: Blob{MediaType: ocispec.MediaTypeEmptyJSON, Digest: ocispec.DescriptorEmptyJSON.Digest, Data: []byte("{}")}}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       a.Config.Descriptor(),
	}
	for _, l := range layers {
		d := l.Blob.Descriptor()
		if l.Title != "" {
			d.Annotations = map[string]string{ocispec.AnnotationTitle: l.Title}
		}
		m.Layers = append(m.Layers, d)
		a.LayerBlobs = append(a.LayerBlobs, l.Blob)
	}
	mb, err := jsonBlob(ocispec.MediaTypeImageManifest, m)
	if err != nil {
		return nil, err
	}
	a.ManifestBlob = mb
	return a, nil
}

// Digest is the manifest digest: the artifact's image ID in CRI.
func (a *OCIArtifact) Digest() digest.Digest { return a.ManifestBlob.Digest }

// Manifest implements Artifact.
func (a *OCIArtifact) Manifest() Blob { return a.ManifestBlob }

// Blobs implements Artifact: the empty config, then the layers.
func (a *OCIArtifact) Blobs() []Blob { return append([]Blob{a.Config}, a.LayerBlobs...) }

// Children implements Artifact.
func (a *OCIArtifact) Children() []Artifact { return nil }
