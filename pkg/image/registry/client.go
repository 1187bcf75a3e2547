package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/distribution/reference"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/hosts"
)

const (
	defaultMaxManifestSize = 4 << 20
	defaultAttempts        = 3
	defaultBackoff         = 200 * time.Millisecond
	maxBackoff             = 10 * time.Second
	defaultHeaderTimeout   = 30 * time.Second
	defaultUserAgent       = "cri-runtimed"
	maxRedirects           = 10
	// transportsPerHost bounds the cached transports for one host, which
	// only grows when its TLS settings are edited while the daemon runs.
	transportsPerHost = 4
)

// Credentials authenticate to a registry, in the forms kubelet passes them.
type Credentials struct {
	Username string
	Password string
	// Auth is base64("user:pass"), used when Username is empty.
	Auth string
	// IdentityToken is an OAuth2 refresh token exchanged at the token realm.
	IdentityToken string
	// RegistryToken is a bearer token sent as is.
	RegistryToken string
}

// Option configures a Client.
type Option func(*Client)

// WithRetries sets the number of attempts per host (at least 1) and the
// first backoff delay, doubled after each failure.
func WithRetries(attempts int, base time.Duration) Option {
	return func(c *Client) {
		if attempts < 1 {
			attempts = 1
		}
		c.attempts, c.backoff = attempts, base
	}
}

// WithMaxManifestSize sets the largest manifest or index accepted.
func WithMaxManifestSize(n int64) Option { return func(c *Client) { c.maxManifest = n } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithHTTPTimeout bounds the wait for response headers. Bodies are not
// bounded by it: a layer may take long to stream; use the context.
func WithHTTPTimeout(d time.Duration) Option { return func(c *Client) { c.headerTimeout = d } }

// WithTransport sets the base transport, cloned for each TLS configuration.
// Tests use it to dial fakes; its TLSClientConfig is replaced per host.
func WithTransport(t *http.Transport) Option { return func(c *Client) { c.base = t } }

// WithRootCAs adds certificates trusted for every https host, on top of the
// system roots and the host's configured CAs.
func WithRootCAs(certs ...*x509.Certificate) Option {
	return func(c *Client) { c.extraCAs = append(c.extraCAs, certs...) }
}

// Client pulls from registries configured by a certs.d directory. It is
// safe for concurrent use and meant to be shared: it caches connections and
// auth tokens.
type Client struct {
	hostsDir      string
	attempts      int
	backoff       time.Duration
	maxManifest   int64
	userAgent     string
	headerTimeout time.Duration
	base          *http.Transport
	extraCAs      []*x509.Certificate

	auth *authCache

	mu         sync.Mutex
	transports map[string][]cachedTransport
}

type cachedTransport struct {
	tls *tls.Config // as configured by hosts, before extra CAs
	rt  *http.Transport
	// foreign serves every other host a request of this host's leads to
	// (a redirect, a token realm): the same trust, no client certificate.
	foreign *http.Transport
}

// New returns a client reading registry host configuration from hostsDir
// (containerd's certs.d layout; empty for defaults only).
func New(hostsDir string, opts ...Option) *Client {
	c := &Client{
		hostsDir:      hostsDir,
		attempts:      defaultAttempts,
		backoff:       defaultBackoff,
		maxManifest:   defaultMaxManifestSize,
		userAgent:     defaultUserAgent,
		headerTimeout: defaultHeaderTimeout,
		auth:          newAuthCache(),
		transports:    map[string][]cachedTransport{},
	}
	for _, o := range opts {
		o(c)
	}
	if c.base == nil {
		c.base = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	return c
}

// transport returns the round tripper for h, shared between all
// repositories on the same host with the same TLS settings so connections
// are reused. The host's client certificate is presented to that host
// only, not to whatever host a redirect or a token realm names.
func (c *Client) transport(h hosts.Host) (http.RoundTripper, error) {
	key := h.Scheme + "://" + h.Host
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ct := range c.transports[key] {
		if tlsEqual(ct.tls, h.TLS) {
			return ct.roundTripper(h.Host), nil
		}
	}
	rt := c.base.Clone()
	rt.ResponseHeaderTimeout = c.headerTimeout
	if h.TLS != nil {
		cfg := h.TLS.Clone()
		if len(c.extraCAs) > 0 {
			pool := cfg.RootCAs
			if pool == nil {
				sys, err := x509.SystemCertPool()
				if err != nil || sys == nil {
					sys = x509.NewCertPool()
				}
				pool = sys
			} else {
				pool = pool.Clone()
			}
			for _, ca := range c.extraCAs {
				pool.AddCert(ca)
			}
			cfg.RootCAs = pool
		}
		rt.TLSClientConfig = cfg
	}
	ct := cachedTransport{tls: h.TLS, rt: rt, foreign: rt}
	if cfg := rt.TLSClientConfig; cfg != nil && (len(cfg.Certificates) > 0 || cfg.GetClientCertificate != nil) {
		ct.foreign = c.base.Clone()
		ct.foreign.ResponseHeaderTimeout = c.headerTimeout
		anon := cfg.Clone()
		anon.Certificates, anon.GetClientCertificate, anon.ServerName = nil, nil, ""
		ct.foreign.TLSClientConfig = anon
	}
	list := c.transports[key]
	if len(list) >= transportsPerHost {
		list[0].rt.CloseIdleConnections()
		list[0].foreign.CloseIdleConnections()
		list = list[1:]
	}
	c.transports[key] = append(list, ct)
	return ct.roundTripper(h.Host), nil
}

func (ct cachedTransport) roundTripper(host string) http.RoundTripper {
	if ct.foreign == ct.rt {
		return ct.rt
	}
	return &hostBound{host: host, own: ct.rt, foreign: ct.foreign}
}

// hostBound sends requests for host through own and any other through
// foreign.
type hostBound struct {
	host         string
	own, foreign http.RoundTripper
}

func (b *hostBound) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == b.host {
		return b.own.RoundTrip(req)
	}
	return b.foreign.RoundTrip(req)
}

func tlsEqual(a, b *tls.Config) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.InsecureSkipVerify != b.InsecureSkipVerify || a.ServerName != b.ServerName {
		return false
	}
	if (a.RootCAs == nil) != (b.RootCAs == nil) || (a.RootCAs != nil && !a.RootCAs.Equal(b.RootCAs)) {
		return false
	}
	if len(a.Certificates) != len(b.Certificates) {
		return false
	}
	for i := range a.Certificates {
		ca, cb := a.Certificates[i].Certificate, b.Certificates[i].Certificate
		if len(ca) == 0 || len(cb) == 0 || string(ca[0]) != string(cb[0]) {
			return false
		}
	}
	return true
}

// hostClient is one configured host bound to its HTTP client.
type hostClient struct {
	host   hosts.Host
	client *http.Client
	// creds is what this host may see: the registry's credentials for the
	// upstream server, nothing for mirrors.
	creds Credentials
}

func (h *hostClient) key() string { return h.host.Scheme + "://" + h.host.Host }

// Repository binds a repository to its configured hosts and credentials.
type Repository struct {
	c     *Client
	name  reference.Named
	path  string
	hosts []*hostClient
}

// Repository returns a handle for name (a normalized reference such as
// docker.io/library/busybox; any tag or digest is ignored).
func (c *Client) Repository(ctx context.Context, name reference.Named, creds Credentials) (*Repository, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name = reference.TrimNamed(name)
	if creds.Username == "" && creds.Auth != "" {
		u, p, err := decodeAuth(creds.Auth)
		if err != nil {
			return nil, fmt.Errorf("credentials for %s: %w", name, err)
		}
		creds.Username, creds.Password = u, p
	}
	hs, err := hosts.Load(c.hostsDir, reference.Domain(name))
	if err != nil {
		return nil, err
	}
	r := &Repository{c: c, name: name, path: reference.Path(name)}
	for _, h := range hs {
		rt, err := c.transport(h)
		if err != nil {
			return nil, fmt.Errorf("registry host %s: %w", h, err)
		}
		hc := &hostClient{host: h}
		if h.Server {
			hc.creds = creds
		}
		hc.client = &http.Client{Transport: rt, CheckRedirect: checkRedirect(h)}
		r.hosts = append(r.hosts, hc)
	}
	return r, nil
}

// checkRedirect keeps credentials and configured headers on the original
// host and scheme. net/http already drops Authorization across domains,
// but it treats 127.0.0.1:5000 and 127.0.0.1:9000 as the same domain, keeps
// it on a redirect from https to http on the same host (where it would go
// in clear), and knows nothing about hosts.toml headers, which may carry
// secrets too.
func checkRedirect(h hosts.Host) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		orig := via[0].URL
		downgrade := orig.Scheme == "https" && req.URL.Scheme != "https"
		if req.URL.Host != orig.Host || downgrade {
			req.Header.Del("Authorization")
			for k := range h.Header {
				req.Header.Del(k)
			}
		}
		return nil
	}
}
