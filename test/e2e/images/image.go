//go:build e2e

// Package images builds OCI and Docker schema2 images for the end-to-end
// tests without docker: layers are tar streams written in Go from Debian's
// static busybox, configs and manifests are JSON built here, and every blob
// and digest is returned so tests can assert image IDs (config digests) and
// repo digests (manifest or index digests). Package registry pushes them.
package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types. Docker schema2 ones are not in image-spec.
const (
	MediaTypeOCIManifest     = ocispec.MediaTypeImageManifest
	MediaTypeOCIIndex        = ocispec.MediaTypeImageIndex
	MediaTypeOCIConfig       = ocispec.MediaTypeImageConfig
	MediaTypeOCILayerGzip    = ocispec.MediaTypeImageLayerGzip
	MediaTypeOCILayer        = ocispec.MediaTypeImageLayer
	MediaTypeDockerManifest  = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList      = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig    = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayer     = "application/vnd.docker.image.rootfs.diff.tar"
)

// DefaultPath is the PATH of the default image config.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Format selects OCI or Docker schema2 media types.
type Format int

const (
	OCI Format = iota
	Docker
)

func (f Format) String() string {
	if f == Docker {
		return "docker-schema2"
	}
	return "oci"
}

func (f Format) manifestType() string {
	if f == Docker {
		return MediaTypeDockerManifest
	}
	return MediaTypeOCIManifest
}

func (f Format) configType() string {
	if f == Docker {
		return MediaTypeDockerConfig
	}
	return MediaTypeOCIConfig
}

func (f Format) indexType() string {
	if f == Docker {
		return MediaTypeDockerList
	}
	return MediaTypeOCIIndex
}

// Blob is one piece of content as a registry stores it.
type Blob struct {
	MediaType string
	Digest    digest.Digest
	Data      []byte
}

// Descriptor of the blob.
func (b Blob) Descriptor() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: b.MediaType, Digest: b.Digest, Size: int64(len(b.Data))}
}

func jsonBlob(mediaType string, v any) (Blob, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return Blob{}, err
	}
	return Blob{MediaType: mediaType, Digest: digest.FromBytes(data), Data: data}, nil
}

// Artifact is something a registry can serve under a tag or digest: an
// Image (manifest) or an Index (multi-platform).
type Artifact interface {
	// Manifest is the manifest or index document; a pull by digest uses
	// its digest and it is what RepoDigests name.
	Manifest() Blob
	// Blobs are the blobs the manifest references (config and layers);
	// none for an index.
	Blobs() []Blob
	// Children are the manifests an index references; none for an image.
	Children() []Artifact
}

// Image is a built single-platform image.
type Image struct {
	Format   Format
	Platform ocispec.Platform
	Layers   []Layer
	// Config is the image config document as pushed.
	Config     ocispec.Image
	ConfigBlob Blob
	// ManifestBlob is the manifest document as pushed.
	ManifestBlob Blob
}

// ID is the image ID as CRI reports it: the config digest.
func (i *Image) ID() digest.Digest { return i.ConfigBlob.Digest }

// Digest is the manifest digest.
func (i *Image) Digest() digest.Digest { return i.ManifestBlob.Digest }

// Manifest implements Artifact.
func (i *Image) Manifest() Blob { return i.ManifestBlob }

// Children implements Artifact.
func (i *Image) Children() []Artifact { return nil }

// Blobs implements Artifact: the config, then the layers.
func (i *Image) Blobs() []Blob {
	out := []Blob{i.ConfigBlob}
	for _, l := range i.Layers {
		out = append(out, Blob{MediaType: l.MediaType(i.Format), Digest: l.Digest, Data: l.Data})
	}
	return out
}

// Size is the sum of the manifest, config and layer blob sizes.
func (i *Image) Size() int64 {
	n := int64(len(i.ManifestBlob.Data))
	for _, b := range i.Blobs() {
		n += int64(len(b.Data))
	}
	return n
}

type spec struct {
	format   Format
	platform ocispec.Platform
	layers   []Layer
	config   ocispec.ImageConfig
	created  time.Time
	annots   map[string]string
	noBase   bool
}

// Option changes the image being built.
type Option func(*spec)

// WithFormat picks OCI (default) or Docker schema2 media types.
func WithFormat(f Format) Option { return func(s *spec) { s.format = f } }

// WithPlatform sets the config's os/architecture/variant (default
// linux/amd64).
func WithPlatform(os, arch, variant string) Option {
	return func(s *spec) { s.platform = ocispec.Platform{OS: os, Architecture: arch, Variant: variant} }
}

// WithLayers appends layers after the base layer.
func WithLayers(layers ...Layer) Option {
	return func(s *spec) { s.layers = append(s.layers, layers...) }
}

// WithoutBase leaves out the busybox base layer (for fake images that are
// never run, or images made only of WithLayers).
func WithoutBase() Option { return func(s *spec) { s.noBase = true } }

// WithCmd sets config.Cmd.
func WithCmd(cmd ...string) Option { return func(s *spec) { s.config.Cmd = cmd } }

// WithEntrypoint sets config.Entrypoint.
func WithEntrypoint(ep ...string) Option { return func(s *spec) { s.config.Entrypoint = ep } }

// WithEnv appends KEY=value entries to config.Env.
func WithEnv(env ...string) Option {
	return func(s *spec) { s.config.Env = append(s.config.Env, env...) }
}

// WithUser sets config.User ("1000", "user", "1000:100"...).
func WithUser(user string) Option { return func(s *spec) { s.config.User = user } }

// WithWorkingDir sets config.WorkingDir.
func WithWorkingDir(dir string) Option { return func(s *spec) { s.config.WorkingDir = dir } }

// WithStopSignal sets config.StopSignal.
func WithStopSignal(sig string) Option { return func(s *spec) { s.config.StopSignal = sig } }

// WithLabels adds config labels; also a cheap way to make two otherwise
// identical images differ.
func WithLabels(labels map[string]string) Option {
	return func(s *spec) {
		if s.config.Labels == nil {
			s.config.Labels = map[string]string{}
		}
		maps.Copy(s.config.Labels, labels)
	}
}

// WithVolumes declares config.Volumes.
func WithVolumes(paths ...string) Option {
	return func(s *spec) {
		if s.config.Volumes == nil {
			s.config.Volumes = map[string]struct{}{}
		}
		for _, p := range paths {
			s.config.Volumes[p] = struct{}{}
		}
	}
}

// WithExposedPorts declares config.ExposedPorts ("80/tcp").
func WithExposedPorts(ports ...string) Option {
	return func(s *spec) {
		if s.config.ExposedPorts == nil {
			s.config.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range ports {
			s.config.ExposedPorts[p] = struct{}{}
		}
	}
}

// WithManifestAnnotations sets the manifest's annotations (OCI only).
func WithManifestAnnotations(a map[string]string) Option {
	return func(s *spec) { s.annots = a }
}

// Busybox builds an image whose first layer is BusyboxLayer, with PATH set
// and Cmd ["sh"], changed by opts.
func Busybox(opts ...Option) (*Image, error) {
	s := &spec{
		format:   OCI,
		platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		config:   ocispec.ImageConfig{Env: []string{DefaultPath}, Cmd: []string{"sh"}},
		created:  epoch,
	}
	for _, o := range opts {
		o(s)
	}
	layers := s.layers
	if !s.noBase {
		base, err := BusyboxLayer()
		if err != nil {
			return nil, err
		}
		layers = append([]Layer{base}, layers...)
	}
	if len(layers) == 0 {
		return nil, errors.New("image without layers")
	}
	return build(s, layers)
}

func build(s *spec, layers []Layer) (*Image, error) {
	img := &Image{Format: s.format, Platform: s.platform, Layers: layers}
	created := s.created
	img.Config = ocispec.Image{
		Created:  &created,
		Platform: s.platform,
		Config:   s.config,
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	for _, l := range layers {
		img.Config.RootFS.DiffIDs = append(img.Config.RootFS.DiffIDs, l.DiffID)
		img.Config.History = append(img.Config.History, ocispec.History{Created: &created, CreatedBy: "cri-runtimed e2e image builder"})
	}
	var err error
	if img.ConfigBlob, err = jsonBlob(s.format.configType(), img.Config); err != nil {
		return nil, err
	}
	m := ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   s.format.manifestType(),
		Config:      img.ConfigBlob.Descriptor(),
		Annotations: s.annots,
	}
	for _, b := range img.Blobs()[1:] {
		m.Layers = append(m.Layers, b.Descriptor())
	}
	if s.format == Docker && len(s.annots) > 0 {
		return nil, errors.New("annotations need the OCI format")
	}
	if img.ManifestBlob, err = jsonBlob(m.MediaType, m); err != nil {
		return nil, err
	}
	return img, nil
}

// Index is a built multi-platform image index (OCI) or manifest list
// (Docker).
type Index struct {
	Format    Format
	Images    []*Image
	IndexBlob Blob
}

// NewIndex lists images (which must share its format) with their platforms.
func NewIndex(format Format, imgs ...*Image) (*Index, error) {
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: format.indexType(),
	}
	for _, img := range imgs {
		if img.Format != format {
			return nil, fmt.Errorf("index of format %s cannot list a %s image", format, img.Format)
		}
		d := img.ManifestBlob.Descriptor()
		p := img.Platform
		d.Platform = &p
		idx.Manifests = append(idx.Manifests, d)
	}
	blob, err := jsonBlob(idx.MediaType, idx)
	if err != nil {
		return nil, err
	}
	return &Index{Format: format, Images: imgs, IndexBlob: blob}, nil
}

// Digest is the index digest.
func (x *Index) Digest() digest.Digest { return x.IndexBlob.Digest }

// Manifest implements Artifact.
func (x *Index) Manifest() Blob { return x.IndexBlob }

// Blobs implements Artifact.
func (x *Index) Blobs() []Blob { return nil }

// Children implements Artifact.
func (x *Index) Children() []Artifact {
	out := make([]Artifact, len(x.Images))
	for i, img := range x.Images {
		out[i] = img
	}
	return out
}

// Platform returns the image for "os/arch[/variant]", or nil.
func (x *Index) Platform(platform string) *Image {
	for _, img := range x.Images {
		p := img.Platform.OS + "/" + img.Platform.Architecture
		if img.Platform.Variant != "" {
			p += "/" + img.Platform.Variant
		}
		if p == platform {
			return img
		}
	}
	return nil
}

// MultiArch builds an index of linux/amd64 (the runnable busybox image,
// opts applied), linux/arm64 and linux/arm/v7. The two foreign images have
// a small fake layer of their own instead of busybox, so a runtime that
// picked the wrong platform ends up with a different image ID and no
// busybox.
func MultiArch(format Format, opts ...Option) (*Index, error) {
	amd64, err := Busybox(append([]Option{WithFormat(format)}, opts...)...)
	if err != nil {
		return nil, err
	}
	imgs := []*Image{amd64}
	for _, p := range []struct{ arch, variant string }{{"arm64", ""}, {"arm", "v7"}} {
		name := strings.TrimSuffix(p.arch+"-"+p.variant, "-")
		fake, err := NewLayer().File("PLATFORM", []byte("linux/"+name+"\n"), 0o644).Build()
		if err != nil {
			return nil, err
		}
		img, err := Busybox(append([]Option{WithFormat(format)}, append(opts,
			WithoutBase(), WithLayers(fake), WithPlatform("linux", p.arch, p.variant))...)...)
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	return NewIndex(format, imgs...)
}
