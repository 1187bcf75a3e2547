package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Client talks to a daemon's admin socket.
type Client struct {
	http *http.Client
}

// NewClient returns a client of the admin socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}
	return &Client{http: &http.Client{Transport: tr}}
}

// Import streams the archive r (size bytes, or -1 if unknown) to the
// daemon and returns the images it recorded.
func (c *Client) Import(ctx context.Context, r io.Reader, size int64) ([]Image, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://admin/v1/images/import", r)
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/x-tar")
	var out imagesResponse
	if err := c.do(req, &out); err != nil {
		return nil, err
	}
	return out.Images, nil
}

// Export writes the images named by refs to w as an OCI layout tar.
// An error means w did not get the whole archive.
func (c *Client) Export(ctx context.Context, w io.Writer, refs []string) error {
	q := url.Values{"ref": refs}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://admin/v1/images/export?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("export cut short: %w", err)
	}
	return nil
}

// List returns the node's images.
func (c *Client) List(ctx context.Context) ([]Image, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://admin/v1/images", nil)
	if err != nil {
		return nil, err
	}
	var out imagesResponse
	if err := c.do(req, &out); err != nil {
		return nil, err
	}
	return out.Images, nil
}

func (c *Client) do(req *http.Request, v any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e errorResponse
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return errors.New(e.Error)
	}
	return fmt.Errorf("admin socket: %s: %s", resp.Status, strings.TrimSpace(string(b)))
}
