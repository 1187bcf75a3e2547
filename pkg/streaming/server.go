package streaming

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/go-logr/logr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	cristreaming "k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/klog/v2"
)

// readHeaderTimeout bounds a client that connects and never sends its
// request, so it cannot hold a connection forever.
const readHeaderTimeout = 30 * time.Second

// Config configures the streaming server.
type Config struct {
	// Addr is host:port to listen on; port 0 picks a free port.
	Addr string
	// TLSCertFile and TLSKeyFile, both set, serve https.
	TLSCertFile, TLSKeyFile string
	// IdleTimeout closes a stream connection idle for that long.
	IdleTimeout time.Duration
	// CreationTimeout bounds how long a client may take to open the
	// streams of a SPDY connection.
	CreationTimeout time.Duration
}

// Runtime is what the server calls for each stream.
type Runtime = cristreaming.Runtime

// Option configures New.
type Option func(*options)

type options struct {
	now func() time.Time
	log logr.Logger
}

// WithClock sets the time source of URL expiry (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLogger sets where the server logs (klog's by default).
func WithLogger(l logr.Logger) Option { return func(o *options) { o.log = l } }

// Server is a running streaming server.
type Server struct {
	lib    cristreaming.Server
	http   *http.Server
	ln     net.Listener
	url    *url.URL
	tokens *tokens

	served chan struct{} // closed when Serve returned

	mu       sync.Mutex
	closed   bool
	conns    map[net.Conn]struct{} // every accepted connection, hijacked too
	handlers sync.WaitGroup        // requests being served
}

// New listens on cfg.Addr and serves streams for rt until Close.
func New(cfg Config, rt Runtime, opts ...Option) (*Server, error) {
	o := options{now: time.Now, log: klog.Background()}
	for _, opt := range opts {
		opt(&o)
	}
	var tlsCfg *tls.Config
	switch {
	case cfg.TLSCertFile != "" && cfg.TLSKeyFile != "":
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("streaming server: load TLS key pair: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	case cfg.TLSCertFile != "" || cfg.TLSKeyFile != "":
		return nil, errors.New("streaming server: tls cert and key must be set together")
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("streaming server: %w", err)
	}
	base := &url.URL{Scheme: "http", Host: urlHost(ln.Addr().(*net.TCPAddr))}
	if tlsCfg != nil {
		base.Scheme = "https"
	}
	libCfg := cristreaming.DefaultConfig
	libCfg.Addr = ln.Addr().String()
	// The URL is fixed here, from the bound port: the library would only
	// learn the port of an address ending in :0 inside its own Start.
	libCfg.BaseURL = base
	libCfg.TLSConfig = tlsCfg
	if cfg.IdleTimeout > 0 {
		libCfg.StreamIdleTimeout = cfg.IdleTimeout
	}
	if cfg.CreationTimeout > 0 {
		libCfg.StreamCreationTimeout = cfg.CreationTimeout
	}
	lib, err := cristreaming.NewServer(libCfg, rt)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("streaming server: %w", err)
	}
	s := &Server{lib: lib, url: base, tokens: newTokens(o.now), served: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	s.ln = &trackingListener{Listener: ln, s: s}
	if tlsCfg != nil {
		s.ln = tls.NewListener(s.ln, tlsCfg)
	}
	s.http = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: readHeaderTimeout,
		ErrorLog:          nil,
	}
	go func() { // ends when Close closes the listener
		defer close(s.served)
		if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Streaming server stopped")
		}
	}()
	o.log.Info("Serving streams", "url", base.String())
	if addr := ln.Addr().(*net.TCPAddr); tlsCfg == nil && !addr.IP.IsLoopback() {
		// Whoever reaches the port and learns a URL (a token in clear on
		// the network) gets a shell in the container.
		o.log.Info("WARNING: the streaming server listens beyond loopback without TLS: exec, attach and port-forward streams and their URLs travel in clear; set streaming.tls_cert_file and streaming.tls_key_file, or a loopback streaming.address",
			"address", addr.String())
	}
	return s, nil
}

// urlHost is the host:port clients are told to connect to. An unspecified
// listen address is reached on loopback: kubelet, which proxies the
// streams, runs on the same node.
func urlHost(a *net.TCPAddr) string {
	ip := a.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(a.Port))
}

// URL is the server's base URL.
func (s *Server) URL() string { return s.url.String() }

// GetExec returns a single-use URL for an exec.
func (s *Server) GetExec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	resp, err := s.lib.GetExec(req)
	if err == nil {
		s.tokens.issue(resp.GetUrl())
	}
	return resp, err
}

// GetAttach returns a single-use URL for an attach.
func (s *Server) GetAttach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	resp, err := s.lib.GetAttach(req)
	if err == nil {
		s.tokens.issue(resp.GetUrl())
	}
	return resp, err
}

// GetPortForward returns a single-use URL for a port forward.
func (s *Server) GetPortForward(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	resp, err := s.lib.GetPortForward(req)
	if err == nil {
		s.tokens.issue(resp.GetUrl())
	}
	return resp, err
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "streaming server is shutting down", http.StatusServiceUnavailable)
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()
	if !s.tokens.valid(r.URL.Path) {
		http.Error(w, "unknown or expired streaming URL", http.StatusNotFound)
		return
	}
	s.lib.ServeHTTP(w, r)
}

// Close stops the server and ends every stream: http.Server.Close does
// not close connections that were hijacked for SPDY or WebSocket, so they
// are closed here, which makes their handlers return. It waits for the
// handlers until ctx ends.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.http.Close()
	<-s.served
	// Closed outside the lock: a tracked connection's Close takes it to
	// forget itself.
	s.mu.Lock()
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	done := make(chan struct{})
	go func() { s.handlers.Wait(); close(done) }() // ends when the handlers do
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("streaming server: waiting for streams to end: %w", ctx.Err())
	}
	return err
}

// trackingListener records accepted connections until they are closed.
type trackingListener struct {
	net.Listener
	s *Server
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, s: l.s}
	l.s.mu.Lock()
	closed := l.s.closed
	if !closed {
		l.s.conns[tc] = struct{}{}
	}
	l.s.mu.Unlock()
	if closed {
		c.Close()
		return nil, net.ErrClosed
	}
	return tc, nil
}

type trackedConn struct {
	net.Conn
	s    *Server
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}
