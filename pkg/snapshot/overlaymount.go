package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// errNoLowerdirPlus: the kernel has no "lowerdir+" overlay parameter
// (before Linux 6.8), so fsconfig cannot take one lower directory at a
// time.
var errNoLowerdirPlus = errors.New("the kernel refused overlay's lowerdir+ (Linux 6.8+)")

// mountOverlay mounts an overlay with options data. mount(2) takes its
// options in one page, which absolute lowerdir paths of about 90 layers
// overflow. Longer ones go, where the kernel has it (6.8+), through
// fsconfig with one "lowerdir+" per layer, which has no such limit; on
// older kernels the directories are given relative to their common parent
// by a thread that changed into it (what containerd does too), which fits
// some hundred layers in the page.
func mountOverlay(target string, flags uintptr, data []string) error {
	opts := strings.Join(data, ",")
	if len(opts) < os.Getpagesize() {
		return unix.Mount("overlay", target, "overlay", flags, opts)
	}
	err := mountOverlayFsconfig(target, flags, data)
	if !errors.Is(err, errNoLowerdirPlus) {
		return err
	}
	return mountOverlayRelative(target, flags, data)
}

// overlayPathKeys are the overlay options whose values are directories.
var overlayPathKeys = map[string]bool{"lowerdir": true, "upperdir": true, "workdir": true}

// mountOverlayRelative mounts the overlay with its directories relative
// to their deepest common parent, from a thread whose working directory
// is that parent. target must be absolute.
func mountOverlayRelative(target string, flags uintptr, data []string) error {
	if !filepath.IsAbs(target) {
		return fmt.Errorf("overlay target %q is not absolute", target)
	}
	dir, rel := relativeOverlayOptions(data)
	opts := strings.Join(rel, ",")
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("overlay options are %d bytes even relative to %s, over mount(2)'s one-page limit, and the kernel has no lowerdir+ (Linux 6.8+): too many layers", len(opts), dir)
	}
	errc := make(chan error, 1)
	go func() {
		// The thread gets its own working directory and is never handed
		// back to the scheduler (no UnlockOSThread): it ends with this
		// goroutine, so no other goroutine ever runs in that directory.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare the working directory: %w", err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- fmt.Errorf("change into %s: %w", dir, err)
			return
		}
		errc <- unix.Mount("overlay", target, "overlay", flags, opts)
	}()
	return <-errc
}

// relativeOverlayOptions returns the deepest directory holding every
// directory of the overlay options, and the options with those
// directories relative to it.
func relativeOverlayOptions(data []string) (string, []string) {
	var paths []string
	for _, o := range data {
		key, val, _ := strings.Cut(o, "=")
		if overlayPathKeys[key] {
			paths = append(paths, strings.Split(val, ":")...)
		}
	}
	common := commonDir(paths)
	out := make([]string, 0, len(data))
	for _, o := range data {
		key, val, _ := strings.Cut(o, "=")
		if !overlayPathKeys[key] {
			out = append(out, o)
			continue
		}
		dirs := strings.Split(val, ":")
		for i, d := range dirs {
			if r, err := filepath.Rel(common, d); err == nil {
				dirs[i] = r
			}
		}
		out = append(out, key+"="+strings.Join(dirs, ":"))
	}
	return common, out
}

// commonDir is the deepest directory that is an ancestor of (or equal to)
// every path; paths are absolute and clean.
func commonDir(paths []string) string {
	if len(paths) == 0 {
		return "/"
	}
	common := filepath.Dir(paths[0])
	for _, p := range paths {
		for common != "/" && p != common && !strings.HasPrefix(p, common+"/") {
			common = filepath.Dir(common)
		}
	}
	return common
}
