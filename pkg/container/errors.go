package container

import "errors"

var (
	ErrNotFound      = errors.New("container not found")
	ErrInvalid       = errors.New("invalid container config")
	ErrAlreadyExists = errors.New("container name already in use")
	ErrAmbiguous     = errors.New("container ID prefix is ambiguous")
	// ErrNotRunning: the operation needs a running container.
	ErrNotRunning = errors.New("container is not running")
	// ErrState: the container is in the wrong state for the operation.
	ErrState = errors.New("container is in the wrong state")
)
