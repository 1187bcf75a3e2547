package main

import (
	"runtime"
	"testing"
)

func TestChooseMaxProcs(t *testing.T) {
	for _, tc := range []struct {
		configured, available, want int
	}{
		{0, 1, 1},
		{0, 2, 1},
		{0, 3, 3},
		{0, 64, 64},
		{2, 2, 2},
		{4, 64, 4},
	} {
		if got := chooseMaxProcs(tc.configured, tc.available); got != tc.want {
			t.Errorf("chooseMaxProcs(%d, %d) = %d, want %d", tc.configured, tc.available, got, tc.want)
		}
	}
}

func TestMaxProcsEnvironmentWins(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(3)
	t.Setenv("GOMAXPROCS", "3")
	if got := maxProcs(1); got != 3 || runtime.GOMAXPROCS(0) != 3 {
		t.Errorf("maxProcs(1) with GOMAXPROCS=3 = %d (GOMAXPROCS now %d), want 3", got, runtime.GOMAXPROCS(0))
	}
	t.Setenv("GOMAXPROCS", "")
	if got := maxProcs(2); got != 2 || runtime.GOMAXPROCS(0) != 2 {
		t.Errorf("maxProcs(2) = %d (GOMAXPROCS now %d), want 2", got, runtime.GOMAXPROCS(0))
	}
}
