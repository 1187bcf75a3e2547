//go:build e2e

// Command fakedaemon is a stand-in for cri-runtimed used only by the
// framework's own tests: it reads the same config, serves Version and
// ImageFsInfo on the configured socket, holds a lock on the root like the
// real daemon must, and exits 0 on SIGTERM. It checks the harness, not the
// daemon.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	toml "github.com/pelletier/go-toml/v2"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type config struct {
	Root  string `toml:"root"`
	State string `toml:"state"`
	GRPC  struct {
		Address string `toml:"address"`
	} `toml:"grpc"`
}

type server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer
	root string
}

func (s *server) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: "fake", RuntimeVersion: "0", RuntimeApiVersion: "v1"}, nil
}

func (s *server) ImageFsInfo(context.Context, *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	return &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{{
		FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: s.root},
	}}}, nil
}

func main() {
	path := flag.String("config", "", "config file")
	flag.Parse()
	if err := run(*path); err != nil {
		fmt.Fprintln(os.Stderr, "fakedaemon:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg config
	if err := toml.Unmarshal(data, &cfg); err != nil {
		return err
	}
	for _, d := range []string{cfg.Root, cfg.State, filepath.Dir(cfg.GRPC.Address)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	lock, err := os.OpenFile(filepath.Join(cfg.Root, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("root %s is locked by another instance: %w", cfg.Root, err)
	}
	os.Remove(cfg.GRPC.Address)
	l, err := net.Listen("unix", cfg.GRPC.Address)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	s := &server{root: cfg.Root}
	runtimeapi.RegisterRuntimeServiceServer(srv, s)
	runtimeapi.RegisterImageServiceServer(srv, s)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		srv.GracefulStop()
	}()
	return srv.Serve(l)
}
