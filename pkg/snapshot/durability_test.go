package snapshot

import (
	"context"
	"path/filepath"
	"sort"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cri-runtimed/cri-runtimed/pkg/internal/powercut"
)

// TestCommitDurable cuts the power right after Commit returns: every file
// of the committed layer must be whole on the disk (see package powercut
// for what this proves). Without a sync before the commit record, a power
// cut left the record of a layer whose files were never written.
func TestCommitDurable(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	disk := powercut.New(t, base)
	disk.Control(t)

	db, err := bolt.Open(filepath.Join(base, "meta.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := NewOverlay(ctx, filepath.Join(disk.Dir, "snap"), db)
	if err != nil {
		t.Fatal(err)
	}
	files := powercut.RandomFiles(300, 2)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var ents []ent
	for _, name := range names {
		ents = append(ents, d(filepath.Dir(name)), f(name, string(files[name])))
	}
	if _, err := s.Prepare(ctx, "extract", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, "extract", tarOf(t, ents...)); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "layer", "extract"); err != nil {
		t.Fatal(err)
	}
	ids, err := filepath.Glob(filepath.Join(disk.Dir, "snap", snapshotsDir, "[0-9]*"))
	if err != nil || len(ids) != 1 {
		t.Fatalf("snapshot directories %v, %v; want one", ids, err)
	}
	rel, _ := filepath.Rel(disk.Dir, filepath.Join(ids[0], "fs"))
	if lost := powercut.Lost(disk.Cut(t), rel, files); lost != 0 {
		t.Fatalf("%d of %d files of a committed layer were lost or truncated by a power cut after Commit", lost, len(files))
	}
}
