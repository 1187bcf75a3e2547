//go:build e2e

package e2e

import (
	"sync"
	"testing"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// TestParityRemoveImageByID covers critest's "removing image by one tag
// should remove all tags", "removing image from one registry should
// remove all tags from other registries" (critest removes by the ID the
// tag resolves to: every tag, of every registry, goes) and "should not
// fail on simultaneous RemoveImage calls" (five concurrent removals of
// the same ID all succeed and each finds the image gone when it returns).
// Untagging by name is TestRemoveOneOfSeveralTags.
func TestParityRemoveImageByID(t *testing.T) {
	env := framework.NewEnv(t)
	img := busybox(t)
	id := img.ID().String()
	tags := []string{"docker.io/library/parity-rm:1", "docker.io/library/parity-rm:2", "registry.k8s.io/parity/rm:1"}
	for _, ref := range tags {
		env.Push(t, ref, img)
		pull(t, env.Daemon, ref, id)
	}
	if got := mustStatus(t, env.Daemon, tags[0]); !sameSet(got.GetRepoTags(), tags) {
		t.Fatalf("RepoTags = %q, want %q", got.GetRepoTags(), tags)
	}
	byTag := mustStatus(t, env.Daemon, tags[2]).GetId()

	var wg sync.WaitGroup
	errs := make([]error, 5)
	found := make([]bool, 5)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = env.Daemon.Images().RemoveImage(testCtx(t), spec(byTag))
			st, err := env.Daemon.Images().ImageStatus(testCtx(t), spec(byTag), false)
			found[i] = err != nil || st.GetImage() != nil
		}()
	}
	wg.Wait()
	for i := range errs {
		if errs[i] != nil {
			t.Errorf("concurrent RemoveImage(%s) #%d: %v", byTag, i, errs[i])
		}
		if found[i] {
			t.Errorf("concurrent RemoveImage(%s) #%d returned with the image still there", byTag, i)
		}
	}
	for _, ref := range append(tags, id) {
		if got := imageStatus(t, env.Daemon, ref); got != nil {
			t.Errorf("after RemoveImage(ID): ImageStatus(%s) = %s %q, want not found", ref, got.GetId(), got.GetRepoTags())
		}
	}
	if findImage(listImages(t, env.Daemon, nil), id) != nil {
		t.Errorf("ListImages still lists %s", id)
	}
}
