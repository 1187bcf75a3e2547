package nri

import (
	"context"
	"sync"
	"sync/atomic"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Switch is the NRI the controllers hold for the daemon's life; a reload
// replaces what runs behind it (an Adapter with other settings, or Off)
// without touching a pod.
//
// A replacement waits for the creations in progress (the holders of
// BlockSync) to finish and holds new ones until it is done, so a pod or
// container is created under one NRI from its first hook to its last and
// is either listed to the new plugins' synchronization or relayed to them
// by its hooks. Other hooks are not held: one that runs during the
// replacement reaches the NRI being stopped, and the new plugins learn
// its outcome from their synchronization.
type Switch struct {
	cur atomic.Pointer[current]

	mu       sync.Mutex
	cond     *sync.Cond
	creating int  // BlockSync tickets not yet released
	swapping bool // a Replace runs: BlockSync waits
}

type current struct{ API }

var _ API = (*Switch)(nil)

// NewSwitch runs api until the first Replace.
func NewSwitch(api API) *Switch {
	s := &Switch{}
	s.cond = sync.NewCond(&s.mu)
	s.cur.Store(&current{api})
	return s
}

// Current is what runs.
func (s *Switch) Current() API { return s.cur.Load().API }

// Replace waits for the creations in progress, holds new ones, and runs
// replace with what runs; what it returns runs from then on. replace
// stops the old NRI and starts the new one; it must not create a pod or
// container. Replacements run one at a time.
func (s *Switch) Replace(replace func(old API) API) {
	s.mu.Lock()
	for s.swapping {
		s.cond.Wait()
	}
	s.swapping = true
	for s.creating > 0 {
		s.cond.Wait()
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.swapping = false
		s.cond.Broadcast()
		s.mu.Unlock()
	}()
	s.cur.Store(&current{replace(s.Current())})
}

// BlockSync implements API: the creation it opens runs entirely under
// the NRI that runs now, or waits for a replacement to end.
func (s *Switch) BlockSync() func() {
	s.mu.Lock()
	for s.swapping {
		s.cond.Wait()
	}
	s.creating++
	s.mu.Unlock()
	inner := s.Current().BlockSync()
	var once sync.Once
	return func() {
		once.Do(func() {
			inner()
			s.mu.Lock()
			s.creating--
			s.cond.Broadcast()
			s.mu.Unlock()
		})
	}
}

// Idle implements API: what runs is idle. While a BlockSync holds, no
// replacement changes what runs.
func (s *Switch) Idle() bool { return s.Current().Idle() }

func (s *Switch) RunPodSandbox(ctx context.Context, pod PodSandbox) error {
	return s.Current().RunPodSandbox(ctx, pod)
}

func (s *Switch) UpdatePodSandbox(ctx context.Context, pod PodSandbox, overhead, resources *runtimeapi.LinuxContainerResources) error {
	return s.Current().UpdatePodSandbox(ctx, pod, overhead, resources)
}

func (s *Switch) PostUpdatePodSandbox(ctx context.Context, pod PodSandbox) {
	s.Current().PostUpdatePodSandbox(ctx, pod)
}

func (s *Switch) StopPodSandbox(ctx context.Context, pod PodSandbox) {
	s.Current().StopPodSandbox(ctx, pod)
}

func (s *Switch) RemovePodSandbox(ctx context.Context, pod PodSandbox) {
	s.Current().RemovePodSandbox(ctx, pod)
}

func (s *Switch) CreateContainer(ctx context.Context, pod PodSandbox, ctr Container, spec *specs.Spec) error {
	return s.Current().CreateContainer(ctx, pod, ctr, spec)
}

func (s *Switch) UndoCreateContainer(ctx context.Context, pod PodSandbox, ctr Container) {
	s.Current().UndoCreateContainer(ctx, pod, ctr)
}

func (s *Switch) PostCreateContainer(ctx context.Context, pod PodSandbox, ctr Container) {
	s.Current().PostCreateContainer(ctx, pod, ctr)
}

func (s *Switch) StartContainer(ctx context.Context, pod PodSandbox, ctr Container) error {
	return s.Current().StartContainer(ctx, pod, ctr)
}

func (s *Switch) PostStartContainer(ctx context.Context, pod PodSandbox, ctr Container) {
	s.Current().PostStartContainer(ctx, pod, ctr)
}

func (s *Switch) UpdateContainer(ctx context.Context, pod PodSandbox, ctr Container, res *specs.LinuxResources) (*specs.LinuxResources, error) {
	return s.Current().UpdateContainer(ctx, pod, ctr, res)
}

func (s *Switch) PostUpdateContainer(ctx context.Context, pod PodSandbox, ctr Container) {
	s.Current().PostUpdateContainer(ctx, pod, ctr)
}

func (s *Switch) StopContainer(ctx context.Context, pod PodSandbox, ctr Container) {
	s.Current().StopContainer(ctx, pod, ctr)
}

func (s *Switch) ContainerExited(pod PodSandbox, ctr Container) {
	s.Current().ContainerExited(pod, ctr)
}

func (s *Switch) RemoveContainer(ctx context.Context, pod PodSandbox, ctr Container) {
	s.Current().RemoveContainer(ctx, pod, ctr)
}
