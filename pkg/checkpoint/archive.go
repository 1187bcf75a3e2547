package checkpoint

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot/layer"
)

// The archive's entries (CRI-O's and containerd's names).
const (
	ImagesDir    = "checkpoint"
	ConfigDump   = "config.dump"
	SpecDump     = "spec.dump"
	RootfsDiff   = "rootfs-diff.tar"
	DeletedFiles = "deleted.files"
	BindMounts   = "bind.mounts"
	ContainerLog = "container.log"
	StatusDump   = "status.dump"
	DumpLog      = "dump.log"
)

// ErrTerminal: a container with a terminal (tty) is neither checkpointed
// nor restored. Its shim restores a container's stdio as new pipes, and a
// terminal is a pty whose master end the shim holds: CRIU would need it
// as an external resource on both sides, which runc 1.1 does not pass.
var ErrTerminal = errors.New("a container with a terminal (tty) cannot be checkpointed or restored by this runtime")

// ErrInvalid: the archive is not a usable checkpoint (unreadable, an
// entry missing or malformed, an unsafe path).
var ErrInvalid = errors.New("invalid checkpoint archive")

// Config is config.dump: the container's CRI metadata, with the field
// names CRI-O writes (checkpointctl reads them).
type Config struct {
	ID               string    `json:"id"`
	Name             string    `json:"name"`
	RootfsImage      string    `json:"rootfsImage"`
	RootfsImageRef   string    `json:"rootfsImageRef"`
	RootfsImageName  string    `json:"rootfsImageName"`
	Runtime          string    `json:"runtime"`
	CreatedTime      time.Time `json:"createdTime"`
	CheckpointedTime time.Time `json:"checkpointedTime"`
	// Pod is the pod sandbox the container ran in.
	Pod string `json:"sandboxID,omitempty"`
	// CRIConfig is the container's CRI ContainerConfig, as protobuf JSON.
	CRIConfig json.RawMessage `json:"criConfig,omitempty"`
}

// BindMount is one line of bind.mounts.
type BindMount struct {
	Destination string   `json:"destination"`
	Source      string   `json:"source"`
	Options     []string `json:"options,omitempty"`
}

// Checkpoint is an unpacked archive.
type Checkpoint struct {
	Dir    string
	Config Config
	Spec   specs.Spec
}

// ImagesPath is the directory of CRIU's images.
func (c *Checkpoint) ImagesPath() string { return filepath.Join(c.Dir, ImagesDir) }

// WriteJSON writes v as dir/name.
func WriteJSON(dir, name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), b, 0o600)
}

// BindMountsOf lists the spec's bind mounts.
func BindMountsOf(s *specs.Spec) []BindMount {
	var out []BindMount
	for _, m := range s.Mounts {
		if m.Type == "bind" || containsString(m.Options, "bind") || containsString(m.Options, "rbind") {
			out = append(out, BindMount{Destination: m.Destination, Source: m.Source, Options: m.Options})
		}
	}
	return out
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// WriteRootfsDiff writes the container's writable layer, an overlayfs
// upperdir (or, for the native snapshotter, the whole root), to dir as
// rootfs-diff.tar in OCI layer form (overlay whiteouts become ".wh."
// entries) and the deleted paths to deleted.files. It returns the tar's
// size.
func WriteRootfsDiff(ctx context.Context, upper, dir string) (int64, error) {
	f, err := os.Create(filepath.Join(dir, RootfsDiff))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	var deleted []string
	err = filepath.WalkDir(upper, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(upper, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if isWhiteout(info) {
			deleted = append(deleted, "/"+rel)
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: filepath.Join(filepath.Dir(rel), ".wh."+filepath.Base(rel)), Mode: 0o600})
		}
		if err := writeEntry(tw, path, rel, info); err != nil {
			return err
		}
		if d.IsDir() && isOpaque(path) {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: filepath.Join(rel, ".wh..wh..opq"), Mode: 0o600})
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return 0, fmt.Errorf("rootfs diff of %s: %w", upper, err)
	}
	if len(deleted) > 0 {
		if err := WriteJSON(dir, DeletedFiles, deleted); err != nil {
			return 0, err
		}
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), f.Sync()
}

func isWhiteout(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0
}

func isOpaque(dir string) bool {
	buf := make([]byte, 1)
	n, err := unix.Lgetxattr(dir, "trusted.overlay.opaque", buf)
	return err == nil && n == 1 && buf[0] == 'y'
}

func writeEntry(tw *tar.Writer, path, name string, fi fs.FileInfo) error {
	var link string
	if fi.Mode()&fs.ModeSymlink != 0 {
		l, err := os.Readlink(path)
		if err != nil {
			return err
		}
		link = l
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	hdr.Name = name
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", ""
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyN(tw, f, hdr.Size)
	return err
}

// Pack writes the files of dir as the tar archive path, replacing it
// whole or not at all.
func Pack(ctx context.Context, dir, path string) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	tw := tar.NewWriter(tmp)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return writeEntry(tw, p, rel, info)
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if err != nil {
		return 0, fmt.Errorf("write checkpoint archive %s: %w", path, err)
	}
	fi, err := tmp.Stat()
	if err != nil {
		return 0, err
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// IsArchive says whether image (a CreateContainer image reference) names
// a checkpoint archive: an absolute path to a regular file.
func IsArchive(image string) bool {
	if !filepath.IsAbs(image) {
		return false
	}
	fi, err := os.Stat(image)
	return err == nil && fi.Mode().IsRegular()
}

// Unpack extracts the archive (hostile input: paths stay beneath dir, no
// device nodes) into the existing empty dir and loads its metadata.
func Unpack(ctx context.Context, archive, dir string) (*Checkpoint, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	defer f.Close()
	if err := Extract(ctx, f, dir); err != nil {
		return nil, fmt.Errorf("%s: %w", archive, err)
	}
	return Load(dir)
}

// Load reads an unpacked checkpoint's metadata and checks that CRIU's
// images are there.
func Load(dir string) (*Checkpoint, error) {
	c := &Checkpoint{Dir: dir}
	if err := readJSON(dir, ConfigDump, &c.Config); err != nil {
		return nil, err
	}
	if err := readJSON(dir, SpecDump, &c.Spec); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, ImagesDir, "inventory.img")); err != nil {
		return nil, fmt.Errorf("%w: no CRIU images (%s/inventory.img): %v", ErrInvalid, ImagesDir, err)
	}
	if c.Config.RootfsImageRef == "" && c.Config.RootfsImageName == "" {
		return nil, fmt.Errorf("%w: %s names no image", ErrInvalid, ConfigDump)
	}
	return c, nil
}

func readJSON(dir, name string, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
	}
	return nil
}

// ApplyRootfsDiff replays the checkpoint's writable-layer changes onto a
// mounted root filesystem (hostile input, as a layer).
func (c *Checkpoint) ApplyRootfsDiff(ctx context.Context, rootfs string) error {
	f, err := os.Open(filepath.Join(c.Dir, RootfsDiff))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := layer.Apply(ctx, rootfs, f); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, RootfsDiff, err)
	}
	return nil
}

// IsDir says whether image names an unpacked checkpoint (a container's
// directory in a pod checkpoint): an absolute path to a directory with a
// config.dump.
func IsDir(image string) bool {
	if !filepath.IsAbs(image) {
		return false
	}
	fi, err := os.Stat(filepath.Join(image, ConfigDump))
	return err == nil && fi.Mode().IsRegular()
}

// Copy copies the unpacked checkpoint src (regular files and directories
// only) into the existing empty dir and loads it.
func Copy(ctx context.Context, src, dir string) (*Checkpoint, error) {
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		dst := filepath.Join(dir, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(dst, 0o700)
		case d.Type().IsRegular():
			return CopyFile(p, dst)
		}
		return fmt.Errorf("%w: %s is neither a file nor a directory", ErrInvalid, rel)
	})
	if err != nil {
		return nil, fmt.Errorf("copy checkpoint %s: %w", src, err)
	}
	return Load(dir)
}

// CopyFile copies the regular file from into a new file to (mode 0600),
// refusing to overwrite: a checkpoint is staged in a fresh directory.
func CopyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
