package reference

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	const d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	tests := []struct {
		in, want, domain, path, tag string
		dgst                        string
	}{
		{in: "busybox", want: "docker.io/library/busybox:latest", domain: "docker.io", path: "library/busybox", tag: "latest"},
		{in: "busybox:1.36", want: "docker.io/library/busybox:1.36", domain: "docker.io", path: "library/busybox", tag: "1.36"},
		{in: "user/app", want: "docker.io/user/app:latest", domain: "docker.io", path: "user/app", tag: "latest"},
		{in: "registry.k8s.io/pause:3.10", want: "registry.k8s.io/pause:3.10", domain: "registry.k8s.io", path: "pause", tag: "3.10"},
		{in: "127.0.0.1:5000/a/b", want: "127.0.0.1:5000/a/b:latest", domain: "127.0.0.1:5000", path: "a/b", tag: "latest"},
		{in: "localhost/x", want: "localhost/x:latest", domain: "localhost", path: "x", tag: "latest"},
		{in: "busybox@" + d, want: "docker.io/library/busybox@" + d, domain: "docker.io", path: "library/busybox", dgst: d},
		{in: "busybox:1.36@" + d, want: "docker.io/library/busybox@" + d, domain: "docker.io", path: "library/busybox", dgst: d},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			r, err := Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if r.String() != tc.want || r.Domain() != tc.domain || r.Path() != tc.path || r.Tag() != tc.tag || string(r.Digest()) != tc.dgst {
				t.Fatalf("got %s domain=%s path=%s tag=%s digest=%s", r, r.Domain(), r.Path(), r.Tag(), r.Digest())
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	for _, in := range []string{"", "library/Busybox", "busybox@sha256:abc", "a b", ":tag", "busybox:", "-lead", string(make([]byte, 5000))} {
		if _, err := Parse(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) = %v, want ErrInvalid", in, err)
		}
	}
}

func TestLooksLikeImageID(t *testing.T) {
	const hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	for in, want := range map[string]bool{hex: true, "sha256:" + hex: true, "busybox": false, "sha256:xyz": false, hex[:12]: false} {
		if _, ok := LooksLikeImageID(in); ok != want {
			t.Errorf("LooksLikeImageID(%q) = %v", in, ok)
		}
	}
}
