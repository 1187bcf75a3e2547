// Package netns creates, opens and removes the network namespaces that pod
// sandboxes run in.
//
// A network namespace lives only as long as something refers to it: a
// process, an open file descriptor or a mount of its nsfs file. Pods need
// theirs to exist before any process runs in them (CNI configures it first)
// and to survive a daemon restart, so each one is pinned by a bind mount of
// /proc/<pid>/task/<tid>/ns/net onto an empty file in a pin directory
// (/run/cri-runtimed/netns on a node). The pin's path is what the rest of the
// daemon stores and hands to CNI and to the OCI spec.
//
// Entering a namespace changes the state of one OS thread, not of a
// goroutine, and the Go scheduler moves goroutines between threads. Every
// operation that enters a namespace therefore runs on a goroutine of its own
// with its thread locked, and switches the thread back to the namespace it
// came from before unlocking it. If switching back fails the thread stays
// locked as the goroutine ends and the Go runtime discards it, so no other
// goroutine can ever run in the wrong namespace. The caller's own thread
// never changes namespace.
//
// Removal is idempotent: a pin that is already gone, or a file that was
// never mounted (a crash between creating the file and mounting it), is
// removed without error, so recovery can call Remove on whatever List
// returns that no sandbox record claims.
package netns
