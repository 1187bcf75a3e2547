package cgroups

import (
	"slices"
	"strings"
	"testing"
)

func TestParseLayout(t *testing.T) {
	tests := []struct {
		name           string
		mountinfo      string
		wantV1, wantV2 string
		wantMounts     []string
		unified        bool
		oomFile        string
	}{
		{
			name: "hybrid",
			mountinfo: `25 30 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
27 25 0:25 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
28 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
29 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
`,
			wantV1: "/sys/fs/cgroup", wantV2: "/sys/fs/cgroup/unified",
			wantMounts: []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory"},
			oomFile:    "/sys/fs/cgroup/memory/a/b/memory.oom_control",
		},
		{
			name:       "unified",
			mountinfo:  "26 25 0:24 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
			wantV2:     "/sys/fs/cgroup",
			wantMounts: []string{"/sys/fs/cgroup"},
			unified:    true,
			oomFile:    "/sys/fs/cgroup/a/b/memory.events",
		},
		{
			name: "cgroup2 at the default mount wins",
			mountinfo: "26 25 0:24 / /run/other rw - cgroup2 cgroup2 rw\n" +
				"27 25 0:24 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			wantV2:     "/sys/fs/cgroup",
			wantMounts: []string{"/run/other", "/sys/fs/cgroup"},
			unified:    true,
			oomFile:    "/sys/fs/cgroup/a/b/memory.events",
		},
		{
			name:       "named hierarchy only is not v1 controllers",
			mountinfo:  "27 25 0:25 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n",
			wantMounts: []string{"/sys/fs/cgroup/systemd"},
		},
		{
			name:       "escaped mount point",
			mountinfo:  "29 25 0:27 / /cg\\040root/memory rw - cgroup cgroup rw,memory\n",
			wantV1:     "/cg root",
			wantMounts: []string{"/cg root/memory"},
			oomFile:    "/cg root/memory/a/b/memory.oom_control",
		},
		{
			name:      "no cgroups",
			mountinfo: "22 1 0:21 / /proc rw - proc proc rw\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseLayout(strings.NewReader(tt.mountinfo))
			if err != nil {
				t.Fatal(err)
			}
			if l.V1Root != tt.wantV1 || l.V2Root != tt.wantV2 || !slices.Equal(l.Mounts, tt.wantMounts) {
				t.Errorf("layout = %+v; want v1 %q v2 %q mounts %q", l, tt.wantV1, tt.wantV2, tt.wantMounts)
			}
			if l.Unified() != tt.unified {
				t.Errorf("Unified() = %v, want %v", l.Unified(), tt.unified)
			}
			if got := l.OOMFile("/a/b"); got != tt.oomFile {
				t.Errorf("OOMFile = %q, want %q", got, tt.oomFile)
			}
		})
	}
}

func TestHostLayout(t *testing.T) {
	l, err := HostLayout()
	if err != nil {
		t.Fatal(err)
	}
	if l.V1Root == "" && l.V2Root == "" {
		t.Fatalf("host layout %+v: no cgroup hierarchy found", l)
	}
	if Unified() != l.Unified() {
		t.Errorf("Unified() = %v, layout says %v", Unified(), l.Unified())
	}
}
