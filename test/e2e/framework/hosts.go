//go:build e2e

package framework

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Hosts is one registry's hosts.toml (containerd's format): mirrors are
// tried in order, then the server.
type Hosts struct {
	// Server is the upstream, e.g. http://127.0.0.1:5000 (plain HTTP).
	Server string
	// Mirrors are http://host:port URLs tried before the server.
	Mirrors []string
}

// TOML renders the file.
func (h Hosts) TOML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "server = %q\n", h.Server)
	for _, m := range h.Mirrors {
		fmt.Fprintf(&b, "\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", m)
	}
	return b.String()
}

// WriteHosts writes <certsDir>/<registry>/hosts.toml, e.g. for registry
// "docker.io" so that short names like "busybox" are pulled from a local
// registry.
func WriteHosts(certsDir, registry string, h Hosts) error {
	dir := filepath.Join(certsDir, registry)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(h.TOML()), 0o644)
}

// MirroredRegistries are the public registries the tests redirect to the
// local one: images are named as kubelet users name them.
var MirroredRegistries = []string{"docker.io", "registry.k8s.io"}
