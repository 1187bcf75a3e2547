// Package reference owns image reference handling as the ecosystem does it:
// `busybox` means `docker.io/library/busybox:latest`, references by digest,
// and the RepoTags / RepoDigests forms that kubelet and crictl expect.
package reference
