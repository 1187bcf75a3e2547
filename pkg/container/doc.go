// Package container owns containers: their records and in-memory state,
// their root filesystem (an active snapshot of the image, mounted in the
// bundle), their OCI bundle, and their lifecycle through the pod's shim —
// create, start, stop, remove, status, exec, log reopening — and the
// state changes the shim reports.
package container
