package server

import (
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// listWire keeps, per container, the message ListContainers reports and
// its protobuf encoding. kubelet lists every container every second or
// so, and encoding 500 of them (their label and annotation maps through
// protobuf's reflection) costs more than everything else the call does;
// a container's entry changes only with its state, so it is encoded once
// per state and a listing is assembled from the stored bytes.
type listWire struct {
	mu   sync.Mutex
	ctrs map[string]*wireEntry // by container ID
}

type wireEntry struct {
	state meta.ContainerState
	msg   *runtimeapi.Container // never changed once stored
	b     []byte                // msg's encoding
}

// container returns ctr's entry in the list, from the store when its
// state has not changed.
func (w *listWire) container(ctr *container.Container) *runtimeapi.Container {
	state := ctr.State()
	w.mu.Lock()
	e := w.ctrs[ctr.ID()]
	w.mu.Unlock()
	if e != nil && e.state == state {
		return e.msg
	}
	rec := ctr.Record()
	cfg := ctr.Config()
	msg := &runtimeapi.Container{
		Id:           rec.ID,
		PodSandboxId: rec.SandboxID,
		Metadata:     cfg.GetMetadata(),
		Image:        imageSpec(rec, cfg),
		ImageRef:     rec.ImageRef,
		ImageId:      rec.ImageID,
		State:        containerState(rec.State),
		CreatedAt:    rec.CreatedAt.UnixNano(),
		Labels:       cfg.GetLabels(),
		Annotations:  cfg.GetAnnotations(),
	}
	w.store(rec.ID, rec.State, msg)
	return msg
}

// store keeps msg and its encoding as id's entry for state; msg is not
// changed after. A message that cannot be encoded is not stored (the
// codec then encodes it as any message, and fails the call).
func (w *listWire) store(id string, state meta.ContainerState, msg *runtimeapi.Container) {
	b, err := wireMarshal.Marshal(msg)
	if err != nil {
		return
	}
	w.mu.Lock()
	if w.ctrs == nil {
		w.ctrs = map[string]*wireEntry{}
	}
	w.ctrs[id] = &wireEntry{state: state, msg: msg, b: b}
	w.mu.Unlock()
}

// encoding returns the stored encoding of msg, if msg is the stored
// message of its container.
func (w *listWire) encoding(msg *runtimeapi.Container) ([]byte, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.ctrs[msg.GetId()]
	if e == nil || e.msg != msg {
		return nil, false
	}
	return e.b, true
}

// forget drops a removed container's entry.
func (w *listWire) forget(id string) {
	w.mu.Lock()
	delete(w.ctrs, id)
	w.mu.Unlock()
}

// retain drops the entries of containers not in live, the full list of
// containers: a removal the server did not see (a prefix, a pod's
// containers) leaves no entry behind for long.
func (w *listWire) retain(live []*container.Container) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ctrs) <= len(live) {
		return
	}
	keep := make(map[string]bool, len(live))
	for _, ctr := range live {
		keep[ctr.ID()] = true
	}
	for id := range w.ctrs {
		if !keep[id] {
			delete(w.ctrs, id)
		}
	}
}

// statusWire keeps, per container, the ContainerStatus last reported
// and its encoding, for ContainerStatus and the containers_statuses of
// PodSandboxStatus; an entry is built again when any of the record's
// figures a status shows changes, or the config (replaced, never changed
// in place, by a resource update).
type statusWire struct {
	mu   sync.Mutex
	ctrs map[string]*statusEntry
}

type statusKey struct {
	state                meta.ContainerState
	exitCode             int32
	started, finished    int64
	reason, message, log string
	cfg                  *runtimeapi.ContainerConfig
	user                 *specs.User
}

type statusEntry struct {
	key statusKey
	msg *runtimeapi.ContainerStatus
	b   []byte
}

func (w *statusWire) status(ctr *container.Container) *runtimeapi.ContainerStatus {
	rec := ctr.Record()
	key := statusKey{state: rec.State, exitCode: rec.ExitCode, started: unixNano(rec.StartedAt), finished: unixNano(rec.FinishedAt),
		reason: rec.Reason, message: rec.Message, log: rec.LogPath, cfg: ctr.Config(), user: ctr.User()}
	w.mu.Lock()
	e := w.ctrs[rec.ID]
	w.mu.Unlock()
	if e != nil && e.key == key {
		return e.msg
	}
	msg := containerStatus(ctr, rec, key.cfg, key.user)
	w.store(key, msg)
	return msg
}

// store keeps msg and its encoding as the entry of msg's container for
// key; msg is not changed after.
func (w *statusWire) store(key statusKey, msg *runtimeapi.ContainerStatus) {
	b, err := wireMarshal.Marshal(msg)
	if err != nil {
		return
	}
	w.mu.Lock()
	if w.ctrs == nil {
		w.ctrs = map[string]*statusEntry{}
	}
	w.ctrs[msg.GetId()] = &statusEntry{key: key, msg: msg, b: b}
	w.mu.Unlock()
}

func (w *statusWire) encoding(msg *runtimeapi.ContainerStatus) ([]byte, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.ctrs[msg.GetId()]
	if e == nil || e.msg != msg {
		return nil, false
	}
	return e.b, true
}

func (w *statusWire) forget(id string) {
	w.mu.Lock()
	delete(w.ctrs, id)
	w.mu.Unlock()
}

func (w *statusWire) retain(live []*container.Container) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ctrs) <= len(live) {
		return
	}
	keep := make(map[string]bool, len(live))
	for _, ctr := range live {
		keep[ctr.ID()] = true
	}
	for id := range w.ctrs {
		if !keep[id] {
			delete(w.ctrs, id)
		}
	}
}

// wireMarshal encodes what the codec assembles: deterministically (map
// entries in key order), so that a response's bytes are the same however
// its entries were found, and equal to what proto.Marshal with
// Deterministic makes of the whole response (wire_test.go compares them).
var wireMarshal = proto.MarshalOptions{Deterministic: true}

// Codec returns the gRPC codec the CRI server is served with: protobuf,
// with the container entries of ListContainers, ContainerStatus and
// PodSandboxStatus responses taken from their stored encodings. A message
// field is encoded as its tag and its length-prefixed encoding, so a
// response is the encoding of its fields numbered below the entries', the
// entries, then the encoding of the fields numbered above: the order
// proto.Marshal writes them in. Every other message, and a response with
// unknown fields (which the codec would drop), is encoded by the protobuf
// codec.
func (s *Server) Codec() encoding.CodecV2 {
	return &wireCodec{CodecV2: encoding.GetCodecV2(protocodec.Name), list: &s.list, statuses: &s.statuses}
}

type wireCodec struct {
	encoding.CodecV2
	list     *listWire
	statuses *statusWire
}

// The response fields holding container entries.
const (
	listContainersField        protowire.Number = 1 // ListContainersResponse.containers
	containerStatusField       protowire.Number = 1 // ContainerStatusResponse.status
	podContainersStatusesField protowire.Number = 3 // PodSandboxStatusResponse.containers_statuses
)

func (c *wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	var (
		head, tail proto.Message // the fields numbered below and above the entries'
		field      protowire.Number
		entries    []proto.Message
	)
	switch r := v.(type) {
	case *runtimeapi.ListContainersResponse:
		if len(r.ProtoReflect().GetUnknown()) > 0 {
			return c.CodecV2.Marshal(v)
		}
		field = listContainersField
		entries = make([]proto.Message, len(r.Containers))
		for i, m := range r.Containers {
			entries[i] = m
		}
	case *runtimeapi.ContainerStatusResponse:
		if len(r.ProtoReflect().GetUnknown()) > 0 {
			return c.CodecV2.Marshal(v)
		}
		field = containerStatusField
		if r.Status != nil {
			entries = []proto.Message{r.Status}
		}
		tail = &runtimeapi.ContainerStatusResponse{Info: r.Info}
	case *runtimeapi.PodSandboxStatusResponse:
		if len(r.ProtoReflect().GetUnknown()) > 0 {
			return c.CodecV2.Marshal(v)
		}
		head = &runtimeapi.PodSandboxStatusResponse{Status: r.Status, Info: r.Info}
		field = podContainersStatusesField
		entries = make([]proto.Message, len(r.ContainersStatuses))
		for i, m := range r.ContainersStatuses {
			entries[i] = m
		}
		tail = &runtimeapi.PodSandboxStatusResponse{Timestamp: r.Timestamp}
	default:
		return c.CodecV2.Marshal(v)
	}
	// The entries' encodings first, to size the buffer once.
	encs := make([][]byte, len(entries))
	size := 0
	for i, m := range entries {
		b, ok := c.stored(m)
		if !ok {
			var err error
			if b, err = wireMarshal.Marshal(m); err != nil {
				return nil, err
			}
		}
		encs[i] = b
		size += protowire.SizeTag(field) + protowire.SizeBytes(len(b))
	}
	if head != nil {
		size += wireMarshal.Size(head)
	}
	if tail != nil {
		size += wireMarshal.Size(tail)
	}
	buf := make([]byte, 0, size)
	var err error
	if head != nil {
		if buf, err = wireMarshal.MarshalAppend(buf, head); err != nil {
			return nil, err
		}
	}
	for _, b := range encs {
		buf = protowire.AppendTag(buf, field, protowire.BytesType)
		buf = protowire.AppendBytes(buf, b)
	}
	if tail != nil {
		if buf, err = wireMarshal.MarshalAppend(buf, tail); err != nil {
			return nil, err
		}
	}
	return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
}

func (c *wireCodec) stored(m proto.Message) ([]byte, bool) {
	switch m := m.(type) {
	case *runtimeapi.Container:
		return c.list.encoding(m)
	case *runtimeapi.ContainerStatus:
		return c.statuses.encoding(m)
	}
	return nil, false
}
