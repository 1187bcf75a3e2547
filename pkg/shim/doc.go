// Package shim is the per-pod shim process and its client.
//
// The daemon starts one shim per pod (`cri-runtimed shim`, entered through
// Main). The shim runs in its own session, detached from the daemon, so a
// daemon restart never stops a container. It is the child subreaper of the
// OCI runtime (runc, crun) invocations it makes, reaps every process that
// ends up as its child, owns the containers' stdio (pipes or a console
// pty) and writes their output to CRI log files, and records every state
// transition durably in <state dir>/<container>/state.json before anyone
// hears of it.
//
// The API is Go's net/rpc (gob) over <state dir>/shim.sock, chosen over
// gRPC to keep the shim, which is multiplied by pods, small. Client wraps it
// with context-aware methods and maps error codes back to the sentinel
// errors of this package.
package shim
