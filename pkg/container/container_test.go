package container

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
)

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{
		"SIGTERM": syscall.SIGTERM, "SIGQUIT": syscall.SIGQUIT, "quit": syscall.SIGQUIT,
		"USR1": syscall.SIGUSR1, "9": syscall.SIGKILL, "SIGRTMIN+3": syscall.SIGTERM, "bogus": syscall.SIGTERM, "0": syscall.SIGTERM,
	} {
		if got := parseSignal(in); got != want {
			t.Errorf("parseSignal(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestExitReason(t *testing.T) {
	tests := []struct {
		st                 shim.State
		reason, wantSubstr string
	}{
		{shim.State{ExitCode: 0}, "Completed", ""},
		{shim.State{ExitCode: 3}, "Error", ""},
		{shim.State{ExitCode: 137, OOMKilled: true}, "OOMKilled", ""},
		{shim.State{ExitCode: 128, Reason: "StartError", Message: `exec: "nope": executable file not found`}, "StartError", "nope"},
	}
	for _, tc := range tests {
		r, m := exitReason(tc.st)
		if r != tc.reason || !strings.Contains(m, tc.wantSubstr) {
			t.Errorf("exitReason(%+v) = %q %q", tc.st, r, m)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := func() *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: "busybox"}, LogPath: "c/0.log"}
	}
	tests := []struct {
		name   string
		mutate func(*runtimeapi.ContainerConfig)
		want   string
	}{
		{"valid", func(*runtimeapi.ContainerConfig) {}, ""},
		{"no metadata", func(c *runtimeapi.ContainerConfig) { c.Metadata = nil }, "config.metadata"},
		{"no name", func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "" }, "metadata.name"},
		{"no image", func(c *runtimeapi.ContainerConfig) { c.Image = nil }, "image.image"},
		{"absolute log path", func(c *runtimeapi.ContainerConfig) { c.LogPath = "/etc/passwd" }, "log_path"},
		{"escaping log path", func(c *runtimeapi.ContainerConfig) { c.LogPath = "../../etc/x" }, "log_path"},
		{"relative mount", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "data", HostPath: "/tmp"}}
		}, "mounts[0].container_path"},
		{"relative host path", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "tmp"}}
		}, "mounts[0].host_path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.mutate(c)
			err := validate(c)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalid naming %q", err, tc.want)
			}
		})
	}
	meta := &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "prod", Uid: "u", Attempt: 1}
	if got := Name(&runtimeapi.ContainerMetadata{Name: "app", Attempt: 3}, meta); got != "app_web_prod_u_3" {
		t.Fatalf("Name = %q", got)
	}
}
