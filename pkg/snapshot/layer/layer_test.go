package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type ent struct {
	name   string
	typ    byte
	body   string
	mode   int64
	uid    int
	gid    int
	link   string
	mtime  time.Time
	xattrs map[string]string
	major  int64
	minor  int64
}

func dir(name string) ent        { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func file(name, body string) ent { return ent{name: name, typ: tar.TypeReg, body: body, mode: 0o644} }
func symlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}
func hardlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeLink, link: target, mode: 0o644}
}

func tarOf(t *testing.T, ents ...ent) io.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		mt := e.mtime
		if mt.IsZero() {
			mt = time.Unix(1_600_000_000, 0)
		}
		h := &tar.Header{
			Name:     e.name,
			Typeflag: e.typ,
			Mode:     e.mode,
			Uid:      e.uid,
			Gid:      e.gid,
			Linkname: e.link,
			ModTime:  mt,
			Devmajor: e.major,
			Devminor: e.minor,
			Format:   tar.FormatPAX,
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if len(e.xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range e.xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("write header %s: %v", e.name, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func getXattr(p, name string) (string, error) {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func TestApplyContent(t *testing.T) {
	root := t.TempDir()
	mt := time.Unix(1_500_000_000, 123_000_000)
	dmt := time.Unix(1_400_000_000, 0)
	ents := []ent{
		{name: "./", typ: tar.TypeDir, mode: 0o755, mtime: dmt},
		{name: "bin/", typ: tar.TypeDir, mode: 0o755, mtime: dmt},
		{name: "bin/su", typ: tar.TypeReg, body: "su-binary", mode: 0o4755, uid: 0, gid: 0, mtime: mt},
		{name: "tmp/", typ: tar.TypeDir, mode: 0o1777, mtime: dmt},
		{name: "/home/user/", typ: tar.TypeDir, mode: 0o700, uid: 1000, gid: 1000, mtime: dmt},
		{name: "home/user/.profile", typ: tar.TypeReg, body: "export A=1\n", mode: 0o600, uid: 1000, gid: 2000, mtime: mt},
		{name: "bin/sh", typ: tar.TypeSymlink, link: "/bin/busybox", uid: 5, gid: 6, mtime: mt},
		{name: "bin/busybox", typ: tar.TypeReg, body: "bb", mode: 0o755, mtime: mt},
		{name: "bin/ls", typ: tar.TypeLink, link: "bin/busybox"},
		{name: "bin/ping", typ: tar.TypeReg, body: "ping", mode: 0o755, mtime: mt, xattrs: map[string]string{
			"user.note":              "hello",
			"trusted.overlay.opaque": "y",
			"trusted.overlay.origin": "forged",
		}},
		{name: "dev/", typ: tar.TypeDir, mode: 0o755},
		{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		{name: "dev/loop0", typ: tar.TypeBlock, mode: 0o660, major: 7, minor: 0},
		{name: "run/fifo", typ: tar.TypeFifo, mode: 0o640},
	}
	stats, err := Apply(context.Background(), root, tarOf(t, ents...))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}

	tests := []struct {
		path  string
		mode  uint32 // including type
		uid   uint32
		gid   uint32
		mtime *time.Time
	}{
		{path: ".", mode: unix.S_IFDIR | 0o755, mtime: &dmt},
		{path: "bin", mode: unix.S_IFDIR | 0o755, mtime: &dmt},
		{path: "bin/su", mode: unix.S_IFREG | 0o4755, mtime: &mt},
		{path: "tmp", mode: unix.S_IFDIR | 0o1777, mtime: &dmt},
		{path: "home", mode: unix.S_IFDIR | 0o755}, // implied parent
		{path: "home/user", mode: unix.S_IFDIR | 0o700, uid: 1000, gid: 1000, mtime: &dmt},
		{path: "home/user/.profile", mode: unix.S_IFREG | 0o600, uid: 1000, gid: 2000, mtime: &mt},
		{path: "bin/sh", mode: unix.S_IFLNK | 0o777, uid: 5, gid: 6, mtime: &mt},
		{path: "dev/null", mode: unix.S_IFCHR | 0o666},
		{path: "dev/loop0", mode: unix.S_IFBLK | 0o660},
		{path: "run/fifo", mode: unix.S_IFIFO | 0o640},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			st := lstat(t, filepath.Join(root, tc.path))
			if st.Mode != tc.mode {
				t.Errorf("mode = %#o, want %#o", st.Mode, tc.mode)
			}
			if st.Uid != tc.uid || st.Gid != tc.gid {
				t.Errorf("owner = %d:%d, want %d:%d", st.Uid, st.Gid, tc.uid, tc.gid)
			}
			if tc.mtime != nil {
				got := time.Unix(st.Mtim.Sec, st.Mtim.Nsec)
				if !got.Equal(*tc.mtime) {
					t.Errorf("mtime = %v, want %v", got, *tc.mtime)
				}
			}
		})
	}

	if got := readFile(t, filepath.Join(root, "home/user/.profile")); got != "export A=1\n" {
		t.Errorf("content = %q", got)
	}
	if l, _ := os.Readlink(filepath.Join(root, "bin/sh")); l != "/bin/busybox" {
		t.Errorf("symlink target = %q", l)
	}
	if a, b := lstat(t, filepath.Join(root, "bin/ls")), lstat(t, filepath.Join(root, "bin/busybox")); a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hardlink: ino %d vs %d, nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	if st := lstat(t, filepath.Join(root, "dev/null")); unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Errorf("dev/null rdev = %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	ping := filepath.Join(root, "bin/ping")
	if v, err := getXattr(ping, "user.note"); err != nil || v != "hello" {
		t.Errorf("user.note = %q, %v", v, err)
	}
	for _, x := range []string{"trusted.overlay.opaque", "trusted.overlay.origin"} {
		if _, err := getXattr(ping, x); !errors.Is(err, unix.ENODATA) {
			t.Errorf("%s from the tar must be stripped, got err %v", x, err)
		}
	}
	wantBytes := int64(len("su-binary") + len("export A=1\n") + len("bb") + len("ping"))
	if stats.Bytes != wantBytes {
		t.Errorf("Bytes = %d, want %d", stats.Bytes, wantBytes)
	}
	// dirs bin tmp home home/user dev run, files su .profile busybox ping,
	// symlink sh, null loop0 fifo; the root entry and the hardlink create none.
	if stats.Inodes != 14 {
		t.Errorf("Inodes = %d, want 14", stats.Inodes)
	}
}

func TestApplySecurityCapability(t *testing.T) {
	root := t.TempDir()
	// v2 capability blob: CAP_NET_RAW (13) permitted+effective.
	capv := string([]byte{0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	_, err := Apply(context.Background(), root, tarOf(t,
		ent{name: "ping", typ: tar.TypeReg, body: "x", mode: 0o755, uid: 1, xattrs: map[string]string{"security.capability": capv}},
	))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	// Set after chown, so it survives.
	if v, err := getXattr(filepath.Join(root, "ping"), "security.capability"); err != nil || v != capv {
		t.Errorf("security.capability = %x, %v", v, err)
	}
}

func TestApplyReplacement(t *testing.T) {
	tests := []struct {
		name  string
		ents  []ent
		check func(t *testing.T, root string)
	}{
		{
			name: "file replaces file",
			ents: []ent{file("a", "one"), file("a", "two")},
			check: func(t *testing.T, root string) {
				if got := readFile(t, filepath.Join(root, "a")); got != "two" {
					t.Errorf("a = %q", got)
				}
			},
		},
		{
			name: "file replaces hardlinked file without touching the other link",
			ents: []ent{file("a", "one"), hardlink("b", "a"), file("b", "two")},
			check: func(t *testing.T, root string) {
				if got := readFile(t, filepath.Join(root, "a")); got != "one" {
					t.Errorf("a = %q", got)
				}
				if got := readFile(t, filepath.Join(root, "b")); got != "two" {
					t.Errorf("b = %q", got)
				}
			},
		},
		{
			name: "dir over dir updates metadata and keeps children",
			ents: []ent{dir("d"), file("d/f", "x"), {name: "d", typ: tar.TypeDir, mode: 0o711, uid: 7, gid: 8}},
			check: func(t *testing.T, root string) {
				st := lstat(t, filepath.Join(root, "d"))
				if st.Mode != unix.S_IFDIR|0o711 || st.Uid != 7 || st.Gid != 8 {
					t.Errorf("d mode %#o owner %d:%d", st.Mode, st.Uid, st.Gid)
				}
				if !exists(filepath.Join(root, "d/f")) {
					t.Error("d/f lost")
				}
			},
		},
		{
			name: "file replaces dir",
			ents: []ent{dir("d"), file("d/f", "x"), file("d", "now a file")},
			check: func(t *testing.T, root string) {
				if got := readFile(t, filepath.Join(root, "d")); got != "now a file" {
					t.Errorf("d = %q", got)
				}
			},
		},
		{
			name: "dir replaces file",
			ents: []ent{file("d", "x"), dir("d"), file("d/f", "y")},
			check: func(t *testing.T, root string) {
				if got := readFile(t, filepath.Join(root, "d/f")); got != "y" {
					t.Errorf("d/f = %q", got)
				}
			},
		},
		{
			name: "symlink replaces file",
			ents: []ent{file("a", "x"), symlink("a", "b")},
			check: func(t *testing.T, root string) {
				if l, err := os.Readlink(filepath.Join(root, "a")); err != nil || l != "b" {
					t.Errorf("a -> %q, %v", l, err)
				}
			},
		},
		{
			name: "relative symlinked parent inside root is followed",
			ents: []ent{dir("usr"), dir("usr/lib"), symlink("lib", "usr/lib"), file("lib/libc.so", "c"),
				dir("usr/lib64"), symlink("usr/lib64/up", "../lib"), file("usr/lib64/up/x", "x")},
			check: func(t *testing.T, root string) {
				if got := readFile(t, filepath.Join(root, "usr/lib/libc.so")); got != "c" {
					t.Errorf("usr/lib/libc.so = %q", got)
				}
				if got := readFile(t, filepath.Join(root, "usr/lib/x")); got != "x" {
					t.Errorf("usr/lib/x = %q", got)
				}
			},
		},
		{
			name: "dotdot inside the root is cleaned",
			ents: []ent{file("a/../b", "b"), file("./c/./d", "d")},
			check: func(t *testing.T, root string) {
				if readFile(t, filepath.Join(root, "b")) != "b" || readFile(t, filepath.Join(root, "c/d")) != "d" {
					t.Error("wrong content")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if _, err := Apply(context.Background(), root, tarOf(t, tc.ents...)); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			tc.check(t, root)
		})
	}
}

func isWhiteout(t *testing.T, p string) bool {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

func TestApplyWhiteoutOverlay(t *testing.T) {
	root := t.TempDir()
	_, err := Apply(context.Background(), root, tarOf(t,
		dir("d"),
		file("d/.wh.gone", ""),
		dir("o"),
		file("o/.wh..wh..opq", ""),
		file("o/new", "n"),
		file(".wh.top", ""),
		file("deep/er/.wh.x", ""), // parents implied
		dir("s"),
		file("s/keep", "k"),
		file("s/.wh.keep", ""), // same layer: ignored
		file(".wh.r", ""),
		dir("r"), // dir replacing a whiteout: opaque
		file(".wh..wh.plnk", ""),
	), WhiteoutOverlay)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, p := range []string{"d/gone", "top", "deep/er/x"} {
		if !isWhiteout(t, filepath.Join(root, p)) {
			t.Errorf("%s is not an overlay whiteout", p)
		}
	}
	for _, p := range []string{"o", "r"} {
		if v, err := getXattr(filepath.Join(root, p), "trusted.overlay.opaque"); err != nil || v != "y" {
			t.Errorf("%s opaque xattr = %q, %v", p, v, err)
		}
	}
	if v, err := getXattr(filepath.Join(root, "d"), "trusted.overlay.opaque"); err == nil {
		t.Errorf("d must not be opaque, got %q", v)
	}
	if got := readFile(t, filepath.Join(root, "o/new")); got != "n" {
		t.Errorf("o/new = %q", got)
	}
	if got := readFile(t, filepath.Join(root, "s/keep")); got != "k" {
		t.Errorf("s/keep = %q", got)
	}
	for _, p := range []string{"d/.wh.gone", ".wh.top", "o/.wh..wh..opq", ".wh..wh.plnk"} {
		if exists(filepath.Join(root, p)) {
			t.Errorf("%s must not be extracted", p)
		}
	}
}

func TestApplyWhiteoutDelete(t *testing.T) {
	root := t.TempDir()
	// Lower content, as in a native snapshot copied from its parent.
	for _, p := range []string{"d/gone", "d/stay", "top", "o/old1", "o/olddir/f", "o/keepdir/oldchild", "top2dir/x"} {
		mustWrite(t, filepath.Join(root, p), "lower")
	}
	_, err := Apply(context.Background(), root, tarOf(t,
		file("d/.wh.gone", ""),
		dir("o"),
		dir("o/keepdir"),
		file("o/keepdir/new", "n"),
		file("o/.wh..wh..opq", ""), // after some of its new children
		file("o/new", "n"),
		file(".wh.top2dir", ""),
		file(".wh.missing", ""),
		file("nolower/.wh.x", ""),
	), WhiteoutDelete)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	tests := []struct {
		path string
		want bool
	}{
		{"d/gone", false}, {"d/stay", true}, {"top", true},
		{"o/old1", false}, {"o/olddir", false}, {"o/keepdir/oldchild", false},
		{"o/keepdir/new", true}, {"o/new", true}, {"top2dir", false},
		{"d/.wh.gone", false}, {"o/.wh..wh..opq", false}, {"missing", false},
	}
	for _, tc := range tests {
		if got := exists(filepath.Join(root, tc.path)); got != tc.want {
			t.Errorf("%s exists = %v, want %v", tc.path, got, tc.want)
		}
	}
	if _, err := getXattr(filepath.Join(root, "o"), "trusted.overlay.opaque"); err == nil {
		t.Error("delete mode must not write overlay xattrs")
	}
}

func mustWrite(t *testing.T, p, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// snapshotTree records everything observable about a directory tree.
func snapshotTree(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s mode=%o uid=%d gid=%d nlink=%d mtime=%d.%d", strings.TrimPrefix(p, dir), st.Mode, st.Uid, st.Gid, st.Nlink, st.Mtim.Sec, st.Mtim.Nsec)
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			b, _ := os.ReadFile(p)
			line += " content=" + string(b)
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestApplyEscapes(t *testing.T) {
	tests := []struct {
		name string
		// ents may use OUT for the absolute outside directory.
		ents []ent
		opts []Option
	}{
		{name: "dotdot name", ents: []ent{file("../outside/passwd", "pwned")}},
		{name: "dotdot after dir", ents: []ent{file("a/../../outside/passwd", "pwned")}},
		{name: "absolute dotdot", ents: []ent{file("/../outside/passwd", "pwned")}},
		{name: "dotdot dir entry", ents: []ent{dir("../outside/newdir")}},
		{name: "symlink parent absolute", ents: []ent{symlink("a", "OUT"), file("a/passwd", "pwned")}},
		{name: "symlink parent absolute root", ents: []ent{symlink("a", "/"), file("a/tmp/pwned", "pwned")}},
		{name: "symlink parent relative", ents: []ent{symlink("a", "../outside"), file("a/passwd", "pwned")}},
		{name: "symlink parent dotdots", ents: []ent{symlink("a", "../../../../../.."), file("a/x", "pwned")}},
		{name: "symlink chain", ents: []ent{symlink("b", "../outside"), symlink("a", "b"), file("a/passwd", "pwned")}},
		{name: "dir through symlink parent", ents: []ent{symlink("a", "OUT"), {name: "a/newdir", typ: tar.TypeDir, mode: 0o777}}},
		{name: "symlink through symlink parent", ents: []ent{symlink("a", "OUT"), symlink("a/evil", "/etc")}},
		{name: "fifo through symlink parent", ents: []ent{symlink("a", "OUT"), {name: "a/fifo", typ: tar.TypeFifo, mode: 0o644}}},
		{name: "hardlink dotdot", ents: []ent{hardlink("x", "../outside/passwd")}},
		{name: "hardlink absolute dotdot", ents: []ent{hardlink("x", "/../outside/passwd")}},
		{name: "hardlink through symlink", ents: []ent{symlink("a", "OUT"), hardlink("x", "a/passwd")}},
		{name: "hardlink through relative symlink", ents: []ent{symlink("a", "../outside"), hardlink("x", "a/passwd")}},
		{name: "hardlink placed through symlink", ents: []ent{file("f", "x"), symlink("a", "OUT"), hardlink("a/passwd", "f")}},
		{name: "whiteout through symlink parent overlay", ents: []ent{symlink("a", "OUT"), file("a/.wh.passwd", "")}, opts: []Option{WhiteoutOverlay}},
		{name: "whiteout through symlink parent delete", ents: []ent{symlink("a", "OUT"), file("a/.wh.passwd", "")}, opts: []Option{WhiteoutDelete}},
		{name: "whiteout through relative symlink parent", ents: []ent{symlink("a", "../outside"), file("a/.wh.passwd", "")}},
		{name: "whiteout through in-root symlink parent", ents: []ent{dir("real"), file("real/f", "x"), symlink("a", "real"), file("a/.wh.f", "")}},
		{name: "opaque through symlink parent delete", ents: []ent{symlink("a", "OUT"), file("a/.wh..wh..opq", "")}, opts: []Option{WhiteoutDelete}},
		{name: "opaque through symlink parent overlay", ents: []ent{symlink("a", "OUT"), file("a/.wh..wh..opq", "")}, opts: []Option{WhiteoutOverlay}},
		{name: "whiteout dotdot", ents: []ent{file("a/.wh...", "")}},
		{name: "whiteout climbing", ents: []ent{file("../outside/.wh.passwd", "")}},
		{name: "char device refused", ents: []ent{{name: "null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3}}, opts: []Option{WithoutDevices()}},
		{name: "block device refused", ents: []ent{{name: "sda", typ: tar.TypeBlock, mode: 0o660, major: 8}}, opts: []Option{WithoutDevices()}},
		{name: "root replaced by file", ents: []ent{file(".", "x")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			root := filepath.Join(base, "root")
			out := filepath.Join(base, "outside")
			mustWrite(t, filepath.Join(out, "passwd"), "secret")
			mustWrite(t, filepath.Join(out, "sub", "f"), "f")
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			before := snapshotTree(t, out)
			ents := make([]ent, len(tc.ents))
			for i, e := range tc.ents {
				e.link = strings.ReplaceAll(e.link, "OUT", out)
				ents[i] = e
			}
			_, err := Apply(context.Background(), root, tarOf(t, ents...), tc.opts...)
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("Apply error = %v, want ErrUnsafePath", err)
			}
			if after := snapshotTree(t, out); after != before {
				t.Errorf("outside changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if !strings.Contains(err.Error(), "layer entry") {
				t.Errorf("error does not name the entry: %v", err)
			}
		})
	}
}

// Replacing a symlink at the final component must never write through it.
func TestApplyFinalSymlinkNotFollowed(t *testing.T) {
	tests := []struct {
		name  string
		ents  []ent
		check func(t *testing.T, root string)
	}{
		{
			name: "regular file over symlink",
			ents: []ent{symlink("x", "OUT/passwd"), {name: "x", typ: tar.TypeReg, body: "pwned", mode: 0o777, uid: 1234}},
			check: func(t *testing.T, root string) {
				if got := readFile(t, filepath.Join(root, "x")); got != "pwned" {
					t.Errorf("x = %q", got)
				}
			},
		},
		{
			name: "dir over symlink to dir",
			ents: []ent{symlink("a", "OUT"), {name: "a", typ: tar.TypeDir, mode: 0o777, uid: 1234}},
			check: func(t *testing.T, root string) {
				if st := lstat(t, filepath.Join(root, "a")); st.Mode != unix.S_IFDIR|0o777 {
					t.Errorf("a mode %#o", st.Mode)
				}
			},
		},
		{
			name: "fifo over symlink",
			ents: []ent{symlink("x", "OUT/passwd"), {name: "x", typ: tar.TypeFifo, mode: 0o777}},
		},
		{
			name: "hardlink to symlink links the symlink",
			ents: []ent{symlink("x", "OUT/passwd"), hardlink("y", "x"), {name: "y", typ: tar.TypeSymlink, link: "z", uid: 1234}},
		},
		{
			name: "symlink metadata stays on the symlink",
			ents: []ent{{name: "x", typ: tar.TypeSymlink, link: "OUT/passwd", mode: 0o777, uid: 1234, gid: 1234,
				xattrs: map[string]string{"trusted.test": "v"}}},
			check: func(t *testing.T, root string) {
				if st := lstat(t, filepath.Join(root, "x")); st.Uid != 1234 {
					t.Errorf("symlink uid %d", st.Uid)
				}
			},
		},
		{
			name: "whiteout of a symlink removes the symlink only",
			ents: []ent{symlink("x", "OUT"), file(".wh.x", "")},
			check: func(t *testing.T, root string) {
				if !isWhiteout(t, filepath.Join(root, "x")) {
					t.Error("x is not a whiteout")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			root := filepath.Join(base, "root")
			out := filepath.Join(base, "outside")
			mustWrite(t, filepath.Join(out, "passwd"), "secret")
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			before := snapshotTree(t, out)
			ents := make([]ent, len(tc.ents))
			for i, e := range tc.ents {
				e.link = strings.ReplaceAll(e.link, "OUT", out)
				ents[i] = e
			}
			// Whiteouts of same-layer entries are ignored, so apply the
			// symlinks as a lower layer first when the test has whiteouts.
			if _, err := Apply(context.Background(), root, tarOf(t, ents[:1]...), WhiteoutOverlay); err != nil {
				t.Fatalf("Apply lower: %v", err)
			}
			if _, err := Apply(context.Background(), root, tarOf(t, ents[1:]...), WhiteoutOverlay); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if after := snapshotTree(t, out); after != before {
				t.Errorf("outside changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if tc.check != nil {
				tc.check(t, root)
			}
		})
	}
}

func TestApplyLimits(t *testing.T) {
	tests := []struct {
		name string
		ents []ent
		opts []Option
	}{
		{name: "entries", ents: []ent{file("a", ""), file("b", ""), file("c", "")}, opts: []Option{WithMaxEntries(2)}},
		{name: "long name", ents: []ent{file(strings.Repeat("a/", 2100)+"x", "")}},
		{name: "long hardlink target", ents: []ent{hardlink("x", strings.Repeat("a/", 2100))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Apply(context.Background(), t.TempDir(), tarOf(t, tc.ents...), tc.opts...)
			if !errors.Is(err, ErrLimitExceeded) {
				t.Fatalf("err = %v, want ErrLimitExceeded", err)
			}
		})
	}
}

func TestApplyCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Apply(ctx, t.TempDir(), tarOf(t, file("a", "x")))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// cancelReader cancels the context after the first read, mid-file.
type cancelReader struct {
	r      io.Reader
	cancel func()
}

func (c *cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.cancel()
	return n, err
}

func TestApplyCancelledMidFile(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	big := strings.Repeat("x", 4<<20)
	r := &cancelReader{r: tarOf(t, file("big", big), file("after", "y")), cancel: cancel}
	_, err := Apply(ctx, t.TempDir(), r)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// spawnReader starts a child process on every Read of the layer stream,
// as the daemon does when it starts a shim, runc or a CNI plugin while a
// pull unpacks, and records every fd the child inherited that resolves
// into root.
type spawnReader struct {
	t      *testing.T
	r      io.Reader
	root   string
	spawns int
	leaked []string
}

func (s *spawnReader) Read(p []byte) (int, error) {
	s.spawns++
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	fdDir := fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err == nil && (target == s.root || strings.HasPrefix(target, s.root+"/")) {
			s.leaked = append(s.leaked, fmt.Sprintf("read %d: fd %s -> %s", s.spawns, e.Name(), target))
		}
	}
	return s.r.Read(p)
}

// TestApplyFdsCloseOnExec checks that no fd Apply opens on the layer
// survives into a process started while it runs.
func TestApplyFdsCloseOnExec(t *testing.T) {
	root := t.TempDir()
	big := strings.Repeat("x", 300<<10) // more than one read of content
	r := &spawnReader{t: t, root: root, r: tarOf(t,
		ent{name: "./", typ: tar.TypeDir, mode: 0o755},
		file("top", big),
		file("a/b/deep", big),
		dir("c"),
		file("c/f", big),
	)}
	if _, err := Apply(context.Background(), root, r); err != nil {
		t.Fatal(err)
	}
	if r.spawns < 6 {
		t.Fatalf("only %d reads: the test did not spawn during file content", r.spawns)
	}
	for _, l := range r.leaked {
		t.Errorf("child inherited an unpack fd: %s", l)
	}
}
