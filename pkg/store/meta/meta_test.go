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

// TestImageNameIndex: tags and digests resolve through the index with one
// record read, and the index follows every change of the records.
func TestImageNameIndex(t *testing.T) {
	db, path := openTest(t)
	a, b := digest.FromString("a"), digest.FromString("b")
	byName := func(name string) digest.Digest {
		t.Helper()
		img, err := db.ImageByName(name)
		if errors.Is(err, ErrNotFound) {
			return ""
		}
		if err != nil {
			t.Fatalf("ImageByName(%q): %v", name, err)
		}
		return img.ID
	}
	if _, err := db.SaveImage(Image{ID: a, RepoTags: []string{"x:1", "x:2"}, RepoDigests: []string{"x@" + a.String()}}); err != nil {
		t.Fatal(err)
	}
	// A record nobody can decode: a lookup that decoded every record
	// would fail on it.
	if err := db.Bolt().Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketImages).Put([]byte(digest.FromString("junk")), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"x:1", "x:2", "x@" + a.String()} {
		if got := byName(name); got != a {
			t.Errorf("ImageByName(%q) = %q, want %s", name, got, a)
		}
	}
	if got := byName("x:3"); got != "" {
		t.Errorf("unknown tag resolves to %s", got)
	}
	// x:2 moves to b.
	if _, err := db.SaveImage(Image{ID: b, RepoTags: []string{"x:2"}}); err != nil {
		t.Fatal(err)
	}
	if got := byName("x:2"); got != b {
		t.Errorf("moved tag resolves to %s, want %s", got, b)
	}
	// Untagging through UpdateImage drops the name.
	if err := db.UpdateImage(a, func(i *Image) error { i.RepoTags = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if got := byName("x:1"); got != "" {
		t.Errorf("removed tag still resolves to %s", got)
	}
	if got := byName("x@" + a.String()); got != a {
		t.Errorf("digest lost by an untag: %q", got)
	}
	// Deleting an image drops its names, not another image's.
	if err := db.DeleteImage(a); err != nil {
		t.Fatal(err)
	}
	if got := byName("x@" + a.String()); got != "" {
		t.Errorf("deleted image's digest resolves to %s", got)
	}
	if got := byName("x:2"); got != b {
		t.Errorf("other image's tag: %q", got)
	}
	// ID prefixes seek instead of scanning.
	found, err := db.ImagesByIDPrefix(b.String()[:20], 2)
	if err != nil || len(found) != 1 || found[0].ID != b {
		t.Errorf("ImagesByIDPrefix = %v, %v", found, err)
	}

	// A database from before the index gets it rebuilt at Open.
	if err := db.Bolt().Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketImages).Delete([]byte(digest.FromString("junk"))); err != nil {
			return err
		}
		return tx.DeleteBucket(bucketImageNames)
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if img, err := db.ImageByName("x:2"); err != nil || img.ID != b {
		t.Errorf("after rebuilding the index: %v, %v", img.ID, err)
	}
}
