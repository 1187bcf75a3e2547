package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot/layer"
)

// NewOverlay returns the overlayfs snapshotter. It fails with the reason
// when overlayfs cannot be used on root's filesystem (see OverlaySupported),
// so the caller can fall back to NewNative.
//
// Mount options carry absolute lowerdir paths. Numeric snapshot ids keep
// each path short, but a deep chain can still exceed the one-page limit of
// mount(2) data; MountAll then mounts through fsopen/fsconfig with one
// "lowerdir+" per layer (Linux 6.8+), which has no such limit. Callers must
// therefore assemble overlay mounts with MountAll rather than hand the
// options to another mounter.
func NewOverlay(ctx context.Context, root string, db *bolt.DB, opts ...Option) (Snapshotter, error) {
	// overlayfs separates options with "," and lowerdirs with ":".
	if strings.ContainsAny(root, ",:") {
		return nil, fmt.Errorf("overlayfs snapshotter root %q must not contain ',' or ':'", root)
	}
	if err := OverlaySupported(root); err != nil {
		return nil, fmt.Errorf("overlayfs snapshotter on %s: %w", root, err)
	}
	return newSnapshotter(ctx, root, db, overlayDriver{}, opts)
}

type overlayDriver struct{}

func (overlayDriver) name() string { return "overlayfs" }

func (overlayDriver) populate(_ context.Context, dir string, view bool, _ []string) error {
	if view {
		return nil
	}
	return os.Mkdir(filepath.Join(dir, "work"), 0o700)
}

func (overlayDriver) mounts(fs string, view bool, parents []string) ([]Mount, error) {
	switch {
	case len(parents) == 0:
		return []Mount{bindMount(fs, view)}, nil
	case view && len(parents) == 1:
		// A read-only overlay needs two lowers; one is just a bind.
		return []Mount{bindMount(parents[0], true)}, nil
	case view:
		return []Mount{{
			Type:    "overlay",
			Source:  "overlay",
			Options: []string{"ro", "index=off", "lowerdir=" + strings.Join(parents, ":")},
		}}, nil
	}
	return []Mount{{
		Type:   "overlay",
		Source: "overlay",
		Options: []string{
			"index=off",
			"workdir=" + filepath.Join(filepath.Dir(fs), "work"),
			"upperdir=" + fs,
			"lowerdir=" + strings.Join(parents, ":"),
		},
	}}, nil
}

// A base layer has nothing below it to hide, and overlay whiteout devices
// in it would show up as stray device nodes in a single-layer bind view.
func (overlayDriver) whiteoutMode(hasParent bool) layer.WhiteoutMode {
	if hasParent {
		return layer.WhiteoutOverlay
	}
	return layer.WhiteoutDelete
}

func bindMount(source string, ro bool) Mount {
	mode := "rw"
	if ro {
		mode = "ro"
	}
	return Mount{Type: "bind", Source: source, Options: []string{"rbind", mode}}
}
