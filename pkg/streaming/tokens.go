package streaming

import (
	"net/url"
	"path"
	"sync"
	"time"
)

// tokenTTL is how long a streaming URL may wait for its client, as the
// library's request cache does.
const tokenTTL = time.Minute

// tokens remembers when each URL handed out expires. The library forgets
// a token after one use or one minute too, but by its own clock and
// constant; this check is the one the daemon owns and its tests hold.
type tokens struct {
	now func() time.Time

	mu      sync.Mutex
	expires map[string]time.Time // URL path -> expiry
}

func newTokens(now func() time.Time) *tokens {
	return &tokens{now: now, expires: map[string]time.Time{}}
}

// issue records a URL just handed out, and forgets expired ones (the
// library bounds how many are in flight).
func (t *tokens) issue(rawURL string) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for p, exp := range t.expires {
		if now.After(exp) {
			delete(t.expires, p)
		}
	}
	t.expires[path.Clean(u.Path)] = now.Add(tokenTTL)
}

// valid reports whether a request for urlPath may reach the library: the
// URL was handed out and has not expired. A URL that expired stays
// refused.
func (t *tokens) valid(urlPath string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	exp, ok := t.expires[path.Clean(urlPath)]
	return ok && !t.now().After(exp)
}
