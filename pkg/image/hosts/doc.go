// Package hosts owns the registry host configuration: it reads containerd's
// certs.d layout (<dir>/<registry>/hosts.toml, <dir>/_default/hosts.toml and
// the legacy docker *.crt/*.cert/*.key files) and turns it into the ordered
// list of endpoints, with their capabilities, TLS settings and extra headers,
// that the registry client tries for one registry domain.
//
// It does no network I/O; it only reads files.
package hosts
