package cni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"k8s.io/klog/v2"
)

// Result is what Setup reports about the pod's network.
type Result struct {
	// Network is the name of the network the pod joined.
	Network string
	// IPs are the pod's addresses, IPv4 before IPv6: kubelet takes the
	// first as the pod's primary IP, and IPv4-primary is what
	// containerd and CRI-O report for dual-stack pods.
	IPs []net.IP
	// Interfaces are the interfaces the plugins reported, on the host
	// and in the pod.
	Interfaces []Interface
}

// Interface is one interface of a Result.
type Interface struct {
	Name string
	MAC  string
	// Sandbox is the netns path for interfaces inside the pod, empty
	// for host-side ones.
	Sandbox string
}

// Setup runs CNI ADD for the pod: the network's plugins in order with
// interface eth0 in p.NetNS. When ADD fails, DEL is run with the same
// arguments before the error is returned, so a failed Setup leaves
// nothing behind and needs no Teardown (calling it anyway is harmless).
// Errors wrap a *NotReadyError when no network config is usable,
// ErrInvalidArgument when the pod's settings are malformed, and
// ErrPluginTimeout when a plugin hung.
func (m *Manager) Setup(ctx context.Context, p Pod) (*Result, error) {
	if p.ID == "" || p.NetNS == "" {
		return nil, fmt.Errorf("cni setup: %w: pod ID and netns path are required", ErrInvalidArgument)
	}
	n, ranges, err := m.current(ctx)
	if err != nil {
		return nil, fmt.Errorf("cni setup of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	caps, err := p.capabilityArgs(ranges)
	if err != nil {
		return nil, fmt.Errorf("cni setup of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	rt := &libcni.RuntimeConf{
		ContainerID:    p.ID,
		NetNS:          p.NetNS,
		IfName:         PodInterface,
		Args:           p.cniArgs(),
		CapabilityArgs: caps,
	}
	start := time.Now()
	if m.opts.Loopback {
		lo := &libcni.RuntimeConf{ContainerID: p.ID, NetNS: p.NetNS, IfName: "lo", Args: rt.Args}
		if _, err := m.cni().AddNetwork(ctx, m.loopback, lo); err != nil {
			err = fmt.Errorf("cni setup of pod %s/%s: loopback: %w", p.Namespace, p.Name, err)
			return nil, errors.Join(err, m.undoLoopback(ctx, lo))
		}
	}
	raw, err := m.cni().AddNetworkList(ctx, n.list, rt)
	var res *Result
	if err == nil {
		res, err = convertResult(n.list.Name, raw)
	}
	if err != nil {
		err = fmt.Errorf("cni setup of pod %s/%s in network %q: %w", p.Namespace, p.Name, n.list.Name, err)
		klog.ErrorS(err, "CNI ADD failed, running DEL", "podSandboxID", p.ID)
		return nil, errors.Join(err, m.undo(ctx, n.list, rt))
	}
	klog.V(2).InfoS("Pod network set up", "pod", klog.KRef(p.Namespace, p.Name), "podSandboxID", p.ID,
		"network", n.list.Name, "ips", res.IPs, "duration", time.Since(start))
	return res, nil
}

// undo runs the DEL that follows a failed ADD. It must run even when the
// caller's ctx is done (kubelet gave up waiting), or the address the IPAM
// plugin handed out would leak; each plugin call stays bounded by
// PluginTimeout.
func (m *Manager) undo(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	if err := m.cni().DelNetworkList(ctx, list, rt); err != nil {
		errs = append(errs, fmt.Errorf("cleanup DEL after failed ADD: %w", err))
	}
	if m.opts.Loopback {
		lo := &libcni.RuntimeConf{ContainerID: rt.ContainerID, NetNS: rt.NetNS, IfName: "lo", Args: rt.Args}
		errs = append(errs, m.undoLoopback(ctx, lo))
	}
	return errors.Join(errs...)
}

func (m *Manager) undoLoopback(ctx context.Context, rt *libcni.RuntimeConf) error {
	if err := m.cni().DelNetwork(context.WithoutCancel(ctx), m.loopback, rt); err != nil {
		return fmt.Errorf("cleanup loopback DEL: %w", err)
	}
	return nil
}

// Teardown runs CNI DEL for the pod. It uses the config and arguments
// cached by the pod's ADD when they exist, so it works after a restart
// and after the conf dir changed or emptied; otherwise it uses the current
// config, and without one there is nothing to do. Teardown is idempotent:
// tearing down a pod twice, or one never set up, succeeds. On error the
// caller must keep the pod's netns and retry (StopPodSandbox fails and
// kubelet calls it again): deleting the namespace first would leave the
// IPAM reservation and host-side rules with nobody to release them.
func (m *Manager) Teardown(ctx context.Context, p Pod) error {
	if p.ID == "" {
		return fmt.Errorf("cni teardown: %w: pod ID is required", ErrInvalidArgument)
	}
	atts, err := m.cni().GetCachedAttachments(p.ID)
	if err != nil {
		// An unreadable cache dir is not a reason to skip DEL: fall
		// through to the current config.
		klog.ErrorS(err, "Reading CNI cache failed", "podSandboxID", p.ID)
	}
	var errs []error
	done := false
	for _, a := range atts {
		netns := p.NetNS
		if netns == "" {
			netns = a.NetNS
		}
		rt := &libcni.RuntimeConf{
			ContainerID:    p.ID,
			NetNS:          netns,
			IfName:         a.IfName,
			Args:           a.CniArgs,
			CapabilityArgs: a.CapabilityArgs,
		}
		switch a.IfName {
		case PodInterface:
			list, err := libcni.NetworkConfFromBytes(a.Config)
			if err == nil {
				err = validateList(list)
			}
			if err != nil {
				// Not usable; DEL with the current config below.
				klog.ErrorS(err, "Cached CNI config unusable", "podSandboxID", p.ID, "network", a.Network)
				continue
			}
			if err := m.cni().DelNetworkList(ctx, list, rt); err != nil {
				errs = append(errs, fmt.Errorf("network %q (cached config): %w", list.Name, err))
			}
			done = true
		case "lo":
			if err := m.cni().DelNetwork(ctx, m.loopback, rt); err != nil {
				errs = append(errs, fmt.Errorf("loopback: %w", err))
			}
		}
	}
	if !done {
		errs = append(errs, m.teardownCurrent(ctx, p))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cni teardown of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	klog.V(2).InfoS("Pod network torn down", "pod", klog.KRef(p.Namespace, p.Name), "podSandboxID", p.ID)
	return nil
}

// teardownCurrent runs DEL with the current config, for a pod that has no
// cache entry: its ADD never finished (a crash mid-ADD), or it was never
// set up, where DEL is a no-op by the spec.
func (m *Manager) teardownCurrent(ctx context.Context, p Pod) error {
	m.mu.RLock()
	n, ranges := m.net, m.ranges
	m.mu.RUnlock()
	if n == nil {
		klog.V(2).InfoS("No cached CNI result and no network config: nothing to tear down", "podSandboxID", p.ID)
		return nil
	}
	caps, err := p.capabilityArgs(ranges)
	if err != nil {
		// The pod's settings were rejected at Setup already, so its
		// ADD never ran with them; DEL without them.
		caps = nil
	}
	rt := &libcni.RuntimeConf{
		ContainerID:    p.ID,
		NetNS:          p.NetNS,
		IfName:         PodInterface,
		Args:           p.cniArgs(),
		CapabilityArgs: caps,
	}
	if err := m.cni().DelNetworkList(ctx, n.list, rt); err != nil {
		return fmt.Errorf("network %q (current config %s): %w", n.list.Name, n.file, err)
	}
	return nil
}

// convertResult extracts the pod's addresses from the final plugin result.
func convertResult(network string, raw types.Result) (*Result, error) {
	r, err := types100.NewResultFromResult(raw)
	if err != nil {
		return nil, fmt.Errorf("convert CNI result: %w", err)
	}
	res := &Result{Network: network}
	for _, i := range r.Interfaces {
		res.Interfaces = append(res.Interfaces, Interface{Name: i.Name, MAC: i.Mac, Sandbox: i.Sandbox})
	}
	for _, ip := range r.IPs {
		// An address of a host-side interface (bridge plugin's gateway
		// in some versions) is not the pod's. Addresses without an
		// interface index are assumed to be the pod's.
		if ip.Interface != nil {
			idx := *ip.Interface
			if idx < 0 || idx >= len(r.Interfaces) || r.Interfaces[idx].Sandbox == "" {
				continue
			}
		}
		res.IPs = append(res.IPs, ip.Address.IP)
	}
	// Stable: within a family the plugins' order stands.
	slices.SortStableFunc(res.IPs, func(a, b net.IP) int {
		return family(a) - family(b)
	})
	return res, nil
}

func family(ip net.IP) int {
	if ip.To4() != nil {
		return 4
	}
	return 6
}

// Attached returns the IDs of the pods with a cached ADD, that is pods
// Setup connected and Teardown has not yet disconnected. Recovery after a
// restart compares them with its sandbox records and calls Teardown for
// the ones no record claims, so no address or hostPort outlives its pod.
func (m *Manager) Attached() ([]string, error) {
	atts, err := m.cni().GetCachedAttachments("")
	if err != nil {
		return nil, fmt.Errorf("read CNI cache: %w", err)
	}
	var ids []string
	for _, a := range atts {
		if !slices.Contains(ids, a.ContainerID) {
			ids = append(ids, a.ContainerID)
		}
	}
	slices.Sort(ids)
	return ids, nil
}
