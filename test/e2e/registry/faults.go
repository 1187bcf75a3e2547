//go:build e2e

package registry

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// DownURL returns http://127.0.0.1:<port> where connections are refused:
// a socket is bound to the port but never listens, which keeps the port
// reserved (no other test can start serving there) until the test ends.
func DownURL(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

// ErrorServer answers every request with a fixed status and counts them.
type ErrorServer struct {
	URL      string
	Host     string
	requests atomic.Int64
}

// Requests is how many requests were answered.
func (s *ErrorServer) Requests() int64 { return s.requests.Load() }

// StartErrorServer serves status (e.g. 500) to everything until the test
// ends.
func StartErrorServer(t testing.TB, status int) *ErrorServer {
	t.Helper()
	s := &ErrorServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		http.Error(w, `{"errors":[{"code":"UNKNOWN","message":"e2e: injected failure"}]}`, status)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	s.Host = strings.TrimPrefix(srv.URL, "http://")
	return s
}

// Request is one request a Proxy forwarded.
type Request struct {
	Method string
	Path   string
	Range  string // the Range header, "" if none
}

// Proxy is a reverse proxy in front of a registry that records requests
// and can stall a blob download after a given number of bytes, so a test
// can act (e.g. kill the daemon) while a pull is provably in flight
// without guessing with sleeps.
type Proxy struct {
	URL  string
	Host string

	mu       sync.Mutex
	requests []Request
	stalls   []*Stall
}

// Stall is an armed stall of one blob download.
type Stall struct {
	digest  digest.Digest
	after   int64
	used    bool
	reached chan struct{}
	release chan struct{}
	once    sync.Once

	reachedOnce sync.Once
}

// Reached is closed once the proxy has sent `after` bytes of the blob and
// holds the rest back.
func (s *Stall) Reached() <-chan struct{} { return s.reached }

// Release lets the held download continue (a no-op if already released).
func (s *Stall) Release() { s.once.Do(func() { close(s.release) }) }

// StartProxy proxies to upstream (http://host:port) until the test ends.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	// Flush every write so the client has received what was sent when a
	// stall is reported.
	rp.FlushInterval = -1
	rp.ModifyResponse = func(resp *http.Response) error {
		if s := p.stallFor(resp.Request); s != nil && resp.StatusCode/100 == 2 {
			resp.Body = &stallingBody{ReadCloser: resp.Body, stall: s}
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.requests = append(p.requests, Request{Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range")})
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	// Held downloads must be released before Close, which waits for
	// in-flight requests.
	t.Cleanup(func() {
		p.mu.Lock()
		for _, s := range p.stalls {
			s.Release()
		}
		p.mu.Unlock()
		srv.CloseClientConnections()
		srv.Close()
	})
	p.URL = srv.URL
	p.Host = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// StallBlob arms a one-shot stall: the next GET of blob d sends after bytes
// and then holds until Release (or the end of the test). Later downloads
// of d pass through.
func (p *Proxy) StallBlob(d digest.Digest, after int64) *Stall {
	s := &Stall{digest: d, after: after, reached: make(chan struct{}), release: make(chan struct{})}
	p.mu.Lock()
	p.stalls = append(p.stalls, s)
	p.mu.Unlock()
	return s
}

func (p *Proxy) stallFor(r *http.Request) *Stall {
	if r.Method != http.MethodGet {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.stalls {
		if !s.used && strings.HasSuffix(r.URL.Path, "/blobs/"+s.digest.String()) {
			s.used = true
			return s
		}
	}
	return nil
}

// Requests returns the requests forwarded so far.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

// BlobGets returns the GET requests for blob d.
func (p *Proxy) BlobGets(d digest.Digest) []Request {
	var out []Request
	for _, r := range p.Requests() {
		if r.Method == http.MethodGet && strings.HasSuffix(r.Path, "/blobs/"+d.String()) {
			out = append(out, r)
		}
	}
	return out
}

type stallingBody struct {
	io.ReadCloser
	stall *Stall
	sent  int64
}

func (b *stallingBody) Read(p []byte) (int, error) {
	if left := b.stall.after - b.sent; left <= 0 {
		b.stall.reachedOnce.Do(func() { close(b.stall.reached) })
		<-b.stall.release
	} else if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := b.ReadCloser.Read(p)
	b.sent += int64(n)
	return n, err
}
