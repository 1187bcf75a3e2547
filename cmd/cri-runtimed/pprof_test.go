package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestServePprof(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:0", ":0", "nohost"} {
		if _, stop, err := servePprof(addr); err == nil {
			stop()
			t.Errorf("servePprof(%q) succeeded, want a refusal of a non-loopback address", addr)
		}
	}
	addr, stop, err := servePprof("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "goroutine profile") {
		t.Errorf("goroutine profile: %s %.200s", resp.Status, b)
	}
}
