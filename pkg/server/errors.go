package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cri-runtimed/cri-runtimed/pkg/cni"
	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/reference"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// errInvalid marks a malformed CRI request; handlers wrap it with the
// field at fault.
var errInvalid = errors.New("invalid argument")

// toStatus maps internal errors onto gRPC codes. It is the only place that
// does, so every RPC reports the same failure the same way.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codeOf(err), err.Error())
}

func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, errInvalid), errors.Is(err, reference.ErrInvalid),
		errors.Is(err, podsandbox.ErrInvalid), errors.Is(err, container.ErrInvalid), errors.Is(err, oci.ErrInvalid),
		errors.Is(err, podsandbox.ErrAmbiguous), errors.Is(err, container.ErrAmbiguous):
		return codes.InvalidArgument
	case errors.Is(err, cni.ErrInvalidArgument):
		return codes.InvalidArgument
	case errors.Is(err, podsandbox.ErrAlreadyExists), errors.Is(err, container.ErrAlreadyExists):
		return codes.AlreadyExists
	case errors.Is(err, image.ErrNotFound), errors.Is(err, meta.ErrNotFound), errors.Is(err, registry.ErrNotFound),
		errors.Is(err, podsandbox.ErrNotFound), errors.Is(err, container.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, podsandbox.ErrNotReady), errors.Is(err, container.ErrState), errors.Is(err, container.ErrNotRunning):
		return codes.FailedPrecondition
	case errors.Is(err, container.ErrExecTimeout):
		return codes.DeadlineExceeded
	case errors.Is(err, registry.ErrUnauthorized):
		return codes.PermissionDenied
	case errors.Is(err, image.ErrPullStuck):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Unknown
}
