package registrar

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

func TestRegistrar(t *testing.T) {
	type op struct {
		do       string // reserve, release, releaseID
		name, id string
		// for reserve: the holder named by a *ReservedError, or errIs
		holder string
		errIs  error
	}
	tests := []struct {
		name string
		ops  []op
		want map[string]string // name -> id after the ops; absent names are checked free
		free []string
	}{
		{
			name: "reserve and get",
			ops:  []op{{do: "reserve", name: "a", id: "1"}},
			want: map[string]string{"a": "1"},
		},
		{
			name: "same name and id twice",
			ops:  []op{{do: "reserve", name: "a", id: "1"}, {do: "reserve", name: "a", id: "1"}},
			want: map[string]string{"a": "1"},
		},
		{
			name: "name held by another id",
			ops: []op{
				{do: "reserve", name: "a", id: "1"},
				{do: "reserve", name: "a", id: "2", holder: "1", errIs: ErrNameReserved},
			},
			want: map[string]string{"a": "1"},
		},
		{
			name: "id held under another name",
			ops: []op{
				{do: "reserve", name: "a", id: "1"},
				{do: "reserve", name: "b", id: "1", errIs: ErrIDReserved},
			},
			want: map[string]string{"a": "1"},
			free: []string{"b"},
		},
		{
			name: "release frees name and id",
			ops: []op{
				{do: "reserve", name: "a", id: "1"},
				{do: "release", name: "a"},
				{do: "reserve", name: "b", id: "1"},
				{do: "reserve", name: "a", id: "2"},
			},
			want: map[string]string{"a": "2", "b": "1"},
		},
		{
			name: "release by id",
			ops: []op{
				{do: "reserve", name: "a", id: "1"},
				{do: "releaseID", id: "1"},
				{do: "reserve", name: "a", id: "2"},
			},
			want: map[string]string{"a": "2"},
		},
		{
			name: "releasing unknown names and ids is a no-op",
			ops: []op{
				{do: "reserve", name: "a", id: "1"},
				{do: "release", name: "b"},
				{do: "releaseID", id: "2"},
			},
			want: map[string]string{"a": "1"},
			free: []string{"b"},
		},
		{
			name: "empty name or id",
			ops: []op{
				{do: "reserve", name: "", id: "1", errIs: errAny},
				{do: "reserve", name: "a", id: "", errIs: errAny},
			},
			free: []string{"", "a"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			for i, o := range tc.ops {
				switch o.do {
				case "reserve":
					err := r.Reserve(o.name, o.id)
					checkReserveErr(t, fmt.Sprintf("op %d Reserve(%q, %q)", i, o.name, o.id), err, o.holder, o.errIs)
				case "release":
					r.Release(o.name)
				case "releaseID":
					r.ReleaseID(o.id)
				}
			}
			for name, want := range tc.want {
				if got, ok := r.Get(name); !ok || got != want {
					t.Errorf("Get(%q) = %q, %v; want %q", name, got, ok, want)
				}
			}
			for _, name := range tc.free {
				if got, ok := r.Get(name); ok {
					t.Errorf("Get(%q) = %q, want free", name, got)
				}
			}
		})
	}
}

// errAny marks a case that must fail without a particular error.
var errAny = errors.New("any error")

func checkReserveErr(t *testing.T, what string, err error, holder string, errIs error) {
	t.Helper()
	switch {
	case errIs == nil:
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	case errIs == errAny:
		if err == nil {
			t.Errorf("%s succeeded, want an error", what)
		}
	case !errors.Is(err, errIs):
		t.Errorf("%s = %v, want %v", what, err, errIs)
	}
	if holder == "" {
		return
	}
	var re *ReservedError
	if !errors.As(err, &re) {
		t.Errorf("%s = %v, want a *ReservedError", what, err)
		return
	}
	if re.ID != holder {
		t.Errorf("%s names holder %q, want %q", what, re.ID, holder)
	}
}

func TestReserveConcurrent(t *testing.T) {
	r := New()
	const n = 64
	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		errs     = make([]error, n)
		winnerMu sync.Mutex
		winners  []string
	)
	for i := range n {
		wg.Go(func() {
			<-start
			id := fmt.Sprintf("id%d", i)
			errs[i] = r.Reserve("pod_ns_uid_0", id)
			if errs[i] == nil {
				winnerMu.Lock()
				winners = append(winners, id)
				winnerMu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d winners %v, want 1", len(winners), winners)
	}
	for i, err := range errs {
		if err == nil {
			continue
		}
		var re *ReservedError
		if !errors.As(err, &re) || !errors.Is(err, ErrNameReserved) {
			t.Errorf("loser %d: %v, want a *ReservedError wrapping ErrNameReserved", i, err)
			continue
		}
		if re.ID != winners[0] || re.Name != "pod_ns_uid_0" {
			t.Errorf("loser %d: %+v, want the holder %q", i, re, winners[0])
		}
	}
	if id, _ := r.Get("pod_ns_uid_0"); id != winners[0] {
		t.Errorf("Get = %q, want the winner %q", id, winners[0])
	}
}
