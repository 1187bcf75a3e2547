// Package userns owns what pods with a user namespace need on the host
// side: idmapped mounts (open_tree + mount_setattr(MOUNT_ATTR_IDMAP)), so
// that a root filesystem owned by host root appears owned by the pod's
// root inside its user namespace, without copying or chowning anything.
package userns
