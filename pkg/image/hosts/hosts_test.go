package hosts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate and its key as PEM files.
func writeCert(t *testing.T, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	if keyPath == certPath {
		certPEM = append(certPEM, keyPEM...)
	} else if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// summary is the comparable part of a Host.
type summary struct {
	URL          string
	Caps         Capabilities
	TLS          bool
	Skip         bool
	CAs          bool
	Certs        int
	Header       map[string][]string
	OverridePath bool
	Server       bool
}

func summarize(hs []Host) []summary {
	var out []summary
	for _, h := range hs {
		s := summary{URL: h.URL(), Caps: h.Capabilities, TLS: h.TLS != nil, OverridePath: h.OverridePath, Server: h.Server}
		if h.TLS != nil {
			s.Skip = h.TLS.InsecureSkipVerify
			s.CAs = h.TLS.RootCAs != nil
			s.Certs = len(h.TLS.Certificates)
		}
		if len(h.Header) > 0 {
			s.Header = h.Header
		}
		out = append(out, s)
	}
	return out
}

const all = CapabilityPull | CapabilityResolve | CapabilityPush
const pr = CapabilityPull | CapabilityResolve

func TestParse(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	writeCert(t, filepath.Join(dir, "client.cert"), filepath.Join(dir, "client.key"))
	writeCert(t, filepath.Join(dir, "combined.pem"), filepath.Join(dir, "combined.pem"))

	tests := []struct {
		name   string
		domain string
		file   string
		want   []summary
	}{
		{
			name:   "empty file gives the server only",
			domain: "example.com",
			want:   []summary{{URL: "https://example.com/v2", Caps: all, TLS: true, Server: true}},
		},
		{
			name:   "docker.io default server",
			domain: "docker.io",
			file:   `[host."https://mirror.example.com"]`,
			want: []summary{
				{URL: "https://mirror.example.com/v2", Caps: pr, TLS: true},
				{URL: "https://registry-1.docker.io/v2", Caps: all, TLS: true, Server: true},
			},
		},
		{
			name:   "all keys, file order kept, relative paths",
			domain: "docker.io",
			file: `
server = "https://registry-1.docker.io"
ca = "ca.crt"
skip_verify = false
capabilities = ["pull", "resolve"]
[header]
  x-top = "t"

[host."https://zzz.example.com:5000"]
  capabilities = ["pull"]
  skip_verify = true
  ca = ["ca.crt"]
  client = [["client.cert", "client.key"]]
  [host."https://zzz.example.com:5000".header]
    x-custom = "value"
    x-list = ["a", "b"]

[host."http://aaa.example.com/custom/api"]
  override_path = true

[host."https://mmm.example.com/prefix"]
  client = "combined.pem"

[host."https://nnn.example.com"]
  client = ["client.cert", "client.key"]
`,
			want: []summary{
				{URL: "https://zzz.example.com:5000/v2", Caps: CapabilityPull, TLS: true, Skip: true, CAs: true, Certs: 1,
					Header: map[string][]string{"X-Custom": {"value"}, "X-List": {"a", "b"}}},
				{URL: "http://aaa.example.com/custom/api", Caps: pr, OverridePath: true},
				{URL: "https://mmm.example.com/prefix/v2", Caps: pr, TLS: true, Certs: 1},
				{URL: "https://nnn.example.com/v2", Caps: pr, TLS: true, Certs: 1},
				{URL: "https://registry-1.docker.io/v2", Caps: pr, TLS: true, CAs: true, Server: true,
					Header: map[string][]string{"X-Top": {"t"}}},
			},
		},
		{
			name:   "dotted keys and inline tables keep order",
			domain: "r.example.com",
			file: `
server = "http://r.example.com:8080"
host."https://b.example.com".capabilities = ["resolve"]
host."https://a.example.com".capabilities = ["pull"]
`,
			want: []summary{
				{URL: "https://b.example.com/v2", Caps: CapabilityResolve, TLS: true},
				{URL: "https://a.example.com/v2", Caps: CapabilityPull, TLS: true},
				{URL: "http://r.example.com:8080/v2", Caps: all, Server: true},
			},
		},
		{
			name:   "inline host table keeps order",
			domain: "r.example.com",
			file:   `host = { "https://z.example.com" = { capabilities = ["pull"] }, "c.example.com" = {} }`,
			want: []summary{
				{URL: "https://z.example.com/v2", Caps: CapabilityPull, TLS: true},
				{URL: "https://c.example.com/v2", Caps: pr, TLS: true},
				{URL: "https://r.example.com/v2", Caps: all, TLS: true, Server: true},
			},
		},
		{
			name:   "[host] table with quoted keys keeps order",
			domain: "r.example.com",
			file:   "[host]\n\"https://y.example.com\" = {}\n\"https://b.example.com\" = {}\n",
			want: []summary{
				{URL: "https://y.example.com/v2", Caps: pr, TLS: true},
				{URL: "https://b.example.com/v2", Caps: pr, TLS: true},
				{URL: "https://r.example.com/v2", Caps: all, TLS: true, Server: true},
			},
		},
		{
			name:   "path ending in v2 is not doubled",
			domain: "x",
			file:   `server = "https://x.example.com/v2/"`,
			want:   []summary{{URL: "https://x.example.com/v2", Caps: all, TLS: true, Server: true}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs, err := Parse([]byte(tc.file), dir, tc.domain)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := summarize(hs); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, file, want string
	}{
		{"syntax", "server = \n", "line 1"},
		{"server type", "server = 1", "server"},
		{"bad scheme", `server = "ftp://x"`, "scheme must be http or https"},
		{"bad capability", "[host.\"https://m\"]\ncapabilities = [\"pull\", \"fly\"]", `unknown capability "fly"`},
		{"skip_verify type", "[host.\"https://m\"]\nskip_verify = \"yes\"", "skip_verify: expected a boolean"},
		{"ca list type", `ca = [1]`, "ca: expected a string"},
		{"missing ca", `ca = "nope.crt"`, "nope.crt"},
		{"missing client", `client = "nope.pem"`, "nope.pem"},
		{"header type", "[header]\nx = 1", `header "x"`},
		{"host not a table", `host = "x"`, "host: expected a table"},
		{"client triple", `client = [["a", "b", "c"]]`, "expected [cert, key]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file), dir, "example.com")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "docker.io", "hosts.toml"), `[host."https://mirror.example.com"]`)
	writeFile(t, filepath.Join(dir, "reg.example.com_5000_", "hosts.toml"), `server = "http://reg.example.com:5000"`)
	writeFile(t, filepath.Join(dir, "bad.example.com", "hosts.toml"), `server = [`)
	if err := os.MkdirAll(filepath.Join(dir, "legacy.example.com"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeCert(t, filepath.Join(dir, "legacy.example.com", "ca.crt"), filepath.Join(dir, "legacy.example.com", "ca-key.pem"))
	writeCert(t, filepath.Join(dir, "legacy.example.com", "client.cert"), filepath.Join(dir, "legacy.example.com", "client.key"))
	if err := os.MkdirAll(filepath.Join(dir, "empty.example.com"), 0o755); err != nil {
		t.Fatal(err)
	}

	noDefault := dir
	withDefault := t.TempDir()
	writeFile(t, filepath.Join(withDefault, "_default", "hosts.toml"), `[host."https://catchall.example.com"]`)

	tests := []struct {
		name, dir, domain string
		want              []summary
	}{
		{"no dir", "", "docker.io", []summary{{URL: "https://registry-1.docker.io/v2", Caps: all, TLS: true, Server: true}}},
		{"domain dir", noDefault, "docker.io", []summary{
			{URL: "https://mirror.example.com/v2", Caps: pr, TLS: true},
			{URL: "https://registry-1.docker.io/v2", Caps: all, TLS: true, Server: true},
		}},
		{"host_port_ dir", noDefault, "reg.example.com:5000", []summary{{URL: "http://reg.example.com:5000/v2", Caps: all, Server: true}}},
		{"unconfigured", noDefault, "quay.io", []summary{{URL: "https://quay.io/v2", Caps: all, TLS: true, Server: true}}},
		{"localhost falls back to http", noDefault, "localhost:5000", []summary{
			{URL: "https://localhost:5000/v2", Caps: all, TLS: true, Server: true},
			{URL: "http://localhost:5000/v2", Caps: all, Server: true},
		}},
		{"loopback ip", "", "127.0.0.1:5000", []summary{
			{URL: "https://127.0.0.1:5000/v2", Caps: all, TLS: true, Server: true},
			{URL: "http://127.0.0.1:5000/v2", Caps: all, Server: true},
		}},
		{"ipv6 loopback", "", "[::1]:5000", []summary{
			{URL: "https://[::1]:5000/v2", Caps: all, TLS: true, Server: true},
			{URL: "http://[::1]:5000/v2", Caps: all, Server: true},
		}},
		{"legacy certs", noDefault, "legacy.example.com", []summary{{URL: "https://legacy.example.com/v2", Caps: all, TLS: true, CAs: true, Certs: 1, Server: true}}},
		{"empty domain dir", noDefault, "empty.example.com", []summary{{URL: "https://empty.example.com/v2", Caps: all, TLS: true, Server: true}}},
		{"_default", withDefault, "quay.io", []summary{
			{URL: "https://catchall.example.com/v2", Caps: pr, TLS: true},
			{URL: "https://quay.io/v2", Caps: all, TLS: true, Server: true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs, err := Load(tc.dir, tc.domain)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := summarize(hs); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}

	t.Run("malformed file names the file", func(t *testing.T) {
		_, err := Load(dir, "bad.example.com")
		want := filepath.Join(dir, "bad.example.com", "hosts.toml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want it to name %s", err, want)
		}
	})
}

func TestURL(t *testing.T) {
	h := Host{Scheme: "https", Host: "r.example.com", Path: "/v2"}
	if got, want := h.URL("library/busybox", "manifests", "latest"), "https://r.example.com/v2/library/busybox/manifests/latest"; got != want {
		t.Errorf("URL = %s, want %s", got, want)
	}
	if got, want := h.URL(), "https://r.example.com/v2"; got != want {
		t.Errorf("URL() = %s, want %s", got, want)
	}
}
