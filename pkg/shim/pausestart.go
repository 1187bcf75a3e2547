package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
)

// The shim's own start of a pod's built-in pause (CreateRequest.Pause,
// runtime.sandbox_start "shim"): no OCI runtime process on the pod's
// critical path. The shim clones the pause binary into the pod's new
// namespaces (and user namespace with its mappings), makes its cgroup as
// runc's cgroupfs driver would (cgroups.MakeProcess), puts it there, sets
// its oom_score_adj and lets it go; pause then confines itself (see the C
// code in pkg/podsandbox/pause) and reports on a socket. Kill signals it
// through its pidfd, Delete kills it and removes its cgroup, Update writes
// its cgroup, and a restarted shim finds it by its pid and cgroup.

// pauseMount is where the daemon mounts the pause binary in the bundle
// (pause.ContainerPath); the mount's source is the binary the shim runs.
const pauseMount = "/pause"

// pausePlan is a pause bundle translated for the shim's own start.
type pausePlan struct {
	binary      string
	args        []string // options sent to pause
	cloneflags  uintptr
	uidMap      []syscall.SysProcIDMap
	gidMap      []syscall.SysProcIDMap
	cgroupsPath string
	resources   *specs.LinuxResources
	oomScoreAdj *int
	env         []string
}

// PauseStartable reports why the shim cannot start the pause of spec
// itself (nil: it can). The daemon asks before it sends CreateRequest.Pause
// and falls back to the OCI runtime otherwise; the shim asks again.
func PauseStartable(spec *specs.Spec) error {
	_, err := planPause(spec)
	return err
}

// planPause checks that spec asks for nothing but what the confined pause
// does, exactly as runc would do it, and translates it.
func planPause(spec *specs.Spec) (*pausePlan, error) {
	unsupported := func(what string) (*pausePlan, error) {
		return nil, fmt.Errorf("the shim cannot start this sandbox itself: %s", what)
	}
	if spec == nil || spec.Process == nil || spec.Linux == nil || spec.Root == nil {
		return unsupported("incomplete spec")
	}
	p, l := spec.Process, spec.Linux
	if len(p.Args) != 2 || p.Args[0] != pauseMount || p.Args[1] != "pause" {
		return unsupported("not the built-in pause")
	}
	if p.Terminal || p.ApparmorProfile != "" || p.SelinuxLabel != "" || l.MountLabel != "" || len(p.Rlimits) > 0 ||
		p.Capabilities == nil || len(p.Capabilities.Bounding)+len(p.Capabilities.Effective)+len(p.Capabilities.Permitted)+
		len(p.Capabilities.Inheritable)+len(p.Capabilities.Ambient) > 0 || !p.NoNewPrivileges || p.User.Umask != nil ||
		p.Scheduler != nil || p.IOPriority != nil || p.ExecCPUAffinity != nil {
		return unsupported("process settings beyond the pause's")
	}
	if !spec.Root.Readonly || spec.Hooks != nil || l.IntelRdt != nil || l.Personality != nil || len(l.TimeOffsets) > 0 ||
		l.RootfsPropagation != "" || len(l.Devices) > 0 || l.MemoryPolicy != nil || len(l.NetDevices) > 0 {
		return unsupported("linux settings beyond the pause's")
	}
	// Masked and read-only paths are those of a /proc and /sys the
	// confined pause does not have; a spec without them (privileged) is
	// not the pause's.
	if len(l.MaskedPaths) == 0 || len(l.ReadonlyPaths) == 0 {
		return unsupported("unmasked paths (a privileged pod)")
	}
	if s := l.Seccomp; s != nil && (s.ListenerPath != "" || len(s.Flags) > 0) {
		return unsupported("a seccomp listener or flags")
	}
	var bin string
	for _, m := range spec.Mounts {
		if m.Destination == pauseMount && m.Type == "bind" {
			bin = m.Source
		}
	}
	if !filepath.IsAbs(bin) {
		return unsupported("no pause binary mounted at " + pauseMount)
	}
	// A cgroupfs path, or under the systemd driver a scope on a unified
	// host (runc's systemd driver also joins v1 hierarchies of its own).
	if !strings.HasPrefix(l.CgroupsPath, "/") && (!cgroups.IsSystemdPath(l.CgroupsPath) || !cgroups.Unified()) {
		return unsupported("a systemd cgroups path on a host not on cgroup v2 alone")
	}
	if !onlyPodLimits(l.Resources) {
		return unsupported("resources beyond CPU and memory limits")
	}
	plan := &pausePlan{
		binary:      bin,
		cgroupsPath: l.CgroupsPath,
		resources:   l.Resources,
		oomScoreAdj: p.OOMScoreAdj,
		env:         withHome(p.Env),
		args:        []string{"root=" + spec.Root.Path},
	}
	if !filepath.IsAbs(spec.Root.Path) {
		return unsupported("a relative rootfs")
	}
	hasNS := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range l.Namespaces {
		hasNS[ns.Type] = true
		switch ns.Type {
		case specs.MountNamespace, specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.UserNamespace:
			if ns.Path != "" {
				return unsupported("joining a " + string(ns.Type) + " namespace")
			}
		case specs.NetworkNamespace:
			if ns.Path != "" {
				plan.args = append(plan.args, "netns="+ns.Path)
				continue
			}
		default:
			return unsupported("a " + string(ns.Type) + " namespace")
		}
		plan.cloneflags |= map[specs.LinuxNamespaceType]uintptr{
			specs.MountNamespace:   unix.CLONE_NEWNS,
			specs.PIDNamespace:     unix.CLONE_NEWPID,
			specs.IPCNamespace:     unix.CLONE_NEWIPC,
			specs.UTSNamespace:     unix.CLONE_NEWUTS,
			specs.UserNamespace:    unix.CLONE_NEWUSER,
			specs.NetworkNamespace: unix.CLONE_NEWNET,
		}[ns.Type]
	}
	if !hasNS[specs.MountNamespace] {
		return unsupported("no mount namespace")
	}
	if hasNS[specs.UserNamespace] != (len(l.UIDMappings) > 0) || len(l.UIDMappings) != len(l.GIDMappings) {
		return unsupported("user namespace without mappings, or mappings without one")
	}
	for _, m := range l.UIDMappings {
		plan.uidMap = append(plan.uidMap, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
	}
	for _, m := range l.GIDMappings {
		plan.gidMap = append(plan.gidMap, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
	}
	if spec.Hostname != "" {
		if !hasNS[specs.UTSNamespace] {
			return unsupported("a hostname without a UTS namespace")
		}
		plan.args = append(plan.args, "hostname="+spec.Hostname)
	}
	keys := make([]string, 0, len(l.Sysctl))
	for k := range l.Sysctl {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := l.Sysctl[k]
		// runc's translation of the dotted form: a '/' stands for a dot
		// inside one segment (an interface name like eth0.100).
		file := strings.Map(func(r rune) rune {
			switch r {
			case '.':
				return '/'
			case '/':
				return '.'
			}
			return r
		}, k)
		if strings.ContainsAny(file, "=\x00") || strings.Contains(file, "..") || strings.ContainsRune(v, 0) {
			return unsupported("sysctl " + k)
		}
		plan.args = append(plan.args, "sysctl="+file+"="+v)
	}
	groups := make([]string, 0, len(p.User.AdditionalGids))
	for _, g := range p.User.AdditionalGids {
		groups = append(groups, strconv.FormatUint(uint64(g), 10))
	}
	plan.args = append(plan.args,
		"uid="+strconv.FormatUint(uint64(p.User.UID), 10),
		"gid="+strconv.FormatUint(uint64(p.User.GID), 10),
		"groups="+strings.Join(groups, ","))
	return plan, nil
}

// withHome adds HOME=/ unless env has a HOME, as runc does for a user
// the (empty) rootfs has no passwd entry for.
func withHome(env []string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "HOME=") {
			return env
		}
	}
	return append(slices.Clip(env), "HOME=/")
}

// onlyPodLimits reports whether r holds nothing but what a pause's
// cgroup gets (CPU shares, quota and period, memory limit and swap) and
// device rules (the shim denies every device instead). Whatever a newer
// runtime-spec adds makes it false.
func onlyPodLimits(r *specs.LinuxResources) bool {
	if r == nil {
		return true
	}
	want := specs.LinuxResources{Devices: r.Devices}
	if c := r.CPU; c != nil {
		want.CPU = &specs.LinuxCPU{Shares: c.Shares, Quota: c.Quota, Period: c.Period}
	}
	if m := r.Memory; m != nil {
		want.Memory = &specs.LinuxMemory{Limit: m.Limit, Swap: m.Swap}
	}
	return reflect.DeepEqual(want, *r)
}

// loadSpec reads a bundle's config.json.
func loadSpec(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Join(bundle, "config.json"), err)
	}
	return &s, nil
}

// pauseCreate starts the pause of req's bundle itself and returns its
// pid, running. Its output goes nowhere, as a runc-run pause's does.
func (s *server) pauseCreate(ctx context.Context, c *container, req CreateRequest) (int, *containerIO, error) {
	spec, err := loadSpec(req.Bundle)
	if err != nil {
		return 0, nil, err
	}
	plan, err := planPause(spec)
	if err != nil {
		return 0, nil, err
	}
	layout, err := cgroups.HostLayout()
	if err != nil {
		return 0, nil, err
	}
	var place func(pid int) error
	if cgroups.IsSystemdPath(plan.cgroupsPath) {
		place = func(pid int) error {
			return cgroups.StartProcessScope(ctx, plan.cgroupsPath, pid, plan.resources)
		}
	} else {
		procs, err := cgroups.MakeProcess(layout, plan.cgroupsPath, plan.resources)
		if err != nil {
			s.pauseCleanup(c)
			return 0, nil, err
		}
		place = func(pid int) error {
			for _, f := range procs {
				if err := os.WriteFile(f, []byte(strconv.Itoa(pid)), 0); err != nil {
					return err
				}
			}
			return nil
		}
	}
	pid, err := s.spawnPause(ctx, plan, place)
	if err != nil {
		s.pauseCleanup(c)
		return 0, nil, err
	}
	return pid, &containerIO{done: make(chan struct{})}, nil
}

// spawnPause clones the pause, places it and waits for its report.
func (s *server) spawnPause(ctx context.Context, plan *pausePlan, place func(pid int) error) (int, error) {
	// By descriptor: in a user namespace the pause cannot search the
	// daemon's directories for its binary (runc bind-mounts it instead).
	exeFD, err := unix.Open(plan.binary, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open pause binary: %w", err)
	}
	exe := os.NewFile(uintptr(exeFD), plan.binary)
	defer exe.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("pause sync socket: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "pause-sync"), os.NewFile(uintptr(pair[1]), "pause-sync")
	defer ours.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		theirs.Close()
		return 0, err
	}
	defer devnull.Close()
	sys := &syscall.SysProcAttr{
		Setsid:      true,
		Cloneflags:  plan.cloneflags,
		UidMappings: plan.uidMap,
		GidMappings: plan.gidMap,
		// The pod's supplementary groups are set inside, as runc sets them.
		GidMappingsEnableSetgroups: len(plan.gidMap) > 0,
	}
	if len(plan.uidMap) > 0 {
		// Root of the new user namespace before the exec, or the exec
		// would drop every capability the confined start needs there: the
		// host's root is not mapped in it (runc's init does the same).
		sys.Credential = &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true}
	}
	// The arguments of a runc-run pause: the sync socket as fd 3 is what
	// makes pause confine itself, with the options sent on it.
	pid, exitCh, err := s.reaper.Start("/proc/self/fd/4", []string{pauseMount, "pause"}, &os.ProcAttr{
		Dir:   "/",
		Env:   plan.env,
		Files: []*os.File{devnull, devnull, devnull, theirs, exe},
		Sys:   sys,
	})
	theirs.Close()
	if err != nil {
		return 0, err
	}
	// A failed start is killed; the reaper reaps it into exitCh.
	fail := func(err error) (int, error) {
		_ = unix.Kill(pid, unix.SIGKILL)
		return 0, err
	}
	if err := place(pid); err != nil {
		return fail(fmt.Errorf("move pause into its cgroup: %w", err))
	}
	// A runc-run pause has runc's open-file limit, which runc's Go
	// runtime raised to the hard limit; the shim's Go gives the children
	// it starts their parent's original soft limit instead (1024 under
	// systemd's default), so the pause gets the hard limit as soft too.
	var nofile unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile); err == nil {
		nofile.Cur = nofile.Max
		if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &nofile, nil); err != nil {
			return fail(fmt.Errorf("set pause's open-file limit: %w", err))
		}
	}
	if plan.oomScoreAdj != nil {
		if err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/oom_score_adj", []byte(strconv.Itoa(*plan.oomScoreAdj)), 0); err != nil {
			return fail(fmt.Errorf("set pause's oom_score_adj: %w", err))
		}
	}
	if _, err := ours.Write([]byte(strings.Join(plan.args, "\x00"))); err != nil {
		return fail(fmt.Errorf("release pause: %w", err))
	}
	deadline := time.Now().Add(runtimeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = ours.SetReadDeadline(deadline)
	buf := make([]byte, 1024)
	n, err := ours.Read(buf)
	switch {
	case n == 2 && string(buf[:n]) == "ok":
		// adoptInit subscribes to the exit: an exit already dispatched to
		// this subscription is a pause that died at start.
		s.reaper.Unsubscribe(pid, exitCh)
		select {
		case e := <-exitCh:
			return 0, fmt.Errorf("pause exited at start (status %d)", e.Status)
		default:
		}
		return pid, nil
	case n > 0:
		return fail(errors.New(string(buf[:n])))
	case err != nil && !errors.Is(err, os.ErrDeadlineExceeded):
		return fail(fmt.Errorf("pause exited while confining itself"))
	default:
		return fail(fmt.Errorf("pause did not confine itself in time: %w", err))
	}
}

// pauseCleanup removes the cgroup of a pause that failed to start or was
// deleted.
func (s *server) pauseCleanup(c *container) {
	layout, err := cgroups.HostLayout()
	if err == nil {
		ctx, cancel := context.WithTimeout(s.ctx, deleteWait)
		defer cancel()
		err = cgroups.RemoveProcess(ctx, layout, c.rec.CgroupsPath)
	}
	if err != nil {
		klog.ErrorS(err, "Removing the cgroup of the pause", "id", c.id)
	}
}

// pauseKill signals the pause through its pidfd (all: also whatever else
// is in its cgroup, as `runc kill --all`).
func (s *server) pauseKill(c *container, sig syscall.Signal, all bool) error {
	c.mu.Lock()
	var err error
	if c.pidfd != nil {
		err = unix.PidfdSendSignal(int(c.pidfd.Fd()), sig, nil, 0)
	} else if pid := c.rec.State.Pid; pid > 0 && cgroups.IsMember(pid, c.rec.CgroupsPath) {
		// Reloaded by a restarted shim: no pidfd of ours.
		err = unix.Kill(pid, sig)
	}
	c.mu.Unlock()
	if errors.Is(err, unix.ESRCH) {
		err = nil
	}
	if all && sig == unix.SIGKILL {
		if l, lerr := cgroups.HostLayout(); lerr == nil {
			err = errors.Join(err, cgroups.KillProcess(l, c.rec.CgroupsPath))
		}
	}
	return err
}

// pauseDelete kills a pause that still runs, waits for its exit and
// removes its cgroup.
func (s *server) pauseDelete(ctx context.Context, c *container) error {
	if c.state().Status != StatusExited {
		if err := s.pauseKill(c, unix.SIGKILL, false); err != nil {
			return err
		}
		t := time.NewTimer(deleteWait)
		defer t.Stop()
		select {
		case <-c.exited:
		case <-t.C:
			return errors.New("pause did not exit after SIGKILL")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	layout, err := cgroups.HostLayout()
	if err != nil {
		return err
	}
	return cgroups.RemoveProcess(ctx, layout, c.rec.CgroupsPath)
}

// pauseUpdate writes new resources into the pause's cgroup.
func (s *server) pauseUpdate(c *container, resources []byte) error {
	var r specs.LinuxResources
	if err := json.Unmarshal(resources, &r); err != nil {
		return fmt.Errorf("decode resources: %w", err)
	}
	layout, err := cgroups.HostLayout()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx, runtimeTimeout)
	defer cancel()
	return cgroups.UpdateProcess(ctx, layout, c.rec.CgroupsPath, &r)
}
