package checkpoint

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestArchiveRoundTrip: a checkpoint directory packed and unpacked loads
// again, and its rootfs diff replays changes and deletions.
func TestArchiveRoundTrip(t *testing.T) {
	ctx := context.Background()
	stage := t.TempDir()
	if err := os.MkdirAll(filepath.Join(stage, ImagesDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stage, ImagesDir, "inventory.img"), []byte("criu"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(stage, ConfigDump, Config{ID: "abc", Name: "c", RootfsImageRef: "sha256:1"}); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(stage, SpecDump, map[string]any{"ociVersion": "1.2.0"}); err != nil {
		t.Fatal(err)
	}
	upper := t.TempDir()
	if err := os.MkdirAll(filepath.Join(upper, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(upper, "data", "new.txt"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	whiteouts := os.Geteuid() == 0
	if whiteouts {
		// An overlay whiteout: a 0/0 character device.
		if err := unix.Mknod(filepath.Join(upper, "gone.txt"), unix.S_IFCHR|0o600, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := WriteRootfsDiff(ctx, upper, stage); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "c.tar")
	if _, err := Pack(ctx, stage, archive); err != nil {
		t.Fatal(err)
	}
	if !IsArchive(archive) || IsArchive("relative.tar") || IsArchive(filepath.Dir(archive)) {
		t.Error("IsArchive is wrong")
	}
	ck, err := Unpack(ctx, archive, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if ck.Config.ID != "abc" || ck.Spec.Version != "1.2.0" {
		t.Errorf("loaded %+v, spec %q", ck.Config, ck.Spec.Version)
	}
	rootfs := t.TempDir()
	if err := os.WriteFile(filepath.Join(rootfs, "gone.txt"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ck.ApplyRootfsDiff(ctx, rootfs); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "data", "new.txt")); err != nil || string(b) != "new" {
		t.Errorf("new file after replay: %q, %v", b, err)
	}
	if whiteouts {
		if _, err := os.Stat(filepath.Join(rootfs, "gone.txt")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("deleted file after replay: %v", err)
		}
		var deleted []string
		b, _ := os.ReadFile(filepath.Join(ck.Dir, DeletedFiles))
		if json.Unmarshal(b, &deleted) != nil || len(deleted) != 1 || deleted[0] != "/gone.txt" {
			t.Errorf("deleted.files = %s", b)
		}
	}
	copied, err := Copy(ctx, ck.Dir, t.TempDir())
	if err != nil || copied.Config.ID != "abc" {
		t.Errorf("Copy: %v", err)
	}
}

// TestUnpackRefuses: what is not a checkpoint fails with ErrInvalid.
func TestUnpackRefuses(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, entries map[string]string) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		tw := tar.NewWriter(f)
		for n, c := range entries {
			tw.WriteHeader(&tar.Header{Name: n, Mode: 0o600, Size: int64(len(c))})
			io.WriteString(tw, c)
		}
		tw.Close()
		f.Close()
		return p
	}
	garbage := filepath.Join(dir, "garbage.tar")
	os.WriteFile(garbage, []byte("not a tar"), 0o600)
	for name, archive := range map[string]string{
		"garbage":       garbage,
		"no config":     write("noconfig.tar", map[string]string{"spec.dump": "{}"}),
		"bad config":    write("badconfig.tar", map[string]string{"config.dump": "{", "spec.dump": "{}"}),
		"no images":     write("noimages.tar", map[string]string{"config.dump": `{"rootfsImageRef":"x"}`, "spec.dump": "{}"}),
		"path escape":   write("escape.tar", map[string]string{"../../escaped": "x"}),
		"missing image": write("noimage.tar", map[string]string{"config.dump": "{}", "spec.dump": "{}", "checkpoint/inventory.img": "x"}),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Unpack(context.Background(), archive, t.TempDir()); !errors.Is(err, ErrInvalid) {
				t.Errorf("Unpack: %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "..", "escaped")); err == nil {
		t.Error("an entry escaped the directory")
	}
}
