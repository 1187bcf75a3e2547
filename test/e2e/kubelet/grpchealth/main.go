// Command grpchealth is the gRPC health server of the kubelet suite's
// grpc probe pod (a container image gets it as /usr/local/bin/grpchealth):
// it serves grpc.health.v1.Health on -addr and answers SERVING while the
// file -healthy exists (or always, without -healthy), NOT_SERVING
// otherwise, so a test can make a gRPC liveness probe fail from inside
// the container.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

type server struct {
	healthpb.UnimplementedHealthServer
	healthy string
}

func (s *server) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	st := healthpb.HealthCheckResponse_SERVING
	if s.healthy != "" {
		if _, err := os.Stat(s.healthy); err != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

func (s *server) Watch(*healthpb.HealthCheckRequest, healthpb.Health_WatchServer) error {
	return status.Error(codes.Unimplemented, "watch is not served")
}

func main() {
	addr := flag.String("addr", ":9090", "listen address")
	healthy := flag.String("healthy", "", "serving only while this file exists")
	flag.Parse()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, &server{healthy: *healthy})
	log.Printf("grpchealth serving on %s", l.Addr())
	log.Fatal(g.Serve(l))
}
