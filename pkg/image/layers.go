package image

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// Manifest reads the image's platform manifest from the content store.
func (s *Service) Manifest(ctx context.Context, img meta.Image) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	b, err := s.content.ReadAll(ctx, img.Manifest, s.pulls().maxManifestSize)
	if err != nil {
		return m, fmt.Errorf("read manifest of image %s: %w", img.ID, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode manifest of image %s: %w", img.ID, err)
	}
	return m, nil
}

// OpenLayer opens one layer blob of an image, decompressed (the image
// was verified when pulled or imported; the stream is still untrusted
// input to whoever unpacks it).
func (s *Service) OpenLayer(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	f, err := s.content.Open(ctx, desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("open layer %s: %w", desc.Digest, err)
	}
	r, closeDec, err := decompress(bufio.NewReaderSize(f, 64<<10))
	if err != nil {
		f.Close()
		return nil, err
	}
	return layerReader{Reader: r, close: func() error { closeDec(); return f.Close() }}, nil
}

type layerReader struct {
	io.Reader
	close func() error
}

func (l layerReader) Close() error { return l.close() }
