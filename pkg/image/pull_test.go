package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry/registrytest"
	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/content"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

type file struct {
	name, body string
	dir        bool
}

// layer returns a gzip tar of files and its diff ID.
func layer(t *testing.T, files ...file) ([]byte, digest.Digest) {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)}
		if f.dir {
			h = &tar.Header{Name: f.name, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: time.Unix(1700000000, 0)}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if !f.dir {
			if _, err := tw.Write([]byte(f.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	return gz.Bytes(), digest.FromBytes(raw.Bytes())
}

type testImage struct {
	manifest ocispec.Descriptor
	config   ocispec.Descriptor
	layers   []ocispec.Descriptor
}

// push pushes an image made of layers (each from layer()) under repo:tag.
func push(t *testing.T, reg *registrytest.Registry, repo, tag, arch string, layers ...[]byte) testImage {
	t.Helper()
	var img testImage
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: arch}, RootFS: ocispec.RootFS{Type: "layers"}}
	cfg.Config.User = "1000"
	for _, l := range layers {
		img.layers = append(img.layers, withMedia(reg.PushBlob(repo, l), ocispec.MediaTypeImageLayerGzip))
		zr, err := gzip.NewReader(bytes.NewReader(l))
		if err != nil {
			t.Fatal(err)
		}
		d, err := digest.FromReader(zr)
		if err != nil {
			t.Fatal(err)
		}
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, d)
	}
	cb, _ := json.Marshal(cfg)
	img.config = withMedia(reg.PushBlob(repo, cb), ocispec.MediaTypeImageConfig)
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: img.config, Layers: img.layers}
	mb, _ := json.Marshal(m)
	img.manifest = reg.PushManifest(repo, tag, ocispec.MediaTypeImageManifest, mb)
	return img
}

func withMedia(d ocispec.Descriptor, mt string) ocispec.Descriptor { d.MediaType = mt; return d }

type env struct {
	svc  *Service
	reg  *registrytest.Registry
	cs   *content.Store
	snap snapshot.Snapshotter
	db   *meta.DB
	name string // registry host
}

func newEnv(t *testing.T, opts ...Option) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("unpacking layers with their ownership needs root")
	}
	dir := t.TempDir()
	db, err := meta.Open(filepath.Join(dir, "meta.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cs, err := content.New(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.New(context.Background(), "native", filepath.Join(dir, "snapshots", "native"), db.Bolt())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snap.Close() })
	reg := registrytest.New(t)
	client := registry.New(reg.HostsDir(), registry.WithRetries(2, 10*time.Millisecond))
	opts = append([]Option{WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"}), WithGCDelay(20*time.Millisecond, 200*time.Millisecond)}, opts...)
	svc := New(db, cs, snap, client, opts...)
	t.Cleanup(svc.Close)
	return &env{svc: svc, reg: reg, cs: cs, snap: snap, db: db, name: reg.Host()}
}

// waitGC waits until the scheduler has run at least n passes and has
// none pending.
func (e *env) waitGC(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g := &e.svc.gc
		g.mu.Lock()
		done := g.passes >= n && !g.pending
		g.mu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no GC pass after 10s (want %d)", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) ref(repoTag string) string { return e.name + "/" + repoTag }

func countBlobs(t *testing.T, cs *content.Store) int {
	n := 0
	if err := cs.Walk(context.Background(), func(content.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func countSnapshots(t *testing.T, s snapshot.Snapshotter) int {
	n := 0
	if err := s.Walk(context.Background(), func(snapshot.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPullListRemove(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l1, _ := layer(t, file{name: "bin/", dir: true}, file{name: "bin/a", body: "a"})
	l2, _ := layer(t, file{name: "etc/", dir: true}, file{name: "etc/b", body: "b"})
	img := push(t, e.reg, "app", "v1", "amd64", l1, l2)

	got, err := e.svc.Pull(ctx, e.ref("app:v1"), registry.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != img.config.Digest {
		t.Fatalf("ID = %s, want config digest %s", got.ID, img.config.Digest)
	}
	if !slices.Equal(got.RepoTags, []string{e.ref("app:v1")}) || !slices.Equal(got.RepoDigests, []string{e.ref("app@" + img.manifest.Digest.String())}) {
		t.Fatalf("names: %v %v", got.RepoTags, got.RepoDigests)
	}
	if got.Size != img.config.Size+img.layers[0].Size+img.layers[1].Size || len(got.ChainIDs) != 2 {
		t.Fatalf("size %d chain %v", got.Size, got.ChainIDs)
	}
	// The top snapshot holds both layers.
	mounts, err := e.snap.View(ctx, "view", got.TopChainID().String())
	if err != nil {
		t.Fatal(err)
	}
	src := mounts[0].Source
	for _, f := range []string{"bin/a", "etc/b"} {
		if _, err := os.Stat(filepath.Join(src, f)); err != nil {
			t.Errorf("unpacked image lacks %s: %v", f, err)
		}
	}
	if err := e.snap.Remove(ctx, "view"); err != nil {
		t.Fatal(err)
	}

	// Lookups by ID, short ID, tag and digest.
	for _, name := range []string{got.ID.String(), got.ID.Encoded(), got.ID.Encoded()[:12], e.ref("app:v1"), e.ref("app@" + img.manifest.Digest.String())} {
		if g, err := e.svc.Get(ctx, name); err != nil || g.ID != got.ID {
			t.Errorf("Get(%s) = %v, %v", name, g.ID, err)
		}
	}
	if _, err := e.svc.Get(ctx, e.ref("app:v2")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get unknown = %v", err)
	}
	cfg, err := e.svc.Config(ctx, got)
	if err != nil || cfg.Config.User != "1000" {
		t.Fatalf("config: %+v %v", cfg.Config, err)
	}

	_, before, _, err := e.svc.FsUsage(ctx)
	if err != nil || before == 0 {
		t.Fatalf("usage %d %v", before, err)
	}
	if err := e.svc.Remove(ctx, got.ID.String()); err != nil {
		t.Fatal(err)
	}
	e.waitGC(t, 1)
	if n := countBlobs(t, e.cs); n != 0 {
		t.Errorf("%d blobs left after remove", n)
	}
	if n := countSnapshots(t, e.snap); n != 0 {
		t.Errorf("%d snapshots left after remove", n)
	}
	_, after, _, _ := e.svc.FsUsage(ctx)
	if after >= before {
		t.Errorf("usage did not shrink: %d -> %d", before, after)
	}
	if err := e.svc.Remove(ctx, got.ID.String()); err != nil {
		t.Errorf("removing an unknown image: %v", err)
	}
}

func TestTagsAndSharedLayers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	base, _ := layer(t, file{name: "base", body: "base"})
	top1, _ := layer(t, file{name: "one", body: "1"})
	top2, _ := layer(t, file{name: "two", body: "2"})
	a := push(t, e.reg, "app", "t1", "amd64", base, top1)
	push(t, e.reg, "app", "t2", "amd64", base, top1)
	imgA, err := e.svc.Pull(ctx, e.ref("app:t1"), registry.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Pull(ctx, e.ref("app:t2"), registry.Credentials{}); err != nil {
		t.Fatal(err)
	}
	got, _ := e.svc.Get(ctx, imgA.ID.String())
	if len(got.RepoTags) != 2 {
		t.Fatalf("two tags of one image: %v", got.RepoTags)
	}
	// Removing one tag leaves the other, even of an image KeepIf keeps
	// (mounted by a container); its last tag and its ID are refused then.
	errKept := errors.New("kept")
	keep := KeepIf(func(img meta.Image) error {
		if img.ID != imgA.ID {
			t.Errorf("KeepIf asked about %s, want %s", img.ID, imgA.ID)
		}
		return errKept
	})
	if err := e.svc.Remove(ctx, e.ref("app:t2"), keep); err != nil {
		t.Fatal(err)
	}
	got, _ = e.svc.Get(ctx, imgA.ID.String())
	if !slices.Equal(got.RepoTags, []string{e.ref("app:t1")}) {
		t.Fatalf("after untag: %v", got.RepoTags)
	}
	for _, name := range []string{e.ref("app:t1"), imgA.ID.String()} {
		if err := e.svc.Remove(ctx, name, keep); !errors.Is(err, errKept) {
			t.Errorf("Remove(%s) of a kept image: %v, want the keep error", name, err)
		}
	}
	if got, err := e.svc.Get(ctx, imgA.ID.String()); err != nil || len(got.RepoTags) != 1 {
		t.Fatalf("the kept image after refused removals: %v, %v", got, err)
	}
	// Move t1 to image B sharing the base layer.
	b := push(t, e.reg, "app", "t1", "amd64", base, top2)
	imgB, err := e.svc.Pull(ctx, e.ref("app:t1"), registry.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if imgB.ID != b.config.Digest || imgB.ID == a.config.Digest {
		t.Fatalf("moved tag pulled %s", imgB.ID)
	}
	got, _ = e.svc.Get(ctx, imgA.ID.String())
	if len(got.RepoTags) != 0 || len(got.RepoDigests) != 1 {
		t.Fatalf("old image keeps %v %v", got.RepoTags, got.RepoDigests)
	}
	if e.reg.BlobGets(a.layers[0].Digest) != 1 {
		t.Errorf("shared base downloaded %d times", e.reg.BlobGets(a.layers[0].Digest))
	}
	// Removing A keeps the shared base for B.
	if err := e.svc.Remove(ctx, imgA.ID.String()); err != nil {
		t.Fatal(err)
	}
	e.waitGC(t, 1)
	if _, err := e.snap.Stat(ctx, imgB.ChainIDs[0].String()); err != nil {
		t.Fatalf("shared base snapshot gone: %v", err)
	}
	if _, err := e.snap.Stat(ctx, imgA.ChainIDs[1].String()); !errors.Is(err, snapshot.ErrNotFound) {
		t.Fatalf("A's own layer kept: %v", err)
	}
	if _, err := e.cs.Info(ctx, a.layers[0].Digest); err != nil {
		t.Fatalf("shared blob gone: %v", err)
	}
}

func TestPullIndexPicksPlatform(t *testing.T) {
	e := newEnv(t)
	amdL, _ := layer(t, file{name: "arch", body: "amd64"})
	armL, _ := layer(t, file{name: "arch", body: "arm64"})
	amd := push(t, e.reg, "multi", "amd64-only", "amd64", amdL)
	arm := push(t, e.reg, "multi", "arm64-only", "arm64", armL)
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{
		withPlatform(arm.manifest, "arm64"), withPlatform(amd.manifest, "amd64"),
	}}
	ib, _ := json.Marshal(idx)
	idxDesc := e.reg.PushManifest("multi", "latest", ocispec.MediaTypeImageIndex, ib)
	got, err := e.svc.Pull(context.Background(), e.ref("multi"), registry.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != amd.config.Digest || got.Manifest != amd.manifest.Digest {
		t.Fatalf("picked %s (manifest %s), want amd64 %s", got.ID, got.Manifest, amd.config.Digest)
	}
	if !slices.Equal(got.RepoDigests, []string{e.ref("multi@" + idxDesc.Digest.String())}) {
		t.Fatalf("repo digest should name the index: %v", got.RepoDigests)
	}
	if e.reg.BlobGets(arm.layers[0].Digest) != 0 {
		t.Fatal("downloaded the arm64 layer")
	}
}

func withPlatform(d ocispec.Descriptor, arch string) ocispec.Descriptor {
	d.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
	return d
}

func TestConcurrentPullsDownloadOnce(t *testing.T) {
	e := newEnv(t)
	var layers [][]byte
	for i := range 4 {
		big := make([]byte, 256<<10)
		rand.Read(big)
		l, _ := layer(t, file{name: "f" + string(rune('a'+i)), body: string(big)})
		layers = append(layers, l)
	}
	img := push(t, e.reg, "app", "v1", "amd64", layers...)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.svc.Pull(context.Background(), e.ref("app:v1"), registry.Credentials{})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range img.layers {
		if n := e.reg.BlobGets(l.Digest); n != 1 {
			t.Errorf("layer %s downloaded %d times", l.Digest, n)
		}
	}
}

func TestPullResumesPartialDownload(t *testing.T) {
	e := newEnv(t)
	big := make([]byte, 1<<20)
	rand.Read(big)
	l, _ := layer(t, file{name: "big", body: string(big)})
	img := push(t, e.reg, "app", "v1", "amd64", l)
	// Every attempt of the first pull is cut after 300 KiB.
	e.reg.CutBlob(img.layers[0].Digest, 300<<10, 100)
	if _, err := e.svc.Pull(context.Background(), e.ref("app:v1"), registry.Credentials{}); err == nil {
		t.Fatal("pull with a broken upstream succeeded")
	}
	if n := countSnapshots(t, e.snap); n != 0 {
		t.Fatalf("failed pull left %d snapshots", n)
	}
	ingests, err := e.cs.ListIngests(context.Background())
	if err != nil || len(ingests) != 1 || ingests[0].Offset < 300<<10 {
		t.Fatalf("partial ingest not kept: %+v %v", ingests, err)
	}
	e.reg.CutBlob(img.layers[0].Digest, 0, 0)
	e.reg.ResetLog()
	if _, err := e.svc.Pull(context.Background(), e.ref("app:v1"), registry.Credentials{}); err != nil {
		t.Fatal(err)
	}
	resumed := false
	for _, r := range e.reg.Requests() {
		if strings.Contains(r.Path, img.layers[0].Digest.String()) && strings.HasPrefix(r.Range, "bytes=") && r.Range != "bytes=0-" {
			resumed = true
		}
	}
	if !resumed {
		t.Fatalf("second pull did not resume with a Range request: %+v", e.reg.Requests())
	}
}

func TestPullStuckIsCancelled(t *testing.T) {
	e := newEnv(t, WithProgressTimeout(300*time.Millisecond))
	l, _ := layer(t, file{name: "x", body: strings.Repeat("x", 100000)})
	img := push(t, e.reg, "app", "v1", "amd64", l)
	e.reg.StallBlob(img.layers[0].Digest, 10)
	start := time.Now()
	_, err := e.svc.Pull(context.Background(), e.ref("app:v1"), registry.Credentials{})
	if !errors.Is(err, ErrPullStuck) {
		t.Fatalf("err = %v, want ErrPullStuck", err)
	}
	if !strings.Contains(err.Error(), e.ref("app:v1")) {
		t.Errorf("error does not name the image: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("stuck pull took %v", time.Since(start))
	}
}

func TestPullCancelledByClient(t *testing.T) {
	e := newEnv(t)
	l, _ := layer(t, file{name: "x", body: strings.Repeat("x", 100000)})
	img := push(t, e.reg, "app", "v1", "amd64", l)
	e.reg.StallBlob(img.layers[0].Digest, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := e.svc.Pull(ctx, e.ref("app:v1"), registry.Credentials{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if imgs, _ := e.svc.List(context.Background()); len(imgs) != 0 {
		t.Fatalf("cancelled pull listed %v", imgs)
	}
	// The download winds down on its own goroutine once its last waiter
	// is gone; the test's directory is removed only after it stopped
	// writing there.
	e.svc.blobs.wait()
}

func TestPullBadImages(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l, _ := layer(t, file{name: "x", body: "x"})
	// Diff ID in the config does not match the layer.
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString("other")}}}
	cb, _ := json.Marshal(cfg)
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: withMedia(e.reg.PushBlob("bad", cb), ocispec.MediaTypeImageConfig),
		Layers: []ocispec.Descriptor{withMedia(e.reg.PushBlob("bad", l), ocispec.MediaTypeImageLayerGzip)}}
	mb, _ := json.Marshal(m)
	e.reg.PushManifest("bad", "diffid", ocispec.MediaTypeImageManifest, mb)
	// Docker schema 1.
	e.reg.PushManifest("bad", "schema1", "application/vnd.docker.distribution.manifest.v1+prettyjws", []byte(`{"schemaVersion":1,"fsLayers":[]}`))

	tests := []struct {
		ref  string
		want error
	}{
		{"bad:diffid", ErrInvalidImage},
		{"bad:schema1", registry.ErrSchema1},
		{"bad:missing", registry.ErrNotFound},
	}
	for _, tc := range tests {
		_, err := e.svc.Pull(ctx, e.ref(tc.ref), registry.Credentials{})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.ref, err, tc.want)
		}
	}
	e.waitGC(t, 1)
	if n := countSnapshots(t, e.snap); n != 0 {
		t.Errorf("bad pulls left %d snapshots", n)
	}
	if imgs, _ := e.svc.List(ctx); len(imgs) != 0 {
		t.Errorf("bad pulls listed %v", imgs)
	}
}

// TestPullFailedLayerCancelsOthers: one layer the registry refuses fails
// the pull at once, whichever position it has, instead of waiting for the
// other layers to download in full (here: a layer that never finishes).
func TestPullFailedLayerCancelsOthers(t *testing.T) {
	for _, failFirst := range []bool{true, false} {
		e := newEnv(t)
		slow, _ := layer(t, file{name: "slow", body: strings.Repeat("s", 100000)})
		bad, _ := layer(t, file{name: "bad", body: "b"})
		layers := [][]byte{slow, bad}
		failIdx, slowIdx := 1, 0
		if failFirst {
			layers, failIdx, slowIdx = [][]byte{bad, slow}, 0, 1
		}
		img := push(t, e.reg, "app", "v1", "amd64", layers...)
		e.reg.StallBlob(img.layers[slowIdx].Digest, 10)
		e.reg.FailBlob(img.layers[failIdx].Digest, http.StatusNotFound)

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() {
			_, err := e.svc.Pull(ctx, e.ref("app:v1"), registry.Credentials{})
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, registry.ErrNotFound) {
				t.Fatalf("failFirst=%v: err = %v, want the missing layer's NotFound", failFirst, err)
			}
			if !strings.Contains(err.Error(), img.layers[failIdx].Digest.String()) {
				t.Errorf("failFirst=%v: error does not name the failed layer: %v", failFirst, err)
			}
			t.Logf("failFirst=%v: pull failed after %v", failFirst, time.Since(start))
		case <-time.After(30 * time.Second):
			// The stalled layer only ends when its client goes away (or
			// after the 5 minute progress timeout).
			cancel()
			<-done
			t.Fatalf("failFirst=%v: the pull is still waiting for the stalled layer after 30s", failFirst)
		}
		cancel()
		if imgs, _ := e.svc.List(context.Background()); len(imgs) != 0 {
			t.Fatalf("failed pull listed %v", imgs)
		}
	}
}
