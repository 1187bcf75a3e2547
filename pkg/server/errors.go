package server

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cri-runtimed/cri-runtimed/pkg/cdi"
	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/pkg/checkpoint"
	"github.com/cri-runtimed/cri-runtimed/pkg/cni"
	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/reference"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/netns"
	"github.com/cri-runtimed/cri-runtimed/pkg/nri"
	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
	"github.com/cri-runtimed/cri-runtimed/pkg/oci/seccomp"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox"
	"github.com/cri-runtimed/cri-runtimed/pkg/registrar"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim/crilog"
	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot/layer"
	"github.com/cri-runtimed/cri-runtimed/pkg/stats"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/content"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
	"github.com/cri-runtimed/cri-runtimed/pkg/userns"
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

// sentinelCodes is the code of every sentinel error of the daemon's
// packages (a test checks that none is missing). The first match wins, so
// the errors of the CRI-facing controllers, which wrap lower ones, come
// first.
var sentinelCodes = []struct {
	err  error
	code codes.Code
}{
	// Requests kubelet got wrong.
	{errInvalid, codes.InvalidArgument},
	{podsandbox.ErrInvalid, codes.InvalidArgument},
	{container.ErrInvalid, codes.InvalidArgument},
	{oci.ErrInvalid, codes.InvalidArgument},
	{seccomp.ErrInvalidProfile, codes.InvalidArgument},
	{cni.ErrInvalidArgument, codes.InvalidArgument},
	{reference.ErrInvalid, codes.InvalidArgument},
	{cgroups.ErrInvalidParent, codes.InvalidArgument},
	{cdi.ErrInvalidName, codes.InvalidArgument},
	{cdi.ErrUnknownDevice, codes.InvalidArgument},
	{podsandbox.ErrAmbiguous, codes.InvalidArgument},
	{container.ErrAmbiguous, codes.InvalidArgument},
	{podsandbox.ErrAlreadyExists, codes.AlreadyExists},
	{container.ErrAlreadyExists, codes.AlreadyExists},
	{podsandbox.ErrNotFound, codes.NotFound},
	{container.ErrNotFound, codes.NotFound},
	{podsandbox.ErrNotReady, codes.FailedPrecondition},
	{container.ErrState, codes.FailedPrecondition},
	{container.ErrNotRunning, codes.FailedPrecondition},
	{container.ErrImageInUse, codes.FailedPrecondition},
	{container.ErrExecTimeout, codes.DeadlineExceeded},
	// An NRI plugin or the default validator refused the operation.
	{nri.ErrRejected, codes.FailedPrecondition},
	// CRIU cannot run on this node; the message carries CRIU's reason.
	{checkpoint.ErrUnavailable, codes.FailedPrecondition},
	// A checkpoint that cannot be restored: well formed request, refused
	// content.
	{checkpoint.ErrInvalid, codes.FailedPrecondition},
	{checkpoint.ErrTerminal, codes.FailedPrecondition},

	// Images and registries.
	{image.ErrNotFound, codes.NotFound},
	{image.ErrPullStuck, codes.DeadlineExceeded},
	// Past image.max_uncompressed_size.
	{image.ErrTooLarge, codes.ResourceExhausted},
	// An image the registry serves but that cannot be used as one: the
	// request was well formed, the content is refused, so not
	// InvalidArgument (kubelet and operators read that as their mistake).
	{image.ErrInvalidImage, codes.FailedPrecondition},
	// An artifact named as a container's image: only image volumes mount
	// artifacts.
	{image.ErrArtifact, codes.FailedPrecondition},
	// Archives come over the admin socket, not CRI; listed for completeness.
	{image.ErrInvalidArchive, codes.InvalidArgument},
	{registry.ErrSchema1, codes.Unimplemented},
	{registry.ErrNotFound, codes.NotFound},
	{registry.ErrUnauthorized, codes.PermissionDenied},
	{registry.ErrTooLarge, codes.ResourceExhausted},
	{registry.ErrDigestMismatch, codes.DataLoss},
	{layer.ErrUnsafePath, codes.FailedPrecondition},
	{layer.ErrLimitExceeded, codes.ResourceExhausted},
	{content.ErrDigestMismatch, codes.DataLoss},
	{content.ErrSizeMismatch, codes.DataLoss},
	{content.ErrTooLarge, codes.ResourceExhausted},
	{content.ErrInvalidDigest, codes.InvalidArgument},
	{content.ErrNotFound, codes.NotFound},
	{content.ErrExists, codes.AlreadyExists},

	// The node's own state.
	{snapshot.ErrNotFound, codes.NotFound},
	{snapshot.ErrAlreadyExists, codes.AlreadyExists},
	{snapshot.ErrInUse, codes.FailedPrecondition},
	{snapshot.ErrInvalidKind, codes.FailedPrecondition},
	{meta.ErrNotFound, codes.NotFound},
	{meta.ErrLocked, codes.Unavailable},
	{netns.ErrNotFound, codes.NotFound},
	{stats.ErrNotFound, codes.NotFound},
	{userns.ErrUnsupported, codes.FailedPrecondition},
	// A systemd cgroups path where the shim's own pause start needs a
	// cgroupfs one: the daemon's mistake, not the request's.
	{cgroups.ErrNotCgroupfs, codes.Internal},
	// A CDI spec whose edits do not apply on this node (a device node
	// missing on the host).
	{cdi.ErrInject, codes.FailedPrecondition},
	{cni.ErrPluginTimeout, codes.DeadlineExceeded},
	{registrar.ErrNameReserved, codes.AlreadyExists},
	{registrar.ErrIDReserved, codes.AlreadyExists},
	// The daemon is shutting down.
	{registrar.ErrClosed, codes.Unavailable},

	// The pod's shim.
	{shim.ErrNotFound, codes.NotFound},
	{shim.ErrAlreadyExists, codes.AlreadyExists},
	{shim.ErrNotRunning, codes.FailedPrecondition},
	{shim.ErrBusy, codes.FailedPrecondition},
	{shim.ErrShimGone, codes.FailedPrecondition},
	{shim.ErrStreamBroken, codes.Unavailable},
	{shim.ErrDetached, codes.Canceled},
	{crilog.ErrMalformed, codes.DataLoss},
}

func codeOf(err error) codes.Code {
	for _, s := range sentinelCodes {
		if errors.Is(err, s.err) {
			return s.code
		}
	}
	var se *registry.StatusError
	if errors.As(err, &se) {
		switch {
		case se.StatusCode == http.StatusTooManyRequests, se.StatusCode >= 500:
			// The registry may answer later.
			return codes.Unavailable
		case se.StatusCode == http.StatusForbidden:
			return codes.PermissionDenied
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Unknown
}
