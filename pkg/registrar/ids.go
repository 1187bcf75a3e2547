package registrar

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

// NewID returns a random 64-hex-character ID, the form kubelet and crictl
// expect for pods and containers.
func NewID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// ResolveID finds the entry of m whose ID is idOrPrefix or, as crictl
// allows, starts with it. The errors wrap the caller's sentinels for an
// unknown ID and for a prefix matching several IDs. The caller holds
// whatever lock guards m.
func ResolveID[T any](m map[string]T, idOrPrefix string, notFound, ambiguous error) (T, error) {
	var zero T
	if v, ok := m[idOrPrefix]; ok {
		return v, nil
	}
	if idOrPrefix == "" {
		return zero, fmt.Errorf("%w: empty ID", notFound)
	}
	var found T
	n := 0
	for id, v := range m {
		if strings.HasPrefix(id, idOrPrefix) {
			found = v
			n++
		}
	}
	switch n {
	case 0:
		return zero, fmt.Errorf("%w: %s", notFound, idOrPrefix)
	case 1:
		return found, nil
	}
	return zero, fmt.Errorf("%w: %q matches %d IDs", ambiguous, idOrPrefix, n)
}
