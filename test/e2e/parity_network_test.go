//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// TestParityContainerPortOnlyMapping covers critest's "runtime should
// support port mapping with only container port": a pod whose port
// mapping has no host port runs, and its server answers on the pod IP.
func TestParityContainerPortOnlyMapping(t *testing.T) {
	_, d, n := netPodEnv(t)
	pc := framework.PodConfig("ctrport", withPortMapping(0, serverPort))
	pod := d.RunPod(t, pc)
	d.CreateStarted(t, pod, httpServer("ctrport"), pc)
	ip := podIP(t, d, n, pod)
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		body, err := hostGet(fmt.Sprintf("http://%s:%d/index.html", ip, serverPort))
		return err == nil && body == "hi from ctrport", fmt.Sprintf("GET the pod from the host: %q, %v", body, err)
	})
}

// parityFreeLoopbackPort is a TCP port free on the host's 127.0.0.1 at
// the time of the call.
func parityFreeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestParityPortForwardHostNetwork covers critest's "runtime should
// support portforward in host network": PortForward of a host-network pod
// reaches a server of that pod listening on the node's loopback only.
func TestParityPortForwardHostNetwork(t *testing.T) {
	_, d := podEnv(t)
	port := parityFreeLoopbackPort(t)
	pc := framework.PodConfig("pfhost", hostNetwork())
	pod := d.RunPod(t, pc)
	srv := framework.Shell("httpd", bb, fmt.Sprintf(
		"mkdir -p /tmp/www && echo 'hi from the host network' > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:%d -h /tmp/www", port))
	srv.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	d.CreateStarted(t, pod, srv, pc)
	// The server must listen before the first forwarded connection:
	// client-go's forwarder ends at the first stream the pod refuses, so
	// a GET racing httpd's bind (a loaded node) would kill the forward.
	// The pod is on the host network, so the host sees the listener.
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil, fmt.Sprintf("httpd listening on the node's loopback: %v", err)
	})

	resp, err := d.RuntimeClient().PortForward(testCtx(t), &runtimeapi.PortForwardRequest{PodSandboxId: pod, Port: []int32{int32(port)}})
	if err != nil {
		t.Fatalf("PortForward: %v", err)
	}
	u, err := url.Parse(resp.GetUrl())
	if err != nil {
		t.Fatal(err)
	}
	transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fwDone := make(chan error, 1)
	go func() { fwDone <- fw.ForwardPorts() }()
	defer close(stop)
	select {
	case <-ready:
	case err := <-fwDone:
		t.Fatalf("ForwardPorts: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("port forward not ready")
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) != 1 {
		t.Fatalf("forwarded ports %v, %v", ports, err)
	}
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		body, err := hostGet(fmt.Sprintf("http://127.0.0.1:%d/index.html", ports[0].Local))
		return err == nil && body == "hi from the host network", fmt.Sprintf("GET through the port forward: %q, %v", body, err)
	})
}
