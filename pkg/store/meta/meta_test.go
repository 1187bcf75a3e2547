package meta

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

func openTest(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := Open(path, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func TestSecondOpenFailsFast(t *testing.T) {
	_, path := openTest(t)
	start := time.Now()
	// bbolt's flock is per open file description, so a second Open in the
	// same process contends like a second daemon would.
	_, err := Open(path, 200*time.Millisecond)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("second open took %v", time.Since(start))
	}
}

func TestSaveImageMovesTags(t *testing.T) {
	db, _ := openTest(t)
	a := digest.FromString("a")
	b := digest.FromString("b")
	if _, err := db.SaveImage(Image{ID: a, RepoTags: []string{"x:1", "x:2"}, RepoDigests: []string{"x@" + a.String()}}); err != nil {
		t.Fatal(err)
	}
	// Same ID again with another tag: merged.
	if _, err := db.SaveImage(Image{ID: a, RepoTags: []string{"x:3"}}); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetImage(a)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.RepoTags, []string{"x:1", "x:2", "x:3"}) || len(got.RepoDigests) != 1 {
		t.Fatalf("merge: %+v", got)
	}
	// x:2 moves to b.
	untagged, err := db.SaveImage(Image{ID: b, RepoTags: []string{"x:2"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(untagged, []digest.Digest{a}) {
		t.Fatalf("untagged = %v", untagged)
	}
	got, _ = db.GetImage(a)
	if !slices.Equal(got.RepoTags, []string{"x:1", "x:3"}) {
		t.Fatalf("a tags after move: %v", got.RepoTags)
	}
	list, err := db.ListImages()
	if err != nil || len(list) != 2 {
		t.Fatalf("list = %v, %v", list, err)
	}
	if err := db.DeleteImage(a); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetImage(a); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if err := db.DeleteImage(a); err != nil {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestSandboxAndContainerRecords(t *testing.T) {
	db, path := openTest(t)
	if err := db.PutSandbox(Sandbox{ID: "s1", Name: "pod", State: SandboxCreating}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutSandbox(Sandbox{ID: "s1", Name: "pod", State: SandboxReady, Pid: 42}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutContainer(Container{ID: "c1", SandboxID: "s1", State: ContainerRunning, StartedAt: time.Unix(5, 0)}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sbs, err := db.ListSandboxes()
	if err != nil || len(sbs) != 1 || sbs[0].State != SandboxReady || sbs[0].Pid != 42 {
		t.Fatalf("sandboxes after reopen: %+v %v", sbs, err)
	}
	ctrs, err := db.ListContainers()
	if err != nil || len(ctrs) != 1 || !ctrs[0].StartedAt.Equal(time.Unix(5, 0)) {
		t.Fatalf("containers after reopen: %+v %v", ctrs, err)
	}
	if err := db.DeleteContainer("c1"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteSandbox("s1"); err != nil {
		t.Fatal(err)
	}
	if sbs, _ := db.ListSandboxes(); len(sbs) != 0 {
		t.Fatalf("left %v", sbs)
	}
}

// TestCorruptRecordsListed: a record that does not decode does not hide
// the others (the daemon must still start); it is listed by ID, marked.
func TestCorruptRecordsListed(t *testing.T) {
	db, _ := openTest(t)
	if err := db.PutContainer(Container{ID: "good", State: ContainerRunning}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutSandbox(Sandbox{ID: "goodpod", State: SandboxReady}); err != nil {
		t.Fatal(err)
	}
	err := db.Bolt().Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketContainers).Put([]byte("bad"), []byte(`{"id":`)); err != nil {
			return err
		}
		return tx.Bucket(bucketSandboxes).Put([]byte("badpod"), []byte{0xff, 0x00})
	})
	if err != nil {
		t.Fatal(err)
	}
	ctrs, err := db.ListContainers()
	if err != nil || len(ctrs) != 2 {
		t.Fatalf("ListContainers = %+v, %v", ctrs, err)
	}
	for _, c := range ctrs {
		if c.Corrupt != (c.ID == "bad") || (c.ID == "good" && c.State != ContainerRunning) {
			t.Errorf("container %+v", c)
		}
	}
	sbs, err := db.ListSandboxes()
	if err != nil || len(sbs) != 2 {
		t.Fatalf("ListSandboxes = %+v, %v", sbs, err)
	}
	for _, s := range sbs {
		if s.Corrupt != (s.ID == "badpod") {
			t.Errorf("sandbox %+v", s)
		}
	}
}
