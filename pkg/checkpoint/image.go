package checkpoint

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/opencontainers/go-digest"
	specsv "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot/layer"
)

// ImageAnnotation marks a checkpoint OCI image, as CRI-O reads it: a
// manifest annotation whose value is the checkpointed container's name.
// The image's layers hold the checkpoint archive's files (CRI-O's
// operators build it with `buildah add` of the archive onto scratch).
const ImageAnnotation = "io.kubernetes.cri-o.annotations.checkpoint.name"

// rootfsImageAnnotation names the image the checkpointed container ran
// (informative; config.dump is what the restore reads).
const rootfsImageAnnotation = "io.kubernetes.cri-o.annotations.checkpoint.rootfsImageName"

// IsImage says whether a manifest's annotations mark a checkpoint image.
func IsImage(annotations map[string]string) bool { return annotations[ImageAnnotation] != "" }

// Extract unpacks one tar stream of a checkpoint (an archive, or a layer
// of a checkpoint image) into dir: hostile input, so paths stay beneath
// dir and no device nodes are made.
func Extract(ctx context.Context, r io.Reader, dir string) error {
	if _, err := layer.Apply(ctx, dir, r, layer.WithoutDevices()); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// WriteImage writes, to w, an OCI image layout archive of one image named
// ref whose single layer is the checkpoint archive at path (a tar, so
// the layer is the archive's bytes as they are): the image CRI-O's
// operators build with buildah, which `cri-runtimed images import` loads
// and a registry can serve. It returns the manifest's digest.
func WriteImage(w io.Writer, path, ref string) (digest.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	// The archive must be a checkpoint: its metadata says which container
	// and image it holds.
	var cfg Config
	if err := readTarJSON(f, ConfigDump, &cfg); err != nil {
		return "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	d := digest.SHA256.Digester()
	if _, err := io.Copy(d.Hash(), f); err != nil {
		return "", err
	}
	layerDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d.Digest(), Size: fi.Size()}
	created := cfg.CheckpointedTime
	if created.IsZero() {
		created = time.Now().UTC()
	}
	imgCfg, err := json.Marshal(ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDesc.Digest}},
	})
	if err != nil {
		return "", err
	}
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(imgCfg), Size: int64(len(imgCfg))}
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specsv.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
		Annotations: map[string]string{
			ImageAnnotation:       cfg.Name,
			rootfsImageAnnotation: cfg.RootfsImageName,
		},
	})
	if err != nil {
		return "", err
	}
	mDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(manifest), Size: int64(len(manifest)),
		Annotations: map[string]string{"io.containerd.image.name": ref, ocispec.AnnotationRefName: ref}}
	index, err := json.Marshal(ocispec.Index{Versioned: specsv.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{mDesc}})
	if err != nil {
		return "", err
	}
	tw := tar.NewWriter(w)
	small := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := small(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"`+ocispec.ImageLayoutVersion+`"}`)); err != nil {
		return "", err
	}
	if err := small("index.json", index); err != nil {
		return "", err
	}
	if err := small(blobPath(mDesc.Digest), manifest); err != nil {
		return "", err
	}
	if err := small(blobPath(cfgDesc.Digest), imgCfg); err != nil {
		return "", err
	}
	if err := tw.WriteHeader(&tar.Header{Name: blobPath(layerDesc.Digest), Mode: 0o644, Size: layerDesc.Size, Typeflag: tar.TypeReg}); err != nil {
		return "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	if _, err := io.CopyN(tw, f, layerDesc.Size); err != nil {
		return "", err
	}
	return mDesc.Digest, tw.Close()
}

func blobPath(d digest.Digest) string { return "blobs/" + d.Algorithm().String() + "/" + d.Encoded() }

// readTarJSON decodes the entry name of the tar stream r.
func readTarJSON(r io.Reader, name string, v any) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return fmt.Errorf("%w: no %s", ErrInvalid, name)
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if h.Name == name || h.Name == "./"+name {
			if err := json.NewDecoder(io.LimitReader(tr, 16<<20)).Decode(v); err != nil {
				return fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
			}
			return nil
		}
	}
}
