package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/hosts"
)

// Manifest media types this client accepts.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"

	mediaTypeDockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageIndex,
	ocispec.MediaTypeImageManifest,
	MediaTypeDockerManifestList,
	MediaTypeDockerManifest,
}, ", ")

// IsIndex reports whether mediaType is an OCI index or Docker manifest list.
func IsIndex(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex || mediaType == MediaTypeDockerManifestList
}

func isManifestType(mt string) bool {
	switch mt {
	case ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest, MediaTypeDockerManifestList, MediaTypeDockerManifest:
		return true
	}
	return false
}

func isSchema1(mt string) bool {
	return mt == mediaTypeDockerSchema1 || mt == mediaTypeDockerSchema1Signed
}

func contentType(resp *http.Response) string {
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return mt
}

// Name returns the repository name, e.g. docker.io/library/busybox.
func (r *Repository) Name() reference.Named { return r.name }

// eachHost runs try on every host with one of caps, in order, until one
// succeeds. Context cancellation stops at once.
func (r *Repository) eachHost(ctx context.Context, op, ref string, caps []hosts.Capabilities, try func(*hostClient) error) error {
	herr := &HostsError{Op: op, Ref: ref}
	for _, hc := range r.hosts {
		ok := false
		for _, c := range caps {
			ok = ok || hc.host.Capabilities.Has(c)
		}
		if !ok {
			continue
		}
		err := try(hc)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", op, ref, ctx.Err())
		}
		klog.V(4).InfoS("Registry host failed, trying the next one", "op", op, "ref", ref, "host", hc.host.String(), "err", err)
		herr.Hosts = append(herr.Hosts, HostError{Host: hc.host.String(), Err: err})
	}
	return herr
}

// Resolve turns a tag or digest reference into the descriptor of its
// manifest or index. It asks with HEAD and falls back to GET when the
// registry does not support HEAD or does not say enough.
func (r *Repository) Resolve(ctx context.Context, ref reference.Named) (ocispec.Descriptor, error) {
	if ref.Name() != r.name.Name() {
		return ocispec.Descriptor{}, fmt.Errorf("resolve %s: reference is not in repository %s", ref, r.name)
	}
	var (
		object string
		want   digest.Digest
		caps   = []hosts.Capabilities{hosts.CapabilityResolve}
	)
	switch {
	case isDigested(ref):
		want = ref.(reference.Digested).Digest()
		if err := want.Validate(); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("resolve %s: %w", ref, err)
		}
		object = want.String()
		caps = append(caps, hosts.CapabilityPull)
	case isTagged(ref):
		object = ref.(reference.Tagged).Tag()
	default:
		ref = reference.TagNameOnly(ref)
		object = ref.(reference.Tagged).Tag()
	}
	var desc ocispec.Descriptor
	err := r.eachHost(ctx, "resolve", ref.String(), caps, func(hc *hostClient) error {
		var err error
		desc, err = r.resolveOn(ctx, hc, object, want)
		return err
	})
	return desc, err
}

func isDigested(ref reference.Named) bool { _, ok := ref.(reference.Digested); return ok }
func isTagged(ref reference.Named) bool   { _, ok := ref.(reference.Tagged); return ok }

func (r *Repository) resolveOn(ctx context.Context, hc *hostClient, object string, want digest.Digest) (ocispec.Descriptor, error) {
	u := hc.host.URL(r.path, "manifests", object)
	hdr := http.Header{"Accept": {manifestAccept}}

	resp, err := r.send(ctx, hc, http.MethodHead, u, hdr)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		mt := contentType(resp)
		if isSchema1(mt) {
			return ocispec.Descriptor{}, ErrSchema1
		}
		d, _ := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
		if want != "" {
			if d != "" && d != want {
				return ocispec.Descriptor{}, fmt.Errorf("registry says %s for manifest %s: %w", d, want, ErrDigestMismatch)
			}
			d = want
		}
		if d != "" && resp.ContentLength > 0 && isManifestType(mt) {
			return ocispec.Descriptor{MediaType: mt, Digest: d, Size: resp.ContentLength}, nil
		}
		// Not enough information (no digest header, odd content type):
		// fetch the manifest and look at it.
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden ||
		retryableStatus(resp.StatusCode):
		return ocispec.Descriptor{}, statusError(resp)
	default:
		// HEAD unsupported (405, 400, 501...): GET instead.
	}

	body, resp, err := r.getManifest(ctx, hc, u, hdr)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	got := digest.FromBytes(body)
	if want != "" && want.Algorithm() != digest.Canonical {
		got = want.Algorithm().FromBytes(body)
	}
	if want != "" && got != want {
		return ocispec.Descriptor{}, fmt.Errorf("manifest has digest %s, want %s: %w", got, want, ErrDigestMismatch)
	}
	if hd, err := digest.Parse(resp.Header.Get("Docker-Content-Digest")); err == nil && hd.Algorithm() == got.Algorithm() && hd != got {
		return ocispec.Descriptor{}, fmt.Errorf("manifest has digest %s, registry says %s: %w", got, hd, ErrDigestMismatch)
	}
	mt, err := manifestMediaType(contentType(resp), body)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: mt, Digest: got, Size: int64(len(body))}, nil
}

// getManifest GETs a manifest, reading at most the size limit plus one byte
// so that an endless or huge body never lands in memory.
func (r *Repository) getManifest(ctx context.Context, hc *hostClient, u string, hdr http.Header) ([]byte, *http.Response, error) {
	resp, err := r.send(ctx, hc, http.MethodGet, u, hdr)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, statusError(resp)
	}
	defer resp.Body.Close()
	limit := r.c.maxManifest
	if resp.ContentLength > limit {
		return nil, nil, fmt.Errorf("manifest is %d bytes, limit is %d: %w", resp.ContentLength, limit, ErrTooLarge)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, nil, fmt.Errorf("manifest exceeds the %d byte limit: %w", limit, ErrTooLarge)
	}
	return body, resp, nil
}

// manifestMediaType determines the media type from the Content-Type and,
// when that is missing or generic, from the document itself.
func manifestMediaType(ct string, body []byte) (string, error) {
	if isSchema1(ct) {
		return "", ErrSchema1
	}
	var probe struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
		Config        json.RawMessage `json:"config"`
		FSLayers      json.RawMessage `json:"fsLayers"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return "", fmt.Errorf("manifest (content type %q) is not valid JSON: %w", ct, err)
	}
	if probe.SchemaVersion == 1 || probe.FSLayers != nil || isSchema1(probe.MediaType) {
		return "", ErrSchema1
	}
	switch {
	case isManifestType(ct):
		return ct, nil
	case isManifestType(probe.MediaType):
		return probe.MediaType, nil
	case probe.Manifests != nil:
		return ocispec.MediaTypeImageIndex, nil
	case probe.Config != nil:
		return ocispec.MediaTypeImageManifest, nil
	}
	return "", fmt.Errorf("unsupported manifest media type %q", ct)
}

// FetchManifest returns the manifest or index desc describes, after checking
// its size and digest. Bodies over the client's limit fail with ErrTooLarge.
func (r *Repository) FetchManifest(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	ref := r.name.String() + "@" + desc.Digest.String()
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("fetch manifest %s: %w", ref, err)
	}
	if desc.Size > r.c.maxManifest {
		return nil, fmt.Errorf("fetch manifest %s: manifest is %d bytes, limit is %d: %w", ref, desc.Size, r.c.maxManifest, ErrTooLarge)
	}
	if isSchema1(desc.MediaType) {
		return nil, fmt.Errorf("fetch manifest %s: %w", ref, ErrSchema1)
	}
	var out []byte
	err := r.eachHost(ctx, "fetch manifest", ref, []hosts.Capabilities{hosts.CapabilityPull}, func(hc *hostClient) error {
		u := hc.host.URL(r.path, "manifests", desc.Digest.String())
		body, resp, err := r.getManifest(ctx, hc, u, http.Header{"Accept": {manifestAccept}})
		if err != nil {
			return err
		}
		if desc.Size > 0 && int64(len(body)) != desc.Size {
			return fmt.Errorf("manifest is %d bytes, descriptor says %d: %w", len(body), desc.Size, ErrDigestMismatch)
		}
		if got := desc.Digest.Algorithm().FromBytes(body); got != desc.Digest {
			return fmt.Errorf("manifest has digest %s: %w", got, ErrDigestMismatch)
		}
		if _, err := manifestMediaType(contentType(resp), body); err != nil {
			return err
		}
		out = body
		return nil
	})
	return out, err
}

// FetchBlob streams the blob desc describes from byte offset on. desc.Size
// must be the blob's size: the stream fails if the registry sends more or
// fewer bytes. When offset is 0 the digest is verified too, and the last
// Read returns ErrDigestMismatch instead of io.EOF on a mismatch; with an
// offset the caller, which holds the first bytes, must verify. Broken
// connections are resumed with Range requests, within the retry budget.
func (r *Repository) FetchBlob(ctx context.Context, desc ocispec.Descriptor, offset int64) (io.ReadCloser, error) {
	ref := r.name.String() + "@" + desc.Digest.String()
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("fetch blob %s: %w", ref, err)
	}
	if offset < 0 || offset > desc.Size {
		return nil, fmt.Errorf("fetch blob %s: offset %d out of range [0, %d]", ref, offset, desc.Size)
	}
	var br *blobReader
	err := r.eachHost(ctx, "fetch blob", ref, []hosts.Capabilities{hosts.CapabilityPull}, func(hc *hostClient) error {
		body, err := r.openBlob(ctx, hc, desc, offset)
		if err != nil {
			return err
		}
		br = &blobReader{ctx: ctx, r: r, hc: hc, desc: desc, ref: ref, body: body, offset: offset}
		if offset == 0 {
			br.verifier = desc.Digest.Verifier()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return br, nil
}

// openBlob starts a GET of desc at offset and returns the body positioned at
// offset.
func (r *Repository) openBlob(ctx context.Context, hc *hostClient, desc ocispec.Descriptor, offset int64) (io.ReadCloser, error) {
	// identity: a transparently decompressed body would not match the digest.
	hdr := http.Header{"Accept-Encoding": {"identity"}}
	if offset > 0 {
		hdr.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	u := hc.host.URL(r.path, "blobs", desc.Digest.String())
	if offset == desc.Size {
		return io.NopCloser(strings.NewReader("")), nil
	}
	resp, err := r.send(ctx, hc, http.MethodGet, u, hdr)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if resp.ContentLength >= 0 && resp.ContentLength != desc.Size {
			resp.Body.Close()
			return nil, fmt.Errorf("blob is %d bytes, descriptor says %d: %w", resp.ContentLength, desc.Size, ErrDigestMismatch)
		}
		if offset > 0 {
			// The server ignored Range: skip what we already have.
			if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil {
				resp.Body.Close()
				return nil, fmt.Errorf("skip %d bytes of a server without Range support: %w", offset, err)
			}
		}
	case http.StatusPartialContent:
		start, ok := contentRangeStart(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			resp.Body.Close()
			return nil, fmt.Errorf("asked for bytes from %d, registry sent Content-Range %q", offset, resp.Header.Get("Content-Range"))
		}
		if resp.ContentLength >= 0 && resp.ContentLength != desc.Size-offset {
			resp.Body.Close()
			return nil, fmt.Errorf("range from %d is %d bytes, descriptor says %d in all: %w", offset, resp.ContentLength, desc.Size, ErrDigestMismatch)
		}
	default:
		return nil, statusError(resp)
	}
	return resp.Body, nil
}

func contentRangeStart(v string) (int64, bool) {
	s, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, false
	}
	s, _, ok = strings.Cut(s, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// blobReader enforces the descriptor's size, verifies the digest when it has
// seen the whole blob, and resumes broken downloads on the same host.
type blobReader struct {
	ctx      context.Context
	r        *Repository
	hc       *hostClient
	desc     ocispec.Descriptor
	ref      string
	body     io.ReadCloser
	offset   int64
	verifier digest.Verifier
	resumes  int
	err      error
}

func (b *blobReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	for {
		// Read at most one byte past the end to notice an oversized body.
		if rem := b.desc.Size - b.offset + 1; int64(len(p)) > rem {
			p = p[:rem]
		}
		n, err := b.body.Read(p)
		if b.offset+int64(n) > b.desc.Size {
			b.err = fmt.Errorf("fetch blob %s: registry sent more than %d bytes: %w", b.ref, b.desc.Size, ErrDigestMismatch)
			return 0, b.err
		}
		if b.verifier != nil {
			_, _ = b.verifier.Write(p[:n])
		}
		b.offset += int64(n)
		switch {
		case err == nil:
			return n, nil
		case errors.Is(err, io.EOF) && b.offset == b.desc.Size:
			b.err = io.EOF
			if b.verifier != nil && !b.verifier.Verified() {
				b.err = fmt.Errorf("fetch blob %s: content does not match the digest: %w", b.ref, ErrDigestMismatch)
			}
			return n, b.err
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		if rerr := b.resume(err); rerr != nil {
			b.err = rerr
			return n, b.err
		}
		if n > 0 {
			return n, nil
		}
	}
}

// resume reopens the blob at the current offset after cause broke the
// stream, unless the context is done or the retry budget is spent.
func (b *blobReader) resume(cause error) error {
	b.body.Close()
	if err := b.ctx.Err(); err != nil {
		return fmt.Errorf("fetch blob %s: %w", b.ref, err)
	}
	if b.resumes+1 >= b.r.c.attempts {
		return fmt.Errorf("fetch blob %s from %s at offset %d: %w", b.ref, b.hc.host, b.offset, cause)
	}
	b.resumes++
	klog.V(4).InfoS("Resuming blob download", "ref", b.ref, "host", b.hc.host.String(), "offset", b.offset, "err", cause)
	body, err := b.r.openBlob(b.ctx, b.hc, b.desc, b.offset)
	if err != nil {
		return fmt.Errorf("fetch blob %s from %s: resume at offset %d after %v: %w", b.ref, b.hc.host, b.offset, cause, err)
	}
	b.body = body
	return nil
}

func (b *blobReader) Close() error { return b.body.Close() }
