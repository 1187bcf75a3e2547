package stats

import (
	"regexp"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

func TestMetricDescriptors(t *testing.T) {
	descs := MetricDescriptors()
	if len(descs) == 0 {
		t.Fatal("no descriptors")
	}
	seen := map[string]bool{}
	for _, d := range descs {
		if !metricNameRE.MatchString(d.Name) || !strings.HasPrefix(d.Name, "container_") {
			t.Errorf("bad metric name %q", d.Name)
		}
		if seen[d.Name] {
			t.Errorf("duplicate descriptor %q", d.Name)
		}
		seen[d.Name] = true
		if d.Help == "" {
			t.Errorf("%s: empty help", d.Name)
		}
		if len(d.LabelKeys) < 3 || d.LabelKeys[0] != "id" || d.LabelKeys[1] != "name" || d.LabelKeys[2] != "image" {
			t.Errorf("%s: label keys %v do not start with id, name, image", d.Name, d.LabelKeys)
		}
		keys := map[string]bool{}
		for _, k := range d.LabelKeys {
			if !labelNameRE.MatchString(k) || strings.HasPrefix(k, "__") || keys[k] {
				t.Errorf("%s: bad or duplicate label key %q", d.Name, k)
			}
			keys[k] = true
		}
	}
	// Fresh messages each call: a caller changing one cannot change the
	// next answer.
	descs[0].LabelKeys[0] = "changed"
	if MetricDescriptors()[0].LabelKeys[0] != "id" {
		t.Error("descriptors share state between calls")
	}
}

func TestContainerMetrics(t *testing.T) {
	start := time.Unix(1700000000, 0)
	full := CgroupStats{
		Timestamp: start.Add(time.Minute),
		CPU:       CPUStats{UsageCoreNanoSeconds: 2500 * 1e6, UserNanoSeconds: 2e9, SystemNanoSeconds: 5e8, Periods: 3},
		Memory:    MemoryStats{UsageBytes: 1000, WorkingSetBytes: 800, LimitBytes: 4096, PageFaults: 9, OOMKills: 1},
		Pids:      PidsStats{Current: 4, Limit: 100},
		Processes: 2,
		IO:        []IOStats{{Major: 254, Minor: 0, Device: "/dev/vda", ReadBytes: 4096, WriteBytes: 8192, Reads: 1, Writes: 2}},
	}
	tests := []struct {
		name  string
		in    MetricsInput
		want  map[string]uint64 // name -> value of the first series with that name
		count int
	}{
		{name: "nothing", in: MetricsInput{ID: "x"}, count: 0},
		{
			name: "container",
			in: MetricsInput{ID: "c1", Name: "app", Image: "busybox:latest", Cgroup: &full,
				Filesystem: &FilesystemStats{Device: "/var/lib/cri-runtimed", UsedBytes: 12345, InodesUsed: 7}, StartTime: start},
			want: map[string]uint64{
				MetricCPUUsageSeconds:       2,
				MetricCPUUserSeconds:        2,
				MetricMemoryWorkingSetBytes: 800,
				MetricSpecMemoryLimitBytes:  4096,
				MetricOOMEvents:             1,
				MetricProcesses:             2,
				MetricThreads:               4,
				MetricFSUsageBytes:          12345,
				MetricFSReadsBytes:          4096,
				MetricFSWritesBytes:         8192,
				MetricFSReads:               1,
				MetricFSWrites:              2,
				MetricBlkioDeviceUsage:      4096, // the Read series comes first
				MetricStartTimeSeconds:      1700000000,
				MetricLastSeen:              1700000060,
			},
		},
		{
			name: "sandbox network",
			in: MetricsInput{ID: "s1", Name: "POD", Interfaces: []InterfaceStats{
				{Name: "eth0", RxBytes: 10, TxBytes: 20}, {Name: "eth1", RxBytes: 30},
			}},
			want:  map[string]uint64{MetricNetworkReceiveBytes: 10, MetricNetworkTransmitBytes: 20},
			count: 16,
		},
	}
	descs := map[string]*runtimeapi.MetricDescriptor{}
	for _, d := range MetricDescriptors() {
		descs[d.Name] = d
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ContainerMetrics(tt.in)
			if tt.count != 0 || len(tt.want) == 0 {
				if len(got) != tt.count {
					t.Errorf("%d metrics, want %d", len(got), tt.count)
				}
			}
			values := map[string]uint64{}
			for _, m := range got {
				d, ok := descs[m.Name]
				if !ok {
					t.Errorf("metric %q has no descriptor", m.Name)
					continue
				}
				if len(m.LabelValues) != len(d.LabelKeys) {
					t.Errorf("%s: %d label values for keys %v", m.Name, len(m.LabelValues), d.LabelKeys)
				}
				if m.LabelValues[0] != tt.in.ID || m.LabelValues[1] != tt.in.Name || m.LabelValues[2] != tt.in.Image {
					t.Errorf("%s: base labels %v", m.Name, m.LabelValues[:3])
				}
				wantType := runtimeapi.MetricType_GAUGE
				if strings.HasSuffix(m.Name, "_total") {
					wantType = runtimeapi.MetricType_COUNTER
				}
				if m.MetricType != wantType {
					t.Errorf("%s: type %v, want %v", m.Name, m.MetricType, wantType)
				}
				if m.Value == nil {
					t.Errorf("%s: nil value", m.Name)
					continue
				}
				if m.Timestamp != 0 {
					t.Errorf("%s: timestamp %d, want 0 for a live reading", m.Name, m.Timestamp)
				}
				if _, dup := values[m.Name]; !dup {
					values[m.Name] = m.Value.Value
				}
			}
			for name, v := range tt.want {
				if got, ok := values[name]; !ok || got != v {
					t.Errorf("%s = %d (present %v), want %d", name, got, ok, v)
				}
			}
		})
	}
}

// TestEveryDescriptorIsEmitted keeps the descriptor table and
// ContainerMetrics in step: a descriptor nothing emits is dead weight
// kubelet still registers.
func TestEveryDescriptorIsEmitted(t *testing.T) {
	s := CgroupStats{Timestamp: time.Now(), IO: []IOStats{{Device: "/dev/vda"}}}
	got := ContainerMetrics(MetricsInput{
		ID: "c", Cgroup: &s, Filesystem: &FilesystemStats{}, Interfaces: []InterfaceStats{{Name: "eth0"}},
		StartTime: time.Now(),
	})
	emitted := map[string]bool{}
	for _, m := range got {
		emitted[m.Name] = true
	}
	for _, d := range MetricDescriptors() {
		if !emitted[d.Name] {
			t.Errorf("descriptor %s is never emitted", d.Name)
		}
	}
}
