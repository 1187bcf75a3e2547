// Package registry owns the distribution v2 (OCI distribution) client used to
// pull images: resolving a tag or digest to a descriptor, fetching manifests
// with size limits and digest checks, streaming blobs with Range resume, and
// picking the platform manifest out of an index.
//
// It tries the hosts configured by package hosts in order, falling through
// on failure, retries transient errors with backoff, and speaks the token
// (bearer) and basic auth schemes. It stores nothing: callers persist and
// re-verify what it returns.
package registry
