package reference

import (
	"errors"
	"fmt"
	"strings"

	dref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
)

// ErrInvalid marks a reference that cannot be parsed.
var ErrInvalid = errors.New("invalid image reference")

// Ref is a normalized image reference.
type Ref struct {
	named dref.Named
}

// Parse normalizes s: a missing domain means docker.io, a missing path
// component under docker.io means library/, and a missing tag (without a
// digest) means :latest. A reference with both a tag and a digest keeps
// only the digest, as pulls by digest ignore the tag.
func Parse(s string) (Ref, error) {
	if s == "" {
		return Ref{}, fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(s) > 4096 {
		return Ref{}, fmt.Errorf("%w: longer than 4096 characters", ErrInvalid)
	}
	n, err := dref.ParseNormalizedNamed(s)
	if err != nil {
		return Ref{}, fmt.Errorf("%w %q: %v", ErrInvalid, s, err)
	}
	if c, ok := n.(dref.Canonical); ok {
		if err := c.Digest().Validate(); err != nil {
			return Ref{}, fmt.Errorf("%w %q: %v", ErrInvalid, s, err)
		}
		if _, tagged := n.(dref.Tagged); tagged {
			n, err = dref.WithDigest(dref.TrimNamed(n), c.Digest())
			if err != nil {
				return Ref{}, fmt.Errorf("%w %q: %v", ErrInvalid, s, err)
			}
		}
		return Ref{named: n}, nil
	}
	return Ref{named: dref.TagNameOnly(n)}, nil
}

// LooksLikeImageID reports whether s is a bare image ID ("sha256:<hex>"
// or 64 hex characters) rather than a name.
func LooksLikeImageID(s string) (digest.Digest, bool) {
	if strings.HasPrefix(s, "sha256:") {
		d := digest.Digest(s)
		return d, d.Validate() == nil
	}
	if len(s) == 64 {
		d := digest.Digest("sha256:" + s)
		return d, d.Validate() == nil
	}
	return "", false
}

// Named returns the underlying distribution reference.
func (r Ref) Named() dref.Named { return r.named }

// Repository is the name without tag or digest: docker.io/library/busybox.
func (r Ref) Repository() string { return r.named.Name() }

// Domain is the registry host: docker.io, 127.0.0.1:5000.
func (r Ref) Domain() string { return dref.Domain(r.named) }

// Path is the repository path on the registry: library/busybox.
func (r Ref) Path() string { return dref.Path(r.named) }

// Tag returns the tag, "" for a digest reference.
func (r Ref) Tag() string {
	if t, ok := r.named.(dref.Tagged); ok {
		return t.Tag()
	}
	return ""
}

// Digest returns the digest of a digest reference, "" otherwise.
func (r Ref) Digest() digest.Digest {
	if c, ok := r.named.(dref.Canonical); ok {
		return c.Digest()
	}
	return ""
}

// String is the full normalized form: docker.io/library/busybox:latest.
func (r Ref) String() string { return r.named.String() }

// Familiar is the short form users type: busybox:latest.
func (r Ref) Familiar() string { return dref.FamiliarString(r.named) }

// RepoDigest is the reference of repo at dgst: docker.io/library/busybox@sha256:...
func (r Ref) RepoDigest(dgst digest.Digest) string {
	return r.Repository() + "@" + dgst.String()
}
