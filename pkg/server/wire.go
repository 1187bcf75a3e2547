package server

import (
	"fmt"
	"sync"

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
	b, err := proto.Marshal(msg)
	if err != nil {
		return msg // encoded by the codec as any message
	}
	w.mu.Lock()
	if w.ctrs == nil {
		w.ctrs = map[string]*wireEntry{}
	}
	w.ctrs[rec.ID] = &wireEntry{state: rec.State, msg: msg, b: b}
	w.mu.Unlock()
	return msg
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

// Codec returns the gRPC codec the CRI server is served with: protobuf,
// with ListContainers responses assembled from their containers' stored
// encodings (a repeated message field is the concatenation of its
// entries, each tagged and length-prefixed).
func (s *Server) Codec() encoding.CodecV2 {
	return &wireCodec{CodecV2: encoding.GetCodecV2(protocodec.Name), list: &s.list}
}

type wireCodec struct {
	encoding.CodecV2
	list *listWire
}

// listContainersField is ListContainersResponse.containers.
const listContainersField protowire.Number = 1

func (c *wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	resp, ok := v.(*runtimeapi.ListContainersResponse)
	if !ok || len(resp.ProtoReflect().GetUnknown()) > 0 {
		return c.CodecV2.Marshal(v)
	}
	var buf []byte
	for _, msg := range resp.Containers {
		b, ok := c.list.encoding(msg)
		if !ok {
			var err error
			if b, err = proto.Marshal(msg); err != nil {
				return nil, fmt.Errorf("encode container %s: %w", msg.GetId(), err)
			}
		}
		buf = protowire.AppendTag(buf, listContainersField, protowire.BytesType)
		buf = protowire.AppendBytes(buf, b)
	}
	return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
}
