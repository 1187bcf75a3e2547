//go:build e2e

package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Compression selects how a layer blob is stored.
type Compression int

const (
	// Gzip is the usual layer encoding (tar+gzip).
	Gzip Compression = iota
	// Uncompressed stores the plain tar stream (media type ...tar).
	Uncompressed
)

// epoch is the modification time of every entry, so that building the same
// layer twice yields the same bytes and digests (blobs are then shared
// between images and the registry push skips them).
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Layer is a built layer blob.
type Layer struct {
	// Data is the blob as stored in the registry (compressed unless
	// Compression is Uncompressed).
	Data []byte
	// Digest is the digest of Data: what the manifest references.
	Digest digest.Digest
	// DiffID is the digest of the uncompressed tar stream: what the image
	// config lists in rootfs.diff_ids.
	DiffID digest.Digest
	// UncompressedSize is the length of the uncompressed tar stream.
	UncompressedSize int64
	Compression      Compression
}

// Size is the blob size as the manifest records it.
func (l Layer) Size() int64 { return int64(len(l.Data)) }

// MediaType is the layer's media type in a manifest of format f.
func (l Layer) MediaType(f Format) string {
	switch {
	case f == Docker && l.Compression == Gzip:
		return MediaTypeDockerLayerGzip
	case f == Docker:
		return MediaTypeDockerLayer
	case l.Compression == Gzip:
		return MediaTypeOCILayerGzip
	default:
		return MediaTypeOCILayer
	}
}

type entryKind int

const (
	kindDir entryKind = iota
	kindFile
	kindSymlink
	kindHardlink
)

type entry struct {
	kind     entryKind
	name     string
	linkname string
	mode     int64
	uid, gid int
	data     []byte
	// open, when set, streams size bytes of content; it is used for large
	// files so that only the compressed blob is held in memory.
	open func() io.Reader
	size int64
}

// LayerBuilder collects tar entries and builds a Layer. Paths are given
// relative to the image root ("bin/sh" or "/bin/sh" are the same). Methods
// chain; the first error is reported by Build.
type LayerBuilder struct {
	entries     []entry
	compression Compression
	gzipLevel   int
	err         error
}

// NewLayer starts an empty gzip-compressed layer.
func NewLayer() *LayerBuilder {
	return &LayerBuilder{compression: Gzip, gzipLevel: gzip.DefaultCompression}
}

func clean(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

// Compression sets the blob encoding.
func (b *LayerBuilder) Compression(c Compression) *LayerBuilder {
	b.compression = c
	return b
}

// GzipLevel sets the gzip level; gzip.NoCompression makes building large
// random layers fast (random data does not compress anyway).
func (b *LayerBuilder) GzipLevel(level int) *LayerBuilder {
	b.gzipLevel = level
	return b
}

// Dir adds a directory owned by root.
func (b *LayerBuilder) Dir(name string, mode os.FileMode) *LayerBuilder {
	return b.DirOwned(name, mode, 0, 0)
}

// DirOwned adds a directory with an owner.
func (b *LayerBuilder) DirOwned(name string, mode os.FileMode, uid, gid int) *LayerBuilder {
	b.entries = append(b.entries, entry{kind: kindDir, name: clean(name) + "/", mode: tarMode(mode), uid: uid, gid: gid})
	return b
}

// File adds a regular file owned by root.
func (b *LayerBuilder) File(name string, data []byte, mode os.FileMode) *LayerBuilder {
	return b.FileOwned(name, data, mode, 0, 0)
}

// FileOwned adds a regular file with an owner.
func (b *LayerBuilder) FileOwned(name string, data []byte, mode os.FileMode, uid, gid int) *LayerBuilder {
	b.entries = append(b.entries, entry{kind: kindFile, name: clean(name), mode: tarMode(mode), uid: uid, gid: gid, data: data, size: int64(len(data))})
	return b
}

// FileFrom adds a regular file of size bytes streamed from open() while the
// layer is built.
func (b *LayerBuilder) FileFrom(name string, size int64, mode os.FileMode, open func() io.Reader) *LayerBuilder {
	b.entries = append(b.entries, entry{kind: kindFile, name: clean(name), mode: tarMode(mode), open: open, size: size})
	return b
}

// HostFile adds the content of a file of this machine (e.g. /bin/busybox).
func (b *LayerBuilder) HostFile(name, hostPath string, mode os.FileMode) *LayerBuilder {
	data, err := os.ReadFile(hostPath)
	if err != nil {
		if b.err == nil {
			b.err = fmt.Errorf("layer file %s: %w", name, err)
		}
		return b
	}
	return b.File(name, data, mode)
}

// Symlink adds a symbolic link name -> target (target is kept verbatim).
func (b *LayerBuilder) Symlink(name, target string) *LayerBuilder {
	b.entries = append(b.entries, entry{kind: kindSymlink, name: clean(name), linkname: target, mode: 0o777})
	return b
}

// Hardlink adds a hard link name to the earlier entry target.
func (b *LayerBuilder) Hardlink(name, target string) *LayerBuilder {
	b.entries = append(b.entries, entry{kind: kindHardlink, name: clean(name), linkname: clean(target), mode: 0o644})
	return b
}

// Whiteout deletes name (from a lower layer) by adding the OCI whiteout
// file <dir>/.wh.<base>.
func (b *LayerBuilder) Whiteout(name string) *LayerBuilder {
	n := clean(name)
	wh := path.Join(path.Dir(n), ".wh."+path.Base(n))
	return b.File(wh, nil, 0)
}

// Opaque marks dir as opaque: nothing of the lower layers' dir is visible,
// only what this layer puts in it. OCI spells it <dir>/.wh..wh..opq.
func (b *LayerBuilder) Opaque(dir string) *LayerBuilder {
	return b.File(path.Join(clean(dir), ".wh..wh..opq"), nil, 0)
}

func tarMode(m os.FileMode) int64 {
	mode := int64(m.Perm())
	if m&os.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// Build writes the tar stream (entries in the order they were added),
// compresses it and computes the digests.
func (b *LayerBuilder) Build() (Layer, error) {
	if b.err != nil {
		return Layer{}, b.err
	}
	var blob bytes.Buffer
	diff := sha256.New()
	count := &countingWriter{}

	var (
		sink io.Writer
		gz   *gzip.Writer
	)
	if b.compression == Gzip {
		var err error
		gz, err = gzip.NewWriterLevel(&blob, b.gzipLevel)
		if err != nil {
			return Layer{}, err
		}
		sink = gz
	} else {
		sink = &blob
	}
	tw := tar.NewWriter(io.MultiWriter(sink, diff, count))
	for _, e := range b.entries {
		hdr := &tar.Header{
			Name:     e.name,
			Mode:     e.mode,
			Uid:      e.uid,
			Gid:      e.gid,
			ModTime:  epoch,
			Linkname: e.linkname,
			Format:   tar.FormatPAX,
		}
		switch e.kind {
		case kindDir:
			hdr.Typeflag = tar.TypeDir
		case kindFile:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = e.size
		case kindSymlink:
			hdr.Typeflag = tar.TypeSymlink
		case kindHardlink:
			hdr.Typeflag = tar.TypeLink
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return Layer{}, fmt.Errorf("tar header %s: %w", e.name, err)
		}
		if e.kind != kindFile {
			continue
		}
		var r io.Reader = bytes.NewReader(e.data)
		if e.open != nil {
			r = io.LimitReader(e.open(), e.size)
		}
		if n, err := io.Copy(tw, r); err != nil || n != e.size {
			return Layer{}, fmt.Errorf("tar data %s: wrote %d of %d bytes: %v", e.name, n, e.size, err)
		}
	}
	if err := tw.Close(); err != nil {
		return Layer{}, err
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return Layer{}, err
		}
	}
	data := blob.Bytes()
	return Layer{
		Data:             data,
		Digest:           digest.FromBytes(data),
		DiffID:           digest.NewDigestFromBytes(digest.SHA256, diff.Sum(nil)),
		UncompressedSize: count.n,
		Compression:      b.compression,
	}, nil
}

// RandomLayer is a layer holding one file of size pseudo-random bytes
// derived from seed (the same seed gives the same layer). It is stored with
// gzip level 0 so that building a few hundred megabytes takes seconds.
func RandomLayer(name string, size int64, seed uint64) (Layer, error) {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	return NewLayer().
		GzipLevel(gzip.NoCompression).
		FileFrom(name, size, 0o644, func() io.Reader { return rand.NewChaCha8(key) }).
		Build()
}
