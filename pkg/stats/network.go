package stats

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cri-runtimed/cri-runtimed/pkg/netns"
)

// InterfaceStats is the cumulative traffic of one network interface.
type InterfaceStats struct {
	Name                                    string
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

// netDevFile is the calling thread's view of the interface counters.
// /proc/net and /proc/self/net show the namespace of the thread group
// leader, which never enters a pod's namespace; thread-self follows the
// thread that netns.Do moved.
const netDevFile = "/proc/thread-self/net/dev"

// Network returns the counters of every interface in the network
// namespace pinned at netnsPath, except the loopback, in the kernel's
// order. A pin that is gone yields an error wrapping ErrNotFound.
//
// The file is read on a thread that enters the namespace and leaves it
// again (netns.Do); sysfs would need a mount made inside the namespace,
// and netlink a dependency, for the same numbers.
func Network(ctx context.Context, netnsPath string) ([]InterfaceStats, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ns, err := netns.Open(netnsPath)
	if err != nil {
		if errors.Is(err, netns.ErrNotFound) {
			return nil, fmt.Errorf("network stats: %w: %w", ErrNotFound, err)
		}
		return nil, fmt.Errorf("network stats: %w", err)
	}
	var data []byte
	if err := ns.Do(func() error {
		var rerr error
		data, rerr = os.ReadFile(netDevFile)
		return rerr
	}); err != nil {
		return nil, fmt.Errorf("network stats of %s: %w", netnsPath, err)
	}
	ifaces, err := parseNetDev(data)
	if err != nil {
		return nil, fmt.Errorf("network stats of %s: %w", netnsPath, err)
	}
	return ifaces, nil
}

// parseNetDev parses /proc/net/dev: two header lines, then per interface
// "name: " followed by 8 receive and 8 transmit counters (bytes packets
// errs drop fifo frame compressed multicast | bytes packets errs drop fifo
// colls carrier compressed). Old kernels printed no space after the colon
// once the byte counter grew wide, so the split is on the colon.
func parseNetDev(data []byte) ([]InterfaceStats, error) {
	var out []InterfaceStats
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 0; sc.Scan(); line++ {
		if line < 2 {
			continue
		}
		text := sc.Text()
		name, rest, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("net/dev line %d: no interface name: %q", line+1, text)
		}
		name = strings.TrimSpace(name)
		if name == "lo" {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) < 16 {
			return nil, fmt.Errorf("net/dev line %d: %d counters, want 16", line+1, len(fields))
		}
		var v [16]uint64
		for i := range v {
			n, err := strconv.ParseUint(fields[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("net/dev line %d: %w", line+1, err)
			}
			v[i] = n
		}
		out = append(out, InterfaceStats{
			Name:    name,
			RxBytes: v[0], RxPackets: v[1], RxErrors: v[2], RxDropped: v[3],
			TxBytes: v[8], TxPackets: v[9], TxErrors: v[10], TxDropped: v[11],
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read net/dev: %w", err)
	}
	return out, nil
}
