// Package pause owns the pod's built-in sandbox process: `cri-runtimed
// pause`, run by runc as PID 1 of the pod with an empty rootfs holding only
// this binary.
//
// The pause loop is C code run from an ELF constructor, before the Go
// runtime starts: a Go process costs megabytes of RSS (runtime, package
// inits), while this one stays under the C pause other runtimes ship.
// Importing the package links the constructor in; every other mode of the
// binary runs Go as usual.
package pause
