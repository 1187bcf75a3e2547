package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Sentinel errors; every error this package returns for these conditions
// matches one of them with errors.Is.
var (
	ErrNotFound       = errors.New("not found")
	ErrUnauthorized   = errors.New("unauthorized")
	ErrTooLarge       = errors.New("too large")
	ErrSchema1        = errors.New("docker schema1 manifests are not supported (deprecated image format; rebuild or re-push the image)")
	ErrDigestMismatch = errors.New("digest mismatch")
)

// apiError is one entry of a registry's JSON error body.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// StatusError is an unexpected HTTP status from a registry, with the
// registry's own error codes when it sent them.
type StatusError struct {
	StatusCode int
	Errors     []string // "CODE: message" from the JSON error body
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%d %s", e.StatusCode, strings.ToLower(http.StatusText(e.StatusCode)))
	if len(e.Errors) > 0 {
		s += ": " + strings.Join(e.Errors, "; ")
	}
	return s
}

// Unwrap maps the status to a sentinel so callers need not know HTTP.
func (e *StatusError) Unwrap() error {
	switch e.StatusCode {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrUnauthorized
	}
	return nil
}

// statusError reads (a bounded amount of) the error body of resp and closes it.
func statusError(resp *http.Response) error {
	defer resp.Body.Close()
	e := &StatusError{StatusCode: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var doc struct {
		Errors []apiError `json:"errors"`
	}
	if json.Unmarshal(body, &doc) == nil {
		for _, a := range doc.Errors {
			msg := a.Code
			if a.Message != "" {
				msg += ": " + a.Message
			}
			e.Errors = append(e.Errors, msg)
		}
	}
	return e
}

// HostError is the failure of one host.
type HostError struct {
	Host string // scheme://host[/path]
	Err  error
}

// HostsError is the failure of an operation on every host that was tried.
// Its message names the operation, the image and each host with its cause;
// errors.Is and errors.As see the cause from the last host tried (the
// upstream server when it was reached), which is the authoritative one.
type HostsError struct {
	Op    string // "resolve", "fetch manifest", "fetch blob"
	Ref   string
	Hosts []HostError
}

func (e *HostsError) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	b.WriteByte(' ')
	b.WriteString(e.Ref)
	b.WriteString(": ")
	if len(e.Hosts) == 0 {
		b.WriteString("no configured host has the needed capability")
	}
	for i, h := range e.Hosts {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(h.Host)
		b.WriteString(": ")
		b.WriteString(h.Err.Error())
	}
	return b.String()
}

func (e *HostsError) Unwrap() error {
	if len(e.Hosts) == 0 {
		return ErrNotFound
	}
	return e.Hosts[len(e.Hosts)-1].Err
}
