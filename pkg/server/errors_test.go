package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cri-runtimed/cri-runtimed/pkg/cni"
	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/reference"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox"
)

// TestToStatus pins the one mapping from internal errors to gRPC codes
// that kubelet and crictl rely on (DESIGN invariant 5), wrapped as the
// packages wrap them.
func TestToStatus(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("context: %w", err) }
	tests := []struct {
		err  error
		want codes.Code
	}{
		{wrap(errInvalid), codes.InvalidArgument},
		{wrap(reference.ErrInvalid), codes.InvalidArgument},
		{wrap(oci.ErrInvalid), codes.InvalidArgument},
		{wrap(podsandbox.ErrInvalid), codes.InvalidArgument},
		{wrap(container.ErrAmbiguous), codes.InvalidArgument},
		{wrap(cni.ErrInvalidArgument), codes.InvalidArgument},
		{wrap(podsandbox.ErrAlreadyExists), codes.AlreadyExists},
		{wrap(container.ErrAlreadyExists), codes.AlreadyExists},
		{wrap(podsandbox.ErrNotFound), codes.NotFound},
		{wrap(container.ErrNotFound), codes.NotFound},
		{wrap(image.ErrNotFound), codes.NotFound},
		{wrap(registry.ErrNotFound), codes.NotFound},
		{wrap(registry.ErrUnauthorized), codes.PermissionDenied},
		{wrap(container.ErrNotRunning), codes.FailedPrecondition},
		{wrap(container.ErrState), codes.FailedPrecondition},
		{wrap(podsandbox.ErrNotReady), codes.FailedPrecondition},
		{wrap(container.ErrExecTimeout), codes.DeadlineExceeded},
		{wrap(image.ErrPullStuck), codes.DeadlineExceeded},
		{wrap(context.Canceled), codes.Canceled},
		{errors.New("runc said no"), codes.Unknown},
		{status.Error(codes.Unimplemented, "kept"), codes.Unimplemented},
	}
	for _, tc := range tests {
		got := status.Code(toStatus(tc.err))
		if got != tc.want {
			t.Errorf("toStatus(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if toStatus(nil) != nil {
		t.Error("toStatus(nil) is not nil")
	}
}

func TestSendBatches(t *testing.T) {
	for _, n := range []int{0, 1, 199, 200, 201, 450} {
		items := make([]int, n)
		for i := range items {
			items[i] = i
		}
		var got []int
		sends := 0
		err := sendBatches(items, streamBatch, func(b []int) error {
			if len(b) == 0 || len(b) > streamBatch {
				t.Fatalf("batch of %d", len(b))
			}
			sends++
			got = append(got, b...)
			return nil
		})
		if err != nil || len(got) != n || sends != (n+streamBatch-1)/streamBatch {
			t.Fatalf("n=%d: %d items in %d sends, %v", n, len(got), sends, err)
		}
		for i, v := range got {
			if v != i {
				t.Fatalf("n=%d: item %d is %d", n, i, v)
			}
		}
	}
}
