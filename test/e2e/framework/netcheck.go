//go:build e2e

package framework

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// Helpers for pod networking tests: what the daemon's CNI network is
// (read back from the conflist in its conf dir, so they work for any
// network a test gives it) and what that network holds on the host:
// veths, host-local reservations, libcni cache entries and portmap rules.

// DefaultIPAMDataDir is host-local's data dir when a config names none.
const DefaultIPAMDataDir = "/var/lib/cni/networks"

// PodNetwork describes the bridge network of a daemon's CNI conf dir.
type PodNetwork struct {
	// ConfFile is the config file the daemon uses (the first by name).
	ConfFile string
	// Name is the network name.
	Name string
	// Bridge is the bridge plugin's bridge ("cni0" if the config names
	// none).
	Bridge string
	// Subnet is host-local's first range.
	Subnet *net.IPNet
	// Gateway is the range's gateway (the subnet's first address unless
	// the config names another): the bridge's address.
	Gateway net.IP
	// IPAMDir is where host-local keeps this network's reservations
	// (<dataDir>/<network name>).
	IPAMDir string
	// CacheDir is libcni's result cache of the daemon.
	CacheDir string
}

// CNIConfDir is the daemon's cni.conf_dir.
func (d *Daemon) CNIConfDir() string { return d.Config.String("cni.conf_dir") }

// CNICacheDir is where the daemon's libcni caches ADD results.
func (d *Daemon) CNICacheDir() string { return filepath.Join(d.Root, "cni", "cache") }

// PodNetwork reads the first config file of the daemon's conf dir, which
// must be a bridge + host-local network (as NewTestNetwork writes).
func (d *Daemon) PodNetwork(t testing.TB) *PodNetwork {
	t.Helper()
	dir := d.CNIConfDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("CNI conf dir: %v", err)
	}
	var file string
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); !e.IsDir() && !strings.HasPrefix(e.Name(), ".") && (ext == ".conflist" || ext == ".conf" || ext == ".json") {
			file = filepath.Join(dir, e.Name())
			break
		}
	}
	if file == "" {
		t.Fatalf("no CNI config in %s", dir)
	}
	n, err := ParsePodNetwork(file)
	if err != nil {
		t.Fatal(err)
	}
	n.CacheDir = d.CNICacheDir()
	return n
}

// ParsePodNetwork reads a conflist holding a bridge plugin with
// host-local IPAM.
func ParsePodNetwork(file string) (*PodNetwork, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	type rng struct {
		Subnet  string `json:"subnet"`
		Gateway string `json:"gateway"`
	}
	type plugin struct {
		Type   string `json:"type"`
		Bridge string `json:"bridge"`
		IPAM   struct {
			Type    string  `json:"type"`
			DataDir string  `json:"dataDir"`
			Ranges  [][]rng `json:"ranges"`
		} `json:"ipam"`
	}
	var list struct {
		Name    string   `json:"name"`
		Plugins []plugin `json:"plugins"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("CNI config %s: %w", file, err)
	}
	n := &PodNetwork{ConfFile: file, Name: list.Name}
	for _, p := range list.Plugins {
		if p.Type != "bridge" {
			continue
		}
		n.Bridge = p.Bridge
		if n.Bridge == "" {
			n.Bridge = "cni0"
		}
		if p.IPAM.Type != "host-local" || len(p.IPAM.Ranges) == 0 || len(p.IPAM.Ranges[0]) == 0 {
			return nil, fmt.Errorf("CNI config %s: bridge without a host-local range", file)
		}
		r := p.IPAM.Ranges[0][0]
		_, subnet, err := net.ParseCIDR(r.Subnet)
		if err != nil {
			return nil, fmt.Errorf("CNI config %s: subnet: %w", file, err)
		}
		n.Subnet = subnet
		if r.Gateway != "" {
			n.Gateway = net.ParseIP(r.Gateway)
		} else {
			gw := slices.Clone(subnet.IP.To4())
			gw[3]++
			n.Gateway = gw
		}
		dataDir := p.IPAM.DataDir
		if dataDir == "" {
			dataDir = DefaultIPAMDataDir
		}
		n.IPAMDir = filepath.Join(dataDir, list.Name)
		return n, nil
	}
	return nil, fmt.Errorf("CNI config %s: no bridge plugin", file)
}

// Reservations are host-local's reservation files of the network: IP
// -> the container (pod sandbox) ID that holds it.
func (n *PodNetwork) Reservations() map[string]string {
	out := map[string]string{}
	entries, _ := os.ReadDir(n.IPAMDir)
	for _, e := range entries {
		if e.IsDir() || net.ParseIP(e.Name()) == nil {
			continue // "lock", "last_reserved_ip.0"
		}
		data, _ := os.ReadFile(filepath.Join(n.IPAMDir, e.Name()))
		id, _, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
		out[e.Name()] = strings.TrimSpace(id)
	}
	return out
}

// CacheEntries lists libcni's cached ADD results (one per pod and
// interface the daemon thinks attached).
func (n *PodNetwork) CacheEntries() []string {
	return listDir(filepath.Join(n.CacheDir, "results"))
}

// Link is one host interface.
type Link struct {
	Name   string
	Master string
}

// HostVeths lists the veth interfaces of the host network namespace.
func HostVeths(t testing.TB) []Link {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show", "type", "veth").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v: %s", err, out)
	}
	var links []Link
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		l := Link{Name: name}
		if i := slices.Index(f, "master"); i >= 0 && i+1 < len(f) {
			l.Master = f[i+1]
		}
		links = append(links, l)
	}
	return links
}

// BridgePorts lists the host veths attached to the network's bridge.
func (n *PodNetwork) BridgePorts(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, l := range HostVeths(t) {
		if l.Master == n.Bridge {
			out = append(out, l.Name)
		}
	}
	return out
}

// IPTablesRules returns the rules and chain declarations of every
// iptables table that concern the network: rules naming its network
// (portmap's comments "name: <net> id: <pod>") or an address of its
// subnet, and the declarations of the chains those rules live in.
// Counters are dropped so two calls compare equal.
func (n *PodNetwork) IPTablesRules(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-w").CombinedOutput()
	if err != nil {
		// Older iptables-save has no -w.
		if out, err = exec.Command("iptables-save").CombinedOutput(); err != nil {
			t.Fatalf("iptables-save: %v: %s", err, out)
		}
	}
	prefix := subnetPrefix(n.Subnet)
	var rules []string
	chains := map[string]bool{}
	table := ""
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, "-A "):
			if strings.Contains(line, `"`+n.Name+`"`) || strings.Contains(line, `\"`+n.Name+`\"`) || mentionsAddr(line, prefix) {
				rules = append(rules, table+" "+line)
				chains[table+" "+strings.Fields(line)[1]] = true
			}
		}
	}
	for c := range chains {
		_, name, _ := strings.Cut(c, " ")
		// Built-in and shared portmap chains are not the network's.
		if strings.HasPrefix(name, "CNI-DN-") || strings.HasPrefix(name, "CNI-SN-") {
			rules = append(rules, c+" (chain)")
		}
	}
	sort.Strings(rules)
	return rules
}

// subnetPrefix is the text every address of a /24 (or larger) IPv4
// subnet starts with ("10.213.7.").
func subnetPrefix(s *net.IPNet) string {
	ip := s.IP.To4()
	ones, _ := s.Mask.Size()
	switch {
	case ones >= 24:
		return fmt.Sprintf("%d.%d.%d.", ip[0], ip[1], ip[2])
	case ones >= 16:
		return fmt.Sprintf("%d.%d.", ip[0], ip[1])
	default:
		return fmt.Sprintf("%d.", ip[0])
	}
}

// mentionsAddr reports whether an iptables rule holds an address that
// starts with prefix (as a whole token, not the tail of another one).
func mentionsAddr(line, prefix string) bool {
	for i := 0; ; {
		j := strings.Index(line[i:], prefix)
		if j < 0 {
			return false
		}
		j += i
		if j == 0 || !strings.ContainsRune("0123456789.", rune(line[j-1])) {
			return true
		}
		i = j + 1
	}
}

// NetSnapshot is what a network holds on the host, by kind.
type NetSnapshot map[string][]string

// Network leak kinds.
const (
	LeakVeths        = "veths"
	LeakReservations = "host-local reservations"
	LeakCNICache     = "libcni cache entries"
	LeakIPTables     = "iptables rules"
)

// Snapshot lists the host veths that are on the network's bridge or on
// no bridge at all (a veth of another runtime's bridge is not ours), the
// host-local reservations ("ip id"), libcni's cache entries and the
// network's iptables rules.
func (n *PodNetwork) Snapshot(t testing.TB) NetSnapshot {
	t.Helper()
	s := NetSnapshot{}
	for _, l := range HostVeths(t) {
		if l.Master == n.Bridge || l.Master == "" {
			s[LeakVeths] = append(s[LeakVeths], l.Name)
		}
	}
	for ip, id := range n.Reservations() {
		s[LeakReservations] = append(s[LeakReservations], ip+" "+id)
	}
	s[LeakCNICache] = n.CacheEntries()
	s[LeakIPTables] = n.IPTablesRules(t)
	for k := range s {
		sort.Strings(s[k])
	}
	return s
}

// New returns what after holds that s does not ("kind: item").
func (s NetSnapshot) New(after NetSnapshot) []string {
	var out []string
	for kind, items := range after {
		for _, it := range items {
			if !slices.Contains(s[kind], it) {
				out = append(out, kind+": "+it)
			}
		}
	}
	sort.Strings(out)
	return out
}

// CheckNoNetLeaks polls until the network holds nothing beyond before,
// then fails listing what is left.
func (n *PodNetwork) CheckNoNetLeaks(t testing.TB, before NetSnapshot, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() (bool, string) {
		left := before.New(n.Snapshot(t))
		return len(left) == 0, fmt.Sprintf("network %s left behind:\n  %s", n.Name, strings.Join(left, "\n  "))
	})
}

// FreePort returns a TCP port nothing listens on now (on any address).
func FreePort(t testing.TB) int32 {
	t.Helper()
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// RemoveIPTablesAtCleanup registers, for the end of the test, the removal
// of whatever nat rules of the network are left (a failed test can leave
// a pod's portmap rules behind when the daemon that should delete them is
// down): the rules IPTablesRules attributes to it, then its CNI-DN-*
// chains. Register it after NewPodEnv and before running pods, so it runs
// after the pods' own cleanups.
func (n *PodNetwork) RemoveIPTablesAtCleanup(t testing.TB) {
	t.Helper()
	t.Cleanup(func() {
		var chains []string
		for _, r := range n.IPTablesRules(t) {
			table, rule, _ := strings.Cut(r, " ")
			if c, ok := strings.CutSuffix(rule, " (chain)"); ok {
				chains = append(chains, table+" "+c)
				continue
			}
			args := splitRule(strings.TrimPrefix(rule, "-A "))
			if len(args) == 0 {
				continue
			}
			if out, err := exec.Command("iptables", append([]string{"-w", "-t", table, "-D"}, args...)...).CombinedOutput(); err != nil {
				t.Logf("cleanup: iptables -t %s -D %s: %v: %s", table, strings.Join(args, " "), err, out)
			}
		}
		for _, c := range chains {
			table, chain, _ := strings.Cut(c, " ")
			_ = exec.Command("iptables", "-w", "-t", table, "-F", chain).Run()
			if out, err := exec.Command("iptables", "-w", "-t", table, "-X", chain).CombinedOutput(); err != nil {
				t.Logf("cleanup: iptables -t %s -X %s: %v: %s", table, chain, err, out)
			}
		}
	})
}

// splitRule splits an iptables-save rule into arguments, honouring its
// double quotes and \" escapes.
func splitRule(s string) []string {
	var args []string
	var cur strings.Builder
	in, have := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && s[i+1] == '"':
			cur.WriteByte('"')
			i++
			have = true
		case c == '"':
			in, have = !in, true
		case c == ' ' && !in:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if have {
		args = append(args, cur.String())
	}
	return args
}
