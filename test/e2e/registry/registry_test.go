//go:build e2e

package registry_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/registry"
)

// These tests check the harness against third-party tools (skopeo, umoci),
// so that a failing daemon test can be blamed on the daemon, not on images
// this framework built wrongly.

func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed", name)
	}
	return p
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

type skopeoInspect struct {
	Digest       digest.Digest
	Architecture string
	Os           string
	Layers       []digest.Digest
	Env          []string
}

func inspect(t *testing.T, ref string, extra ...string) skopeoInspect {
	t.Helper()
	args := append([]string{"inspect", "--tls-verify=false"}, extra...)
	out := run(t, lookTool(t, "skopeo"), append(args, "docker://"+ref)...)
	var got skopeoInspect
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("skopeo output: %v\n%s", err, out)
	}
	return got
}

func TestPushedImagesInspect(t *testing.T) {
	reg := registry.Start(t)
	multi, err := images.MultiLayers()
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []images.Format{images.OCI, images.Docker} {
		t.Run(format.String(), func(t *testing.T) {
			img, err := images.Busybox(images.WithFormat(format), images.WithLayers(multi...), images.WithEnv("A=b"))
			if err != nil {
				t.Fatal(err)
			}
			repo := "e2e/" + format.String()
			reg.Push(t, repo, "v1", img)

			got := inspect(t, reg.Host+"/"+repo+":v1")
			if got.Digest != img.Digest() {
				t.Errorf("digest = %s, built %s", got.Digest, img.Digest())
			}
			if got.Architecture != "amd64" || got.Os != "linux" {
				t.Errorf("platform = %s/%s", got.Os, got.Architecture)
			}
			if len(got.Layers) != 3 {
				t.Fatalf("layers = %v, want 3", got.Layers)
			}
			for i, l := range img.Layers {
				if got.Layers[i] != l.Digest {
					t.Errorf("layer %d = %s, built %s", i, got.Layers[i], l.Digest)
				}
			}
			if !strings.Contains(strings.Join(got.Env, " "), "A=b") {
				t.Errorf("env = %v", got.Env)
			}

			d, err := registry.ManifestDigest(context.Background(), reg.URL, repo, "v1")
			if err != nil || d != img.Digest() {
				t.Errorf("ManifestDigest = %s, %v; want %s", d, err, img.Digest())
			}
		})
	}
}

func TestPushedIndexInspect(t *testing.T) {
	reg := registry.Start(t)
	for _, format := range []images.Format{images.OCI, images.Docker} {
		t.Run(format.String(), func(t *testing.T) {
			idx, err := images.MultiArch(format)
			if err != nil {
				t.Fatal(err)
			}
			repo := "e2e/multiarch-" + format.String()
			reg.Push(t, repo, "latest", idx)
			raw := run(t, lookTool(t, "skopeo"), "inspect", "--raw", "--tls-verify=false", "docker://"+reg.Host+"/"+repo+":latest")
			if got := digest.FromBytes(raw); got != idx.Digest() {
				t.Errorf("index digest = %s, built %s", got, idx.Digest())
			}
			for _, tc := range []struct{ arch, variant, platform string }{
				{"amd64", "", "linux/amd64"},
				{"arm64", "", "linux/arm64"},
				{"arm", "v7", "linux/arm/v7"},
			} {
				args := []string{"--override-os", "linux", "--override-arch", tc.arch}
				if tc.variant != "" {
					args = append(args, "--override-variant", tc.variant)
				}
				// skopeo reports the index digest, so the platform's
				// image is recognised by its layers.
				got := inspect(t, reg.Host+"/"+repo+":latest", args...)
				img := idx.Platform(tc.platform)
				if got.Digest != idx.Digest() || got.Architecture != tc.arch {
					t.Errorf("%s: digest %s arch %s, want %s %s", tc.platform, got.Digest, got.Architecture, idx.Digest(), tc.arch)
				}
				if len(got.Layers) != len(img.Layers) || got.Layers[0] != img.Layers[0].Digest {
					t.Errorf("%s: layers %v, want %s", tc.platform, got.Layers, img.Layers[0].Digest)
				}
			}
		})
	}
}

// TestUnpackMultiLayer unpacks the multi-layer image with umoci (an
// independent implementation of OCI whiteouts) and checks the result is
// what images.MultiLayerFiles documents.
func TestUnpackMultiLayer(t *testing.T) {
	skopeo, umoci := lookTool(t, "skopeo"), lookTool(t, "umoci")
	reg := registry.Start(t)
	multi, err := images.MultiLayers()
	if err != nil {
		t.Fatal(err)
	}
	img, err := images.Busybox(images.WithLayers(multi...))
	if err != nil {
		t.Fatal(err)
	}
	reg.Push(t, "e2e/multi", "v1", img)

	dir := t.TempDir()
	run(t, skopeo, "copy", "--src-tls-verify=false", "docker://"+reg.Host+"/e2e/multi:v1", "oci:"+filepath.Join(dir, "layout")+":v1")
	run(t, umoci, "unpack", "--image", filepath.Join(dir, "layout")+":v1", filepath.Join(dir, "bundle"))
	rootfs := filepath.Join(dir, "bundle", "rootfs")

	for p, want := range images.MultiLayerFiles {
		if strings.HasSuffix(p, "/") {
			if fi, err := os.Stat(filepath.Join(rootfs, p)); err != nil || !fi.IsDir() {
				t.Errorf("%s: want a directory: %v", p, err)
			}
			continue
		}
		got, err := os.ReadFile(filepath.Join(rootfs, p))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", p, got, err, want)
		}
	}
	for _, p := range images.MultiLayerGone {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); !os.IsNotExist(err) {
			t.Errorf("%s exists (err %v); a whiteout should have removed it", p, err)
		}
	}
	for _, p := range []string{"/bin/busybox", "/bin/sh", "/etc/passwd"} {
		if _, err := os.Stat(filepath.Join(rootfs, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if out := run(t, filepath.Join(rootfs, "bin", "busybox"), "echo", "ok"); string(out) != "ok\n" {
		t.Errorf("unpacked busybox echo = %q", out)
	}
}

// TestPushSkipsExistingBlobs pushes the same image twice through a
// recording proxy: the second push must not upload anything.
func TestPushSkipsExistingBlobs(t *testing.T) {
	reg := registry.Start(t)
	proxy := registry.StartProxy(t, reg.URL)
	img, err := images.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	uploads := func() int {
		n := 0
		for _, r := range proxy.Requests() {
			if r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/blobs/uploads/") {
				n++
			}
		}
		return n
	}
	if err := registry.Push(ctx, proxy.URL, "e2e/skip", "a", img); err != nil {
		t.Fatal(err)
	}
	if got := uploads(); got != len(img.Blobs()) {
		t.Fatalf("first push started %d uploads, want %d", got, len(img.Blobs()))
	}
	if err := registry.Push(ctx, proxy.URL, "e2e/skip", "b", img); err != nil {
		t.Fatal(err)
	}
	if got := uploads(); got != len(img.Blobs()) {
		t.Errorf("second push started %d more uploads, want none", got-len(img.Blobs()))
	}
}

// TestProxyStall checks that a stalled blob download delivers exactly the
// bytes before the stall and the rest after Release.
func TestProxyStall(t *testing.T) {
	reg := registry.Start(t)
	proxy := registry.StartProxy(t, reg.URL)
	layer, err := images.RandomLayer("big", 4<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	img, err := images.Busybox(images.WithLayers(layer))
	if err != nil {
		t.Fatal(err)
	}
	reg.Push(t, "e2e/stall", "v1", img)

	const after = 1 << 20
	stall := proxy.StallBlob(layer.Digest, after)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, proxy.URL+"/v2/e2e/stall/blobs/"+layer.Digest.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, after)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stall.Reached():
	case <-ctx.Done():
		t.Fatal("stall not reported")
	}
	stall.Release()
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := digest.FromBytes(append(buf, rest...)); got != layer.Digest {
		t.Errorf("stalled download digest = %s, want %s", got, layer.Digest)
	}
	if gets := proxy.BlobGets(layer.Digest); len(gets) != 1 {
		t.Errorf("recorded %d GETs of the blob, want 1", len(gets))
	}
}

func TestFaultyMirrors(t *testing.T) {
	_, err := http.Get(registry.DownURL(t) + "/v2/")
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("GET on the down URL: %v, want connection refused", err)
	}
	es := registry.StartErrorServer(t, http.StatusInternalServerError)
	resp, err := http.Get(es.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || es.Requests() != 1 {
		t.Errorf("error server: status %d after %d requests", resp.StatusCode, es.Requests())
	}
}
