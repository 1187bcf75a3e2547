//go:build e2e

// Package framework runs cri-runtimed for end-to-end tests: it builds the
// daemon once per test binary, writes its config (every path under a
// temporary directory), starts, stops, kills and restarts it, connects the
// kubelet's CRI client (k8s.io/cri-client) to it, and wires it to a local
// registry through hosts.toml so images are named as users name them
// ("busybox", "registry.k8s.io/pause:3.10").
//
// A test file needs:
//
//	func TestMain(m *testing.M) { framework.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		env := framework.NewEnv(t)
//		img, _ := images.Busybox()
//		env.Push(t, "busybox", img)
//		ref, err := env.Daemon.Images().PullImage(ctx, &runtimeapi.ImageSpec{Image: "busybox"}, nil, nil)
//	}
package framework

import (
	"os"
	"testing"
	"time"

	"github.com/distribution/reference"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/registry"
)

// Env is a local registry and a daemon whose docker.io and registry.k8s.io
// resolve to it.
type Env struct {
	Registry *registry.Registry
	Daemon   *Daemon
}

// EnvRegistry names a registry (http://127.0.0.1:port) that runs for a
// whole test binary's run, which every Env then uses instead of starting
// its own: the guest's smoke stage sets it, where starting a registry and
// pushing the same image again cost seconds per test under emulation. Only
// for tests that push what they pull and expect nothing else of the
// registry (no faults, no counts of its contents).
const EnvRegistry = "CRI_RUNTIMED_E2E_REGISTRY"

// NewEnv starts a registry (or attaches to EnvRegistry's), writes
// hosts.toml for MirroredRegistries pointing at it and starts a daemon
// (unless WithoutStart: a test that wants other hosts.toml files writes
// them, then calls env.Daemon.Start).
func NewEnv(t testing.TB, opts ...Option) *Env {
	t.Helper()
	RequireRoot(t)
	reg := testRegistry(t)
	d := NewDaemon(t, append(opts, WithoutStart())...)
	for _, r := range MirroredRegistries {
		if err := WriteHosts(d.CertsDir, r, Hosts{Server: reg.URL}); err != nil {
			t.Fatal(err)
		}
	}
	o := &options{overrides: map[string]any{}}
	for _, opt := range opts {
		opt(o)
	}
	if !o.noStart {
		d.Start(t)
	}
	return &Env{Registry: reg, Daemon: d}
}

// testRegistry is EnvRegistry's registry where it names one, else a new
// one for the test.
func testRegistry(t testing.TB) *registry.Registry {
	t.Helper()
	if url := os.Getenv(EnvRegistry); url != "" {
		return registry.Attach(t, url)
	}
	return registry.Start(t)
}

// Push pushes a to the local registry under ref, a name as the daemon will
// be asked for it: "busybox" and "busybox:1" land in library/busybox,
// "registry.k8s.io/pause:3.10" in pause. A digest reference pushes by
// digest only.
func (e *Env) Push(t testing.TB, ref string, a images.Artifact) {
	t.Helper()
	repo, tag := RegistryPath(t, ref)
	e.Registry.Push(t, repo, tag, a)
}

// RegistryPath splits an image reference into the repository path in the
// registry and the tag ("" for a digest reference); a missing tag is
// "latest".
func RegistryPath(t testing.TB, ref string) (repo, tag string) {
	t.Helper()
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		t.Fatalf("reference %q: %v", ref, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return reference.Path(named), ""
	}
	return reference.Path(named), reference.TagNameOnly(named).(reference.Tagged).Tag()
}

// Eventually polls cond every 50ms until it returns true or timeout
// (scaled by EnvSlow) passes, then fails the test with the last message
// cond returned. It is for state the daemon reaches asynchronously (GC,
// usage accounting), never a replacement for waiting on a known event.
func Eventually(t testing.TB, timeout time.Duration, cond func() (ok bool, msg string)) {
	t.Helper()
	timeout = Slow(timeout)
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not reached within %s: %s", timeout, msg)
		}
		<-tick.C
	}
}
