package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// options are the command-line flags.
type options struct {
	settle         time.Duration
	endpoint       string
	image          string
	pods           int
	parallel       []int
	runtimeHandler string
	hostNetwork    bool
	cgroupParent   string
	namespace      string
	command        []string
	stopTimeout    int64
	rpcTimeout     time.Duration
	daemonPID      int
	daemonName     string
	jsonPath       string
	logRoot        string
	cleanupOnly    bool

	// The scale mode (scale.go).
	scale           bool
	endpoints       []string
	containers      int
	startScale      bool
	samples         int
	byRuntime       bool
	fixedOrder      bool
	gap             time.Duration
	images          int
	imageRepo       string
	burst           int
	podCgroupPrefix string
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("cri-bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: cri-bench [flags]\n\nRuns pods through their whole CRI lifecycle and reports latencies and memory.\n\n")
		fs.PrintDefaults()
	}
	var parallel, command string
	fs.StringVar(&o.endpoint, "endpoint", "unix:///run/cri-runtimed/cri-runtimed.sock", "CRI endpoint (unix://path or a socket path); with --scale a comma-separated list")
	fs.StringVar(&o.image, "image", "docker.io/library/busybox:latest", "container image; pulled if ImageStatus does not know it")
	fs.IntVar(&o.pods, "pods", 20, "pods per parallelism level (each with one container)")
	fs.StringVar(&parallel, "parallel", "1,4", "comma-separated parallelism levels, run one after the other")
	fs.StringVar(&o.runtimeHandler, "runtime-handler", "", "RunPodSandbox runtime_handler (\"\" is the runtime's default)")
	fs.BoolVar(&o.hostNetwork, "host-network", false, "run pods in the node's network namespace: no CNI, no pod IP")
	fs.BoolVar(&o.hostNetwork, "pod-cidr-free", false, "alias of --host-network (for runtimes or nodes without a pod CIDR)")
	fs.StringVar(&o.cgroupParent, "cgroup-parent", "", "pod cgroup_parent (\"\" lets the runtime choose)")
	fs.StringVar(&o.namespace, "namespace", "cri-bench", "pod metadata namespace")
	fs.StringVar(&command, "command", "sleep 3600", "container command (split on spaces)")
	fs.Int64Var(&o.stopTimeout, "stop-timeout", 0, "StopContainer timeout in seconds (0: kill at once)")
	fs.DurationVar(&o.rpcTimeout, "rpc-timeout", 2*time.Minute, "deadline of each CRI call")
	fs.IntVar(&o.daemonPID, "daemon-pid", 0, "PID of the runtime daemon (default: --daemon-name, else the owner of the endpoint socket)")
	fs.StringVar(&o.daemonName, "daemon-name", "", "comm name of the runtime daemon, e.g. containerd or cri-runtimed")
	fs.StringVar(&o.jsonPath, "json", "", "also write the report as JSON to this file")
	fs.StringVar(&o.logRoot, "log-root", "", "directory for the pods' log directories (default: a new temporary directory, removed at exit)")
	fs.DurationVar(&o.settle, "settle", 0, "wait this long after all pods run before sampling memory (steady-state RSS rather than start-up RSS)")
	fs.BoolVar(&o.cleanupOnly, "cleanup-only", false, "remove every pod and container an earlier cri-bench run left behind, then exit")
	fs.BoolVar(&o.scale, "scale", false, "scale mode: fill the node with --pods × --containers and time every list, status, stats and image call (--endpoint may list several runtimes, measured interleaved)")
	fs.IntVar(&o.containers, "containers", 20, "scale mode: containers per pod")
	fs.BoolVar(&o.startScale, "start", false, "scale mode: start the containers (default: only created)")
	fs.IntVar(&o.samples, "samples", 30, "scale mode: calls of each RPC")
	fs.BoolVar(&o.byRuntime, "by-runtime", false, "scale mode: in each sample, each runtime makes every call in turn, so that a call follows the same runtime's previous call (default: each call goes to every runtime in turn, so a runtime's call may follow a long call of another one, idle all that time)")
	fs.BoolVar(&o.fixedOrder, "fixed-order", false, "scale mode: make the calls in the table's order in every sample (default: in a new random order each sample, the same on every runtime, so that no call is always timed right after the same one: a runtime whose CPU went idle while the client decoded a large answer pays for waking it in its next call)")
	fs.DurationVar(&o.gap, "gap", 0, "scale mode: idle time before each timed call (kubelet's calls come seconds apart, so a runtime answers them from idle; 0 times them back to back)")
	fs.IntVar(&o.images, "images", 0, "scale mode: image tags to pull from --image-repo for the image calls (test/bench/pushimages --scale-images pushes them)")
	fs.StringVar(&o.imageRepo, "image-repo", "docker.io/library/scale", "scale mode: repository of the images, tagged 000, 001, ...")
	fs.IntVar(&o.burst, "burst", 20, "scale mode: pods started at once while the list calls are timed (0: no burst)")
	fs.StringVar(&o.podCgroupPrefix, "pod-cgroup-prefix", "", "scale mode: give each pod the cgroup parent <prefix>/pod<uid>, as kubelet does (cgroupfs), and remove those cgroups at the end")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, p := range strings.Split(parallel, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--parallel: %q is not a positive integer", p)
		}
		o.parallel = append(o.parallel, n)
	}
	if o.pods < 1 {
		return nil, errors.New("--pods must be at least 1")
	}
	if o.scale && (o.containers < 0 || o.samples < 1 || o.images < 0 || o.burst < 0 || o.gap < 0) {
		return nil, errors.New("--containers, --images, --burst and --gap must not be negative and --samples must be positive")
	}
	if o.command = strings.Fields(command); len(o.command) == 0 {
		return nil, errors.New("--command is empty")
	}
	for _, ep := range strings.Split(o.endpoint, ",") {
		ep = strings.TrimSpace(ep)
		if !strings.Contains(ep, "://") {
			ep = "unix://" + ep
		}
		if !strings.HasPrefix(ep, "unix://") {
			return nil, fmt.Errorf("--endpoint %s: only unix:// endpoints are supported (memory is read from the local /proc)", ep)
		}
		o.endpoints = append(o.endpoints, ep)
	}
	if len(o.endpoints) > 1 && !o.scale {
		return nil, errors.New("several endpoints need --scale")
	}
	o.endpoint = o.endpoints[0]
	return o, nil
}

// socketPath is the filesystem path of a unix:// endpoint.
func (o *options) socketPath() string { return strings.TrimPrefix(o.endpoint, "unix://") }

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cri-bench:", err)
		os.Exit(2)
	}
	runMode := run
	if o.scale {
		runMode = runScale
	}
	if err := runMode(o); err != nil {
		fmt.Fprintln(os.Stderr, "cri-bench:", err)
		os.Exit(1)
	}
}

// interruptible returns a context cancelled by the first Ctrl-C: the
// driver then stops issuing new work and removes what it created with
// fresh contexts. A second one exits at once, leaving --cleanup-only to
// finish the job.
func interruptible() (context.Context, context.CancelFunc) {
	ctx, stop := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "cri-bench: interrupted, cleaning up (interrupt again to exit now)")
		stop()
		<-sigs
		fmt.Fprintln(os.Stderr, "cri-bench: exiting without cleanup; run with --cleanup-only to remove what is left")
		os.Exit(130)
	}()
	return ctx, stop
}

// dial connects to a CRI endpoint; gRPC connects lazily, so errors show
// at the first call.
func dial(endpoint string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", endpoint, err)
	}
	return conn, nil
}

func run(o *options) error {
	ctx, stop := interruptible()
	defer stop()
	conn, err := dial(o.endpoint)
	if err != nil {
		return err
	}
	defer conn.Close()
	b := &bench{
		o:       o,
		rt:      runtimeapi.NewRuntimeServiceClient(conn),
		img:     runtimeapi.NewImageServiceClient(conn),
		created: newTracker(),
	}

	if o.cleanupOnly {
		return b.cleanup(map[string]string{labelOwner: ownerValue})
	}

	rctx, cancel := b.rpcCtx()
	ver, err := b.rt.Version(rctx, &runtimeapi.VersionRequest{})
	cancel()
	if err != nil {
		return fmt.Errorf("CRI Version call on %s: %w", o.endpoint, err)
	}
	report := &Report{
		Endpoint:       o.endpoint,
		RuntimeName:    ver.GetRuntimeName(),
		RuntimeVersion: ver.GetRuntimeVersion(),
		RuntimeHandler: o.runtimeHandler,
		Image:          o.image,
		HostNetwork:    o.hostNetwork,
		Started:        time.Now().UTC(),
	}
	report.DaemonPID, err = findDaemon(o.daemonPID, o.daemonName, o.socketPath())
	if err != nil {
		if o.daemonPID > 0 || o.daemonName != "" {
			return err
		}
		fmt.Fprintf(os.Stderr, "cri-bench: daemon process not found (%v); daemon memory is not reported\n", err)
	}
	if report.DaemonPID > 0 {
		if st, err := readStat(report.DaemonPID); err == nil {
			report.DaemonComm = st.Comm
		}
	}
	b.daemonPID = report.DaemonPID

	if err := b.prepare(ctx, report); err != nil {
		return err
	}
	defer b.removeLogRoot()

	var runErr error
	for _, p := range o.parallel {
		fmt.Fprintf(os.Stderr, "cri-bench: %d pods, parallel %d\n", o.pods, p)
		level, err := b.runLevel(ctx, p)
		if err != nil {
			if ctx.Err() == nil {
				runErr = fmt.Errorf("parallel %d: %w", p, err)
			}
			break
		}
		report.Levels = append(report.Levels, level)
	}
	// Whatever went wrong, remove what this run created before reporting.
	if err := b.cleanup(map[string]string{labelRun: b.runID}); err != nil {
		runErr = errors.Join(runErr, err)
	}
	if runErr == nil && ctx.Err() != nil {
		runErr = errors.New("interrupted")
	}
	if len(report.Levels) > 0 {
		report.WriteTable(os.Stdout)
		if o.jsonPath != "" {
			if err := writeJSON(o.jsonPath, report); err != nil {
				return err
			}
		}
	}
	return runErr
}

// writeJSON writes the --json report.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write --json: %w", err)
	}
	return nil
}
