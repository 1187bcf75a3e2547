//go:build e2e

package registry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	digest "github.com/opencontainers/go-digest"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

// Push uploads an artifact to the registry at baseURL (http://host:port)
// with the distribution v2 API: the manifests an index lists first (by
// digest), then every blob not already present (HEAD, then POST
// /blobs/uploads/ and a monolithic PUT ?digest=), then the manifest itself
// under reference (a tag; "" pushes by digest only).
func Push(ctx context.Context, baseURL, repo, reference string, a images.Artifact) error {
	for _, child := range a.Children() {
		if err := Push(ctx, baseURL, repo, "", child); err != nil {
			return err
		}
	}
	for _, b := range a.Blobs() {
		if err := pushBlob(ctx, baseURL, repo, b); err != nil {
			return err
		}
	}
	m := a.Manifest()
	if reference == "" {
		reference = m.Digest.String()
	}
	return pushManifest(ctx, baseURL, repo, reference, m)
}

func do(ctx context.Context, method, u, contentType string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if body != nil {
		req.ContentLength = int64(len(body))
	}
	return http.DefaultClient.Do(req)
}

// unexpected turns a response with the wrong status into an error that
// carries the registry's error body.
func unexpected(what string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Errorf("%s: %s: %s", what, resp.Status, bytes.TrimSpace(body))
}

// BlobExists asks the registry whether repo has the blob (HEAD).
func BlobExists(ctx context.Context, baseURL, repo string, d digest.Digest) (bool, error) {
	resp, err := do(ctx, http.MethodHead, fmt.Sprintf("%s/v2/%s/blobs/%s", baseURL, repo, d), "", nil)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, unexpected("HEAD blob "+d.String(), resp)
}

func pushBlob(ctx context.Context, baseURL, repo string, b images.Blob) error {
	exists, err := BlobExists(ctx, baseURL, repo, b.Digest)
	if err != nil || exists {
		return err
	}
	resp, err := do(ctx, http.MethodPost, fmt.Sprintf("%s/v2/%s/blobs/uploads/", baseURL, repo), "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return unexpected("start upload of "+b.Digest.String(), resp)
	}
	// Location may be relative and already carry query parameters (the
	// upload state); digest is added to them.
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("upload location: %w", err)
	}
	q := loc.Query()
	q.Set("digest", b.Digest.String())
	loc.RawQuery = q.Encode()

	resp, err = do(ctx, http.MethodPut, loc.String(), "application/octet-stream", b.Data)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return unexpected("upload "+b.Digest.String(), resp)
	}
	return nil
}

func pushManifest(ctx context.Context, baseURL, repo, reference string, m images.Blob) error {
	u := fmt.Sprintf("%s/v2/%s/manifests/%s", baseURL, repo, url.PathEscape(reference))
	resp, err := do(ctx, http.MethodPut, u, m.MediaType, m.Data)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return unexpected("put manifest "+repo+":"+reference, resp)
	}
	// The registry must store the exact bytes: a digest it computed
	// differently would make every RepoDigest assertion wrong.
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != m.Digest.String() {
		return fmt.Errorf("put manifest %s:%s: registry says digest %s, built %s", repo, reference, got, m.Digest)
	}
	return nil
}

// DeleteManifest removes a manifest by digest (the registry's storage
// delete is enabled), e.g. to make a tag disappear upstream.
func DeleteManifest(ctx context.Context, baseURL, repo string, d digest.Digest) error {
	resp, err := do(ctx, http.MethodDelete, fmt.Sprintf("%s/v2/%s/manifests/%s", baseURL, repo, d), "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return unexpected("delete manifest "+d.String(), resp)
	}
	return nil
}

// ManifestDigest resolves repo:reference with HEAD, as a runtime's
// resolver does, accepting every manifest type package images builds.
func ManifestDigest(ctx context.Context, baseURL, repo, reference string) (digest.Digest, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, fmt.Sprintf("%s/v2/%s/manifests/%s", baseURL, repo, reference), nil)
	if err != nil {
		return "", err
	}
	for _, mt := range []string{images.MediaTypeOCIIndex, images.MediaTypeOCIManifest, images.MediaTypeDockerList, images.MediaTypeDockerManifest} {
		req.Header.Add("Accept", mt)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", unexpected("HEAD manifest "+repo+":"+reference, resp)
	}
	if n, _ := strconv.Atoi(resp.Header.Get("Content-Length")); n == 0 {
		return "", fmt.Errorf("HEAD manifest %s:%s: empty", repo, reference)
	}
	return digest.Parse(resp.Header.Get("Docker-Content-Digest"))
}
