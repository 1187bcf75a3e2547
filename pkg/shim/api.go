package shim

import (
	"errors"
	"strings"
	"time"
)

// Status is a container's lifecycle state.
type Status string

// Container states.
const (
	StatusCreated Status = "created"
	StatusRunning Status = "running"
	StatusExited  Status = "exited"
	StatusUnknown Status = "unknown"
)

// State is what the shim knows about one container; it is also the
// durable record in state.json.
type State struct {
	ID         string
	Pid        int
	Status     Status
	ExitCode   int32
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	OOMKilled  bool
	// Reason is "Completed", "Error", "OOMKilled", "CreateError",
	// "StartError" or "Unknown" once exited.
	Reason  string
	Message string
}

// Reasons set on exited containers.
const (
	ReasonCompleted   = "Completed"
	ReasonError       = "Error"
	ReasonOOMKilled   = "OOMKilled"
	ReasonCreateError = "CreateError"
	ReasonStartError  = "StartError"
	ReasonUnknown     = "Unknown"
)

// EventType says which transition an Event reports.
type EventType string

// Event types, in lifecycle order.
const (
	EventCreated EventType = "Created"
	EventStarted EventType = "Started"
	EventExited  EventType = "Exited"
	EventDeleted EventType = "Deleted"
)

// Event is one container transition. Seq grows strictly within one shim
// process and across its restarts.
type Event struct {
	Seq   uint64
	ID    string
	Type  EventType
	State State
}

// CreateRequest asks the shim to create a container from an OCI bundle.
type CreateRequest struct {
	ID     string
	Bundle string
	// Stdin keeps a pipe open to the container's stdin; StdinOnce closes
	// it after the first attach detaches.
	Stdin, StdinOnce bool
	// Terminal gives the container a pty (the bundle's process.terminal
	// must be true as well).
	Terminal bool
	// LogPath is the CRI log file; empty discards output.
	LogPath string
	// RestoreFrom, when set, is a directory of CRIU images: nothing runs
	// at create (the container is created with no process), and Start
	// restores the checkpointed process instead of starting the bundle's.
	RestoreFrom string
	// Start runs the process at once (`runc run --detach`): the reply is
	// running, and no Start follows. A pod's sandbox process, which
	// nothing is done to between its create and its start, saves a
	// runtime invocation (issue 19). Not with RestoreFrom.
	Start bool
	// Pause has the shim start the bundle's built-in pause itself, with
	// no OCI runtime (runtime.sandbox_start "shim", see pausestart.go);
	// with Start, and no stdio, terminal or log. PauseStartable says
	// which bundles it can start.
	Pause bool
}

// CheckpointRequest asks for a CRIU checkpoint of a running container,
// which keeps running.
type CheckpointRequest struct {
	ID string
	// ImagePath receives CRIU's image files, WorkPath its logs
	// (dump.log); both must exist.
	ImagePath, WorkPath string
	// Timeout bounds the runtime call; zero is the shim's default.
	Timeout time.Duration
}

// ExecSyncRequest runs a process in a running container and collects its
// output.
type ExecSyncRequest struct {
	ID string
	// Process is an OCI runtime-spec Process as JSON.
	Process []byte
	// Timeout kills the process after this long; zero means none.
	Timeout time.Duration
	// MaxOutput caps the bytes kept per stream; zero means 16 MiB.
	MaxOutput int
}

// ExecSyncResult is the outcome of ExecSync.
type ExecSyncResult struct {
	Stdout, Stderr []byte
	ExitCode       int32
	TimedOut       bool
	// Truncated is set when a stream produced more than MaxOutput bytes.
	Truncated bool
}

// Errors the client returns; match with errors.Is.
var (
	ErrNotFound      = errors.New("container not found")
	ErrNotRunning    = errors.New("container not running")
	ErrShimGone      = errors.New("shim is gone")
	ErrBusy          = errors.New("shim still has containers")
	ErrAlreadyExists = errors.New("container already exists")
)

// net/rpc carries errors as strings only, so the server prefixes the
// message with a code that the client maps back to the sentinel.
var errorCodes = []struct {
	code string
	err  error
}{
	{"[notfound] ", ErrNotFound},
	{"[notrunning] ", ErrNotRunning},
	{"[busy] ", ErrBusy},
	{"[exists] ", ErrAlreadyExists},
}

// encodeError is applied to every error the service returns.
func encodeError(err error) error {
	if err == nil {
		return nil
	}
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return errors.New(c.code + err.Error())
		}
	}
	return err
}

// remoteError is a server error carrying a sentinel for errors.Is.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

func decodeError(msg string) error {
	for _, c := range errorCodes {
		if rest, ok := strings.CutPrefix(msg, c.code); ok {
			return &remoteError{msg: rest, sentinel: c.err}
		}
	}
	return errors.New(msg)
}

// Wire types of the RPC service. They are exported because net/rpc
// requires it; they are not part of the client API.
type (
	// PingReply identifies the shim.
	PingReply struct {
		Pid   int
		PodID string
	}
	// IDRequest names a container.
	IDRequest struct{ ID string }
	// KillRequest is Kill's argument.
	KillRequest struct {
		ID     string
		Signal int
		All    bool
	}
	// WaitRequest is Wait's argument; MaxWait bounds the long-poll.
	WaitRequest struct {
		ID      string
		MaxWait time.Duration
	}
	// WaitReply is Wait's answer; Done is false when MaxWait expired.
	WaitReply struct {
		State State
		Done  bool
	}
	// UpdateRequest is Update's argument.
	UpdateRequest struct {
		ID        string
		Resources []byte
	}
	// EventsRequest is Events' argument.
	EventsRequest struct {
		After   uint64
		MaxWait time.Duration
	}
	// EventsReply is Events' answer.
	EventsReply struct{ Events []Event }
	// ListReply is List's answer.
	ListReply struct{ States []State }
	// ShutdownRequest is Shutdown's argument.
	ShutdownRequest struct{ Force bool }
	// Empty is the argument or reply of calls that need none.
	Empty struct{}
)
