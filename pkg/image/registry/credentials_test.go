package registry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry/registrytest"
)

// clientCertPEM returns a self-signed client certificate and its key.
func clientCertPEM(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "cri-runtimed test client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// TestCredentialsStayWithTheRegistry checks that neither the registry's
// credentials, nor hosts.toml headers, nor its client certificate go
// anywhere the registry's answers point that is not the registry itself
// over the scheme it was configured with.
func TestCredentialsStayWithTheRegistry(t *testing.T) {
	const user, pass = "alice", "s3cret"
	ctx := context.Background()

	t.Run("redirect from https to http on the same host", func(t *testing.T) {
		reg := registrytest.New(t, registrytest.WithDowngradeRedirects(), registrytest.WithBasicAuth(user, pass))
		img := pushImage(t, reg, repo, "latest")
		reg.RedirectBlobs(true)
		toml := fmt.Sprintf("server = %q\nca = \"ca.crt\"\n[header]\n  x-secret = \"hosts-toml-secret\"\n", reg.URL())
		dir := hostsDir(t, reg.Host(), toml, map[string][]byte{"ca.crt": reg.CertPEM()})
		r := repository(t, fastClient(dir), reg.Host()+"/"+repo, Credentials{Username: user, Password: pass})
		got, err := readAll(t, r, img.layer, 0)
		if err != nil || len(got) != len(img.layerData) {
			t.Fatalf("blob: %d bytes, %v", len(got), err)
		}
		plain := 0
		for _, q := range reg.Requests() {
			if q.Server != "redirect" {
				continue
			}
			plain++
			if q.TLS {
				t.Errorf("the redirect target was reached over TLS: the test does not downgrade")
			}
			if q.Authorization != "" || q.Header.Get("X-Secret") != "" {
				t.Errorf("plain-http redirect target got Authorization %q, X-Secret %q", q.Authorization, q.Header.Get("X-Secret"))
			}
		}
		if plain == 0 {
			t.Fatal("the blob was not fetched through the downgrading redirect")
		}
	})

	t.Run("http realm of an https registry", func(t *testing.T) {
		reg := registrytest.New(t, registrytest.WithTLS(), registrytest.WithTokenAuth(registrytest.TokenAuth{
			Username: user, Password: pass, SeparateRealm: true, PlainRealm: true,
		}))
		pushImage(t, reg, repo, "latest")
		r := repository(t, fastClient(reg.HostsDir()), reg.Host()+"/"+repo, Credentials{Username: user, Password: pass})
		_, err := r.Resolve(ctx, named(t, reg.Host()+"/"+repo+":latest"))
		if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "plain http") {
			t.Fatalf("Resolve = %v, want ErrUnauthorized naming the plain http realm", err)
		}
		if n := countRequests(reg, "token", ""); n != 0 {
			t.Errorf("%d token requests reached the plain http realm, want none", n)
		}
	})

	t.Run("http realm of an http registry", func(t *testing.T) {
		reg := registrytest.New(t, registrytest.WithTokenAuth(registrytest.TokenAuth{
			Username: user, Password: pass, SeparateRealm: true,
		}))
		pushImage(t, reg, repo, "latest")
		r := repository(t, fastClient(reg.HostsDir()), reg.Host()+"/"+repo, Credentials{Username: user, Password: pass})
		if _, err := r.Resolve(ctx, named(t, reg.Host()+"/"+repo+":latest")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("client certificate only to the registry", func(t *testing.T) {
		reg := registrytest.New(t, registrytest.WithTLS(), registrytest.WithTokenAuth(registrytest.TokenAuth{
			Username: user, Password: pass, SeparateRealm: true,
		}))
		img := pushImage(t, reg, repo, "latest")
		reg.RedirectBlobs(true)
		cert, key := clientCertPEM(t)
		toml := fmt.Sprintf("server = %q\nca = \"ca.crt\"\nclient = [[\"client.cert\", \"client.key\"]]\n", reg.URL())
		dir := hostsDir(t, reg.Host(), toml, map[string][]byte{"ca.crt": reg.CertPEM(), "client.cert": cert, "client.key": key})
		r := repository(t, fastClient(dir), reg.Host()+"/"+repo, Credentials{Username: user, Password: pass})
		if _, err := r.Resolve(ctx, named(t, reg.Host()+"/"+repo+":latest")); err != nil {
			t.Fatal(err)
		}
		if _, err := readAll(t, r, img.layer, 0); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, q := range reg.Requests() {
			seen[q.Server] = true
			if want := q.Server == "registry"; q.ClientCert != want {
				t.Errorf("%s %s on server %q: client certificate sent = %v, want %v", q.Method, q.Path, q.Server, q.ClientCert, want)
			}
		}
		for _, s := range []string{"registry", "token", "redirect"} {
			if !seen[s] {
				t.Errorf("no request reached the %s server: the test does not cover it", s)
			}
		}
	})
}
