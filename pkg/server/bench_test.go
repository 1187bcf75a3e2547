package server

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"runtime/debug"

	"github.com/cri-runtimed/cri-runtimed/pkg/exepages"
	"github.com/cri-runtimed/cri-runtimed/pkg/telemetry"
	"runtime/trace"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The per-call cost of kubelet's frequent calls on a full node, handler
// and gRPC round trip over a unix socket with the daemon's codec and
// interceptors, for profiles (go test -bench . -cpuprofile). Fakes below
// the controllers (see newStack): no cgroup is read. Latency figures
// against containerd are cri-bench's (test/bench/scale.sh).

// benchNode is a stack with pods×ctrs created containers and images
// more images, and a CRI client of it.
type benchNode struct {
	*stack
	rt   runtimeapi.RuntimeServiceClient
	img  runtimeapi.ImageServiceClient
	pods []string
	tags []string
}

func newBenchNode(b *testing.B, pods, ctrs, images int, opts ...grpc.ServerOption) *benchNode {
	st := newStack(b)
	n := &benchNode{stack: st}
	for i := range images {
		tag := fmt.Sprintf("docker.io/library/scale:%03d", i)
		st.images.Add(b, tag, ocispec.ImageConfig{Cmd: []string{"sleep", "1000"}, User: "1000"}, nil)
		n.tags = append(n.tags, tag)
	}
	// kubelet lists the images every few seconds.
	if _, err := st.s.ListImages(context.Background(), &runtimeapi.ListImagesRequest{}); err != nil {
		b.Fatal(err)
	}
	for p := range pods {
		pod := st.runPod(fmt.Sprintf("p%d", p))
		n.pods = append(n.pods, pod)
		for c := range ctrs {
			st.createCtr(pod, fmt.Sprintf("c%d", c), 0)
		}
	}
	sock := filepath.Join(b.TempDir(), "cri.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	unary, stream := Interceptors()
	g := grpc.NewServer(append([]grpc.ServerOption{grpc.ForceServerCodecV2(st.s.Codec()), grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)}, opts...)...)
	st.s.Register(g)
	go func() { _ = g.Serve(lis) }()
	b.Cleanup(g.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	n.rt, n.img = runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
	return n
}

// BenchmarkFullNode: 25 pods × 20 created containers, 500 images.
func BenchmarkFullNode(b *testing.B) {
	n := newBenchNode(b, 25, 20, 500)
	ctx := context.Background()
	img, err := n.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: n.tags[7]}})
	if err != nil || img.GetImage() == nil {
		b.Fatalf("ImageStatus: %v %v", img, err)
	}
	id := img.GetImage().GetId()
	// serverSide is the daemon's part of a call: the handler and the
	// codec's encoding of its response.
	codec := n.s.Codec()
	serverSide := func(resp any, err error) error {
		if err != nil {
			return err
		}
		data, err := codec.Marshal(resp)
		data.Free()
		return err
	}
	for _, bc := range []struct {
		name string
		call func() error
	}{
		{"ImageStatus/tag/handler", func() error {
			_, err := n.s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: n.tags[7]}})
			return err
		}},
		{"ImageStatus/tag/grpc", func() error {
			_, err := n.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: n.tags[7]}})
			return err
		}},
		{"ImageStatus/id/grpc", func() error {
			_, err := n.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: id}})
			return err
		}},
		{"ImageFsInfo/handler", func() error {
			_, err := n.s.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
			return err
		}},
		{"ImageFsInfo/grpc", func() error {
			_, err := n.img.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
			return err
		}},
		{"Version/grpc", func() error {
			_, err := n.rt.Version(ctx, &runtimeapi.VersionRequest{})
			return err
		}},
		{"PodSandboxStatus/handler", func() error {
			_, err := n.s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: n.pods[3]})
			return err
		}},
		{"PodSandboxStatus/grpc", func() error {
			_, err := n.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: n.pods[3]})
			return err
		}},
		{"ListContainers/grpc", func() error {
			_, err := n.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			return err
		}},
		{"ListContainerStats/grpc", func() error {
			_, err := n.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
			return err
		}},
		{"ListContainerStats/server", func() error {
			return serverSide(n.s.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{}))
		}},
		{"ListPodSandboxStats/server", func() error {
			return serverSide(n.s.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{}))
		}},
		{"ListContainers/server", func() error {
			return serverSide(n.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{}))
		}},
		{"ListPodSandboxStats/grpc", func() error {
			_, err := n.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
			return err
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.call(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// A small call right after a large response, as cri-bench's
	// ImageStatus (tag) follows ListPodSandboxStats, or right after the
	// daemon's memory trim (cmd/cri-runtimed: a full GC and the binary's
	// pages unmapped, to be faulted back in): only the small call is
	// timed.
	small := func() error {
		_, err := n.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: n.tags[7]}})
		return err
	}
	for _, bc := range []struct {
		name   string
		before func() error
	}{
		{"ImageStatus/tag/after-Version", func() error {
			_, err := n.rt.Version(ctx, &runtimeapi.VersionRequest{})
			return err
		}},
		{"ImageStatus/tag/after-ListContainers", func() error {
			_, err := n.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			return err
		}},
		{"ImageStatus/tag/after-Trim", func() error {
			debug.FreeOSMemory()
			_, err := exepages.Trim()
			return err
		}},
		{"ImageStatus/tag/after-FreeOSMemory", func() error {
			debug.FreeOSMemory()
			return nil
		}},
		{"ImageStatus/tag/after-ListPodSandboxStats", func() error {
			_, err := n.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
			return err
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				if err := bc.before(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				r := trace.StartRegion(ctx, "small call")
				err := small()
				r.End()
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVersion: the round trip every call costs at least, with the
// server's own options and with the daemon's telemetry added as
// cmd/cri-runtimed installs it (metrics interceptors, and the stats
// handler that traces while tracing is on, here off).
func BenchmarkVersion(b *testing.B) {
	rec := telemetry.New()
	mUnary, mStream := rec.Interceptors()
	for _, bc := range []struct {
		name string
		opts []grpc.ServerOption
	}{
		{"server", nil},
		{"daemon", []grpc.ServerOption{grpc.ChainUnaryInterceptor(mUnary), grpc.ChainStreamInterceptor(mStream), grpc.StatsHandler(rec.StatsHandler())}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			n := newBenchNode(b, 0, 0, 0, bc.opts...)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := n.rt.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
