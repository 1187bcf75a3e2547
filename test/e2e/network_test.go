//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// Tests of pod networking with CNI: addresses, pod-to-pod and hostPort
// traffic, NetworkReady, failing and malformed configs, and that nothing
// a network plugin creates on the host (veth, host-local reservation,
// portmap rule, libcni cache entry) outlives its pod, crashes included.
// Every pod network here is the framework's test bridge (no route off
// the host) or a variant of it on the same bridge.

// serverPort is where the test servers listen inside their pods.
const serverPort = 8080

// netPodEnv is podEnv plus the daemon's pod network, whose leftover
// iptables rules (if a failure leaves any) are removed at the end.
func netPodEnv(t *testing.T, opts ...framework.Option) (*framework.Env, *framework.Daemon, *framework.PodNetwork) {
	t.Helper()
	env, d := podEnv(t, opts...)
	n := d.PodNetwork(t)
	n.RemoveIPTablesAtCleanup(t)
	return env, d, n
}

// httpServer is a container serving "hi from <name>" over HTTP on
// serverPort with busybox httpd.
func httpServer(name string) *runtimeapi.ContainerConfig {
	return framework.Shell("httpd", bb, fmt.Sprintf(
		"mkdir -p /tmp/www && echo 'hi from %s' > /tmp/www/index.html && exec httpd -f -p %d -h /tmp/www", name, serverPort))
}

// podIP is PodSandboxStatus.network.ip of pod; it must be an IPv4
// address of the network's subnet other than the gateway.
func podIP(t *testing.T, d *framework.Daemon, n *framework.PodNetwork, pod string) string {
	t.Helper()
	st := d.PodStatus(t, pod).GetStatus()
	ip := net.ParseIP(st.GetNetwork().GetIp())
	if ip == nil || ip.To4() == nil {
		t.Fatalf("pod %s: status network.ip = %q, want an IPv4 address", pod, st.GetNetwork().GetIp())
	}
	if !n.Subnet.Contains(ip) || ip.Equal(n.Gateway) {
		t.Fatalf("pod %s: IP %s is not a pod address of the test network %s (gateway %s)", pod, ip, n.Subnet, n.Gateway)
	}
	if extra := st.GetNetwork().GetAdditionalIps(); len(extra) != 0 {
		t.Errorf("pod %s: additional IPs %v on a single-stack network", pod, extra)
	}
	return ip.String()
}

// ifaceIPv4 is the IPv4 address of eth0 as seen inside container ctr.
func ifaceIPv4(t *testing.T, d *framework.Daemon, ctr string) string {
	t.Helper()
	out := d.ExecOK(t, ctr, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
	f := strings.Fields(out)
	i := slices.Index(f, "inet")
	if i < 0 || i+1 >= len(f) {
		t.Fatalf("no IPv4 address on eth0 in the pod: %q", out)
	}
	addr, _, _ := strings.Cut(f[i+1], "/")
	return addr
}

// waitFetch polls an HTTP GET of path at addr (host:port) from
// container ctr until the body is want. The client is nc (busybox's
// static wget crashes resolving in an image without NSS libraries).
func waitFetch(t *testing.T, d *framework.Daemon, ctr, addr, path, want string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	script := fmt.Sprintf(`printf 'GET %s HTTP/1.0\r\n\r\n' | nc -w 3 %s %s`, path, host, port)
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		r := d.Exec(t, ctr, 10*time.Second, "sh", "-c", script)
		_, body, _ := strings.Cut(strings.ReplaceAll(r.Stdout, "\r\n", "\n"), "\n\n")
		return r.ExitCode == 0 && strings.HasPrefix(r.Stdout, "HTTP/1.") && strings.TrimSpace(body) == want,
			fmt.Sprintf("GET http://%s%s from the pod: exit %d, stdout %q, stderr %q, want body %q", addr, path, r.ExitCode, r.Stdout, r.Stderr, want)
	})
}

// hostGet fetches url from the host (no proxy), returning body or error.
func hostGet(url string) (string, error) {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %s", resp.Status)
	}
	return strings.TrimSpace(string(b)), nil
}

// withPortMapping adds a TCP hostPort -> containerPort mapping.
func withPortMapping(hostPort, containerPort int32) framework.PodOpt {
	return func(c *runtimeapi.PodSandboxConfig) {
		c.PortMappings = append(c.PortMappings, &runtimeapi.PortMapping{
			Protocol: runtimeapi.Protocol_TCP, ContainerPort: containerPort, HostPort: hostPort,
		})
	}
}

// hostNetwork puts the pod in the node's network namespace.
func hostNetwork() framework.PodOpt {
	return framework.WithPodNamespaces(runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
}

// networkCondition returns the NetworkReady condition of Status.
func networkCondition(t *testing.T, d *framework.Daemon) *runtimeapi.RuntimeCondition {
	t.Helper()
	resp, err := d.Runtime().Status(testCtx(t), false)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	var netCond *runtimeapi.RuntimeCondition
	for _, c := range resp.GetStatus().GetConditions() {
		switch c.GetType() {
		case runtimeapi.RuntimeReady:
			if !c.GetStatus() {
				t.Errorf("RuntimeReady is false (%s: %s)", c.GetReason(), c.GetMessage())
			}
		case runtimeapi.NetworkReady:
			netCond = c
		}
	}
	if netCond == nil {
		t.Fatalf("Status has no NetworkReady condition: %v", resp.GetStatus().GetConditions())
	}
	return netCond
}

// waitNetworkReady polls Status until NetworkReady is ready and returns
// the condition and how long that took.
func waitNetworkReady(t *testing.T, d *framework.Daemon, ready bool, timeout time.Duration) (*runtimeapi.RuntimeCondition, time.Duration) {
	t.Helper()
	start := time.Now()
	var c *runtimeapi.RuntimeCondition
	framework.Eventually(t, timeout, func() (bool, string) {
		c = networkCondition(t, d)
		return c.GetStatus() == ready, fmt.Sprintf("NetworkReady = %v (reason %q, message %q), want %v", c.GetStatus(), c.GetReason(), c.GetMessage(), ready)
	})
	return c, time.Since(start)
}

// writeAtomic writes a file as installers do: a hidden temporary file
// renamed into place, so the daemon never reads half of it.
func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// editConflist rewrites the conflist at path through edit, on the JSON
// as generic maps.
func editConflist(t *testing.T, path string, edit func(list map[string]any)) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var list map[string]any
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}
	edit(list)
	out, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, out)
	return out
}

// runPodErr runs cfg with the raw client (no t.Fatal, so it can run in
// goroutines), registers the removal of its log directory, and returns
// the pod ID and the error.
func runPodErr(t *testing.T, d *framework.Daemon, cfg *runtimeapi.PodSandboxConfig) (string, error) {
	t.Cleanup(func() { _ = removeLogDir(cfg) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return d.Runtime().RunPodSandbox(ctx, cfg, "")
}

// stopRemove stops and removes pod, failing the test on error.
func stopRemove(t *testing.T, d *framework.Daemon, pod string) {
	t.Helper()
	if err := d.Runtime().StopPodSandbox(testCtx(t), pod); err != nil {
		t.Fatalf("StopPodSandbox(%s): %v", pod, err)
	}
	if err := d.Runtime().RemovePodSandbox(testCtx(t), pod); err != nil {
		t.Fatalf("RemovePodSandbox(%s): %v", pod, err)
	}
}

// checkNothingLeft checks both the daemon's and the network's leftovers.
func checkNothingLeft(t *testing.T, d *framework.Daemon, n *framework.PodNetwork, before framework.Snapshot, netBefore framework.NetSnapshot) {
	t.Helper()
	d.CheckNoLeaks(t, before, 30*time.Second)
	n.CheckNoNetLeaks(t, netBefore, 30*time.Second)
}

// deletePortlessBridge deletes the test bridge when no pod is on it. A
// failed ADD of Debian's bridge plugin (1.1.1) leaves the bridge it
// created without the MAC address it pins on success; once its last
// port goes the kernel zeroes that address, and the plugin's next ADD
// fails setting it back ("could not set bridge's mac: invalid argument").
// That is the plugin's and not the daemon's doing, so the tests that make
// ADD fail on purpose start the next pod on a fresh bridge.
func deletePortlessBridge(t *testing.T, n *framework.PodNetwork) {
	t.Helper()
	if ports := n.BridgePorts(t); len(ports) != 0 {
		t.Fatalf("bridge %s still has ports %v", n.Bridge, ports)
	}
	if out, err := exec.Command("ip", "link", "del", n.Bridge).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
		t.Fatalf("ip link del %s: %v: %s", n.Bridge, err, out)
	}
}

// TestPodToPodTCP runs two pods on the test network: they get distinct
// addresses of its subnet, the address PodSandboxStatus reports is the
// one on eth0 inside the pod (and the one host-local reserved for it),
// and each reaches the other over TCP.
func TestPodToPodTCP(t *testing.T) {
	_, d, n := netPodEnv(t)

	pcA := framework.PodConfig("net-a")
	podA := d.RunPod(t, pcA)
	srvA := d.CreateStarted(t, podA, httpServer("a"), pcA)

	pcB := framework.PodConfig("net-b")
	podB := d.RunPod(t, pcB)
	// B serves raw TCP with nc; A is its client.
	srvB := d.CreateStarted(t, podB, framework.Shell("nc", bb, fmt.Sprintf("exec nc -ll -p %d -e echo hi", serverPort)), pcB)

	ipA, ipB := podIP(t, d, n, podA), podIP(t, d, n, podB)
	if ipA == ipB {
		t.Fatalf("both pods got %s", ipA)
	}
	if got := ifaceIPv4(t, d, srvA); got != ipA {
		t.Errorf("pod A: eth0 has %s inside, PodSandboxStatus says %s", got, ipA)
	}
	if got := ifaceIPv4(t, d, srvB); got != ipB {
		t.Errorf("pod B: eth0 has %s inside, PodSandboxStatus says %s", got, ipB)
	}
	res := n.Reservations()
	if res[ipA] != podA || res[ipB] != podB {
		t.Errorf("host-local reservations %v, want %s -> %s and %s -> %s", res, ipA, podA, ipB, podB)
	}

	// B -> A over HTTP.
	waitFetch(t, d, srvB, net.JoinHostPort(ipA, fmt.Sprint(serverPort)), "/index.html", "hi from a")
	// A -> B over raw TCP.
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		r := d.Exec(t, srvA, 10*time.Second, "sh", "-c", fmt.Sprintf("nc -w 3 %s %d </dev/null", ipB, serverPort))
		return strings.TrimSpace(r.Stdout) == "hi", fmt.Sprintf("nc %s %d from pod A: exit %d, stdout %q, stderr %q", ipB, serverPort, r.ExitCode, r.Stdout, r.Stderr)
	})
	// The host reaches pods directly on the bridge.
	if body, err := hostGet(fmt.Sprintf("http://%s:%d/index.html", ipA, serverPort)); err != nil || body != "hi from a" {
		t.Errorf("GET pod A from the host: %q, %v", body, err)
	}
}

// TestHostPort publishes a pod's port on the node through portmap: pod B
// and the host reach it at <bridge gateway>:<hostPort>, and the rules go
// with the pod.
func TestHostPort(t *testing.T) {
	_, d, n := netPodEnv(t)
	netBefore := n.Snapshot(t)
	hostPort := framework.FreePort(t)

	pcA := framework.PodConfig("hostport-a", withPortMapping(hostPort, serverPort))
	podA := d.RunPod(t, pcA)
	d.CreateStarted(t, podA, httpServer("a"), pcA)
	ipA := podIP(t, d, n, podA)

	pcB := framework.PodConfig("hostport-b")
	podB := d.RunPod(t, pcB)
	cB := d.CreateStarted(t, podB, sleeper("client"), pcB)

	rules := strings.Join(n.IPTablesRules(t), "\n")
	if !strings.Contains(rules, podA) || !strings.Contains(rules, fmt.Sprintf("%s:%d", ipA, serverPort)) {
		t.Errorf("no portmap DNAT of pod %s to %s:%d among the network's iptables rules:\n%s", podA, ipA, serverPort, rules)
	}

	hostAddr := net.JoinHostPort(n.Gateway.String(), fmt.Sprint(hostPort))
	hostURL := "http://" + hostAddr + "/index.html"
	// Pod B -> gateway:hostPort -> pod A (DNAT, then masquerade back
	// onto the bridge).
	waitFetch(t, d, cB, hostAddr, "/index.html", "hi from a")
	// The host -> gateway:hostPort (OUTPUT DNAT).
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		body, err := hostGet(hostURL)
		return err == nil && body == "hi from a", fmt.Sprintf("GET %s from the host: %q, %v", hostURL, body, err)
	})
	// The mapping goes with pod A.
	stopRemove(t, d, podA)
	framework.Eventually(t, 10*time.Second, func() (bool, string) {
		rules := n.IPTablesRules(t)
		for _, r := range rules {
			if strings.Contains(r, podA) || strings.Contains(r, ipA) {
				return false, fmt.Sprintf("iptables rules of removed pod %s remain:\n%s", podA, strings.Join(rules, "\n"))
			}
		}
		return true, ""
	})
	if body, err := hostGet(hostURL); err == nil {
		t.Errorf("GET %s after the pod was removed answered %q", hostURL, body)
	}
	stopRemove(t, d, podB)
	n.CheckNoNetLeaks(t, netBefore, 30*time.Second)
}

// ifbDevices lists the host's ifb interfaces (the bandwidth plugin's
// egress shaping devices).
func ifbDevices(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show", "type", "ifb").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v: %s", err, out)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			names = append(names, name)
		}
	}
	return names
}

// TestBandwidthAnnotation adds Debian's bandwidth plugin to the test
// network: a pod with the kubernetes.io/{ingress,egress}-bandwidth
// annotations is set up (the rates reach the plugin as the bandwidth
// capability: a tbf qdisc on the host veth), a malformed annotation is
// InvalidArgument, and nothing stays after removal.
func TestBandwidthAnnotation(t *testing.T) {
	if _, err := os.Stat("/usr/lib/cni/bandwidth"); err != nil {
		t.Skip("no bandwidth plugin in /usr/lib/cni")
	}
	if _, err := exec.LookPath("tc"); err != nil {
		t.Skip("no tc")
	}
	env := framework.NewPodEnv(t, framework.WithoutStart())
	d := env.Daemon
	n := d.PodNetwork(t)
	editConflist(t, n.ConfFile, func(list map[string]any) {
		list["plugins"] = append(list["plugins"].([]any), map[string]any{"type": "bandwidth", "capabilities": map[string]any{"bandwidth": true}})
	})
	d.Start(t)
	env.PushImage(t, bb)
	before, netBefore, ifbBefore := d.Leaks(t), n.Snapshot(t), ifbDevices(t)

	// Without annotations the plugin passes the pod through.
	plain := d.RunPod(t, framework.PodConfig("bw-none"))
	podIP(t, d, n, plain)

	portsBefore := n.BridgePorts(t)
	pc := framework.PodConfig("bw")
	pc.Annotations = map[string]string{"kubernetes.io/ingress-bandwidth": "10M", "kubernetes.io/egress-bandwidth": "20M"}
	pod := d.RunPod(t, pc)
	podIP(t, d, n, pod)
	var veth string
	for _, p := range n.BridgePorts(t) {
		if !slices.Contains(portsBefore, p) {
			veth = p
		}
	}
	if veth == "" {
		t.Fatalf("no new veth on bridge %s for the pod", n.Bridge)
	}
	out, err := exec.Command("tc", "qdisc", "show", "dev", veth).CombinedOutput()
	if err != nil {
		t.Fatalf("tc qdisc show dev %s: %v: %s", veth, err, out)
	}
	if !strings.Contains(string(out), "tbf") || !strings.Contains(string(out), "10Mbit") {
		t.Errorf("host veth %s of the pod has no 10Mbit tbf qdisc (ingress-bandwidth 10M):\n%s", veth, out)
	}
	if len(ifbDevices(t)) <= len(ifbBefore) {
		t.Errorf("no ifb device for egress-bandwidth 20M: %v", ifbDevices(t))
	}

	bad := framework.PodConfig("bw-bad")
	bad.Annotations = map[string]string{"kubernetes.io/ingress-bandwidth": "lots"}
	_, err = runPodErr(t, d, bad)
	wantCode(t, "RunPodSandbox with ingress-bandwidth=lots", err, codes.InvalidArgument, "kubernetes.io/ingress-bandwidth")

	stopRemove(t, d, pod)
	stopRemove(t, d, plain)
	checkNothingLeft(t, d, n, before, netBefore)
	framework.Eventually(t, 10*time.Second, func() (bool, string) {
		now := ifbDevices(t)
		var extra []string
		for _, i := range now {
			if !slices.Contains(ifbBefore, i) {
				extra = append(extra, i)
			}
		}
		return len(extra) == 0, fmt.Sprintf("ifb devices left: %v", extra)
	})
}

// TestManyPodsNoNetworkLeaks creates 50 pods with hostPorts, 4 at a
// time, checks each holds a veth, a reservation, a cache entry and its
// portmap rules, removes them 4 at a time and checks that none of it is
// left.
func TestManyPodsNoNetworkLeaks(t *testing.T) {
	const pods, parallel = 50, 4
	_, d, n := netPodEnv(t)
	before, netBefore := d.Leaks(t), n.Snapshot(t)

	ids := make([]string, pods)
	ports := make([]int32, pods)
	for i := range ports {
		ports[i] = framework.FreePort(t)
	}
	forEach := func(what string, fn func(i int) error) {
		var wg sync.WaitGroup
		work := make(chan int)
		for range parallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					if err := fn(i); err != nil {
						t.Errorf("%s pod %d: %v", what, i, err)
					}
				}
			}()
		}
		for i := range pods {
			work <- i
		}
		close(work)
		wg.Wait()
	}
	start := time.Now()
	forEach("run", func(i int) error {
		id, err := runPodErr(t, d, framework.PodConfig(fmt.Sprintf("many-%d", i), withPortMapping(ports[i], serverPort)))
		ids[i] = id
		if id != "" {
			t.Cleanup(func() { d.RemovePodAtCleanup(t, id) })
		}
		return err
	})
	t.Logf("50 pods created in %v", time.Since(start))
	if t.Failed() {
		t.FailNow()
	}

	// Not blind: every pod holds each kind of resource checked below.
	res, rules, cache := n.Reservations(), strings.Join(n.IPTablesRules(t), "\n"), n.CacheEntries()
	ips := map[string]string{}
	for i, id := range ids {
		ip := podIP(t, d, n, id)
		if other, dup := ips[ip]; dup {
			t.Errorf("pods %s and %s both have %s", other, id, ip)
		}
		ips[ip] = id
		if res[ip] != id {
			t.Errorf("pod %d (%s): IP %s reserved for %q", i, id, ip, res[ip])
		}
		if !strings.Contains(rules, `\"`+id+`\"`) || !strings.Contains(rules, fmt.Sprintf("--dports %d ", ports[i])) {
			t.Errorf("pod %d (%s): no portmap rule for hostPort %d", i, id, ports[i])
		}
		if !slices.ContainsFunc(cache, func(e string) bool { return strings.Contains(e, id) }) {
			t.Errorf("pod %d (%s): no libcni cache entry", i, id)
		}
	}
	if got := len(n.BridgePorts(t)); got < pods {
		t.Errorf("%d veths on bridge %s with %d pods running", got, n.Bridge, pods)
	}
	if len(before.New(d.Leaks(t))) == 0 {
		t.Fatal("Leaks sees nothing of 50 running pods: the check is blind")
	}

	start = time.Now()
	forEach("remove", func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := d.Runtime().StopPodSandbox(ctx, ids[i]); err != nil {
			return fmt.Errorf("StopPodSandbox: %w", err)
		}
		if err := d.Runtime().RemovePodSandbox(ctx, ids[i]); err != nil {
			return fmt.Errorf("RemovePodSandbox: %w", err)
		}
		return nil
	})
	t.Logf("50 pods removed in %v", time.Since(start))
	checkNothingLeft(t, d, n, before, netBefore)
	// By pod ID too, as an operator would look for them.
	save, _ := exec.Command("iptables-save").CombinedOutput()
	for _, id := range ids {
		if strings.Contains(string(save), id[:12]) {
			t.Errorf("iptables-save still mentions pod %s", id[:12])
		}
	}
}

// TestCrashDuringCNIAdd SIGKILLs the daemon at random points of
// RunPodSandbox around the CNI ADD (before, during, and between ADD and
// the write of the pod's addresses), restarts it and removes every pod:
// no reservation, veth, netns pin, portmap rule or cache entry may remain.
func TestCrashDuringCNIAdd(t *testing.T) {
	const iterations = 10
	_, d, n := netPodEnv(t)
	before, netBefore := d.Leaks(t), n.Snapshot(t)
	hostPort := framework.FreePort(t)

	// Measure where the ADD is: the pod-network RunPodSandbox minus the
	// host-network one.
	var podDur, hostDur []time.Duration
	for i := range 3 {
		for _, hostNet := range []bool{false, true} {
			opts := []framework.PodOpt{withPortMapping(hostPort, serverPort)}
			if hostNet {
				opts = []framework.PodOpt{hostNetwork()}
			}
			start := time.Now()
			id, err := runPodErr(t, d, framework.PodConfig(fmt.Sprintf("crash-cni-warm-%d-%v", i, hostNet), opts...))
			dur := time.Since(start)
			if err != nil {
				t.Fatalf("RunPodSandbox: %v", err)
			}
			if hostNet {
				hostDur = append(hostDur, dur)
			} else {
				podDur = append(podDur, dur)
			}
			stopRemove(t, d, id)
		}
	}
	run, add := median(podDur), median(podDur)-median(hostDur)
	window := min(80*time.Millisecond, run)
	t.Logf("RunPodSandbox takes %v with the pod network, ADD about %v; killing within [0, %v)", run, add, window)

	seen := points{}
	for i := range iterations {
		cfg := framework.PodConfig(fmt.Sprintf("crash-cni-%d", i), withPortMapping(hostPort, serverPort))
		t.Cleanup(func() { _ = removeLogDir(cfg) })
		// Stratified: each iteration gets its own slice of the window.
		delay := time.Duration((float64(i) + rand.Float64()) / iterations * float64(window))
		var id string
		pre, netPre := d.Leaks(t), n.Snapshot(t)
		opErr, returned := killDuring(t, d, delay, func(ctx context.Context, rc runtimeapi.RuntimeServiceClient) error {
			resp, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			id = resp.GetPodSandboxId()
			return err
		})
		atKill := held(pre, d.Leaks(t)) + "; network: " + netHeld(netPre, n.Snapshot(t))
		d.Start(t)
		log := lastStartLog(d)

		pods := listPods(t, d, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"e2e-pod": cfg.Metadata.Name}})
		var point string
		switch {
		case opErr == nil && returned:
			point = "after RunPodSandbox returned"
		case len(pods) == 1:
			point = "after the pod was ready, before the reply"
		case strings.Contains(log, "Releasing the network of a pod that no longer exists"):
			point = "after ADD, record lost (orphan network released)"
		case strings.Contains(log, "creation was interrupted"):
			point = "during the creation (record in Creating state torn down)"
		default:
			point = "before the record was written"
		}
		point += "; held at the kill: " + atKill
		seen[point]++
		t.Logf("iteration %d: kill after %v: RPC error %v; %s", i, delay, opErr, point)

		if opErr == nil {
			if p := pods[id]; p == nil || p.State != runtimeapi.PodSandboxState_SANDBOX_READY {
				t.Errorf("iteration %d: RunPodSandbox returned %s before the kill, but after the restart the pod is %v", i, id, p)
			}
		}
		for _, p := range pods {
			if p.State != runtimeapi.PodSandboxState_SANDBOX_READY {
				t.Errorf("iteration %d: pod %s listed as %s after the restart", i, p.Id, p.State)
				continue
			}
			// A pod listed ready has its address, reserved for it.
			ip := podIP(t, d, n, p.Id)
			if owner := n.Reservations()[ip]; owner != p.Id {
				t.Errorf("iteration %d: pod %s reports %s, reserved for %q", i, p.Id, ip, owner)
			}
		}
		// Kubelet removes what it does not want.
		afterCrashCleanup(t, d, before)
		n.CheckNoNetLeaks(t, netBefore, 30*time.Second)
		if t.Failed() {
			break
		}
	}
	t.Logf("crash points observed around CNI ADD:%s", seen)
}

// netHeld names the network resource kinds now holds beyond pre.
func netHeld(pre, now framework.NetSnapshot) string {
	var kinds []string
	for _, item := range pre.New(now) {
		kind, _, _ := strings.Cut(item, ": ")
		if !slices.Contains(kinds, kind) {
			kinds = append(kinds, kind)
		}
	}
	if len(kinds) == 0 {
		return "nothing"
	}
	sort.Strings(kinds)
	return strings.Join(kinds, "+")
}

// TestNetworkReady follows NetworkReady through the conf dir's life
// without restarting the daemon: empty (not ready), a valid conflist
// copied in (ready within seconds, pods run), a malformed file first by
// name (not ready, naming the file and the parse error; RunPodSandbox
// fails leaving nothing; a pod set up before is still torn down from the
// cache), the file fixed (ready again).
func TestNetworkReady(t *testing.T) {
	env := framework.NewPodEnv(t, framework.WithoutStart())
	d := env.Daemon
	n := d.PodNetwork(t)
	conflist, err := os.ReadFile(n.ConfFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(n.ConfFile); err != nil {
		t.Fatal(err)
	}
	d.Start(t)
	env.PushImage(t, bb)
	before, netBefore := d.Leaks(t), n.Snapshot(t)

	c := networkCondition(t, d)
	if c.GetStatus() || c.GetReason() == "" || c.GetMessage() == "" {
		t.Errorf("empty conf dir: NetworkReady = %v, reason %q, message %q; want false with a reason and a message", c.GetStatus(), c.GetReason(), c.GetMessage())
	}
	t.Logf("empty conf dir: %s: %s", c.GetReason(), c.GetMessage())
	_, err = runPodErr(t, d, framework.PodConfig("no-network"))
	if err == nil {
		t.Errorf("RunPodSandbox succeeded without a network config")
	}
	checkNothingLeft(t, d, n, before, netBefore)

	writeAtomic(t, n.ConfFile, conflist)
	_, took := waitNetworkReady(t, d, true, 5*time.Second)
	t.Logf("NetworkReady %v after the conflist was copied in", took)
	pc := framework.PodConfig("after-ready")
	early := d.RunPod(t, pc)
	earlyIP := podIP(t, d, n, early)
	d.CreateStarted(t, early, sleeper("c"), pc)

	// A malformed file before it by name is what the daemon must use,
	// and report.
	broken := filepath.Join(d.CNIConfDir(), "00-broken.conflist")
	writeAtomic(t, broken, []byte(`{"cniVersion": "1.0.0", "name": "broken", "plugins": [`))
	c, _ = waitNetworkReady(t, d, false, 5*time.Second)
	if c.GetReason() == "" || !strings.Contains(c.GetMessage(), "00-broken.conflist") || !strings.Contains(c.GetMessage(), "unexpected end of JSON input") {
		t.Errorf("malformed first file: reason %q, message %q; want a reason, and the file name and the parse error in the message", c.GetReason(), c.GetMessage())
	}
	t.Logf("malformed file: %s: %s", c.GetReason(), c.GetMessage())
	mid, netMid := d.Leaks(t), n.Snapshot(t)
	_, err = runPodErr(t, d, framework.PodConfig("broken-network"))
	if err == nil {
		t.Errorf("RunPodSandbox succeeded with a malformed network config first in the conf dir")
	} else if !strings.Contains(err.Error(), "00-broken.conflist") {
		t.Errorf("RunPodSandbox error %q does not name the malformed file", err)
	}
	checkNothingLeft(t, d, n, mid, netMid)
	if pods := listPods(t, d, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"e2e-pod": "broken-network"}}); len(pods) != 0 {
		t.Errorf("failed pod listed: %v", pods)
	}
	// The pod set up before goes with the config it was set up with.
	stopRemove(t, d, early)
	if owner, ok := n.Reservations()[earlyIP]; ok {
		t.Errorf("IP %s still reserved for %s after its pod was removed while the config was malformed", earlyIP, owner)
	}
	checkNothingLeft(t, d, n, before, netBefore)

	// Fixed: the file now holds the valid network.
	writeAtomic(t, broken, conflist)
	_, took = waitNetworkReady(t, d, true, 5*time.Second)
	t.Logf("NetworkReady %v after the malformed file was fixed", took)
	again := d.RunPod(t, framework.PodConfig("fixed"))
	podIP(t, d, n, again)
	stopRemove(t, d, again)
	checkNothingLeft(t, d, n, before, netBefore)
}

// TestFailingPlugin uses a network whose bridge plugin has an invalid
// IPAM config: RunPodSandbox fails with the plugin's error, and nothing
// (netns pin, veth, reservation, pod directory, record) is left; the name
// is free for kubelet's retry, and the daemon restarts, with the bad
// config still there and once it is fixed.
func TestFailingPlugin(t *testing.T) {
	env := framework.NewPodEnv(t, framework.WithoutStart())
	d := env.Daemon
	n := d.PodNetwork(t)
	valid, err := os.ReadFile(n.ConfFile)
	if err != nil {
		t.Fatal(err)
	}
	editConflist(t, n.ConfFile, func(list map[string]any) {
		bridge := list["plugins"].([]any)[0].(map[string]any)
		bridge["ipam"].(map[string]any)["ranges"] = []any{[]any{map[string]any{"subnet": "bogus"}}}
	})
	d.Start(t)
	env.PushImage(t, bb)
	before, netBefore := d.Leaks(t), n.Snapshot(t)
	if c := networkCondition(t, d); !c.GetStatus() {
		t.Logf("NetworkReady false with the bogus IPAM config: %s: %s", c.GetReason(), c.GetMessage())
	}

	cfg := framework.PodConfig("bogus-ipam")
	for attempt := range 2 {
		// Subtests, so that a leak found does not hide what follows.
		t.Run(fmt.Sprintf("attempt%d", attempt), func(t *testing.T) {
			_, err := runPodErr(t, d, cfg)
			if err == nil {
				t.Fatalf("RunPodSandbox succeeded with ipam subnet \"bogus\"")
			}
			msg := status.Convert(err).Message()
			t.Logf("RunPodSandbox: %v", err)
			if !strings.Contains(msg, `plugin type="bridge"`) || !strings.Contains(msg, "invalid CIDR address: bogus") {
				t.Errorf("error %q does not carry the bridge plugin's error about subnet \"bogus\"", msg)
			}
			if status.Code(err) == codes.AlreadyExists {
				t.Errorf("the failed pod's name stays reserved: %v", err)
			}
			if pods := listPods(t, d, nil); len(pods) != 0 {
				t.Errorf("pods listed after a failed RunPodSandbox: %v", pods)
			}
			checkNothingLeft(t, d, n, before, netBefore)
		})
	}
	// Nothing of the failed pods may keep the daemon from starting, even
	// with the config still bad: kubelet cannot fix a node whose runtime
	// is down.
	t.Run("restart with the bad config", func(t *testing.T) {
		d.Stop(t)
		d.Start(t)
		checkNothingLeft(t, d, n, before, netBefore)
	})
	t.Run("restart with the config fixed", func(t *testing.T) {
		select {
		case <-d.Exited():
		default:
			d.Stop(t)
		}
		writeAtomic(t, n.ConfFile, valid)
		d.Start(t)
		checkNothingLeft(t, d, n, before, netBefore)
		deletePortlessBridge(t, n)
		pod := d.RunPod(t, cfg)
		podIP(t, d, n, pod)
		stopRemove(t, d, pod)
		checkNothingLeft(t, d, n, before, netBefore)
	})
}

// TestHostNetworkSkipsCNI runs a host-network pod: no CNI call (no
// address, reservation, veth, netns pin), and it sees the node's
// interfaces, the test bridge included.
func TestHostNetworkSkipsCNI(t *testing.T) {
	_, d, n := netPodEnv(t)
	// A pod on the pod network first, so the bridge exists.
	pcNet := framework.PodConfig("on-bridge")
	onBridge := d.RunPod(t, pcNet)
	podIP(t, d, n, onBridge)
	before, netBefore := d.Leaks(t), n.Snapshot(t)

	pc := framework.PodConfig("hostnet-cni", hostNetwork())
	pod := d.RunPod(t, pc)
	cfg := sleeper("c")
	cfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	ctr := d.CreateStarted(t, pod, cfg, pc)

	st := d.PodStatus(t, pod)
	if ip := st.GetStatus().GetNetwork().GetIp(); ip != "" {
		t.Errorf("host-network pod reports IP %q, want none", ip)
	}
	if extra := st.GetStatus().GetNetwork().GetAdditionalIps(); len(extra) != 0 {
		t.Errorf("host-network pod reports additional IPs %v", extra)
	}
	if p := verboseInfo(t, st.GetInfo())["netNamespacePath"]; p != nil && p != "" {
		t.Errorf("host-network pod has a netns path %v", p)
	}
	links := d.ExecOK(t, ctr, "ip", "-o", "link")
	if !strings.Contains(links, " "+n.Bridge+":") {
		t.Errorf("test bridge %s not seen from the host-network pod:\n%s", n.Bridge, links)
	}
	if left := before.New(d.Leaks(t)); slices.ContainsFunc(left, func(s string) bool { return strings.HasPrefix(s, framework.LeakNetNS) }) {
		t.Errorf("host-network pod got a netns pin: %v", left)
	}
	if extra := netBefore.New(n.Snapshot(t)); len(extra) != 0 {
		t.Errorf("host-network pod made the network hold more:\n  %s", strings.Join(extra, "\n  "))
	}
	stopRemove(t, d, pod)
	checkNothingLeft(t, d, n, before, netBefore)
}

// TestUpdateRuntimeConfigPodCIDR sets the node's pod CIDR: well-formed
// ones are accepted, malformed ones are InvalidArgument, and a network
// whose IPAM takes its range from the ipRanges capability allocates from
// the CIDR set last (and cannot allocate before one is set).
func TestUpdateRuntimeConfigPodCIDR(t *testing.T) {
	env := framework.NewPodEnv(t, framework.WithoutStart())
	d := env.Daemon
	n := d.PodNetwork(t)
	// Half of the test subnet, so addresses stay on the test bridge.
	ones, _ := n.Subnet.Mask.Size()
	podCIDR := &net.IPNet{IP: slices.Clone(n.Subnet.IP.To4()), Mask: net.CIDRMask(ones+1, 32)}
	podCIDR.IP[3] |= 128
	editConflist(t, n.ConfFile, func(list map[string]any) {
		bridge := list["plugins"].([]any)[0].(map[string]any)
		bridge["capabilities"] = map[string]any{"ipRanges": true}
		delete(bridge["ipam"].(map[string]any), "ranges")
	})
	d.Start(t)
	env.PushImage(t, bb)
	before, netBefore := d.Leaks(t), n.Snapshot(t)
	update := func(cidr string) error {
		return d.Runtime().UpdateRuntimeConfig(testCtx(t), &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr}})
	}

	// No range yet: host-local has nothing to allocate from. (A
	// subtest, so a leak found does not hide what follows.)
	t.Run("before any pod CIDR", func(t *testing.T) {
		if _, err := runPodErr(t, d, framework.PodConfig("no-cidr")); err == nil {
			t.Errorf("RunPodSandbox succeeded on an ipRanges network before any pod CIDR was set")
		} else {
			t.Logf("RunPodSandbox: %v", err)
		}
		checkNothingLeft(t, d, n, before, netBefore)
	})
	// What follows is checked against what is there now.
	before, netBefore = d.Leaks(t), n.Snapshot(t)
	deletePortlessBridge(t, n)

	for _, bad := range []string{"bogus", "10.0.0.0/33", "10.0.0.0/8,nope"} {
		wantCode(t, fmt.Sprintf("UpdateRuntimeConfig(%q)", bad), update(bad), codes.InvalidArgument)
	}
	for _, good := range []string{"", "10.250.0.0/16,fd00:e2e::/64"} {
		if err := update(good); err != nil {
			t.Errorf("UpdateRuntimeConfig(%q): %v", good, err)
		}
	}
	if err := update(podCIDR.String()); err != nil {
		t.Fatalf("UpdateRuntimeConfig(%q): %v", podCIDR, err)
	}
	// The malformed update after it must not have replaced it.
	wantCode(t, "UpdateRuntimeConfig(bogus)", update("bogus"), codes.InvalidArgument)

	pc := framework.PodConfig("with-cidr")
	pod := d.RunPod(t, pc)
	ip := net.ParseIP(d.PodStatus(t, pod).GetStatus().GetNetwork().GetIp())
	if ip == nil || !podCIDR.Contains(ip) {
		t.Errorf("pod IP %v, want one of the pod CIDR %s", ip, podCIDR)
	}
	ctr := d.CreateStarted(t, pod, sleeper("c"), pc)
	if got := ifaceIPv4(t, d, ctr); ip != nil && got != ip.String() {
		t.Errorf("eth0 has %s inside, status says %s", got, ip)
	}
	stopRemove(t, d, pod)
	checkNothingLeft(t, d, n, before, netBefore)
}

// median of ds (which it sorts).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	if len(ds)%2 == 1 {
		return ds[len(ds)/2]
	}
	return (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
}

// TestCNIAddLatency measures what CNI ADD adds to RunPodSandbox: the
// median latency of 20 host-network pods against 20 pod-network pods,
// interleaved. A measurement, logged, not asserted.
func TestCNIAddLatency(t *testing.T) {
	const rounds = 20
	_, d, n := netPodEnv(t)
	// Warm up: the first pod creates the bridge.
	warm := d.RunPod(t, framework.PodConfig("lat-warm"))
	podIP(t, d, n, warm)
	stopRemove(t, d, warm)

	var hostDur, podDur []time.Duration
	for i := range rounds {
		for _, hostNet := range []bool{i%2 == 0, i%2 != 0} {
			var opts []framework.PodOpt
			if hostNet {
				opts = append(opts, hostNetwork())
			}
			cfg := framework.PodConfig(fmt.Sprintf("lat-%d-%v", i, hostNet), opts...)
			start := time.Now()
			id, err := runPodErr(t, d, cfg)
			dur := time.Since(start)
			if err != nil {
				t.Fatalf("RunPodSandbox: %v", err)
			}
			if hostNet {
				hostDur = append(hostDur, dur)
			} else {
				podDur = append(podDur, dur)
			}
			stopRemove(t, d, id)
		}
	}
	h, p := median(hostDur), median(podDur)
	t.Logf("median RunPodSandbox: host network %v, pod network %v; the pod network (netns + CNI ADD of bridge, host-local, portmap) adds %v (%d pods each)", h, p, p-h, rounds)
	t.Logf("host network: %v", hostDur)
	t.Logf("pod network:  %v", podDur)
}
