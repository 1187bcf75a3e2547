package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

var (
	// ErrUnsafePath is wrapped by every error about an entry that would
	// reach outside the root or that the options forbid (device nodes with
	// WithoutDevices).
	ErrUnsafePath = errors.New("unsafe path in layer")
	// ErrLimitExceeded is wrapped when a layer exceeds a sanity limit
	// (entry count, name length).
	ErrLimitExceeded = errors.New("layer limit exceeded")
)

const (
	// MaxNameLength bounds entry and link names (PATH_MAX).
	MaxNameLength = 4096
	// DefaultMaxEntries bounds the number of tar entries of one layer; real
	// layers have at most a few hundred thousand.
	DefaultMaxEntries = 10_000_000

	whiteoutPrefix     = ".wh."
	whiteoutMetaPrefix = ".wh..wh."
	whiteoutOpaque     = ".wh..wh..opq"

	overlayOpaqueXattr = "trusted.overlay.opaque"
	paxXattrPrefix     = "SCHILY.xattr."
)

// Stats reports what Apply wrote.
type Stats struct {
	// Bytes of regular file content written.
	Bytes int64
	// Inodes created (files, directories, symlinks, devices, whiteout
	// devices); hardlinks create none.
	Inodes int64
}

// WhiteoutMode selects how OCI whiteouts are represented. It is itself an
// Option: Apply(ctx, root, r, layer.WhiteoutOverlay).
type WhiteoutMode int

const (
	// WhiteoutDelete removes whited-out paths from root, and for an opaque
	// directory removes every child this layer did not create. Use it when
	// root holds the full lower content (native snapshotter) or no lower
	// content at all (a base layer). It is the default.
	WhiteoutDelete WhiteoutMode = iota
	// WhiteoutOverlay writes whiteouts the way an overlayfs upperdir stores
	// them: a 0/0 character device for ".wh.<name>" and the xattr
	// trusted.overlay.opaque=y for ".wh..wh..opq".
	WhiteoutOverlay
)

func (m WhiteoutMode) String() string {
	switch m {
	case WhiteoutDelete:
		return "delete"
	case WhiteoutOverlay:
		return "overlay"
	}
	return fmt.Sprintf("WhiteoutMode(%d)", int(m))
}

func (m WhiteoutMode) apply(c *config) { c.whiteout = m }

// Option configures Apply.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithoutDevices refuses character and block device entries (fifos are
// still allowed) with an error wrapping ErrUnsafePath.
func WithoutDevices() Option {
	return optionFunc(func(c *config) { c.noDevices = true })
}

// WithMaxEntries overrides DefaultMaxEntries.
func WithMaxEntries(n int64) Option {
	return optionFunc(func(c *config) { c.maxEntries = n })
}

type config struct {
	whiteout   WhiteoutMode
	noDevices  bool
	maxEntries int64
}

// Apply unpacks the uncompressed tar stream r into the existing directory
// root. The caller decompresses. Cancelling ctx aborts between entries and
// between chunks of file content; a Read blocked inside r is the caller's to
// unblock. On error root is left partially written; the caller discards it.
func Apply(ctx context.Context, root string, r io.Reader, opts ...Option) (Stats, error) {
	cfg := config{whiteout: WhiteoutDelete, maxEntries: DefaultMaxEntries}
	for _, o := range opts {
		o.apply(&cfg)
	}
	rootFd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Stats{}, fmt.Errorf("open layer root %s: %w", root, err)
	}
	defer unix.Close(rootFd)

	a := &applier{
		cfg:      cfg,
		root:     root,
		rootFd:   rootFd,
		touched:  map[string]struct{}{".": {}},
		dirTimes: map[string]dirTime{},
		buf:      make([]byte, 256<<10),
	}
	start := time.Now()
	tr := tar.NewReader(r)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return a.stats, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return a.stats, fmt.Errorf("read layer tar after %d entries: %w", n, err)
		}
		n++
		if n > cfg.maxEntries {
			return a.stats, fmt.Errorf("%w: more than %d entries", ErrLimitExceeded, cfg.maxEntries)
		}
		if err := a.entry(ctx, hdr, tr); err != nil {
			return a.stats, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	if err := a.finishDirTimes(ctx); err != nil {
		return a.stats, err
	}
	klog.V(2).InfoS("Applied layer", "root", root, "whiteouts", cfg.whiteout, "entries", n,
		"bytes", a.stats.Bytes, "inodes", a.stats.Inodes, "duration", time.Since(start))
	return a.stats, nil
}

type dirTime struct {
	atime, mtime time.Time
}

type applier struct {
	cfg    config
	root   string
	rootFd int
	stats  Stats
	// touched holds every path this layer created or updated, and all
	// their ancestors: whiteouts only hide lower content, so these are
	// exempt from same-layer whiteouts and opaque-directory deletion.
	touched map[string]struct{}
	// dirTimes are applied last, because creating children changes a
	// directory's mtime.
	dirTimes map[string]dirTime
	buf      []byte
}

// cleanName turns a tar name into a clean path relative to root ("." for
// root itself). A leading "/" is normal in tars and is stripped; ".." that
// would climb above root is refused.
func cleanName(raw string) (string, error) {
	if len(raw) > MaxNameLength {
		return "", fmt.Errorf("%w: name of %d bytes exceeds %d", ErrLimitExceeded, len(raw), MaxNameLength)
	}
	if strings.IndexByte(raw, 0) >= 0 {
		return "", fmt.Errorf("%w: name contains NUL", ErrUnsafePath)
	}
	p := strings.TrimLeft(raw, "/")
	depth := 0
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return "", fmt.Errorf("%w: %q climbs out of the root", ErrUnsafePath, raw)
			}
		default:
			depth++
		}
	}
	if p == "" {
		return ".", nil
	}
	return path.Clean(p), nil
}

func (a *applier) touch(name string) {
	for name != "." && name != "/" && name != "" {
		if _, ok := a.touched[name]; ok {
			return
		}
		a.touched[name] = struct{}{}
		name = path.Dir(name)
	}
}

func (a *applier) entry(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	dir, base := path.Dir(name), path.Base(name)

	if name != "." && strings.HasPrefix(base, whiteoutPrefix) {
		switch {
		case base == whiteoutOpaque:
			return a.opaque(dir)
		case strings.HasPrefix(base, whiteoutMetaPrefix):
			// aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not content.
			klog.V(4).InfoS("Skipping aufs metadata entry", "name", name)
			return nil
		}
		target := strings.TrimPrefix(base, whiteoutPrefix)
		if target == "" || target == "." || target == ".." {
			return fmt.Errorf("%w: whiteout of %q", ErrUnsafePath, target)
		}
		return a.whiteout(dir, target)
	}

	if name == "." {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: root replaced by a non-directory", ErrUnsafePath)
		}
		return a.rootDir(hdr)
	}

	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock:
		if a.cfg.noDevices {
			return fmt.Errorf("%w: device node refused", ErrUnsafePath)
		}
	//lint:ignore SA1019 old tar writers still emit it
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}

	pfd, err := a.openDir(dir, true, false)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)

	switch hdr.Typeflag {
	case tar.TypeDir:
		err = a.mkdir(pfd, name, base, hdr)
	//lint:ignore SA1019 old tar writers still emit it
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		err = a.writeFile(ctx, pfd, base, hdr, r)
	case tar.TypeSymlink:
		err = a.symlink(pfd, base, hdr)
	case tar.TypeLink:
		err = a.hardlink(pfd, name, base, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		err = a.mknod(pfd, base, hdr)
	}
	if err != nil {
		return err
	}
	a.touch(name)
	return nil
}

func (a *applier) rootDir(hdr *tar.Header) error {
	fd, err := dupCloexec(a.rootFd)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := a.setMeta(fd, false, false, hdr); err != nil {
		return err
	}
	a.dirTimes["."] = times(hdr)
	return nil
}

func (a *applier) mkdir(pfd int, name, base string, hdr *tar.Header) error {
	st, exists, err := lstatAt(pfd, base)
	if err != nil {
		return err
	}
	markOpaque := false
	if exists && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		// A directory replacing an overlay whiteout from this layer means
		// "replace the lower directory", which overlayfs spells opaque.
		markOpaque = a.cfg.whiteout == WhiteoutOverlay && isWhiteoutDevice(st)
		if err := removeAllAt(pfd, base); err != nil {
			return err
		}
		exists = false
	}
	if !exists {
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
		a.stats.Inodes++
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer unix.Close(fd)
	if err := a.setMeta(fd, false, false, hdr); err != nil {
		return err
	}
	if markOpaque {
		if err := unix.Fsetxattr(fd, overlayOpaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("set %s: %w", overlayOpaqueXattr, err)
		}
	}
	a.dirTimes[name] = times(hdr)
	return nil
}

func (a *applier) writeFile(ctx context.Context, pfd int, base string, hdr *tar.Header, r io.Reader) error {
	// Unlink first: writing in place would go through a symlink or into an
	// inode shared by a hardlink.
	if err := a.replace(pfd, base); err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	a.stats.Inodes++
	n, err := copyCtx(ctx, f, r, a.buf)
	a.stats.Bytes += n
	if err != nil {
		return fmt.Errorf("write file content: %w", err)
	}
	if err := a.setMeta(fd, false, false, hdr); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close file: %w", err)
	}
	return setTimesAt(pfd, base, times(hdr))
}

func (a *applier) symlink(pfd int, base string, hdr *tar.Header) error {
	if len(hdr.Linkname) > MaxNameLength {
		return fmt.Errorf("%w: symlink target of %d bytes", ErrLimitExceeded, len(hdr.Linkname))
	}
	if err := a.replace(pfd, base); err != nil {
		return err
	}
	// The target is stored verbatim: it may point anywhere, because nothing
	// is ever resolved through it without RESOLVE_BENEATH.
	if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	a.stats.Inodes++
	return a.metaAt(pfd, base, true, hdr)
}

func (a *applier) mknod(pfd int, base string, hdr *tar.Header) error {
	if err := a.replace(pfd, base); err != nil {
		return err
	}
	mode := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
	case tar.TypeFifo:
		mode |= unix.S_IFIFO
	}
	dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	if err := unix.Mknodat(pfd, base, mode, dev); err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	a.stats.Inodes++
	return a.metaAt(pfd, base, false, hdr)
}

func (a *applier) hardlink(pfd int, name, base string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hardlink target: %w", err)
	}
	if target == "." {
		return fmt.Errorf("%w: hardlink to the root directory", ErrUnsafePath)
	}
	tpfd, err := a.openDir(path.Dir(target), false, false)
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
	}
	defer unix.Close(tpfd)
	tbase := path.Base(target)
	tst, ok, err := lstatAt(tpfd, tbase)
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
	}
	if !ok {
		return fmt.Errorf("hardlink target %q does not exist in this layer", hdr.Linkname)
	}
	if tst.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hardlink target %q is a directory", hdr.Linkname)
	}
	if st, ok, err := lstatAt(pfd, base); err != nil {
		return err
	} else if ok && st.Dev == tst.Dev && st.Ino == tst.Ino {
		return nil // already the same inode (e.g. a link to itself)
	}
	if err := a.replace(pfd, base); err != nil {
		return err
	}
	// Flags 0: a symlink target is linked itself, never followed.
	if err := unix.Linkat(tpfd, tbase, pfd, base, 0); err != nil {
		return fmt.Errorf("hardlink to %q: %w", hdr.Linkname, err)
	}
	return nil
}

// replace removes whatever exists at base so a non-directory can be created.
func (a *applier) replace(pfd int, base string) error {
	if err := removeAllAt(pfd, base); err != nil {
		return fmt.Errorf("replace existing entry: %w", err)
	}
	return nil
}

func (a *applier) whiteout(dir, target string) error {
	full := path.Join(dir, target)
	if _, ok := a.touched[full]; ok {
		// Whiteouts only hide lower layers, never this layer's own entries.
		klog.V(4).InfoS("Ignoring whiteout of an entry of the same layer", "path", full)
		return nil
	}
	pfd, err := a.openDir(dir, a.cfg.whiteout == WhiteoutOverlay, true)
	if err != nil {
		if a.cfg.whiteout == WhiteoutDelete && errors.Is(err, unix.ENOENT) {
			return nil // nothing below to hide
		}
		return err
	}
	defer unix.Close(pfd)
	if err := removeAllAt(pfd, target); err != nil {
		return fmt.Errorf("whiteout %q: %w", full, err)
	}
	if a.cfg.whiteout == WhiteoutOverlay {
		if err := unix.Mknodat(pfd, target, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("create overlay whiteout %q: %w", full, err)
		}
		a.stats.Inodes++
	}
	return nil
}

func (a *applier) opaque(dir string) error {
	pfd, err := a.openDir(dir, true, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	a.touch(dir)
	if a.cfg.whiteout == WhiteoutOverlay {
		if err := unix.Fsetxattr(pfd, overlayOpaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("mark %q opaque: %w", dir, err)
		}
		return nil
	}
	return a.removeUntouched(pfd, dir)
}

// removeUntouched deletes the lower content of an opaque directory: every
// descendant that this layer did not create.
func (a *applier) removeUntouched(fd int, rel string) error {
	names, err := readDirNames(fd)
	if err != nil {
		return fmt.Errorf("read %q: %w", rel, err)
	}
	for _, n := range names {
		p := path.Join(rel, n)
		if _, ok := a.touched[p]; !ok {
			if err := removeAllAt(fd, n); err != nil {
				return fmt.Errorf("remove %q under opaque directory: %w", p, err)
			}
			continue
		}
		st, ok, err := lstatAt(fd, n)
		if err != nil {
			return err
		}
		if !ok || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		cfd, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %q: %w", p, err)
		}
		err = a.removeUntouched(cfd, p)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) finishDirTimes(ctx context.Context) error {
	for name, t := range a.dirTimes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if name == "." {
			if err := setTimesAt(a.rootFd, ".", t); err != nil {
				return err
			}
			continue
		}
		// A later entry may have replaced the directory; skip what no
		// longer resolves to a directory, never fail on it.
		pfd, err := a.openDir(path.Dir(name), false, false)
		if err != nil {
			klog.V(4).InfoS("Skipping directory times", "path", name, "err", err)
			continue
		}
		st, ok, err := lstatAt(pfd, path.Base(name))
		if err == nil && ok && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = setTimesAt(pfd, path.Base(name), t)
		}
		unix.Close(pfd)
		if err != nil {
			return fmt.Errorf("set times of %q: %w", name, err)
		}
	}
	return nil
}

func times(hdr *tar.Header) dirTime {
	t := dirTime{atime: hdr.AccessTime, mtime: hdr.ModTime}
	if t.mtime.IsZero() {
		t.mtime = time.Unix(0, 0)
	}
	if t.atime.IsZero() {
		t.atime = t.mtime
	}
	return t
}

func isWhiteoutDevice(st unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

func copyCtx(ctx context.Context, dst io.Writer, src io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		nr, er := src.Read(buf)
		if nr > 0 {
			nw, ew := dst.Write(buf[:nr])
			n += int64(nw)
			if ew != nil {
				return n, ew
			}
			if nw != nr {
				return n, io.ErrShortWrite
			}
		}
		if er == io.EOF {
			return n, nil
		}
		if er != nil {
			return n, er
		}
	}
}
