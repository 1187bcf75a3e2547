// Package checkpoint owns container checkpoints: whether CRIU can run on
// this node (probed once at daemon start, the answer and CRIU's own words
// kept for Status and for every refusal), and the checkpoint archive, in
// the layout CRI-O and containerd write and `checkpointctl` reads:
//
//	checkpoint/        CRIU's image files (runc checkpoint --image-path)
//	config.dump        the CRI metadata: names, image, rootfs image, the
//	                   container's CRI config
//	spec.dump          the container's OCI runtime spec
//	rootfs-diff.tar    the container's writable-layer changes
//	deleted.files      paths deleted from the image's filesystem
//	bind.mounts        the container's bind mounts (destination, source)
//	container.log      the container's CRI log at the time of checkpoint
//	status.dump        the container's state when checkpointed
//
// A checkpoint is taken by runc (through the pod's shim, pkg/shim) into a
// directory; this package turns that directory and the container's
// metadata into the archive and back. It knows the archive's format, not
// the controllers: pkg/container calls it.
package checkpoint
