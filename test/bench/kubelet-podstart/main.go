// Command kubelet-podstart measures pod start-up as kubelet reports it, for
// any CRI runtime: it runs a standalone kubelet (test/kubeletnode) against
// --endpoint and, for each of --pods pods, writes a static pod manifest and
// polls kubelet's read-only /pods every 10 ms until kubelet reports the pod
// Running and Ready; then it removes the pod and waits until kubelet has
// torn it down before the next one. The first pod (which pulls the image)
// is a warm-up and is not counted.
//
// Reported: nearest-rank p50/p90, min, max and mean of manifest→Ready.
// That span is what a user of the node sees; it includes kubelet's own
// work (its file watch, pod worker, PLEG relist every second unless
// EventedPLEG is on, status manager), so it is far above the runtime's
// RunPodSandbox→StartContainer time and only comparable between runtimes
// measured the same way on the same machine.
//
//	kubelet-podstart --kubelet /var/cache/cri-runtimed-test/kubelet/v1.34.4/kubelet \
//	    --endpoint unix:///run/cri-runtimed/cri-runtimed.sock --pods 20
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cri-runtimed/cri-runtimed/test/kubeletnode"
)

func main() {
	kubelet := flag.String("kubelet", "", "kubelet binary (make kubelet)")
	endpoint := flag.String("endpoint", "unix:///run/cri-runtimed/cri-runtimed.sock", "CRI endpoint")
	driver := flag.String("cgroup-driver", "cgroupfs", "cgroup driver of the runtime")
	pods := flag.Int("pods", 20, "pods measured (after one warm-up pod)")
	image := flag.String("image", "busybox:latest", "image of the pods' container")
	hostNetwork := flag.Bool("host-network", false, "host-network pods")
	gates := flag.String("feature-gates", "", "kubelet feature gates, e.g. EventedPLEG=true")
	jsonOut := flag.String("json", "", "also write the samples (ms) as JSON to this file")
	flag.Parse()
	if *kubelet == "" {
		log.Fatal("--kubelet is required")
	}
	fg := map[string]bool{}
	for _, kv := range strings.Split(*gates, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			fg[k] = v == "true"
		}
	}
	dir, err := os.MkdirTemp("", "kubelet-podstart-")
	if err != nil {
		log.Fatal(err)
	}
	node, err := kubeletnode.New(kubeletnode.Options{
		Binary: *kubelet, Endpoint: *endpoint, CgroupDriver: *driver, Dir: dir, FeatureGates: fg,
	})
	if err != nil {
		os.RemoveAll(dir)
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	samples, runErr := run(ctx, node, *pods, *image, *hostNetwork)
	stop()
	if err := node.Close(2 * time.Minute); err != nil {
		log.Printf("teardown: %v", err)
	}
	if runErr != nil {
		log.Fatal(runErr)
	}
	report(samples)
	if *jsonOut != "" {
		ms := make([]float64, len(samples))
		for i, s := range samples {
			ms[i] = float64(s) / float64(time.Millisecond)
		}
		data, _ := json.Marshal(map[string]any{"endpoint": *endpoint, "kubelet": *kubelet, "manifest_to_ready_ms": ms})
		if err := os.WriteFile(*jsonOut, data, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

func run(ctx context.Context, node *kubeletnode.Node, n int, image string, hostNetwork bool) ([]time.Duration, error) {
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := node.Start(startCtx); err != nil {
		return nil, err
	}
	var out []time.Duration
	for i := 0; i <= n; i++ {
		name := fmt.Sprintf("podstart-%d", i)
		d, err := startOne(ctx, node, name, image, hostNetwork)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, d)
		}
		log.Printf("%s ready after %s", name, d.Round(time.Millisecond))
	}
	return out, nil
}

// startOne adds the pod, times manifest→Ready, removes it and waits until
// kubelet and the runtime are done with it.
func startOne(ctx context.Context, node *kubeletnode.Node, name, image string, hostNetwork bool) (time.Duration, error) {
	grace := int64(0)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "bench"},
		Spec: corev1.PodSpec{
			HostNetwork:                   hostNetwork,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "main", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"sleep", "3600"},
			}},
		},
	}
	start := time.Now()
	if err := node.AddPod(pod); err != nil {
		return 0, err
	}
	ready := time.Duration(0)
	deadline := time.Now().Add(3 * time.Minute)
	for ready == 0 {
		p, ok, err := node.Pod(ctx, name)
		if err == nil && ok && p.Status.Phase == corev1.PodRunning && isReady(&p) {
			ready = time.Since(start)
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("%s not ready (err %v, ctx %v); kubelet log tail:\n%s", name, err, ctx.Err(), node.LogTail(30))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := node.RemovePod(name); err != nil {
		return 0, err
	}
	for {
		_, ok, err := node.Pod(ctx, name)
		if err == nil && !ok && len(kubeletnode.PodCgroups(node.CgroupDriver())) == 0 {
			return ready, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("%s not torn down: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func report(s []time.Duration) {
	if len(s) == 0 {
		return
	}
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(sorted))+0.999999) - 1
		return sorted[max(0, min(i, len(sorted)-1))]
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
	fmt.Printf("manifest→ready over %d pods (ms): p50 %s  p90 %s  min %s  max %s  mean %s\n",
		len(s), ms(rank(0.5)), ms(rank(0.9)), ms(sorted[0]), ms(sorted[len(sorted)-1]), ms(sum/time.Duration(len(s))))
}
