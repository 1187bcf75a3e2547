package server

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox"
)

// eventBuffer is how many events a subscriber may lag behind before it is
// cut off (kubelet then relists, as it does after any stream error).
const eventBuffer = 1024

// errEventsOverflow ends a stream whose reader fell too far behind.
var errEventsOverflow = errors.New("container events: the client fell too far behind; relist and subscribe again")

// GetContainerEvents streams container and pod lifecycle events, each
// with the pod's current status, until the client goes away.
func (s *Server) GetContainerEvents(req *runtimeapi.GetEventsRequest, stream grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	ch, cancel := s.events.Subscribe(eventBuffer)
	defer cancel()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev, ok := <-ch:
			if !ok {
				return errEventsOverflow
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

func (s *Server) podEvent(t runtimeapi.ContainerEventType, pod *podsandbox.Pod) {
	switch t {
	case runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT:
		// Its network namespace must be free to go.
		s.stats.ForgetNetwork(pod.ID())
	case runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT:
		s.stats.Forget(pod.ID())
	}
	s.publish(t, pod.ID(), pod)
}

func (s *Server) containerEvent(t runtimeapi.ContainerEventType, ctr *container.Container) {
	switch t {
	case runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT:
		// Measured in the background now, so that the first stats call
		// finds the writable layer's usage.
		s.layerUsage(context.Background(), ctr)
	case runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT:
		s.stats.Forget(ctr.ID())
	}
	pod, ok := ctr.Pod().(*podsandbox.Pod)
	if !ok {
		klog.V(4).InfoS("Container event without a known pod", "container", ctr.ID())
		return
	}
	s.publish(t, ctr.ID(), pod)
}

// publish builds the event with the pod's status and the statuses of its
// containers, as kubelet's evented PLEG wants them.
func (s *Server) publish(t runtimeapi.ContainerEventType, id string, pod *podsandbox.Pod) {
	if s.events.Subscribers() == 0 {
		return
	}
	ev := &runtimeapi.ContainerEventResponse{
		ContainerId:        id,
		ContainerEventType: t,
		CreatedAt:          time.Now().UnixNano(),
		PodSandboxStatus:   podStatus(pod),
	}
	for _, ctr := range s.ctrs.ListByPod(pod.ID()) {
		ev.ContainersStatuses = append(ev.ContainersStatuses, s.wire.status(ctr))
	}
	s.events.Publish(ev)
}
