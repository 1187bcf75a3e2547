package server

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
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
	if _, ok := st.s.wire.list.encoding(started.Containers[1].Id, started.Containers[1]); ok {
		t.Error("a removed container's encoding is still stored")
	}
	if _, err := st.s.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	if n := len(st.s.wire.list.m); n != 0 {
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

// TestWireFields: the codec rebuilds these messages from their known
// fields; a CRI version that adds one must be looked at here.
func TestWireFields(t *testing.T) {
	for _, tc := range []struct {
		msg    proto.Message
		fields int
	}{
		{&runtimeapi.ListContainersResponse{}, 1},
		{&runtimeapi.ContainerStatusResponse{}, 2},
		{&runtimeapi.PodSandboxStatusResponse{}, 4},
		{&runtimeapi.ContainerStatsResponse{}, 1},
		{&runtimeapi.ListContainerStatsResponse{}, 1},
		{&runtimeapi.ContainerStats{}, 6},
		{&runtimeapi.PodSandboxStatsResponse{}, 1},
		{&runtimeapi.ListPodSandboxStatsResponse{}, 1},
		{&runtimeapi.PodSandboxStats{}, 3},
		{&runtimeapi.LinuxPodSandboxStats{}, 6},
	} {
		d := tc.msg.ProtoReflect().Descriptor()
		if n := d.Fields().Len(); n != tc.fields {
			t.Errorf("%s has %d fields, the codec knows %d (pkg/server/wire.go)", d.FullName(), n, tc.fields)
		}
	}
}

// TestWireBytes: for every response the codec assembles, its bytes are
// those of proto.Marshal (deterministic) of the whole response, whether
// the entries are stored, unstored, or a mix; other messages, and
// responses with unknown fields, are encoded by the protobuf codec.
func TestWireBytes(t *testing.T) {
	s := &Server{}
	codec := s.Codec()
	rnd := rand.New(rand.NewPCG(14, 14))
	stored := func(n int) []*runtimeapi.Container {
		var out []*runtimeapi.Container
		for range n {
			c := randContainer(rnd)
			put(&s.wire.list, c.Id, meta.ContainerRunning, c)
			out = append(out, c)
		}
		return out
	}
	storedStatus := func(n int) []*runtimeapi.ContainerStatus {
		var out []*runtimeapi.ContainerStatus
		for range n {
			c := randStatus(rnd)
			put(&s.wire.statuses, c.Id, statusKey{}, c)
			out = append(out, c)
		}
		return out
	}
	ctrStats := func(n int, store bool) []*runtimeapi.ContainerStats {
		var out []*runtimeapi.ContainerStats
		for range n {
			cs := randContainerStats(rnd)
			if store {
				put(&s.wire.ctrAttrs, cs.Attributes.Id, nil, cs.Attributes)
			}
			out = append(out, cs)
		}
		return out
	}
	podStats := func(ctrs int, store bool) *runtimeapi.PodSandboxStats {
		ps := randPodStats(rnd)
		if store {
			put(&s.wire.podAttrs, ps.Attributes.Id, nil, ps.Attributes)
		}
		ps.Linux.Containers = ctrStats(ctrs, store)
		return ps
	}
	withUnknown := func(m proto.Message) proto.Message {
		m.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 7))
		return m
	}
	info := map[string]string{"info": `{"pid":1}`, "a": "b", "z": ""}
	for _, tc := range []struct {
		name string
		msg  proto.Message
	}{
		{"list empty", &runtimeapi.ListContainersResponse{}},
		{"list empty slice", &runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{}}},
		{"list one stored", &runtimeapi.ListContainersResponse{Containers: stored(1)}},
		{"list 500 stored", &runtimeapi.ListContainersResponse{Containers: stored(500)}},
		{"list unstored", &runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{randContainer(rnd), randContainer(rnd)}}},
		{"list mixed", &runtimeapi.ListContainersResponse{Containers: append(append(stored(3), randContainer(rnd)), stored(2)...)}},
		{"list empty entry", &runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{{}}}},
		{"list nil entry", &runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{nil}}},
		{"list entry with unknown fields", &runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{withUnknown(randContainer(rnd)).(*runtimeapi.Container)}}},
		{"list copy of a stored entry", &runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{proto.Clone(stored(1)[0]).(*runtimeapi.Container)}}},
		{"list stored entry with an id of another's", &runtimeapi.ListContainersResponse{Containers: func() []*runtimeapi.Container {
			c := proto.Clone(stored(1)[0]).(*runtimeapi.Container)
			c.State = runtimeapi.ContainerState_CONTAINER_EXITED
			return []*runtimeapi.Container{c}
		}()}},
		{"status", &runtimeapi.ContainerStatusResponse{Status: storedStatus(1)[0]}},
		{"status verbose", &runtimeapi.ContainerStatusResponse{Status: storedStatus(1)[0], Info: info}},
		{"status unstored", &runtimeapi.ContainerStatusResponse{Status: randStatus(rnd), Info: info}},
		{"status empty", &runtimeapi.ContainerStatusResponse{Status: &runtimeapi.ContainerStatus{}}},
		{"status nil", &runtimeapi.ContainerStatusResponse{Info: info}},
		{"status none", &runtimeapi.ContainerStatusResponse{}},
		{"pod status", &runtimeapi.PodSandboxStatusResponse{Status: randPodStatus(rnd), ContainersStatuses: storedStatus(3)}},
		{"pod status all fields", &runtimeapi.PodSandboxStatusResponse{Status: randPodStatus(rnd), Info: info,
			ContainersStatuses: append(storedStatus(2), randStatus(rnd)), Timestamp: rnd.Int64()}},
		{"pod status negative timestamp", &runtimeapi.PodSandboxStatusResponse{Status: randPodStatus(rnd), Timestamp: -1}},
		{"pod status no containers", &runtimeapi.PodSandboxStatusResponse{Status: randPodStatus(rnd), Info: info}},
		{"pod status only timestamp", &runtimeapi.PodSandboxStatusResponse{Timestamp: 5}},
		{"pod status empty", &runtimeapi.PodSandboxStatusResponse{}},
		{"container stats", &runtimeapi.ContainerStatsResponse{Stats: ctrStats(1, true)[0]}},
		{"container stats unstored", &runtimeapi.ContainerStatsResponse{Stats: ctrStats(1, false)[0]}},
		{"container stats none", &runtimeapi.ContainerStatsResponse{}},
		{"container stats empty", &runtimeapi.ContainerStatsResponse{Stats: &runtimeapi.ContainerStats{}}},
		{"container stats attributes only", &runtimeapi.ContainerStatsResponse{Stats: &runtimeapi.ContainerStats{Attributes: ctrStats(1, true)[0].Attributes}}},
		{"list container stats", &runtimeapi.ListContainerStatsResponse{Stats: ctrStats(500, true)}},
		{"list container stats mixed", &runtimeapi.ListContainerStatsResponse{Stats: append(append(ctrStats(3, true), ctrStats(2, false)...), nil, &runtimeapi.ContainerStats{})}},
		{"list container stats empty", &runtimeapi.ListContainerStatsResponse{}},
		{"list container stats entry with unknown fields", &runtimeapi.ListContainerStatsResponse{Stats: []*runtimeapi.ContainerStats{
			withUnknown(ctrStats(1, true)[0]).(*runtimeapi.ContainerStats)}}},
		{"pod stats", &runtimeapi.PodSandboxStatsResponse{Stats: podStats(20, true)}},
		{"pod stats unstored", &runtimeapi.PodSandboxStatsResponse{Stats: podStats(3, false)}},
		{"pod stats none", &runtimeapi.PodSandboxStatsResponse{}},
		{"pod stats empty", &runtimeapi.PodSandboxStatsResponse{Stats: &runtimeapi.PodSandboxStats{}}},
		{"pod stats empty linux", &runtimeapi.PodSandboxStatsResponse{Stats: &runtimeapi.PodSandboxStats{Linux: &runtimeapi.LinuxPodSandboxStats{}}}},
		{"pod stats windows", &runtimeapi.PodSandboxStatsResponse{Stats: func() *runtimeapi.PodSandboxStats {
			ps := podStats(2, true)
			ps.Windows = &runtimeapi.WindowsPodSandboxStats{Cpu: &runtimeapi.WindowsCpuUsage{Timestamp: 1}}
			return ps
		}()}},
		{"pod stats linux with unknown fields", &runtimeapi.PodSandboxStatsResponse{Stats: func() *runtimeapi.PodSandboxStats {
			ps := podStats(2, true)
			withUnknown(ps.Linux)
			return ps
		}()}},
		{"pod stats with unknown fields", &runtimeapi.PodSandboxStatsResponse{Stats: withUnknown(podStats(2, true)).(*runtimeapi.PodSandboxStats)}},
		{"list pod stats", &runtimeapi.ListPodSandboxStatsResponse{Stats: []*runtimeapi.PodSandboxStats{podStats(20, true), podStats(0, true), podStats(2, false), nil}}},
		{"list pod stats empty", &runtimeapi.ListPodSandboxStatsResponse{}},
		{"unknown fields: list stats", withUnknown(&runtimeapi.ListContainerStatsResponse{Stats: ctrStats(2, true)})},
		{"unknown fields: pod stats", withUnknown(&runtimeapi.ListPodSandboxStatsResponse{Stats: []*runtimeapi.PodSandboxStats{podStats(1, true)}})},
		{"stream stats", &runtimeapi.StreamContainerStatsResponse{ContainerStats: ctrStats(2, true)}},
		{"unknown fields: list", withUnknown(&runtimeapi.ListContainersResponse{Containers: stored(2)})},
		{"unknown fields: status", withUnknown(&runtimeapi.ContainerStatusResponse{Status: storedStatus(1)[0]})},
		{"unknown fields: pod status", withUnknown(&runtimeapi.PodSandboxStatusResponse{ContainersStatuses: storedStatus(1)})},
		{"other response", &runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{{Id: "p", Labels: map[string]string{"a": "b"}}}}},
		{"request", &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: "x"}}},
		{"stream batch", &runtimeapi.StreamContainersResponse{Containers: stored(2)}},
		{"event", &runtimeapi.ContainerEventResponse{ContainerId: "c", ContainersStatuses: storedStatus(2)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := codec.Marshal(tc.msg)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got := data.Materialize()
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				// The protobuf codec does not sort map entries: what it
				// encodes must decode to the message.
				back := tc.msg.ProtoReflect().New().Interface()
				if err := proto.Unmarshal(got, back); err != nil || !proto.Equal(back, tc.msg) {
					t.Errorf("codec bytes %x\nwant %x (decoded %v, %v)", got, want, back, err)
				}
				if isAssembled(tc.msg) && len(tc.msg.ProtoReflect().GetUnknown()) == 0 {
					t.Errorf("assembled bytes differ from proto.Marshal:\n got %x\nwant %x", got, want)
				}
			}
			var back runtimeapi.ListContainersResponse
			if l, ok := tc.msg.(*runtimeapi.ListContainersResponse); ok {
				if err := codec.Unmarshal(data, &back); err != nil || len(back.Containers) != len(l.Containers) {
					t.Errorf("codec Unmarshal: %v, %d entries", err, len(back.Containers))
				}
			}
		})
	}
}

func isAssembled(m proto.Message) bool {
	switch m.(type) {
	case *runtimeapi.ListContainersResponse, *runtimeapi.ContainerStatusResponse, *runtimeapi.PodSandboxStatusResponse,
		*runtimeapi.ContainerStatsResponse, *runtimeapi.ListContainerStatsResponse,
		*runtimeapi.PodSandboxStatsResponse, *runtimeapi.ListPodSandboxStatsResponse:
		return true
	}
	return false
}

// TestWireRandom: random responses, stored and not, encode as
// proto.Marshal does.
func TestWireRandom(t *testing.T) {
	s := &Server{}
	codec := s.Codec()
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		var msg proto.Message
		stats := func() *runtimeapi.ContainerStats {
			cs := randContainerStats(rnd)
			if rnd.IntN(2) == 0 {
				put(&s.wire.ctrAttrs, cs.Attributes.Id, nil, cs.Attributes)
			}
			return cs
		}
		switch i % 5 {
		case 3:
			resp := &runtimeapi.ListContainerStatsResponse{}
			for range rnd.IntN(20) {
				resp.Stats = append(resp.Stats, stats())
			}
			msg = resp
		case 4:
			resp := &runtimeapi.ListPodSandboxStatsResponse{}
			for range rnd.IntN(5) {
				ps := randPodStats(rnd)
				if rnd.IntN(2) == 0 {
					put(&s.wire.podAttrs, ps.Attributes.Id, nil, ps.Attributes)
				}
				for range rnd.IntN(5) {
					ps.Linux.Containers = append(ps.Linux.Containers, stats())
				}
				resp.Stats = append(resp.Stats, ps)
			}
			msg = resp
		case 0:
			resp := &runtimeapi.ListContainersResponse{}
			for range rnd.IntN(20) {
				c := randContainer(rnd)
				if rnd.IntN(2) == 0 {
					put(&s.wire.list, c.Id, []meta.ContainerState{meta.ContainerCreated, meta.ContainerRunning, meta.ContainerExited}[rnd.IntN(3)], c)
				}
				resp.Containers = append(resp.Containers, c)
			}
			msg = resp
		case 1:
			st := randStatus(rnd)
			if rnd.IntN(2) == 0 {
				put(&s.wire.statuses, st.Id, statusKey{}, st)
			}
			resp := &runtimeapi.ContainerStatusResponse{Status: st}
			if rnd.IntN(2) == 0 {
				resp.Info = randMap(rnd)
			}
			msg = resp
		default:
			resp := &runtimeapi.PodSandboxStatusResponse{Status: randPodStatus(rnd), Timestamp: rnd.Int64N(1 << 40)}
			for range rnd.IntN(5) {
				st := randStatus(rnd)
				if rnd.IntN(2) == 0 {
					put(&s.wire.statuses, st.Id, statusKey{}, st)
				}
				resp.ContainersStatuses = append(resp.ContainersStatuses, st)
			}
			if rnd.IntN(2) == 0 {
				resp.Info = randMap(rnd)
			}
			msg = resp
		}
		data, err := codec.Marshal(msg)
		if err != nil {
			t.Fatalf("%d: Marshal: %v", i, err)
		}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := data.Materialize(); !bytes.Equal(got, want) {
			t.Fatalf("%d: %T: codec bytes differ from proto.Marshal\n got %x\nwant %x", i, msg, got, want)
		}
	}
}

// TestWireConcurrent: lists, statuses and the codec running while the
// containers change state: every response's bytes decode to what the
// handler returned (run with -race).
func TestWireConcurrent(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()
	pod := st.runPod("p")
	var ids []string
	for i := range 8 {
		ids = append(ids, st.createCtr(pod, fmt.Sprintf("c%d", i), 0))
	}
	codec := st.s.Codec()
	check := func(resp proto.Message) error {
		data, err := codec.Marshal(resp)
		if err != nil {
			return err
		}
		got := resp.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(data.Materialize(), got); err != nil {
			return err
		}
		if !proto.Equal(got, resp) {
			return fmt.Errorf("decoded %v, want %v", got, resp)
		}
		return nil
	}
	done := make(chan struct{})
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	for r := range 3 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					errc <- nil
					return
				default:
				}
				var resp proto.Message
				var err error
				switch r {
				case 0:
					resp, err = st.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
				case 1:
					resp, err = st.s.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ids[0]})
				default:
					resp, err = st.s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
				}
				if err == nil {
					err = check(resp)
				}
				if err != nil {
					errc <- err
					return
				}
			}
		})
	}
	sh := st.shimOf(pod)
	for i, id := range ids {
		if _, err := st.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := sh.Exit(id, int32(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, id := range ids {
		if _, err := st.s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Error(err)
		}
	}
	// Every container's listed and status entry is its current state.
	resp, err := st.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.Containers {
		if c.State != runtimeapi.ContainerState_CONTAINER_EXITED {
			t.Errorf("container %s listed %v after its stop", c.Id, c.State)
		}
		if s := st.ctrState(c.Id); s.State != runtimeapi.ContainerState_CONTAINER_EXITED || s.FinishedAt == 0 {
			t.Errorf("container %s status %v, finished %d after its stop", c.Id, s.State, s.FinishedAt)
		}
	}
}

func randString(rnd *rand.Rand) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789-./_é"
	r := []rune(chars)
	b := make([]rune, rnd.IntN(24))
	for i := range b {
		b[i] = r[rnd.IntN(len(r))]
	}
	return string(b)
}

func randMap(rnd *rand.Rand) map[string]string {
	n := rnd.IntN(8)
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for range n {
		m[randString(rnd)] = randString(rnd)
	}
	return m
}

func randImage(rnd *rand.Rand) *runtimeapi.ImageSpec {
	if rnd.IntN(4) == 0 {
		return nil
	}
	return &runtimeapi.ImageSpec{Image: randString(rnd), Annotations: randMap(rnd), UserSpecifiedImage: randString(rnd), RuntimeHandler: randString(rnd)}
}

func randContainer(rnd *rand.Rand) *runtimeapi.Container {
	c := &runtimeapi.Container{
		Id:           fmt.Sprintf("%016x", rnd.Uint64()),
		PodSandboxId: randString(rnd),
		Image:        randImage(rnd),
		ImageRef:     randString(rnd),
		ImageId:      randString(rnd),
		State:        runtimeapi.ContainerState(rnd.IntN(4)),
		CreatedAt:    rnd.Int64() - rnd.Int64(),
		Labels:       randMap(rnd),
		Annotations:  randMap(rnd),
	}
	if rnd.IntN(4) != 0 {
		c.Metadata = &runtimeapi.ContainerMetadata{Name: randString(rnd), Attempt: rnd.Uint32()}
	}
	return c
}

func randStatus(rnd *rand.Rand) *runtimeapi.ContainerStatus {
	st := &runtimeapi.ContainerStatus{
		Id:          fmt.Sprintf("%016x", rnd.Uint64()),
		State:       runtimeapi.ContainerState(rnd.IntN(4)),
		CreatedAt:   rnd.Int64(),
		StartedAt:   rnd.Int64(),
		FinishedAt:  rnd.Int64N(3),
		ExitCode:    rnd.Int32() - rnd.Int32(),
		Image:       randImage(rnd),
		ImageRef:    randString(rnd),
		ImageId:     randString(rnd),
		Reason:      randString(rnd),
		Message:     randString(rnd),
		Labels:      randMap(rnd),
		Annotations: randMap(rnd),
		LogPath:     randString(rnd),
		StopSignal:  runtimeapi.Signal(rnd.IntN(30)),
	}
	for range rnd.IntN(3) {
		st.Mounts = append(st.Mounts, &runtimeapi.Mount{ContainerPath: randString(rnd), HostPath: randString(rnd), Readonly: rnd.IntN(2) == 0,
			Propagation: runtimeapi.MountPropagation(rnd.IntN(3)), UidMappings: []*runtimeapi.IDMapping{{HostId: rnd.Uint32(), Length: 1}}})
	}
	if rnd.IntN(2) == 0 {
		st.User = &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{Uid: rnd.Int64N(70000), Gid: rnd.Int64N(70000), SupplementalGroups: []int64{1, rnd.Int64N(9)}}}
	}
	if rnd.IntN(2) == 0 {
		st.Resources = &runtimeapi.ContainerResources{Linux: &runtimeapi.LinuxContainerResources{CpuShares: rnd.Int64N(4096), MemoryLimitInBytes: rnd.Int64(),
			CpusetCpus: randString(rnd), Unified: randMap(rnd), HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: rnd.Uint64()}}}}
	}
	if rnd.IntN(4) != 0 {
		st.Metadata = &runtimeapi.ContainerMetadata{Name: randString(rnd), Attempt: rnd.Uint32()}
	}
	return st
}

func randPodStatus(rnd *rand.Rand) *runtimeapi.PodSandboxStatus {
	return &runtimeapi.PodSandboxStatus{
		Id:          randString(rnd),
		Metadata:    &runtimeapi.PodSandboxMetadata{Name: randString(rnd), Namespace: randString(rnd), Uid: randString(rnd), Attempt: rnd.Uint32()},
		State:       runtimeapi.PodSandboxState(rnd.IntN(2)),
		CreatedAt:   rnd.Int64(),
		Network:     &runtimeapi.PodSandboxNetworkStatus{Ip: randString(rnd), AdditionalIps: []*runtimeapi.PodIP{{Ip: randString(rnd)}}},
		Labels:      randMap(rnd),
		Annotations: randMap(rnd),
	}
}

// put stores msg as id's entry for key.
func put[K comparable, M proto.Message](w *wireStore[K, M], id string, key K, msg M) {
	w.forget(id)
	w.get(id, key, func() (K, M) { return key, msg })
}

func randContainerStats(rnd *rand.Rand) *runtimeapi.ContainerStats {
	cs := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{Id: fmt.Sprintf("%016x", rnd.Uint64()), Labels: randMap(rnd), Annotations: randMap(rnd)},
	}
	if rnd.IntN(4) != 0 {
		cs.Attributes.Metadata = &runtimeapi.ContainerMetadata{Name: randString(rnd), Attempt: rnd.Uint32()}
	}
	if rnd.IntN(3) != 0 {
		cs.Cpu = &runtimeapi.CpuUsage{Timestamp: rnd.Int64(), UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: rnd.Uint64()},
			UsageNanoCores: &runtimeapi.UInt64Value{Value: rnd.Uint64N(1 << 30)}}
		cs.Memory = &runtimeapi.MemoryUsage{Timestamp: rnd.Int64(), WorkingSetBytes: &runtimeapi.UInt64Value{Value: rnd.Uint64()},
			RssBytes: &runtimeapi.UInt64Value{}, PageFaults: &runtimeapi.UInt64Value{Value: rnd.Uint64N(100)}}
		cs.Swap = &runtimeapi.SwapUsage{Timestamp: rnd.Int64(), SwapUsageBytes: &runtimeapi.UInt64Value{Value: rnd.Uint64N(5)}}
		cs.Io = &runtimeapi.IoUsage{Timestamp: rnd.Int64()}
	}
	if rnd.IntN(2) == 0 {
		cs.WritableLayer = &runtimeapi.FilesystemUsage{Timestamp: rnd.Int64(), FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: randString(rnd)},
			UsedBytes: &runtimeapi.UInt64Value{Value: rnd.Uint64()}, InodesUsed: &runtimeapi.UInt64Value{Value: rnd.Uint64N(1000)}}
	}
	return cs
}

func randPodStats(rnd *rand.Rand) *runtimeapi.PodSandboxStats {
	ps := &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: fmt.Sprintf("%016x", rnd.Uint64()), Labels: randMap(rnd), Annotations: randMap(rnd),
			Metadata: &runtimeapi.PodSandboxMetadata{Name: randString(rnd), Namespace: randString(rnd), Uid: randString(rnd)}},
		Linux: &runtimeapi.LinuxPodSandboxStats{},
	}
	if rnd.IntN(3) != 0 {
		ps.Linux.Cpu = &runtimeapi.CpuUsage{Timestamp: rnd.Int64(), UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: rnd.Uint64()}}
		ps.Linux.Memory = &runtimeapi.MemoryUsage{Timestamp: rnd.Int64(), UsageBytes: &runtimeapi.UInt64Value{Value: rnd.Uint64()}}
		ps.Linux.Process = &runtimeapi.ProcessUsage{Timestamp: rnd.Int64(), ProcessCount: &runtimeapi.UInt64Value{Value: rnd.Uint64N(50)}}
		ps.Linux.Io = &runtimeapi.IoUsage{Timestamp: rnd.Int64()}
	}
	if rnd.IntN(2) == 0 {
		ps.Linux.Network = &runtimeapi.NetworkUsage{Timestamp: rnd.Int64(), DefaultInterface: &runtimeapi.NetworkInterfaceUsage{Name: "eth0",
			RxBytes: &runtimeapi.UInt64Value{Value: rnd.Uint64()}}, Interfaces: []*runtimeapi.NetworkInterfaceUsage{{Name: randString(rnd)}}}
	}
	return ps
}

// TestStatsWire: the stats calls' attributes are the stored ones, their
// responses through the codec decode to what the handlers returned, and
// removed pods and containers leave no stored attributes.
func TestStatsWire(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()
	pod := st.runPod("p")
	a := st.createCtr(pod, "a", 0)
	st.createCtr(pod, "b", 0)
	if _, err := st.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: a}); err != nil {
		t.Fatal(err)
	}
	codec := st.s.Codec()
	roundTrip := func(resp proto.Message) {
		t.Helper()
		data, err := codec.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data.Materialize(), want) {
			t.Errorf("%T: codec bytes differ from proto.Marshal", resp)
		}
	}
	ctrStats, err := st.s.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
	if err != nil || len(ctrStats.Stats) != 2 {
		t.Fatalf("ListContainerStats = %v, %v", ctrStats, err)
	}
	roundTrip(ctrStats)
	podStats, err := st.s.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
	if err != nil || len(podStats.Stats) != 1 || len(podStats.Stats[0].GetLinux().GetContainers()) != 2 {
		t.Fatalf("ListPodSandboxStats = %v, %v", podStats, err)
	}
	roundTrip(podStats)
	one, err := st.s.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pod})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(one)
	attrs := append([]*runtimeapi.ContainerStats{}, ctrStats.Stats...)
	attrs = append(attrs, podStats.Stats[0].Linux.Containers...)
	for _, cs := range attrs {
		if _, ok := st.s.wire.ctrAttrs.encoding(cs.Attributes.Id, cs.Attributes); !ok {
			t.Errorf("container %s's stats attributes are not the stored ones", cs.Attributes.Id)
		}
	}
	if _, ok := st.s.wire.podAttrs.encoding(pod, podStats.Stats[0].Attributes); !ok || one.Stats.Attributes != podStats.Stats[0].Attributes {
		t.Error("the pod's stats attributes are not the stored ones")
	}
	if _, err := st.s.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	if n, m := len(st.s.wire.ctrAttrs.m), len(st.s.wire.podAttrs.m); n != 0 || m != 0 {
		t.Errorf("%d container and %d pod attributes stored after the pod's removal", n, m)
	}
}
