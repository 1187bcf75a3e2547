//go:build e2e

package framework

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/registry"
)

// Environment variables understood by the framework.
const (
	// EnvBinary points at an already built daemon; otherwise the tests
	// build ./cmd/cri-runtimed once per test binary.
	EnvBinary = "CRI_RUNTIMED_BIN"
	// EnvVerbosity is passed to the daemon as -v.
	EnvVerbosity = "CRI_RUNTIMED_E2E_V"
	// EnvKeep keeps each test's daemon directory (logs, state) for
	// debugging instead of removing it.
	EnvKeep = "CRI_RUNTIMED_E2E_KEEP"
	// EnvSlow multiplies every timeout of the framework and of Eventually
	// ("4": four times as long), for machines much slower than a
	// developer's: the guest suite runs under software emulation.
	EnvSlow = "CRI_RUNTIMED_E2E_SLOW"
	// envInstance marks the daemon and everything it starts (shims
	// inherit the environment) so cleanup can find leftovers.
	envInstance = "CRI_RUNTIMED_E2E_INSTANCE"
)

// Timeouts.
var (
	// StartTimeout bounds the wait for the socket and a Version answer.
	StartTimeout = Slow(60 * time.Second)
	// StopTimeout bounds the wait for exit after SIGTERM.
	StopTimeout = Slow(30 * time.Second)
	// RequestTimeout is the cri-client per-call timeout (kubelet's
	// default runtime-request-timeout is 2m).
	RequestTimeout = Slow(2 * time.Minute)
)

// Slow scales a timeout by EnvSlow (unset: 1).
func Slow(d time.Duration) time.Duration {
	f, err := strconv.ParseFloat(os.Getenv(EnvSlow), 64)
	if err != nil || f < 1 {
		return d
	}
	return time.Duration(float64(d) * f)
}

var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// RepoRoot finds the module root by walking up from the working directory
// to go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// DaemonBinary returns $CRI_RUNTIMED_BIN, or builds ./cmd/cri-runtimed
// and ./cmd/cri-runtimed-shim beside it once per test binary (Main removes
// them at the end).
func DaemonBinary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		return p, nil
	}
	built.once.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			built.err = err
			return
		}
		if built.dir, err = os.MkdirTemp("", "e2e-bin-"); err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(built.dir, "cri-runtimed")
		// Built as `make build` does: static, because the binary is also
		// the pause process inside an empty rootfs.
		cmd := exec.Command("go", "build", "-tags", "netgo,osusergo,nri_no_wasm", "-ldflags", "-extldflags=-static", "-o", built.path, "./cmd/cri-runtimed")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build ./cmd/cri-runtimed: %v\n%s", err, out)
			return
		}
		// The shim's own binary, beside the daemon as `make build` puts it.
		cmd = exec.Command("go", "build", "-tags", "netgo,osusergo,nri_no_wasm", "-o", filepath.Join(built.dir, "cri-runtimed-shim"), "./cmd/cri-runtimed-shim")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build ./cmd/cri-runtimed-shim: %v\n%s", err, out)
		}
	})
	return built.path, built.err
}

// Main runs the tests and removes the daemon binary built for them. Call it
// from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	if nriPlugin.dir != "" {
		os.RemoveAll(nriPlugin.dir)
	}
	os.Exit(code)
}

// RequireRoot skips tests that need root (mounts, runc) when not root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("end-to-end tests need root")
	}
}

// Daemon is one cri-runtimed process (and its restarts) with all its
// state under Dir.
type Daemon struct {
	Dir        string
	ConfigPath string
	LogPath    string
	Config     Config
	// Root, State, Socket and CertsDir are read from Config.
	Root, State, Socket, CertsDir string
	// Endpoint is unix://<Socket>.
	Endpoint string

	bin   string
	args  []string
	extra []*os.File

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	state   *os.ProcessState
	starts  int
	runtime internalapi.RuntimeService
	images  internalapi.ImageManagerService
	conn    *grpc.ClientConn
}

type options struct {
	overrides map[string]any
	args      []string
	extra     []*os.File
	noStart   bool
}

// Option configures NewDaemon.
type Option func(*options)

// WithConfig overrides a config key ("image.snapshotter", "root"...).
func WithConfig(key string, value any) Option {
	return func(o *options) { o.overrides[key] = value }
}

// WithArgs adds command line arguments after --config.
func WithArgs(args ...string) Option {
	return func(o *options) { o.args = append(o.args, args...) }
}

// WithExtraFiles hands files to the daemon as fds 3, 4, ... without
// close-on-exec, as a supervisor or an operator's shell can.
func WithExtraFiles(files ...*os.File) Option {
	return func(o *options) { o.extra = append(o.extra, files...) }
}

// WithoutStart only prepares the directory and config; call Start (or
// StartProcess) yourself.
func WithoutStart() Option { return func(o *options) { o.noStart = true } }

// NewDaemon prepares a temporary directory and config and, unless
// WithoutStart, starts the daemon and connects cri-client to it. When the
// test ends the daemon is stopped, processes it left behind are killed,
// mounts under its directory are unmounted and the directory is removed;
// on failure the tail of its log is printed.
func NewDaemon(t testing.TB, opts ...Option) *Daemon {
	t.Helper()
	RequireRoot(t)
	o := &options{overrides: map[string]any{}}
	for _, opt := range opts {
		opt(o)
	}
	bin, err := DaemonBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: its path contains the test name and a unix socket
	// path must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "e2e-crd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{
		Dir:        dir,
		ConfigPath: filepath.Join(dir, "config.toml"),
		LogPath:    filepath.Join(dir, "daemon.log"),
		bin:        bin,
		args:       o.args,
		extra:      o.extra,
	}
	if v := os.Getenv(EnvVerbosity); v != "" {
		d.args = append(d.args, "-v", v)
	}
	t.Cleanup(func() { d.cleanup(t) })
	if d.Config, err = WriteConfig(d.ConfigPath, dir, o.overrides); err != nil {
		t.Fatal(err)
	}
	d.Root, d.State = d.Config.String("root"), d.Config.String("state")
	d.Socket = d.Config.String("grpc.address")
	d.CertsDir = d.Config.String("image.registry_config_path")
	d.Endpoint = "unix://" + d.Socket
	if err := os.MkdirAll(d.CertsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if !o.noStart {
		d.Start(t)
	}
	return d
}

// StartProcess starts the daemon without waiting for it to serve.
func (d *Daemon) StartProcess(t testing.TB) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil && d.state == nil {
		t.Fatal("daemon already running")
	}
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.starts++
	fmt.Fprintf(logf, "=== e2e: start #%d at %s\n", d.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(d.bin, append([]string{"--config", d.ConfigPath}, d.args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = d.extra
	cmd.Env = append(os.Environ(), envInstance+"="+d.Dir)
	// Setpgid keeps terminal signals of `go test` away from it; Pdeathsig
	// ends it if the test binary dies without cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	d.cmd, d.exited, d.state = cmd, exited, nil
	go func() {
		_ = cmd.Wait()
		d.mu.Lock()
		d.state = cmd.ProcessState
		d.mu.Unlock()
		close(exited)
	}()
}

// Start starts the daemon, waits until it answers Version on its socket
// and connects the cri-client services.
func (d *Daemon) Start(t testing.TB) {
	t.Helper()
	d.StartProcess(t)
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if err := d.waitReady(ctx); err != nil {
		t.Fatalf("daemon start: %v\nlog tail:\n%s", err, registry.Tail(d.LogPath, 40))
	}
	if err := d.connect(ctx); err != nil {
		t.Fatalf("daemon connect: %v\nlog tail:\n%s", err, registry.Tail(d.LogPath, 40))
	}
}

func (d *Daemon) waitReady(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		// A fresh connection per attempt: a gRPC client that failed to
		// dial backs off for a second or more, which would slow every
		// start.
		if lastErr = d.tryVersion(ctx); lastErr == nil {
			return nil
		}
		select {
		case <-d.Exited():
			return fmt.Errorf("daemon exited (%s) before serving", d.ExitState())
		case <-ctx.Done():
			return fmt.Errorf("no Version answer within %s: %v", StartTimeout, lastErr)
		case <-tick.C:
		}
	}
}

func (d *Daemon) tryVersion(ctx context.Context) error {
	c, err := net.Dial("unix", d.Socket)
	if err != nil {
		return err
	}
	c.Close()
	conn, err := grpc.NewClient("unix://"+d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
	return err
}

func (d *Daemon) connect(ctx context.Context) error {
	rs, err := remote.NewRemoteRuntimeServiceBuilder().
		WithEndpoint(d.Endpoint).
		WithConnectionTimeout(RequestTimeout).
		WithTracerProvider(nil).
		Build(ctx)
	if err != nil {
		return err
	}
	is, err := remote.NewRemoteImageServiceBuilder().
		WithEndpoint(d.Endpoint).
		WithConnectionTimeout(RequestTimeout).
		WithTracerProvider(nil).
		Build(ctx)
	if err != nil {
		rs.Close(ctx)
		return err
	}
	conn, err := grpc.NewClient("unix://"+d.Socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		rs.Close(ctx)
		is.Close(ctx)
		return err
	}
	d.mu.Lock()
	d.runtime, d.images, d.conn = rs, is, conn
	d.mu.Unlock()
	return nil
}

func (d *Daemon) disconnect() {
	d.mu.Lock()
	defer d.mu.Unlock()
	ctx := context.Background()
	if d.runtime != nil {
		d.runtime.Close(ctx)
	}
	if d.images != nil {
		d.images.Close(ctx)
	}
	if d.conn != nil {
		d.conn.Close()
	}
	d.runtime, d.images, d.conn = nil, nil, nil
}

// Runtime is the kubelet's CRI runtime client, connected to the current
// daemon process (a new one after each Start).
func (d *Daemon) Runtime() internalapi.RuntimeService {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.runtime
}

// Images is the kubelet's CRI image client.
func (d *Daemon) Images() internalapi.ImageManagerService {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.images
}

// Conn is a raw gRPC connection, for RPCs or request fields that
// cri-client does not expose (StreamImages...).
func (d *Daemon) Conn() *grpc.ClientConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn
}

// ImageClient is the generated CRI image client on Conn.
func (d *Daemon) ImageClient() runtimeapi.ImageServiceClient {
	return runtimeapi.NewImageServiceClient(d.Conn())
}

// RuntimeClient is the generated CRI runtime client on Conn.
func (d *Daemon) RuntimeClient() runtimeapi.RuntimeServiceClient {
	return runtimeapi.NewRuntimeServiceClient(d.Conn())
}

// Exited is closed when the current process has exited.
func (d *Daemon) Exited() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.exited == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return d.exited
}

// ExitState describes how the last process ended ("running" if it has
// not).
func (d *Daemon) ExitState() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == nil {
		return "running"
	}
	return d.state.String()
}

// ExitCode is the last process's exit code (-1 if killed by a signal or
// still running).
func (d *Daemon) ExitCode() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == nil {
		return -1
	}
	return d.state.ExitCode()
}

// Pid of the current process.
func (d *Daemon) Pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// WaitExit waits up to timeout for the process to exit; false if it did
// not.
func (d *Daemon) WaitExit(timeout time.Duration) bool {
	select {
	case <-d.Exited():
		return true
	case <-time.After(timeout):
		return false
	}
}

func (d *Daemon) signal(sig syscall.Signal) {
	d.mu.Lock()
	cmd, state := d.cmd, d.state
	d.mu.Unlock()
	if cmd != nil && state == nil {
		_ = cmd.Process.Signal(sig)
	}
}

// Stop sends SIGTERM and waits for the exit; it fails the test if the
// daemon needs more than StopTimeout (it is then killed) or exits with a
// non-zero status.
func (d *Daemon) Stop(t testing.TB) {
	t.Helper()
	d.disconnect()
	d.signal(syscall.SIGTERM)
	if !d.WaitExit(StopTimeout) {
		d.signal(syscall.SIGKILL)
		<-d.Exited()
		t.Fatalf("daemon did not exit within %s of SIGTERM; killed", StopTimeout)
	}
	if code := d.ExitCode(); code != 0 {
		t.Fatalf("daemon exited with %s after SIGTERM, want status 0\nlog tail:\n%s", d.ExitState(), registry.Tail(d.LogPath, 40))
	}
}

// Kill sends SIGKILL (a crash) and waits for the exit.
func (d *Daemon) Kill(t testing.TB) {
	t.Helper()
	// Signal before closing the clients: in-flight RPCs must see a crash,
	// not a client that went away first.
	d.signal(syscall.SIGKILL)
	if !d.WaitExit(StopTimeout) {
		t.Fatal("daemon did not die of SIGKILL")
	}
	d.disconnect()
}

// Restart is Stop then Start.
func (d *Daemon) Restart(t testing.TB) {
	t.Helper()
	d.Stop(t)
	d.Start(t)
}

// Log returns the daemon's combined output of all its starts so far.
func (d *Daemon) Log() string {
	data, _ := os.ReadFile(d.LogPath)
	return string(data)
}

func (d *Daemon) cleanup(t testing.TB) {
	d.disconnect()
	select {
	case <-d.Exited():
	default:
		d.signal(syscall.SIGTERM)
		if !d.WaitExit(StopTimeout) {
			t.Errorf("daemon did not exit within %s of SIGTERM at cleanup; killing it", StopTimeout)
			d.signal(syscall.SIGKILL)
			<-d.Exited()
		}
	}
	if t.Failed() {
		t.Logf("daemon log %s (tail):\n%s", d.LogPath, registry.Tail(d.LogPath, 80))
	}
	if err := KillMarked(d.Dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if err := UnmountAll(d.Dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if os.Getenv(EnvKeep) != "" {
		t.Logf("keeping %s", d.Dir)
		return
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// RunCLI runs the daemon binary with args (e.g. "config", "default") and
// returns its combined output and exit code.
func RunCLI(ctx context.Context, args ...string) (string, int, error) {
	bin, err := DaemonBinary()
	if err != nil {
		return "", -1, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return out.String(), exit.ExitCode(), nil
	}
	if err != nil {
		return out.String(), -1, err
	}
	return out.String(), 0, nil
}

// NoOverlayEnv declares a machine without a usable overlayfs; only there
// may the daemon run on the native snapshotter when configured for
// overlayfs.
const NoOverlayEnv = "CRI_RUNTIMED_TEST_NO_OVERLAY"

// Snapshotter is the snapshotter the daemon runs with, from Status's
// verbose info (overlayfs falls back to native where it cannot mount).
func (d *Daemon) Snapshotter(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	resp, err := d.RuntimeClient().Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	name := resp.GetInfo()["snapshotter"]
	if name == "" {
		t.Fatalf("Status verbose info names no snapshotter: %v", resp.GetInfo())
	}
	return name
}

// WantSnapshotter is the snapshotter a daemon configured with configured
// must use on this machine.
func WantSnapshotter(configured string) string {
	if configured == "overlayfs" && os.Getenv(NoOverlayEnv) != "" {
		return "native"
	}
	return configured
}
