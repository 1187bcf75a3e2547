package reference

import (
	"errors"
	"testing"
)

// FuzzParse: any string either fails with ErrInvalid or gives a
// normalized reference that parses again to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"busybox", "busybox:1.36", "docker.io/library/busybox:latest", "127.0.0.1:5000/a/b",
		"registry.k8s.io/pause@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"a:b@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "UPPER", "a//b", ":", "@", "sha256:abc", "x:" + string(make([]byte, 200))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error does not wrap ErrInvalid: %v", s, err)
			}
			return
		}
		again, err := Parse(r.String())
		if err != nil || again.String() != r.String() {
			t.Fatalf("Parse(%q) = %q, which parses to %q, %v", s, r, again, err)
		}
		if r.Tag() == "" && r.Digest() == "" {
			t.Fatalf("Parse(%q) = %q has neither tag nor digest", s, r)
		}
		_ = r.Familiar()
		_ = r.Domain()
		_ = r.Path()
	})
}
