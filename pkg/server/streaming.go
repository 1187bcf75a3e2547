package server

import (
	"context"
	"fmt"
	"io"
	goruntime "runtime"
	"runtime/metrics"
	"strconv"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/streaming"
)

// SetStreaming gives the server the streaming server whose URLs Exec,
// Attach and PortForward return. Call it before serving.
func (s *Server) SetStreaming(st *streaming.Server) { s.stream = st }

// StreamRuntime is what the streaming server calls for each stream.
func (s *Server) StreamRuntime() streaming.Runtime {
	return &streamRuntime{pods: s.pods, ctrs: s.ctrs}
}

func (s *Server) streamingServer() (*streaming.Server, error) {
	if s.stream == nil {
		return nil, status.Error(codes.Unavailable, "the streaming server is not running")
	}
	return s.stream, nil
}

// Exec returns a URL to exec into a running container. The checks that
// can be done now are: a container that does not run is refused here,
// with FailedPrecondition, rather than after the client connected.
func (s *Server) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	st, err := s.streamingServer()
	if err != nil {
		return nil, err
	}
	if req.GetContainerId() == "" {
		return nil, fmt.Errorf("%w: container_id is empty", errInvalid)
	}
	ctr, err := s.ctrs.Get(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := s.ctrs.CheckExec(ctr.ID(), req.GetCmd()); err != nil {
		return nil, err
	}
	// The URL names the full ID: the prefix may become ambiguous later.
	r := proto.Clone(req).(*runtimeapi.ExecRequest)
	r.ContainerId = ctr.ID()
	return st.GetExec(r)
}

// Attach returns a URL to attach to a container's stdio.
func (s *Server) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	st, err := s.streamingServer()
	if err != nil {
		return nil, err
	}
	if req.GetContainerId() == "" {
		return nil, fmt.Errorf("%w: container_id is empty", errInvalid)
	}
	ctr, err := s.ctrs.Get(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := s.ctrs.CheckAttach(ctr.ID(), req.GetStdin()); err != nil {
		return nil, err
	}
	r := proto.Clone(req).(*runtimeapi.AttachRequest)
	r.ContainerId = ctr.ID()
	return st.GetAttach(r)
}

// PortForward returns a URL to forward ports into a ready pod.
func (s *Server) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	st, err := s.streamingServer()
	if err != nil {
		return nil, err
	}
	if req.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("%w: pod_sandbox_id is empty", errInvalid)
	}
	for _, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, fmt.Errorf("%w: port %d is out of range", errInvalid, p)
		}
	}
	pod, err := s.pods.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if !pod.Ready() {
		return nil, fmt.Errorf("%w: port forward to pod sandbox %s", podsandbox.ErrNotReady, pod.ID())
	}
	r := proto.Clone(req).(*runtimeapi.PortForwardRequest)
	r.PodSandboxId = pod.ID()
	return st.GetPortForward(r)
}

// streamRuntime serves the streams the library accepted.
type streamRuntime struct {
	pods *podsandbox.Controller
	ctrs *container.Controller
}

// Exec runs the command through the pod's shim. A non-zero exit is
// returned as a utilexec.ExitError value: the library recognises it by
// type assertion (not errors.As) and sends the code to the client.
func (r *streamRuntime) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	stdio, stop := stdioFor(in, out, errw, resize)
	defer stop()
	code, err := r.ctrs.Exec(ctx, containerID, cmd, tty, stdio)
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: int(code)}
	}
	return nil
}

// Attach connects to the container's stdio; it returns when the container
// exits or the client detaches.
func (r *streamRuntime) Attach(ctx context.Context, containerID string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	stdio, stop := stdioFor(in, out, errw, resize)
	defer stop()
	return r.ctrs.Attach(ctx, containerID, stdio)
}

// PortForward connects the stream to port on the pod's loopback.
func (r *streamRuntime) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error {
	pod, err := r.pods.Get(podSandboxID)
	if err != nil {
		return err
	}
	if !pod.Ready() {
		return fmt.Errorf("%w: %s", podsandbox.ErrNotReady, pod.ID())
	}
	// No network namespace: a host-network pod, whose ports are the
	// host's, as with kubelet's other runtimes.
	return streaming.ForwardPort(ctx, pod.Record().NetNSPath, port, stream)
}

// stdioFor adapts the library's streams. The library's resize channel is
// unbuffered and its sender blocks until the request ends, so it is
// drained into the shim's channel by a goroutine that stop ends.
func stdioFor(in io.Reader, out, errw io.WriteCloser, resize <-chan remotecommand.TerminalSize) (shim.Stdio, func()) {
	var stdio shim.Stdio
	if in != nil {
		stdio.Stdin = in
	}
	if out != nil {
		stdio.Stdout = out
	}
	if errw != nil {
		stdio.Stderr = errw
	}
	if resize == nil {
		return stdio, func() {}
	}
	ch := make(chan shim.WinSize)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ch)
		for {
			select {
			case <-done:
				return
			case sz, ok := <-resize:
				if !ok {
					return
				}
				select {
				case ch <- shim.WinSize{Width: sz.Width, Height: sz.Height}:
				case <-done:
					return
				}
			}
		}
	}()
	stdio.Resize = ch
	return stdio, func() { close(done); wg.Wait() }
}

// debugInfo adds the daemon's goroutine count and live heap to verbose
// Status info, so that tests can check streams and churn leave nothing
// behind without pprof. The live heap is as of the last GC (no collection
// is forced here): unlike RSS it does not hold the garbage and free pages
// the Go runtime keeps between collections.
func debugInfo(info map[string]string) {
	info["goroutines"] = strconv.Itoa(goruntime.NumGoroutine())
	m := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(m)
	if m[0].Value.Kind() == metrics.KindUint64 {
		info["heapLiveBytes"] = strconv.FormatUint(m[0].Value.Uint64(), 10)
	}
}
