//go:build e2e

// Command pushimages pushes the benchmark's images to a local registry:
// library/busybox:latest (Debian's static busybox, Cmd ["sh"]) and
// pause:3.6, a pause stand-in made of the same busybox layer whose
// entrypoint sleeps forever. Nothing can be pulled from the internet on
// the benchmark machines, and containerd needs its sandbox image from a
// registry, so both are built here with the end-to-end tests' image
// builder (test/e2e/images) and pushed with its registry client
// (test/e2e/registry). Those packages carry the e2e build tag, hence this
// one too: go run -tags e2e ./test/bench/pushimages --registry URL.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/registry"
)

// PauseCommand is the pause stand-in's entrypoint. Busybox's sleep takes
// whole seconds; 2^31-1 of them is forever for a benchmark and fits every
// time_t.
var PauseCommand = []string{"/bin/sleep", "2147483647"}

func main() {
	url := flag.String("registry", "http://127.0.0.1:5055", "base URL of the registry")
	scale := flag.Int("scale-images", 0, "also push this many distinct images library/scale:000, 001, ... for cri-bench --scale")
	flag.Parse()
	err := push(*url)
	if err == nil && *scale > 0 {
		err = pushScale(*url, *scale)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushimages:", err)
		os.Exit(1)
	}
}

// pushScale pushes n images that are distinct (each config names its
// index, so each has its own image ID) but share their layers: the
// busybox base and one of three small layers. A node with hundreds of
// images is mostly tags and configs; the layers are few.
func pushScale(url string, n int) error {
	var small []images.Layer
	for i := range 3 {
		l, err := images.NewLayer().Dir("scale", 0o755).File(fmt.Sprintf("scale/layer%d", i), []byte(fmt.Sprintf("layer %d\n", i)), 0o644).Build()
		if err != nil {
			return err
		}
		small = append(small, l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for i := range n {
		img, err := images.Busybox(images.WithLayers(small[i%len(small)]), images.WithEnv(fmt.Sprintf("SCALE_INDEX=%d", i)))
		if err != nil {
			return fmt.Errorf("build scale image %d: %w", i, err)
		}
		if err := registry.Push(ctx, url, "library/scale", fmt.Sprintf("%03d", i), img); err != nil {
			return fmt.Errorf("push library/scale:%03d: %w", i, err)
		}
	}
	fmt.Printf("pushed %d images %s/library/scale:000..%03d\n", n, url, n-1)
	return nil
}

func push(url string) error {
	busybox, err := images.Busybox()
	if err != nil {
		return fmt.Errorf("build busybox: %w", err)
	}
	pause, err := images.Busybox(images.WithEntrypoint(PauseCommand...), images.WithCmd())
	if err != nil {
		return fmt.Errorf("build pause: %w", err)
	}
	multi, err := multiLayer()
	if err != nil {
		return fmt.Errorf("build multilayer: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, p := range []struct {
		repo, tag string
		img       *images.Image
	}{
		{"library/busybox", "latest", busybox},
		{"pause", "3.6", pause},
		{"library/multilayer", "latest", multi},
	} {
		if err := registry.Push(ctx, url, p.repo, p.tag, p.img); err != nil {
			return fmt.Errorf("push %s:%s: %w", p.repo, p.tag, err)
		}
		fmt.Printf("pushed %s/%s:%s %s\n", url, p.repo, p.tag, p.img.Digest())
	}
	return nil
}

// multiLayer is the pull benchmark's image: the busybox base, three 8 MiB
// layers of incompressible data and a layer of 2000 small files, so that
// both bandwidth and per-file unpack cost show.
func multiLayer() (*images.Image, error) {
	var layers []images.Layer
	for i := range 3 {
		l, err := images.RandomLayer(fmt.Sprintf("data/blob%d", i), 8<<20, uint64(i+1))
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	b := images.NewLayer().Dir("files", 0o755)
	for i := range 2000 {
		b = b.File(fmt.Sprintf("files/f%04d", i), []byte(fmt.Sprintf("file %d\n", i)), 0o644)
	}
	small, err := b.Build()
	if err != nil {
		return nil, err
	}
	return images.Busybox(images.WithLayers(append(layers, small)...))
}
