// Package meta owns the daemon's bbolt metadata database (meta.db): the
// image records now, and the sandbox, container and user-namespace records
// later. Other packages that keep their own buckets in the same file (the
// snapshotter) get the raw handle from Bolt, and Update for writes that
// may share the record writes' group commit.
//
// Opening takes bbolt's file lock with a short timeout, so a second daemon
// on the same root fails at once with ErrLocked instead of hanging.
package meta
