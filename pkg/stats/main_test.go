package stats

import (
	"bufio"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary act as the workload of the live cgroup
// tests instead of running tests: a process whose CPU and memory use the
// test controls and can then observe.
const helperEnv = "CRI_RUNTIMED_STATS_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		workload()
		return
	}
	os.Exit(m.Run())
}

// workload waits for a line on stdin (sent once the test has moved it into
// its cgroups, so that what follows is charged there), then touches 32 MiB
// of memory and spins on the CPU until killed. The memory is mapped
// directly: stores into a Go heap slice that is never read back were seen
// not to fault its pages in, which left the cgroup nothing to charge.
func workload() {
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		os.Exit(2)
	}
	buf, err := unix.Mmap(-1, 0, 32<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		os.Exit(3)
	}
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	var x uint64
	for {
		for i := 0; i < 1<<20; i++ {
			x += uint64(i) ^ x
		}
		runtime.KeepAlive(x)
	}
}
