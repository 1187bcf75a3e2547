package preflight

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// Status is a check's verdict.
type Status int

const (
	OK Status = iota
	Info
	Warn
	Fail
)

func (s Status) String() string {
	return [...]string{"ok", "info", "WARN", "FAIL"}[s]
}

// Check is one need of the node.
type Check struct {
	Name string
	Run  func(ctx context.Context) (Status, string)
}

// Result is a check's outcome.
type Result struct {
	Name    string
	Status  Status
	Message string
}

// Run runs every check in order.
func Run(ctx context.Context, checks []Check) []Result {
	out := make([]Result, 0, len(checks))
	for _, c := range checks {
		st, msg := c.Run(ctx)
		out = append(out, Result{Name: c.Name, Status: st, Message: msg})
	}
	return out
}

// Report writes one line per result and says whether the daemon can run
// (no failure).
func Report(w io.Writer, results []Result) bool {
	ok := true
	width := 0
	for _, r := range results {
		width = max(width, len(r.Name))
	}
	for _, r := range results {
		fmt.Fprintf(w, "%-4s  %-*s  %s\n", r.Status, width, r.Name, strings.TrimSpace(r.Message))
		if r.Status == Fail {
			ok = false
		}
	}
	return ok
}
