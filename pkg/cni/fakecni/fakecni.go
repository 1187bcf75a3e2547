// Package fakecni is an in-memory pod network for the controllers' and
// the CRI server's tests: it hands out addresses on ADD, releases them on
// DEL (idempotent, like the plugins), remembers what is attached as
// libcni's cache does, and fails on demand.
package fakecni

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/cri-runtimed/cri-runtimed/pkg/cni"
)

// Network is a fake pod network. Set the faults before the calls.
type Network struct {
	mu       sync.Mutex
	attached map[string]net.IP
	next     byte
	calls    []string
	// SetupErr fails every ADD; TeardownErr every DEL; StatusErr makes
	// the network not ready.
	SetupErr, TeardownErr, StatusErr error
	podCIDR                          string
	// BeforeSetup, when set, runs at the start of every ADD (a test
	// holds a pod start there).
	BeforeSetup func()
}

// New returns an empty network.
func New() *Network { return &Network{attached: map[string]net.IP{}, next: 2} }

// Setup attaches the pod and returns its address.
func (n *Network) Setup(ctx context.Context, p cni.Pod) (*cni.Result, error) {
	if n.BeforeSetup != nil {
		n.BeforeSetup()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, "ADD "+p.ID)
	if n.SetupErr != nil {
		return nil, n.SetupErr
	}
	if p.NetNS == "" {
		return nil, fmt.Errorf("%w: ADD of %s without a network namespace", cni.ErrInvalidArgument, p.ID)
	}
	ip := net.IPv4(10, 88, 0, n.next)
	n.next++
	n.attached[p.ID] = ip
	return &cni.Result{Network: "fake", IPs: []net.IP{ip}}, nil
}

// Teardown detaches the pod; detaching one that is not attached succeeds.
func (n *Network) Teardown(ctx context.Context, p cni.Pod) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, "DEL "+p.ID)
	if n.TeardownErr != nil {
		return n.TeardownErr
	}
	delete(n.attached, p.ID)
	return nil
}

// Attached lists the attached pods.
func (n *Network) Attached() ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]string, 0, len(n.attached))
	for id := range n.attached {
		out = append(out, id)
	}
	return out, nil
}

// Status is nil when the network is ready.
func (n *Network) Status() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.StatusErr
}

// UpdatePodCIDR records the node's pod CIDR.
func (n *Network) UpdatePodCIDR(cidr string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.podCIDR = cidr
	return nil
}

// Calls returns the ADDs and DELs so far ("ADD <id>", "DEL <id>").
func (n *Network) Calls() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.calls...)
}
