package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// ErrUnavailable: CRIU cannot checkpoint or restore on this node; the
// error's text carries the reason CRIU gave at start.
var ErrUnavailable = errors.New("checkpoint/restore unavailable")

// probeTimeout bounds `criu check`: it takes well under a second on a
// host, a few seconds on an emulated guest, and was seen past 30 s on a
// heavily loaded one.
const probeTimeout = 2 * time.Minute

// Availability is whether CRIU works on this node, found once at start
// (the kernel does not change under a running daemon).
type Availability struct {
	// Usable is true when `criu check` passed.
	Usable bool `json:"usable"`
	// Path is the criu binary found in PATH, empty if none.
	Path string `json:"criu,omitempty"`
	// Version is what `criu --version` printed first.
	Version string `json:"version,omitempty"`
	// Reason says why CRIU is unusable, in CRIU's words where it gave
	// any; empty when usable.
	Reason string `json:"reason,omitempty"`
}

// Probe runs `criu check` once. The zero Availability (never probed) is
// unusable too.
func Probe(ctx context.Context) Availability {
	path, err := exec.LookPath("criu")
	if err != nil {
		return Availability{Reason: "criu is not installed (no criu in PATH)"}
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	a := Availability{Path: path}
	if out, err := exec.CommandContext(ctx, path, "--version").Output(); err == nil {
		a.Version = firstLine(string(out))
	}
	out, err := exec.CommandContext(ctx, path, "check").CombinedOutput()
	if ctx.Err() != nil {
		a.Reason = fmt.Sprintf("%s check did not finish within %s", path, probeTimeout)
		return a
	}
	if err != nil {
		a.Reason = path + " check failed: " + checkReason(string(out), err)
		return a
	}
	a.Usable = true
	return a
}

// Err is nil when CRIU is usable, else ErrUnavailable with the reason.
func (a Availability) Err() error {
	if a.Usable {
		return nil
	}
	reason := a.Reason
	if reason == "" {
		reason = "CRIU was not probed"
	}
	return fmt.Errorf("%w: %s", ErrUnavailable, reason)
}

// checkReason picks CRIU's first error line (the cause; the lines after
// it are consequences, "Could not initialize kernel features detection"),
// or the last line it printed, or the exit status.
func checkReason(out string, err error) string {
	var last string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "Error") {
			return l
		}
		last = l
	}
	if last != "" {
		return last
	}
	return err.Error()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
