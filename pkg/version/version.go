// Package version owns the build's version stamp, set by the linker
// (-X github.com/cri-runtimed/cri-runtimed/pkg/version.Version=...).
package version

// Set at build time; the defaults mark an unstamped development build.
var (
	Version  = "0.0.0-dev"
	Revision = "unknown"
)

// RuntimeName is reported by the CRI Version RPC.
const RuntimeName = "cri-runtimed"
