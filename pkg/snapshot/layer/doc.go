// Package layer owns unpacking one uncompressed OCI image layer (a tar
// stream) into a directory, converting OCI whiteouts into either overlayfs
// upperdir markers or plain deletions.
//
// Layer content is hostile input. Every filesystem operation is made relative
// to a directory file descriptor that was resolved with openat2(2)
// RESOLVE_BENEATH, and the final path component is never followed, so no
// entry can create, modify, chown or chmod anything outside the root: not by
// "..", not by an absolute or relative symlink extracted earlier, not by a
// hardlink. Such entries are refused with an error wrapping ErrUnsafePath.
//
// Symlinked parents are followed only when they resolve beneath the root
// without help from an absolute target: "lib -> ../usr/lib" works,
// "lib -> /usr/lib" followed by "lib/x" is refused. Image builders name
// entries by their real path, so this only rejects crafted layers.
// Whiteouts never traverse a symlink at all, since a whiteout always names a
// path in the lower layers' real namespace.
//
// Apply needs Linux 5.6 or newer (openat2).
package layer
