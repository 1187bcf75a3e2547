package server

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/checkpoint"
	"github.com/cri-runtimed/cri-runtimed/pkg/config"
	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/events"
	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox"
	"github.com/cri-runtimed/cri-runtimed/pkg/stats"
	"github.com/cri-runtimed/cri-runtimed/pkg/streaming"
	"github.com/cri-runtimed/cri-runtimed/pkg/telemetry"
)

// Server implements CRI v1. RuntimeService RPCs this daemon does not have
// yet answer Unimplemented through the embedded type.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	cfg    *config.Config
	images *image.Service
	pods   *podsandbox.Controller
	ctrs   *container.Controller
	stream *streaming.Server // set by SetStreaming
	net    Network
	stats  *stats.Collector
	// handlers are the runtime handlers Status reports and what each
	// OCI runtime said it supports; SetHandlers replaces them (SIGHUP).
	handlers  atomic.Pointer[handlerSet]
	events    events.Queue[*runtimeapi.ContainerEventResponse]
	telemetry *telemetry.Recorder
	// criu is whether checkpoints work here, probed once at start.
	criu checkpoint.Availability
	// wire holds the encodings of the container entries of
	// ListContainers and of the status calls, and of the stats'
	// attributes (see Codec).
	wire wireStores
}

// Option sets an optional Server setting.
type Option func(*Server)

// WithTelemetry records pull outcomes in rec.
func WithTelemetry(rec *telemetry.Recorder) Option { return func(s *Server) { s.telemetry = rec } }

// WithCheckpoint records whether CRIU works on this node (checkpoint.Probe
// at start). Without it the checkpoint RPCs are refused.
func WithCheckpoint(a checkpoint.Availability) Option { return func(s *Server) { s.criu = a } }

// New returns a CRI server over the given services.
func New(cfg *config.Config, images *image.Service, pods *podsandbox.Controller, ctrs *container.Controller, network Network, collector *stats.Collector, opts ...Option) *Server {
	s := &Server{cfg: cfg, images: images, pods: pods, ctrs: ctrs, net: network, stats: collector}
	for _, o := range opts {
		o(s)
	}
	pods.SetLifecycleHook(s.podEvent)
	ctrs.SetEventHook(s.containerEvent)
	// The containers found at start get their writable layers measured
	// in the background, as new ones do at creation.
	for _, ctr := range ctrs.List() {
		s.layerUsage(context.Background(), ctr)
	}
	return s
}

// Network is what the CRI server asks of the pod network: *cni.Manager,
// or a fake in tests.
type Network interface {
	// Status is nil when pods can be networked (NetworkReady).
	Status() error
	// UpdatePodCIDR passes on kubelet's UpdateRuntimeConfig.
	UpdatePodCIDR(cidr string) error
}

// HandlerFeatures are optional abilities of one OCI runtime.
type HandlerFeatures struct {
	// RecursiveReadOnly: the runtime knows the "rro" mount option and
	// the kernel has mount_setattr.
	RecursiveReadOnly bool `json:"recursiveReadOnlyMounts"`
	// UserNamespaces: the snapshots' filesystem can be idmapped, as the
	// root filesystems of pods with a user namespace are.
	UserNamespaces bool `json:"userNamespaces"`
}

// SetHandlers records the runtime handlers, the default one and what
// each supports, at start and on reload.
func (s *Server) SetHandlers(defaultHandler string, f map[string]HandlerFeatures) {
	s.handlers.Store(&handlerSet{def: defaultHandler, features: f})
}

// handlerSet is the runtime handlers by name and the default one.
type handlerSet struct {
	def      string
	features map[string]HandlerFeatures
}

// handlerSet returns what SetHandlers set, or the config's handlers
// with no optional feature.
func (s *Server) handlerSet() *handlerSet {
	if hs := s.handlers.Load(); hs != nil {
		return hs
	}
	hs := &handlerSet{def: s.cfg.Runtime.DefaultHandler, features: map[string]HandlerFeatures{}}
	for n := range s.cfg.Runtime.Handlers {
		hs.features[n] = HandlerFeatures{}
	}
	return hs
}

// Register adds both CRI services to g.
func (s *Server) Register(g *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}

// Interceptors return the unary and stream interceptors every RPC goes
// through: errors mapped to gRPC codes, panics turned into Internal errors
// instead of killing the daemon (containers would survive, but every
// in-flight RPC would fail), and per-request logs at V(5).
func Interceptors() (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		defer func() {
			if r := recover(); r != nil {
				klog.ErrorS(nil, "Panic in CRI handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s: %v", info.FullMethod, r)
			}
			err = toStatus(err)
			if err != nil {
				klog.V(3).InfoS("CRI request failed", "method", info.FullMethod, "err", err, "duration", time.Since(start))
			} else {
				klog.V(5).InfoS("CRI request", "method", info.FullMethod, "duration", time.Since(start))
			}
		}()
		return handler(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				klog.ErrorS(nil, "Panic in CRI stream handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s: %v", info.FullMethod, r)
			}
			err = toStatus(err)
		}()
		return handler(srv, ss)
	}
	return unary, stream
}
