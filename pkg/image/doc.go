// Package image owns the node's images: the pull pipeline (resolve through
// hosts.toml, download layers concurrently into the content store, unpack
// them in order into snapshots named by chain ID), the image records kept in
// the metadata database, lookups by ID, tag or digest, removal and the
// garbage collection of blobs and snapshots no image references. OCI
// artifacts pull through the same pipeline into snapshots that image
// volumes mount (artifact.go).
//
// It mounts nothing: unpacking goes through the snapshotter's Apply.
package image
