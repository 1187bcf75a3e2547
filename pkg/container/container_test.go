package container

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

func TestEffectiveStopSignal(t *testing.T) {
	for _, tc := range []struct {
		cri   runtimeapi.Signal
		image string
		want  syscall.Signal
	}{
		{0, "", syscall.SIGTERM},
		{0, "SIGQUIT", syscall.SIGQUIT},
		{0, "quit", syscall.SIGQUIT},
		{0, "USR1", syscall.SIGUSR1},
		{0, "9", syscall.SIGKILL},
		{0, "SIGRTMIN+3", 37},
		{0, "SIGRTMAX-2", 62},
		{0, "SIGRTMIN+99", syscall.SIGTERM},
		{0, "SIGIOT", syscall.SIGABRT},
		{0, "bogus", syscall.SIGTERM},
		{0, "0", syscall.SIGTERM},
		{0, "65", syscall.SIGTERM},
		// The config's signal wins over the image's.
		{runtimeapi.Signal_SIGNAL_SIGUSR2, "SIGQUIT", syscall.SIGUSR2},
		{runtimeapi.Signal_SIGNAL_SIGRTMINPLUS1, "", 35},
		{runtimeapi.Signal_SIGNAL_SIGRTMAXMINUS1, "", 63},
		{runtimeapi.Signal_SIGNAL_SIGRTMAX, "", 64},
		{runtimeapi.Signal_SIGNAL_SIGPOLL, "", syscall.SIGIO},
	} {
		cfg := &runtimeapi.ContainerConfig{StopSignal: tc.cri}
		if got := effectiveStopSignal(cfg, tc.image); got != tc.want {
			t.Errorf("effectiveStopSignal(%s, %q) = %d, want %d", tc.cri, tc.image, got, tc.want)
		}
	}
}

// TestSignalCRIRoundTrip: every CRI signal maps to a signal of Linux and
// back to itself (or to the name of which it is an alias).
func TestSignalCRIRoundTrip(t *testing.T) {
	aliases := map[runtimeapi.Signal]runtimeapi.Signal{
		runtimeapi.Signal_SIGNAL_SIGIOT:  runtimeapi.Signal_SIGNAL_SIGABRT,
		runtimeapi.Signal_SIGNAL_SIGCLD:  runtimeapi.Signal_SIGNAL_SIGCHLD,
		runtimeapi.Signal_SIGNAL_SIGPOLL: runtimeapi.Signal_SIGNAL_SIGIO,
	}
	seen := map[syscall.Signal]bool{}
	for v := range runtimeapi.Signal_name {
		s := runtimeapi.Signal(v)
		if s == runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
			continue
		}
		sig, err := signalFromCRI(s)
		if err != nil || sig == 0 {
			t.Errorf("signalFromCRI(%s) = %d, %v", s, sig, err)
			continue
		}
		want := s
		if a, ok := aliases[s]; ok {
			want = a
		} else {
			if seen[sig] {
				t.Errorf("signalFromCRI(%s) = %d, which another CRI signal also maps to", s, sig)
			}
			seen[sig] = true
		}
		if got := signalToCRI(sig); got != want {
			t.Errorf("signalToCRI(signalFromCRI(%s) = %d) = %s", s, sig, got)
		}
	}
	if _, err := signalFromCRI(runtimeapi.Signal(999)); !errors.Is(err, ErrInvalid) {
		t.Errorf("signalFromCRI(999) = %v, want ErrInvalid", err)
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
		{"unknown stop signal", func(c *runtimeapi.ContainerConfig) { c.StopSignal = 999 }, "stop_signal"},
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

// TestRecordOnlyMovesForward: the exit of a container that exits at once
// can reach the controller before Start's "running" reply; whichever
// order the reports arrive in, the container ends exited with its code.
func TestRecordOnlyMovesForward(t *testing.T) {
	started := time.Unix(1700000000, 0).UTC()
	finished := started.Add(time.Millisecond)
	running := shim.State{Status: shim.StatusRunning, Pid: 42, StartedAt: started}
	exited := shim.State{Status: shim.StatusExited, Pid: 42, StartedAt: started, FinishedAt: finished, ExitCode: 3}
	created := shim.State{Status: shim.StatusCreated, Pid: 42}
	tests := []struct {
		name   string
		order  []shim.State
		events []runtimeapi.ContainerEventType
	}{
		{"running then exit", []shim.State{running, exited},
			[]runtimeapi.ContainerEventType{runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT}},
		{"exit then running", []shim.State{exited, running},
			[]runtimeapi.ContainerEventType{runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT}},
		{"exit then created", []shim.State{exited, created},
			[]runtimeapi.ContainerEventType{runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT}},
		{"exit twice", []shim.State{exited, exited},
			[]runtimeapi.ContainerEventType{runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, err := meta.Open(filepath.Join(t.TempDir(), "meta.db"), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			c := &Controller{db: db}
			var events []runtimeapi.ContainerEventType
			c.hook = func(ev runtimeapi.ContainerEventType, _ *Container) { events = append(events, ev) }
			ctr := &Container{rec: meta.Container{ID: "c1", State: meta.ContainerCreated}}
			for _, st := range tc.order {
				c.apply(ctr, st)
			}
			rec := ctr.Record()
			if rec.State != meta.ContainerExited || rec.ExitCode != 3 || !rec.FinishedAt.Equal(finished) || !rec.StartedAt.Equal(started) || rec.Reason != "Error" {
				t.Fatalf("record = %s code %d started %v finished %v reason %q", rec.State, rec.ExitCode, rec.StartedAt, rec.FinishedAt, rec.Reason)
			}
			if !slices.Equal(events, tc.events) {
				t.Errorf("events = %v, want %v", events, tc.events)
			}
			saved, err := db.ListContainers()
			if err != nil || len(saved) != 1 || saved[0].State != meta.ContainerExited {
				t.Fatalf("persisted %+v, %v", saved, err)
			}
		})
	}
}

// TestCreationOrder: the lists List and ListByPod copy stay oldest first
// (then by ID) whatever order containers are added and removed in.
func TestCreationOrder(t *testing.T) {
	at := func(sec int64, id string) *Container {
		return &Container{rec: meta.Container{ID: id, CreatedAt: time.Unix(sec, 0).UTC()}}
	}
	a, b1, b2, c, d := at(1, "a"), at(2, "b1"), at(2, "b2"), at(3, "c"), at(4, "d")
	for _, tc := range []struct {
		name   string
		add    []*Container
		remove []*Container
		want   []*Container
	}{
		{"in order", []*Container{a, b1, c}, nil, []*Container{a, b1, c}},
		{"newest first", []*Container{d, c, a}, nil, []*Container{a, c, d}},
		{"same instant, by ID", []*Container{b2, c, b1}, nil, []*Container{b1, b2, c}},
		{"same instant, in ID order", []*Container{b1, b2}, nil, []*Container{b1, b2}},
		{"remove middle", []*Container{a, b1, c, d}, []*Container{b1}, []*Container{a, c, d}},
		{"remove ends", []*Container{d, a, c}, []*Container{a, d}, []*Container{c}},
		{"remove a tie", []*Container{b1, b2}, []*Container{b2}, []*Container{b1}},
		{"remove absent", []*Container{a, c}, []*Container{b1}, []*Container{a, c}},
		{"remove all", []*Container{a}, []*Container{a}, []*Container{}},
	} {
		var s []*Container
		for _, ctr := range tc.add {
			s = inserted(s, ctr)
		}
		for _, ctr := range tc.remove {
			s = without(s, ctr)
		}
		if !slices.Equal(ids(s), ids(tc.want)) {
			t.Errorf("%s: %v, want %v", tc.name, ids(s), ids(tc.want))
		}
	}
}
