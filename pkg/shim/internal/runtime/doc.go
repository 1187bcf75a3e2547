// Package runtime drives an OCI runtime binary (runc, crun) through the CLI
// subset both implement. Every invocation is started through the shim's
// reaper and waited for there, and errors carry the runtime's own message
// taken from its JSON log, because that is what a user needs to see (for
// example `exec: "nope": executable file not found in $PATH`).
package runtime
