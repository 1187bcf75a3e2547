package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fuzzTar builds a seed: entries given as (type, name, linkname).
func fuzzTar(entries ...[3]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Typeflag: e[0][0], Name: e[1], Linkname: e[2], Mode: 0o755, ModTime: time.Unix(1, 0)}
		if h.Typeflag == tar.TypeReg {
			h.Size = 3
		}
		tw.WriteHeader(h)
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte("abc"))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// FuzzApply: whatever a layer contains, nothing is ever created or changed
// outside the root it is applied to.
func FuzzApply(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("applying layers with their ownership needs root")
	}
	f.Add(fuzzTar([3]string{"5", "a/", ""}, [3]string{"0", "a/b", ""}))
	f.Add(fuzzTar([3]string{"0", "../escape", ""}))
	f.Add(fuzzTar([3]string{"2", "l", "/"}, [3]string{"0", "l/escape", ""}))
	f.Add(fuzzTar([3]string{"2", "l", "../.."}, [3]string{"5", "l/d/", ""}))
	f.Add(fuzzTar([3]string{"1", "h", "../outside/sentinel"}))
	f.Add(fuzzTar([3]string{"2", "l", ".."}, [3]string{"0", "l/.wh.sentinel", ""}))
	f.Add(fuzzTar([3]string{"5", "d/", ""}, [3]string{"0", "d/.wh..wh..opq", ""}, [3]string{"0", "/abs", ""}))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		root := filepath.Join(base, "root")
		outside := filepath.Join(base, "outside")
		for _, d := range []string{root, outside} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(outside, "sentinel"), []byte("keep"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("sentinel", filepath.Join(outside, "link")); err != nil {
			t.Fatal(err)
		}
		before := outsideTree(t, base, root)
		for _, mode := range []WhiteoutMode{WhiteoutDelete, WhiteoutOverlay} {
			_, _ = Apply(context.Background(), root, bytes.NewReader(data), mode, WithMaxEntries(1000))
		}
		if after := outsideTree(t, base, root); after != before {
			t.Fatalf("applying the layer changed things outside its root:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

// outsideTree lists everything under base except root and its content,
// with each entry's type and mode, owner, size, link count, mtime and
// content (a hash, or a symlink's target): a write, chmod, chown or
// hard link through an escape shows up as a difference. base's own mtime
// is left out (creating root touches it), and root is listed only as a
// directory: the layer may set root's own metadata.
func outsideTree(t *testing.T, base, root string) string {
	var b bytes.Buffer
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			fmt.Fprintf(&b, "%s dir\n", p)
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s mode=%o owner=%d:%d size=%d nlink=%d", p, st.Mode, st.Uid, st.Gid, st.Size, st.Nlink)
		if p != base {
			fmt.Fprintf(&b, " mtime=%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " sha256=%x", sha256.Sum256(data))
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " -> %s", target)
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
