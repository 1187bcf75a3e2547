// Package cdi resolves Container Device Interface devices
// (tags.cncf.io/container-device-interface) for containers: the
// qualified names a container asks for (ContainerConfig.CDI_devices and
// the cdi.k8s.io/ annotations device plugins set) are looked up in the CDI
// specs of the configured directories and their edits (device nodes and
// their cgroup access, environment, mounts, hooks) applied to the
// container's OCI spec.
//
// The spec directories are trusted like the daemon's own config: a spec
// can add hooks that the OCI runtime runs as root on the host. They are
// watched, so a spec a driver writes or removes takes effect at the next
// container creation without a restart.
package cdi
