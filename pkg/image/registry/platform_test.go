package registry

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func indexOf(t *testing.T, platforms ...string) []byte {
	t.Helper()
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex}
	for _, p := range platforms {
		parts := strings.Split(p, "/")
		pl := &ocispec.Platform{OS: parts[0], Architecture: parts[1]}
		if len(parts) > 2 {
			pl.Variant = parts[2]
		}
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(p), Size: 1, Platform: pl,
		})
	}
	b, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSelectPlatform(t *testing.T) {
	all := []string{"linux/amd64", "linux/arm64/v8", "linux/arm/v6", "linux/arm/v7", "windows/amd64", "unknown/unknown"}
	tests := []struct {
		name  string
		index []string
		want  ocispec.Platform
		pick  string // "" means no match
	}{
		{"amd64", all, ocispec.Platform{OS: "linux", Architecture: "amd64"}, "linux/amd64"},
		{"x86_64 alias", all, ocispec.Platform{OS: "linux", Architecture: "x86_64"}, "linux/amd64"},
		{"arm64 without variant", all, ocispec.Platform{OS: "linux", Architecture: "arm64"}, "linux/arm64/v8"},
		{"arm64 v8 matches entry without variant", []string{"linux/arm64"}, ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, "linux/arm64"},
		{"arm defaults to v7", all, ocispec.Platform{OS: "linux", Architecture: "arm"}, "linux/arm/v7"},
		{"arm v6 exact", all, ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, "linux/arm/v6"},
		{"arm v7 falls back to v6", []string{"linux/arm/v6"}, ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, "linux/arm/v6"},
		{"arm v6 does not take v7", []string{"linux/arm/v7"}, ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, ""},
		{"windows", all, ocispec.Platform{OS: "windows", Architecture: "amd64"}, "windows/amd64"},
		{"missing", []string{"linux/arm64"}, ocispec.Platform{OS: "linux", Architecture: "s390x"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			desc, err := SelectPlatform(indexOf(t, tc.index...), tc.want)
			if tc.pick == "" {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("err = %v, want ErrNotFound", err)
				}
				for _, p := range tc.index {
					if !strings.Contains(err.Error(), p) {
						t.Errorf("error %q does not list %s", err, p)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != digest.FromString(tc.pick) {
				t.Fatalf("picked %s, want %s", platformString(*desc.Platform), tc.pick)
			}
		})
	}

	if _, err := SelectPlatform([]byte(`{"schemaVersion":2,"config":{}}`), DefaultPlatform()); err == nil {
		t.Error("a manifest is not an index")
	}
	if _, err := SelectPlatform([]byte(`{`), DefaultPlatform()); err == nil {
		t.Error("bad JSON must fail")
	}
}

func TestDefaultPlatform(t *testing.T) {
	p := DefaultPlatform()
	if p.OS != runtime.GOOS || p.Architecture != runtime.GOARCH {
		t.Fatalf("DefaultPlatform = %+v", p)
	}
	dir := t.TempDir()
	for _, tc := range []struct{ cpuinfo, want string }{
		{"processor\t: 0\nCPU architecture: 7\n", "v7"},
		{"CPU architecture: 6TEJ\n", "v6"},
		{"CPU architecture: 8\n", "v8"},
		{"nothing\n", "v7"},
	} {
		f := filepath.Join(dir, "cpuinfo")
		if err := os.WriteFile(f, []byte(tc.cpuinfo), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := armVariant(f); got != tc.want {
			t.Errorf("armVariant(%q) = %s, want %s", tc.cpuinfo, got, tc.want)
		}
	}
	if got := armVariant(filepath.Join(dir, "missing")); got != "v7" {
		t.Errorf("missing cpuinfo: %s", got)
	}
}
