package checkpoint

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckReason(t *testing.T) {
	for _, tc := range []struct{ name, out, want string }{
		{"first error wins", "Warn (criu/kerndat.c:1): x\nError (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\nError (criu/crtools.c:260): Could not initialize kernel features detection.\n",
			"Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds"},
		{"no error line", "Looks bad\nsomething missing\n", "something missing"},
		{"silent", "", "exit status 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkReason(tc.out, errors.New("exit status 1")); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAvailabilityErr(t *testing.T) {
	if err := (Availability{Usable: true}).Err(); err != nil {
		t.Fatalf("usable: %v", err)
	}
	for _, a := range []Availability{{}, {Reason: "vDSO bounds"}} {
		err := a.Err()
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%+v: %v is not ErrUnavailable", a, err)
		}
		if a.Reason != "" && !strings.Contains(err.Error(), a.Reason) {
			t.Fatalf("%v does not name the reason", err)
		}
	}
}
