// Package kubeletnode runs a real kubelet in standalone mode (no API
// server) against a CRI endpoint, for the kubelet end-to-end suite
// (test/e2e/kubelet) and the kubelet pod-start benchmark
// (test/bench/kubelet-podstart).
//
// The kubelet is a binary built from the k8s.io/kubernetes module
// (`make kubelet`, test/tools/kubernetes). It runs static pods from a
// manifest directory that AddPod and RemovePod write, and is observed the
// way an operator or a monitoring agent would: its read-only port on
// 127.0.0.1 (/pods with the statuses of static pods, /stats/summary,
// /metrics) and its log.
//
// A kubelet is a node-wide program: it binds fixed ports, owns the
// kubepods cgroups and the device-plugin socket in /var/lib/kubelet, sets
// kernel tunables (vm.overcommit_memory, kernel.panic...) and adds
// iptables chains. Only one can run on a host, so New checks that none
// runs (and fails naming what is taken), and Close undoes what the kubelet
// did to the host: cgroups it created, the sysctls it changed, its
// iptables chains, /var/lib/kubelet/device-plugins and the
// /var/log/containers links of its pods, when they were not there before.
// Everything else (root dir, pod logs, manifests, config, log) lives
// under the node's own directory.
package kubeletnode
