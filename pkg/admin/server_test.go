package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// fakeImages imports archives whose content is "ok", exports "ref:"
// names, and fails an export of "broken" after its first bytes.
type fakeImages struct{ got []byte }

func (f *fakeImages) Import(ctx context.Context, r io.Reader) ([]meta.Image, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	f.got = b
	if string(b) != "ok" {
		return nil, fmt.Errorf("%w: not ok", image.ErrInvalidArchive)
	}
	return []meta.Image{{ID: "sha256:abc", RepoTags: []string{"docker.io/library/a:1"}, Size: 3}}, nil
}

func (f *fakeImages) Export(ctx context.Context, w io.Writer, names []string) error {
	for _, n := range names {
		switch n {
		case "missing":
			return fmt.Errorf("%w: %s", image.ErrNotFound, n)
		case "broken":
			io.WriteString(w, strings.Repeat("x", 64<<10))
			return errors.New("disk on fire")
		}
		io.WriteString(w, "ref:"+n+";")
	}
	return nil
}

func (f *fakeImages) List(ctx context.Context) ([]meta.Image, error) {
	return []meta.Image{{ID: "sha256:abc"}, {ID: "sha256:def"}}, nil
}

func serve(t *testing.T) (*fakeImages, *Client) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeImages{}
	s := Serve(lis, f)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return f, NewClient(sock)
}

func TestImport(t *testing.T) {
	f, c := serve(t)
	ctx := context.Background()
	imgs, err := c.Import(ctx, strings.NewReader("ok"), 2)
	if err != nil {
		t.Fatal(err)
	}
	if string(f.got) != "ok" || len(imgs) != 1 || imgs[0].ID != "sha256:abc" || imgs[0].RepoTags[0] != "docker.io/library/a:1" {
		t.Fatalf("got %q, images %+v", f.got, imgs)
	}
	// Unknown size: streamed chunked.
	if _, err := c.Import(ctx, io.MultiReader(strings.NewReader("o"), strings.NewReader("k")), -1); err != nil {
		t.Fatal(err)
	}
	_, err = c.Import(ctx, strings.NewReader("bad"), 3)
	if err == nil || !strings.Contains(err.Error(), "invalid image archive: not ok") {
		t.Fatalf("bad archive: %v", err)
	}
}

func TestExport(t *testing.T) {
	_, c := serve(t)
	ctx := context.Background()
	var b bytes.Buffer
	if err := c.Export(ctx, &b, []string{"a", "b:1"}); err != nil || b.String() != "ref:a;ref:b:1;" {
		t.Fatalf("export: %q %v", b.String(), err)
	}
	if err := c.Export(ctx, io.Discard, []string{"missing"}); err == nil || !strings.Contains(err.Error(), "image not found: missing") {
		t.Fatalf("missing: %v", err)
	}
	// A failure once the archive is streaming must not look like success.
	if err := c.Export(ctx, io.Discard, []string{"a", "broken"}); err == nil {
		t.Fatal("an export that failed midway reported success")
	}
}

func TestList(t *testing.T) {
	_, c := serve(t)
	imgs, err := c.List(context.Background())
	if err != nil || len(imgs) != 2 || imgs[1].ID != "sha256:def" {
		t.Fatalf("%+v %v", imgs, err)
	}
}
