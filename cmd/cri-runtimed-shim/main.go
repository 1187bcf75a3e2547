// Command cri-runtimed-shim is the per-pod shim (`cri-runtimed-shim shim
// ...`, the same arguments as the daemon's hidden `shim` mode), built and
// installed beside the daemon.
//
// Why a binary of its own: one shim runs per pod, and every shim started
// from the daemon's binary pays the package initialisation of everything
// the daemon links (gRPC, protobuf registries, the CRI API, OpenTelemetry,
// NRI), about 4 MiB of private memory per pod that the shim never uses.
// This binary links only pkg/shim. The daemon uses it when it sits beside
// the daemon's executable and reports the same build (`version`), and
// otherwise falls back to its own `shim` mode.
package main

import (
	"fmt"
	"os"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/version"
)

func main() {
	switch {
	case len(os.Args) > 1 && os.Args[1] == "shim":
		os.Exit(shim.Main(os.Args[2:]))
	case len(os.Args) == 2 && os.Args[1] == "version":
		fmt.Println(shim.VersionLine(version.Version, version.Revision))
	default:
		fmt.Fprintln(os.Stderr, "usage: cri-runtimed-shim shim --state-dir DIR ... | version (started by cri-runtimed)")
		os.Exit(2)
	}
}
