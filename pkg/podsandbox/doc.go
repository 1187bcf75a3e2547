// Package podsandbox owns pod sandboxes: their records, their pinned
// network namespace, the files the pod's containers share (hostname,
// hosts, resolv.conf, /dev/shm), the pod's shim process and the sandbox
// (pause) container it runs, the pod's cgroup parent, and the monitor that
// follows the shim's events and notices when the shim dies.
//
// It knows nothing about images; containers are another package's, and
// reach the pod through the Pod type (its shim, its namespaces, its files).
package podsandbox
