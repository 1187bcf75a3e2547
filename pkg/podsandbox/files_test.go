package podsandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestResolvConf(t *testing.T) {
	host, _ := os.ReadFile("/etc/resolv.conf")
	tests := []struct {
		name    string
		dns     *runtimeapi.DNSConfig
		want    string
		wantErr bool
	}{
		{name: "nil copies host", dns: nil, want: string(host)},
		{name: "empty copies host", dns: &runtimeapi.DNSConfig{}, want: string(host)},
		{name: "full", dns: &runtimeapi.DNSConfig{Servers: []string{"10.0.0.10", "fd00::a"}, Searches: []string{"ns.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}},
			want: "nameserver 10.0.0.10\nnameserver fd00::a\nsearch ns.svc.cluster.local svc.cluster.local\noptions ndots:5\n"},
		{name: "servers only", dns: &runtimeapi.DNSConfig{Servers: []string{"1.1.1.1"}}, want: "nameserver 1.1.1.1\n"},
		{name: "injection in server", dns: &runtimeapi.DNSConfig{Servers: []string{"1.1.1.1\nnameserver 6.6.6.6"}}, wantErr: true},
		{name: "injection in search", dns: &runtimeapi.DNSConfig{Servers: []string{"1.1.1.1"}, Searches: []string{"a\nnameserver 6.6.6.6"}}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolvConf(tc.dns)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestHostsFile(t *testing.T) {
	b, err := hostsFile(false, "web-0")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"127.0.0.1\tlocalhost", "::1\tlocalhost", "127.0.1.1\tweb-0"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("hosts lacks %q:\n%s", want, b)
		}
	}
	host, _ := os.ReadFile("/etc/hosts")
	b, err = hostsFile(true, "ignored")
	if err != nil || string(b) != string(host) {
		t.Fatalf("host network hosts = %q, %v; want the host's", b, err)
	}
}

func TestWritePodFiles(t *testing.T) {
	dir := t.TempDir()
	f := filesIn(dir)
	cfg := &runtimeapi.PodSandboxConfig{
		DnsConfig: &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			// Host IPC: no /dev/shm mount, so the test needs no root.
			NamespaceOptions: &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE},
		}},
	}
	if err := writePodFiles(f, "pod-a", cfg); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{f.Hostname: "pod-a\n", f.Resolv: "nameserver 10.96.0.10\n"} {
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", filepath.Base(path), got, err, want)
		}
	}
	if _, err := os.Stat(f.Shm); !os.IsNotExist(err) {
		t.Errorf("host-IPC pod got a /dev/shm dir: %v", err)
	}
}

func TestValidateAndName(t *testing.T) {
	meta := &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "prod", Uid: "u-1", Attempt: 2}
	if got := Name(meta); got != "web_prod_u-1_2" {
		t.Fatalf("Name = %q", got)
	}
	tests := []struct {
		name string
		cfg  *runtimeapi.PodSandboxConfig
		want string // field named in the error, "" = valid
	}{
		{"nil", nil, "config is empty"},
		{"no metadata", &runtimeapi.PodSandboxConfig{}, "config.metadata"},
		{"no name", &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Namespace: "a", Uid: "b"}}, "metadata.name"},
		{"no namespace", &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "a", Uid: "b"}}, "metadata.namespace"},
		{"no uid", &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "a", Namespace: "b"}}, "metadata.uid"},
		{"slash in name", &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "a/b", Namespace: "b", Uid: "c"}}, "contains '/'"},
		{"relative log dir", &runtimeapi.PodSandboxConfig{Metadata: meta, LogDirectory: "logs"}, "log_directory"},
		{"valid", &runtimeapi.PodSandboxConfig{Metadata: meta, LogDirectory: "/var/log/pods/x"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(tc.cfg)
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
}
