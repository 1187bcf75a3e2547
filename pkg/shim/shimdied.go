package shim

// EventShimDied is not sent by a shim: the daemon synthesizes it when a
// pod's shim process is gone, for everything that shim ran.
const EventShimDied EventType = "ShimDied"
