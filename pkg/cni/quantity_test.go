package cni

import "testing"

func TestParseQuantity(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"10M", 10_000_000, false},
		{"1Mi", 1 << 20, false},
		{"100k", 100_000, false},
		{"1.5G", 1_500_000_000, false},
		{"2e6", 2_000_000, false},
		{"2E6", 2_000_000, false},
		{"1E", 1_000_000_000_000_000_000, false},
		{"1000", 1000, false},
		{"1500m", 2, false}, // rounded up, as Quantity.Value does
		{"0.5", 1, false},
		{"+3k", 3000, false},
		{" 1Gi ", 1 << 30, false},
		{"", 0, true},
		{"M", 0, true},
		{"10MB", 0, true},
		{"-1M", 0, true},
		{"1.2.3", 0, true},
		{"10Ei", 0, true}, // overflows int64
		{"1e", 0, true},
		{"1e99", 0, true},
	} {
		got, err := parseQuantity(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseQuantity(%q) = %d, %v; want %d, err %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
