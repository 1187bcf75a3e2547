package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/config"
	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/server"
	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/content"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
	"github.com/cri-runtimed/cri-runtimed/pkg/version"
)

// lockTimeout bounds the wait for meta.db's lock: a second daemon on the
// same root must fail at once, not hang.
const lockTimeout = time.Second

// shutdownGrace bounds how long in-flight RPCs may finish on SIGTERM.
const shutdownGrace = 10 * time.Second

func serve(ctx context.Context, cfg *config.Config) error {
	klog.InfoS("Starting cri-runtimed", "version", version.Version, "root", cfg.Root, "state", cfg.State)
	for _, dir := range []string{cfg.Root, cfg.State, filepath.Dir(cfg.GRPC.Address)} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	db, err := meta.Open(cfg.MetaDBPath(), lockTimeout)
	if err != nil {
		return err
	}
	defer db.Close()

	cs, err := content.New(cfg.ContentDir())
	if err != nil {
		return fmt.Errorf("content store: %w", err)
	}
	snap, err := openSnapshotter(ctx, cfg, db)
	if err != nil {
		return err
	}
	defer snap.Close()

	reg := registry.New(cfg.Image.RegistryConfigPath,
		registry.WithRetries(cfg.Image.RegistryRetries, 200*time.Millisecond),
		registry.WithMaxManifestSize(cfg.Image.MaxManifestSize),
		registry.WithUserAgent("cri-runtimed/"+version.Version),
	)
	images := image.New(db, cs, snap, reg,
		image.WithMaxConcurrentDownloads(cfg.Image.MaxConcurrentDownloads),
		image.WithProgressTimeout(time.Duration(cfg.Image.PullProgressTimeout)),
		image.WithMaxManifestSize(cfg.Image.MaxManifestSize),
	)
	if err := recoverState(ctx, cfg, cs, snap, images); err != nil {
		return err
	}

	lis, err := listen(cfg.GRPC)
	if err != nil {
		return err
	}
	unary, stream := server.Interceptors()
	g := grpc.NewServer(
		grpc.UnaryInterceptor(unary),
		grpc.StreamInterceptor(stream),
		grpc.MaxRecvMsgSize(cfg.GRPC.MaxRecvMessageSize),
		grpc.MaxSendMsgSize(cfg.GRPC.MaxSendMessageSize),
	)
	server.New(cfg, images).Register(g)

	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	klog.InfoS("Serving CRI", "address", cfg.GRPC.Address, "snapshotter", snap.Name())

	select {
	case err := <-errc:
		return fmt.Errorf("grpc server: %w", err)
	case <-ctx.Done():
	}
	klog.InfoS("Shutting down")
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(shutdownGrace):
		g.Stop()
		<-stopped
	}
	os.Remove(cfg.GRPC.Address)
	klog.InfoS("Stopped")
	return nil
}

func openSnapshotter(ctx context.Context, cfg *config.Config, db *meta.DB) (snapshot.Snapshotter, error) {
	name := cfg.Image.Snapshotter
	if name == "overlayfs" {
		dir := cfg.SnapshotDir("overlayfs")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
		if err := snapshot.OverlaySupported(dir); err != nil {
			klog.InfoS("overlayfs is not usable here, falling back to the native snapshotter", "dir", dir, "reason", err)
			name = "native"
		}
	}
	snap, err := snapshot.New(ctx, name, cfg.SnapshotDir(name), db.Bolt())
	if err != nil {
		return nil, fmt.Errorf("snapshotter %s: %w", name, err)
	}
	return snap, nil
}

// recoverState removes what a crash left half done: snapshot directories
// without records, unpack snapshots of pulls that never finished, blobs no
// image holds, and partial downloads too old to be worth resuming.
func recoverState(ctx context.Context, cfg *config.Config, cs *content.Store, snap snapshot.Snapshotter, images *image.Service) error {
	if err := snap.Cleanup(ctx); err != nil {
		return fmt.Errorf("clean up snapshots: %w", err)
	}
	if err := cs.CleanupIngests(ctx, time.Duration(cfg.Image.StaleIngestAge)); err != nil {
		return fmt.Errorf("clean up partial downloads: %w", err)
	}
	if err := images.GC(ctx); err != nil {
		return fmt.Errorf("garbage collection at start: %w", err)
	}
	return nil
}

// listen opens the CRI socket with the configured mode and group. A socket
// file left by a daemon that died is replaced; a live one is not, so two
// daemons pointed at the same socket do not silently steal it.
func listen(g config.GRPC) (net.Listener, error) {
	if fi, err := os.Lstat(g.Address); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", g.Address)
		}
		if c, err := net.DialTimeout("unix", g.Address, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another process is serving on %s", g.Address)
		}
		if err := os.Remove(g.Address); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	mode, err := g.FileMode()
	if err != nil {
		return nil, err
	}
	// Create the socket with no permissions for others, then widen it, so
	// nobody connects between bind and chmod.
	old := syscall.Umask(0o777)
	lis, err := net.Listen("unix", g.Address)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", g.Address, err)
	}
	if err := os.Chmod(g.Address, mode); err != nil {
		lis.Close()
		return nil, fmt.Errorf("chmod %s: %w", g.Address, err)
	}
	if g.Group != "" {
		gid, err := lookupGroup(g.Group)
		if err != nil {
			lis.Close()
			return nil, err
		}
		if err := os.Chown(g.Address, 0, gid); err != nil {
			lis.Close()
			return nil, fmt.Errorf("chown %s: %w", g.Address, err)
		}
	}
	return lis, nil
}

func lookupGroup(name string) (int, error) {
	if gid, err := strconv.Atoi(name); err == nil {
		return gid, nil
	}
	grp, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("grpc.group %q: %w", name, err)
	}
	gid, err := strconv.Atoi(grp.Gid)
	if err != nil {
		return 0, errors.New("grpc.group: non-numeric gid " + grp.Gid)
	}
	return gid, nil
}
