package pause

import (
	"debug/elf"
	"fmt"
)

// CheckStatic returns an error if the executable at path (the daemon's
// own, which pause runs as) asks for a program interpreter: pause runs in
// an empty root that holds no loader and no libc, so a dynamically
// linked build starts every pod with a pause that dies at once and fails
// the pod's first container far from the cause.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: the built-in pause runs in an empty root with no loader; build it static (make build: -extldflags=-static, tags netgo,osusergo)", path)
		}
	}
	return nil
}
