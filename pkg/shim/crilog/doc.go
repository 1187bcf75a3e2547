// Package crilog writes and reads the CRI container log format that kubelet
// consumes: one record per line,
//
//	<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>\n
//
// where F marks the end of a line and P a partial chunk that continues in the
// next record of the same stream. The shim writes these files; tests and the
// daemon read them back with Parse and Reader.
package crilog
