//go:build e2e

// Package registry runs a local distribution v2 registry
// (/usr/bin/docker-registry) for the end-to-end tests, pushes images built
// by package images to it over the plain registry HTTP API, and provides
// misbehaving registries: one that refuses connections, one that answers
// 500 and a proxy that can stall a blob download half-way.
package registry

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

// Binary is the distribution registry shipped by Debian's docker-registry.
const Binary = "/usr/bin/docker-registry"

// Registry is a running docker-registry process.
type Registry struct {
	// Host is 127.0.0.1:<port>.
	Host string
	// URL is http://127.0.0.1:<port>.
	URL string
	// Dir holds the config, the storage and the log.
	Dir string

	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

// Start runs a registry with filesystem storage in a temporary directory
// and stops it (and removes the directory) when the test ends.
func Start(t testing.TB) *Registry {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("registry: %v (install Debian's docker-registry)", err)
	}
	dir, err := os.MkdirTemp("", "e2e-registry-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	// The registry binds the port itself, so there is a small window in
	// which another process could take it: retry with a new port if the
	// registry exits before answering.
	var lastErr error
	for range 3 {
		r, err := start(dir)
		if err == nil {
			t.Cleanup(func() {
				if err := r.stop(); err != nil {
					t.Errorf("registry: %v", err)
				}
				if t.Failed() {
					t.Logf("registry log (tail):\n%s", Tail(r.log, 30))
				}
			})
			return r
		}
		lastErr = err
	}
	t.Fatalf("registry: %v", lastErr)
	return nil
}

// Attach is a registry another process runs and owns at url
// (http://host:port): Push pushes to it (blobs it holds are not sent
// again), nothing is stopped or removed at the test's end. The guest's
// smoke stage runs one for all its tests (framework.EnvRegistry).
func Attach(t testing.TB, url string) *Registry {
	t.Helper()
	host, ok := strings.CutPrefix(url, "http://")
	if !ok || host == "" || strings.Contains(host, "/") {
		t.Fatalf("registry: %q is not http://host:port", url)
	}
	r := &Registry{Host: host, URL: url}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.waitReady(ctx); err != nil {
		t.Fatalf("registry: %v", err)
	}
	return r
}

func start(dir string) (*Registry, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	r := &Registry{
		Host:   fmt.Sprintf("127.0.0.1:%d", port),
		Dir:    dir,
		exited: make(chan struct{}),
		log:    filepath.Join(dir, "registry.log"),
	}
	r.URL = "http://" + r.Host
	config := filepath.Join(dir, "config.yml")
	yml := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), r.Host)
	if err := os.WriteFile(config, []byte(yml), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	r.cmd = exec.Command(Binary, "serve", config)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	// Do not outlive a test binary that dies without running cleanups.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = r.cmd.Wait()
		close(r.exited)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.waitReady(ctx); err != nil {
		_ = r.stop()
		return nil, fmt.Errorf("%w; log:\n%s", err, Tail(r.log, 20))
	}
	return r, nil
}

// waitReady polls GET /v2/ (the API version check) until it answers 200.
func (r *Registry) waitReady(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/v2/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-r.exited:
			return fmt.Errorf("docker-registry exited before serving %s", r.URL)
		case <-ctx.Done():
			return fmt.Errorf("docker-registry not ready at %s: %w", r.URL, ctx.Err())
		case <-tick.C:
		}
	}
}

func (r *Registry) stop() error {
	select {
	case <-r.exited:
		return nil
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
		return errors.New("docker-registry ignored SIGTERM for 10s; killed")
	}
}

// Push uploads a to repo (e.g. "library/busybox") under reference (a tag,
// or "" to push by digest only), failing the test on error.
func (r *Registry) Push(t testing.TB, repo, reference string, a images.Artifact) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := Push(ctx, r.URL, repo, reference, a); err != nil {
		t.Fatalf("push %s:%s: %v", repo, reference, err)
	}
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Tail returns the last n lines of the file at path (for failure logs).
func Tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
