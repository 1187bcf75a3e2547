package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

const checkPrefix = ".overlay-check-"

// OverlaySupported reports why overlayfs cannot back a snapshotter at root,
// or nil. It does what the snapshotter will do, in a scratch directory under
// root so the backing filesystem is the one tested: create whiteout devices
// and trusted.overlay xattrs directly in an upperdir (layer apply does),
// then mount an overlay and check that the whiteout hides the lower file
// and that the merged view is writable.
func OverlaySupported(root string) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", root, err)
	}
	dir, err := os.MkdirTemp(root, checkPrefix)
	if err != nil {
		return fmt.Errorf("create check directory: %w", err)
	}
	defer removeCheckDir(dir)

	p := func(s ...string) string { return filepath.Join(append([]string{dir}, s...)...) }
	for _, d := range []string{"lower", "upper", "work", "merged", "upper/opaque", "lower/opaque"} {
		if err := os.Mkdir(p(d), 0o700); err != nil {
			return err
		}
	}
	for _, f := range []string{"lower/gone", "lower/kept", "lower/opaque/hidden"} {
		if err := os.WriteFile(p(f), nil, 0o600); err != nil {
			return err
		}
	}
	if err := unix.Mknod(p("upper/gone"), unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("create whiteout device on backing filesystem: %w", err)
	}
	if err := unix.Lsetxattr(p("upper/opaque"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		return fmt.Errorf("set trusted.overlay.opaque on backing filesystem: %w", err)
	}
	opts := fmt.Sprintf("index=off,lowerdir=%s,upperdir=%s,workdir=%s", p("lower"), p("upper"), p("work"))
	if err := unix.Mount("overlay", p("merged"), "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay: %w", err)
	}
	defer UnmountAll(p("merged"))

	for _, f := range []string{"gone", "opaque/hidden"} {
		if _, err := os.Lstat(p("merged", f)); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("overlay does not honour %s whiteout (lstat: %v)", f, err)
		}
	}
	if _, err := os.Lstat(p("merged", "kept")); err != nil {
		return fmt.Errorf("overlay lost a lower file: %w", err)
	}
	if err := os.WriteFile(p("merged", "kept"), []byte("x"), 0o600); err != nil {
		return fmt.Errorf("copy-up in overlay: %w", err)
	}
	return nil
}

func removeCheckDir(dir string) error {
	if err := UnmountAll(filepath.Join(dir, "merged")); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// cleanupChecks removes check directories a crash left in root.
func cleanupChecks(root string) error {
	entries, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("list %s: %w", root, err)
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), checkPrefix) {
			if err := removeCheckDir(filepath.Join(root, e.Name())); err != nil {
				errs = append(errs, fmt.Errorf("remove overlay check leftover: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}
