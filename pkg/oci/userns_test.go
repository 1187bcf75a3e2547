package oci

import (
	"errors"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestUserNamespace(t *testing.T) {
	one := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1000, Length: 100000}}
	tests := []struct {
		name    string
		opts    *runtimeapi.UserNamespace
		wantNS  bool
		wantErr string
	}{
		{name: "absent is the host's", opts: nil},
		{name: "node", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}},
		{name: "pod", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: one}, wantNS: true},
		{name: "two mappings", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: append(one, one...), Gids: one}, wantErr: "exactly one"},
		{name: "root unmapped", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{{ContainerId: 1, HostId: 1000, Length: 10}}, Gids: one}, wantErr: "container ID 0"},
		{name: "no mappings", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}, wantErr: "uids"},
		{name: "container mode", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}, wantErr: "mode"},
		{name: "target mode", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}, wantErr: "mode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := &runtimeapi.PodSandboxConfig{
				Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "n", Uid: "u"},
				Linux:    &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: tc.opts}}},
			}
			spec, err := SandboxSpec("s", pod, SandboxInfo{ID: "s", NetNSPath: ""})
			if tc.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "userns_options") {
					t.Fatalf("err = %v, want InvalidArgument about %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			hasUser := false
			for _, ns := range spec.Linux.Namespaces {
				if ns.Type == "user" {
					hasUser = true
				}
			}
			if hasUser != tc.wantNS {
				t.Fatalf("user namespace = %v, want %v", hasUser, tc.wantNS)
			}
			if tc.wantNS {
				if len(spec.Linux.UIDMappings) != 1 || spec.Linux.UIDMappings[0].HostID != 1000 || spec.Linux.UIDMappings[0].Size != 100000 {
					t.Fatalf("uid mappings %+v", spec.Linux.UIDMappings)
				}
				for _, m := range spec.Mounts {
					if m.Destination == "/sys" && m.Type == "sysfs" {
						t.Fatal("sysfs cannot be mounted from a user namespace that does not own the netns")
					}
				}
			}
		})
	}
}

// TestUserNamespaceHostNamespaces: a pod with a user namespace may use the
// host's network (user_namespaces_host_network), not its pid or ipc
// namespace.
func TestUserNamespaceHostNamespaces(t *testing.T) {
	one := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1000, Length: 100000}}
	for _, tc := range []struct {
		name          string
		net, pid, ipc runtimeapi.NamespaceMode
		wantErr       bool
	}{
		{"host network", runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_POD, false},
		{"host pid", runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_POD, true},
		{"host ipc", runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_NODE, true},
	} {
		pod := &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "n", Uid: "u"},
			Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
				Network: tc.net, Pid: tc.pid, Ipc: tc.ipc,
				UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: one}}}},
		}
		spec, err := SandboxSpec("s", pod, SandboxInfo{ID: "s", HostNetwork: tc.net == runtimeapi.NamespaceMode_NODE})
		if tc.wantErr {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: err = %v, want ErrInvalid", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type == "network" {
				t.Errorf("%s: the sandbox gets a network namespace of its own", tc.name)
			}
		}
		for _, m := range spec.Mounts {
			if m.Destination == "/sys" && (m.Type != "bind" || !strings.Contains(strings.Join(m.Options, ","), "ro")) {
				t.Errorf("%s: /sys is %s %v, want the host's bound read-only", tc.name, m.Type, m.Options)
			}
		}
	}
}
