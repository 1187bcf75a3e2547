package checkpoint

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteRestoreConfig(t *testing.T) {
	for _, tc := range []struct {
		name, operator, cgroup string
		want                   []string // the file's lines, in order
		wantErr                bool
	}{
		{name: "no operator config", cgroup: "/system.slice/cri-runtimed-x.scope",
			want: []string{"# cri-runtimed: the restored tasks go to the new container's cgroup", "cgroup-root /system.slice/cri-runtimed-x.scope"}},
		{name: "operator config kept first", operator: "tcp-established\ncgroup-root /elsewhere", cgroup: "/kubepods/pod1/x",
			want: []string{"tcp-established", "cgroup-root /elsewhere", "# cri-runtimed: the restored tasks go to the new container's cgroup", "cgroup-root /kubepods/pod1/x"}},
		{name: "relative cgroup", cgroup: "kubepods/x", wantErr: true},
		{name: "a comment in the path", cgroup: "/a#b", wantErr: true},
		{name: "a second option in the path", cgroup: "/a tcp-established", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			saved := runcCRIUConfig
			t.Cleanup(func() { runcCRIUConfig = saved })
			runcCRIUConfig = filepath.Join(dir, "runc.conf")
			if tc.operator != "" {
				if err := os.WriteFile(runcCRIUConfig, []byte(tc.operator), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			path, err := WriteRestoreConfig(dir, tc.cgroup)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("WriteRestoreConfig(%q) = %s, want an error", tc.cgroup, path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("config:\n%s\nwant lines %q", b, tc.want)
			}
		})
	}
}
