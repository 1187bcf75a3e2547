// Package preflight owns `cri-runtimed check`: what the node needs for
// the daemon to run with a given config, each need checked for real
// (a test mount, a syscall, the runtime run once) and explained in one
// line. A check fails only when the daemon cannot run or cannot run any
// pod; what degrades it (no overlay, no pod network yet, no user
// namespaces) is a warning, and what is only worth knowing (CRIU) is
// information.
//
// It reads and probes; the only things it writes are a scratch file in
// the state and root directories and the overlay test mount, both
// removed at once.
package preflight
