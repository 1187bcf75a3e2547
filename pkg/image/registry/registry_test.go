package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry/registrytest"
)

const repo = "library/busybox"

func TestResolve(t *testing.T) {
	tests := []struct {
		name    string
		opts    []registrytest.Option
		ref     func(reg *registrytest.Registry, img testImage) string
		setup   func(reg *registrytest.Registry)
		want    func(img testImage) ocispec.Descriptor
		wantErr error
		wantMsg string
	}{
		{
			name: "tag",
			ref:  func(reg *registrytest.Registry, _ testImage) string { return reg.Host() + "/" + repo + ":latest" },
			want: func(img testImage) ocispec.Descriptor { return img.index },
		},
		{
			name: "no tag means latest",
			ref:  func(reg *registrytest.Registry, _ testImage) string { return reg.Host() + "/" + repo },
			want: func(img testImage) ocispec.Descriptor { return img.index },
		},
		{
			name: "digest",
			ref: func(reg *registrytest.Registry, img testImage) string {
				return reg.Host() + "/" + repo + "@" + img.manifest.Digest.String()
			},
			want: func(img testImage) ocispec.Descriptor {
				return ocispec.Descriptor{MediaType: img.manifest.MediaType, Digest: img.manifest.Digest, Size: img.manifest.Size}
			},
		},
		{
			name: "HEAD unsupported falls back to GET",
			opts: []registrytest.Option{registrytest.WithoutHEAD()},
			ref:  func(reg *registrytest.Registry, _ testImage) string { return reg.Host() + "/" + repo + ":latest" },
			want: func(img testImage) ocispec.Descriptor { return img.index },
		},
		{
			name:    "unknown tag",
			ref:     func(reg *registrytest.Registry, _ testImage) string { return reg.Host() + "/" + repo + ":nope" },
			wantErr: ErrNotFound,
			wantMsg: "404 not found",
		},
		{
			name:    "unknown tag without HEAD carries the registry error code",
			opts:    []registrytest.Option{registrytest.WithoutHEAD()},
			ref:     func(reg *registrytest.Registry, _ testImage) string { return reg.Host() + "/" + repo + ":nope" },
			wantErr: ErrNotFound,
			wantMsg: "MANIFEST_UNKNOWN",
		},
		{
			name: "schema1",
			setup: func(reg *registrytest.Registry) {
				reg.PushManifest(repo, "old", "application/vnd.docker.distribution.manifest.v1+prettyjws", []byte(`{"schemaVersion":1,"fsLayers":[]}`))
			},
			ref:     func(reg *registrytest.Registry, _ testImage) string { return reg.Host() + "/" + repo + ":old" },
			wantErr: ErrSchema1,
		},
		{
			name: "schema1 sniffed from a generic content type",
			opts: []registrytest.Option{registrytest.WithoutHEAD()},
			setup: func(reg *registrytest.Registry) {
				reg.PushManifest(repo, "old", "application/json", []byte(`{"schemaVersion":1,"fsLayers":[]}`))
			},
			ref:     func(reg *registrytest.Registry, _ testImage) string { return reg.Host() + "/" + repo + ":old" },
			wantErr: ErrSchema1,
		},
		{
			name:  "corrupt manifest by digest without HEAD",
			opts:  []registrytest.Option{registrytest.WithoutHEAD()},
			setup: func(reg *registrytest.Registry) {},
			ref: func(reg *registrytest.Registry, img testImage) string {
				reg.CorruptBlob(img.manifest.Digest)
				return reg.Host() + "/" + repo + "@" + img.manifest.Digest.String()
			},
			wantErr: ErrDigestMismatch,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := registrytest.New(t, tc.opts...)
			img := pushImage(t, reg, repo, "latest")
			if tc.setup != nil {
				tc.setup(reg)
			}
			r := repository(t, fastClient(reg.HostsDir()), reg.Host()+"/"+repo, Credentials{})
			desc, err := r.Resolve(context.Background(), named(t, tc.ref(reg, img)))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want(img)
			if desc.Digest != want.Digest || desc.Size != want.Size || desc.MediaType != want.MediaType {
				t.Fatalf("desc = %+v, want %+v", desc, want)
			}
		})
	}
}

func TestFetchManifest(t *testing.T) {
	tests := []struct {
		name    string
		opts    []Option
		setup   func(reg *registrytest.Registry, img testImage) ocispec.Descriptor
		wantErr error
	}{
		{
			name:  "ok",
			setup: func(_ *registrytest.Registry, img testImage) ocispec.Descriptor { return img.manifest },
		},
		{
			name:    "descriptor over the limit",
			opts:    []Option{WithMaxManifestSize(10)},
			setup:   func(_ *registrytest.Registry, img testImage) ocispec.Descriptor { return img.manifest },
			wantErr: ErrTooLarge,
		},
		{
			name: "body over the limit",
			opts: []Option{WithMaxManifestSize(10)},
			setup: func(_ *registrytest.Registry, img testImage) ocispec.Descriptor {
				d := img.manifest
				d.Size = 0
				return d
			},
			wantErr: ErrTooLarge,
		},
		{
			name: "endless body",
			setup: func(reg *registrytest.Registry, img testImage) ocispec.Descriptor {
				reg.EndlessManifest(repo, img.manifest.Digest.String())
				d := img.manifest
				d.Size = 0
				return d
			},
			wantErr: ErrTooLarge,
		},
		{
			name: "wrong size",
			setup: func(_ *registrytest.Registry, img testImage) ocispec.Descriptor {
				d := img.manifest
				d.Size++
				return d
			},
			wantErr: ErrDigestMismatch,
		},
		{
			name: "corrupt body",
			setup: func(reg *registrytest.Registry, img testImage) ocispec.Descriptor {
				reg.CorruptBlob(img.manifest.Digest)
				return img.manifest
			},
			wantErr: ErrDigestMismatch,
		},
		{
			name: "schema1",
			setup: func(reg *registrytest.Registry, _ testImage) ocispec.Descriptor {
				return reg.PushManifest(repo, "", "application/vnd.docker.distribution.manifest.v1+json", []byte(`{"schemaVersion":1}`))
			},
			wantErr: ErrSchema1,
		},
		{
			name: "unknown",
			setup: func(_ *registrytest.Registry, _ testImage) ocispec.Descriptor {
				return ocispec.Descriptor{Digest: digest.FromString("nope"), Size: 4}
			},
			wantErr: ErrNotFound,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := registrytest.New(t)
			img := pushImage(t, reg, repo, "latest")
			desc := tc.setup(reg, img)
			r := repository(t, fastClient(reg.HostsDir(), tc.opts...), reg.Host()+"/"+repo, Credentials{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			body, err := r.FetchManifest(ctx, desc)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, img.manifestBody) {
				t.Fatalf("body = %s", body)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	const user, pass = "alice", "s3cret"
	basic := func(u, p string) string {
		return registrytest.BasicAuthHeader(u, p)[len("Basic "):]
	}
	tests := []struct {
		name    string
		opts    []registrytest.Option
		creds   Credentials
		wantErr error
	}{
		{"basic", []registrytest.Option{registrytest.WithBasicAuth(user, pass)}, Credentials{Username: user, Password: pass}, nil},
		{"basic from auth field", []registrytest.Option{registrytest.WithBasicAuth(user, pass)}, Credentials{Auth: basic(user, pass)}, nil},
		{"basic without credentials", []registrytest.Option{registrytest.WithBasicAuth(user, pass)}, Credentials{}, ErrUnauthorized},
		{"basic wrong password", []registrytest.Option{registrytest.WithBasicAuth(user, pass)}, Credentials{Username: user, Password: "x"}, ErrUnauthorized},
		{"token with password", []registrytest.Option{registrytest.WithTokenAuth(registrytest.TokenAuth{Username: user, Password: pass})}, Credentials{Username: user, Password: pass}, nil},
		{"token with auth field and access_token", []registrytest.Option{registrytest.WithTokenAuth(registrytest.TokenAuth{Username: user, Password: pass, AccessTokenField: true})}, Credentials{Auth: basic(user, pass)}, nil},
		{"token wrong password", []registrytest.Option{registrytest.WithTokenAuth(registrytest.TokenAuth{Username: user, Password: pass})}, Credentials{Username: user, Password: "x"}, ErrUnauthorized},
		{"anonymous token", []registrytest.Option{registrytest.WithTokenAuth(registrytest.TokenAuth{Anonymous: true})}, Credentials{}, nil},
		{"anonymous token refused", []registrytest.Option{registrytest.WithTokenAuth(registrytest.TokenAuth{Username: user, Password: pass})}, Credentials{}, ErrUnauthorized},
		{"identity token via POST", []registrytest.Option{registrytest.WithTokenAuth(registrytest.TokenAuth{RefreshToken: "refresh"})}, Credentials{IdentityToken: "refresh"}, nil},
		{"identity token via GET fallback", []registrytest.Option{registrytest.WithTokenAuth(registrytest.TokenAuth{RefreshToken: "refresh", NoPOST: true})}, Credentials{Username: "<token>", IdentityToken: "refresh"}, nil},
		{"registry token", []registrytest.Option{registrytest.WithTokenAuth(registrytest.TokenAuth{StaticToken: "static"})}, Credentials{RegistryToken: "static"}, nil},
		{"bad registry token", []registrytest.Option{registrytest.WithTokenAuth(registrytest.TokenAuth{StaticToken: "static"})}, Credentials{RegistryToken: "other"}, ErrUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := registrytest.New(t, tc.opts...)
			img := pushImage(t, reg, repo, "latest")
			c := fastClient(reg.HostsDir())
			r := repository(t, c, reg.Host()+"/"+repo, tc.creds)
			ctx := context.Background()
			_, err := r.Resolve(ctx, named(t, reg.Host()+"/"+repo+":latest"))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// A second repository handle on the same client reuses the
			// token: no second token request, no further 401.
			r2 := repository(t, c, reg.Host()+"/"+repo, tc.creds)
			if _, err := r2.FetchManifest(ctx, img.manifest); err != nil {
				t.Fatal(err)
			}
			rc, err := r2.FetchBlob(ctx, img.layer, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatal(err)
			}
			rc.Close()
			if n := countRequests(reg, "token", ""); n > 2 {
				t.Errorf("%d token requests, want at most 2 (POST + GET fallback)", n)
			}
			unauth := 0
			for _, q := range reg.Requests() {
				if q.Server == "registry" && q.Status == http.StatusUnauthorized {
					unauth++
				}
			}
			if unauth > 1 {
				t.Errorf("%d requests answered 401, want at most 1", unauth)
			}
		})
	}
}

func TestMirrorsFallThrough(t *testing.T) {
	server := registrytest.New(t)
	img := pushImage(t, server, repo, "latest")
	failing := registrytest.New(t)
	pushImage(t, failing, repo, "latest")
	failing.FailNext(1000, http.StatusInternalServerError)
	empty := registrytest.New(t) // answers 404 for everything
	dead := deadAddr(t)

	toml := fmt.Sprintf(`
server = %q
[host."http://%s"]
[host.%q]
[host.%q]
`, server.URL(), dead, failing.URL(), empty.URL())
	dir := hostsDir(t, server.Host(), toml, nil)
	r := repository(t, fastClient(dir), server.Host()+"/"+repo, Credentials{Username: "u", Password: "p"})
	ctx := context.Background()

	desc, err := r.Resolve(ctx, named(t, server.Host()+"/"+repo+":latest"))
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != img.index.Digest {
		t.Fatalf("resolved %s, want %s", desc.Digest, img.index.Digest)
	}
	if n := countRequests(failing, "registry", http.MethodHead); n != 3 {
		t.Errorf("failing mirror got %d HEADs, want 3 (retries)", n)
	}
	if n := countRequests(empty, "registry", http.MethodHead); n != 1 {
		t.Errorf("404 mirror got %d HEADs, want 1", n)
	}

	// When the server fails too, the error names every host and its cause.
	_, err = r.Resolve(ctx, named(t, server.Host()+"/"+repo+":missing"))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"resolve " + server.Host() + "/" + repo + ":missing: ",
		"http://" + dead + ": ", "connection refused",
		failing.URL() + ": 500",
		empty.URL() + ": 404",
		server.URL() + ": 404 not found",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	var he *HostsError
	if !errors.As(err, &he) || len(he.Hosts) != 4 {
		t.Errorf("want a HostsError with 4 hosts, got %#v", err)
	}

	// Mirrors never see the registry's credentials.
	for _, reg := range []*registrytest.Registry{failing, empty} {
		for _, q := range reg.Requests() {
			if q.Authorization != "" {
				t.Errorf("mirror got Authorization %q", q.Authorization)
			}
		}
	}
}

func TestMirrorCapabilitiesAndHeaders(t *testing.T) {
	server := registrytest.New(t)
	img := pushImage(t, server, repo, "latest")
	mirror := registrytest.New(t)
	pushImage(t, mirror, repo, "latest")
	toml := fmt.Sprintf(`
server = %q
[host.%q]
  capabilities = ["pull"]
  [host.%q.header]
    x-mirror = ["a", "b"]
`, server.URL(), mirror.URL(), mirror.URL())
	r := repository(t, fastClient(hostsDir(t, server.Host(), toml, nil)), server.Host()+"/"+repo, Credentials{})
	ctx := context.Background()
	// Tag resolution skips the pull-only mirror...
	if _, err := r.Resolve(ctx, named(t, server.Host()+"/"+repo+":latest")); err != nil {
		t.Fatal(err)
	}
	if n := len(mirror.Requests()); n != 0 {
		t.Fatalf("pull-only mirror got %d requests for a tag", n)
	}
	// ...but serves content by digest, with its headers.
	if _, err := r.FetchManifest(ctx, img.manifest); err != nil {
		t.Fatal(err)
	}
	reqs := mirror.Requests()
	if len(reqs) != 1 || strings.Join(reqs[0].Header.Values("X-Mirror"), ",") != "a,b" {
		t.Fatalf("mirror requests = %+v", reqs)
	}
	if n := len(server.Requests()); n != 1 {
		t.Errorf("server got %d requests, want 1 (the HEAD)", n)
	}
}

func TestOverridePath(t *testing.T) {
	reg := registrytest.New(t)
	img := pushImage(t, reg, repo, "latest")
	// The registry's API root is /v2 already; with override_path the
	// configured path is used verbatim, nothing is appended.
	toml := fmt.Sprintf("server = %q\noverride_path = true\n", reg.URL()+"/v2")
	r := repository(t, fastClient(hostsDir(t, reg.Host(), toml, nil)), reg.Host()+"/"+repo, Credentials{})
	if _, err := r.FetchManifest(context.Background(), img.manifest); err != nil {
		t.Fatal(err)
	}
}

func TestRetries(t *testing.T) {
	reg := registrytest.New(t)
	img := pushImage(t, reg, repo, "latest")
	r := repository(t, fastClient(reg.HostsDir()), reg.Host()+"/"+repo, Credentials{})
	ctx := context.Background()

	reg.FailNext(2, http.StatusServiceUnavailable)
	if _, err := r.FetchManifest(ctx, img.manifest); err != nil {
		t.Fatalf("two 503s then success: %v", err)
	}
	reg.ResetLog()
	reg.FailNext(10, http.StatusInternalServerError)
	_, err := r.FetchManifest(ctx, img.manifest)
	if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("err = %v, want the 500 with the registry's message", err)
	}
	if n := len(reg.Requests()); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	reg.FailNext(0, 0)
}

func readAll(t *testing.T, r *Repository, desc ocispec.Descriptor, offset int64) ([]byte, error) {
	t.Helper()
	rc, err := r.FetchBlob(context.Background(), desc, offset)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestFetchBlob(t *testing.T) {
	tests := []struct {
		name     string
		opts     []registrytest.Option
		creds    Credentials
		setup    func(reg *registrytest.Registry, img testImage)
		offset   int64
		wantErr  error
		wantGets int
	}{
		{name: "whole", wantGets: 1},
		{name: "range", offset: 4096, wantGets: 1},
		{name: "server ignores range", opts: []registrytest.Option{registrytest.WithoutRange()}, offset: 4096, wantGets: 1},
		{
			name:     "cut connection resumes",
			setup:    func(reg *registrytest.Registry, img testImage) { reg.CutBlob(img.layer.Digest, 30_000, 1) },
			wantGets: 2,
		},
		{
			name:     "cut connection resumes without range support",
			opts:     []registrytest.Option{registrytest.WithoutRange()},
			setup:    func(reg *registrytest.Registry, img testImage) { reg.CutBlob(img.layer.Digest, 30_000, 2) },
			wantGets: 3,
		},
		{
			name:    "cut too often",
			setup:   func(reg *registrytest.Registry, img testImage) { reg.CutBlob(img.layer.Digest, 30_000, 5) },
			wantErr: io.ErrUnexpectedEOF,
		},
		{
			name:    "corrupt",
			setup:   func(reg *registrytest.Registry, img testImage) { reg.CorruptBlob(img.layer.Digest) },
			wantErr: ErrDigestMismatch,
		},
		{
			name:    "endless",
			setup:   func(reg *registrytest.Registry, img testImage) { reg.EndlessBlob(img.layer.Digest) },
			wantErr: ErrDigestMismatch,
		},
		{
			name:     "redirect",
			opts:     []registrytest.Option{registrytest.WithBasicAuth("u", "p")},
			creds:    Credentials{Username: "u", Password: "p"},
			setup:    func(reg *registrytest.Registry, _ testImage) { reg.RedirectBlobs(true) },
			offset:   10,
			wantGets: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := registrytest.New(t, tc.opts...)
			img := pushImage(t, reg, repo, "latest")
			if tc.setup != nil {
				tc.setup(reg, img)
			}
			r := repository(t, fastClient(reg.HostsDir()), reg.Host()+"/"+repo, tc.creds)
			got, err := readAll(t, r, img.layer, tc.offset)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, img.layerData[tc.offset:]) {
				t.Fatalf("got %d bytes, want %d matching", len(got), len(img.layerData)-int(tc.offset))
			}
			if n := reg.BlobGets(img.layer.Digest); n != tc.wantGets {
				t.Errorf("%d blob GETs, want %d", n, tc.wantGets)
			}
			for _, q := range reg.Requests() {
				if q.Server == "redirect" && q.Authorization != "" {
					t.Errorf("redirect target got Authorization %q", q.Authorization)
				}
			}
		})
	}
}

func TestTLS(t *testing.T) {
	reg := registrytest.New(t, registrytest.WithTLS())
	img := pushImage(t, reg, repo, "latest")
	ref := reg.Host() + "/" + repo + ":latest"
	tests := []struct {
		name    string
		toml    string
		files   map[string][]byte
		opts    []Option
		wantErr string
	}{
		{name: "ca from hosts.toml", toml: fmt.Sprintf("server = %q\nca = \"ca.crt\"\n", reg.URL()), files: map[string][]byte{"ca.crt": reg.CertPEM()}},
		{name: "ca on a host entry", toml: fmt.Sprintf("server = \"https://127.0.0.1:1\"\n[host.%q]\nca = [\"ca.crt\"]\n", reg.URL()), files: map[string][]byte{"ca.crt": reg.CertPEM()}},
		{name: "skip_verify", toml: fmt.Sprintf("server = %q\nskip_verify = true\n", reg.URL())},
		{name: "extra root CA option", toml: fmt.Sprintf("server = %q\n", reg.URL()), opts: []Option{WithRootCAs(reg.Certificate())}},
		{name: "untrusted", toml: fmt.Sprintf("server = %q\n", reg.URL()), wantErr: "certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := hostsDir(t, reg.Host(), tc.toml, tc.files)
			r := repository(t, fastClient(dir, tc.opts...), reg.Host()+"/"+repo, Credentials{})
			desc, err := r.Resolve(context.Background(), named(t, ref))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != img.index.Digest {
				t.Fatalf("digest %s, want %s", desc.Digest, img.index.Digest)
			}
		})
	}
}

func TestLocalhostHTTPFallback(t *testing.T) {
	reg := registrytest.New(t) // plain http on 127.0.0.1, nothing configured
	img := pushImage(t, reg, repo, "latest")
	r := repository(t, fastClient(""), reg.Host()+"/"+repo, Credentials{})
	desc, err := r.Resolve(context.Background(), named(t, reg.Host()+"/"+repo+":latest"))
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != img.index.Digest {
		t.Fatalf("digest %s, want %s", desc.Digest, img.index.Digest)
	}
}

func TestContextCancel(t *testing.T) {
	reg := registrytest.New(t)
	img := pushImage(t, reg, repo, "latest")
	reg.FailNext(1000, http.StatusInternalServerError)
	r := repository(t, New(reg.HostsDir(), WithRetries(10, time.Minute)), reg.Host()+"/"+repo, Credentials{})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := r.FetchManifest(ctx, img.manifest)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancel took %s", d)
	}

	// Cancelling mid-blob stops the stream too.
	reg.FailNext(0, 0)
	ctx, cancel = context.WithCancel(context.Background())
	reg.EndlessBlob(img.layer.Digest)
	rc, err := r.FetchBlob(ctx, ocispec.Descriptor{Digest: img.layer.Digest, Size: 1 << 40}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, 1024)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	for err == nil {
		_, err = rc.Read(buf)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v", err)
	}
}

func TestParseChallenges(t *testing.T) {
	got := parseChallenges([]string{
		`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"`,
		`Basic realm=x, Bearer realm="a,b", service=s`,
	})
	want := []challenge{
		{"bearer", map[string]string{"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/busybox:pull"}},
		{"basic", map[string]string{"realm": "x"}},
		{"bearer", map[string]string{"realm": "a,b", "service": "s"}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}
