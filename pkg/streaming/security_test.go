package streaming

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeClock is a settable time source.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func status(t *testing.T, client *http.Client, u string) int {
	t.Helper()
	r, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	return r.StatusCode
}

// TestURLExpiry: a URL served within its minute reaches the library; one
// used after it is refused, and stays refused; a URL never handed out is
// refused.
func TestURLExpiry(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	s, err := New(Config{Addr: "127.0.0.1:0"}, nopRuntime{}, WithClock(clock.now))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	get := func() string {
		resp, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{"sh"}, Stdout: true})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetUrl()
	}
	fresh := get()
	clock.advance(tokenTTL - time.Second)
	// Not an upgrade: the library answers 400, after consuming the token.
	if got := status(t, http.DefaultClient, fresh); got != http.StatusBadRequest {
		t.Errorf("URL used within its lifetime: status %d, want %d from the library", got, http.StatusBadRequest)
	}
	stale := get()
	clock.advance(tokenTTL + time.Second)
	for i := range 2 {
		if got := status(t, http.DefaultClient, stale); got != http.StatusNotFound {
			t.Errorf("use %d of an expired URL: status %d, want %d", i+1, got, http.StatusNotFound)
		}
	}
	forged := s.URL() + "/exec/abcdefgh"
	if got := status(t, http.DefaultClient, forged); got != http.StatusNotFound {
		t.Errorf("URL never handed out: status %d, want %d", got, http.StatusNotFound)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key to dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "streaming test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestNonLoopbackAddress: a server reachable beyond loopback warns at
// start unless it serves TLS; with TLS its URLs are https and work.
func TestNonLoopbackAddress(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	for _, tc := range []struct {
		name     string
		cfg      Config
		warn     bool
		scheme   string
		insecure bool
	}{
		{name: "loopback without TLS", cfg: Config{Addr: "127.0.0.1:0"}, scheme: "http"},
		{name: "all addresses without TLS", cfg: Config{Addr: "0.0.0.0:0"}, warn: true, scheme: "http"},
		{name: "all addresses with TLS", cfg: Config{Addr: "0.0.0.0:0", TLSCertFile: certFile, TLSKeyFile: keyFile}, scheme: "https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var logged []string
			log := funcr.New(func(prefix, args string) {
				mu.Lock()
				defer mu.Unlock()
				logged = append(logged, args)
			}, funcr.Options{})
			s, err := New(tc.cfg, nopRuntime{}, WithLogger(logr.Logger(log)))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			mu.Lock()
			warned := strings.Contains(strings.Join(logged, "\n"), "without TLS")
			mu.Unlock()
			if warned != tc.warn {
				t.Errorf("warned about the address = %v, want %v; log:\n%s", warned, tc.warn, strings.Join(logged, "\n"))
			}
			resp, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{"sh"}, Stdout: true})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(resp.GetUrl(), tc.scheme+"://") {
				t.Fatalf("URL %s, want scheme %s", resp.GetUrl(), tc.scheme)
			}
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			if got := status(t, client, resp.GetUrl()); got != http.StatusBadRequest {
				t.Errorf("GET %s: status %d, want %d from the library", resp.GetUrl(), got, http.StatusBadRequest)
			}
		})
	}
}
