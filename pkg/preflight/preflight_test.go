package preflight

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cri-runtimed/cri-runtimed/pkg/config"
)

func TestReport(t *testing.T) {
	checks := []Check{
		{"a", func(context.Context) (Status, string) { return OK, "fine" }},
		{"longer", func(context.Context) (Status, string) { return Warn, "degraded\n" }},
	}
	var buf bytes.Buffer
	if !Report(&buf, Run(context.Background(), checks)) {
		t.Fatal("a warning failed the report")
	}
	want := "ok    a       fine\nWARN  longer  degraded\n"
	if buf.String() != want {
		t.Fatalf("report\n%q\nwant\n%q", buf.String(), want)
	}
	checks = append(checks, Check{"c", func(context.Context) (Status, string) { return Fail, "broken" }})
	if Report(&buf, Run(context.Background(), checks)) {
		t.Fatal("a failure passed the report")
	}
}

func TestOCIRuntime(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		binary    string
		isDefault bool
		want      Status
	}{
		{"/nonexistent/runc", true, Fail},
		{"/nonexistent/crun", false, Info},
		{"false", true, Fail}, // present but unusable
		{"true", true, OK},
	} {
		if got, msg := ociRuntime(ctx, tc.binary, tc.isDefault); got != tc.want {
			t.Errorf("ociRuntime(%s, default %v) = %v (%s), want %v", tc.binary, tc.isDefault, got, msg, tc.want)
		}
	}
}

func TestHostsFiles(t *testing.T) {
	dir := t.TempDir()
	if st, _ := hostsFiles(filepath.Join(dir, "none")); st != OK {
		t.Errorf("a missing certs.d: %v", st)
	}
	write := func(host, body string) {
		if err := os.MkdirAll(filepath.Join(dir, host), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, host, "hosts.toml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("good.example", "server = \"https://good.example\"\n")
	write("_default", "[host.\"https://mirror.example\"]\ncapabilities = [\"pull\"]\n")
	if st, msg := hostsFiles(dir); st != OK || !strings.Contains(msg, "2 hosts.toml") {
		t.Errorf("good files: %v %s", st, msg)
	}
	write("bad.example", "server = [\n")
	if st, msg := hostsFiles(dir); st != Warn || !strings.Contains(msg, "bad.example") {
		t.Errorf("a broken file: %v %s", st, msg)
	}
}

func TestWritableDirs(t *testing.T) {
	dir := t.TempDir()
	if st, msg := writableDirs(filepath.Join(dir, "root"), filepath.Join(dir, "state")); st != OK {
		t.Errorf("fresh dirs: %v %s", st, msg)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if st, _ := writableDirs(filepath.Join(file, "root")); st != Fail {
		t.Errorf("a dir under a file: %v, want FAIL", st)
	}
}

// TestNRISocket: a socket directory that can be made is fine, one under a
// file fails, a socket someone else serves warns (NRI would take it
// over) unless it is this daemon's, and NRI off is only said.
func TestNRISocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	served := filepath.Join(dir, "served.sock")
	l, err := net.Listen("unix", served)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct {
		name    string
		nri     config.NRI
		running bool
		want    Status
	}{
		{"new directory", config.NRI{SocketPath: filepath.Join(dir, "a", "b", "nri.sock")}, false, OK},
		{"under a file", config.NRI{SocketPath: filepath.Join(file, "nri.sock")}, false, Fail},
		{"served by another", config.NRI{SocketPath: served}, false, Warn},
		{"served by this daemon", config.NRI{SocketPath: served}, true, OK},
		{"disabled", config.NRI{Disable: true, SocketPath: filepath.Join(file, "nri.sock")}, false, Info},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, msg := nriSocket(tc.nri, tc.running); got != tc.want {
				t.Errorf("nriSocket = %v (%s), want %v", got, msg, tc.want)
			}
		})
	}
}

func TestInotifyVerdict(t *testing.T) {
	for _, tc := range []struct {
		n    int
		v2   bool
		want Status
	}{
		{128, true, Warn}, // the kernel's default: a full v2 node runs out
		{511, true, Warn},
		{512, true, OK},
		{8192, true, OK},
		{128, false, OK}, // shims hold none on v1
	} {
		if got, msg := inotifyVerdict(tc.n, tc.v2); got != tc.want {
			t.Errorf("inotifyVerdict(%d, v2 %v) = %v (%s), want %v", tc.n, tc.v2, got, msg, tc.want)
		}
	}
}
