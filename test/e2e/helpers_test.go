//go:build e2e

// Package e2e holds the end-to-end tests of cri-runtimed: a real daemon
// built from this tree, driven through the kubelet's CRI client, pulling
// images that package images builds from Debian's busybox and serves from
// a local docker-registry.
package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

func TestMain(m *testing.M) { framework.Main(m) }

// testCtx is the test's context bounded by a generous timeout, so a hung
// RPC fails the test instead of eating the whole suite timeout.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func spec(ref string) *runtimeapi.ImageSpec { return &runtimeapi.ImageSpec{Image: ref} }

func busybox(t *testing.T, opts ...images.Option) *images.Image {
	t.Helper()
	img, err := images.Busybox(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// pull pulls ref and checks the returned image ref is the image ID.
func pull(t *testing.T, d *framework.Daemon, ref string, wantID string) {
	t.Helper()
	got, err := d.Images().PullImage(testCtx(t), spec(ref), nil, nil)
	if err != nil {
		t.Fatalf("PullImage(%q): %v", ref, err)
	}
	// Kubelet stores the returned ref as the container's imageRef and
	// compares it with ImageStatus().Id: it must be the image ID.
	if got != wantID {
		t.Fatalf("PullImage(%q) = %q, want image ID %s", ref, got, wantID)
	}
}

// status returns ImageStatus(ref).Image (nil if unknown), failing on error.
func imageStatus(t *testing.T, d *framework.Daemon, ref string) *runtimeapi.Image {
	t.Helper()
	resp, err := d.Images().ImageStatus(testCtx(t), spec(ref), false)
	if err != nil {
		t.Fatalf("ImageStatus(%q): %v", ref, err)
	}
	return resp.GetImage()
}

// mustStatus is status that fails when the image is unknown.
func mustStatus(t *testing.T, d *framework.Daemon, ref string) *runtimeapi.Image {
	t.Helper()
	img := imageStatus(t, d, ref)
	if img == nil {
		t.Fatalf("ImageStatus(%q): image not found", ref)
	}
	return img
}

func listImages(t *testing.T, d *framework.Daemon, filter *runtimeapi.ImageFilter) []*runtimeapi.Image {
	t.Helper()
	list, err := d.Images().ListImages(testCtx(t), filter)
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	return list
}

func findImage(list []*runtimeapi.Image, id string) *runtimeapi.Image {
	for _, img := range list {
		if img.GetId() == id {
			return img
		}
	}
	return nil
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	return slices.Equal(a, b)
}

// checkImage asserts the CRI fields of an image kubelet relies on.
func checkImage(t *testing.T, got *runtimeapi.Image, id string, tags, digests []string) {
	t.Helper()
	if got == nil {
		t.Fatalf("image %s not found", id)
	}
	if got.Id != id {
		t.Errorf("Id = %s, want %s (the config digest)", got.Id, id)
	}
	if !sameSet(got.RepoTags, tags) {
		t.Errorf("RepoTags = %q, want %q", got.RepoTags, tags)
	}
	if !sameSet(got.RepoDigests, digests) {
		t.Errorf("RepoDigests = %q, want %q", got.RepoDigests, digests)
	}
	if got.Size == 0 {
		t.Errorf("Size = 0, want the image size")
	}
}

// findConfig looks for the OCI image config in the verbose ImageStatus
// info: some value must be JSON holding, at any depth, an object with
// "rootfs" and "config" (containerd nests it as info.imageSpec; the key is
// not part of CRI, the content is what kubelet users expect).
func findConfig(info map[string]string) *ocispec.Image {
	var walk func(v any) *ocispec.Image
	walk = func(v any) *ocispec.Image {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["rootfs"]; ok {
				if _, ok := v["config"]; ok {
					data, _ := json.Marshal(v)
					var img ocispec.Image
					if json.Unmarshal(data, &img) == nil {
						return &img
					}
				}
			}
			for _, c := range v {
				if img := walk(c); img != nil {
					return img
				}
			}
		case []any:
			for _, c := range v {
				if img := walk(c); img != nil {
					return img
				}
			}
		}
		return nil
	}
	for _, s := range info {
		var v any
		if json.Unmarshal([]byte(s), &v) == nil {
			if img := walk(v); img != nil {
				return img
			}
		}
	}
	return nil
}
