package server

import (
	"context"
	"errors"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/nri"
)

// NRIRuntime is what NRI plugins reach of the daemon: the pods and
// containers they are synchronized with, and the updates and evictions
// they ask for.
func (s *Server) NRIRuntime() nri.Runtime { return nriRuntime{s} }

type nriRuntime struct{ s *Server }

func (r nriRuntime) PodSandboxes() []nri.PodSandbox {
	pods := r.s.pods.List()
	out := make([]nri.PodSandbox, 0, len(pods))
	for _, p := range pods {
		out = append(out, p)
	}
	return out
}

func (r nriRuntime) Containers() []nri.PodContainer {
	ctrs := r.s.ctrs.List()
	out := make([]nri.PodContainer, 0, len(ctrs))
	for _, c := range ctrs {
		out = append(out, nri.PodContainer{Pod: c.Pod(), Container: c})
	}
	return out
}

func (r nriRuntime) UpdateContainer(ctx context.Context, id string, res *specs.LinuxResources) error {
	return r.s.ctrs.ApplyResources(ctx, id, res)
}

// EvictContainer stops the container at once, as containerd does.
func (r nriRuntime) EvictContainer(ctx context.Context, id, _ string) error {
	err := r.s.ctrs.Stop(ctx, id, 0)
	if errors.Is(err, container.ErrNotFound) {
		return nil
	}
	return err
}
