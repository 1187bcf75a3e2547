//go:build e2e

// Command nnp is the entrypoint of the nonewprivs stand-in image
// (registry.k8s.io/e2e-test-images/nonewprivs:1.3). It is installed
// setuid root in the image; critest runs it as uid 1000 and expects
// "Effective uid: 0" without no_new_privs and "Effective uid: 1000" with
// it, as the upstream test binary prints.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("Effective uid: %d\n", os.Geteuid())
}
