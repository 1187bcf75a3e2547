//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// eventSub is one GetContainerEvents stream read in the background.
type eventSub struct {
	events chan *runtimeapi.ContainerEventResponse // closed when the stream ends
	err    error                                   // why it ended; read after events is closed
}

// subscribeEvents opens a GetContainerEvents stream on rc and reads it
// into a large buffer until it ends or the test ends.
func subscribeEvents(t *testing.T, rc runtimeapi.RuntimeServiceClient) *eventSub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := rc.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	s := &eventSub{events: make(chan *runtimeapi.ContainerEventResponse, 1<<16)}
	go func() {
		defer close(s.events)
		for {
			ev, err := stream.Recv()
			if err != nil {
				s.err = err
				return
			}
			s.events <- ev
		}
	}()
	return s
}

// until returns the events received up to and including the first one
// for which stop is true; it fails the test after timeout or if the
// stream ends first.
func (s *eventSub) until(t *testing.T, timeout time.Duration, stop func(*runtimeapi.ContainerEventResponse) bool) []*runtimeapi.ContainerEventResponse {
	t.Helper()
	var got []*runtimeapi.ContainerEventResponse
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatalf("event stream ended (%v) after %d events, before the one awaited", s.err, len(got))
			}
			got = append(got, ev)
			if stop(ev) {
				return got
			}
		case <-deadline:
			t.Fatalf("awaited event not received within %s; got %d events: %s", timeout, len(got), describeEvents(got))
		}
	}
}

// about keeps the events whose container_id is one of ids.
func about(evs []*runtimeapi.ContainerEventResponse, ids ...string) []*runtimeapi.ContainerEventResponse {
	var out []*runtimeapi.ContainerEventResponse
	for _, ev := range evs {
		for _, id := range ids {
			if ev.GetContainerId() == id {
				out = append(out, ev)
			}
		}
	}
	return out
}

func describeEvents(evs []*runtimeapi.ContainerEventResponse) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "\n  %.12s %s", ev.GetContainerId(), ev.GetContainerEventType())
	}
	return b.String()
}

// isEvent matches the event of type typ for id.
func isEvent(id string, typ runtimeapi.ContainerEventType) func(*runtimeapi.ContainerEventResponse) bool {
	return func(ev *runtimeapi.ContainerEventResponse) bool {
		return ev.GetContainerId() == id && ev.GetContainerEventType() == typ
	}
}

// marker runs a pod and returns its ID: its CREATED event tells a
// subscriber that everything published before has been delivered
// (events reach each subscriber in order).
func marker(t *testing.T, d *framework.Daemon, name string) string {
	t.Helper()
	return d.RunPod(t, framework.PodConfig(name))
}

// syncSubs waits until every subscriber has seen a marker pod's CREATED
// event, so that what the test does next is seen by all of them.
func syncSubs(t *testing.T, d *framework.Daemon, subs ...*eventSub) {
	t.Helper()
	m := marker(t, d, "marker")
	for _, s := range subs {
		s.until(t, 30*time.Second, isEvent(m, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT))
	}
}

// TestContainerEvents: every subscriber receives the lifecycle of a pod
// and its container, in order, each event carrying the pod's status and
// its containers' statuses as they are at that point.
func TestContainerEvents(t *testing.T) {
	_, d := podEnv(t)
	ctx := testCtx(t)
	subs := []*eventSub{subscribeEvents(t, d.RuntimeClient()), subscribeEvents(t, d.RuntimeClient())}
	syncSubs(t, d, subs...)

	pc := framework.PodConfig("events")
	pod := d.RunPod(t, pc)
	ctr := d.CreateStarted(t, pod, sleeper("c"), pc)
	d.WaitContainerState(t, ctr, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	if err := d.Runtime().StopContainer(ctx, ctr, 0); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if err := d.Runtime().RemoveContainer(ctx, ctr); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	if err := d.Runtime().StopPodSandbox(ctx, pod); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if err := d.Runtime().RemovePodSandbox(ctx, pod); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	end := marker(t, d, "end")

	type want struct {
		id       string
		typ      runtimeapi.ContainerEventType
		podState runtimeapi.PodSandboxState
		// ctrState is the container's state in containers_statuses;
		// UNKNOWN means it must not be listed.
		ctrState runtimeapi.ContainerState
	}
	const (
		created = runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT
		started = runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT
		stopped = runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT
		deleted = runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT
		ready   = runtimeapi.PodSandboxState_SANDBOX_READY
		notRdy  = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
		absent  = runtimeapi.ContainerState_CONTAINER_UNKNOWN
	)
	wants := []want{
		{pod, created, ready, absent},
		{pod, started, ready, absent},
		{ctr, created, ready, runtimeapi.ContainerState_CONTAINER_CREATED},
		{ctr, started, ready, runtimeapi.ContainerState_CONTAINER_RUNNING},
		{ctr, stopped, ready, runtimeapi.ContainerState_CONTAINER_EXITED},
		{ctr, deleted, ready, absent},
		{pod, stopped, notRdy, absent},
		{pod, deleted, notRdy, absent},
	}
	for i, s := range subs {
		t.Run(fmt.Sprintf("subscriber %d", i+1), func(t *testing.T) {
			all := s.until(t, 30*time.Second, isEvent(end, created))
			got := about(all, pod, ctr)
			if len(got) != len(wants) {
				t.Fatalf("got %d events for the pod and container, want %d:%s", len(got), len(wants), describeEvents(got))
			}
			var last int64
			for j, w := range wants {
				ev := got[j]
				if ev.GetContainerId() != w.id || ev.GetContainerEventType() != w.typ {
					t.Errorf("event %d = %.12s %s, want %.12s %s; all:%s", j, ev.GetContainerId(), ev.GetContainerEventType(), w.id, w.typ, describeEvents(got))
					continue
				}
				if ev.GetCreatedAt() < last || ev.GetCreatedAt() == 0 || time.Since(time.Unix(0, ev.GetCreatedAt())) > 5*time.Minute {
					t.Errorf("event %d (%s): created_at %d, previous %d; want set, recent and non-decreasing", j, w.typ, ev.GetCreatedAt(), last)
				}
				last = ev.GetCreatedAt()
				ps := ev.GetPodSandboxStatus()
				if ps.GetId() != pod || ps.GetMetadata().GetName() != "events" || ps.GetMetadata().GetUid() != pc.Metadata.Uid {
					t.Errorf("event %d (%.12s %s): pod sandbox status %v, want pod %s", j, w.id, w.typ, ps, pod)
				}
				if ps.GetState() != w.podState {
					t.Errorf("event %d (%.12s %s): pod state %s, want %s", j, w.id, w.typ, ps.GetState(), w.podState)
				}
				var ctrSt *runtimeapi.ContainerStatus
				for _, cs := range ev.GetContainersStatuses() {
					if cs.GetId() == ctr {
						ctrSt = cs
					}
				}
				switch {
				case w.ctrState == absent && ctrSt != nil:
					t.Errorf("event %d (%.12s %s): containers_statuses lists the container (%s), want it absent", j, w.id, w.typ, ctrSt.GetState())
				case w.ctrState != absent && ctrSt == nil:
					t.Errorf("event %d (%.12s %s): containers_statuses lacks the container", j, w.id, w.typ)
				case w.ctrState != absent && ctrSt.GetState() != w.ctrState:
					t.Errorf("event %d (%.12s %s): container state %s in the event, want %s", j, w.id, w.typ, ctrSt.GetState(), w.ctrState)
				}
			}
		})
	}
}

// dialFixedWindow connects to the daemon with fixed HTTP/2 flow-control
// windows (no BDP estimation growing them), so that a stream nobody
// reads holds a known, small amount of data.
func dialFixedWindow(t *testing.T, d *framework.Daemon) runtimeapi.RuntimeServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+d.Socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10),
		grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}

// TestStalledEventSubscriber: a subscriber that never reads neither
// blocks the runtime nor the other subscribers; it is eventually cut off
// with an error (kubelet then relists) instead of being fed forever.
func TestStalledEventSubscriber(t *testing.T) {
	_, d := podEnv(t)
	ctx := testCtx(t)

	// The stalled stream has a connection of its own: its unread data
	// fills that connection's window, not the one of the others.
	stalledCtx, stopStalled := context.WithCancel(ctx)
	t.Cleanup(stopStalled)
	stalled, err := dialFixedWindow(t, d).GetContainerEvents(stalledCtx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	reader := subscribeEvents(t, d.RuntimeClient())
	syncSubs(t, d, reader)
	first := marker(t, d, "first")

	pc := framework.PodConfig("churn")
	pod := d.RunPod(t, pc)
	const lifecycles = 50
	var ids []string
	// A publisher blocked on the stalled stream would hang these calls
	// for good; each gets a bound far above its normal few tens of
	// milliseconds, so a busy machine does not fail the test.
	const callLimit = 20 * time.Second
	slowest := map[string]time.Duration{}
	var mu sync.Mutex
	timed := func(op string, f func(ctx context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, callLimit)
		defer cancel()
		t0 := time.Now()
		err := f(cctx)
		mu.Lock()
		slowest[op] = max(slowest[op], time.Since(t0))
		mu.Unlock()
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		return nil
	}
	lifecycle := func(name string) (id string, err error) {
		if err := timed("create", func(ctx context.Context) (err error) {
			id, err = d.Runtime().CreateContainer(ctx, pod, sleeper(name), pc)
			return err
		}); err != nil {
			return "", err
		}
		if err := timed("start", func(ctx context.Context) error { return d.Runtime().StartContainer(ctx, id) }); err != nil {
			return id, err
		}
		if err := timed("stop", func(ctx context.Context) error { return d.Runtime().StopContainer(ctx, id, 0) }); err != nil {
			return id, err
		}
		return id, timed("remove", func(ctx context.Context) error { return d.Runtime().RemoveContainer(ctx, id) })
	}
	start := time.Now()
	for i := range lifecycles {
		id, err := lifecycle(fmt.Sprintf("c%d", i))
		if err != nil {
			t.Fatalf("lifecycle %d with a stalled subscriber: %v", i, err)
		}
		ids = append(ids, id)
	}
	t.Logf("%d container lifecycles with a stalled subscriber took %s; slowest call of each kind: %v", lifecycles, time.Since(start), slowest)

	// The reading subscriber got every event, in order.
	last := ids[len(ids)-1]
	evs := about(reader.until(t, 30*time.Second, isEvent(last, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)), ids...)
	if len(evs) != 4*lifecycles {
		t.Fatalf("reader got %d events for the %d containers, want %d", len(evs), lifecycles, 4*lifecycles)
	}
	size := 0
	for i, ev := range evs {
		want := []runtimeapi.ContainerEventType{
			runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT,
			runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
			runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
			runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
		}[i%4]
		if ev.GetContainerId() != ids[i/4] || ev.GetContainerEventType() != want {
			t.Fatalf("reader event %d = %.12s %s, want %.12s %s", i, ev.GetContainerId(), ev.GetContainerEventType(), ids[i/4], want)
		}
		size += proto.Size(ev)
	}

	// Publish more than the daemon may hold for one subscriber (its
	// buffer of 1024 events, plus what fits in the HTTP/2 windows) with
	// cheap create/remove pairs, four at a time.
	avg := max(size/len(evs), 1)
	const serverBuffer = 1024
	need := serverBuffer + 2*(64<<10)/avg + 200 - len(evs)
	pairs := need/2 + 1
	t.Logf("events average %d bytes; creating and removing %d more containers", avg, pairs)
	start = time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < pairs; i += 4 {
				var id string
				err := timed("create", func(ctx context.Context) (err error) {
					id, err = d.Runtime().CreateContainer(ctx, pod, sleeper(fmt.Sprintf("f%d", i)), pc)
					return err
				})
				if err == nil {
					err = timed("remove", func(ctx context.Context) error { return d.Runtime().RemoveContainer(ctx, id) })
				}
				if err != nil {
					errs <- fmt.Errorf("flood %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d create/remove pairs took %s; slowest calls: %v", pairs, time.Since(start), slowest)
	flooded := marker(t, d, "flooded")
	reader.until(t, time.Minute, isEvent(flooded, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT))

	// Now read the stalled stream: it holds what was buffered for it,
	// starting with the events before the churn, and then ends with an
	// error instead of delivering the rest.
	type result struct {
		n          int
		sawFirst   bool
		sawFlooded bool
		err        error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		for {
			ev, err := stalled.Recv()
			if err != nil {
				r.err = err
				done <- r
				return
			}
			r.n++
			r.sawFirst = r.sawFirst || ev.GetContainerId() == first
			r.sawFlooded = r.sawFlooded || ev.GetContainerId() == flooded
		}
	}()
	select {
	case r := <-done:
		t.Logf("stalled stream delivered %d events, then: %v", r.n, r.err)
		if !r.sawFirst {
			t.Errorf("the stalled stream did not deliver the events from before it fell behind")
		}
		if r.sawFlooded || errors.Is(r.err, io.EOF) || r.err == nil {
			t.Errorf("the stalled stream delivered everything (%d events, saw the last marker: %v) and ended with %v; want it cut off with an error", r.n, r.sawFlooded, r.err)
		}
	case <-time.After(30 * time.Second):
		stopStalled()
		t.Errorf("the stalled stream did not end within 30s of being read: it was not cut off")
	}

	// The runtime and a new subscriber still work.
	fresh := subscribeEvents(t, d.RuntimeClient())
	syncSubs(t, d, fresh, reader)
}

// TestPodSandboxStatusContainers: PodSandboxStatus carries no timestamp:
// with one, kubelet's evented PLEG takes the containers from there, which
// kubelet 1.37 gets wrong (it runs completed init containers again; see
// pkg/server PodSandboxStatus). Without one kubelet never reads the
// containers' statuses, which come only with verbose (crictl inspectp).
func TestPodSandboxStatusContainers(t *testing.T) {
	_, d := podEnv(t)
	pc := framework.PodConfig("plegstatus")
	pod := d.RunPod(t, pc)
	running := d.CreateStarted(t, pod, sleeper("running"), pc)
	created := d.CreateContainer(t, pod, sleeper("created"), pc)
	resp, err := d.RuntimeClient().PodSandboxStatus(testCtx(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
	if err != nil {
		t.Fatal(err)
	}
	if ts, n := resp.GetTimestamp(), len(resp.GetContainersStatuses()); ts != 0 || n != 0 {
		t.Errorf("timestamp %d, %d container statuses; want none without verbose", ts, n)
	}
	resp, err = d.RuntimeClient().PodSandboxStatus(testCtx(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if ts := resp.GetTimestamp(); ts != 0 {
		t.Errorf("verbose: timestamp %d, want none", ts)
	}
	got := map[string]runtimeapi.ContainerState{}
	for _, cs := range resp.GetContainersStatuses() {
		got[cs.GetId()] = cs.GetState()
		if cs.GetMetadata().GetName() == "" || cs.GetImageRef() == "" || cs.GetCreatedAt() == 0 {
			t.Errorf("container status %s lacks metadata, image ref or creation time: %v", cs.GetId(), cs)
		}
	}
	if len(got) != 2 || got[running] != runtimeapi.ContainerState_CONTAINER_RUNNING || got[created] != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("containers_statuses = %v, want %s running and %s created", got, running, created)
	}
}
