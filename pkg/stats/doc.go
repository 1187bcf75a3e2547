// Package stats reads the resource usage of containers and pod sandboxes
// for the CRI stats RPCs (ContainerStats, ListContainerStats,
// PodSandboxStats, ListPodSandboxStats and their streaming forms) and for
// the cAdvisor-style metrics kubelet asks the runtime for
// (ListMetricDescriptors, ListPodSandboxMetrics).
//
// It owns four readers and nothing else:
//
//   - Collector.Cgroup reads a cgroup (CPU, memory, pids, PSI) through
//     github.com/containerd/cgroups/v3, cgroup v1 or v2 as the host mounts
//     them. CRI asks for CPU usage in nano-cores, a rate, while the kernel
//     only keeps a cumulative counter, so the Collector remembers the
//     previous sample per caller-chosen key (a container or sandbox ID) and
//     derives the rate from two samples.
//   - Network reads per-interface counters inside a pod's network
//     namespace.
//   - Collector.DirUsage measures a writable layer directory. Walking a
//     directory tree costs time proportional to its size, so results are
//     cached per key for a few seconds: kubelet polls every container's
//     stats in one RPC and that RPC must stay fast with a hundred
//     containers.
//   - MetricDescriptors and ContainerMetrics turn those readings into the
//     CRI metric form with the metric names and labels cAdvisor used, so
//     dashboards written against cAdvisor keep working.
//
// The package knows nothing about sandboxes, containers or their records:
// pkg/server (or the controllers below it) passes the cgroup path from the
// OCI spec, the netns pin path and the writable layer directory, and calls
// Forget when a container or sandbox is removed (or Retain with the live
// set after a restart) so that cached samples do not accumulate.
//
// Everything here is read-only with respect to the system: it never
// creates, moves into or removes cgroups (only tests do), and entering a
// network namespace happens on a dedicated locked thread through pkg/netns.
package stats
