// Command nriplugin is the NRI plugin the e2e tests run against the
// daemon, written against NRI's plugin stub as any plugin is. One binary
// plays several roles (-role):
//
//   - recorder: appends every event it receives, with the pod and
//     container as NRI describes them, to -out (JSON lines);
//   - injector: adds an environment variable, a bind mount, a device, a
//     CDI device and an rlimit to every container it sees created;
//   - adjuster: replaces the memory limit of every container update
//     with -memory, and after a container with the label
//     "nri-test/cpu-shares" starts, asks (unsolicited) for those shares;
//   - fault: on -event, for pods or containers whose name contains
//     -match, hangs, crashes or returns an error (-mode).
//
// It runs either connected to the daemon's NRI socket (-socket) or
// started by the daemon from its plugin path, when the config it is
// given (JSON of the flags' names) sets the same options.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

// options are the flags, also accepted as the plugin's JSON config.
type options struct {
	Role   string `json:"role"`
	Out    string `json:"out"`
	Env    string `json:"env"`    // KEY=VALUE
	Mount  string `json:"mount"`  // host:container
	Device string `json:"device"` // host device path, given to the container at the same path
	Rlimit string `json:"rlimit"` // TYPE:soft:hard
	CDI    string `json:"cdi"`    // vendor.com/class=device
	Memory int64  `json:"memory"`
	Event  string `json:"event"`
	Match  string `json:"match"`
	Mode   string `json:"mode"` // hang, crash, error
	// Ready is a file created once the plugin is synchronized.
	Ready string `json:"ready"`
}

func main() {
	var o options
	name := flag.String("name", "", "plugin name (not needed when started by the runtime)")
	idx := flag.String("idx", "", "plugin index")
	socket := flag.String("socket", "", "NRI socket")
	flag.StringVar(&o.Role, "role", "", "recorder, injector, adjuster or fault")
	flag.StringVar(&o.Out, "out", "", "recorder: file the events are appended to")
	flag.StringVar(&o.Env, "env", "", "injector: KEY=VALUE")
	flag.StringVar(&o.Mount, "mount", "", "injector: host:container bind mount")
	flag.StringVar(&o.Device, "device", "", "injector: host device path[:path in the container]")
	flag.StringVar(&o.Rlimit, "rlimit", "", "injector: TYPE:soft:hard")
	flag.StringVar(&o.CDI, "cdi", "", "injector: fully qualified CDI device name")
	flag.Int64Var(&o.Memory, "memory", 0, "adjuster: memory limit of every update")
	flag.StringVar(&o.Event, "event", "", "fault: event to fail")
	flag.StringVar(&o.Match, "match", "", "fault: pod or container name substring")
	flag.StringVar(&o.Mode, "mode", "", "fault: hang, crash or error")
	flag.StringVar(&o.Ready, "ready", "", "file created once the plugin is synchronized")
	flag.Parse()

	p := &plugin{opts: o}
	var opts []stub.Option
	if *name != "" {
		opts = append(opts, stub.WithPluginName(*name))
	}
	if *idx != "" {
		opts = append(opts, stub.WithPluginIdx(*idx))
	}
	if *socket != "" {
		opts = append(opts, stub.WithSocketPath(*socket))
	}
	s, err := stub.New(p, append(opts, stub.WithOnClose(func() { os.Exit(0) }))...)
	if err != nil {
		log.Fatalf("create plugin stub: %v", err)
	}
	p.stub = s
	if err := s.Run(context.Background()); err != nil {
		log.Fatalf("plugin exited: %v", err)
	}
}

type plugin struct {
	stub stub.Stub
	mu   sync.Mutex
	opts options
}

// Configure takes the JSON config the runtime passes to a plugin it
// started.
func (p *plugin) Configure(_ context.Context, config, runtime, version string) (api.EventMask, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if strings.TrimSpace(config) != "" {
		if err := json.Unmarshal([]byte(config), &p.opts); err != nil {
			return 0, fmt.Errorf("config: %w", err)
		}
	}
	log.Printf("configured by %s %s as %q", runtime, version, p.opts.Role)
	p.record("Configure", nil, nil, map[string]any{"runtime": runtime, "version": version})
	return 0, nil
}

// record is one line of the recorder's output.
type record struct {
	Event      string            `json:"event"`
	Time       time.Time         `json:"time"`
	Pod        *api.PodSandbox   `json:"pod,omitempty"`
	Container  *api.Container    `json:"container,omitempty"`
	Pods       []*api.PodSandbox `json:"pods,omitempty"`
	Containers []*api.Container  `json:"containers,omitempty"`
	Extra      map[string]any    `json:"extra,omitempty"`
}

func (p *plugin) record(event string, pod *api.PodSandbox, ctr *api.Container, extra map[string]any) {
	if p.opts.Role != "recorder" || p.opts.Out == "" {
		return
	}
	p.write(record{Event: event, Time: time.Now(), Pod: pod, Container: ctr, Extra: extra})
}

func (p *plugin) write(r record) {
	b, err := json.Marshal(r)
	if err != nil {
		log.Printf("encode %s: %v", r.Event, err)
		return
	}
	f, err := os.OpenFile(p.opts.Out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		log.Printf("open %s: %v", p.opts.Out, err)
		return
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		log.Printf("write %s: %v", p.opts.Out, err)
	}
}

// fault fails event for the pod or container whose name matches.
func (p *plugin) fault(event string, pod *api.PodSandbox, ctr *api.Container) error {
	o := p.opts
	if o.Role != "fault" || o.Event != event {
		return nil
	}
	name := pod.GetName()
	if ctr != nil {
		name = ctr.GetName()
	}
	if o.Match != "" && !strings.Contains(name, o.Match) {
		return nil
	}
	switch o.Mode {
	case "hang":
		log.Printf("%s of %s: hanging", event, name)
		select {}
	case "crash":
		log.Printf("%s of %s: crashing", event, name)
		os.Exit(3)
	case "error":
		return fmt.Errorf("nriplugin refuses %s of %s", event, name)
	}
	return nil
}

func (p *plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	if p.opts.Role == "recorder" && p.opts.Out != "" {
		p.write(record{Event: "Synchronize", Time: time.Now(), Pods: pods, Containers: ctrs})
	}
	if p.opts.Ready != "" {
		if err := os.WriteFile(p.opts.Ready, nil, 0o644); err != nil {
			log.Printf("ready file: %v", err)
		}
	}
	return nil, nil
}

func (p *plugin) Shutdown(context.Context) { p.record("Shutdown", nil, nil, nil) }

func (p *plugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RunPodSandbox", pod, nil, nil)
	return p.fault("RunPodSandbox", pod, nil)
}

func (p *plugin) UpdatePodSandbox(_ context.Context, pod *api.PodSandbox, overhead, res *api.LinuxResources) error {
	p.record("UpdatePodSandbox", pod, nil, map[string]any{"overhead": overhead, "resources": res})
	return p.fault("UpdatePodSandbox", pod, nil)
}

func (p *plugin) PostUpdatePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("PostUpdatePodSandbox", pod, nil, nil)
	return nil
}

func (p *plugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("StopPodSandbox", pod, nil, nil)
	return p.fault("StopPodSandbox", pod, nil)
}

func (p *plugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RemovePodSandbox", pod, nil, nil)
	return p.fault("RemovePodSandbox", pod, nil)
}

func (p *plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.record("CreateContainer", pod, ctr, nil)
	if err := p.fault("CreateContainer", pod, ctr); err != nil {
		return nil, nil, err
	}
	if p.opts.Role != "injector" {
		return nil, nil, nil
	}
	adj, err := p.injection()
	return adj, nil, err
}

// injection is what the injector adds to a container.
func (p *plugin) injection() (*api.ContainerAdjustment, error) {
	o := p.opts
	adj := &api.ContainerAdjustment{}
	if k, v, ok := strings.Cut(o.Env, "="); ok {
		adj.AddEnv(k, v)
	}
	if host, ctr, ok := strings.Cut(o.Mount, ":"); ok {
		adj.AddMount(&api.Mount{Source: host, Destination: ctr, Type: "bind", Options: []string{"rbind", "ro"}})
	}
	if o.Device != "" {
		host, ctr, ok := strings.Cut(o.Device, ":")
		if !ok {
			ctr = host
		}
		d, err := hostDevice(host, ctr)
		if err != nil {
			return nil, err
		}
		adj.AddDevice(d)
	}
	if o.CDI != "" {
		adj.AddCDIDevice(&api.CDIDevice{Name: o.CDI})
	}
	if o.Rlimit != "" {
		var typ string
		var soft, hard uint64
		if _, err := fmt.Sscanf(strings.ReplaceAll(o.Rlimit, ":", " "), "%s %d %d", &typ, &soft, &hard); err != nil {
			return nil, fmt.Errorf("rlimit %q: %w", o.Rlimit, err)
		}
		adj.AddRlimit(typ, hard, soft)
	}
	return adj, nil
}

func (p *plugin) PostCreateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.record("PostCreateContainer", pod, ctr, nil)
	return nil
}

func (p *plugin) StartContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.record("StartContainer", pod, ctr, nil)
	return p.fault("StartContainer", pod, ctr)
}

func (p *plugin) PostStartContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.record("PostStartContainer", pod, ctr, nil)
	if p.opts.Role == "adjuster" {
		if v, ok := ctr.GetLabels()["nri-test/cpu-shares"]; ok {
			// Unsolicited, so after this event is answered: the runtime
			// serves one plugin request at a time.
			go p.setShares(ctr.GetId(), v)
		}
	}
	return nil
}

func (p *plugin) setShares(id, v string) {
	var shares uint64
	if _, err := fmt.Sscan(v, &shares); err != nil {
		log.Printf("label nri-test/cpu-shares %q: %v", v, err)
		return
	}
	time.Sleep(100 * time.Millisecond)
	u := &api.ContainerUpdate{ContainerId: id}
	u.SetLinuxCPUShares(shares)
	failed, err := p.stub.UpdateContainers([]*api.ContainerUpdate{u})
	log.Printf("unsolicited update of %s to %d cpu shares: failed %v, err %v", id, shares, failed, err)
}

func (p *plugin) UpdateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container, res *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	p.record("UpdateContainer", pod, ctr, map[string]any{"resources": res})
	if err := p.fault("UpdateContainer", pod, ctr); err != nil {
		return nil, err
	}
	if p.opts.Role != "adjuster" || p.opts.Memory == 0 {
		return nil, nil
	}
	u := &api.ContainerUpdate{ContainerId: ctr.GetId()}
	u.SetLinuxMemoryLimit(p.opts.Memory)
	return []*api.ContainerUpdate{u}, nil
}

func (p *plugin) PostUpdateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.record("PostUpdateContainer", pod, ctr, nil)
	return nil
}

func (p *plugin) StopContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) ([]*api.ContainerUpdate, error) {
	p.record("StopContainer", pod, ctr, nil)
	return nil, p.fault("StopContainer", pod, ctr)
}

func (p *plugin) RemoveContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.record("RemoveContainer", pod, ctr, nil)
	return p.fault("RemoveContainer", pod, ctr)
}
