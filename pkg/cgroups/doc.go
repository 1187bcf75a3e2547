// Package cgroups owns where pods and containers live in the node's cgroup
// tree and how those cgroups are named, created and removed.
//
// Driver is the one interface for it, with two implementations chosen
// once when the daemon starts (New, from runtime.cgroup_driver; empty picks
// systemd where systemd runs the node, as kubelet's default expects):
//
//   - cgroupfs: a pod's cgroup is a path ("/kubepods/burstable/pod<uid>",
//     or "/cri-runtimed/<pod id>" for a pod whose config names none);
//     container cgroups are "<parent>/<id>". runc creates the directories
//     and removes the containers'; RemovePod removes a pod cgroup the
//     daemon made, in every mounted hierarchy.
//   - systemd: a pod's cgroup is a slice ("kubepods-burstable-pod<uid>.slice"
//     from kubelet, "cri_runtimed-pod<id>.slice" for a pod without one);
//     containers are scopes "<slice>:cri-runtimed:<id>" that runc creates
//     through systemd (RuntimeArgs: --systemd-cgroup, given to create,
//     update and delete alike, so resource updates go through systemd and
//     survive a daemon-reload). CreatePod and RemovePod start and stop the
//     daemon's own pod slices as transient units over D-Bus.
//
// Kubelet's pod cgroups belong to kubelet: the drivers check them
// (ErrInvalidParent when they are the other driver's form) and never create
// or remove them. UpdatePod sets a pod cgroup's CPU weight, CPU quota and
// memory limit, of kubelet's pods as of the daemon's own, for
// UpdatePodSandboxResources: kubelet asks the runtime to apply a pod
// resize there too (since 1.37 before it writes the same values itself).
//
// Besides the driver the package knows the host's layout (Layout: v1,
// hybrid or unified, and where each hierarchy is mounted) and turns a
// stored cgroups path of either form into its directory (Resolve), for the
// readers that need no driver: the shim's OOM counter and pkg/stats.
package cgroups
