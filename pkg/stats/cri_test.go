package stats

import (
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestCRIConversions(t *testing.T) {
	at := time.Unix(1700000000, 5)
	tests := []struct {
		name  string
		s     CgroupStats
		check func(t *testing.T, s CgroupStats)
	}{
		{
			name: "unlimited leaves available unset",
			s:    CgroupStats{Timestamp: at, Memory: MemoryStats{UsageBytes: 10, WorkingSetBytes: 8}},
			check: func(t *testing.T, s CgroupStats) {
				m := s.MemoryUsage()
				if m.AvailableBytes != nil {
					t.Errorf("available = %v, want unset", m.AvailableBytes)
				}
				if m.Timestamp != at.UnixNano() || m.WorkingSetBytes.GetValue() != 8 {
					t.Errorf("memory usage %+v", m)
				}
				if sw := s.SwapUsage(); sw.SwapAvailableBytes != nil {
					t.Errorf("swap available = %v, want unset", sw.SwapAvailableBytes)
				}
				if s.CPUUsage().Psi != nil {
					t.Error("psi set without pressure data")
				}
			},
		},
		{
			name: "limited",
			s: CgroupStats{Timestamp: at,
				CPU:         CPUStats{UsageCoreNanoSeconds: 5, UsageNanoCores: 7},
				Memory:      MemoryStats{LimitBytes: 100, AvailableBytes: 92, SwapBytes: 3, SwapLimitBytes: 10},
				Processes:   3,
				CPUPressure: &Pressure{Some: PressureData{TotalNanoSeconds: 9, Avg10: 1.5}},
			},
			check: func(t *testing.T, s CgroupStats) {
				if got := s.MemoryUsage().AvailableBytes.GetValue(); got != 92 {
					t.Errorf("available = %d", got)
				}
				if got := s.SwapUsage().SwapAvailableBytes.GetValue(); got != 7 {
					t.Errorf("swap available = %d", got)
				}
				cpu := s.CPUUsage()
				if cpu.UsageCoreNanoSeconds.GetValue() != 5 || cpu.UsageNanoCores.GetValue() != 7 {
					t.Errorf("cpu %+v", cpu)
				}
				if cpu.Psi.GetSome().GetTotal() != 9 || cpu.Psi.GetSome().GetAvg10() != 1.5 {
					t.Errorf("psi %+v", cpu.Psi)
				}
				if s.ProcessUsage().ProcessCount.GetValue() != 3 {
					t.Error("process count")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.check(t, tt.s) })
	}
}

func TestNetworkUsage(t *testing.T) {
	ifaces := []InterfaceStats{{Name: "net1", RxBytes: 1}, {Name: "eth0", RxBytes: 2}, {Name: "net2", TxBytes: 3}}
	tests := []struct {
		name        string
		def         string
		wantDefault string
		wantOthers  int
	}{
		{name: "kubelet default", def: "", wantDefault: "eth0", wantOthers: 2},
		{name: "explicit", def: "net2", wantDefault: "net2", wantOthers: 2},
		// kubelet panics on a network usage without a default interface.
		{name: "absent default", def: "eth9", wantDefault: "net1", wantOthers: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := NetworkUsage(time.Unix(1, 0), ifaces, tt.def)
			if n.DefaultInterface.GetName() != tt.wantDefault || len(n.Interfaces) != tt.wantOthers {
				t.Fatalf("default %q others %d; want %q %d", n.DefaultInterface.GetName(), len(n.Interfaces), tt.wantDefault, tt.wantOthers)
			}
		})
	}
	if n := NetworkUsage(time.Unix(1, 0), nil, ""); n != nil {
		t.Fatalf("network usage of a namespace without interfaces = %v, want none", n)
	}
}

// TestContainerStats: a container's CRI stats carry the figures of a
// reading and a layer usage only when there is one.
func TestContainerStats(t *testing.T) {
	attrs := &runtimeapi.ContainerAttributes{Id: "c"}
	cg := &CgroupStats{Timestamp: time.Unix(2, 0), CPU: CPUStats{UsageCoreNanoSeconds: 5},
		Memory: MemoryStats{WorkingSetBytes: 8, LimitBytes: 100, AvailableBytes: 92, SwapBytes: 3, SwapLimitBytes: 10}}
	layer := &LayerUsage{Bytes: 10, Inodes: 2, At: time.Unix(1, 0)}
	tests := []struct {
		name        string
		cg          *CgroupStats
		layer       *LayerUsage
		figures, fs bool
	}{
		{name: "created, never measured"},
		{name: "created, layer measured", layer: layer, fs: true},
		{name: "running", cg: cg, layer: layer, figures: true, fs: true},
		{name: "running, never measured", cg: cg, figures: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := ContainerStats(attrs, tt.cg, tt.layer, "/var/lib/cri-runtimed")
			if st.Attributes != attrs {
				t.Errorf("attributes %v", st.Attributes)
			}
			if got := st.Cpu != nil && st.Memory != nil && st.Swap != nil && st.Io != nil; got != tt.figures {
				t.Errorf("figures set: %v, want %v (%v)", got, tt.figures, st)
			}
			if tt.figures {
				if st.Cpu.GetUsageCoreNanoSeconds().GetValue() != 5 || st.Memory.GetWorkingSetBytes().GetValue() != 8 ||
					st.Memory.GetAvailableBytes().GetValue() != 92 || st.Swap.GetSwapAvailableBytes().GetValue() != 7 ||
					st.Cpu.GetTimestamp() != time.Unix(2, 0).UnixNano() {
					t.Errorf("figures %v", st)
				}
			}
			fs := st.WritableLayer
			if (fs != nil) != tt.fs {
				t.Fatalf("writable layer %v, want one: %v", fs, tt.fs)
			}
			if fs != nil && (fs.FsId.GetMountpoint() != "/var/lib/cri-runtimed" || fs.UsedBytes.GetValue() != 10 ||
				fs.InodesUsed.GetValue() != 2 || fs.Timestamp != time.Unix(1, 0).UnixNano()) {
				t.Errorf("writable layer %v", fs)
			}
		})
	}
}
