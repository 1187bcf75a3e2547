package registry

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry/registrytest"
)

// testImage is a one-layer image pushed to a test registry under a tag.
type testImage struct {
	index, manifest, config, layer ocispec.Descriptor
	indexBody, manifestBody        []byte
	layerData                      []byte
}

func pushImage(t *testing.T, reg *registrytest.Registry, repo, tag string) testImage {
	t.Helper()
	var img testImage
	img.layerData = make([]byte, 100_000)
	for i := range img.layerData {
		img.layerData[i] = byte(i * 7)
	}
	img.layer = reg.PushBlob(repo, img.layerData)
	img.layer.MediaType = ocispec.MediaTypeImageLayerGzip
	img.config = reg.PushBlob(repo, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	img.config.MediaType = ocispec.MediaTypeImageConfig
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: img.config, Layers: []ocispec.Descriptor{img.layer}}
	m.SchemaVersion = 2
	img.manifestBody = mustJSON(t, m)
	img.manifest = reg.PushManifest(repo, "", ocispec.MediaTypeImageManifest, img.manifestBody)
	img.manifest.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{img.manifest}}
	idx.SchemaVersion = 2
	img.indexBody = mustJSON(t, idx)
	img.index = reg.PushManifest(repo, tag, ocispec.MediaTypeImageIndex, img.indexBody)
	return img
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func named(t *testing.T, s string) reference.Named {
	t.Helper()
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func fastClient(dir string, opts ...Option) *Client {
	return New(dir, append([]Option{WithRetries(3, time.Millisecond)}, opts...)...)
}

func repository(t *testing.T, c *Client, name string, creds Credentials) *Repository {
	t.Helper()
	r, err := c.Repository(context.Background(), named(t, name), creds)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// hostsDir writes <dir>/<domain>/hosts.toml and returns dir.
func hostsDir(t *testing.T, domain, toml string, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	d := filepath.Join(dir, domain)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(d, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// deadAddr returns an address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func countRequests(reg *registrytest.Registry, server, method string) int {
	n := 0
	for _, r := range reg.Requests() {
		if r.Server == server && (method == "" || r.Method == method) {
			n++
		}
	}
	return n
}
