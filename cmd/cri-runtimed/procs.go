package main

import (
	"os"
	"runtime"
)

// maxProcs sets the daemon's GOMAXPROCS from max_procs and returns it.
//
// Why one on a small node: the daemon's Go work is short CRI calls and
// waiting on its children (runc, CNI plugins, shims). With a second P
// idle, the runtime wakes a second thread for each goroutine the network
// poller readies, and on a 2-CPU VM that wake-up is most of a small
// call's time. With one P, the thread that read the request runs its
// handler. Measured on such a node (test/bench/README.md, issue 14): at
// 25 pods × 20 containers and 500 images, Version 0.33 → 0.24 ms,
// ImageStatus by ID 0.31 → 0.27, ImageFsInfo 0.35 → 0.28,
// ListPodSandboxStats 4.5 → 3.4; pod starts and 500 image pulls took no
// longer. On bigger nodes nothing was measured, so Go's default stays.
//
// Set through runtime.GOMAXPROCS rather than the environment, so that
// runc and the CNI plugins, which inherit the environment, keep theirs.
// An operator's GOMAXPROCS wins; Go's default (the CPUs the daemon may
// use, cgroup quota included) is left to follow changes when it is kept.
func maxProcs(configured int) int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	available := runtime.GOMAXPROCS(0)
	n := chooseMaxProcs(configured, available)
	if n != available {
		runtime.GOMAXPROCS(n)
	}
	return n
}

// chooseMaxProcs is max_procs (configured), or its default for a node
// where Go would use available.
func chooseMaxProcs(configured, available int) int {
	switch {
	case configured > 0:
		return configured
	case available <= 2:
		return 1
	default:
		return available
	}
}
