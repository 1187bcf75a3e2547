package streaming

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

type nopRuntime struct{}

func (nopRuntime) Exec(context.Context, string, []string, io.Reader, io.WriteCloser, io.WriteCloser, bool, <-chan remotecommand.TerminalSize) error {
	return nil
}

func (nopRuntime) Attach(context.Context, string, io.Reader, io.WriteCloser, io.WriteCloser, bool, <-chan remotecommand.TerminalSize) error {
	return nil
}

func (nopRuntime) PortForward(context.Context, string, int32, io.ReadWriteCloser) error { return nil }

// TestServerURLs: a free port is picked and used in the URLs, a URL's
// token serves once, and Close stops the listener.
func TestServerURLs(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0"}, nopRuntime{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{"sh"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.GetUrl(), s.URL()) || strings.HasSuffix(s.URL(), ":0") {
		t.Fatalf("url %q, server %q", resp.GetUrl(), s.URL())
	}
	// A plain GET is not an upgrade, but it consumes the token; the second
	// request finds none.
	for i, want := range []int{http.StatusBadRequest, http.StatusNotFound} {
		r, err := http.Get(resp.GetUrl())
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if i == 1 && r.StatusCode != want {
			t.Errorf("second use: status %d, want %d", r.StatusCode, want)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(resp.GetUrl()); err == nil {
		t.Error("server still answers after Close")
	}
}

// tcpPair returns two connected TCP sockets: a stream with half-close.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestForwardPortHost: forwarding on the host's loopback (a host-network
// pod), a request-then-response exchange with a half-close, and a closed
// port reported as an error.
func TestForwardPortHost(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c) // until the forwarded half-close
		_, _ = c.Write([]byte("got " + string(b)))
	}()
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	client, server := tcpPair(t)
	defer client.Close()
	done := make(chan error, 1)
	go func() { done <- ForwardPort(context.Background(), "", port, server) }()
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = client.CloseWrite()
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(io.LimitReader(client, 8))
	if got := string(b); got != "got ping" {
		t.Errorf("response %q", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ForwardPort: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ForwardPort did not return")
	}
	server.Close()

	// A port nobody listens on.
	ln2, _ := net.Listen("tcp4", "127.0.0.1:0")
	closed := int32(ln2.Addr().(*net.TCPAddr).Port)
	ln2.Close()
	c2, s2 := tcpPair(t)
	defer c2.Close()
	defer s2.Close()
	if err := ForwardPort(context.Background(), "", closed, s2); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("closed port: %v", err)
	}
}

// TestCloseWithOpenConnection: a connection http.Server.Close leaves open
// (one hijacked for a stream) is closed by Close, which returns.
func TestCloseWithOpenConnection(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0"}, nopRuntime{})
	if err != nil {
		t.Fatal(err)
	}
	server, client := net.Pipe()
	defer client.Close()
	s.mu.Lock()
	s.conns[&trackedConn{Conn: server, s: s}] = struct{}{}
	s.mu.Unlock()
	closed := make(chan error, 1)
	go func() { closed <- s.Close(context.Background()) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return with a stream's connection open")
	}
	if n, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read from the stream's connection after Close = %d, %v; want EOF", n, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) != 0 {
		t.Fatalf("%d connections still tracked after Close", len(s.conns))
	}
}
