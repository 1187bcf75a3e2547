package registrytest

import (
	"io"
	"net/http"
	"testing"
)

func TestRegistryServesRangesAndLogs(t *testing.T) {
	reg := New(t)
	desc := reg.PushBlob("a/b", []byte("hello world"))
	tests := []struct {
		rng        string
		wantStatus int
		wantBody   string
	}{
		{"", http.StatusOK, "hello world"},
		{"bytes=6-", http.StatusPartialContent, "world"},
		{"bytes=99-", http.StatusRequestedRangeNotSatisfiable, ""},
	}
	for _, tc := range tests {
		req, err := http.NewRequest(http.MethodGet, reg.URL()+"/v2/a/b/blobs/"+desc.Digest.String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.rng != "" {
			req.Header.Set("Range", tc.rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.wantStatus || (tc.wantBody != "" && string(body) != tc.wantBody) {
			t.Errorf("Range %q: %d %q", tc.rng, resp.StatusCode, body)
		}
	}
	if n := reg.BlobGets(desc.Digest); n != 2 {
		t.Errorf("BlobGets = %d, want 2", n)
	}
}
