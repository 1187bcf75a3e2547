//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// churnKills is how often TestChurnWithCrashes kills the daemon.
const churnKills = 10

// TestChurnWithCrashes: 4 workers start and stop pods (each with a
// container, on the CNI test network) while the daemon is killed with
// SIGKILL at random moments 10 times and started again. Then the workers
// go on against the last daemon, where every call must succeed, and at
// the end every pod is removed as kubelet would (list, stop, remove).
// Nothing may be left: mounts, netns pins, pod directories, runc state,
// cgroups in every hierarchy, shims, snapshots, partial downloads,
// host-local reservations, veths, iptables rules, CNI cache entries. The
// last daemon's fds, goroutines and RSS must be within 10% of the first
// one's after the same warm-up.
func TestChurnWithCrashes(t *testing.T) {
	_, d, n := netPodEnv(t)
	const workers = 4

	// Warm-up: what starts lazily (CNI config, stats, event queues) is in
	// the baseline.
	for i := range workers {
		if err := churnCycle(d, fmt.Sprintf("warm-%d", i), i%2 == 0); err != nil {
			t.Fatalf("warm-up: %v", err)
		}
	}
	before, netBefore := d.Leaks(t), n.Snapshot(t)
	base := settledUsage(t, d)
	t.Logf("first daemon after warm-up: %s", base)

	var (
		stop       atomic.Bool
		ok, failed atomic.Int64
		strict     atomic.Bool // after the last restart every call must succeed
		wg         sync.WaitGroup
		errMu      sync.Mutex
		chaosErrs  = map[string]int{}
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; !stop.Load(); k++ {
				if d.Runtime() == nil { // between a kill and the restart
					time.Sleep(20 * time.Millisecond)
					continue
				}
				err := churnCycle(d, fmt.Sprintf("churn-%d-%d", w, k), k%3 == 0)
				switch {
				case err == nil:
					ok.Add(1)
				case strict.Load():
					t.Errorf("worker %d cycle %d against the recovered daemon: %v", w, k, err)
				default:
					failed.Add(1)
					errMu.Lock()
					chaosErrs[firstLine(err)]++
					errMu.Unlock()
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}

	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	start := time.Now()
	for i := range churnKills {
		// A random moment of the workers' cycles (one takes 1 to 6 s on
		// this 2-core machine under load).
		time.Sleep(time.Duration(500+rng.Intn(7500)) * time.Millisecond)
		d.Kill(t)
		d.Start(t)
		t.Logf("kill %d at %v: %d cycles done, %d cut short so far", i+1, time.Since(start).Round(time.Millisecond), ok.Load(), failed.Load())
	}
	// Calls in flight at the last kill may still fail; then it is strict.
	time.Sleep(2 * time.Second)
	strictFrom := ok.Load()
	strict.Store(true)
	time.Sleep(15 * time.Second)
	stop.Store(true)
	wg.Wait()
	t.Logf("%d pod lifecycles completed (%d against the recovered daemon), %d cut short by the kills in %v", ok.Load(), ok.Load()-strictFrom, failed.Load(), time.Since(start).Round(time.Second))
	for msg, count := range chaosErrs {
		t.Logf("  %dx %s", count, msg)
	}
	if ok.Load()-strictFrom < workers {
		t.Errorf("only %d cycles completed against the recovered daemon", ok.Load()-strictFrom)
	}

	// Kubelet's cleanup: every pod it finds is stopped and removed.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pods, err := d.Runtime().ListPodSandbox(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pods left by the kills to remove", len(pods))
	for _, p := range pods {
		if err := d.Runtime().StopPodSandbox(ctx, p.Id); err != nil {
			t.Errorf("StopPodSandbox(%s): %v", p.Id, err)
		}
		if err := d.Runtime().RemovePodSandbox(ctx, p.Id); err != nil {
			t.Errorf("RemovePodSandbox(%s): %v", p.Id, err)
		}
	}
	if ctrs, err := d.Runtime().ListContainers(ctx, nil); err != nil || len(ctrs) != 0 {
		t.Errorf("containers after every pod was removed: %v, %v", ctrs, err)
	}
	checkNothingLeft(t, d, n, before, netBefore)
	if ingests, _ := os.ReadDir(filepath.Join(d.Root, "content", "ingest")); len(ingests) != 0 {
		t.Errorf("partial downloads left: %v", ingests)
	}
	if imgs, err := d.Images().ListImages(ctx, nil); err != nil || len(imgs) != 1 {
		t.Errorf("images after the churn: %v, %v; want busybox alone", imgs, err)
	}

	// The last daemon, after the same warm-up, uses what the first did.
	for i := range workers {
		if err := churnCycle(d, fmt.Sprintf("warm-again-%d", i), i%2 == 0); err != nil {
			t.Fatalf("warm-up of the last daemon: %v", err)
		}
	}
	// Up to 150 s: an idle Go daemon collects only at the runtime's forced
	// GC (every 2 min); the live heap is as of the last collection.
	var end usage
	framework.Eventually(t, 150*time.Second, func() (bool, string) {
		end = daemonUsage(t, d)
		return end.within(base, 0.10), fmt.Sprintf("last daemon %s, first %s: more than 10%% apart", end, base)
	})
	t.Logf("last daemon after warm-up:  %s", end)
}

// churnCycle runs a pod with one container (exec'ing into it when exec is
// set), then stops and removes it: one pod lifecycle as kubelet drives it.
func churnCycle(d *framework.Daemon, name string, exec bool) error {
	rs := d.Runtime()
	if rs == nil {
		return fmt.Errorf("no daemon")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pc := framework.PodConfig(name)
	defer os.RemoveAll(pc.GetLogDirectory())
	pod, err := rs.RunPodSandbox(ctx, pc, "")
	if err != nil {
		return fmt.Errorf("RunPodSandbox: %w", err)
	}
	ctr, err := rs.CreateContainer(ctx, pod, sleeper("c"), pc)
	if err != nil {
		return fmt.Errorf("CreateContainer: %w", err)
	}
	if err := rs.StartContainer(ctx, ctr); err != nil {
		return fmt.Errorf("StartContainer: %w", err)
	}
	if exec {
		if out, _, err := rs.ExecSync(ctx, ctr, []string{"echo", "ok"}, 10*time.Second); err != nil || string(out) != "ok\n" {
			return fmt.Errorf("ExecSync: %q %v", out, err)
		}
	}
	if err := rs.StopPodSandbox(ctx, pod); err != nil {
		return fmt.Errorf("StopPodSandbox: %w", err)
	}
	if err := rs.RemovePodSandbox(ctx, pod); err != nil {
		return fmt.Errorf("RemovePodSandbox: %w", err)
	}
	return nil
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// usage is what a daemon process holds.
type usage struct {
	fds, goroutines int
	heap            int64 // the Go heap live at the last GC
	rss             int64 // anonymous resident bytes (RssAnon)
}

func (u usage) String() string {
	return fmt.Sprintf("%d fds, %d goroutines, %.1f MiB live heap, %.1f MiB anonymous RSS",
		u.fds, u.goroutines, float64(u.heap)/(1<<20), float64(u.rss)/(1<<20))
}

// heapSlack is the least growth of the live heap within allows; a leak of
// a few KiB per pod lifecycle over the churn's ~120 still shows. The
// anonymous RSS also holds the garbage and free pages the Go runtime
// keeps between collections, which depend on when the daemon last
// collected and returned memory (its trim, every 30 s, runs once its
// anonymous memory grew 2 MiB above the lowest level a check saw since the
// last): it gets a wider slack, against gross leaks outside the heap.
const (
	heapSlack = 1 << 20
	rssSlack  = 4 << 20
)

// within reports whether every figure of u is at most frac above base's
// (its memory at most frac or the slack above, whichever is more).
func (u usage) within(base usage, frac float64) bool {
	return float64(u.fds) <= float64(base.fds)*(1+frac) &&
		float64(u.goroutines) <= float64(base.goroutines)*(1+frac) &&
		float64(u.heap) <= max(float64(base.heap)*(1+frac), float64(base.heap+heapSlack)) &&
		float64(u.rss) <= max(float64(base.rss)*(1+frac), float64(base.rss+rssSlack))
}

func daemonUsage(t *testing.T, d *framework.Daemon) usage {
	t.Helper()
	pid := d.Pid()
	resp, err := d.RuntimeClient().Status(testCtx(t), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	u := usage{fds: procCount(t, pid, "fd")}
	if u.goroutines, err = strconv.Atoi(resp.GetInfo()["goroutines"]); err != nil {
		t.Fatalf("Status info has no goroutine count: %v", resp.GetInfo())
	}
	if u.heap, err = strconv.ParseInt(resp.GetInfo()["heapLiveBytes"], 10, 64); err != nil {
		t.Fatalf("Status info has no live heap: %v", resp.GetInfo())
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		// The resident pages of the binary come and go with the daemon's
		// page eviction (pkg/exepages) and are not the daemon's to leak.
		if v, ok := strings.CutPrefix(l, "RssAnon:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			u.rss = kb << 10
		}
	}
	return u
}

// settledUsage waits for the daemon's figures to stop moving (background
// work of the warm-up ending) and returns them.
func settledUsage(t *testing.T, d *framework.Daemon) usage {
	t.Helper()
	prev := daemonUsage(t, d)
	for range 10 {
		time.Sleep(time.Second)
		cur := daemonUsage(t, d)
		if cur.fds == prev.fds && cur.goroutines == prev.goroutines {
			return cur
		}
		prev = cur
	}
	return prev
}
