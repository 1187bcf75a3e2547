// Package shimtest builds OCI bundles with a busybox rootfs for the shim's
// tests, which run as root against real runc and crun.
package shimtest
