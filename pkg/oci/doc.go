// Package oci turns CRI configuration into OCI runtime specs.
//
// SandboxSpec builds the spec of a pod's pause process and ContainerSpec the
// spec of an application container, from the CRI messages kubelet sends
// (runtimeapi.PodSandboxConfig, runtimeapi.ContainerConfig), the image
// config, and the facts the sandbox controller knows about the running pod
// (SandboxInfo). The result is a *specs.Spec that runc can run once Save has
// written it as a bundle's config.json.
//
// Security settings follow the CRI security context: capabilities (with
// "ALL" and ambient capabilities), privileged mode, read-only rootfs,
// no_new_privs, masked and read-only paths, seccomp (RuntimeDefault is the
// profile embedded by package seccomp, resolved against the container's
// final capability set; Localhost reads a profile file from the node;
// Unconfined and unset mean no filter; the pod's profile is the default
// for its containers), AppArmor (only when the kernel has it enabled;
// a Localhost profile on a node without AppArmor is refused), SELinux
// labels (only when SELinux is enabled) and namespaced sysctls.
// ResourcesFromCRI and ValidateResources apply the same resource rules to
// UpdateContainerResources.
//
// Everything here is a pure function of its inputs with these deliberate
// exceptions, all reads:
//
//   - ResolveUser reads /etc/passwd and /etc/group of the container rootfs.
//     The rootfs is hostile (it came from an image), so the files are opened
//     with the rootfs as the root of path resolution (filepath-securejoin's
//     pathrs-lite): a symlink such as /etc/passwd -> /etc/shadow resolves
//     inside the rootfs, never on the host. Only regular files are read, and
//     at most 10 MiB of each.
//   - ContainerSpec stats the host device nodes named in CRI devices (and,
//     for privileged containers, lists host /dev) to learn their type and
//     major/minor numbers.
//   - ContainerSpec and SandboxSpec read a Localhost seccomp profile (a
//     regular file of at most 4 MiB at the absolute path kubelet names).
//   - AppArmorEnabled, SELinuxEnabled and CgroupV2 look at /sys once per
//     process.
//
// What callers still own: creating host paths that kubelet names in mounts
// (kubelet creates most; a missing host path makes runc fail), checking that
// the host source of a mount with HOST_TO_CONTAINER or BIDIRECTIONAL
// propagation is itself a slave/shared mount, clamping oom_score_adj, and
// the cgroups path (pkg/cgroups' driver builds it; WithCgroupsPath sets it).
//
// Errors caused by the request itself wrap ErrInvalid and name the CRI field
// at fault, so pkg/server can map them to codes.InvalidArgument.
package oci
