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
