//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

// TestStartDespiteBadState: a node whose runtime does not start is the
// worst outcome, so nothing the daemon finds on disk may stop it. Each
// fault below made the daemon exit at start before: a container record
// that does not decode, an interrupted container whose cleanup fails, two
// records with one name, an orphan snapshot directory and an unreferenced
// layer snapshot that cannot be removed. The daemon must log each, mark
// or drop the object, and serve.
func TestStartDespiteBadState(t *testing.T) {
	env, d := podEnv(t)
	pc := framework.PodConfig("bad-state")
	pod := d.RunPod(t, pc)
	corrupt := d.CreateContainer(t, pod, sleeper("corrupt"), pc)
	stuck := d.CreateContainer(t, pod, sleeper("stuck"), pc)
	twin := d.CreateContainer(t, pod, sleeper("twin"), pc)
	// A second image whose record goes, so start-up GC wants its layer.
	before := d.SnapshotDirs()
	extra, err := images.NewLayer().File("victim", []byte("x"), 0o644).Build()
	if err != nil {
		t.Fatal(err)
	}
	env.PushImage(t, "gc/victim:1", images.WithLayers(extra))
	var victimLayers []string
	for _, dir := range d.SnapshotDirs() {
		if !slices.Contains(before, dir) {
			victimLayers = append(victimLayers, dir)
		}
	}
	if len(victimLayers) != 1 {
		t.Fatalf("the victim image added snapshots %v, want its one layer", victimLayers)
	}

	d.Stop(t)
	db, err := meta.Open(filepath.Join(d.Root, "meta.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := db.ListContainers()
	if err != nil {
		t.Fatal(err)
	}
	var twinRec meta.Container
	for _, r := range recs {
		switch r.ID {
		case stuck:
			r.State = meta.ContainerCreating
			if err := db.PutContainer(r); err != nil {
				t.Fatal(err)
			}
		case twin:
			twinRec = r
		}
	}
	clone := twinRec
	clone.ID = strings.Repeat("e", 64)
	clone.SnapshotKey = clone.ID
	if err := db.PutContainer(clone); err != nil {
		t.Fatal(err)
	}
	err = db.Bolt().Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("containers")).Put([]byte(corrupt), []byte(`{"id": "`+corrupt+`", "state":`))
	})
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := db.ListImages()
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		if slices.ContainsFunc(img.RepoTags, func(s string) bool { return strings.Contains(s, "gc/victim") }) {
			if err := db.DeleteImage(img.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	db.Close()

	// Cleanup fails: the interrupted container's bundle, an orphan
	// snapshot directory and the victim's layer cannot be removed.
	stuckBundle := filepath.Join(d.State, "pods", pod, "bundles", stuck, "config.json")
	orphan := filepath.Join(d.Root, "snapshots", "overlayfs", "snapshots", "999999")
	if err := os.MkdirAll(filepath.Join(orphan, "fs"), 0o700); err != nil {
		t.Fatal(err)
	}
	immutable := []string{stuckBundle, orphan}
	immutable = append(immutable, victimLayers...)
	for _, p := range immutable {
		if err := framework.SetImmutable(p, true); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, p := range immutable {
			_ = framework.SetImmutable(p, false)
		}
	})

	d.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), framework.CallTimeout)
	defer cancel()
	ctrs, err := d.Runtime().ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: pod})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*runtimeapi.Container{}
	for _, c := range ctrs {
		got[c.Id] = c
	}
	if _, ok := got[corrupt]; ok {
		t.Errorf("the container with the corrupt record is still listed")
	}
	if _, ok := got[twin]; !ok {
		t.Errorf("a container sharing its name with another is not listed")
	}
	if _, ok := got[clone.ID]; !ok {
		t.Errorf("the clone sharing a name is not listed")
	}
	st := d.ContainerStatus(t, stuck).Status
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Reason != "CreateInterrupted" || !strings.Contains(st.Message, "config.json") {
		t.Errorf("interrupted container whose cleanup failed: %s reason %q message %q, want EXITED CreateInterrupted naming the file", st.State, st.Reason, st.Message)
	}
	log := d.Log()
	for _, want := range []string{"Container record cannot be decoded", "Cleaning up an interrupted container failed",
		"Container name is taken by another container", "Cleaning up snapshots at start failed", "Garbage collection at start failed"} {
		if !strings.Contains(log, want) {
			t.Errorf("daemon log lacks %q", want)
		}
	}

	// Once the fault is gone, kubelet's RemoveContainer finishes the job.
	for _, p := range immutable {
		if err := framework.SetImmutable(p, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Runtime().RemoveContainer(ctx, stuck); err != nil {
		t.Fatalf("RemoveContainer of the marked container: %v", err)
	}
	for _, id := range []string{twin, clone.ID} {
		if err := d.Runtime().RemoveContainer(ctx, id); err != nil {
			t.Fatalf("RemoveContainer(%s): %v", id, err)
		}
	}
}
