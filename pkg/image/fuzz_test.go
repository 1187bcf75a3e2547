package image

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/content"
)

// FuzzDecodeManifest feeds registry bytes through what a pull does with
// them: media type detection, index platform selection, manifest and
// config decoding. None may panic, and what passes must be usable by the
// next steps, which check the bytes their own way: every digest the
// parser accepts names a blob the content store can hold (the store, not
// the parser, turns it into a path), the chain IDs made from the config
// are valid digests, and the accepted manifest says the same thing once
// encoded again (a parser that drops or invents fields would not).
func FuzzDecodeManifest(f *testing.F) {
	const d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"`+d+`","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"`+d+`","size":10}]}`),
		[]byte(`{"rootfs":{"type":"layers","diff_ids":["`+d+`"]},"config":{"User":"1000"}}`))
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"`+d+`","size":5,"platform":{"os":"linux","architecture":"amd64"}}]}`), []byte(`{}`))
	f.Add([]byte(`{"schemaVersion":1,"fsLayers":[]}`), []byte(`null`))
	f.Add([]byte(`{"config":{"digest":"sha256:../../etc"},"layers":[{"size":-1}]}`), []byte(`{"rootfs":{"diff_ids":["bogus"]}}`))
	f.Add([]byte(`{"config":{"digest":"sha512:`+strings.Repeat("ab", 64)+`"},"layers":[{"digest":"SHA256:`+strings.Repeat("A", 64)+`"}]}`), []byte(`{}`))
	f.Add([]byte(`[]`), []byte(``))
	cs, err := content.New(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	usable := func(t *testing.T, what string, dg digest.Digest) {
		if _, err := cs.Info(ctx, dg); !errors.Is(err, content.ErrNotFound) {
			t.Fatalf("%s digest %q passed the parser but not the content store: %v", what, dg, err)
		}
	}
	f.Fuzz(func(t *testing.T, body, cfgBody []byte) {
		mt := detectMediaType("", body)
		if mt == "application/vnd.oci.image.index.v1+json" {
			if desc, err := registry.SelectPlatform(body, registry.DefaultPlatform()); err == nil {
				usable(t, "index entry", desc.Digest)
			}
		}
		m, err := parseManifest(body, digest.FromBytes(body))
		if err != nil {
			return
		}
		usable(t, "config", m.Config.Digest)
		for _, l := range m.Layers {
			usable(t, "layer", l.Digest)
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("re-encode an accepted manifest: %v", err)
		}
		m2, err := parseManifest(again, digest.FromBytes(again))
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("accepted manifest changes when encoded again: %v\n%+v\n%+v", err, m, m2)
		}
		cfg, err := parseConfig(cfgBody, m)
		if err != nil {
			return
		}
		ids := ChainIDs(cfg.RootFS.DiffIDs)
		if len(ids) != len(m.Layers) {
			t.Fatalf("%d chain IDs for %d layers", len(ids), len(m.Layers))
		}
		for _, id := range ids {
			usable(t, "chain ID", id)
		}
	})
}
