package registry

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

const (
	clientID = "cri-runtimed"
	// defaultTokenLifetime is the lifetime the token spec tells clients to
	// assume when the server does not say.
	defaultTokenLifetime = 60 * time.Second
	// tokenSlack renews tokens a little before they expire, so that a
	// request does not race the expiry.
	tokenSlack   = 10 * time.Second
	maxTokenBody = 1 << 20
)

// challenge is one parsed WWW-Authenticate entry.
type challenge struct {
	scheme string // "basic" or "bearer"
	params map[string]string
}

// authCache remembers, per credentials and host, which scheme the host asked
// for and the bearer tokens obtained, so that later requests authenticate
// up front instead of taking a 401 first.
type authCache struct {
	mu      sync.Mutex
	schemes map[string]challenge
	tokens  map[string]cachedToken
}

type cachedToken struct {
	token   string
	expires time.Time
}

func newAuthCache() *authCache {
	return &authCache{schemes: map[string]challenge{}, tokens: map[string]cachedToken{}}
}

func credsKey(c Credentials) string {
	if c == (Credentials{}) {
		return "anonymous"
	}
	h := sha256.Sum256([]byte(c.Username + "\x00" + c.Password + "\x00" + c.IdentityToken + "\x00" + c.RegistryToken))
	return hex.EncodeToString(h[:8])
}

func (r *Repository) scope() string { return "repository:" + r.path + ":pull" }

// authorize sets the Authorization header from what is already known.
func (r *Repository) authorize(req *http.Request, hc *hostClient) {
	a := r.c.auth
	hostKey := credsKey(hc.creds) + "|" + hc.key()
	a.mu.Lock()
	ch, ok := a.schemes[hostKey]
	var tok cachedToken
	if ok && ch.scheme == "bearer" {
		tok = a.tokens[tokenKey(hostKey, ch, r.scopes(ch))]
	}
	a.mu.Unlock()

	switch {
	case hc.creds.RegistryToken != "":
		req.Header.Set("Authorization", "Bearer "+hc.creds.RegistryToken)
	case !ok:
	case ch.scheme == "basic" && hc.creds.Username != "":
		req.SetBasicAuth(hc.creds.Username, hc.creds.Password)
	case ch.scheme == "bearer" && tok.token != "" && time.Now().Before(tok.expires):
		req.Header.Set("Authorization", "Bearer "+tok.token)
	}
}

func (r *Repository) scopes(ch challenge) []string {
	s := []string{r.scope()}
	for _, x := range strings.Fields(ch.params["scope"]) {
		if x != s[0] {
			s = append(s, x)
		}
	}
	return s
}

func tokenKey(hostKey string, ch challenge, scopes []string) string {
	return hostKey + "|" + ch.params["realm"] + "|" + ch.params["service"] + "|" + strings.Join(scopes, " ")
}

// handleChallenge reacts to a 401: it records the scheme the host wants and,
// for bearer, fetches a fresh token. It returns an error when there is no
// way to satisfy the challenge.
func (r *Repository) handleChallenge(ctx context.Context, hc *hostClient, resp *http.Response) error {
	chs := parseChallenges(resp.Header.Values("WWW-Authenticate"))
	var ch challenge
	for _, c := range chs {
		if c.scheme == "bearer" {
			ch = c
			break
		}
		if c.scheme == "basic" && ch.scheme == "" {
			ch = c
		}
	}
	hostKey := credsKey(hc.creds) + "|" + hc.key()
	switch ch.scheme {
	case "basic":
		if hc.creds.Username == "" {
			return fmt.Errorf("registry requires basic auth and no credentials were given: %w", ErrUnauthorized)
		}
		r.c.auth.mu.Lock()
		r.c.auth.schemes[hostKey] = ch
		r.c.auth.mu.Unlock()
		return nil
	case "bearer":
		if hc.creds.RegistryToken != "" {
			return fmt.Errorf("registry rejected the registry token: %w", ErrUnauthorized)
		}
		scopes := r.scopes(ch)
		tok, err := r.fetchToken(ctx, hc, ch, scopes)
		if err != nil {
			return err
		}
		r.c.auth.mu.Lock()
		r.c.auth.schemes[hostKey] = ch
		r.c.auth.tokens[tokenKey(hostKey, ch, scopes)] = tok
		r.c.auth.mu.Unlock()
		return nil
	default:
		return fmt.Errorf("registry answered 401 without a usable WWW-Authenticate challenge: %w", ErrUnauthorized)
	}
}

func (r *Repository) fetchToken(ctx context.Context, hc *hostClient, ch challenge, scopes []string) (cachedToken, error) {
	realm := ch.params["realm"]
	u, err := url.Parse(realm)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return cachedToken{}, fmt.Errorf("invalid token realm %q: %w", realm, ErrUnauthorized)
	}
	// The registry chooses the realm: a registry reached over https must
	// not get our credentials (or even a token request) sent in clear.
	if u.Scheme == "http" && hc.host.Scheme != "http" {
		return cachedToken{}, fmt.Errorf("token realm %q is plain http while the registry is %s: refusing to send credentials in clear: %w", realm, hc.host.Scheme, ErrUnauthorized)
	}
	service := ch.params["service"]
	creds := hc.creds
	if creds.IdentityToken != "" {
		form := url.Values{}
		form.Set("grant_type", "refresh_token")
		form.Set("refresh_token", creds.IdentityToken)
		form.Set("service", service)
		form.Set("client_id", clientID)
		form.Set("scope", strings.Join(scopes, " "))
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, realm, strings.NewReader(form.Encode()))
		if err != nil {
			return cachedToken{}, fmt.Errorf("token request to %s: %w", realm, err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		tok, status, err := r.doToken(hc, req)
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			return tok, err
		}
		// Token servers without OAuth2 POST support take the refresh token
		// as a basic-auth password instead.
		klog.V(4).InfoS("Token server does not support POST, falling back to GET", "realm", realm, "status", status)
	}

	q := u.Query()
	if service != "" {
		q.Set("service", service)
	}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	if creds.Username != "" {
		q.Set("account", creds.Username)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return cachedToken{}, fmt.Errorf("token request to %s: %w", realm, err)
	}
	switch {
	case creds.IdentityToken != "":
		req.SetBasicAuth(creds.Username, creds.IdentityToken)
	case creds.Username != "":
		req.SetBasicAuth(creds.Username, creds.Password)
	}
	tok, _, err := r.doToken(hc, req)
	return tok, err
}

// doToken sends a token request and parses the answer. It returns the HTTP
// status (0 on transport errors) so the caller can fall back.
func (r *Repository) doToken(hc *hostClient, req *http.Request) (cachedToken, int, error) {
	req.Header.Set("User-Agent", r.c.userAgent)
	req.Header.Set("Accept", "application/json")
	resp, err := hc.client.Do(req)
	if err != nil {
		return cachedToken{}, 0, fmt.Errorf("token request to %s: %w", req.URL.Host, unwrapURLError(err))
	}
	klog.V(4).InfoS("Registry token request", "method", req.Method, "realm", req.URL.Host, "status", resp.StatusCode)
	if resp.StatusCode != http.StatusOK {
		err := statusError(resp)
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return cachedToken{}, resp.StatusCode, fmt.Errorf("token request to %s: %w", req.URL.Host, err)
		}
		return cachedToken{}, resp.StatusCode, fmt.Errorf("token request to %s: %w: %w", req.URL.Host, err, ErrUnauthorized)
	}
	defer resp.Body.Close()
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		IssuedAt    string `json:"issued_at"`
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody))
	if err != nil {
		return cachedToken{}, resp.StatusCode, fmt.Errorf("token response from %s: %w", req.URL.Host, err)
	}
	if err := json.Unmarshal(data, &body); err != nil {
		return cachedToken{}, resp.StatusCode, fmt.Errorf("token response from %s: %w", req.URL.Host, err)
	}
	tok := body.Token
	if tok == "" {
		tok = body.AccessToken
	}
	if tok == "" {
		return cachedToken{}, resp.StatusCode, fmt.Errorf("token response from %s has no token: %w", req.URL.Host, ErrUnauthorized)
	}
	life := defaultTokenLifetime
	if body.ExpiresIn > 0 {
		life = time.Duration(body.ExpiresIn) * time.Second
	}
	start := time.Now()
	if t, err := time.Parse(time.RFC3339, body.IssuedAt); err == nil && t.Before(start) {
		start = t
	}
	return cachedToken{token: tok, expires: start.Add(life - tokenSlack)}, resp.StatusCode, nil
}

// parseChallenges parses WWW-Authenticate values such as
// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`.
func parseChallenges(values []string) []challenge {
	var out []challenge
	for _, v := range values {
		s := strings.TrimSpace(v)
		for s != "" {
			scheme, rest, _ := strings.Cut(s, " ")
			ch := challenge{scheme: strings.ToLower(strings.TrimSpace(scheme)), params: map[string]string{}}
			s = parseParams(strings.TrimSpace(rest), ch.params)
			out = append(out, ch)
		}
	}
	return out
}

// parseParams reads comma-separated key=value or key="quoted value" pairs
// into params and returns the unparsed remainder (another challenge).
func parseParams(s string, params map[string]string) string {
	for s != "" {
		eq := strings.IndexByte(s, '=')
		sp := strings.IndexByte(s, ' ')
		if eq < 0 || (sp >= 0 && sp < eq) {
			// Not a parameter: the start of the next challenge.
			return s
		}
		key := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(s); i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
					b.WriteByte(s[i])
					continue
				}
				if s[i] == '"' {
					break
				}
				b.WriteByte(s[i])
			}
			val = b.String()
			if i < len(s) {
				i++
			}
			s = s[i:]
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			val = strings.TrimSpace(s[:end])
			s = s[end:]
		}
		params[key] = val
		s = strings.TrimLeft(s, ", ")
	}
	return s
}

func decodeAuth(auth string) (string, string, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(auth))
	if err != nil {
		return "", "", fmt.Errorf("decode auth: %w", err)
	}
	u, p, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", errors.New("decode auth: expected base64 of user:password")
	}
	return u, p, nil
}
