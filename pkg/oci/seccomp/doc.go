// Package seccomp holds cri-runtimed's RuntimeDefault seccomp profile and
// turns seccomp profiles into the OCI runtime-spec form runc loads.
//
// The default profile is data, not code: default.json, embedded into the
// binary, is an OCI LinuxSeccomp document whose rules may carry three
// extra keys that an OCI decoder ignores:
//
//   - "comment": why the rule exists;
//   - "includes": the rule applies only when the container holds all of
//     "caps" (bounding set), the host is one of "arches" (GOARCH names) and
//     the kernel is at least "minKernel";
//   - "excludes": the rule is dropped when the container holds any of
//     "caps" or the host is one of "arches".
//
// Keeping the conditions in the file means a reviewer reads one document
// to know what a container may do, and Resolve applies them against the
// container's final capability set (so adding CAP_SYS_ADMIN also allows
// mount, and CAP_SYS_TIME allows settimeofday, as the kernel would).
//
// Parse accepts the same union format for profiles installed on the node
// (Kubernetes "Localhost" profiles), which therefore may be written either
// as plain OCI LinuxSeccomp JSON or in Docker/moby's profile format
// ("archMap", "names"/"name", "includes"/"excludes").
//
// Nothing here reads files except KernelRelease (uname) and the caller's
// own choice of profile bytes.
package seccomp
