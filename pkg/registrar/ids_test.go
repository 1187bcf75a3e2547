package registrar

import (
	"errors"
	"testing"
)

func TestResolveID(t *testing.T) {
	errUnknown, errAmbiguous := errors.New("unknown"), errors.New("ambiguous")
	m := map[string]int{"abc123": 1, "abd456": 2, "ffff": 3}
	tests := []struct {
		in   string
		want int
		err  error
	}{
		{"abc123", 1, nil}, {"abc", 1, nil}, {"f", 3, nil},
		{"ab", 0, errAmbiguous}, {"zz", 0, errUnknown}, {"", 0, errUnknown}, {"abc1234", 0, errUnknown},
	}
	for _, tc := range tests {
		got, err := ResolveID(m, tc.in, errUnknown, errAmbiguous)
		if !errors.Is(err, tc.err) || (tc.err == nil && got != tc.want) {
			t.Errorf("ResolveID(%q) = %d, %v; want %d, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if id := NewID(); len(id) != 64 || id == NewID() {
		t.Fatalf("NewID() = %q", id)
	}
}
