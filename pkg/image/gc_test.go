package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
)

// TestGCDebounced: removing a batch of images returns before anything is
// collected, and the batch costs one GC pass.
func TestGCDebounced(t *testing.T) {
	e := newEnv(t, WithGCDelay(300*time.Millisecond, 5*time.Second))
	ctx := context.Background()
	var ids []string
	for i := range 4 {
		l, _ := layer(t, file{name: fmt.Sprintf("f%d", i), body: fmt.Sprint(i)})
		push(t, e.reg, "app", fmt.Sprintf("v%d", i), "amd64", l)
		img, err := e.svc.Pull(ctx, e.ref(fmt.Sprintf("app:v%d", i)), registry.Credentials{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, img.ID.String())
	}
	blobs, snaps := countBlobs(t, e.cs), countSnapshots(t, e.snap)
	for _, id := range ids {
		if err := e.svc.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	// Off the request path: nothing is collected yet.
	if n := countBlobs(t, e.cs); n != blobs {
		t.Errorf("%d blobs right after the removals, want the %d from before: GC ran on the request path", n, blobs)
	}
	if n := countSnapshots(t, e.snap); n != snaps {
		t.Errorf("%d snapshots right after the removals, want %d", n, snaps)
	}
	e.waitGC(t, 1)
	if n := countBlobs(t, e.cs); n != 0 {
		t.Errorf("%d blobs left", n)
	}
	if n := countSnapshots(t, e.snap); n != 0 {
		t.Errorf("%d snapshots left", n)
	}
	time.Sleep(400 * time.Millisecond)
	e.svc.gc.mu.Lock()
	passes := e.svc.gc.passes
	e.svc.gc.mu.Unlock()
	if passes != 1 {
		t.Errorf("%d GC passes for one burst of removals, want 1", passes)
	}
}

// TestGCDeletesWithoutLeaseLock: a pass holds the lease lock only to
// decide; pulls can take leases while it deletes.
func TestGCDeletesWithoutLeaseLock(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l, _ := layer(t, file{name: "x", body: "x"})
	push(t, e.reg, "app", "v1", "amd64", l)
	img, err := e.svc.Pull(ctx, e.ref("app:v1"), registry.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.db.DeleteImage(img.ID); err != nil {
		t.Fatal(err)
	}
	var deletes, locked atomic.Int32
	e.svc.beforeDelete = func(string) {
		deletes.Add(1)
		if !e.svc.leaseMu.TryLock() {
			locked.Add(1)
			return
		}
		e.svc.leaseMu.Unlock()
	}
	if err := e.svc.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if deletes.Load() == 0 {
		t.Fatal("GC deleted nothing")
	}
	if n := locked.Load(); n > 0 {
		t.Errorf("the lease lock was held during %d of %d deletions", n, deletes.Load())
	}
}

// TestLeaseWaitsForDeletion: a pull leasing a key that a GC pass is
// deleting gets its lease once the deletion is over, so that it then
// sees the key gone rather than losing it after its check.
func TestLeaseWaitsForDeletion(t *testing.T) {
	e := newEnv(t)
	s := e.svc
	s.leaseMu.Lock()
	s.deleting["k"] = true
	s.leaseMu.Unlock()
	got := make(chan struct{})
	l := s.newLease()
	go func() {
		l.add("other", "k")
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("lease on a key being deleted granted during the deletion")
	case <-time.After(100 * time.Millisecond):
	}
	s.leaseMu.Lock()
	other := s.leases["other"]
	s.leaseMu.Unlock()
	if other != 1 {
		t.Errorf("lease on the other key = %d, want 1 while waiting", other)
	}
	s.doneDeleting([]string{"k"})
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("lease not granted after the deletion")
	}
	l.release()
	if len(s.leases) != 0 {
		t.Errorf("leases left: %v", s.leases)
	}
}

// TestListCached: List decodes the records once and serves them until an
// image record is written.
func TestListCached(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l, _ := layer(t, file{name: "x", body: "x"})
	push(t, e.reg, "app", "v1", "amd64", l)
	push(t, e.reg, "app", "v2", "amd64", l)
	if _, err := e.svc.Pull(ctx, e.ref("app:v1"), registry.Credentials{}); err != nil {
		t.Fatal(err)
	}
	if imgs, err := e.svc.List(ctx); err != nil || len(imgs) != 1 {
		t.Fatalf("List = %v, %v", imgs, err)
	}
	// A record only a decoding List would trip on.
	if err := e.db.Bolt().Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("images")).Put([]byte("sha256:junk"), []byte("{"))
	}); err != nil {
		t.Fatal(err)
	}
	if imgs, err := e.svc.List(ctx); err != nil || len(imgs) != 1 {
		t.Fatalf("second List = %v, %v; want the cached list", imgs, err)
	}
	// A pull writes a record: the next List reads them all again.
	if _, err := e.svc.Pull(ctx, e.ref("app:v2"), registry.Credentials{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.List(ctx); err == nil {
		t.Fatal("List after a pull served the old list")
	}
}

// TestGetCached: once List has cached the records, Get answers every
// form of name from them (no store read: a corrupted record does not
// show), falls back to the store for what the cache lacks (ID prefixes),
// and sees every write: a tag moved by a pull, a removal.
func TestGetCached(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l1, _ := layer(t, file{name: "x", body: "x"})
	l2, _ := layer(t, file{name: "y", body: "y"})
	a := push(t, e.reg, "app", "v1", "amd64", l1)
	imgA, err := e.svc.Pull(ctx, e.ref("app:v1"), registry.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.List(ctx); err != nil {
		t.Fatal(err)
	}
	// Only a store read would see this: the record says another size.
	corrupt := imgA
	corrupt.Size = 1
	b, err := json.Marshal(corrupt)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.db.Bolt().Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("images")).Put([]byte(imgA.ID), b)
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		ref      string
		wantSize int64 // imgA.Size from the cache, 1 from the store
	}{
		{"ID", imgA.ID.String(), imgA.Size},
		{"ID without algorithm", imgA.ID.Encoded(), imgA.Size},
		{"tag", e.ref("app:v1"), imgA.Size},
		{"digest", e.ref("app@" + a.manifest.Digest.String()), imgA.Size},
		{"ID prefix (store)", imgA.ID.Encoded()[:12], 1},
	} {
		got, err := e.svc.Get(ctx, tc.ref)
		if err != nil || got.ID != imgA.ID || got.Size != tc.wantSize {
			t.Errorf("%s: Get(%s) = %s size %d, %v; want %s size %d", tc.name, tc.ref, got.ID, got.Size, err, imgA.ID, tc.wantSize)
		}
	}
	if _, err := e.svc.Get(ctx, e.ref("app:v2")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an unknown tag = %v, want ErrNotFound", err)
	}

	// The tag moves to another image: Get follows it, cached again.
	push(t, e.reg, "app", "v1", "amd64", l2)
	imgB, err := e.svc.Pull(ctx, e.ref("app:v1"), registry.Credentials{})
	if err != nil || imgB.ID == imgA.ID {
		t.Fatalf("second pull of app:v1 = %s, %v; want another image", imgB.ID, err)
	}
	if got, err := e.svc.Get(ctx, e.ref("app:v1")); err != nil || got.ID != imgB.ID {
		t.Errorf("Get(app:v1) after the tag moved = %s, %v; want %s", got.ID, err, imgB.ID)
	}
	if _, err := e.svc.List(ctx); err != nil {
		t.Fatal(err)
	}
	// Whatever the records' order, one of these would find the other
	// image in an index of the old list.
	for ref, want := range map[string]digest.Digest{e.ref("app:v1"): imgB.ID, imgA.ID.String(): imgA.ID, imgB.ID.String(): imgB.ID} {
		if got, err := e.svc.Get(ctx, ref); err != nil || got.ID != want {
			t.Errorf("Get(%s) from the new cache = %s, %v; want %s", ref, got.ID, err, want)
		}
	}
	if err := e.svc.Remove(ctx, imgB.ID.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Get(ctx, e.ref("app:v1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(app:v1) after its removal = %v, want ErrNotFound", err)
	}
	if _, err := e.svc.Get(ctx, imgB.ID.String()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(ID) after its removal = %v, want ErrNotFound", err)
	}
}
