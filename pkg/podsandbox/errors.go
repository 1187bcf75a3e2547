package podsandbox

import "errors"

var (
	// ErrNotFound: no pod has this ID (or unique ID prefix).
	ErrNotFound = errors.New("pod sandbox not found")
	// ErrInvalid: the pod config is malformed; the message names the field.
	ErrInvalid = errors.New("invalid pod sandbox config")
	// ErrAlreadyExists: the pod name is taken by another sandbox.
	ErrAlreadyExists = errors.New("pod sandbox name already in use")
	// ErrAmbiguous: an ID prefix matches several pods.
	ErrAmbiguous = errors.New("pod sandbox ID prefix is ambiguous")
	// ErrNotReady: the pod cannot take new containers.
	ErrNotReady = errors.New("pod sandbox is not ready")
)
