package oci

import (
	"os"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestLinuxResourcesValidation(t *testing.T) {
	i64p := func(v int64) *int64 { return &v }
	u64p := func(v uint64) *uint64 { return &v }
	type R = runtimeapi.LinuxContainerResources
	tests := []struct {
		name    string
		res     *R
		v1      bool // on a cgroup v1 host
		noHuge  bool // without the hugetlb controller
		want    *specs.LinuxResources
		wantErr string
	}{
		{name: "nil", res: nil, want: &specs.LinuxResources{}},
		{name: "quota without period", res: &R{CpuQuota: 50000}, want: &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64p(50000)}}},
		{name: "period bounds", res: &R{CpuPeriod: 1000000, CpuQuota: 1000}, want: &specs.LinuxResources{CPU: &specs.LinuxCPU{Period: u64p(1000000), Quota: i64p(1000)}}},
		{name: "period below 1ms", res: &R{CpuPeriod: 999}, wantErr: "linux.cpu_period"},
		{name: "period above 1s", res: &R{CpuPeriod: 1000001}, wantErr: "linux.cpu_period"},
		{name: "negative period", res: &R{CpuPeriod: -100000}, wantErr: "linux.cpu_period"},
		{name: "negative shares", res: &R{CpuShares: -2}, wantErr: "linux.cpu_shares"},
		{name: "huge shares", res: &R{CpuShares: 1 << 20}, wantErr: "linux.cpu_shares"},
		{name: "no quota", res: &R{CpuQuota: -1, CpuPeriod: 100000}, want: &specs.LinuxResources{CPU: &specs.LinuxCPU{Period: u64p(100000), Quota: i64p(-1)}}},
		{name: "negative quota", res: &R{CpuQuota: -2}, wantErr: "linux.cpu_quota"},
		{name: "negative memory", res: &R{MemoryLimitInBytes: -1}, wantErr: "linux.memory_limit_in_bytes"},
		{name: "swap defaults to no swap", res: &R{MemoryLimitInBytes: 1 << 20}, want: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64p(1 << 20), Swap: i64p(1 << 20)}}},
		{name: "unlimited swap", res: &R{MemoryLimitInBytes: 1 << 20, MemorySwapLimitInBytes: -1}, want: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64p(1 << 20), Swap: i64p(-1)}}},
		{name: "unlimited swap alone", res: &R{MemorySwapLimitInBytes: -1}, want: &specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: i64p(-1)}}},
		{name: "swap below limit", res: &R{MemoryLimitInBytes: 2 << 20, MemorySwapLimitInBytes: 1 << 20}, wantErr: "linux.memory_swap_limit_in_bytes"},
		{name: "swap -2", res: &R{MemoryLimitInBytes: 2 << 20, MemorySwapLimitInBytes: -2}, wantErr: "linux.memory_swap_limit_in_bytes"},
		{name: "swap without limit", res: &R{MemorySwapLimitInBytes: 1 << 20}, wantErr: "linux.memory_swap_limit_in_bytes"},
		{name: "cpuset", res: &R{CpusetCpus: "0-3,8,10-11", CpusetMems: "0,1"}, want: &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-3,8,10-11", Mems: "0,1"}}},
		{name: "cpuset garbage", res: &R{CpusetCpus: "all"}, wantErr: "linux.cpuset_cpus"},
		{name: "cpuset trailing comma", res: &R{CpusetCpus: "1,"}, wantErr: "linux.cpuset_cpus"},
		{name: "cpuset mems reversed", res: &R{CpusetMems: "2-1"}, wantErr: "linux.cpuset_mems"},
		{name: "hugepages", res: &R{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}, {PageSize: "1GB", Limit: 0}, {PageSize: "64KB", Limit: 1}}},
			want: &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1 << 21}, {Pagesize: "1GB"}, {Pagesize: "64KB", Limit: 1}}}},
		// kubelet sends one limit per page size the node has, whether or
		// not the hugetlb controller exists (issue 10: runc failed every
		// container of a v1 node without it).
		{name: "hugepages without hugetlb controller", v1: true, noHuge: true,
			res:  &R{MemoryLimitInBytes: 1 << 20, HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}}},
			want: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64p(1 << 20), Swap: i64p(1 << 20)}}},
		{name: "hugepages without hugetlb still validated", noHuge: true, res: &R{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2Mi"}}}, wantErr: "linux.hugepage_limits[0].page_size"},
		{name: "hugepage size without unit", res: &R{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2048", Limit: 1}}}, wantErr: "linux.hugepage_limits[0].page_size"},
		{name: "hugepage size lowercase", res: &R{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2mb"}}}, wantErr: "linux.hugepage_limits[0].page_size"},
		{name: "hugepage size 2Mi", res: &R{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2Mi"}}}, wantErr: "linux.hugepage_limits[0].page_size"},
		{name: "hugepage size zero", res: &R{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "0MB"}}}, wantErr: "linux.hugepage_limits[0].page_size"},
		{name: "hugepage duplicate", res: &R{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB"}, {PageSize: "2MB"}}}, wantErr: "linux.hugepage_limits[1].page_size"},
		{name: "unified on v2", res: &R{Unified: map[string]string{"memory.high": "max", "pids.max": "100"}},
			want: &specs.LinuxResources{Unified: map[string]string{"memory.high": "max", "pids.max": "100"}}},
		{name: "swap as kubelet sets it on v2", res: &R{MemoryLimitInBytes: 1 << 20, Unified: map[string]string{"memory.swap.max": "4194304"}},
			want: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64p(1 << 20)}, Unified: map[string]string{"memory.swap.max": "4194304"}}},
		{name: "no swap as kubelet sets it on v2", res: &R{MemoryLimitInBytes: 1 << 20, Unified: map[string]string{"memory.swap.max": "0"}},
			want: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64p(1 << 20)}, Unified: map[string]string{"memory.swap.max": "0"}}},
		{name: "unified on v1", v1: true, res: &R{Unified: map[string]string{"memory.high": "max"}}, wantErr: "linux.unified"},
		{name: "unified path", res: &R{Unified: map[string]string{"../../cgroup.procs": "1"}}, wantErr: "linux.unified"},
		{name: "unified not a file name", res: &R{Unified: map[string]string{"memoryhigh": "1"}}, wantErr: "linux.unified"},
		{name: "unified NUL", res: &R{Unified: map[string]string{"memory.high": "1\x00"}}, wantErr: "linux.unified"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := linuxResources("linux", tc.res, cgroupFeatures{v2: !tc.v1, hugetlb: !tc.noHuge})
			if tc.wantErr != "" {
				wantInvalid(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, got, tc.want) {
				t.Errorf("got  %s\nwant %s", jsonString(t, got), jsonString(t, tc.want))
			}
		})
	}
}

func TestResourcesFromCRI(t *testing.T) {
	r := &runtimeapi.LinuxContainerResources{CpuShares: 1024, CpuQuota: 20000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20, OomScoreAdj: 500}
	got, err := ResourcesFromCRI(r)
	if err != nil {
		t.Fatal(err)
	}
	if *got.CPU.Shares != 1024 || *got.CPU.Quota != 20000 || *got.CPU.Period != 100000 || *got.Memory.Limit != 64<<20 {
		t.Errorf("resources = %s", jsonString(t, got))
	}
	if err := ValidateResources(r); err != nil {
		t.Error(err)
	}
	if err := ValidateResources(nil); err != nil {
		t.Errorf("nil: %v", err)
	}
	for field, bad := range map[string]*runtimeapi.LinuxContainerResources{
		"linux.oom_score_adj":         {OomScoreAdj: -1001},
		"linux.cpu_quota":             {CpuQuota: 999},
		"linux.memory_limit_in_bytes": {MemoryLimitInBytes: -5},
	} {
		wantInvalid(t, ValidateResources(bad), field)
	}
	// unified follows the real host.
	err = ValidateResources(&runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "max"}})
	if CgroupV2() != (err == nil) {
		t.Errorf("cgroup v2 host = %v, unified err = %v", CgroupV2(), err)
	}
}

func TestHugetlbController(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The development VM: v1 hierarchies without hugetlb, and hugetlb
	// only in an empty cgroup2 mount that runc does not use.
	hybridNoHugetlb := write("hybrid", "9:name=systemd:/\n8:pids:/\n4:memory:/x\n2:cpuacct:/\n1:cpu:/\n0::/\n")
	v1Hugetlb := write("v1", "12:hugetlb:/\n3:cpu,cpuacct:/\n0::/\n")
	v2Controllers := write("controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
	v2NoHugetlb := write("controllers-nohuge", "cpuset cpu io memory pids\n")
	missing := dir + "/missing"
	tests := []struct {
		name               string
		controllers, procs string
		unified, want      bool
	}{
		{"v1 without hugetlb hierarchy", v2Controllers, hybridNoHugetlb, false, false},
		{"v1 with hugetlb hierarchy", missing, v1Hugetlb, false, true},
		{"v2 with hugetlb", v2Controllers, hybridNoHugetlb, true, true},
		{"v2 without hugetlb", v2NoHugetlb, v1Hugetlb, true, false},
		{"unreadable", missing, missing, false, false},
	}
	for _, tc := range tests {
		if got := hugetlbController(tc.controllers, tc.procs, tc.unified); got != tc.want {
			t.Errorf("%s: hugetlbController = %v, want %v", tc.name, got, tc.want)
		}
	}
}
