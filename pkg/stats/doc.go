// Package stats reads the resource usage of containers and pod sandboxes
// for the CRI stats RPCs (ContainerStats, ListContainerStats,
// PodSandboxStats, ListPodSandboxStats and their streaming forms) and for
// the cAdvisor-style metrics kubelet asks the runtime for
// (ListMetricDescriptors, ListPodSandboxMetrics).
//
// It owns four readers and nothing else:
//
//   - Collector.Cgroup reads a cgroup (CPU, memory, pids, PSI), cgroup v1
//     or v2 as the host mounts them. kubelet asks for the stats of every
//     container every few seconds, so a reading costs as little as it
//     can: the caller names the Figures it reports and only their files
//     are read, the files of the stats calls stay open per key between
//     readings (opening a cgroup file walks its path through kernfs), the
//     limits read are kept until the daemon says it changed them
//     (RefreshLimits) or a TTL passes, and nothing walks a directory tree. The files are parsed here rather
//     than through github.com/containerd/cgroups, which reads every file
//     of every controller by path on each call. CRI asks for CPU usage in
//     nano-cores, a rate, while the kernel only keeps a cumulative
//     counter, so the Collector remembers the previous sample per
//     caller-chosen key (a container or sandbox ID) and derives the rate
//     from two samples.
//   - Network reads per-interface counters inside a pod's network
//     namespace.
//   - Collector.LayerUsage reports a writable layer directory's usage.
//     Walking a directory tree costs time proportional to its size, so it
//     never happens on the caller's goroutine: a background walker
//     measures one layer at a time, when asked and the last measurement is
//     older than a TTL, and callers get the last measurement.
//   - MetricDescriptors and ContainerMetrics turn those readings into the
//     CRI metric form with the metric names and labels cAdvisor used, so
//     dashboards written against cAdvisor keep working.
//
// The package knows nothing about sandboxes, containers or their records:
// pkg/server (or the controllers below it) passes the cgroup path from the
// OCI spec, the netns pin path and the writable layer directory, and calls
// Forget when a container or sandbox is removed (or Retain with the live
// set after a restart) so that cached samples and open files do not
// accumulate, RefreshLimits when it updates one's resources, and Close
// when it stops. It also builds a container's stats in the CRI form
// (ContainerStats, CgroupStats.PodUsage).
//
// Everything here is read-only with respect to the system: it never
// creates, moves into or removes cgroups (only tests do), and entering a
// network namespace happens on a dedicated locked thread through pkg/netns.
package stats
