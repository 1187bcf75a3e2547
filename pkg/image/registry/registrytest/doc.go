// Package registrytest owns an in-process, read-only distribution v2
// registry for tests: blobs and manifests pushed from Go, optional TLS,
// basic or bearer-token auth with its own token endpoint, Range support,
// fault injection (5xx, cut connections, corrupt or endless bodies,
// redirects to a second server) and a log of the requests it served.
//
// It is test support only and must not be imported by production code.
package registrytest
