// Command cri-bench is a CRI load driver: it runs the same pod lifecycle
// (RunPodSandbox, CreateContainer, StartContainer, then StopContainer,
// RemoveContainer, StopPodSandbox, RemovePodSandbox) against any CRI v1
// endpoint at several levels of parallelism, and reports per-operation
// latency percentiles and the memory cost of the daemon and of each pod's
// runtime processes (shim, pause). It exists so that cri-runtimed and
// containerd's CRI plugin are measured with exactly the same requests on
// the same machine (docs/DESIGN.md, "Testing layers", item 4).
//
// With --scale it measures a full node instead: each endpoint of the
// comma-separated --endpoint list gets --pods pods of --containers
// containers (created, or started with --start) and --images images
// (tags library/scale:000... that test/bench/pushimages --scale-images
// pushes), then every call kubelet keeps making on such a node (list,
// status, stats and image calls) is timed --samples times, sample by
// sample and runtime by runtime, so that the runtimes share the machine's
// load alike. Each sample makes the calls in a new random order (the same
// on every runtime; --fixed-order keeps the table's): a call timed right
// after a large answer pays for the runtime's CPU gone idle while the
// client decoded it, and a fixed order would charge that to one call.
// --gap idles before each call, as kubelet's calls come seconds apart.
// Then the list calls are timed while --burst pods start at once, and
// the stop and removal of every pod. test/bench/scale.sh runs it against
// cri-runtimed and the containerd peer.
//
// It is a benchmark, not a test: it has no thresholds and fails only when
// the runtime returns an error. Everything it creates carries the label
// io.cri-bench/run and is removed on exit, on error and on Ctrl-C;
// --cleanup-only removes what an earlier, killed run left behind.
//
// Memory is read from /proc, so the driver must run on the node, as root:
//
//   - the daemon is --daemon-pid, else the process named --daemon-name,
//     else the process listening on the endpoint's unix socket;
//   - a pod's sandbox (pause) and container PIDs come from the "pid" field
//     of the verbose "info" JSON of PodSandboxStatus and ContainerStatus
//     (containerd's format; cri-runtimed writes the same field);
//   - the pod's runtime processes ("shim") are the ancestors of those PIDs
//     below the daemon, PID 1 and the driver's own ancestors, plus their
//     other descendants that are not container processes; whatever the
//     runtime's process layout, this is what the pod costs beyond the
//     workload itself.
//
// Both VmRSS and PSS (smaps_rollup) are reported: shims of one runtime
// share their text pages, so RSS summed over pods overstates the cost and
// PSS is the fairer per-pod number.
package main
