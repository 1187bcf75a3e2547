package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// entry is one file of a test archive.
type entry struct {
	name, body string
	link       string // a symlink to link when set
	typ        byte   // overrides the type when set
}

func tarOf(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)}
		if e.link != "" {
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		if e.typ != 0 {
			h.Typeflag = e.typ
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gzipped(b []byte) []byte {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(b)
	zw.Close()
	return gz.Bytes()
}

// ociImage is an image's blobs in an OCI layout.
type ociImage struct {
	manifest ocispec.Descriptor
	config   digest.Digest
	blobs    map[digest.Digest][]byte
}

// newOCIImage makes an image of gzip layers (each from layer()).
func newOCIImage(t *testing.T, user string, l []byte, more ...any) ociImage {
	t.Helper()
	img := ociImage{blobs: map[digest.Digest][]byte{}}
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers"}}
	cfg.Config.User = user
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	layers := [][]byte{l}
	var edit func(*ocispec.Image)
	for _, x := range more {
		switch x := x.(type) {
		case []byte:
			layers = append(layers, x)
		case func(*ocispec.Image):
			edit = x
		}
	}
	for _, l := range layers {
		zr, err := gzip.NewReader(bytes.NewReader(l))
		if err != nil {
			t.Fatal(err)
		}
		d, _ := digest.FromReader(zr)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, d)
		ld := digest.FromBytes(l)
		img.blobs[ld] = l
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: ld, Size: int64(len(l))})
	}
	if edit != nil {
		edit(&cfg)
	}
	cb, _ := json.Marshal(cfg)
	img.config = digest.FromBytes(cb)
	img.blobs[img.config] = cb
	m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: img.config, Size: int64(len(cb))}
	mb, _ := json.Marshal(m)
	img.manifest = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	img.blobs[img.manifest.Digest] = mb
	return img
}

// layoutEntries is an OCI layout of imgs, each named by its ref.
func layoutEntries(refs []string, imgs ...ociImage) []entry {
	es := []entry{{name: "oci-layout", body: `{"imageLayoutVersion":"1.0.0"}`}}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}}
	for i, img := range imgs {
		for d, b := range img.blobs {
			es = append(es, entry{name: "blobs/sha256/" + d.Encoded(), body: string(b)})
		}
		desc := img.manifest
		desc.Annotations = map[string]string{annotationImageName: refs[i]}
		idx.Manifests = append(idx.Manifests, desc)
	}
	ib, _ := json.Marshal(idx)
	return append(es, entry{name: "index.json", body: string(ib)})
}

// plainLayer is an uncompressed layer tar and its diff ID, as `docker
// save` stores layers.
func plainLayer(t *testing.T, files ...file) ([]byte, digest.Digest) {
	gz, d := layer(t, files...)
	zr, _ := gzip.NewReader(bytes.NewReader(gz))
	b, _ := io.ReadAll(zr)
	return b, d
}

// dockerWithout is dockerSave's archive without the entry named skip.
func dockerWithout(t *testing.T, skip string) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(dockerSave(t)))
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Name == skip {
			continue
		}
		tw.WriteHeader(h)
		io.Copy(tw, tr)
	}
	tw.Close()
	return b.Bytes()
}

// dockerSave is a legacy `docker save` archive of two images sharing
// their base layer, linked as docker links it.
func dockerSave(t *testing.T) []byte {
	t.Helper()
	base, baseID := plainLayer(t, file{name: "bin/", dir: true}, file{name: "bin/sh", body: "shell"})
	top, topID := plainLayer(t, file{name: "etc/", dir: true}, file{name: "etc/motd", body: "hello"})
	cfgOf := func(user string, diffIDs ...digest.Digest) []byte {
		c := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}}
		c.Config.User = user
		b, _ := json.Marshal(c)
		return b
	}
	c1, c2 := cfgOf("1", baseID), cfgOf("2", baseID, topID)
	man := []dockerManifest{
		{Config: digest.FromBytes(c1).Encoded() + ".json", RepoTags: []string{"example.com/base:1"}, Layers: []string{"aaa/layer.tar"}},
		{Config: digest.FromBytes(c2).Encoded() + ".json", RepoTags: []string{"app:2", "example.com/app:latest"}, Layers: []string{"bbb/layer.tar", "ccc/layer.tar"}},
	}
	mb, _ := json.Marshal(man)
	return tarOf(t,
		entry{name: "aaa/", typ: tar.TypeDir},
		entry{name: "aaa/VERSION", body: "1.0"},
		entry{name: "aaa/layer.tar", body: string(base)},
		entry{name: "bbb/", typ: tar.TypeDir},
		entry{name: "bbb/layer.tar", link: "../aaa/layer.tar"},
		entry{name: "ccc/layer.tar", body: string(top)},
		entry{name: digest.FromBytes(c1).Encoded() + ".json", body: string(c1)},
		entry{name: digest.FromBytes(c2).Encoded() + ".json", body: string(c2)},
		entry{name: "manifest.json", body: string(mb)},
	)
}

// readFile reads a file of the top snapshot of img.
func readFile(t *testing.T, e *env, img meta.Image, name string) string {
	t.Helper()
	ctx := context.Background()
	key := "view-" + name + img.ID.Encoded()
	mounts, err := e.snap.View(ctx, key, img.TopChainID().String())
	if err != nil {
		t.Fatal(err)
	}
	defer e.snap.Remove(ctx, key)
	b, err := os.ReadFile(filepath.Join(mounts[0].Source, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestImportDockerSave(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "gzip"}[compress], func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			archive := dockerSave(t)
			if compress {
				archive = gzipped(archive)
			}
			imgs, err := e.svc.Import(ctx, bytes.NewReader(archive))
			if err != nil {
				t.Fatal(err)
			}
			if len(imgs) != 2 {
				t.Fatalf("imported %d images, want 2", len(imgs))
			}
			app, err := e.svc.Get(ctx, "app:2")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(app.RepoTags, []string{"docker.io/library/app:2", "example.com/app:latest"}) || app.User != "2" || len(app.ChainIDs) != 2 {
				t.Fatalf("app record: %+v", app)
			}
			if got := readFile(t, e, app, "etc/motd"); got != "hello" {
				t.Fatalf("etc/motd = %q", got)
			}
			if got := readFile(t, e, app, "bin/sh"); got != "shell" {
				t.Fatalf("bin/sh = %q", got)
			}
			base, err := e.svc.Get(ctx, "example.com/base:1")
			if err != nil || base.ChainIDs[0] != app.ChainIDs[0] {
				t.Fatalf("base: %+v %v", base, err)
			}
			list, _ := e.svc.List(ctx)
			if len(list) != 2 {
				t.Fatalf("List has %d images", len(list))
			}
			// The manifest written for a docker image is stored, so the
			// image exports like a pulled one.
			var out bytes.Buffer
			if err := e.svc.Export(ctx, &out, []string{"app:2"}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestExportImportRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l1, _ := layer(t, file{name: "bin/", dir: true}, file{name: "bin/a", body: "a"})
	l2, _ := layer(t, file{name: "etc/", dir: true}, file{name: "etc/b", body: "b"})
	pushed := push(t, e.reg, "app", "v1", "amd64", l1, l2)
	pulled, err := e.svc.Pull(ctx, e.ref("app:v1"), registry.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	if err := e.svc.Export(ctx, &archive, []string{e.ref("app:v1")}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Remove(ctx, pulled.ID.String()); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if n, s := countBlobs(t, e.cs), countSnapshots(t, e.snap); n != 0 || s != 0 {
		t.Fatalf("after removal: %d blobs, %d snapshots", n, s)
	}
	imgs, err := e.svc.Import(ctx, bytes.NewReader(archive.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	got := imgs[0]
	if got.ID != pushed.config.Digest || got.Manifest != pushed.manifest.Digest || !slices.Equal(got.RepoTags, pulled.RepoTags) ||
		!slices.Equal(got.RepoDigests, pulled.RepoDigests) || !slices.Equal(got.ChainIDs, pulled.ChainIDs) || got.Size != pulled.Size {
		t.Fatalf("imported %+v\npulled   %+v", got, pulled)
	}
	if readFile(t, e, got, "bin/a") != "a" || readFile(t, e, got, "etc/b") != "b" {
		t.Fatal("imported layers' files differ")
	}
	// Nothing the import stored is left unreferenced.
	if err := e.svc.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countBlobs(t, e.cs); n != 4 {
		t.Fatalf("%d blobs after GC, want manifest, config and 2 layers", n)
	}
}

func TestImportMultiImageOCILayout(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l1, _ := layer(t, file{name: "a", body: "1"})
	l2, _ := layer(t, file{name: "b", body: "2"})
	one, two := newOCIImage(t, "1", l1), newOCIImage(t, "2", l1, l2)
	archive := gzipped(tarOf(t, layoutEntries([]string{"example.com/one:1", "example.com/two:2"}, one, two)...))
	imgs, err := e.svc.Import(ctx, bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 || imgs[0].ID != one.config || imgs[1].ID != two.config {
		t.Fatalf("imported %+v", imgs)
	}
	if got := imgs[1].RepoDigests; !slices.Equal(got, []string{"example.com/two@" + two.manifest.Digest.String()}) {
		t.Fatalf("repo digests %v", got)
	}
	if readFile(t, e, imgs[1], "b") != "2" {
		t.Fatal("layer b missing")
	}
}

// TestImportBadArchives feeds hostile and broken archives: each fails
// with ErrInvalidArchive (or the unpack's own refusal), records no
// image, and leaves nothing once GC ran: no blob, snapshot or ingest.
func TestImportBadArchives(t *testing.T) {
	l1, _ := layer(t, file{name: "a", body: "1"})
	good := newOCIImage(t, "1", l1)
	goodEntries := layoutEntries([]string{"example.com/good:1"}, good)
	without := func(d digest.Digest) []entry {
		var out []entry
		for _, e := range goodEntries {
			if e.name != "blobs/sha256/"+d.Encoded() {
				out = append(out, e)
			}
		}
		return out
	}
	corrupt := func(d digest.Digest) []entry {
		out := slices.Clone(goodEntries)
		for i, e := range out {
			if e.name == "blobs/sha256/"+d.Encoded() {
				out[i].body = strings.Repeat("x", len(e.body))
			}
		}
		return out
	}
	escape, _ := layer(t, file{name: "../../escaped", body: "x"})
	hostile := newOCIImage(t, "1", escape)
	full := tarOf(t, goodEntries...)
	// A config whose diff ID is not the layer's.
	badDiff := newOCIImage(t, "1", l1, func(c *ocispec.Image) { c.RootFS.DiffIDs[0] = digest.FromString("other") })

	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"traversal entry", tarOf(t, append(slices.Clone(goodEntries), entry{name: "../../etc/evil", body: "x"})...), "points outside the archive"},
		{"absolute entry", tarOf(t, append([]entry{{name: "/etc/evil", body: "x"}}, goodEntries...)...), "absolute path"},
		{"link out of the archive", tarOf(t, append(slices.Clone(goodEntries), entry{name: "x/layer.tar", link: "../../../etc/passwd"})...), "points outside the archive"},
		{"device entry", tarOf(t, append(slices.Clone(goodEntries), entry{name: "dev", typ: tar.TypeChar})...), "not a file, directory or link"},
		{"wrong layer digest", tarOf(t, corrupt(digest.FromBytes(l1))...), "expected sha256"},
		{"wrong manifest digest", tarOf(t, corrupt(good.manifest.Digest)...), "expected sha256"},
		{"missing layer", tarOf(t, without(digest.FromBytes(l1))...), "is missing"},
		{"missing manifest", tarOf(t, without(good.manifest.Digest)...), "is missing"},
		{"truncated at a block", full[:len(full)/1024*512], "truncated"},
		{"truncated in an entry", full[:len(full)/2+100], "truncated"},
		{"truncated gzip", func() []byte { z := gzipped(full); return z[:len(z)-20] }(), "truncated"},
		{"no index", tarOf(t, entry{name: "oci-layout", body: "{}"}), "neither index.json"},
		{"empty", nil, "empty archive"},
		{"not a tar", []byte(strings.Repeat("garbage!", 200)), "invalid image archive"},
		{"layer escaping its root", tarOf(t, layoutEntries([]string{"example.com/bad:1"}, hostile)...), "unpack layer"},
		{"diff ID mismatch", tarOf(t, layoutEntries([]string{"example.com/bad:1"}, badDiff)...), "config says"},
		{"docker layer missing", dockerWithout(t, "ccc/layer.tar"), "not in the archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			_, err := e.svc.Import(ctx, bytes.NewReader(tc.archive))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
			if imgs, _ := e.svc.List(ctx); len(imgs) != 0 {
				t.Fatalf("a failed import recorded %d images", len(imgs))
			}
			e.waitGC(t, 1)
			if n, s := countBlobs(t, e.cs), countSnapshots(t, e.snap); n != 0 || s != 0 {
				t.Fatalf("after GC: %d blobs, %d snapshots left", n, s)
			}
			if ing, _ := e.cs.ListIngests(ctx); len(ing) != 0 {
				t.Fatalf("ingests left: %+v", ing)
			}
		})
	}
}

// TestImportCorruptCopyOfStoredBlob: an archive whose copy of a blob the
// store already has is corrupt fails as it would on a node without the
// blob (its bytes are hashed, not skipped), and the image already there
// is untouched; an intact archive imports again.
func TestImportCorruptCopyOfStoredBlob(t *testing.T) {
	l1, _ := layer(t, file{name: "a", body: "1"})
	good := newOCIImage(t, "1", l1)
	goodEntries := layoutEntries([]string{"example.com/good:1"}, good)
	corrupt := func(d digest.Digest, body func(string) string) []byte {
		out := slices.Clone(goodEntries)
		for i, e := range out {
			if e.name == "blobs/sha256/"+d.Encoded() {
				out[i].body = body(e.body)
			}
		}
		return tarOf(t, out...)
	}
	flip := func(b string) string { return strings.Repeat("x", len(b)) }
	short := func(b string) string { return b[:len(b)-1] }
	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"layer", corrupt(digest.FromBytes(l1), flip), "this copy of it is corrupt"},
		{"config", corrupt(good.config, flip), "this copy of it is corrupt"},
		{"manifest", corrupt(good.manifest.Digest, flip), "this copy of it is corrupt"},
		{"shorter layer", corrupt(digest.FromBytes(l1), short), "this copy of it is corrupt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			if _, err := e.svc.Import(ctx, bytes.NewReader(tarOf(t, goodEntries...))); err != nil {
				t.Fatal(err)
			}
			_, err := e.svc.Import(ctx, bytes.NewReader(tc.archive))
			if !errors.Is(err, ErrInvalidArchive) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalidArchive saying %q", err, tc.want)
			}
			e.waitGC(t, 1)
			imgs, err := e.svc.List(ctx)
			if err != nil || len(imgs) != 1 || imgs[0].ID != good.config {
				t.Fatalf("images after the failed import: %+v %v", imgs, err)
			}
			if readFile(t, e, imgs[0], "a") != "1" {
				t.Fatal("the stored image's layer changed")
			}
			if _, err := e.svc.Import(ctx, bytes.NewReader(tarOf(t, goodEntries...))); err != nil {
				t.Fatalf("the intact archive again: %v", err)
			}
		})
	}
}
