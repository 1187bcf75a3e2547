// Package cni connects pod sandboxes to the node's pod network through CNI
// plugins, driven the way kubelet, containerd and CRI-O drive them, so that
// any CNI plugin written for Kubernetes works unchanged.
//
// # Configuration
//
// The network is the first configuration file, in file-name order, in the
// conf dir (/etc/cni/net.d) with one of the extensions .conflist, .conf or
// .json; a single-plugin .conf/.json file is wrapped into a one-plugin list
// the way libcni's ConfListFromConf does. File-name order across all three
// extensions (rather than .conflist files first) is what kubelet, containerd
// and CRI-O do, so a node's "10-foo.conf" wins over "99-bar.conflist" no
// matter which runtime reads the directory. Hidden files are skipped: they
// are editors' and installers' temporary files. A malformed first file is
// not skipped in favour of a later one: that would silently put pods on a
// network the operator did not choose; instead Status reports the file and
// the parse error and Setup refuses to run.
//
// The conf dir is polled (Options.PollInterval, 1s) for a change in the
// names, sizes, inodes and times of its config files, because network
// DaemonSets install their config after the runtime starts and kubelet
// waits for NetworkReady before it starts any pod. Polling needs no
// dependency, survives the directory being created or replaced later (an
// inotify watch would not) and costs one readdir a second. While no valid
// config is loaded the directory is re-read on every tick, which also picks
// up plugin binaries installed after their config.
//
// # Plugin calls
//
// Every plugin execution is bounded by Options.PluginTimeout and runs in a
// process group of its own that is killed as a whole on timeout, so neither
// a hung plugin nor a child it left holding its stdout can hang a CRI call.
//
// ADD passes CNI_ARGS "IgnoreUnknown=1;K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;
// K8S_POD_INFRA_CONTAINER_ID=..;K8S_POD_UID=..", interface eth0 and the
// runtime config capabilities kubelet defined: portMappings, bandwidth,
// ipRanges (from UpdatePodCIDR), dns and cgroupPath. libcni passes each one
// only to plugins that declare it in "capabilities". A failed ADD is
// followed at once by a DEL with the same arguments so that no address or
// host-side interface leaks, and the returned error carries the plugin's
// own message.
//
// # Teardown after a restart
//
// libcni caches, per pod and interface, the config list, arguments and
// result of every successful ADD (Options.CacheDir). Teardown runs DEL with
// that cached config and those cached arguments, not with whatever config
// is current: the plugins that set the pod up are the ones that must take
// it down (portmap needs the same port mappings, host-local the same data
// dir), even if the conf dir changed or emptied since, or the daemon
// crashed in between. Only when no cache entry exists (ADD never finished,
// or the cache was lost) is the current config used, and when there is
// none either there is nothing to tear down. DEL is idempotent as the CNI
// spec requires, so Teardown may be repeated until it succeeds.
//
// # Loopback
//
// The loopback plugin is not run by default: pkg/netns brings lo up when it
// creates the namespace, which is all that plugin does, and skipping it
// saves a fork and exec per pod. Options.Loopback runs it (ADD for "lo"
// before the network, DEL after) for callers whose namespaces come from
// elsewhere.
package cni
