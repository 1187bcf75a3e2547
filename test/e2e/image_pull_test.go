//go:build e2e

package e2e

import (
	"slices"
	"testing"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

func TestPullByTag(t *testing.T) {
	env := framework.NewEnv(t)
	for _, tc := range []struct {
		name   string
		ref    string // as kubelet passes it
		format images.Format
		tag    string // the normalized RepoTag
		repo   string // the RepoDigests name
	}{
		{"short name", "busybox", images.OCI, "docker.io/library/busybox:latest", "docker.io/library/busybox"},
		{"short name with tag", "busybox:1.36", images.OCI, "docker.io/library/busybox:1.36", "docker.io/library/busybox"},
		{"docker schema2", "docker.io/library/schema2:v1", images.Docker, "docker.io/library/schema2:v1", "docker.io/library/schema2"},
		{"other registry", "registry.k8s.io/e2e/pause:3.10", images.OCI, "registry.k8s.io/e2e/pause:3.10", "registry.k8s.io/e2e/pause"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The label keeps the images of the cases apart.
			img := busybox(t, images.WithFormat(tc.format), images.WithLabels(map[string]string{"case": tc.name}))
			env.Push(t, tc.ref, img)
			pull(t, env.Daemon, tc.ref, img.ID().String())

			want := []string{tc.repo + "@" + img.Digest().String()}
			checkImage(t, mustStatus(t, env.Daemon, tc.ref), img.ID().String(), []string{tc.tag}, want)
			// The same image by its normalized name and by ID.
			checkImage(t, mustStatus(t, env.Daemon, tc.tag), img.ID().String(), []string{tc.tag}, want)
			checkImage(t, mustStatus(t, env.Daemon, img.ID().String()), img.ID().String(), []string{tc.tag}, want)
		})
	}
}

func TestPullByDigest(t *testing.T) {
	env := framework.NewEnv(t)
	for _, tc := range []struct {
		name string
		repo string // RepoDigests name; the image is pushed to it by digest only
	}{
		{"docker.io", "docker.io/library/bydigest"},
		{"registry.k8s.io", "registry.k8s.io/e2e/bydigest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := busybox(t, images.WithLabels(map[string]string{"case": tc.name}))
			ref := tc.repo + "@" + img.Digest().String()
			env.Push(t, ref, img)
			pull(t, env.Daemon, ref, img.ID().String())
			// Pulling by digest names the image by that digest and adds
			// no tag.
			checkImage(t, mustStatus(t, env.Daemon, ref), img.ID().String(), nil, []string{ref})
		})
	}
}

func TestPullMultiLayer(t *testing.T) {
	env := framework.NewEnv(t)
	layers, err := images.MultiLayers()
	if err != nil {
		t.Fatal(err)
	}
	img := busybox(t, images.WithLayers(layers...))
	env.Push(t, "multilayer:v1", img)
	pull(t, env.Daemon, "multilayer:v1", img.ID().String())
	checkImage(t, mustStatus(t, env.Daemon, "multilayer:v1"), img.ID().String(),
		[]string{"docker.io/library/multilayer:v1"}, []string{"docker.io/library/multilayer@" + img.Digest().String()})

	resp, err := env.Daemon.Images().ImageStatus(testCtx(t), spec("multilayer:v1"), true)
	if err != nil {
		t.Fatal(err)
	}
	cfg := findConfig(resp.GetInfo())
	if cfg == nil {
		t.Fatalf("verbose ImageStatus info holds no image config: %v", resp.GetInfo())
	}
	if !slices.Equal(cfg.RootFS.DiffIDs, img.Config.RootFS.DiffIDs) {
		t.Errorf("diff_ids = %v, want %v", cfg.RootFS.DiffIDs, img.Config.RootFS.DiffIDs)
	}
}

func TestPullMultiArch(t *testing.T) {
	env := framework.NewEnv(t)
	for _, format := range []images.Format{images.OCI, images.Docker} {
		t.Run(format.String(), func(t *testing.T) {
			// Without the label both formats would have the same config
			// bytes, hence be one image (one ID) with two names.
			idx, err := images.MultiArch(format, images.WithLabels(map[string]string{"format": format.String()}))
			if err != nil {
				t.Fatal(err)
			}
			ref := "docker.io/library/multiarch-" + format.String() + ":latest"
			env.Push(t, ref, idx)
			// This node is linux/amd64: the image is the amd64 one, and
			// it is known by the digest that was pulled, the index's.
			amd64 := idx.Platform("linux/amd64")
			pull(t, env.Daemon, ref, amd64.ID().String())
			checkImage(t, mustStatus(t, env.Daemon, ref), amd64.ID().String(), []string{ref},
				[]string{"docker.io/library/multiarch-" + format.String() + "@" + idx.Digest().String()})
			for _, p := range []string{"linux/arm64", "linux/arm/v7"} {
				if img := imageStatus(t, env.Daemon, idx.Platform(p).ID().String()); img != nil {
					t.Errorf("the %s image %s was pulled too", p, img.Id)
				}
			}
		})
	}
}

// TestPullManyTags pulls one image under three names: it is one image with
// three RepoTags and a RepoDigest per repository.
func TestPullManyTags(t *testing.T) {
	env := framework.NewEnv(t)
	img := busybox(t)
	refs := []string{"docker.io/library/multitag:a", "docker.io/library/multitag:b", "registry.k8s.io/e2e/multitag:v1"}
	for _, ref := range refs {
		env.Push(t, ref, img)
		pull(t, env.Daemon, ref, img.ID().String())
	}
	digests := []string{"docker.io/library/multitag@" + img.Digest().String(), "registry.k8s.io/e2e/multitag@" + img.Digest().String()}

	list := listImages(t, env.Daemon, nil)
	n := 0
	for _, i := range list {
		if i.Id == img.ID().String() {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("ListImages has %d entries for %s, want 1: %v", n, img.ID(), list)
	}
	checkImage(t, findImage(list, img.ID().String()), img.ID().String(), refs, digests)
	for _, ref := range refs {
		checkImage(t, mustStatus(t, env.Daemon, ref), img.ID().String(), refs, digests)
	}
}

// TestPullMovesTag repushes a tag with another image: after the second
// pull the tag belongs to the new image only, as with `docker pull`.
func TestPullMovesTag(t *testing.T) {
	env := framework.NewEnv(t)
	const ref, tag = "moving:t1", "docker.io/library/moving:t1"
	a := busybox(t, images.WithLabels(map[string]string{"v": "a"}))
	b := busybox(t, images.WithLabels(map[string]string{"v": "b"}))

	env.Push(t, ref, a)
	pull(t, env.Daemon, ref, a.ID().String())
	env.Push(t, ref, b)
	pull(t, env.Daemon, ref, b.ID().String())

	if got := mustStatus(t, env.Daemon, ref); got.Id != b.ID().String() {
		t.Errorf("%s is image %s, want the new image %s", ref, got.Id, b.ID())
	}
	checkImage(t, mustStatus(t, env.Daemon, b.ID().String()), b.ID().String(), []string{tag},
		[]string{"docker.io/library/moving@" + b.Digest().String()})
	// The old image may be kept (untagged, still known by its digest, so
	// kubelet's GC can remove it) or removed, but it must not keep the tag.
	if old := imageStatus(t, env.Daemon, a.ID().String()); old != nil && slices.Contains(old.RepoTags, tag) {
		t.Errorf("old image %s still has tag %s: %v", a.ID(), tag, old.RepoTags)
	}
	for _, i := range listImages(t, env.Daemon, nil) {
		if i.Id != b.ID().String() && slices.Contains(i.RepoTags, tag) {
			t.Errorf("ListImages: %s also has tag %s", i.Id, tag)
		}
	}
}
