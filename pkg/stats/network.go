package stats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

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

// PodNetwork is Network for the pod keyed key, reading a file kept open:
// the first reading opens net/dev inside the namespace, and the open file
// stays bound to that namespace, so later readings are one pread, without
// the pin's checks, a locked thread and two namespace switches (most of a
// pod's stats reading otherwise). The open file keeps the namespace
// alive: callers ForgetNetwork the key when the pod stops (Forget, when
// it is removed, closes it too). An empty key keeps nothing.
func (c *Collector) PodNetwork(ctx context.Context, key, netnsPath string) ([]InterfaceStats, error) {
	if key == "" {
		return Network(ctx, netnsPath)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	f := c.nets[key]
	if f == nil {
		f = &netFile{fd: -1}
		c.nets[key] = f
	}
	c.mu.Unlock()
	if c.lookedUp != nil {
		c.lookedUp(key)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dropped {
		// Forgotten since it was looked up: keep nothing.
		return Network(ctx, netnsPath)
	}
	if f.fd >= 0 && f.path != netnsPath {
		f.close(c)
	}
	if f.fd < 0 {
		fd, err := openNetDev(netnsPath)
		if err != nil {
			return nil, err
		}
		if c.openCount.Add(1) > maxOpenFiles {
			c.openCount.Add(-1)
			defer unix.Close(fd)
			return readNetDev(fd, netnsPath)
		}
		f.fd, f.path = fd, netnsPath
	}
	ifaces, err := readNetDev(f.fd, netnsPath)
	if err != nil {
		f.close(c)
	}
	return ifaces, err
}

// ForgetNetwork closes the net/dev file kept for key, letting its
// namespace go once the pin is removed.
func (c *Collector) ForgetNetwork(key string) {
	if f := take(c, c.nets, key); f != nil {
		f.drop(c)
	}
}

// netFile is a pod's net/dev kept open; mu orders readings with the
// close, so that a reading never preads a descriptor number reused.
type netFile struct {
	mu   sync.Mutex
	path string
	fd   int // -1: none
	// dropped: no longer in Collector.nets, nothing may be kept in it.
	dropped bool
}

// drop closes the file for good, once f is out of Collector.nets.
func (f *netFile) drop(c *Collector) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.close(c)
	f.dropped = true
}

func (f *netFile) close(c *Collector) {
	if f.fd >= 0 {
		_ = unix.Close(f.fd)
		f.fd = -1
		c.openCount.Add(-1)
	}
}

// openNetDev opens net/dev inside the namespace pinned at netnsPath.
func openNetDev(netnsPath string) (int, error) {
	ns, err := netns.Open(netnsPath)
	if err != nil {
		if errors.Is(err, netns.ErrNotFound) {
			return -1, fmt.Errorf("network stats: %w: %w", ErrNotFound, err)
		}
		return -1, fmt.Errorf("network stats: %w", err)
	}
	fd := -1
	if err := ns.Do(func() error {
		var oerr error
		fd, oerr = openFile(netDevFile)
		return oerr
	}); err != nil {
		return -1, fmt.Errorf("network stats of %s: %w", netnsPath, err)
	}
	return fd, nil
}

// readNetDev reads and parses an open net/dev from its start: the file
// is generated anew by a read at offset 0.
func readNetDev(fd int, netnsPath string) ([]InterfaceStats, error) {
	r := readerPool.Get().(*fileReader)
	b, err := r.pread(fd)
	var ifaces []InterfaceStats
	if err == nil {
		ifaces, err = parseNetDev(b)
	}
	r.release()
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
	// Line by line in place: a pod's stats parse this on every reading.
	for line := 0; len(data) > 0; line++ {
		var b []byte
		b, data, _ = bytes.Cut(data, []byte{'\n'})
		if line < 2 || len(b) == 0 {
			continue
		}
		nameB, rest, ok := bytes.Cut(b, []byte{':'})
		if !ok {
			return nil, fmt.Errorf("net/dev line %d: no interface name: %q", line+1, b)
		}
		nameB = bytes.TrimSpace(nameB)
		if string(nameB) == "lo" {
			continue
		}
		fields := strings.Fields(string(rest))
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
			Name:    string(nameB),
			RxBytes: v[0], RxPackets: v[1], RxErrors: v[2], RxDropped: v[3],
			TxBytes: v[8], TxPackets: v[9], TxErrors: v[10], TxDropped: v[11],
		})
	}
	return out, nil
}
