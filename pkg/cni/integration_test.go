package cni

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cri-runtimed/cri-runtimed/pkg/netns"
	"golang.org/x/sys/unix"
)

// The integration test's network: a bridge and subnet no node uses, with
// no masquerading and no default route in the pods, so nothing it carries
// can leave the host.
const (
	itBridge  = "crt-test0"
	itSubnet  = "10.255.77.0/24"
	itGateway = "10.255.77.1"
	itNetwork = "crt-test"
	realBin   = "/usr/lib/cni"
)

// realPlugins prepares a conf dir for Debian's plugins and registers the
// host cleanup. It skips unless run as root with the plugins installed.
func realPlugins(t *testing.T) (Options, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(realBin, p)); err != nil {
			t.Skipf("CNI plugin %s not installed: %v", p, err)
		}
	}
	lockNetwork(t)
	if _, err := net.InterfaceByName(itBridge); err == nil {
		t.Fatalf("%s already exists; a previous run did not clean up", itBridge)
	}
	if out := run(t, "ip", "-o", "route", "show", itSubnet); out != "" {
		t.Fatalf("%s is already routed on this host: %s", itSubnet, out)
	}

	// The bridge plugin turns on ip_forward for a gateway bridge; put
	// back what the host had. Until then, drop anything that would be
	// forwarded off the bridge (pods have no route off it anyway).
	const fwd = "/proc/sys/net/ipv4/ip_forward"
	orig, err := os.ReadFile(fwd)
	if err != nil {
		t.Fatal(err)
	}
	dropRule := []string{"FORWARD", "-i", itBridge, "!", "-o", itBridge, "-j", "DROP"}
	run(t, "iptables", append([]string{"-w", "-I"}, dropRule...)...)
	natBefore := run(t, "iptables", "-w", "-t", "nat", "-S")
	t.Cleanup(func() {
		if _, err := net.InterfaceByName(itBridge); err == nil {
			run(t, "ip", "link", "del", itBridge)
		}
		run(t, "iptables", append([]string{"-w", "-D"}, dropRule...)...)
		if err := os.WriteFile(fwd, orig, 0o644); err != nil {
			t.Errorf("restore ip_forward: %v", err)
		}
		removePortmapChains(t, natBefore)
	})

	dir := t.TempDir()
	opts := Options{
		ConfDir:       filepath.Join(dir, "net.d"),
		BinDirs:       []string{filepath.Join(dir, "nobin"), realBin},
		CacheDir:      filepath.Join(dir, "cache"),
		PluginTimeout: 20 * time.Second,
		PollInterval:  50 * time.Millisecond,
	}
	ipamDir := filepath.Join(dir, "ipam")
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}`, itNetwork, itBridge, ipamDir, itSubnet)
	if err := os.MkdirAll(opts.ConfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(opts.ConfDir, "10-test.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return opts, ipamDir
}

// lockNetwork waits until no other run of this test on the host holds
// the bridge and subnet (two `go test` runs from different checkouts at
// once), and holds them until the test and its cleanups are done.
func lockNetwork(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "cri-runtimed-cni-"+itBridge+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock %s: %v", f.Name(), err)
	}
	// Registered first, so it runs after every cleanup registered later.
	t.Cleanup(func() { f.Close() })
}

// removePortmapChains removes the portmap top-level chains and jumps that
// were not there before the test. The per-pod chains go with each DEL.
func removePortmapChains(t *testing.T, before string) {
	t.Helper()
	for _, jump := range [][]string{
		{"PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"},
		{"OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"},
		{"POSTROUTING", "-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j", "CNI-HOSTPORT-MASQ"},
	} {
		if !strings.Contains(before, jump[len(jump)-1]) {
			_ = exec.Command("iptables", append([]string{"-w", "-t", "nat", "-D"}, jump...)...).Run()
		}
	}
	for _, chain := range []string{"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"} {
		if !strings.Contains(before, "-N "+chain) {
			_ = exec.Command("iptables", "-w", "-t", "nat", "-F", chain).Run()
			_ = exec.Command("iptables", "-w", "-t", "nat", "-X", chain).Run()
		}
	}
	if after := run(t, "iptables", "-w", "-t", "nat", "-S"); strings.Contains(after, "CNI-") && !strings.Contains(before, "CNI-") {
		t.Errorf("CNI iptables rules left behind:\n%s", after)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// leftovers reports veths still on the bridge, host-local reservations and
// portmap rules of the given pods.
func leftovers(t *testing.T, ipamDir string, ids ...string) []string {
	t.Helper()
	var left []string
	if _, err := net.InterfaceByName(itBridge); err == nil {
		if out := run(t, "ip", "-o", "link", "show", "master", itBridge); out != "" {
			left = append(left, "veths: "+out)
		}
	}
	ents, err := os.ReadDir(filepath.Join(ipamDir, itNetwork))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range ents {
		if net.ParseIP(e.Name()) != nil {
			left = append(left, "IP reservation "+e.Name())
		}
	}
	nat := run(t, "iptables", "-w", "-t", "nat", "-S")
	for _, id := range ids {
		if strings.Contains(nat, id) {
			left = append(left, "iptables rules for "+id)
		}
	}
	return left
}

// testPinDir returns a netns pin directory and unmounts it (netns.Create
// makes it a mount point) before TempDir's cleanup removes it; the pins in
// it are removed by podIn's cleanups, which run first.
func testPinDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "netns")
	t.Cleanup(func() {
		// Create stacks at most one bind mount of dir on itself; a
		// few more attempts cover a confused state.
		for range 8 {
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				break
			}
		}
	})
	return dir
}

// podIn makes a netns for a pod and removes it at the end of the test.
func podIn(t *testing.T, pinDir, id string) (Pod, *netns.NetNS) {
	t.Helper()
	ns, err := netns.Create(context.Background(), pinDir, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Remove(); err != nil {
			t.Error(err)
		}
	})
	return Pod{ID: id, Name: "pod-" + id, Namespace: "it", UID: "uid-" + id, NetNS: ns.Path()}, ns
}

// eth0Addr is the IPv4 address inside the namespace.
func eth0Addr(t *testing.T, ns *netns.NetNS) net.IP {
	t.Helper()
	var ip net.IP
	err := ns.Do(func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				ip = n.IP
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ip
}

// serve answers every connection on a listener made inside ns with msg,
// until the test ends.
func serve(t *testing.T, ns *netns.NetNS, port int, msg string) {
	t.Helper()
	var l net.Listener
	if err := ns.Do(func() (err error) {
		l, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(msg))
			c.Close()
		}
	}()
}

func fetch(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestIntegrationRealPlugins(t *testing.T) {
	opts, ipamDir := realPlugins(t)
	pinDir := testPinDir(t)
	ctx := context.Background()
	m, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close() // Close is idempotent; this covers a t.Fatal
	if err := m.Status(); err != nil {
		t.Fatalf("Status: %v", err)
	}

	// Two pods, one publishing a hostPort.
	const hostPort, podPort = 18080, 8080
	podA, nsA := podIn(t, pinDir, "crt-a")
	podA.PortMappings = []PortMapping{{HostPort: hostPort, ContainerPort: podPort, Protocol: "tcp"}}
	podB, nsB := podIn(t, pinDir, "crt-b")
	resA, err := m.Setup(ctx, podA)
	if err != nil {
		t.Fatalf("Setup A: %v", err)
	}
	resB, err := m.Setup(ctx, podB)
	if err != nil {
		t.Fatalf("Setup B: %v", err)
	}
	_, subnet, _ := net.ParseCIDR(itSubnet)
	for _, tc := range []struct {
		res *Result
		ns  *netns.NetNS
	}{{resA, nsA}, {resB, nsB}} {
		if len(tc.res.IPs) != 1 || !subnet.Contains(tc.res.IPs[0]) {
			t.Fatalf("IPs = %v, want one in %s", tc.res.IPs, itSubnet)
		}
		if in := eth0Addr(t, tc.ns); !in.Equal(tc.res.IPs[0]) {
			t.Errorf("reported IP %s, eth0 in the netns has %s", tc.res.IPs[0], in)
		}
	}
	if resA.IPs[0].Equal(resB.IPs[0]) {
		t.Fatalf("both pods got %s", resA.IPs[0])
	}

	// Pod to pod over the bridge.
	serve(t, nsA, podPort, "hello from a")
	var got string
	if err := nsB.Do(func() (err error) {
		got, err = fetch(net.JoinHostPort(resA.IPs[0].String(), fmt.Sprint(podPort)))
		return err
	}); err != nil || got != "hello from a" {
		t.Errorf("B -> A: %q, %v", got, err)
	}
	// Host to the hostPort, through portmap's DNAT on the gateway address.
	if got, err := fetch(net.JoinHostPort(itGateway, fmt.Sprint(hostPort))); err != nil || got != "hello from a" {
		t.Errorf("host -> %s:%d: %q, %v", itGateway, hostPort, got, err)
	}

	for _, p := range []Pod{podA, podB} {
		if err := m.Teardown(ctx, p); err != nil {
			t.Fatalf("Teardown %s: %v", p.ID, err)
		}
		if err := m.Teardown(ctx, p); err != nil {
			t.Fatalf("second Teardown %s: %v", p.ID, err)
		}
	}
	if left := leftovers(t, ipamDir, podA.ID, podB.ID); len(left) > 0 {
		t.Errorf("left after Teardown: %v", left)
	}
	if _, err := fetch(net.JoinHostPort(itGateway, fmt.Sprint(hostPort))); err == nil {
		t.Error("hostPort still answers after Teardown")
	}

	// Twenty pods in and out, timing ADD.
	var ids []string
	var adds []time.Duration
	for i := range 20 {
		p, _ := podIn(t, pinDir, fmt.Sprintf("crt-n%02d", i))
		p.PortMappings = []PortMapping{{HostPort: int32(18100 + i), ContainerPort: 80}}
		ids = append(ids, p.ID)
		start := time.Now()
		if _, err := m.Setup(ctx, p); err != nil {
			t.Fatalf("Setup %s: %v", p.ID, err)
		}
		adds = append(adds, time.Since(start))
		if err := m.Teardown(ctx, p); err != nil {
			t.Fatalf("Teardown %s: %v", p.ID, err)
		}
	}
	slices.Sort(adds)
	t.Logf("CNI ADD (bridge+host-local+portmap) over %d pods: median %s, min %s, max %s",
		len(adds), adds[len(adds)/2], adds[0], adds[len(adds)-1])
	if left := leftovers(t, ipamDir, ids...); len(left) > 0 {
		t.Errorf("left after 20 pods: %v", left)
	}

	m.Close()

	// A daemon restart with the config gone: DEL comes from the cache.
	// This daemon also runs the real loopback plugin.
	opts.Loopback = true
	m1, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m1.Close()
	podC, nsC := podIn(t, pinDir, "crt-c")
	podC.PortMappings = []PortMapping{{HostPort: hostPort, ContainerPort: podPort}}
	if _, err := m1.Setup(ctx, podC); err != nil {
		t.Fatalf("Setup C: %v", err)
	}
	m1.Close()
	if err := nsC.Do(func() error {
		lo, err := net.InterfaceByName("lo")
		if err == nil && lo.Flags&net.FlagUp == 0 {
			err = errors.New("lo is down")
		}
		return err
	}); err != nil {
		t.Errorf("loopback in pod C: %v", err)
	}
	if err := os.Remove(filepath.Join(opts.ConfDir, "10-test.conflist")); err != nil {
		t.Fatal(err)
	}
	m2, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if m2.Status() == nil {
		t.Error("Status nil without a config")
	}
	if left := leftovers(t, ipamDir, podC.ID); len(left) == 0 {
		t.Fatal("pod C left nothing to clean up; the restart case tests nothing")
	}
	if err := m2.Teardown(ctx, Pod{ID: podC.ID, NetNS: podC.NetNS}); err != nil {
		t.Fatalf("Teardown C after restart: %v", err)
	}
	if left := leftovers(t, ipamDir, podC.ID); len(left) > 0 {
		t.Errorf("left after Teardown from cache: %v", left)
	}
}
