package cni

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
)

// ErrInvalidArgument is wrapped by errors caused by the pod's own settings
// (a malformed bandwidth annotation, port mapping or pod CIDR), which the
// CRI server reports as InvalidArgument rather than as a network failure.
var ErrInvalidArgument = errors.New("invalid argument")

// Annotations kubelet reads for traffic shaping; their values are
// Kubernetes resource quantities in bits per second.
const (
	IngressBandwidthAnnotation = "kubernetes.io/ingress-bandwidth"
	EgressBandwidthAnnotation  = "kubernetes.io/egress-bandwidth"
)

// Bandwidth bounds, as kubelet validates them: below 1kbit/s the tc token
// bucket cannot be built, above 1Pbit/s is a typo.
const (
	minBandwidth = 1000
	maxBandwidth = 1_000_000_000_000_000
)

// unlimitedBurst is the burst (bits) sent with every rate. Kubernetes has
// no burst annotation, and kubelet and containerd send MaxInt32 (~256MB),
// which in practice means "no burst limit" and stays below the bandwidth
// plugin's 4GB ceiling.
const unlimitedBurst = math.MaxInt32

// Pod is what a CNI call needs to know about a pod sandbox.
type Pod struct {
	// ID is the sandbox ID; CNI's container ID and the key of libcni's
	// result cache.
	ID        string
	Name      string
	Namespace string
	UID       string
	// NetNS is the path of the pod's pinned network namespace. Required
	// for Setup; Teardown accepts an empty or vanished one (the plugins
	// then only release what they hold on the host side).
	NetNS        string
	PortMappings []PortMapping
	// Annotations of the pod; only the bandwidth ones are used.
	Annotations map[string]string
	// CgroupParent is the pod's cgroup, for plugins that declare the
	// cgroupPath capability.
	CgroupParent string
	DNS          *DNS
}

// PortMapping is a hostPort of one of the pod's containers.
type PortMapping struct {
	HostPort      int32
	ContainerPort int32
	// Protocol is "tcp", "udp" or "sctp" (case-insensitive; empty is tcp).
	Protocol string
	HostIP   string
}

// DNS is the pod's resolver configuration, for plugins that declare the
// dns capability.
type DNS struct {
	Servers  []string
	Searches []string
	Options  []string
}

// cniArgs are the CNI_ARGS kubelet defined for pods. IgnoreUnknown lets
// plugins that know none of the K8S_ keys accept them.
func (p Pod) cniArgs() [][2]string {
	return [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", p.Namespace},
		{"K8S_POD_NAME", p.Name},
		{"K8S_POD_INFRA_CONTAINER_ID", p.ID},
		{"K8S_POD_UID", p.UID},
	}
}

// The runtimeConfig shapes the Kubernetes capability conventions define
// (github.com/containernetworking/cni/CONVENTIONS.md).
type (
	portMapEntry struct {
		HostPort      int32  `json:"hostPort"`
		ContainerPort int32  `json:"containerPort"`
		Protocol      string `json:"protocol"`
		HostIP        string `json:"hostIP,omitempty"`
	}
	bandwidthEntry struct {
		IngressRate  int64 `json:"ingressRate,omitempty"`
		IngressBurst int64 `json:"ingressBurst,omitempty"`
		EgressRate   int64 `json:"egressRate,omitempty"`
		EgressBurst  int64 `json:"egressBurst,omitempty"`
	}
	ipRange struct {
		Subnet string `json:"subnet"`
	}
	dnsEntry struct {
		Servers  []string `json:"servers,omitempty"`
		Searches []string `json:"searches,omitempty"`
		Options  []string `json:"options,omitempty"`
	}
)

// capabilityArgs builds the runtime config offered to the plugins; libcni
// passes each key only to plugins declaring it as a capability. ranges are
// the pod CIDRs from UpdatePodCIDR.
func (p Pod) capabilityArgs(ranges [][]ipRange) (map[string]any, error) {
	caps := map[string]any{}
	var pms []portMapEntry
	for _, pm := range p.PortMappings {
		// Only hostPorts go to CNI: a containerPort alone publishes
		// nothing.
		if pm.HostPort <= 0 {
			continue
		}
		proto := strings.ToLower(pm.Protocol)
		switch proto {
		case "":
			proto = "tcp"
		case "tcp", "udp", "sctp":
		default:
			return nil, fmt.Errorf("%w: port mapping %d->%d: unknown protocol %q", ErrInvalidArgument, pm.HostPort, pm.ContainerPort, pm.Protocol)
		}
		if pm.HostPort > 65535 || pm.ContainerPort <= 0 || pm.ContainerPort > 65535 {
			return nil, fmt.Errorf("%w: port mapping %d->%d: port out of range", ErrInvalidArgument, pm.HostPort, pm.ContainerPort)
		}
		if pm.HostIP != "" && net.ParseIP(pm.HostIP) == nil {
			return nil, fmt.Errorf("%w: port mapping %d->%d: bad host IP %q", ErrInvalidArgument, pm.HostPort, pm.ContainerPort, pm.HostIP)
		}
		pms = append(pms, portMapEntry{HostPort: pm.HostPort, ContainerPort: pm.ContainerPort, Protocol: proto, HostIP: pm.HostIP})
	}
	if len(pms) > 0 {
		caps["portMappings"] = pms
	}

	bw, err := p.bandwidth()
	if err != nil {
		return nil, err
	}
	if bw != nil {
		caps["bandwidth"] = bw
	}
	if len(ranges) > 0 {
		caps["ipRanges"] = ranges
	}
	if p.DNS != nil && (len(p.DNS.Servers)+len(p.DNS.Searches)+len(p.DNS.Options) > 0) {
		caps["dns"] = dnsEntry{Servers: p.DNS.Servers, Searches: p.DNS.Searches, Options: p.DNS.Options}
	}
	if p.CgroupParent != "" {
		caps["cgroupPath"] = p.CgroupParent
	}
	return caps, nil
}

// bandwidth reads the bandwidth annotations; nil when there are none.
func (p Pod) bandwidth() (*bandwidthEntry, error) {
	var bw bandwidthEntry
	for _, a := range []struct {
		key         string
		rate, burst *int64
	}{
		{IngressBandwidthAnnotation, &bw.IngressRate, &bw.IngressBurst},
		{EgressBandwidthAnnotation, &bw.EgressRate, &bw.EgressBurst},
	} {
		v, ok := p.Annotations[a.key]
		if !ok {
			continue
		}
		rate, err := parseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("%w: annotation %s: %w", ErrInvalidArgument, a.key, err)
		}
		if rate < minBandwidth || rate > maxBandwidth {
			return nil, fmt.Errorf("%w: annotation %s=%q: must be between 1k and 1P bits/s", ErrInvalidArgument, a.key, v)
		}
		*a.rate, *a.burst = rate, unlimitedBurst
	}
	if bw == (bandwidthEntry{}) {
		return nil, nil
	}
	return &bw, nil
}

// parsePodCIDRs turns UpdateRuntimeConfig's pod CIDR (comma-separated for
// dual-stack) into ipRanges: one range set per CIDR, so a dual-stack pod
// gets one address from each.
func parsePodCIDRs(s string) ([][]ipRange, error) {
	var ranges [][]ipRange
	for _, c := range strings.Split(s, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("%w: pod CIDR %q: %w", ErrInvalidArgument, c, err)
		}
		ranges = append(ranges, []ipRange{{Subnet: n.String()}})
	}
	return ranges, nil
}
