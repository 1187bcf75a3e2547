package main

import (
	"slices"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 20; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 10 * time.Millisecond}, {90, 18 * time.Millisecond}, {99, 20 * time.Millisecond}, {100, 20 * time.Millisecond}, {0, time.Millisecond}} {
		if got := percentile(s, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("empty: not 0")
	}
}

func TestSummarize(t *testing.T) {
	l := summarize([]time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond})
	if l.Count != 3 || l.P50ms != 2 || l.MaxMs != 3 || l.MeanMs != 2 {
		t.Fatalf("summarize = %+v", l)
	}
	m := summarizeMem([]Mem{{RSS: 3, PSS: 1}, {RSS: 1, PSS: 3}, {RSS: 2, PSS: 2}}, 4)
	if m.RSSp50 != 2 || m.RSSmax != 3 || m.PSSTotal != 6 || m.Processes != 4 {
		t.Fatalf("summarizeMem = %+v", m)
	}
}

func TestSampleOrder(t *testing.T) {
	tests := []struct {
		name      string
		s         int
		perm      []int
		byRuntime bool
		want      []step
	}{
		{"call by call", 0, []int{0, 1, 2}, false, []step{{0, 0}, {0, 1}, {1, 0}, {1, 1}, {2, 0}, {2, 1}}},
		{"call by call, second sample", 1, []int{0, 1, 2}, false, []step{{0, 1}, {0, 0}, {1, 1}, {1, 0}, {2, 1}, {2, 0}}},
		{"by runtime", 0, []int{0, 1, 2}, true, []step{{0, 0}, {1, 0}, {2, 0}, {0, 1}, {1, 1}, {2, 1}}},
		{"by runtime, second sample", 1, []int{0, 1, 2}, true, []step{{0, 1}, {1, 1}, {2, 1}, {0, 0}, {1, 0}, {2, 0}}},
		{"shuffled, call by call", 0, []int{2, 0, 1}, false, []step{{2, 0}, {2, 1}, {0, 0}, {0, 1}, {1, 0}, {1, 1}}},
		{"shuffled, by runtime: the same order on each", 1, []int{1, 2, 0}, true, []step{{1, 1}, {2, 1}, {0, 1}, {1, 0}, {2, 0}, {0, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sampleOrder(tt.s, 2, tt.perm, tt.byRuntime); !slices.Equal(got, tt.want) {
				t.Errorf("sampleOrder(%d, 2 targets, %v, %v) = %v, want %v", tt.s, tt.perm, tt.byRuntime, got, tt.want)
			}
		})
	}
}
