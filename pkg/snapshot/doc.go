// Package snapshot owns the filesystem snapshots that image layers are
// unpacked into and that container root filesystems are made from.
//
// A snapshot is either committed (an immutable, unpacked image layer, named by
// its chain ID so a layer shared between images is stored once) or active (a
// writable snapshot on top of a committed parent: a layer being unpacked, or
// a container's rootfs). Two snapshotters implement the same interface:
// overlayfs (the default) and native (full copies, for filesystems where
// overlay cannot be mounted).
//
// Metadata lives in a bucket of the daemon's bbolt database and is written
// before a directory is created, and a directory is renamed out of the way
// before its record is deleted, so Cleanup after a crash can remove whatever
// directory has no record.
//
// On disk, root/snapshots/<id>/fs is a snapshot's content (the overlay
// upperdir, or the full native copy) and root/snapshots/<id>/work the
// overlay workdir; ids are small integers so lowerdir options stay short.
// Directories are assembled as "new-<id>" and renamed into place, and
// renamed to "rm-<id>" before removal. Callers unmount a snapshot before
// removing it: the native snapshotter's mount is a bind of fs itself.
// Mounts are assembled with MountAll, which also handles overlay option
// strings longer than mount(2) accepts.
package snapshot
