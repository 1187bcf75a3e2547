//go:build e2e

package e2e

import (
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

func ids(list []*runtimeapi.Image) []string {
	var out []string
	for _, i := range list {
		out = append(out, i.Id)
	}
	return out
}

func TestListImages(t *testing.T) {
	env := framework.NewEnv(t)
	if got := listImages(t, env.Daemon, nil); len(got) != 0 {
		t.Fatalf("a new daemon lists images: %v", ids(got))
	}
	bb := busybox(t)
	other := busybox(t, images.WithLabels(map[string]string{"other": "yes"}))
	env.Push(t, "busybox", bb)
	env.Push(t, "registry.k8s.io/e2e/other:1", other)
	pull(t, env.Daemon, "busybox", bb.ID().String())
	pull(t, env.Daemon, "registry.k8s.io/e2e/other:1", other.ID().String())

	all := []string{bb.ID().String(), other.ID().String()}
	if got := ids(listImages(t, env.Daemon, nil)); !sameSet(got, all) {
		t.Fatalf("ListImages = %v, want %v", got, all)
	}
	checkImage(t, findImage(listImages(t, env.Daemon, nil), bb.ID().String()), bb.ID().String(),
		[]string{"docker.io/library/busybox:latest"}, []string{"docker.io/library/busybox@" + bb.Digest().String()})

	filters := []struct {
		name  string
		image string
		want  []string
	}{
		{"no image in filter", "", all},
		{"short name", "busybox", all[:1]},
		{"full name", "docker.io/library/busybox:latest", all[:1]},
		{"image ID", bb.ID().String(), all[:1]},
		{"repo digest", "docker.io/library/busybox@" + bb.Digest().String(), all[:1]},
		{"other registry", "registry.k8s.io/e2e/other:1", all[1:]},
		{"not pulled", "docker.io/library/nosuch:1", nil},
	}
	for _, f := range filters {
		t.Run("filter "+f.name, func(t *testing.T) {
			filter := &runtimeapi.ImageFilter{Image: spec(f.image)}
			if got := ids(listImages(t, env.Daemon, filter)); !sameSet(got, f.want) {
				t.Errorf("ListImages(%q) = %v, want %v", f.image, got, f.want)
			}
		})
	}

	// StreamImages is the streaming twin of ListImages; cri-client falls
	// back to ListImages silently when it is Unimplemented, so it is called
	// on the raw gRPC client to see that it works and agrees.
	for _, f := range filters {
		t.Run("stream "+f.name, func(t *testing.T) {
			stream, err := env.Daemon.ImageClient().StreamImages(testCtx(t), &runtimeapi.StreamImagesRequest{
				Filter: &runtimeapi.ImageFilter{Image: spec(f.image)},
			})
			if err != nil {
				t.Fatal(err)
			}
			var got []*runtimeapi.Image
			for {
				resp, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("StreamImages: %v", err)
				}
				got = append(got, resp.Images...)
			}
			if !sameSet(ids(got), f.want) {
				t.Errorf("StreamImages(%q) = %v, want %v", f.image, ids(got), f.want)
			}
		})
	}
}

// TestListImagesFollowsWrites lists after every change to the image
// records (a pull, a second tag, a tag moving to another image, an
// untag, a removal): the list is served from memory between writes and
// must show each at once.
func TestListImagesFollowsWrites(t *testing.T) {
	env := framework.NewEnv(t)
	d := env.Daemon
	one := busybox(t, images.WithLabels(map[string]string{"n": "one"}))
	two := busybox(t, images.WithLabels(map[string]string{"n": "two"}))
	const a, b, c = "docker.io/library/lw:a", "docker.io/library/lw:b", "docker.io/library/lw:c"
	tagsOf := func() map[string][]string {
		out := map[string][]string{}
		for _, i := range listImages(t, d, nil) {
			out[i.Id] = slices.Sorted(slices.Values(i.RepoTags))
		}
		return out
	}
	step := func(what string, want map[string][]string) {
		t.Helper()
		// Twice: the first reads the records, the second is served from memory.
		for range 2 {
			if got := tagsOf(); !maps.EqualFunc(got, want, slices.Equal) {
				t.Fatalf("after %s: ListImages tags = %v, want %v", what, got, want)
			}
		}
	}
	step("nothing", map[string][]string{})
	env.Push(t, a, one)
	pull(t, d, a, one.ID().String())
	step("a pull", map[string][]string{one.ID().String(): {a}})
	env.Push(t, b, one)
	pull(t, d, b, one.ID().String())
	step("a second tag", map[string][]string{one.ID().String(): {a, b}})
	env.Push(t, a, two)
	env.Push(t, c, two)
	pull(t, d, a, two.ID().String())
	step("a tag moving", map[string][]string{one.ID().String(): {b}, two.ID().String(): {a}})
	pull(t, d, c, two.ID().String())
	removeImage(t, d, a)
	step("an untag", map[string][]string{one.ID().String(): {b}, two.ID().String(): {c}})
	removeImage(t, d, one.ID().String())
	step("a removal", map[string][]string{two.ID().String(): {c}})
}

func TestImageStatus(t *testing.T) {
	env := framework.NewEnv(t)

	t.Run("unknown image", func(t *testing.T) {
		// Kubelet pulls when ImageStatus says nothing, so unknown is
		// "no image, no error".
		for _, ref := range []string{"nosuch", "registry.k8s.io/nosuch:1", "sha256:" + strings.Repeat("0", 64)} {
			resp, err := env.Daemon.ImageClient().ImageStatus(testCtx(t), &runtimeapi.ImageStatusRequest{Image: spec(ref)})
			if err != nil {
				t.Errorf("ImageStatus(%q): %v, want no error", ref, err)
			} else if resp.Image != nil {
				t.Errorf("ImageStatus(%q) = %v, want no image", ref, resp.Image)
			}
		}
	})

	// Kubelet's runAsNonRoot check reads uid/username from the image.
	for _, tc := range []struct {
		user     string
		uid      int64 // -1: uid unset
		username string
	}{
		{"", -1, ""},
		{"1000", 1000, ""},
		{"1000:100", 1000, ""},
		{"0", 0, ""},
		{"user", -1, "user"},
		{"user:users", -1, "user"},
	} {
		t.Run("user "+tc.user, func(t *testing.T) {
			img := busybox(t, images.WithUser(tc.user), images.WithCmd("sleep", "10"), images.WithEnv("CASE="+tc.user),
				images.WithWorkingDir("/tmp"), images.WithStopSignal("SIGINT"))
			ref := "registry.k8s.io/e2e/user:" + strings.NewReplacer(":", "-").Replace("u"+tc.user)
			env.Push(t, ref, img)
			pull(t, env.Daemon, ref, img.ID().String())

			resp, err := env.Daemon.Images().ImageStatus(testCtx(t), spec(ref), false)
			if err != nil {
				t.Fatal(err)
			}
			got := resp.GetImage()
			checkImage(t, got, img.ID().String(), []string{ref}, []string{strings.Split(ref, ":")[0] + "@" + img.Digest().String()})
			if tc.uid < 0 && got.Uid != nil {
				t.Errorf("Uid = %d, want unset", got.Uid.Value)
			}
			if tc.uid >= 0 && (got.Uid == nil || got.Uid.Value != tc.uid) {
				t.Errorf("Uid = %v, want %d", got.Uid, tc.uid)
			}
			if got.Username != tc.username {
				t.Errorf("Username = %q, want %q", got.Username, tc.username)
			}
			if len(resp.GetInfo()) != 0 {
				t.Errorf("non-verbose ImageStatus has info: %v", resp.GetInfo())
			}

			resp, err = env.Daemon.Images().ImageStatus(testCtx(t), spec(ref), true)
			if err != nil {
				t.Fatal(err)
			}
			cfg := findConfig(resp.GetInfo())
			if cfg == nil {
				t.Fatalf("verbose ImageStatus info holds no image config: %v", resp.GetInfo())
			}
			c := cfg.Config
			if c.User != tc.user || !slices.Equal(c.Cmd, []string{"sleep", "10"}) || !slices.Contains(c.Env, "CASE="+tc.user) ||
				c.WorkingDir != "/tmp" || c.StopSignal != "SIGINT" {
				t.Errorf("verbose config = %+v, want the pushed one %+v", c, img.Config.Config)
			}
			if cfg.Architecture != "amd64" || cfg.OS != "linux" {
				t.Errorf("verbose config platform = %s/%s", cfg.OS, cfg.Architecture)
			}
		})
	}
}
