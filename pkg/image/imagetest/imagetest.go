// Package imagetest gives the controllers' and the CRI server's tests an
// image service with images in it, without a registry: each image is one
// layer committed straight into a native snapshotter in a temporary
// directory, with its config in a real content store.
package imagetest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/reference"
	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/content"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// Images is an image service and the stores under it.
type Images struct {
	*image.Service
	DB      *meta.DB
	Content *content.Store
	Snap    snapshot.Snapshotter
}

// New returns an image service on db with its content and snapshots in a
// temporary directory; it has no registry (Pull fails).
func New(t testing.TB, db *meta.DB) *Images {
	t.Helper()
	dir := t.TempDir()
	cs, err := content.New(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.New(context.Background(), "native", filepath.Join(dir, "snapshots"), db.Bolt())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snap.Close() })
	return &Images{Service: image.New(db, cs, snap, nil), DB: db, Content: cs, Snap: snap}
}

// Add makes an image named ref whose one layer holds files (path to
// content) and whose config is cfg, and returns its record.
func (i *Images) Add(t testing.TB, ref string, cfg ocispec.ImageConfig, files map[string]string) meta.Image {
	t.Helper()
	ctx := context.Background()
	r, err := reference.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	// The layer's "diff ID" only needs to be unique: nothing unpacks it.
	diffID := digest.FromString(ref + time.Now().String())
	key := "extract-" + diffID.Encoded()
	mounts, err := i.Snap.Prepare(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		p := filepath.Join(mounts[0].Source, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := i.Snap.Commit(ctx, diffID.String(), key); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config:   cfg,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := digest.FromBytes(b)
	w, err := i.Content.Writer(ctx, id.String(), id, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	img := meta.Image{
		ID:          id,
		RepoTags:    []string{r.String()},
		RepoDigests: []string{r.Repository() + "@" + digest.FromString(ref).String()},
		Size:        int64(len(b)),
		ChainIDs:    []digest.Digest{diffID},
		Blobs:       []digest.Digest{id},
		Snapshotter: i.Snap.Name(),
		User:        cfg.User,
		Created:     time.Now().UTC(),
	}
	if _, err := i.DB.SaveImage(img); err != nil {
		t.Fatal(err)
	}
	return img
}
