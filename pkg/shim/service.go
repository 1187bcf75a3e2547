package shim

import (
	"context"
	"os"
	"syscall"
)

// service is the net/rpc receiver registered as "Shim". It only adapts
// arguments and encodes errors; the work is done by server. It has no other
// exported methods, because net/rpc would try to register them.
type service struct {
	s *server
}

// Each call runs on the server's lifetime context: net/rpc gives no
// per-call context, and every blocking call is bounded on its own.

func (v *service) Ping(_ Empty, r *PingReply) error {
	*r = PingReply{Pid: os.Getpid(), PodID: v.s.podID}
	return nil
}

func (v *service) Create(req CreateRequest, r *State) error {
	st, err := v.s.create(v.s.ctx, req)
	if err == nil && req.Start && !req.Pause {
		v.s.containerStarted()
	}
	*r = st
	return encodeError(err)
}

func (v *service) Start(req IDRequest, r *State) error {
	st, err := v.s.start(v.s.ctx, req.ID)
	if err == nil {
		v.s.containerStarted()
	}
	*r = st
	return encodeError(err)
}

func (v *service) Kill(req KillRequest, _ *Empty) error {
	return encodeError(v.s.kill(v.s.ctx, req.ID, syscall.Signal(req.Signal), req.All))
}

func (v *service) Wait(req WaitRequest, r *WaitReply) error {
	wr, err := v.s.wait(v.s.ctx, req.ID, min(req.MaxWait, maxPoll))
	*r = wr
	return encodeError(err)
}

func (v *service) Delete(req IDRequest, r *State) error {
	st, err := v.s.delete(v.s.ctx, req.ID)
	*r = st
	return encodeError(err)
}

func (v *service) State(req IDRequest, r *State) error {
	c, err := v.s.get(req.ID)
	if err != nil {
		return encodeError(err)
	}
	*r = c.state()
	return nil
}

func (v *service) List(_ Empty, r *ListReply) error {
	r.States = v.s.list()
	return nil
}

func (v *service) ExecSync(req ExecSyncRequest, r *ExecSyncResult) error {
	res, err := v.s.execSync(v.s.ctx, req)
	*r = res
	return encodeError(err)
}

func (v *service) ReopenLog(req IDRequest, _ *Empty) error {
	return encodeError(v.s.reopenLog(req.ID))
}

func (v *service) Update(req UpdateRequest, _ *Empty) error {
	return encodeError(v.s.update(v.s.ctx, req.ID, req.Resources))
}

func (v *service) Checkpoint(req CheckpointRequest, _ *Empty) error {
	return encodeError(v.s.checkpoint(v.s.ctx, req))
}

func (v *service) Pause(req IDRequest, _ *Empty) error {
	return encodeError(v.s.pause(v.s.ctx, req.ID, true))
}

func (v *service) Resume(req IDRequest, _ *Empty) error {
	return encodeError(v.s.pause(v.s.ctx, req.ID, false))
}

func (v *service) Events(req EventsRequest, r *EventsReply) error {
	r.Events = v.s.events.wait(v.s.ctx, req.After, min(req.MaxWait, maxPoll))
	return nil
}

func (v *service) Shutdown(req ShutdownRequest, _ *Empty) error {
	if !req.Force && v.s.count() > 0 {
		return encodeError(ErrBusy)
	}
	v.s.stop(req.Force)
	return nil
}

// shutdownCtx is the context used to delete containers at a forced stop.
func shutdownCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*runtimeTimeout)
}
