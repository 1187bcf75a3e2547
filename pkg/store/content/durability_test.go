package content

import (
	"context"
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/cri-runtimed/cri-runtimed/pkg/internal/powercut"
)

// TestCommitDurable cuts the power right after Commit returns: a blob the
// store reports committed (and an image record may then name) must be
// whole on the disk, under its final name (see package powercut for what
// this proves).
func TestCommitDurable(t *testing.T) {
	ctx := context.Background()
	disk := powercut.New(t, t.TempDir())
	disk.Control(t)
	s, err := New(filepath.Join(disk.Dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for _, data := range powercut.RandomFiles(5, 3) {
		dgst := digest.FromBytes(data)
		w, err := s.Writer(ctx, "ref-"+dgst.Encoded(), dgst, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		want[filepath.Join(dgst.Algorithm().String(), dgst.Encoded())] = data
	}
	if lost := powercut.Lost(disk.Cut(t), filepath.Join("content", blobsDir), want); lost != 0 {
		t.Fatalf("%d of %d committed blobs were lost or truncated by a power cut after Commit", lost, len(want))
	}
}
