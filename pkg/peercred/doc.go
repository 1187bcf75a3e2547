// Package peercred checks who is at the other end of a unix socket, by
// SO_PEERCRED: the kernel's word, not the peer's. The daemon's private
// sockets (each shim's, the admin socket) serve only processes of the
// daemon's own user, on top of their file mode, so that a mode changed by
// hand or a directory that lets others through does not open them.
package peercred
