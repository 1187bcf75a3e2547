package server

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestListWire: the codec's ListContainers encoding decodes to the
// response it was given, before and after a state change, with stored
// and unstored entries, and removed containers leave no stored entry.
func TestListWire(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()
	pod := st.runPod("p")
	a := st.createCtr(pod, "a", 0)
	b := st.createCtr(pod, "b", 0)
	codec := st.s.Codec()
	check := func(what string, resp *runtimeapi.ListContainersResponse) {
		t.Helper()
		data, err := codec.Marshal(resp)
		if err != nil {
			t.Fatalf("%s: Marshal: %v", what, err)
		}
		var got runtimeapi.ListContainersResponse
		if err := proto.Unmarshal(data.Materialize(), &got); err != nil {
			t.Fatalf("%s: Unmarshal: %v", what, err)
		}
		if !proto.Equal(&got, resp) {
			t.Errorf("%s: decoded %v, want %v", what, &got, resp)
		}
	}
	list := func() *runtimeapi.ListContainersResponse {
		t.Helper()
		resp, err := st.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil || len(resp.Containers) != 2 {
			t.Fatalf("ListContainers = %v, %v", resp, err)
		}
		return resp
	}
	first := list()
	check("created", first)
	if again := list(); again.Containers[0] != first.Containers[0] {
		t.Error("an unchanged container's entry was built again")
	}
	if _, err := st.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: a}); err != nil {
		t.Fatal(err)
	}
	started := list()
	check("started", started)
	states := map[string]runtimeapi.ContainerState{}
	for _, c := range started.Containers {
		states[c.Id] = c.State
	}
	if states[a] != runtimeapi.ContainerState_CONTAINER_RUNNING || states[b] != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("states after a's start: %v", states)
	}
	// An entry the server did not store, and an empty list.
	check("unstored", &runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{
		proto.Clone(started.Containers[0]).(*runtimeapi.Container),
		{Id: "x", Labels: map[string]string{"k": "v"}, State: runtimeapi.ContainerState_CONTAINER_EXITED},
	}})
	check("empty", &runtimeapi.ListContainersResponse{})

	if _, err := st.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: b}); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.s.list.encoding(started.Containers[1]); ok {
		t.Error("a removed container's encoding is still stored")
	}
	if _, err := st.s.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	if n := len(st.s.list.ctrs); n != 0 {
		t.Errorf("%d encodings stored after the pod's removal", n)
	}
}

// TestStatusWire: ContainerStatus and PodSandboxStatus through the codec
// decode to what the handlers returned; a status is built again when the
// container changes (its start, a resource update), not otherwise.
func TestStatusWire(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()
	pod := st.runPod("p")
	a := st.createCtr(pod, "a", 0)
	st.createCtr(pod, "b", 0)
	codec := st.s.Codec()
	roundTrip := func(what string, resp proto.Message) {
		t.Helper()
		data, err := codec.Marshal(resp)
		if err != nil {
			t.Fatalf("%s: Marshal: %v", what, err)
		}
		got := resp.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(data.Materialize(), got); err != nil {
			t.Fatalf("%s: Unmarshal: %v", what, err)
		}
		if !proto.Equal(got, resp) {
			t.Errorf("%s: decoded %v, want %v", what, got, resp)
		}
	}
	status := func(verbose bool) *runtimeapi.ContainerStatusResponse {
		t.Helper()
		resp, err := st.s.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: a, Verbose: verbose})
		if err != nil {
			t.Fatal(err)
		}
		roundTrip("ContainerStatus", resp)
		return resp
	}
	podStatus := func() *runtimeapi.PodSandboxStatusResponse {
		t.Helper()
		resp, err := st.s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod, Verbose: true})
		if err != nil || len(resp.ContainersStatuses) != 2 {
			t.Fatalf("PodSandboxStatus = %v, %v", resp, err)
		}
		roundTrip("PodSandboxStatus", resp)
		return resp
	}
	first := status(false)
	if again := status(true); again.Status != first.Status || again.Info == nil {
		t.Error("an unchanged container's status was built again, or verbose lost its info")
	}
	if ps := podStatus(); ps.ContainersStatuses[0] != first.Status {
		t.Error("PodSandboxStatus built the unchanged status again")
	}
	if _, err := st.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: a}); err != nil {
		t.Fatal(err)
	}
	started := status(false)
	if started.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING || started.Status.StartedAt == 0 {
		t.Errorf("status after the start: %v", started.Status)
	}
	res := &runtimeapi.LinuxContainerResources{CpuShares: 256, MemoryLimitInBytes: 64 << 20}
	if _, err := st.s.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: a, Linux: res}); err != nil {
		t.Fatal(err)
	}
	if got := status(false).Status.GetResources().GetLinux(); got.GetMemoryLimitInBytes() != 64<<20 {
		t.Errorf("resources after an update: %v", got)
	}
	podStatus()
	roundTrip("status without containers", &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{Id: "x"}, Timestamp: 5})
}

// TestWireFields: the codec rebuilds these responses from their known
// fields; a CRI version that adds one must be looked at here.
func TestWireFields(t *testing.T) {
	for _, tc := range []struct {
		msg    proto.Message
		fields int
	}{
		{&runtimeapi.ListContainersResponse{}, 1},
		{&runtimeapi.ContainerStatusResponse{}, 2},
		{&runtimeapi.PodSandboxStatusResponse{}, 4},
	} {
		d := tc.msg.ProtoReflect().Descriptor()
		if n := d.Fields().Len(); n != tc.fields {
			t.Errorf("%s has %d fields, the codec knows %d (pkg/server/wire.go)", d.FullName(), n, tc.fields)
		}
	}
}
