package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cri-runtimed/cri-runtimed/pkg/config"
)

// TestListenMode checks the CRI socket gets the configured mode and group
// whatever the daemon's umask, and that nothing else is left beside it.
func TestListenMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown the socket")
	}
	for _, tc := range []struct {
		name  string
		g     config.GRPC
		mode  os.FileMode
		group uint32
	}{
		{name: "default", g: config.GRPC{Mode: "0660"}, mode: 0o660},
		{name: "group by name", g: config.GRPC{Mode: "0660", Group: "nogroup"}, mode: 0o660, group: 65534},
		{name: "numeric group, owner only", g: config.GRPC{Mode: "0600", Group: "4242"}, mode: 0o600, group: 4242},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.g.Address = filepath.Join(dir, "cri.sock")
			// What a crash between bind and rename leaves.
			if err := os.MkdirAll(filepath.Join(dir, ".bind-123", "s"), 0o700); err != nil {
				t.Fatal(err)
			}
			old := syscall.Umask(0)
			lis, err := listen(tc.g)
			syscall.Umask(old)
			if err != nil {
				t.Fatal(err)
			}
			defer lis.Close()
			fi, err := os.Stat(tc.g.Address)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != tc.mode || st.Uid != 0 || st.Gid != tc.group {
				t.Errorf("socket %v %d:%d under umask 0, want a socket %v 0:%d", fi.Mode(), st.Uid, st.Gid, tc.mode, tc.group)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("directory holds %d entries, want the socket only: %v", len(ents), ents)
			}
		})
	}
}

// TestRuntimeFeatures: what `<runtime> features` says is used; a runtime
// without the command (crun 1.8: "unknown command features") or with an
// unreadable answer gets runtime-spec 1.0 specs, since it predates 1.1.
func TestRuntimeFeatures(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, binary string
		want         runtimeFeatures
	}{
		{"reports", script("new", `echo '{"ociVersionMax": "1.2.1", "mountOptions": ["ro", "rro"]}'`), runtimeFeatures{recursiveReadOnly: true, ociVersionMax: "1.2.1"}},
		{"reports without rro", script("runc11", `echo '{"ociVersionMax": "1.0.2-dev", "mountOptions": ["ro"]}'`), runtimeFeatures{ociVersionMax: "1.0.2-dev"}},
		{"no features command", script("crun18", `echo "unknown command $1" >&2; exit 1`), runtimeFeatures{ociVersionMax: "1.0.2"}},
		{"garbage", script("garbage", `echo 'not json'`), runtimeFeatures{ociVersionMax: "1.0.2"}},
		{"missing binary", filepath.Join(dir, "absent"), runtimeFeatures{ociVersionMax: "1.0.2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := runtimeFeaturesOf(t.Context(), tc.name, tc.binary); got != tc.want {
				t.Errorf("runtimeFeaturesOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}
