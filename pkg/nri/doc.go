// Package nri is the bridge between the daemon's pod and container
// lifecycle and NRI plugins (the Node Resource Interface,
// github.com/containerd/nri): it relays every lifecycle event at the
// moments containerd and CRI-O do, applies the plugins' container
// adjustments to the OCI spec before the runtime creates the container
// and their resource changes before an update reaches it, synchronizes
// plugins that register with every existing pod and container, and
// carries out the updates and evictions plugins ask for.
//
// The controllers call it through API. Off is the implementation when
// NRI is disabled: every hook returns at once, so NRI off costs nothing.
package nri
