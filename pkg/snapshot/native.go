package snapshot

import (
	"context"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot/layer"
)

// NewNative returns the native snapshotter: every active snapshot is a full
// copy of its parent, mounted with a bind mount. It works on any
// filesystem, at the cost of space and Prepare time.
func NewNative(ctx context.Context, root string, db *bolt.DB, opts ...Option) (Snapshotter, error) {
	return newSnapshotter(ctx, root, db, nativeDriver{}, opts)
}

type nativeDriver struct{}

func (nativeDriver) name() string { return "native" }

// A view needs no copy: the committed parent is immutable and is bound
// read-only.
func (nativeDriver) populate(ctx context.Context, dir string, view bool, parents []string) error {
	if view || len(parents) == 0 {
		return nil
	}
	return copyTree(ctx, parents[0], filepath.Join(dir, "fs"))
}

func (nativeDriver) mounts(fs string, view bool, parents []string) ([]Mount, error) {
	if view && len(parents) > 0 {
		return []Mount{bindMount(parents[0], true)}, nil
	}
	return []Mount{bindMount(fs, view)}, nil
}

func (nativeDriver) whiteoutMode(bool) layer.WhiteoutMode { return layer.WhiteoutDelete }
