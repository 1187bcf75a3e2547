package image

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry/registrytest"
)

// pushArtifact pushes an artifact manifest (artifactType set, the empty
// config) with layers under repo:tag.
func pushArtifact(t *testing.T, reg *registrytest.Registry, repo, tag string, layers ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	empty := withMedia(reg.PushBlob(repo, []byte("{}")), ocispec.MediaTypeEmptyJSON)
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: "application/vnd.example.data.v1", Config: empty, Layers: layers}
	mb, _ := json.Marshal(m)
	return reg.PushManifest(repo, tag, ocispec.MediaTypeImageManifest, mb)
}

func fileLayer(reg *registrytest.Registry, repo, mediaType, title, body string) ocispec.Descriptor {
	d := withMedia(reg.PushBlob(repo, []byte(body)), mediaType)
	if title != "" {
		d.Annotations = map[string]string{ocispec.AnnotationTitle: title}
	}
	return d
}

// viewFiles returns the directory of a view of snapshot top (the native
// snapshotter's view is one bind mount's source), read as an image
// volume would be; the caller removes view-<test name>.
func viewFiles(t *testing.T, e *env, top string) string {
	t.Helper()
	mounts, err := e.snap.View(context.Background(), "view-"+t.Name(), top)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 1 || mounts[0].Type != "bind" {
		t.Fatalf("native view mounts = %+v", mounts)
	}
	return mounts[0].Source
}

// TestPullArtifact: an OCI artifact pulls into a snapshot chain an image
// volume mounts: a tar layer unpacked at the root, other layers as files
// named by their title (with directories), else by their digest; its ID
// is the manifest digest; it is no runnable image (Config refuses it).
func TestPullArtifact(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tarBlob, _ := layer(t, file{name: "dir", dir: true}, file{name: "dir/in-tar.txt", body: "from the tar"})
	untitled := fileLayer(e.reg, "art", "application/octet-stream", "", "no title")
	layers := []ocispec.Descriptor{
		withMedia(e.reg.PushBlob("art", tarBlob), "application/vnd.example.bundle.v1.tar+gzip"),
		fileLayer(e.reg, "art", "application/vnd.example.model", "model.bin", "weights"),
		fileLayer(e.reg, "art", "text/plain", "docs/readme.txt", "read me"),
		untitled,
	}
	md := pushArtifact(t, e.reg, "art", "v1", layers...)
	img, err := e.svc.Pull(ctx, e.ref("art:v1"), registry.Credentials{})
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if img.ID != md.Digest || img.ArtifactType != "application/vnd.example.data.v1" || len(img.ChainIDs) != 4 {
		t.Fatalf("artifact record = %+v, want ID %s, its artifact type and 4 chain IDs", img, md.Digest)
	}
	if _, err := e.svc.Config(ctx, img); !errors.Is(err, ErrArtifact) {
		t.Errorf("Config of an artifact = %v, want ErrArtifact", err)
	}
	root := viewFiles(t, e, img.TopChainID().String())
	for name, want := range map[string]string{
		"dir/in-tar.txt":                      "from the tar",
		"model.bin":                           "weights",
		"docs/readme.txt":                     "read me",
		"sha256-" + untitled.Digest.Encoded(): "no title",
	} {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
	if st, err := os.Stat(filepath.Join(root, "model.bin")); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("model.bin mode = %v, %v; want 0644", st.Mode(), err)
	}
	// By tag, digest and ID, as kubelet resolves Mount.image.
	for _, name := range []string{e.ref("art:v1"), img.RepoDigests[0], img.ID.String()} {
		if got, err := e.svc.Get(ctx, name); err != nil || got.ID != img.ID {
			t.Errorf("Get(%s) = %s, %v", name, got.ID, err)
		}
	}
	// A second pull reuses the snapshots; removal and GC take them all.
	before := countSnapshots(t, e.snap)
	if _, err := e.svc.Pull(ctx, e.ref("art:v1"), registry.Credentials{}); err != nil {
		t.Fatal(err)
	}
	if n := countSnapshots(t, e.snap); n != before {
		t.Errorf("snapshots after a second pull = %d, want %d", n, before)
	}
	if err := e.snap.Remove(ctx, "view-"+t.Name()); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Remove(ctx, img.ID.String()); err != nil {
		t.Fatal(err)
	}
	e.waitGC(t, 1)
	if n, b := countSnapshots(t, e.snap), countBlobs(t, e.cs); n != 0 || b != 0 {
		t.Errorf("after removal %d snapshots and %d blobs are left, want none", n, b)
	}
}

// TestPullArtifactRefusesBadNames: a file name from the registry that
// leaves the volume, or is an overlay whiteout, fails the pull.
func TestPullArtifactRefusesBadNames(t *testing.T) {
	e := newEnv(t)
	for i, name := range []string{"../escape", "/etc/passwd", "a/../../b", ".wh.secret", "dir/", "./x"} {
		tag := "bad" + string(rune('a'+i))
		pushArtifact(t, e.reg, "art", tag, fileLayer(e.reg, "art", "text/plain", name, "x"))
		_, err := e.svc.Pull(context.Background(), e.ref("art:"+tag), registry.Credentials{})
		if !errors.Is(err, ErrInvalidImage) || !strings.Contains(err.Error(), "file name") {
			t.Errorf("pull of an artifact with file name %q = %v, want ErrInvalidImage naming it", name, err)
		}
	}
}

// TestArtifactKind: which manifests are artifacts.
func TestArtifactKind(t *testing.T) {
	for _, tc := range []struct {
		m    ocispec.Manifest
		want string
	}{
		{ocispec.Manifest{Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig}}, ""},
		{ocispec.Manifest{Config: ocispec.Descriptor{MediaType: mediaTypeDockerConfig}}, ""},
		{ocispec.Manifest{}, ""},
		{ocispec.Manifest{Config: ocispec.Descriptor{MediaType: "application/vnd.cncf.helm.config.v1+json"}}, "application/vnd.cncf.helm.config.v1+json"},
		{ocispec.Manifest{ArtifactType: "application/x-model", Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeEmptyJSON}}, "application/x-model"},
		{ocispec.Manifest{ArtifactType: "application/x-sbom", Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig}}, "application/x-sbom"},
	} {
		if got := artifactKind(tc.m); got != tc.want {
			t.Errorf("artifactKind(%+v) = %q, want %q", tc.m, got, tc.want)
		}
	}
}
