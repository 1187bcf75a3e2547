package cgroups

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMkdirLevelsCpuset: a v1 cpuset cgroup gets its parent's cpus and
// mems; a v2 one is left empty (it uses its parent's), and the v2 root,
// which has no cpuset.cpus, is not read (a shim-started pause under the
// cgroupfs driver on a unified host failed with "read
// /sys/fs/cgroup/cpuset.cpus: no such file or directory").
func TestMkdirLevelsCpuset(t *testing.T) {
	for _, tc := range []struct {
		name             string
		cgroup2, unified bool
		rootFiles        map[string]string
		want             string // the new cgroup's cpuset.cpus
		wantSubtree      string // the root's cgroup.subtree_control
	}{
		{"v1 copies down", false, false, map[string]string{"cpuset.cpus": "0-1\n", "cpuset.mems": "0\n"}, "0-1", ""},
		{"v2 unified root", true, true, map[string]string{"cgroup.controllers": "cpuset memory\n", "cgroup.subtree_control": ""}, "", "+memory"},
		{"v2 of a hybrid host", true, false, map[string]string{"cgroup.controllers": "hugetlb\n"}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for f, v := range tc.rootFiles {
				if err := os.WriteFile(filepath.Join(root, f), []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// The kernel makes these files, empty, in a new cgroup.
			child := filepath.Join(root, "pod")
			if err := os.Mkdir(child, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if err := os.WriteFile(filepath.Join(child, f), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := mkdirLevels(root, "/pod/pause", tc.cgroup2, tc.unified); err != nil {
				t.Fatalf("mkdirLevels: %v", err)
			}
			if _, err := os.Stat(filepath.Join(child, "pause")); err != nil {
				t.Fatalf("the leaf was not made: %v", err)
			}
			b, _ := os.ReadFile(filepath.Join(child, "cpuset.cpus"))
			if got := strings.TrimSpace(string(b)); got != tc.want {
				t.Errorf("cpuset.cpus = %q, want %q", got, tc.want)
			}
			if tc.wantSubtree != "" {
				b, _ := os.ReadFile(filepath.Join(root, "cgroup.subtree_control"))
				if got := string(b); got != tc.wantSubtree {
					t.Errorf("cgroup.subtree_control = %q, want the last write %q", got, tc.wantSubtree)
				}
			}
		})
	}
}
