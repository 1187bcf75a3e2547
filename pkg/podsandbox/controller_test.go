package podsandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/pkg/cni"
	"github.com/cri-runtimed/cri-runtimed/pkg/cni/fakecni"
	"github.com/cri-runtimed/cri-runtimed/pkg/netns"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim/fakeshim"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// The pod controller's state machine with fakes at its seams: shims
// (pkg/shim/fakeshim) and the CNI network (pkg/cni/fakecni). The network
// namespace pins and the pod's /dev/shm are real, hence root.

type env struct {
	t      *testing.T
	dir    string
	db     *meta.DB
	shims  *fakeshim.Launcher
	net    *fakecni.Network
	c      *Controller
	mu     sync.Mutex
	events []string // lifecycle and container events, in order
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespace pins and the pod's /dev/shm need root")
	}
	dir := t.TempDir()
	db, err := meta.Open(filepath.Join(dir, "meta.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// The pin directory becomes a mount point (shared propagation).
	t.Cleanup(func() { _ = unix.Unmount(filepath.Join(dir, "netns"), unix.MNT_DETACH) })
	e := &env{t: t, dir: dir, db: db, shims: fakeshim.NewLauncher(), net: fakecni.New()}
	e.c = e.controller()
	return e
}

// controller makes a controller on the env's state, as a daemon start
// does; it is closed (and what it still lists removed) at the end.
func (e *env) controller() *Controller {
	return e.controllerWith(map[string]Handler{"runc": {Root: filepath.Join(e.dir, "runc")}})
}

// controllerWith is controller with other runtime handlers.
func (e *env) controllerWith(handlers map[string]Handler) *Controller {
	drv, err := cgroups.New(cgroups.CgroupfsName, cgroups.WithDefaultParent("/cri-runtimed-unit-"+filepath.Base(e.dir)))
	if err != nil {
		e.t.Fatal(err)
	}
	c := New(Options{
		StateDir:       filepath.Join(e.dir, "pods"),
		NetNSDir:       filepath.Join(e.dir, "netns"),
		Binary:         "/bin/true",
		Handlers:       handlers,
		DefaultHandler: "runc",
		Cgroups:        drv,
		Network:        e.net,
		Shims:          e.shims,
	}, e.db)
	c.SetLifecycleHook(func(ev runtimeapi.ContainerEventType, p *Pod) { e.log(ev.String() + " " + p.ID()) })
	c.SetEventHandler(func(p *Pod, ev shim.Event) { e.log(string(ev.Type) + " " + ev.ID) })
	e.t.Cleanup(func() {
		for _, p := range c.List() {
			if err := c.Remove(context.Background(), p.ID()); err != nil && !errors.Is(err, ErrNotFound) {
				e.t.Errorf("cleanup: remove pod %s: %v", p.ID(), err)
			}
		}
		c.Close()
	})
	return c
}

func (e *env) log(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, s)
}

func (e *env) logged(s string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Contains(e.events, s)
}

func podConfig(name string, hostNet bool) *runtimeapi.PodSandboxConfig {
	cfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns", Uid: "uid-" + name}}
	if hostNet {
		cfg.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}}
	}
	return cfg
}

func (e *env) shimOf(id string) *fakeshim.Shim {
	e.t.Helper()
	for _, s := range e.shims.Shims() {
		if s.PodID == id {
			return s
		}
	}
	e.t.Fatalf("no shim for pod %s", id)
	return nil
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
	}
}

// assertGone checks that nothing of pod id is left: record, directory,
// netns pin, network attachment, shim.
func (e *env) assertGone(id string) {
	e.t.Helper()
	if recs, _ := e.db.ListSandboxes(); slices.ContainsFunc(recs, func(r meta.Sandbox) bool { return r.ID == id }) {
		e.t.Errorf("pod %s: record left", id)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "pods", id)); !os.IsNotExist(err) {
		e.t.Errorf("pod %s: directory left (%v)", id, err)
	}
	if pins, _ := netns.List(filepath.Join(e.dir, "netns")); slices.ContainsFunc(pins, func(p string) bool { return filepath.Base(p) == id }) {
		e.t.Errorf("pod %s: netns pin left", id)
	}
	if ids, _ := e.net.Attached(); slices.Contains(ids, id) {
		e.t.Errorf("pod %s: still attached to the network", id)
	}
	for _, s := range e.shims.Shims() {
		if s.PodID == id && len(s.Containers()) > 0 {
			e.t.Errorf("pod %s: its shim still holds %v", id, s.Containers())
		}
	}
}

// TestPodLifecycle: run, stop (twice), remove (twice), for a pod on the
// pod network and one on the host's.
func TestPodLifecycle(t *testing.T) {
	for _, hostNet := range []bool{false, true} {
		t.Run(fmt.Sprintf("hostNetwork=%v", hostNet), func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			id, err := e.c.Run(ctx, podConfig("p", hostNet), "")
			if err != nil {
				t.Fatal(err)
			}
			pod, err := e.c.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			rec := pod.Record()
			if !pod.Ready() || rec.State != meta.SandboxReady || rec.Pid == 0 {
				t.Fatalf("after Run: %+v", rec)
			}
			if hostNet != (len(rec.IPs) == 0) || hostNet != (rec.NetNSPath == "") {
				t.Errorf("host network %v: IPs %v netns %q", hostNet, rec.IPs, rec.NetNSPath)
			}
			if st := e.shimOf(id).Containers()[id]; st.Status != shim.StatusRunning {
				t.Errorf("sandbox container in the shim: %+v", st)
			}
			for _, f := range []string{"hostname", "hosts", "resolv.conf"} {
				if _, err := os.Stat(filepath.Join(pod.Dir(), f)); err != nil {
					t.Errorf("pod file %s: %v", f, err)
				}
			}

			for range 2 {
				if err := e.c.Stop(ctx, id); err != nil {
					t.Fatalf("Stop: %v", err)
				}
				if pod.Ready() {
					t.Fatal("pod ready after Stop")
				}
			}
			if ids, _ := e.net.Attached(); slices.Contains(ids, id) {
				t.Errorf("still attached after Stop")
			}
			if err := e.c.Remove(ctx, id); err != nil {
				t.Fatal(err)
			}
			if err := e.c.Remove(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Errorf("second Remove = %v, want ErrNotFound", err)
			}
			e.assertGone(id)
			for _, ev := range []string{"CONTAINER_CREATED_EVENT", "CONTAINER_STARTED_EVENT", "CONTAINER_STOPPED_EVENT", "CONTAINER_DELETED_EVENT"} {
				if !e.logged(ev + " " + id) {
					t.Errorf("no %s", ev)
				}
			}
			// The name is free again.
			if _, err := e.c.Run(ctx, podConfig("p", hostNet), ""); err != nil {
				t.Errorf("Run with the name of a removed pod: %v", err)
			}
		})
	}
}

// TestCreatingCount: a pod is counted as creating while Run runs, and
// not once it returns.
func TestCreatingCount(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	e.net.BeforeSetup = func() { <-release }
	done := make(chan error, 1)
	go func() {
		_, err := e.c.Run(context.Background(), podConfig("p", false), "")
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for e.c.Creating() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("Creating() = %d while a pod starts, want 1", e.c.Creating())
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := e.c.Creating(); n != 0 {
		t.Errorf("Creating() = %d after Run returned", n)
	}
}

// TestRunFailureCleansUp: whichever step of Run fails, nothing of the
// pod remains and its name is free.
func TestRunFailureCleansUp(t *testing.T) {
	for _, step := range []string{"spawn", "create", "start", "network"} {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			fault := errors.New("injected " + step + " failure")
			switch step {
			case "spawn":
				e.shims.SpawnErr = fault
			case "create":
				e.shims.Configure = func(s *fakeshim.Shim) { s.Fail["Create"] = fault }
			case "start":
				e.shims.Configure = func(s *fakeshim.Shim) { s.Fail["Start"] = fault }
			case "network":
				e.net.SetupErr = fault
			}
			id, err := e.c.Run(ctx, podConfig("p", false), "")
			if err == nil {
				t.Fatalf("Run succeeded (pod %s)", id)
			}
			if len(e.c.List()) != 0 {
				t.Errorf("a failed pod is listed")
			}
			recs, _ := e.db.ListSandboxes()
			if len(recs) != 0 {
				t.Errorf("records left: %+v", recs)
			}
			for _, s := range e.shims.Shims() {
				e.assertGone(s.PodID)
			}
			if pins, _ := netns.List(filepath.Join(e.dir, "netns")); len(pins) != 0 {
				t.Errorf("netns pins left: %v", pins)
			}
			if ids, _ := e.net.Attached(); len(ids) != 0 {
				t.Errorf("network attachments left: %v", ids)
			}
			e.shims.SpawnErr, e.shims.Configure, e.net.SetupErr = nil, nil, nil
			if _, err := e.c.Run(ctx, podConfig("p", false), ""); err != nil {
				t.Errorf("Run after the fault is gone: %v", err)
			}
		})
	}
}

// TestSandboxExitAndShimDeath: the sandbox process exiting makes the pod
// not ready; the shim dying does too, and the container controller hears
// of it (EventShimDied) so it can mark the pod's containers.
func TestSandboxExitAndShimDeath(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	exits, err := e.c.Run(ctx, podConfig("exits", true), "")
	if err != nil {
		t.Fatal(err)
	}
	dies, err := e.c.Run(ctx, podConfig("dies", true), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.shimOf(exits).Exit(exits, 2); err != nil {
		t.Fatal(err)
	}
	e.shimOf(dies).Die()
	for _, id := range []string{exits, dies} {
		pod, _ := e.c.Get(id)
		eventually(t, "pod "+id+" not ready", func() bool { return !pod.Ready() })
	}
	eventually(t, "the container controller told of the shim's death", func() bool { return e.logged(string(shim.EventShimDied) + " ") })
	if pod, _ := e.c.Get(dies); pod.Shim() != nil {
		t.Errorf("a pod whose shim died still has a shim client")
	}
	for _, id := range []string{exits, dies} {
		if err := e.c.Remove(ctx, id); err != nil {
			t.Errorf("Remove(%s): %v", id, err)
		}
		e.assertGone(id)
	}
}

// TestTeardownNetworkFailure: a DEL that fails keeps the pod (its IP is
// still held) so that a retry can release it; once DEL works the pod goes.
func TestTeardownNetworkFailure(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, err := e.c.Run(ctx, podConfig("p", false), "")
	if err != nil {
		t.Fatal(err)
	}
	e.net.TeardownErr = errors.New("plugin failed")
	if err := e.c.Remove(ctx, id); err == nil {
		t.Fatal("Remove succeeded although CNI DEL failed")
	}
	if _, err := e.c.Get(id); err != nil {
		t.Fatalf("pod gone after a failed DEL: %v", err)
	}
	e.net.TeardownErr = nil
	if err := e.c.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.assertGone(id)
}

// TestRecover: a daemon start finds a ready pod whose shim lives (stays
// ready), one whose shim died (not ready), a creation cut short, a corrupt
// record, and leftovers no record owns (pod directory, netns pin, network
// attachment); all but the first two are removed.
func TestRecover(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alive, err := e.c.Run(ctx, podConfig("alive", false), "")
	if err != nil {
		t.Fatal(err)
	}
	dead, err := e.c.Run(ctx, podConfig("dead", false), "")
	if err != nil {
		t.Fatal(err)
	}
	half, err := e.c.Run(ctx, podConfig("half", false), "")
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := e.c.Get(half)
	r := rec.Record()
	r.State = meta.SandboxCreating
	if err := e.db.PutSandbox(r); err != nil {
		t.Fatal(err)
	}
	corrupt := strings.Repeat("c", 64)
	if err := os.MkdirAll(filepath.Join(e.dir, "pods", corrupt), 0o700); err != nil {
		t.Fatal(err)
	}
	err = e.db.Bolt().Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("sandboxes")).Put([]byte(corrupt), []byte(`{"id":`))
	})
	if err != nil {
		t.Fatal(err)
	}
	orphan := strings.Repeat("0", 64)
	if _, err := e.net.Setup(ctx, cni.Pod{ID: orphan, NetNS: "/proc/self/ns/net"}); err != nil {
		t.Fatal(err)
	}
	if _, err := netns.Create(ctx, filepath.Join(e.dir, "netns"), orphan); err != nil {
		t.Fatal(err)
	}

	// The daemon goes; one shim dies meanwhile.
	e.c.Close()
	e.shimOf(dead).Die()
	c2 := e.controller()
	if err := c2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	e.c = c2
	if pod, err := c2.Get(alive); err != nil || !pod.Ready() || pod.Shim() == nil {
		t.Errorf("pod with a live shim after recovery: ready=%v err=%v", err == nil && pod.Ready(), err)
	}
	if pod, err := c2.Get(dead); err != nil || pod.Ready() {
		t.Errorf("pod whose shim died: %v ready=%v", err, err == nil && pod.Ready())
	}
	if _, err := c2.Get(half); !errors.Is(err, ErrNotFound) {
		t.Errorf("interrupted creation listed: %v", err)
	}
	for _, id := range []string{half, corrupt, orphan} {
		e.assertGone(id)
	}
	// The live pod is still monitored: its sandbox's exit is noticed.
	if err := e.shimOf(alive).Exit(alive, 0); err != nil {
		t.Fatal(err)
	}
	pod, _ := c2.Get(alive)
	eventually(t, "the recovered pod's exit noticed", func() bool { return !pod.Ready() })
}

// TestRecoverRemovedHandler: a pod whose runtime handler was removed from
// the config while the daemon was down keeps its handler's name and the
// runtime it started with; with its shim dead, that runtime still cleans
// its container up.
func TestRecoverRemovedHandler(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	root := filepath.Join(e.dir, "gone-root")
	calls := filepath.Join(e.dir, "runtime-calls")
	bin := filepath.Join(e.dir, "gone-runtime")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"$@\" >> "+calls+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.c.Close()
	e.c = e.controllerWith(map[string]Handler{"runc": {}, "gone": {Binary: bin, Root: root, OCIVersionMax: "1.1.0"}})
	alive, err := e.c.Run(ctx, podConfig("alive", false), "gone")
	if err != nil {
		t.Fatal(err)
	}
	dead, err := e.c.Run(ctx, podConfig("dead", false), "gone")
	if err != nil {
		t.Fatal(err)
	}
	// The runtime has state for the dead pod's sandbox.
	if err := os.MkdirAll(filepath.Join(root, dead), 0o700); err != nil {
		t.Fatal(err)
	}
	e.c.Close()
	e.shimOf(dead).Die()
	c2 := e.controllerWith(map[string]Handler{"runc": {}})
	if err := c2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	e.c = c2
	pod, err := c2.Get(alive)
	if err != nil || !pod.Ready() {
		t.Fatalf("recovered pod: %v", err)
	}
	if got := pod.Record().RuntimeHandler; got != "gone" {
		t.Errorf("recovered pod's handler %q, want gone", got)
	}
	if h := pod.Runtime(); h.Binary != bin || h.Root != root || pod.Info().OCIVersionMax != "1.1.0" {
		t.Errorf("recovered pod's runtime %+v, want the one it started with", h)
	}
	b, _ := os.ReadFile(calls)
	for _, want := range []string{"--root " + root + " kill --all " + dead + " KILL", "--root " + root + " delete --force " + dead} {
		if !strings.Contains(string(b), want) {
			t.Errorf("runtime calls %q lack %q", b, want)
		}
	}
}
