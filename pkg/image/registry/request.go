package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"k8s.io/klog/v2"
)

// send performs one logical request against one host: it authenticates
// (answering a 401 challenge once) and retries transient failures with
// exponential backoff. A non-nil response may have any status; the caller
// owns its body.
func (r *Repository) send(ctx context.Context, hc *hostClient, method, u string, hdr http.Header) (*http.Response, error) {
	var lastErr error
	for attempt := 0; ; attempt++ {
		resp, err := r.sendAuthed(ctx, hc, method, u, hdr)
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if !retryable(err) {
				return nil, err
			}
			lastErr = err
		case retryableStatus(resp.StatusCode):
			if attempt+1 >= r.c.attempts {
				return resp, nil
			}
			wait = retryAfter(resp)
			lastErr = statusError(resp)
		default:
			return resp, nil
		}
		if attempt+1 >= r.c.attempts {
			return nil, lastErr
		}
		if d := r.c.backoff << attempt; d > wait {
			wait = d
		}
		wait = min(wait, maxBackoff)
		klog.V(4).InfoS("Retrying registry request", "method", method, "url", u, "attempt", attempt+1, "delay", wait, "err", lastErr)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (r *Repository) sendAuthed(ctx context.Context, hc *hostClient, method, u string, hdr http.Header) (*http.Response, error) {
	for try := 0; ; try++ {
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return nil, fmt.Errorf("build request: %w", err)
		}
		for k, v := range hc.host.Header {
			req.Header[k] = append([]string(nil), v...)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", r.c.userAgent)
		r.authorize(req, hc)
		resp, err := hc.client.Do(req)
		if err != nil {
			klog.V(4).InfoS("Registry request failed", "method", method, "url", u, "err", err)
			return nil, unwrapURLError(err)
		}
		klog.V(4).InfoS("Registry request", "method", method, "url", u, "status", resp.StatusCode)
		if resp.StatusCode != http.StatusUnauthorized || try > 0 {
			return resp, nil
		}
		err = r.handleChallenge(ctx, hc, resp)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
	}
}

// unwrapURLError drops net/http's `Get "url": ` prefix: the host is already
// named by the caller and the URL would repeat it.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func retryableStatus(code int) bool {
	return code == http.StatusTooManyRequests || (code >= 500 && code != http.StatusNotImplemented)
}

// retryable reports whether a transport error may go away by itself.
// Certificate problems and speaking TLS to a plain-http port do not.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, ErrUnauthorized) {
		return false
	}
	var (
		rh tls.RecordHeaderError
		cv *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
		se *StatusError
		ae tls.AlertError
	)
	switch {
	case errors.As(err, &rh), errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci), errors.As(err, &ae):
		return false
	case errors.As(err, &se):
		return retryableStatus(se.StatusCode)
	}
	return true
}

func retryAfter(resp *http.Response) time.Duration {
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}
