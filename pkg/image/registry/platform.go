package registry

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultPlatform returns the platform of this node. For 32-bit arm the
// variant comes from /proc/cpuinfo, since GOARM says nothing about the CPU.
func DefaultPlatform() ocispec.Platform {
	p := ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	switch runtime.GOARCH {
	case "arm64":
		p.Variant = "v8"
	case "arm":
		p.Variant = armVariant("/proc/cpuinfo")
	}
	return p
}

func armVariant(cpuinfo string) string {
	f, err := os.Open(cpuinfo)
	if err != nil {
		return "v7"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if !ok || strings.TrimSpace(k) != "CPU architecture" {
			continue
		}
		switch v = strings.TrimSpace(v); {
		case strings.HasPrefix(v, "5"):
			return "v5"
		case strings.HasPrefix(v, "6"):
			return "v6"
		case strings.HasPrefix(v, "8"), strings.HasPrefix(v, "AArch64"):
			return "v8"
		default:
			return "v7"
		}
	}
	return "v7"
}

// normalize maps architecture aliases to GOARCH names and fills in the
// implied variants so that equal platforms compare equal.
func normalize(p ocispec.Platform) ocispec.Platform {
	p.OS = strings.ToLower(p.OS)
	arch, variant := strings.ToLower(p.Architecture), strings.ToLower(p.Variant)
	switch arch {
	case "x86_64", "x86-64", "amd64":
		arch = "amd64"
		if variant == "v1" {
			variant = ""
		}
	case "aarch64", "arm64":
		arch = "arm64"
		if variant == "8" || variant == "" {
			variant = "v8"
		}
	case "armhf":
		arch, variant = "arm", "v7"
	case "armel":
		arch, variant = "arm", "v6"
	case "arm":
		switch variant {
		case "", "7":
			variant = "v7"
		case "5", "6", "8":
			variant = "v" + variant
		}
	case "i386", "i686":
		arch = "386"
	}
	p.Architecture, p.Variant = arch, variant
	return p
}

// armFallback lists, best first, the arm variants a CPU of variant v runs.
func armFallback(v string) []string {
	all := []string{"v8", "v7", "v6", "v5"}
	for i, x := range all {
		if x == v {
			return all[i:]
		}
	}
	return []string{v}
}

// SelectPlatform picks the manifest for platform from an OCI index or Docker
// manifest list. arm64 matches variant "" and "v8"; arm defaults to v7 and
// accepts older variants when no exact match exists; amd64 has no variant.
func SelectPlatform(index []byte, platform ocispec.Platform) (ocispec.Descriptor, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(index, &idx); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("parse index: %w", err)
	}
	if idx.Manifests == nil {
		return ocispec.Descriptor{}, fmt.Errorf("parse index: document has no manifests list (not an index)")
	}
	want := normalize(platform)
	variants := []string{want.Variant}
	if want.Architecture == "arm" {
		variants = armFallback(want.Variant)
	}
	for _, v := range variants {
		for _, m := range idx.Manifests {
			if m.Platform == nil {
				continue
			}
			got := normalize(*m.Platform)
			if got.OS == want.OS && got.Architecture == want.Architecture && got.Variant == v {
				// The registry's index is untrusted: its entry must name a
				// manifest we can fetch and verify.
				if err := m.Digest.Validate(); err != nil {
					return ocispec.Descriptor{}, fmt.Errorf("index entry for %s: invalid digest %q: %w", platformString(got), m.Digest, err)
				}
				if m.Size < 0 {
					return ocispec.Descriptor{}, fmt.Errorf("index entry for %s: negative size", platformString(got))
				}
				return m, nil
			}
		}
	}
	var have []string
	for _, m := range idx.Manifests {
		if m.Platform != nil {
			have = append(have, platformString(*m.Platform))
		}
	}
	if len(have) == 0 {
		have = []string{"none"}
	}
	return ocispec.Descriptor{}, fmt.Errorf("no manifest for platform %s in index (it has %s): %w",
		platformString(platform), strings.Join(have, ", "), ErrNotFound)
}

func platformString(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
