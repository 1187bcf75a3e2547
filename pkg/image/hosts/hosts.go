package hosts

import (
	"crypto/tls"
	"net"
	"net/http"
	"strings"
)

// Capabilities is the set of operations a host may be used for.
type Capabilities uint8

const (
	// CapabilityPull allows fetching manifests and blobs by digest.
	CapabilityPull Capabilities = 1 << iota
	// CapabilityResolve allows turning a tag into a digest.
	CapabilityResolve
	// CapabilityPush allows pushing. cri-runtimed never pushes, but the
	// capability is parsed so that valid containerd files load unchanged.
	CapabilityPush
)

// Has reports whether all of want are present in c.
func (c Capabilities) Has(want Capabilities) bool { return c&want == want }

func (c Capabilities) String() string {
	var parts []string
	if c.Has(CapabilityPull) {
		parts = append(parts, "pull")
	}
	if c.Has(CapabilityResolve) {
		parts = append(parts, "resolve")
	}
	if c.Has(CapabilityPush) {
		parts = append(parts, "push")
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// Host is one registry endpoint, in the order it should be tried.
type Host struct {
	Scheme string // "https" or "http"
	Host   string // host[:port]
	Path   string // API root, "/v2" unless configured otherwise

	Capabilities Capabilities

	// TLS is the client TLS configuration for https hosts; nil for http.
	// A nil RootCAs means the system roots.
	TLS *tls.Config

	// Header is sent on every request to this host.
	Header http.Header

	// OverridePath records that Path was taken verbatim from the
	// configuration rather than derived by appending /v2.
	OverridePath bool

	// Server marks the upstream registry itself (the `server` entry or the
	// default), as opposed to a mirror. Credentials given for the registry
	// are only sent to server hosts, so that a mirror never sees them.
	Server bool
}

// URL returns the absolute URL of elem joined under the host's API root,
// e.g. URL("library/busybox", "manifests", "latest").
func (h Host) URL(elem ...string) string {
	var b strings.Builder
	b.WriteString(h.Scheme)
	b.WriteString("://")
	b.WriteString(h.Host)
	b.WriteString(strings.TrimSuffix(h.Path, "/"))
	for _, e := range elem {
		e = strings.Trim(e, "/")
		if e == "" {
			continue
		}
		b.WriteByte('/')
		b.WriteString(e)
	}
	return b.String()
}

// String names the host in logs and errors: scheme://host, plus the path
// when it is not the default one.
func (h Host) String() string {
	s := h.Scheme + "://" + h.Host
	if h.Path != "" && h.Path != "/v2" {
		s += h.Path
	}
	return s
}

// isLocalhost reports whether host (with or without port) is a loopback name
// for which containerd allows plain http without configuration.
func isLocalhost(hostport string) bool {
	h := hostport
	if hh, _, err := net.SplitHostPort(hostport); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
