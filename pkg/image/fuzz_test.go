package image

import (
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
)

// FuzzDecodeManifest feeds registry bytes through what a pull does with
// them: media type detection, index platform selection, manifest and
// config decoding. None may panic, and what passes must be usable.
func FuzzDecodeManifest(f *testing.F) {
	const d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"`+d+`","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"`+d+`","size":10}]}`),
		[]byte(`{"rootfs":{"type":"layers","diff_ids":["`+d+`"]},"config":{"User":"1000"}}`))
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"`+d+`","size":5,"platform":{"os":"linux","architecture":"amd64"}}]}`), []byte(`{}`))
	f.Add([]byte(`{"schemaVersion":1,"fsLayers":[]}`), []byte(`null`))
	f.Add([]byte(`{"config":{"digest":"sha256:../../etc"},"layers":[{"size":-1}]}`), []byte(`{"rootfs":{"diff_ids":["bogus"]}}`))
	f.Add([]byte(`[]`), []byte(``))
	f.Fuzz(func(t *testing.T, body, cfgBody []byte) {
		mt := detectMediaType("", body)
		if mt == "application/vnd.oci.image.index.v1+json" {
			if desc, err := registry.SelectPlatform(body, registry.DefaultPlatform()); err == nil {
				if desc.Digest.Validate() != nil {
					t.Fatalf("SelectPlatform returned an invalid digest %q", desc.Digest)
				}
			}
		}
		m, err := parseManifest(body, digest.FromBytes(body))
		if err != nil {
			return
		}
		if m.Config.Digest.Validate() != nil || m.Config.Size < 0 || len(m.Layers) > maxLayers {
			t.Fatalf("accepted an unusable manifest: %+v", m)
		}
		for _, l := range m.Layers {
			if l.Digest.Validate() != nil || l.Size < 0 {
				t.Fatalf("accepted an unusable layer: %+v", l)
			}
		}
		cfg, err := parseConfig(cfgBody, m)
		if err != nil {
			return
		}
		if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
			t.Fatalf("config with %d diff IDs accepted for %d layers", len(cfg.RootFS.DiffIDs), len(m.Layers))
		}
		if ids := ChainIDs(cfg.RootFS.DiffIDs); len(ids) != len(m.Layers) {
			t.Fatalf("%d chain IDs for %d layers", len(ids), len(m.Layers))
		}
	})
}
