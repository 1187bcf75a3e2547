package server

import (
	"context"
	"encoding/json"
	"sort"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

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

// Status reports the runtime ready and the network not (yet) ready: pod
// networking does not exist until CNI support lands.
func (s *Server) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
			{Type: runtimeapi.RuntimeReady, Status: true},
			{
				Type:    runtimeapi.NetworkReady,
				Status:  false,
				Reason:  "NetworkPluginNotReady",
				Message: "cri-runtimed: pod networking (CNI) is not implemented yet",
			},
		}},
	}
	for _, name := range s.handlerNames() {
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtimeapi.RuntimeHandler{Name: name, Features: &runtimeapi.RuntimeHandlerFeatures{}})
	}
	resp.Features = &runtimeapi.RuntimeFeatures{}
	if req.GetVerbose() {
		cfg, err := json.Marshal(s.cfg)
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"config": string(cfg)}
	}
	return resp, nil
}

// handlerNames lists the configured runtime handlers, the default one
// first and also under the empty name kubelet uses for it.
func (s *Server) handlerNames() []string {
	names := []string{"", s.cfg.Runtime.DefaultHandler}
	var rest []string
	for n := range s.cfg.Runtime.Handlers {
		if n != s.cfg.Runtime.DefaultHandler {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	return append(names, rest...)
}
