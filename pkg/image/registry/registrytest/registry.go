package registrytest

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TokenAuth configures bearer-token auth. The registry answers 401 with a
// Bearer challenge pointing at its own /token endpoint.
type TokenAuth struct {
	// Username and Password are accepted with basic auth on GET /token.
	Username, Password string
	// RefreshToken is accepted by POST /token (grant_type=refresh_token),
	// and as the basic-auth password on GET /token.
	RefreshToken string
	// Anonymous allows GET /token without credentials.
	Anonymous bool
	// StaticToken, when set, is a bearer token the registry always accepts
	// (a pre-issued registry token).
	StaticToken string
	// AccessTokenField makes /token answer {"access_token":...}.
	AccessTokenField bool
	// NoPOST makes POST /token answer 405, as some token servers do.
	NoPOST bool
	// ExpiresIn is the token lifetime in seconds (0: 300).
	ExpiresIn int
	// SeparateRealm serves /token from a server of its own (another
	// host:port than the registry; https when the registry is).
	SeparateRealm bool
	// PlainRealm makes that separate server plain http even when the
	// registry is https.
	PlainRealm bool
}

// Option configures a Registry.
type Option func(*Registry)

// WithTLS serves https with httptest's self-signed certificate. Every
// https server asks for (but does not require) a client certificate, and
// logs whether one came (Request.ClientCert).
func WithTLS() Option { return func(r *Registry) { r.tls = true } }

// WithDowngradeRedirects serves https and plain http on the same port and
// redirects blob GETs from https to http on that same host, as a hostile
// or misconfigured registry may; the plain requests are logged as server
// "redirect". It implies WithTLS.
func WithDowngradeRedirects() Option { return func(r *Registry) { r.tls, r.downgrade = true, true } }

// WithBasicAuth requires basic auth with these credentials.
func WithBasicAuth(user, pass string) Option {
	return func(r *Registry) { r.basicUser, r.basicPass = user, pass }
}

// WithTokenAuth requires bearer tokens from the registry's token endpoint.
func WithTokenAuth(a TokenAuth) Option {
	return func(r *Registry) { a := a; r.token = &a }
}

// WithoutHEAD makes HEAD on manifests answer 405, like some old registries.
func WithoutHEAD() Option { return func(r *Registry) { r.noHEAD = true } }

// WithoutRange makes blob GETs ignore Range and answer 200 from byte 0.
func WithoutRange() Option { return func(r *Registry) { r.noRange = true } }

// Request is one request the registry (or its redirect target) served.
type Request struct {
	Server        string // "registry", "redirect" or "token"
	Method        string
	Path          string
	Range         string
	Authorization string
	Header        http.Header
	Status        int
	// TLS tells whether the request came over TLS, ClientCert whether the
	// client presented a certificate.
	TLS, ClientCert bool
}

type manifest struct {
	mediaType string
	body      []byte
}

// Registry is a running test registry. All methods are safe for concurrent
// use.
type Registry struct {
	t testing.TB

	tls                  bool
	basicUser, basicPass string
	token                *TokenAuth
	noHEAD, noRange      bool
	downgrade            bool

	srv      *httptest.Server
	redirSrv *httptest.Server
	tokenSrv *httptest.Server // nil unless TokenAuth.SeparateRealm
	url      string
	cert     *x509.Certificate

	mu         sync.Mutex
	blobs      map[string]map[digest.Digest][]byte // repo -> digest -> data
	manifests  map[string]map[string]manifest      // repo -> tag or digest -> manifest
	tokens     map[string]string                   // issued token -> scope
	failNext   int
	failStatus int
	cut        map[digest.Digest]cutFault
	corrupt    map[digest.Digest]bool
	endless    map[string]bool // "repo@ref" of manifests, or "blob@digest"
	redirect   bool
	stall      map[digest.Digest]int64
	failBlob   map[digest.Digest]int
	stalled    int // GETs of stalled blobs waiting for their client
	log        []*Request
}

type cutFault struct {
	after int64
	times int
}

// New starts a registry; it is closed by t.Cleanup.
func New(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	r := &Registry{
		t:         t,
		blobs:     map[string]map[digest.Digest][]byte{},
		manifests: map[string]map[string]manifest{},
		tokens:    map[string]string{},
		cut:       map[digest.Digest]cutFault{},
		corrupt:   map[digest.Digest]bool{},
		endless:   map[string]bool{},
		stall:     map[digest.Digest]int64{},
		failBlob:  map[digest.Digest]int{},
	}
	for _, o := range opts {
		o(r)
	}
	start := func(h http.HandlerFunc, useTLS bool) *httptest.Server {
		s := httptest.NewUnstartedServer(h)
		// Tests provoke TLS and connection errors on purpose.
		s.Config.ErrorLog = log.New(io.Discard, "", 0)
		if useTLS {
			s.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
			s.StartTLS()
		} else {
			s.Start()
		}
		t.Cleanup(s.Close)
		return s
	}
	if r.downgrade {
		r.srv = r.startDual(t)
	} else {
		r.srv = start(r.serve, r.tls)
		r.url = r.srv.URL
		if r.tls {
			r.cert = r.srv.Certificate()
		}
	}
	r.redirSrv = start(r.serveRedirected, r.tls)
	if r.token != nil && r.token.SeparateRealm {
		r.tokenSrv = start(func(w http.ResponseWriter, req *http.Request) {
			r.serveToken(r.record("token", w, req), req)
		}, r.tls && !r.token.PlainRealm)
	}
	return r
}

// startDual starts the registry server speaking https and plain http on
// one port, with httptest's certificate.
func (r *Registry) startDual(t testing.TB) *httptest.Server {
	tmp := httptest.NewUnstartedServer(nil)
	tmp.StartTLS()
	cert := tmp.TLS.Certificates[0]
	tmp.Close()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.TLS == nil {
			r.serveRedirected(w, req)
			return
		}
		r.serve(w, req)
	}))
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.Listener = newDualListener(s.Listener, &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert})
	s.Start()
	t.Cleanup(s.Close)
	r.url = "https://" + s.Listener.Addr().String()
	var err error
	if r.cert, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
		t.Fatal(err)
	}
	return s
}

// dualListener hands out TLS server connections for clients whose first
// byte opens a TLS handshake (0x16) and plain ones for the others.
type dualListener struct {
	net.Listener
	cfg   *tls.Config
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newDualListener(ln net.Listener, cfg *tls.Config) *dualListener {
	l := &dualListener{Listener: ln, cfg: cfg, conns: make(chan net.Conn), done: make(chan struct{})}
	go l.accept()
	return l
}

func (l *dualListener) accept() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return
		}
		// Sniffing waits for the client's first byte: not in the accept
		// loop, where one silent client would hold up the others.
		go func() {
			br := bufio.NewReader(c)
			b, err := br.Peek(1)
			if err != nil {
				c.Close()
				return
			}
			var out net.Conn = &peekedConn{Conn: c, r: br}
			if b[0] == 0x16 {
				out = tls.Server(out, l.cfg)
			}
			select {
			case l.conns <- out:
			case <-l.done:
				c.Close()
			}
		}()
	}
}

func (l *dualListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *dualListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Host returns "127.0.0.1:port", the registry domain to use in references.
func (r *Registry) Host() string { return r.srv.Listener.Addr().String() }

// URL returns the base URL, e.g. "https://127.0.0.1:port".
func (r *Registry) URL() string { return r.url }

// RedirectHost returns the host of the second server that redirected blobs
// are served from.
func (r *Registry) RedirectHost() string { return r.redirSrv.Listener.Addr().String() }

// Certificate returns the server certificate (nil without TLS). It is
// self-signed, so it is also the CA to trust.
func (r *Registry) Certificate() *x509.Certificate {
	if !r.tls {
		return nil
	}
	return r.cert
}

// CertPEM returns Certificate in PEM form (nil without TLS).
func (r *Registry) CertPEM() []byte {
	c := r.Certificate()
	if c == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// HostsDir writes a certs.d directory whose hosts.toml points Host() at this
// registry (trusting its certificate when TLS is on) and returns its path.
func (r *Registry) HostsDir() string {
	r.t.Helper()
	dir := r.t.TempDir()
	d := filepath.Join(dir, r.Host())
	if err := os.MkdirAll(d, 0o755); err != nil {
		r.t.Fatal(err)
	}
	toml := fmt.Sprintf("server = %q\n", r.URL())
	if r.tls {
		if err := os.WriteFile(filepath.Join(d, "ca.crt"), r.CertPEM(), 0o644); err != nil {
			r.t.Fatal(err)
		}
		toml += "ca = \"ca.crt\"\n"
	}
	if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(toml), 0o644); err != nil {
		r.t.Fatal(err)
	}
	return dir
}

// PushBlob stores data in repo and returns its descriptor.
func (r *Registry) PushBlob(repo string, data []byte) ocispec.Descriptor {
	d := digest.FromBytes(data)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.blobs[repo] == nil {
		r.blobs[repo] = map[digest.Digest][]byte{}
	}
	r.blobs[repo][d] = append([]byte(nil), data...)
	return ocispec.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: int64(len(data))}
}

// PushManifest stores body under its digest and, if tag is not empty, tag.
func (r *Registry) PushManifest(repo, tag, mediaType string, body []byte) ocispec.Descriptor {
	d := digest.FromBytes(body)
	m := manifest{mediaType: mediaType, body: append([]byte(nil), body...)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.manifests[repo] == nil {
		r.manifests[repo] = map[string]manifest{}
	}
	r.manifests[repo][d.String()] = m
	if tag != "" {
		r.manifests[repo][tag] = m
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(body))}
}

// FailNext makes the next n registry requests (not token requests) answer
// status (500 when 0).
func (r *Registry) FailNext(n, status int) {
	if status == 0 {
		status = http.StatusInternalServerError
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failNext, r.failStatus = n, status
}

// CutBlob makes the next times GETs of blob d drop the connection after
// sending after bytes of the body.
func (r *Registry) CutBlob(d digest.Digest, after int64, times int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut[d] = cutFault{after: after, times: times}
}

// StallBlob makes GETs of blob d send after bytes of the body and then
// send nothing more until the client goes away, like a stuck upstream.
func (r *Registry) StallBlob(d digest.Digest, after int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stall[d] = after
}

// FailBlob makes every request for blob d answer status at once, as a
// registry that lost a layer does.
func (r *Registry) FailBlob(d digest.Digest, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failBlob[d] = status
}

// Stalled is how many GETs of stalled blobs (StallBlob) are waiting for
// their client to go away: a client that gave up on a download has
// closed its connection.
func (r *Registry) Stalled() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stalled
}

// CorruptBlob makes GETs of blob (or manifest) d serve the right length
// with wrong bytes. A corrupted manifest keeps its Docker-Content-Digest.
func (r *Registry) CorruptBlob(d digest.Digest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.corrupt[d] = true
}

// EndlessManifest makes GETs of the manifest repo:ref (a tag or digest)
// stream bytes forever without a Content-Length.
func (r *Registry) EndlessManifest(repo, ref string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.endless[repo+"@"+ref] = true
}

// EndlessBlob makes GETs of blob d stream bytes forever.
func (r *Registry) EndlessBlob(d digest.Digest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.endless["blob@"+d.String()] = true
}

// RedirectBlobs makes blob GETs answer 307 to the second server, as
// registries backed by object storage do (with WithDowngradeRedirects, to
// plain http on the registry's own host and port).
func (r *Registry) RedirectBlobs(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.redirect = on
}

// Requests returns a copy of the request log.
func (r *Registry) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Request, len(r.log))
	for i, e := range r.log {
		out[i] = *e
	}
	return out
}

// BlobGets counts GETs of blob d that were answered with data (200 or 206)
// by either server: a redirected download counts once, at its target, and
// requests refused with 401 do not count.
func (r *Registry) BlobGets(d digest.Digest) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, q := range r.log {
		if q.Method != http.MethodGet || !strings.HasSuffix(q.Path, "/blobs/"+d.String()) {
			continue
		}
		if q.Status == http.StatusOK || q.Status == http.StatusPartialContent {
			n++
		}
	}
	return n
}

// ResetLog clears the request log.
func (r *Registry) ResetLog() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = nil
}

// statusRecorder stores the status in the log entry as soon as it is
// written, before any body byte leaves: a client that has read a response
// then always finds its request in the log.
type statusRecorder struct {
	http.ResponseWriter
	r      *Registry
	entry  *Request
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
		s.r.mu.Lock()
		s.entry.Status = code
		s.r.mu.Unlock()
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// record logs req and returns a writer that fills in the status.
func (r *Registry) record(server string, w http.ResponseWriter, req *http.Request) *statusRecorder {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := &Request{
		Server:        server,
		Method:        req.Method,
		Path:          req.URL.Path,
		Range:         req.Header.Get("Range"),
		Authorization: req.Header.Get("Authorization"),
		Header:        req.Header.Clone(),
		TLS:           req.TLS != nil,
		ClientCert:    req.TLS != nil && len(req.TLS.PeerCertificates) > 0,
	}
	r.log = append(r.log, e)
	return &statusRecorder{ResponseWriter: w, r: r, entry: e}
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": code, "message": msg}},
	})
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	server := "registry"
	if req.URL.Path == "/token" {
		server = "token"
	}
	rec := r.record(server, w, req)
	if server == "token" {
		r.serveToken(rec, req)
		return
	}

	r.mu.Lock()
	if r.failNext > 0 {
		r.failNext--
		status := r.failStatus
		r.mu.Unlock()
		writeError(rec, status, "UNKNOWN", "injected failure")
		return
	}
	r.mu.Unlock()

	if !strings.HasPrefix(req.URL.Path, "/v2/") {
		writeError(rec, http.StatusNotFound, "NOT_FOUND", "not a registry path")
		return
	}
	rest := strings.TrimPrefix(req.URL.Path, "/v2/")
	var repo, kind, ref string
	for _, k := range []string{"/manifests/", "/blobs/"} {
		if i := strings.LastIndex(rest, k); i > 0 {
			repo, kind, ref = rest[:i], strings.Trim(k, "/"), rest[i+len(k):]
			break
		}
	}
	if !r.authorized(rec, req, repo) {
		return
	}
	if rest == "" {
		rec.WriteHeader(http.StatusOK)
		return
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		writeError(rec, http.StatusMethodNotAllowed, "UNSUPPORTED", "read-only registry")
		return
	}
	switch kind {
	case "manifests":
		r.serveManifest(rec, req, repo, ref)
	case "blobs":
		r.serveBlob(rec, req, repo, ref)
	default:
		writeError(rec, http.StatusNotFound, "NOT_FOUND", "unknown path")
	}
}

// authorized checks credentials and writes the 401 challenge when they are
// missing or wrong.
func (r *Registry) authorized(w http.ResponseWriter, req *http.Request, repo string) bool {
	authz := req.Header.Get("Authorization")
	switch {
	case r.basicUser != "":
		u, p, ok := req.BasicAuth()
		if ok && u == r.basicUser && p == r.basicPass {
			return true
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="registrytest"`)
	case r.token != nil:
		if tok, ok := strings.CutPrefix(authz, "Bearer "); ok {
			if r.token.StaticToken != "" && tok == r.token.StaticToken {
				return true
			}
			r.mu.Lock()
			scope, issued := r.tokens[tok]
			r.mu.Unlock()
			if issued && (repo == "" || strings.Contains(" "+scope+" ", " repository:"+repo+":pull ")) {
				return true
			}
		}
		realm := r.URL()
		if r.tokenSrv != nil {
			realm = r.tokenSrv.URL
		}
		ch := fmt.Sprintf(`Bearer realm="%s/token",service="registrytest"`, realm)
		if repo != "" {
			ch += fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
		}
		w.Header().Set("WWW-Authenticate", ch)
	default:
		return true
	}
	writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
	return false
}

func (r *Registry) serveToken(w http.ResponseWriter, req *http.Request) {
	a := r.token
	if a == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no token auth")
		return
	}
	var scopes []string
	ok := false
	switch req.Method {
	case http.MethodPost:
		if a.NoPOST {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		if err := req.ParseForm(); err != nil {
			writeError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
			return
		}
		ok = req.PostForm.Get("grant_type") == "refresh_token" && a.RefreshToken != "" &&
			req.PostForm.Get("refresh_token") == a.RefreshToken && req.PostForm.Get("client_id") != ""
		for _, s := range req.PostForm["scope"] {
			scopes = append(scopes, strings.Fields(s)...)
		}
	case http.MethodGet:
		u, p, hasBasic := req.BasicAuth()
		switch {
		case hasBasic:
			ok = (a.Username != "" && u == a.Username && p == a.Password) ||
				(a.RefreshToken != "" && p == a.RefreshToken)
		default:
			ok = a.Anonymous
		}
		for _, s := range req.URL.Query()["scope"] {
			scopes = append(scopes, strings.Fields(s)...)
		}
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if !ok {
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "bad credentials")
		return
	}
	buf := make([]byte, 16)
	_, _ = rand.Read(buf)
	tok := hex.EncodeToString(buf)
	r.mu.Lock()
	r.tokens[tok] = strings.Join(scopes, " ")
	r.mu.Unlock()
	exp := a.ExpiresIn
	if exp == 0 {
		exp = 300
	}
	field := "token"
	if a.AccessTokenField {
		field = "access_token"
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		field: tok, "expires_in": exp, "issued_at": time.Now().UTC().Format(time.RFC3339),
	})
}

func (r *Registry) serveManifest(w http.ResponseWriter, req *http.Request, repo, ref string) {
	if req.Method == http.MethodHead && r.noHEAD {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	r.mu.Lock()
	m, ok := r.manifests[repo][ref]
	endless := r.endless[repo+"@"+ref]
	corrupt := ok && r.corrupt[digest.FromBytes(m.body)]
	r.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", fmt.Sprintf("manifest unknown: %s:%s", repo, ref))
		return
	}
	w.Header().Set("Content-Type", m.mediaType)
	w.Header().Set("Docker-Content-Digest", digest.FromBytes(m.body).String())
	if corrupt {
		m.body = append([]byte(nil), m.body...)
		m.body[len(m.body)-1] = ' '
	}
	if endless {
		w.WriteHeader(http.StatusOK)
		if req.Method == http.MethodGet {
			writeEndless(req, w)
		}
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(m.body)))
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodGet {
		_, _ = w.Write(m.body)
	}
}

func writeEndless(req *http.Request, w http.ResponseWriter) {
	chunk := []byte(strings.Repeat("{", 32<<10))
	for req.Context().Err() == nil {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

func (r *Registry) serveBlob(w http.ResponseWriter, req *http.Request, repo, ref string) {
	d, err := digest.Parse(ref)
	if err != nil {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
		return
	}
	r.mu.Lock()
	data, ok := r.blobs[repo][d]
	redirect := r.redirect
	failStatus := r.failBlob[d]
	r.mu.Unlock()
	if failStatus != 0 {
		writeError(w, failStatus, "BLOB_UNKNOWN", fmt.Sprintf("blob failed: %s", d))
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", fmt.Sprintf("blob unknown: %s", d))
		return
	}
	if redirect && req.Method == http.MethodGet {
		// A signed-URL-like query, as object stores use.
		target := r.redirSrv.URL
		if r.downgrade {
			target = "http://" + r.Host()
		}
		http.Redirect(w, req, target+"/blob/"+repo+"/"+d.String()+"?sig=x", http.StatusTemporaryRedirect)
		return
	}
	r.writeBlob(w, req, d, data)
}

// serveRedirected is the second server: it serves blobs without any auth,
// and any Authorization header it receives is visible in the log.
func (r *Registry) serveRedirected(w http.ResponseWriter, req *http.Request) {
	rec := r.record("redirect", w, req)
	rest, ok := strings.CutPrefix(req.URL.Path, "/blob/")
	i := strings.LastIndex(rest, "/")
	if !ok || i < 0 {
		writeError(rec, http.StatusNotFound, "NOT_FOUND", "unknown path")
		return
	}
	repo := rest[:i]
	d, err := digest.Parse(rest[i+1:])
	if err != nil {
		writeError(rec, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
		return
	}
	r.mu.Lock()
	data, found := r.blobs[repo][d]
	r.mu.Unlock()
	if !found {
		writeError(rec, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown")
		return
	}
	// Log the path like a registry blob path so BlobGets counts it.
	r.mu.Lock()
	rec.entry.Path = "/v2/" + repo + "/blobs/" + d.String()
	r.mu.Unlock()
	r.writeBlob(rec, req, d, data)
}

func (r *Registry) writeBlob(w http.ResponseWriter, req *http.Request, d digest.Digest, data []byte) {
	r.mu.Lock()
	corrupt := r.corrupt[d]
	endless := r.endless["blob@"+d.String()]
	cut, hasCut := r.cut[d]
	stallAt, stalls := r.stall[d]
	if hasCut && req.Method == http.MethodGet {
		if cut.times--; cut.times <= 0 {
			delete(r.cut, d)
		} else {
			r.cut[d] = cut
		}
	}
	r.mu.Unlock()

	if corrupt {
		data = append([]byte(nil), data...)
		if len(data) > 0 {
			data[len(data)-1] ^= 0xff
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Accept-Ranges", "bytes")
	if endless {
		w.WriteHeader(http.StatusOK)
		if req.Method == http.MethodGet {
			writeEndless(req, w)
		}
		return
	}
	start := int64(0)
	status := http.StatusOK
	if rg := req.Header.Get("Range"); rg != "" && !r.noRange {
		s, ok := strings.CutPrefix(rg, "bytes=")
		s, _, _ = strings.Cut(s, "-")
		n, err := strconv.ParseInt(s, 10, 64)
		if !ok || err != nil || n < 0 || n >= int64(len(data)) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(data)))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start, status = n, http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", n, len(data)-1, len(data)))
	}
	body := data[start:]
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if req.Method != http.MethodGet {
		return
	}
	if stalls {
		n := min(max(stallAt-start, 0), int64(len(body)))
		_, _ = w.Write(body[:n])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		r.mu.Lock()
		r.stalled++
		r.mu.Unlock()
		<-req.Context().Done()
		r.mu.Lock()
		r.stalled--
		r.mu.Unlock()
		panic(http.ErrAbortHandler)
	}
	if hasCut {
		n := cut.after - start
		if n < 0 {
			n = 0
		}
		if n < int64(len(body)) {
			_, _ = w.Write(body[:n])
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			// Abort makes net/http drop the connection mid-body.
			panic(http.ErrAbortHandler)
		}
	}
	_, _ = w.Write(body)
}

// BasicAuthHeader returns the Authorization value for user:pass, handy to
// assert on the request log.
func BasicAuthHeader(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}
