package content

import (
	"errors"
	"time"

	digest "github.com/opencontainers/go-digest"
)

var (
	ErrNotFound = errors.New("content not found")
	// ErrDigestMismatch / ErrSizeMismatch: committed bytes did not match the
	// expected descriptor; the ingest is discarded.
	ErrDigestMismatch = errors.New("digest mismatch")
	ErrSizeMismatch   = errors.New("size mismatch")
	// ErrExists is returned by Writer when the blob is already committed, so
	// the caller can skip the download.
	ErrExists = errors.New("content already exists")
	// ErrInvalidDigest: a digest string failed validation; it is never used
	// to build a path.
	ErrInvalidDigest = errors.New("invalid digest")
	// ErrTooLarge: ReadAll refused a blob above the caller's limit.
	ErrTooLarge = errors.New("content too large")
)

// Info describes a committed blob.
type Info struct {
	Digest    digest.Digest
	Size      int64
	CreatedAt time.Time
}

// IngestStatus describes an ingest in progress.
type IngestStatus struct {
	Ref       string
	Offset    int64 // bytes already written
	Expected  digest.Digest
	Total     int64
	UpdatedAt time.Time
}
