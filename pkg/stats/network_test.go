package stats

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cri-runtimed/cri-runtimed/pkg/netns"
)

func TestParseNetDev(t *testing.T) {
	const header = "Inter-|   Receive                                                |  Transmit\n" +
		" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
	tests := []struct {
		name    string
		data    string
		want    []InterfaceStats
		wantErr bool
	}{
		{name: "header only", data: header},
		{
			name: "skips lo",
			data: header +
				"    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n" +
				"  eth0: 5000 50 1 2 0 0 0 0 7000 70 3 4 0 0 0 0\n",
			want: []InterfaceStats{{Name: "eth0", RxBytes: 5000, RxPackets: 50, RxErrors: 1, RxDropped: 2, TxBytes: 7000, TxPackets: 70, TxErrors: 3, TxDropped: 4}},
		},
		{
			name: "no space after colon",
			data: header + "eth1:123456789012 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n",
			want: []InterfaceStats{{Name: "eth1", RxBytes: 123456789012, RxPackets: 1, TxBytes: 5, TxPackets: 1}},
		},
		{name: "short line", data: header + "eth0: 1 2 3\n", wantErr: true},
		{name: "not a number", data: header + "eth0: x 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n", wantErr: true},
		{name: "no colon", data: header + "eth0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNetDev([]byte(tt.data))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNetworkMissingNetns(t *testing.T) {
	_, err := Network(context.Background(), filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

// TestNetwork moves one end of a veth pair into a pinned namespace, sends
// UDP datagrams to it from the host and checks the counters read inside.
func TestNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "netns")
	ns, err := netns.Create(ctx, dir, "stats")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Remove(ns.Path()); err != nil {
			t.Errorf("remove netns: %v", err)
		}
		// Create made dir a mount point; undo it so TempDir can go.
		_ = unix.Unmount(dir, unix.MNT_DETACH)
	})

	// Interface names are at most 15 bytes; the pid keeps parallel runs
	// apart, the random /30 keeps clear of the host's own networks.
	host := fmt.Sprintf("crs%dh", os.Getpid()%1000000)
	peer := fmt.Sprintf("crs%dp", os.Getpid()%1000000)
	subnet := fmt.Sprintf("10.252.%d.%d", rand.IntN(256), rand.IntN(64)*4)
	hostIP, peerIP := ipAdd(subnet, 1), ipAdd(subnet, 2)
	run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	run(t, "ip", "link", "set", peer, "netns", ns.Path())
	run(t, "ip", "addr", "add", hostIP+"/30", "dev", host)
	run(t, "ip", "link", "set", host, "up")
	inNS := []string{"nsenter", "--net=" + ns.Path(), "ip"}
	run(t, append(inNS, "addr", "add", peerIP+"/30", "dev", peer)...)
	run(t, append(inNS, "link", "set", peer, "up")...)

	c, err := NewCollector()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	keptBefore := keptStats(t, c, ns.Path(), peer)
	before := peerStats(t, ns.Path(), peer)
	conn, err := net.Dial("udp4", net.JoinHostPort(peerIP, "9"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	payload := make([]byte, 1000)
	const sends = 50
	for range sends {
		// The first datagrams may wait for ARP; the kernel queues a few
		// and drops the rest, so keep sending until enough arrive.
		_, _ = conn.Write(payload)
		time.Sleep(2 * time.Millisecond)
	}
	var after InterfaceStats
	deadline := time.Now().Add(5 * time.Second)
	for {
		after = peerStats(t, ns.Path(), peer)
		if after.RxBytes-before.RxBytes >= 40*1000 || time.Now().After(deadline) {
			break
		}
		_, _ = conn.Write(payload)
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s: before %+v after %+v", peer, before, after)
	if got := after.RxBytes - before.RxBytes; got < 40*1000 {
		t.Errorf("received %d bytes, want >= 40000", got)
	}
	if after.RxPackets <= before.RxPackets {
		t.Errorf("rx packets did not grow")
	}
	// ARP replies and ICMP port-unreachable answers go back out.
	if after.TxBytes <= before.TxBytes {
		t.Errorf("tx bytes did not grow: %d then %d", before.TxBytes, after.TxBytes)
	}

	// The pod's file kept open reads the counters anew.
	keptAfter := keptStats(t, c, ns.Path(), peer)
	if got := keptAfter.RxBytes - keptBefore.RxBytes; got < 40*1000 || keptAfter.RxBytes < after.RxBytes {
		t.Errorf("kept net/dev: %d bytes received between readings (%+v, then %+v), want >= 40000 and at least %d in all",
			got, keptBefore, keptAfter, after.RxBytes)
	}
	if n := c.openCount.Load(); n != 1 {
		t.Errorf("%d files kept open, want 1", n)
	}
	// Kept means no second open: with the pin gone, the open file still
	// reads the namespace it holds.
	if err := netns.Remove(ns.Path()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PodNetwork(ctx, "pod", ns.Path()); err != nil {
		t.Errorf("kept net/dev after the pin's removal: %v", err)
	}
	// Forgotten, nothing holds the namespace any more.
	c.ForgetNetwork("pod")
	if n := c.openCount.Load(); n != 0 {
		t.Errorf("%d files kept open after ForgetNetwork, want 0", n)
	}
	if _, err := c.PodNetwork(ctx, "pod", ns.Path()); !errors.Is(err, ErrNotFound) {
		t.Errorf("PodNetwork after ForgetNetwork and the pin's removal = %v, want ErrNotFound", err)
	}
}

// keptStats reads name's counters through the Collector's kept file of
// the key "pod".
func keptStats(t *testing.T, c *Collector, nsPath, name string) InterfaceStats {
	t.Helper()
	ifaces, err := c.PodNetwork(context.Background(), "pod", nsPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifaces {
		if i.Name == name {
			return i
		}
	}
	t.Fatalf("%s not among %+v", name, ifaces)
	return InterfaceStats{}
}

// peerStats reads the namespace's interfaces, checks lo is left out and
// returns name's counters.
func peerStats(t *testing.T, nsPath, name string) InterfaceStats {
	t.Helper()
	ifaces, err := Network(context.Background(), nsPath)
	if err != nil {
		t.Fatal(err)
	}
	var found *InterfaceStats
	for i := range ifaces {
		switch ifaces[i].Name {
		case "lo":
			t.Fatal("lo is reported")
		case name:
			found = &ifaces[i]
		}
	}
	if found == nil {
		t.Fatalf("%s not among %+v", name, ifaces)
	}
	return *found
}

func run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func ipAdd(base string, n byte) string {
	ip := net.ParseIP(base).To4()
	ip[3] += n
	return ip.String()
}
