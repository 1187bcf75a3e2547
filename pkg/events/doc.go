// Package events owns the fan-out of lifecycle events to subscribers
// (kubelet's evented PLEG through GetContainerEvents): every subscriber
// gets every event in order, and a subscriber that cannot keep up is cut
// off instead of slowing the runtime down.
package events
