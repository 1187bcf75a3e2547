package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
	"github.com/cri-runtimed/cri-runtimed/pkg/cni"
	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
	"github.com/cri-runtimed/cri-runtimed/pkg/version"
)

const criAPIVersion = "v1"

// Version answers kubelet's and crictl's handshake.
func (s *Server) Version(ctx context.Context, req *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           "0.1.0",
		RuntimeName:       version.RuntimeName,
		RuntimeVersion:    version.Version,
		RuntimeApiVersion: criAPIVersion,
	}, nil
}

// Status reports the runtime ready, and the network ready once a valid
// CNI config is loaded (kubelet keeps the node NotReady until then).
func (s *Server) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	network := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	if err := s.net.Status(); err != nil {
		network.Status = false
		network.Reason = "NetworkPluginNotReady"
		network.Message = "cri-runtimed: network plugin is not ready: " + err.Error()
		var nr *cni.NotReadyError
		if errors.As(err, &nr) && nr.Reason != "" {
			network.Reason = nr.Reason
		}
	}
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
			{Type: runtimeapi.RuntimeReady, Status: true},
			network,
		}},
	}
	hs := s.handlerSet()
	for _, name := range hs.names() {
		h := name
		if h == "" {
			h = hs.def
		}
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtimeapi.RuntimeHandler{Name: name, Features: &runtimeapi.RuntimeHandlerFeatures{
			// Pods get user namespaces from the mappings kubelet sends.
			UserNamespaces:          hs.features[h].UserNamespaces,
			RecursiveReadOnlyMounts: hs.features[h].RecursiveReadOnly,
		}})
	}
	resp.Features = runtimeFeatures
	if req.GetVerbose() {
		cfg, err := json.Marshal(s.cfg)
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"config": string(cfg)}
		// Where the kernel has no AppArmor (or SELinux), profiles are not
		// applied: RuntimeDefault and Unconfined are accepted, Localhost is
		// refused. Say so, as operators otherwise cannot tell.
		lsm, err := json.Marshal(map[string]bool{"apparmor": oci.AppArmorEnabled(), "selinux": oci.SELinuxEnabled()})
		if err != nil {
			return nil, err
		}
		resp.Info["securityModules"] = string(lsm)
		features, err := json.Marshal(s.featureInfo())
		if err != nil {
			return nil, err
		}
		// Not "features": crictl info prints RuntimeFeatures under that key.
		resp.Info["supportedFeatures"] = string(features)
		// The snapshotter in use: overlayfs falls back to native where
		// overlay cannot mount, which operators (and tests) must see.
		resp.Info["snapshotter"] = s.images.Snapshotter().Name()
		// Whether checkpoint/restore works, and if not CRIU's reason.
		criu, err := json.Marshal(s.criu)
		if err != nil {
			return nil, err
		}
		resp.Info["checkpoint"] = string(criu)
		debugInfo(resp.Info)
	}
	return resp, nil
}

// runtimeFeatures are the handler-independent features: ContainerUser and
// SupplementalGroupsPolicy, user-namespace pods on the host network (the
// host's /sys bound read-only), and mount_options (noexec, nodev, nosuid
// on bind mounts; runc applies them).
var runtimeFeatures = &runtimeapi.RuntimeFeatures{
	SupplementalGroupsPolicy:  true,
	UserNamespacesHostNetwork: true,
	MountOptions:              true,
}

// featureInfo documents, in Status's verbose info, the features reported
// and the CRI fields honoured that have no feature flag.
func (s *Server) featureInfo() map[string]any {
	hs := s.handlerSet()
	handlers := map[string]HandlerFeatures{}
	for _, n := range hs.names()[1:] {
		handlers[n] = hs.features[n]
	}
	return map[string]any{
		"supplementalGroupsPolicy":  runtimeFeatures.SupplementalGroupsPolicy,
		"userNamespacesHostNetwork": runtimeFeatures.UserNamespacesHostNetwork,
		"mountOptions":              runtimeFeatures.MountOptions,
		"handlers":                  handlers,
		"imageVolumes":              true,
		"imageVolumeSubPath":        true,
		"imageVolumeArtifacts":      true,
		"cdiDevices":                s.cfg.Runtime.CDISpecDirs,
		"containerStopSignals":      true,
		"eventedPLEG":               true,
	}
}

// names lists the runtime handlers, the default one
// first and also under the empty name kubelet uses for it.
func (hs *handlerSet) names() []string {
	names := []string{"", hs.def}
	var rest []string
	for n := range hs.features {
		if n != hs.def {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	return append(names, rest...)
}

// UpdateRuntimeConfig takes the node's pod CIDR for CNI configs that ask
// for it.
func (s *Server) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	if cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr(); cidr != "" {
		if err := s.net.UpdatePodCIDR(cidr); err != nil {
			return nil, fmt.Errorf("%w: runtime_config.network_config.pod_cidr: %v", errInvalid, err)
		}
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

// RuntimeConfig tells kubelet which cgroup driver the runtime uses, so
// that both build the same cgroup hierarchy.
func (s *Server) RuntimeConfig(ctx context.Context, req *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if s.pods.CgroupDriver() == cgroups.SystemdName {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}
