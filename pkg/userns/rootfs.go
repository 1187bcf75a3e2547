package userns

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
)

// MountRootfs assembles a snapshot's mounts at target so that the
// pod's user namespace sees the image's files as its own. overlayfs cannot
// be idmapped itself, but accepts idmapped lower layers: each lower
// directory gets an idmapped bind under scratch, and the overlay is built
// from those. The upper and work directories stay plain (overlay writes
// into them as the mounter, host root, which an idmapped mount could not
// represent) and are given to the pod's root instead: they are the
// container's own and fresh.
func MountRootfs(mounts []snapshot.Mount, target, scratch string, uids, gids []specs.LinuxIDMapping) error {
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return err
	}
	n := 0
	idmap := func(src string) (string, error) {
		dst := filepath.Join(scratch, strconv.Itoa(n))
		n++
		if err := os.MkdirAll(dst, 0o700); err != nil {
			return "", err
		}
		if err := IDMappedBind(src, dst, uids, gids); err != nil {
			return "", err
		}
		return dst, nil
	}
	var out []snapshot.Mount
	for _, m := range mounts {
		switch m.Type {
		case "bind":
			src, err := idmap(m.Source)
			if err != nil {
				return err
			}
			m.Source = src
		case "overlay":
			opts := make([]string, 0, len(m.Options))
			var upper, work string
			for _, o := range m.Options {
				switch {
				case strings.HasPrefix(o, "lowerdir="):
					var dirs []string
					for _, d := range strings.Split(strings.TrimPrefix(o, "lowerdir="), ":") {
						dst, err := idmap(d)
						if err != nil {
							return err
						}
						dirs = append(dirs, dst)
					}
					opts = append(opts, "lowerdir="+strings.Join(dirs, ":"))
				case strings.HasPrefix(o, "upperdir="):
					upper = strings.TrimPrefix(o, "upperdir=")
				case strings.HasPrefix(o, "workdir="):
					work = strings.TrimPrefix(o, "workdir=")
				default:
					opts = append(opts, o)
				}
			}
			if upper != "" {
				for _, d := range []string{upper, work} {
					if err := os.Lchown(d, int(uids[0].HostID), int(gids[0].HostID)); err != nil {
						return fmt.Errorf("idmap rootfs: chown %s: %w", d, err)
					}
				}
				opts = append(opts, "upperdir="+upper, "workdir="+work)
			}
			m.Options = opts
		default:
			return fmt.Errorf("idmap rootfs: cannot idmap a %q mount", m.Type)
		}
		out = append(out, m)
	}
	return snapshot.MountAll(out, target)
}

// UnmountRootfs undoes MountRootfs; it is idempotent.
func UnmountRootfs(target, scratch string) error {
	if err := snapshot.UnmountAll(target); err != nil {
		return err
	}
	entries, err := os.ReadDir(scratch)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := snapshot.UnmountAll(filepath.Join(scratch, e.Name())); err != nil {
			return err
		}
	}
	return os.RemoveAll(scratch)
}
