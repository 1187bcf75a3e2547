package container

import (
	"context"
	"errors"
	"maps"
	"math/rand"
	"slices"
	"strings"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

const (
	otherImage  = "docker.io/library/other:1"
	volumeImage = "docker.io/library/vol:1"
)

// imageRefsEnv is an env with two more images: one for containers, one
// mounted as a volume.
type imageRefsEnv struct {
	*env
	ids map[string]string // image ref → ID
	// ctrs are the test's container names → IDs.
	ctrs map[string]string
}

func newImageRefsEnv(t *testing.T) *imageRefsEnv {
	e := &imageRefsEnv{env: newEnv(t), ids: map[string]string{}, ctrs: map[string]string{}}
	for _, ref := range []string{otherImage, volumeImage} {
		e.ids[ref] = e.images.Add(t, ref, ocispec.ImageConfig{Cmd: []string{"sh"}}, map[string]string{"f": ref}).ID.String()
	}
	img, err := e.images.Get(context.Background(), testImage)
	if err != nil {
		t.Fatal(err)
	}
	e.ids[testImage] = img.ID.String()
	return e
}

// walkInUse is ImagesInUse as the containers' records say it, walked:
// what the counts must always equal.
func walkInUse(c *Controller) map[string]bool {
	used := map[string]bool{}
	for _, ctr := range c.List() {
		rec := ctr.Record()
		if rec.State != meta.ContainerExited {
			used[rec.ImageID] = true
		}
		for _, id := range rec.ImageVolumes {
			used[id] = true
		}
	}
	return used
}

// refStep is one thing done to the node; refCase.want the image refs in
// use after the last step.
type refStep struct {
	op   string // create, create-volume, create-bad-volume, start, exit, stop, remove, shim-died, restart, restart-delete-fails, interrupt
	name string
	ref  string // create's image (default testImage)
}

// TestImageRefs: the per-image reference counts behind ImageInUse and
// ImagesInUse follow every change of the containers (create, start, exit,
// stop, shim death, remove, failed create) and a daemon restart's
// recovery, and always equal a walk of the records.
func TestImageRefs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []refStep
		want  []string
	}{
		{"created pins its image", []refStep{{op: "create", name: "a"}}, []string{testImage}},
		{"running pins its image", []refStep{{op: "create", name: "a"}, {op: "start", name: "a"}}, []string{testImage}},
		{"exited unpins", []refStep{{op: "create", name: "a"}, {op: "start", name: "a"}, {op: "exit", name: "a"}}, nil},
		{"stopped unpins", []refStep{{op: "create", name: "a"}, {op: "start", name: "a"}, {op: "stop", name: "a"}}, nil},
		{"removed unpins", []refStep{{op: "create", name: "a"}, {op: "remove", name: "a"}}, nil},
		{"removed while running unpins", []refStep{{op: "create", name: "a"}, {op: "start", name: "a"}, {op: "remove", name: "a"}}, nil},
		{"removed after exit counts once", []refStep{
			{op: "create", name: "a"}, {op: "start", name: "a"}, {op: "exit", name: "a"},
			{op: "create", name: "b"}, {op: "remove", name: "a"},
		}, []string{testImage}},
		{"two containers, one removed", []refStep{
			{op: "create", name: "a"}, {op: "create", name: "b"}, {op: "remove", name: "a"},
		}, []string{testImage}},
		{"two images", []refStep{
			{op: "create", name: "a"}, {op: "create", name: "b", ref: otherImage}, {op: "start", name: "b"}, {op: "exit", name: "b"},
			{op: "create", name: "c", ref: otherImage},
		}, []string{testImage, otherImage}},
		{"volume outlives the exit", []refStep{
			{op: "create-volume", name: "v"}, {op: "start", name: "v"}, {op: "exit", name: "v"},
		}, []string{volumeImage}},
		{"volume goes with the removal", []refStep{
			{op: "create-volume", name: "v"}, {op: "start", name: "v"}, {op: "remove", name: "v"},
		}, nil},
		{"failed create pins nothing", []refStep{{op: "create-bad-volume", name: "x"}}, nil},
		{"shim died", []refStep{
			{op: "create", name: "a"}, {op: "start", name: "a"}, {op: "create-volume", name: "v"}, {op: "shim-died"},
		}, []string{volumeImage}},
		{"restart: running and created pinned, exited not", []refStep{
			{op: "create", name: "a"}, {op: "start", name: "a"},
			{op: "create", name: "b", ref: otherImage},
			{op: "create-volume", name: "v"}, {op: "start", name: "v"}, {op: "exit", name: "v"},
			{op: "restart"},
		}, []string{testImage, otherImage, volumeImage}},
		{"restart: exited while the daemon was away", []refStep{
			{op: "create", name: "a", ref: otherImage}, {op: "start", name: "a"}, {op: "exit-while-down", name: "a"},
			{op: "restart"},
		}, nil},
		{"restart, then remove", []refStep{
			{op: "create-volume", name: "v"}, {op: "restart"}, {op: "remove", name: "v"},
		}, nil},
		{"restart: interrupted creation torn down", []refStep{
			{op: "create", name: "a"}, {op: "interrupt", name: "a"}, {op: "restart"},
		}, nil},
		{"restart: interrupted creation whose cleanup fails", []refStep{
			{op: "create-volume", name: "v"}, {op: "interrupt", name: "v"}, {op: "restart-delete-fails"},
		}, []string{volumeImage}},
		{"restart with the shim gone", []refStep{
			{op: "create", name: "a"}, {op: "start", name: "a"}, {op: "shim-gone"}, {op: "restart"},
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newImageRefsEnv(t)
			for i, s := range tc.steps {
				e.do(t, s)
				if got, walked := e.c.ImagesInUse(), walkInUse(e.c); !maps.Equal(got, walked) {
					t.Fatalf("step %d (%s %s): ImagesInUse = %v, the records say %v", i, s.op, s.name, got, walked)
				}
			}
			want := map[string]bool{}
			for _, ref := range tc.want {
				want[e.ids[ref]] = true
			}
			if got := e.c.ImagesInUse(); !maps.Equal(got, want) {
				t.Errorf("ImagesInUse = %v, want %v", e.names(got), tc.want)
			}
			for ref, id := range e.ids {
				if got := e.c.ImageInUse(id); got != want[id] {
					t.Errorf("ImageInUse(%s) = %v, want %v", ref, got, want[id])
				}
			}
		})
	}
}

func (e *imageRefsEnv) names(set map[string]bool) []string {
	var out []string
	for ref, id := range e.ids {
		if set[id] {
			out = append(out, ref)
		}
	}
	slices.Sort(out)
	return out
}

func (e *imageRefsEnv) do(t *testing.T, s refStep) {
	t.Helper()
	ctx := context.Background()
	withVolume := func(ref string) *runtimeapi.ContainerConfig {
		cfg := e.config(s.name, 0)
		cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", Image: &runtimeapi.ImageSpec{Image: ref}, Readonly: true}}
		return cfg
	}
	switch s.op {
	case "create":
		cfg := e.config(s.name, 0)
		if s.ref != "" {
			cfg.Image.Image = s.ref
		}
		id, err := e.c.Create(ctx, e.pod, cfg)
		if err != nil {
			t.Fatal(err)
		}
		e.ctrs[s.name] = id
	case "create-volume":
		id, err := e.c.Create(ctx, e.pod, withVolume(volumeImage))
		if err != nil {
			t.Fatal(err)
		}
		e.ctrs[s.name] = id
	case "create-bad-volume":
		if _, err := e.c.Create(ctx, e.pod, withVolume("docker.io/library/absent:1")); err == nil {
			t.Fatal("Create with a missing volume image succeeded")
		}
	case "start":
		if err := e.c.Start(ctx, e.ctrs[s.name]); err != nil {
			t.Fatal(err)
		}
	case "exit":
		if err := e.pod.shim.Exit(e.ctrs[s.name], 1); err != nil {
			t.Fatal(err)
		}
		e.c.HandleEvent(e.pod, e.exitEvent(e.ctrs[s.name]))
	case "exit-while-down":
		if err := e.pod.shim.Exit(e.ctrs[s.name], 1); err != nil {
			t.Fatal(err)
		}
	case "stop":
		if err := e.c.Stop(ctx, e.ctrs[s.name], 0); err != nil {
			t.Fatal(err)
		}
	case "remove":
		if err := e.c.Remove(ctx, e.ctrs[s.name]); err != nil {
			t.Fatal(err)
		}
	case "shim-died":
		e.pod.shim.Die()
		e.pod.shimOK = false
		e.c.HandleEvent(e.pod, shim.Event{Type: shim.EventShimDied})
	case "shim-gone":
		e.pod.shim.Die()
		e.pod.shimOK = false
	case "interrupt":
		// The record as a daemon killed in the middle of Create left it.
		rec := e.record(e.ctrs[s.name])
		rec.State = meta.ContainerCreating
		if err := e.db.PutContainer(rec); err != nil {
			t.Fatal(err)
		}
	case "restart", "restart-delete-fails":
		if s.op == "restart-delete-fails" {
			e.pod.shim.Fail["Delete"] = errors.New("injected")
			defer delete(e.pod.shim.Fail, "Delete")
		}
		e.c.Close()
		// The old daemon is gone: its cleanup must not remove what the
		// new one recovers.
		old := e.c
		old.mu.Lock()
		old.ctrs, old.order, old.byPod = map[string]*Container{}, nil, map[string][]*Container{}
		old.mu.Unlock()
		e.c = e.controller()
		if err := e.c.Recover(ctx); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown step %q", s.op)
	}
}

// TestImageRefsConcurrent: starts, exits, stops and removals of many
// containers racing each other leave the counts equal to a walk of the
// records, and nothing in use once every container is gone.
func TestImageRefsConcurrent(t *testing.T) {
	e := newImageRefsEnv(t)
	ctx := context.Background()
	rng := rand.New(rand.NewSource(1))
	var ids []string
	for i := range 24 {
		cfg := e.config("c"+strings.Repeat("x", i%3)+string(rune('a'+i)), 0)
		if i%2 == 1 {
			cfg.Image.Image = otherImage
		}
		if i%3 == 0 {
			cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", Image: &runtimeapi.ImageSpec{Image: volumeImage}, Readonly: true}}
		}
		id, err := e.c.Create(ctx, e.pod, cfg)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	var wg sync.WaitGroup
	for i, id := range ids {
		started := i%4 != 0
		exits := rng.Intn(2) == 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			if started {
				if err := e.c.Start(ctx, id); err != nil {
					t.Error(err)
					return
				}
			}
			if started && exits {
				// The exit event and the stop race.
				var ev sync.WaitGroup
				if err := e.pod.shim.Exit(id, 2); err == nil {
					exit := e.exitEvent(id)
					ev.Add(1)
					go func() {
						defer ev.Done()
						e.c.HandleEvent(e.pod, exit)
					}()
				}
				if err := e.c.Stop(ctx, id, 0); err != nil {
					t.Error(err)
				}
				ev.Wait()
			}
		}()
	}
	wg.Wait()
	if got, walked := e.c.ImagesInUse(), walkInUse(e.c); !maps.Equal(got, walked) {
		t.Fatalf("after the races: ImagesInUse = %v, the records say %v", e.names(got), e.names(walked))
	}
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.c.Remove(ctx, id); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := e.c.ImagesInUse(); len(got) != 0 {
		t.Errorf("ImagesInUse after every container is removed = %v", e.names(got))
	}
}
