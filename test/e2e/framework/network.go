//go:build e2e

package framework

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestNetwork is a CNI network made for one test daemon: its own bridge
// and /24, host-local state in the test's directory, and a FORWARD rule
// that drops anything the bridge would route off the host (the bridge
// plugin turns ip_forward on when it is a gateway; ipMasq stays off).
type TestNetwork struct {
	ConfDir string
	Bridge  string
	Subnet  string // e.g. 10.213.7.0/24
	Gateway string // e.g. 10.213.7.1
	// IPAMDir is host-local's dataDir: one file per allocated IP, under
	// a directory named after the network.
	IPAMDir string
}

// forwarding counts live test networks, so that ip_forward is restored
// to its value from before the first one only when the last one goes.
var forwarding struct {
	sync.Mutex
	users  int
	before string
}

// NewTestNetwork writes a conflist (bridge + host-local + portmap) into a
// new conf dir and registers the cleanup of the bridge, the FORWARD rule
// and ip_forward.
func NewTestNetwork(t testing.TB) *TestNetwork {
	t.Helper()
	var b [3]byte
	_, _ = rand.Read(b[:])
	n := &TestNetwork{
		ConfDir: t.TempDir(),
		Bridge:  fmt.Sprintf("crte%02x%02x%02x", b[0], b[1], b[2]),
		Subnet:  fmt.Sprintf("10.%d.%d.0/24", 200+int(b[0])%50, b[1]),
		Gateway: fmt.Sprintf("10.%d.%d.1", 200+int(b[0])%50, b[1]),
	}
	ipam := filepath.Join(t.TempDir(), "ipam")
	n.IPAMDir = ipam
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "e2e-%[1]s",
  "plugins": [
    {"type": "bridge", "bridge": %[1]q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %[2]q, "ranges": [[{"subnet": %[3]q}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, n.Bridge, ipam, n.Subnet)
	if err := os.WriteFile(filepath.Join(n.ConfDir, "10-e2e.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	forwarding.Lock()
	if forwarding.users == 0 {
		b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		forwarding.before = strings.TrimSpace(string(b))
	}
	forwarding.users++
	forwarding.Unlock()
	// Traffic may flow between pods on the bridge and between pods and
	// the host, never from the bridge to another interface.
	if out, err := exec.Command("iptables", "-w", "-I", "FORWARD", "-i", n.Bridge, "!", "-o", n.Bridge, "-j", "DROP").CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("iptables", "-w", "-D", "FORWARD", "-i", n.Bridge, "!", "-o", n.Bridge, "-j", "DROP").CombinedOutput(); err != nil {
			t.Errorf("cleanup: iptables: %v: %s", err, out)
		}
		_ = exec.Command("ip", "link", "del", n.Bridge).Run()
		forwarding.Lock()
		defer forwarding.Unlock()
		if forwarding.users--; forwarding.users == 0 && forwarding.before != "" {
			_ = os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(forwarding.before), 0o644)
		}
	})
	return n
}

// AllocatedIPs lists the addresses host-local has handed out and not
// released.
func (n *TestNetwork) AllocatedIPs() []string {
	var ips []string
	_ = filepath.WalkDir(n.IPAMDir, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
		return nil
	})
	return ips
}

// Option points the daemon at this network.
func (n *TestNetwork) Option() Option { return WithConfig("cni.conf_dir", n.ConfDir) }
