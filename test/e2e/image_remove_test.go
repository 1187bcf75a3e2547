//go:build e2e

package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

func removeImage(t *testing.T, d *framework.Daemon, ref string) {
	t.Helper()
	if err := d.Images().RemoveImage(testCtx(t), spec(ref)); err != nil {
		t.Fatalf("RemoveImage(%q): %v", ref, err)
	}
}

// TestRemoveImage removes an image pulled by one name, naming it in each
// way kubelet and crictl do: the image is gone under every name.
func TestRemoveImage(t *testing.T) {
	env := framework.NewEnv(t)
	for _, tc := range []struct {
		name   string
		pull   func(img *images.Image) string // the reference pulled
		remove func(img *images.Image) string // the reference removed
	}{
		{"by ID",
			func(*images.Image) string { return "rm-id:v1" },
			func(img *images.Image) string { return img.ID().String() }},
		{"by ID prefix",
			func(*images.Image) string { return "rm-prefix:v1" },
			func(img *images.Image) string { return img.ID().Encoded()[:12] }},
		{"by only tag",
			func(*images.Image) string { return "rm-tag:v1" },
			func(*images.Image) string { return "docker.io/library/rm-tag:v1" }},
		{"by digest",
			func(img *images.Image) string { return "docker.io/library/rm-digest@" + img.Digest().String() },
			func(img *images.Image) string { return "docker.io/library/rm-digest@" + img.Digest().String() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := busybox(t, images.WithLabels(map[string]string{"case": tc.name}))
			ref := tc.pull(img)
			env.Push(t, ref, img)
			pull(t, env.Daemon, ref, img.ID().String())

			removeImage(t, env.Daemon, tc.remove(img))
			for _, name := range []string{ref, img.ID().String()} {
				if got := imageStatus(t, env.Daemon, name); got != nil {
					t.Errorf("after RemoveImage(%q): ImageStatus(%q) = %v", tc.remove(img), name, got)
				}
			}
			if slices.Contains(ids(listImages(t, env.Daemon, nil)), img.ID().String()) {
				t.Errorf("after RemoveImage(%q): still listed", tc.remove(img))
			}
			// Removing what is gone is success: kubelet retries.
			removeImage(t, env.Daemon, tc.remove(img))
		})
	}
}

// TestRemoveOneOfSeveralTags untags: the image and its other tags stay.
func TestRemoveOneOfSeveralTags(t *testing.T) {
	env := framework.NewEnv(t)
	img := busybox(t)
	tags := []string{"docker.io/library/rm-multi:a", "docker.io/library/rm-multi:b", "registry.k8s.io/e2e/rm-multi:c"}
	for _, ref := range tags {
		env.Push(t, ref, img)
		pull(t, env.Daemon, ref, img.ID().String())
	}
	removeImage(t, env.Daemon, "rm-multi:a")

	if got := imageStatus(t, env.Daemon, tags[0]); got != nil {
		t.Errorf("removed tag %s still resolves to %s", tags[0], got.Id)
	}
	got := mustStatus(t, env.Daemon, img.ID().String())
	if !sameSet(got.RepoTags, tags[1:]) {
		t.Errorf("RepoTags = %q, want %q", got.RepoTags, tags[1:])
	}
	for _, ref := range tags[1:] {
		if got := mustStatus(t, env.Daemon, ref); got.Id != img.ID().String() {
			t.Errorf("%s = %s, want %s", ref, got.Id, img.ID())
		}
	}
}

func TestRemoveUnknownImage(t *testing.T) {
	env := framework.NewEnv(t)
	for _, ref := range []string{"nosuch", "registry.k8s.io/nosuch:1", "sha256:" + strings.Repeat("0", 64)} {
		if err := env.Daemon.Images().RemoveImage(testCtx(t), spec(ref)); err != nil {
			t.Errorf("RemoveImage(%q) = %v, want success (CRI: removing a missing image is not an error)", ref, err)
		}
	}
}
