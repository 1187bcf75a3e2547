// Package oci turns CRI configuration into OCI runtime specs.
//
// SandboxSpec builds the spec of a pod's pause process and ContainerSpec the
// spec of an application container, from the CRI messages kubelet sends
// (runtimeapi.PodSandboxConfig, runtimeapi.ContainerConfig), the image
// config, and the facts the sandbox controller knows about the running pod
// (SandboxInfo). The result is a *specs.Spec that runc can run once Save has
// written it as a bundle's config.json.
//
// Everything here is a pure function of its inputs with two deliberate
// exceptions, both reads:
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
//
// What callers still own: creating host paths that kubelet names in mounts
// (kubelet creates most; a missing host path makes runc fail), checking that
// the host source of a mount with HOST_TO_CONTAINER or BIDIRECTIONAL
// propagation is itself a slave/shared mount, clamping oom_score_adj, and
// choosing the cgroup driver (CgroupsPath builds both forms).
//
// Errors caused by the request itself wrap ErrInvalid and name the CRI field
// at fault, so pkg/server can map them to codes.InvalidArgument.
package oci
