package container

import (
	"context"
	"errors"
	"fmt"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// Streaming exec and attach. Both go through the pod's shim, which owns
// the container's stdio and is the parent of exec'd processes, so they run
// in the container's namespaces and cgroup and are reaped like its init.

// CheckExec is the check done when kubelet asks for an exec URL, so that
// exec into a container that does not run fails at the RPC.
func (c *Controller) CheckExec(id string, cmd []string) error {
	if len(cmd) == 0 {
		return fmt.Errorf("%w: cmd is empty", ErrInvalid)
	}
	ctr, err := c.Get(id)
	if err != nil {
		return err
	}
	if rec := ctr.Record(); rec.State != meta.ContainerRunning {
		return fmt.Errorf("%w: container %s is %s", ErrNotRunning, rec.ID, rec.State)
	}
	return nil
}

// CheckAttach is the check done when kubelet asks for an attach URL: the
// container must not have exited, and stdin needs a container created
// with stdin.
func (c *Controller) CheckAttach(id string, stdin bool) error {
	ctr, err := c.Get(id)
	if err != nil {
		return err
	}
	rec := ctr.Record()
	switch rec.State {
	case meta.ContainerCreated, meta.ContainerRunning:
	default:
		return fmt.Errorf("%w: container %s is %s", ErrNotRunning, rec.ID, rec.State)
	}
	if stdin && !ctr.Config().GetStdin() {
		return fmt.Errorf("%w: stdin requested but container %s was created without stdin", ErrInvalid, rec.ID)
	}
	return nil
}

// Exec runs cmd in a running container with its stdio streamed, as the
// container's user with its environment, and returns the exit code. See
// shim.Client.Exec for what happens when the user goes away.
func (c *Controller) Exec(ctx context.Context, id string, cmd []string, tty bool, stdio shim.Stdio) (int32, error) {
	if err := c.CheckExec(id, cmd); err != nil {
		return 0, err
	}
	ctr, err := c.Get(id)
	if err != nil {
		return 0, err
	}
	rec := ctr.Record()
	proc, err := c.execProcess(ctr, cmd, tty)
	if err != nil {
		return 0, err
	}
	cl := ctr.pod.Shim()
	if cl == nil {
		return 0, fmt.Errorf("%w: the pod's shim is gone", ErrNotRunning)
	}
	code, err := cl.Exec(ctx, shim.ExecRequest{ID: rec.ID, Process: proc, Terminal: tty}, stdio)
	if err != nil {
		return 0, streamError("exec in", rec.ID, err)
	}
	return code, nil
}

// Attach connects stdio to the container's own stdio until it exits or
// the user detaches; detaching does not stop the container.
func (c *Controller) Attach(ctx context.Context, id string, stdio shim.Stdio) error {
	if err := c.CheckAttach(id, stdio.Stdin != nil); err != nil {
		return err
	}
	ctr, err := c.Get(id)
	if err != nil {
		return err
	}
	rec := ctr.Record()
	cl := ctr.pod.Shim()
	if cl == nil {
		return fmt.Errorf("%w: the pod's shim is gone", ErrNotRunning)
	}
	if !ctr.isInRuntime() {
		// Its stdio comes to be when it starts (runtimeCreate).
		return fmt.Errorf("%w: container %s has not started", ErrNotRunning, rec.ID)
	}
	if err := cl.Attach(ctx, rec.ID, ctr.Config().GetTty(), stdio); err != nil {
		return streamError("attach to", rec.ID, err)
	}
	return nil
}

func streamError(what, id string, err error) error {
	switch {
	case errors.Is(err, shim.ErrNotRunning):
		return fmt.Errorf("%w: %s container %s: %v", ErrNotRunning, what, id, err)
	case errors.Is(err, shim.ErrNotFound):
		return fmt.Errorf("%w: %s container %s: %v", ErrNotFound, what, id, err)
	}
	return fmt.Errorf("%s container %s: %w", what, id, err)
}
