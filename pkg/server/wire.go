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
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// wireStore keeps, per container or pod ID, a message the server reports
// and its protobuf encoding. kubelet lists every container every second
// or so and asks for the stats of all every few seconds, and encoding
// 500 containers' label and annotation maps (through protobuf's
// reflection) costs more than everything else those calls do; the
// messages change only with what key holds, so each is encoded once per
// key and the codec assembles responses from the stored bytes.
type wireStore[K comparable, M proto.Message] struct {
	mu sync.Mutex
	m  map[string]*wireEntry[K, M]
}

type wireEntry[K comparable, M proto.Message] struct {
	key K
	msg M      // never changed once stored
	b   []byte // msg's encoding
}

// get returns id's stored message if it was built for key; else build's
// message, stored (with its encoding) under the key build says it was
// built from, which may be newer than key.
func (w *wireStore[K, M]) get(id string, key K, build func() (K, M)) M {
	w.mu.Lock()
	e := w.m[id]
	w.mu.Unlock()
	if e != nil && e.key == key {
		return e.msg
	}
	built, msg := build()
	b, err := wireMarshal.Marshal(msg)
	if err != nil {
		return msg // not stored: the codec encodes it as any message, and fails
	}
	w.mu.Lock()
	if w.m == nil {
		w.m = map[string]*wireEntry[K, M]{}
	}
	w.m[id] = &wireEntry[K, M]{key: built, msg: msg, b: b}
	w.mu.Unlock()
	return msg
}

// encoding returns the stored encoding of msg, if msg is the stored
// message of id.
func (w *wireStore[K, M]) encoding(id string, msg M) ([]byte, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.m[id]
	if e == nil || proto.Message(e.msg) != proto.Message(msg) {
		return nil, false
	}
	return e.b, true
}

// forget drops a removed object's entry.
func (w *wireStore[K, M]) forget(id string) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

// retain drops the entries of IDs not in live, the full list: a removal
// the server did not see (a prefix, a pod's containers) leaves no entry
// behind for long.
// len is the number of stored messages.
func (w *wireStore[K, M]) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}

func (w *wireStore[K, M]) retain(live map[string]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.m) <= len(live) {
		return
	}
	for id := range w.m {
		if !live[id] {
			delete(w.m, id)
		}
	}
}

// wireStores are the stored messages of the server's responses.
type wireStores struct {
	// list: ListContainers' entries, by container state (nothing else
	// an entry shows changes).
	list wireStore[meta.ContainerState, *runtimeapi.Container]
	// statuses: ContainerStatus's status and PodSandboxStatus's
	// containers_statuses, by the record's shown figures, the config
	// (replaced, never changed in place, by a resource update) and user.
	statuses wireStore[statusKey, *runtimeapi.ContainerStatus]
	// ctrAttrs and podAttrs: the attributes of container and pod stats,
	// by config.
	ctrAttrs wireStore[*runtimeapi.ContainerConfig, *runtimeapi.ContainerAttributes]
	podAttrs wireStore[*runtimeapi.PodSandboxConfig, *runtimeapi.PodSandboxAttributes]
}

// container returns ctr's entry in ListContainers.
func (w *wireStores) container(ctr *container.Container) *runtimeapi.Container {
	return w.list.get(ctr.ID(), ctr.State(), func() (meta.ContainerState, *runtimeapi.Container) {
		rec := ctr.Record()
		cfg := ctr.Config()
		return rec.State, &runtimeapi.Container{
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
	})
}

type statusKey struct {
	state                meta.ContainerState
	exitCode             int32
	started, finished    int64
	reason, message, log string
	cfg                  *runtimeapi.ContainerConfig
	user                 *specs.User
}

// status returns ctr's ContainerStatus.
func (w *wireStores) status(ctr *container.Container) *runtimeapi.ContainerStatus {
	rec := ctr.Record()
	key := statusKey{state: rec.State, exitCode: rec.ExitCode, started: unixNano(rec.StartedAt), finished: unixNano(rec.FinishedAt),
		reason: rec.Reason, message: rec.Message, log: rec.LogPath, cfg: ctr.Config(), user: ctr.User()}
	return w.statuses.get(rec.ID, key, func() (statusKey, *runtimeapi.ContainerStatus) {
		return key, containerStatus(ctr, rec, key.cfg, key.user)
	})
}

// containerAttributes returns the attributes of ctr's stats.
func (w *wireStores) containerAttributes(ctr *container.Container) *runtimeapi.ContainerAttributes {
	cfg := ctr.Config()
	return w.ctrAttrs.get(ctr.ID(), cfg, func() (*runtimeapi.ContainerConfig, *runtimeapi.ContainerAttributes) {
		return cfg, &runtimeapi.ContainerAttributes{Id: ctr.ID(), Metadata: cfg.GetMetadata(), Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations()}
	})
}

// podAttributes returns the attributes of pod's stats.
func (w *wireStores) podAttributes(pod *podsandbox.Pod) *runtimeapi.PodSandboxAttributes {
	cfg := pod.Config()
	return w.podAttrs.get(pod.ID(), cfg, func() (*runtimeapi.PodSandboxConfig, *runtimeapi.PodSandboxAttributes) {
		return cfg, &runtimeapi.PodSandboxAttributes{Id: pod.ID(), Metadata: cfg.GetMetadata(), Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations()}
	})
}

// forgetContainer drops a removed container's entries.
func (w *wireStores) forgetContainer(id string) {
	w.list.forget(id)
	w.statuses.forget(id)
	w.ctrAttrs.forget(id)
}

// retainContainers drops the entries of containers not in live, every
// container there is.
func (w *wireStores) retainContainers(live []*container.Container) {
	// Nothing to drop (the usual case) without a set of every ID.
	n := len(live)
	if w.list.len() <= n && w.statuses.len() <= n && w.ctrAttrs.len() <= n {
		return
	}
	ids := make(map[string]bool, len(live))
	for _, ctr := range live {
		ids[ctr.ID()] = true
	}
	w.list.retain(ids)
	w.statuses.retain(ids)
	w.ctrAttrs.retain(ids)
}

// retainPods drops the entries of pods not in live, every pod there is.
func (w *wireStores) retainPods(live []*podsandbox.Pod) {
	if w.podAttrs.len() <= len(live) {
		return
	}
	ids := make(map[string]bool, len(live))
	for _, pod := range live {
		ids[pod.ID()] = true
	}
	w.podAttrs.retain(ids)
}

// wireMarshal encodes what the codec assembles: deterministically (map
// entries in key order), so that a response's bytes are the same however
// its entries were found, and equal to what proto.Marshal with
// Deterministic makes of the whole response (wire_test.go compares them).
var wireMarshal = proto.MarshalOptions{Deterministic: true}

// Codec returns the gRPC codec the CRI server is served with: protobuf,
// with the container entries of ListContainers, ContainerStatus and
// PodSandboxStatus responses and the attributes of container and pod
// stats taken from their stored encodings. A message field is encoded as
// its tag and its length-prefixed encoding, so a response is assembled
// from its fields in number order, each stored encoding where there is
// one: the bytes proto.Marshal writes. Every other message, and a
// message with unknown fields (which assembling would misplace), is
// encoded by the protobuf codec.
func (s *Server) Codec() encoding.CodecV2 {
	return &wireCodec{CodecV2: encoding.GetCodecV2(protocodec.Name), w: &s.wire}
}

type wireCodec struct {
	encoding.CodecV2
	w *wireStores
}

// A wireMsg is a message being assembled: its fields in number order.
type wireMsg []wirePart

type wirePart struct {
	// msg, if set, is a message holding some of the fields (the others
	// unset), encoded as proto.Marshal would; with field set, it is the
	// value of the length-delimited field `field` instead.
	msg proto.Message
	// Else the part is the length-delimited field `field`, whose value
	// is stored (an encoding) or sub (assembled).
	field  protowire.Number
	stored []byte
	sub    wireMsg
	// size is msg's or sub's encoded size, set by wireMsg.size.
	size int
}

func (c *wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := c.assemble(v)
	if !ok {
		return c.CodecV2.Marshal(v)
	}
	size := m.size()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf, err := m.append(make([]byte, 0, size))
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	// A list of 500 entries is a few hundred KiB, every few seconds:
	// from gRPC's pool, which takes it back once it is written, as the
	// stock codec does.
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	out, err := m.append((*buf)[:0])
	if err != nil {
		pool.Put(buf)
		return nil, err
	}
	*buf = out
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

func unknown(m proto.Message) bool { return len(m.ProtoReflect().GetUnknown()) > 0 }

// assemble returns the parts of the responses the codec assembles.
func (c *wireCodec) assemble(v any) (wireMsg, bool) {
	var m wireMsg
	switch r := v.(type) {
	case *runtimeapi.ListContainersResponse:
		if unknown(r) {
			return nil, false
		}
		for _, e := range r.Containers {
			b, ok := c.w.list.encoding(e.GetId(), e)
			m = append(m, storedOr(1, b, ok, e))
		}
	case *runtimeapi.ContainerStatusResponse:
		if unknown(r) {
			return nil, false
		}
		if r.Status != nil {
			b, ok := c.w.statuses.encoding(r.Status.GetId(), r.Status)
			m = append(m, storedOr(1, b, ok, r.Status))
		}
		m = append(m, wirePart{msg: &runtimeapi.ContainerStatusResponse{Info: r.Info}})
	case *runtimeapi.PodSandboxStatusResponse:
		if unknown(r) {
			return nil, false
		}
		m = append(m, wirePart{msg: &runtimeapi.PodSandboxStatusResponse{Status: r.Status, Info: r.Info}})
		for _, e := range r.ContainersStatuses {
			b, ok := c.w.statuses.encoding(e.GetId(), e)
			m = append(m, storedOr(3, b, ok, e))
		}
		m = append(m, wirePart{msg: &runtimeapi.PodSandboxStatusResponse{Timestamp: r.Timestamp}})
	case *runtimeapi.ContainerStatsResponse:
		if unknown(r) {
			return nil, false
		}
		if r.Stats != nil {
			_, sub := c.containerStats(nil, r.Stats)
			m = append(m, wirePart{field: 1, sub: sub})
		}
	case *runtimeapi.ListContainerStatsResponse:
		if unknown(r) {
			return nil, false
		}
		// The entries' parts share one array: two allocations per
		// response instead of two per container.
		parts := make(wireMsg, 0, containerStatsParts(r.Stats))
		m = make(wireMsg, 0, len(r.Stats))
		for _, e := range r.Stats {
			var sub wireMsg
			parts, sub = c.containerStats(parts, e)
			m = append(m, wirePart{field: 1, sub: sub})
		}
	case *runtimeapi.PodSandboxStatsResponse:
		if unknown(r) {
			return nil, false
		}
		if r.Stats != nil {
			m = append(m, wirePart{field: 1, sub: c.podStats(r.Stats)})
		}
	case *runtimeapi.ListPodSandboxStatsResponse:
		if unknown(r) {
			return nil, false
		}
		for _, e := range r.Stats {
			m = append(m, wirePart{field: 1, sub: c.podStats(e)})
		}
	default:
		return nil, false
	}
	return m, true
}

// storedOr is the length-delimited field holding msg: its stored
// encoding b when ok, else msg encoded.
func storedOr(field protowire.Number, b []byte, ok bool, msg proto.Message) wirePart {
	if ok {
		return wirePart{field: field, stored: b}
	}
	return wirePart{field: field, sub: wireMsg{{msg: msg}}}
}

// containerStatsParts is how many parts containerStats appends for the
// entries.
func containerStatsParts(entries []*runtimeapi.ContainerStats) int {
	n := 0
	for _, s := range entries {
		n++
		for _, set := range [...]bool{s.GetCpu() != nil, s.GetMemory() != nil, s.GetWritableLayer() != nil, s.GetSwap() != nil, s.GetIo() != nil} {
			if set {
				n++
			}
		}
	}
	return n
}

// containerStats appends the parts of a ContainerStats to parts and
// returns them, and the entry (a slice of them, full: appending to it
// copies): ContainerStats.attributes (1) stored, then the figures (2–6),
// each a field holding its message.
func (c *wireCodec) containerStats(parts wireMsg, s *runtimeapi.ContainerStats) (wireMsg, wireMsg) {
	start := len(parts)
	if s == nil {
		return parts, wireMsg{} // an empty entry, as proto.Marshal writes a nil one
	}
	a := s.Attributes
	b, ok := c.w.ctrAttrs.encoding(a.GetId(), a)
	if !ok || unknown(s) {
		parts = append(parts, wirePart{msg: s})
		return parts, parts[start:len(parts):len(parts)]
	}
	parts = append(parts, wirePart{field: 1, stored: b})
	for _, f := range [...]struct {
		n   protowire.Number
		msg proto.Message
		set bool
	}{{2, s.Cpu, s.Cpu != nil}, {3, s.Memory, s.Memory != nil}, {4, s.WritableLayer, s.WritableLayer != nil}, {5, s.Swap, s.Swap != nil}, {6, s.Io, s.Io != nil}} {
		if f.set {
			parts = append(parts, wirePart{field: f.n, msg: f.msg})
		}
	}
	return parts, parts[start:len(parts):len(parts)]
}

// podStats: PodSandboxStats.attributes (1) stored, linux (2) assembled,
// windows (3).
func (c *wireCodec) podStats(s *runtimeapi.PodSandboxStats) wireMsg {
	if s == nil {
		return wireMsg{}
	}
	if unknown(s) {
		return wireMsg{{msg: s}}
	}
	var m wireMsg
	a := s.Attributes
	if b, ok := c.w.podAttrs.encoding(a.GetId(), a); ok {
		m = append(m, wirePart{field: 1, stored: b})
	} else {
		m = append(m, wirePart{msg: &runtimeapi.PodSandboxStats{Attributes: a}})
	}
	if l := s.Linux; l != nil {
		if unknown(l) {
			m = append(m, wirePart{msg: &runtimeapi.PodSandboxStats{Linux: l}})
		} else {
			// LinuxPodSandboxStats: cpu, memory, network, process (1–4),
			// containers (5), io (6).
			lm := wireMsg{{msg: &runtimeapi.LinuxPodSandboxStats{Cpu: l.Cpu, Memory: l.Memory, Network: l.Network, Process: l.Process}}}
			parts := make(wireMsg, 0, containerStatsParts(l.Containers))
			for _, e := range l.Containers {
				var sub wireMsg
				parts, sub = c.containerStats(parts, e)
				lm = append(lm, wirePart{field: 5, sub: sub})
			}
			lm = append(lm, wirePart{msg: &runtimeapi.LinuxPodSandboxStats{Io: l.Io}})
			m = append(m, wirePart{field: 2, sub: lm})
		}
	}
	return append(m, wirePart{msg: &runtimeapi.PodSandboxStats{Windows: s.Windows}})
}

// size returns m's encoded size, setting each part's.
func (m wireMsg) size() int {
	n := 0
	for i := range m {
		p := &m[i]
		switch {
		case p.msg != nil:
			p.size = wireMarshal.Size(p.msg)
			n += p.size
			if p.field != 0 {
				n += protowire.SizeTag(p.field) + protowire.SizeVarint(uint64(p.size))
			}
		case p.stored != nil:
			n += protowire.SizeTag(p.field) + protowire.SizeBytes(len(p.stored))
		default:
			p.size = p.sub.size()
			n += protowire.SizeTag(p.field) + protowire.SizeBytes(p.size)
		}
	}
	return n
}

// append appends m's encoding to buf; m.size has set the sizes.
func (m wireMsg) append(buf []byte) ([]byte, error) {
	var err error
	for i := range m {
		p := &m[i]
		switch {
		case p.msg != nil:
			if p.field != 0 {
				buf = protowire.AppendTag(buf, p.field, protowire.BytesType)
				buf = protowire.AppendVarint(buf, uint64(p.size))
			}
			if buf, err = wireMarshal.MarshalAppend(buf, p.msg); err != nil {
				return nil, err
			}
		case p.stored != nil:
			buf = protowire.AppendTag(buf, p.field, protowire.BytesType)
			buf = protowire.AppendBytes(buf, p.stored)
		default:
			buf = protowire.AppendTag(buf, p.field, protowire.BytesType)
			buf = protowire.AppendVarint(buf, uint64(p.size))
			if buf, err = p.sub.append(buf); err != nil {
				return nil, err
			}
		}
	}
	return buf, nil
}
