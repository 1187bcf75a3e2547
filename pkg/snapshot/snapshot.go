package snapshot

import (
	"context"
	"errors"
	"io"
	"time"
)

// Sentinel errors; callers test them with errors.Is.
var (
	ErrNotFound      = errors.New("snapshot not found")
	ErrAlreadyExists = errors.New("snapshot already exists")
	// ErrInUse is returned when removing a snapshot that still has children.
	ErrInUse = errors.New("snapshot in use")
	// ErrInvalidKind is returned for an operation that needs the other kind
	// (committing a committed snapshot, applying to a committed one...).
	ErrInvalidKind = errors.New("invalid snapshot kind")
)

// Kind tells committed snapshots from active (writable) ones.
type Kind int

const (
	KindActive Kind = iota + 1
	KindCommitted
)

func (k Kind) String() string {
	switch k {
	case KindActive:
		return "active"
	case KindCommitted:
		return "committed"
	}
	return "unknown"
}

// Info describes one snapshot.
type Info struct {
	Key     string
	Parent  string // key of the parent committed snapshot, "" for a base layer
	Kind    Kind
	Created time.Time
	Labels  map[string]string
}

// Usage is the disk usage of a snapshot's own directory (not its parents).
type Usage struct {
	Size   int64 // bytes
	Inodes int64
}

// Mount is one mount needed to assemble a snapshot at a target directory.
type Mount struct {
	Type    string // "overlay" or "bind"
	Source  string
	Options []string // e.g. lowerdir=...,upperdir=...,workdir=... or rbind,ro
}

// Snapshotter is implemented by the overlayfs and native snapshotters.
type Snapshotter interface {
	// Name is "overlayfs" or "native".
	Name() string
	// Root is the directory that holds this snapshotter's data; ImageFsInfo
	// reports it as the image filesystem's mountpoint.
	Root() string

	Stat(ctx context.Context, key string) (Info, error)
	// Prepare creates an active snapshot on top of the committed parent
	// ("" for none) and returns the mounts to assemble it.
	Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error)
	// View is like Prepare but the returned mounts are read-only.
	View(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error)
	// Mounts returns the mounts of an existing active snapshot.
	Mounts(ctx context.Context, key string) ([]Mount, error)
	// Commit turns the active snapshot key into the committed snapshot name.
	// Committing onto an existing name returns ErrAlreadyExists (the caller
	// then removes its active snapshot and uses the existing one).
	Commit(ctx context.Context, name, key string, opts ...Opt) error
	// Remove deletes a snapshot; ErrInUse if it has children, ErrNotFound
	// if it does not exist.
	Remove(ctx context.Context, key string) error
	Walk(ctx context.Context, fn func(Info) error) error
	// Usage of one snapshot; for committed snapshots it is computed once at
	// commit and stored.
	Usage(ctx context.Context, key string) (Usage, error)
	// CommittedUsage is the usage of all committed snapshots together (the
	// images' unpacked layers), kept as snapshots are committed and
	// removed: reading it costs nothing.
	CommittedUsage() Usage

	// Apply unpacks an uncompressed OCI layer tar stream into the active
	// snapshot key, converting OCI whiteouts into this snapshotter's
	// representation (overlay whiteouts and opaque xattrs, or deletions in
	// the native copy). Nothing is ever written outside the snapshot: path
	// escapes are refused with an error wrapping layer.ErrUnsafePath.
	Apply(ctx context.Context, key string, r io.Reader) (Usage, error)

	// Cleanup removes directories without a metadata record (left by a
	// crash).
	Cleanup(ctx context.Context) error
	Close() error
}

// Opt sets optional snapshot attributes.
type Opt func(*Info)

// WithLabels attaches labels to the snapshot's record.
func WithLabels(labels map[string]string) Opt {
	return func(i *Info) {
		if i.Labels == nil {
			i.Labels = map[string]string{}
		}
		for k, v := range labels {
			i.Labels[k] = v
		}
	}
}
