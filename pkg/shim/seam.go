package shim

import (
	"context"
	"syscall"
)

// API is a pod's shim as the daemon uses it. *Client implements it over
// the shim's socket; the pod and container controllers' tests use a fake.
type API interface {
	Create(ctx context.Context, req CreateRequest) (State, error)
	Start(ctx context.Context, id string) (State, error)
	Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error
	Wait(ctx context.Context, id string) (State, error)
	Delete(ctx context.Context, id string) (State, error)
	State(ctx context.Context, id string) (State, error)
	ExecSync(ctx context.Context, req ExecSyncRequest) (ExecSyncResult, error)
	Exec(ctx context.Context, req ExecRequest, stdio Stdio) (int32, error)
	Attach(ctx context.Context, id string, terminal bool, stdio Stdio) error
	ReopenLog(ctx context.Context, id string) error
	Update(ctx context.Context, id string, resources []byte) error
	// Checkpoint dumps a running container with CRIU; it keeps running.
	Checkpoint(ctx context.Context, req CheckpointRequest) error
	// Pause freezes a container's processes, Resume thaws them.
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
	// Events long-polls the events after sequence number after.
	Events(ctx context.Context, after uint64) ([]Event, error)
	// ForceShutdown kills and deletes every container and stops the shim.
	ForceShutdown(ctx context.Context) error
	// Close drops the connection; the shim keeps running.
	Close() error
}

// Launcher starts shims and reconnects to running ones.
type Launcher interface {
	// Spawn starts a shim for a pod (see the package's Spawn).
	Spawn(ctx context.Context, opts SpawnOptions) (API, error)
	// Dial connects to the shim serving stateDir; ErrShimGone if none.
	Dial(ctx context.Context, stateDir string) (API, error)
}

// Processes launches real shim processes.
type Processes struct{}

func (Processes) Spawn(ctx context.Context, opts SpawnOptions) (API, error) {
	c, err := Spawn(ctx, opts)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (Processes) Dial(ctx context.Context, stateDir string) (API, error) {
	c, err := Dial(ctx, stateDir)
	if err != nil {
		return nil, err
	}
	return c, nil
}

var _ API = (*Client)(nil)
