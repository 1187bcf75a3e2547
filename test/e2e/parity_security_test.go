//go:build e2e

package e2e

// Parity tests: for behaviours cri-tools' critest checks (the spec names
// are quoted in each test's comment) that the other end-to-end tests do
// not cover, so that CI, which does not run critest, keeps them working.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim/crilog"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

// parityHandler is the status of the default runtime handler ("", the
// name kubelet and critest use), failing the test if it is not listed.
func parityHandler(t *testing.T, d *framework.Daemon) (*runtimeapi.RuntimeHandler, *runtimeapi.StatusResponse) {
	t.Helper()
	resp, err := d.Runtime().Status(testCtx(t), false)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	for _, h := range resp.GetRuntimeHandlers() {
		if h.GetName() == "" {
			return h, resp
		}
	}
	t.Fatalf("Status lists no default runtime handler (name \"\"): %v", resp.GetRuntimeHandlers())
	return nil, nil
}

// parityTraversable makes dir and its parents up to / searchable by
// others (o+x), as /run and containerd's state are: the processes of a
// pod with a user namespace are unprivileged host IDs, which must reach
// the bundle under the daemon's state. ShortStateDir and t.TempDir create
// 0700 directories; the modes are restored at the end of the test.
func parityTraversable(t *testing.T, dir string) {
	t.Helper()
	for d := filepath.Clean(dir); d != "/"; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		mode := fi.Mode().Perm()
		if mode&0o001 != 0 {
			continue
		}
		if err := os.Chmod(d, mode|0o001); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(d, mode) })
	}
}

// TestParityUserNamespaces covers critest's "Security Context
// UserNamespaces" specs: "runtime should support NamespaceMode_POD" (with
// the ID-mapped rootfs), "runtime should support NamespaceMode_NODE",
// "runtime should fail if more than one mapping provided", "runtime
// should fail if container ID 0 is not mapped", "runtime should fail with
// NamespaceMode_CONTAINER" and "... NamespaceMode_TARGET".
func TestParityUserNamespaces(t *testing.T) {
	_, d := podEnv(t)
	if h, _ := parityHandler(t, d); !h.GetFeatures().GetUserNamespaces() {
		t.Fatalf("the default handler does not report user_namespaces: %v", h)
	}
	parityTraversable(t, d.State)
	mapping := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1000, Length: 100000}}
	withUserns := func(name string, o *runtimeapi.UserNamespace) *runtimeapi.PodSandboxConfig {
		return framework.PodConfig(name, func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = o
		})
	}

	t.Run("POD", func(t *testing.T) {
		pc := withUserns("userns-pod", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: mapping, Gids: mapping})
		// The image's files (root-owned) must appear owned by root inside:
		// the rootfs is ID-mapped, so root can write its own root.
		code, out := runOnce(t, d, pc,
			`echo "uidmap=$(cat /proc/self/uid_map)"; echo "gidmap=$(cat /proc/self/gid_map)"; echo "uid=$(id -u)"; echo "owner=$(stat -c %u:%g /bin)"; touch /x && echo touch=ok`, nil)
		if code != 0 {
			t.Fatalf("exit code %d, output:\n%s", code, out)
		}
		vals := keyValues(out)
		for _, k := range []string{"uidmap", "gidmap"} {
			if got := strings.Fields(vals[k]); !slices.Equal(got, []string{"0", "1000", "100000"}) {
				t.Errorf("/proc/self/%s in the container = %q, want \"0 1000 100000\"", strings.Replace(k, "map", "_map", 1), vals[k])
			}
		}
		if vals["uid"] != "0" || vals["owner"] != "0:0" || vals["touch"] != "ok" {
			t.Errorf("in the user namespace: uid %q, /bin owned by %q, write to / %q; want 0, 0:0 (ID-mapped rootfs), ok\n%s", vals["uid"], vals["owner"], vals["touch"], out)
		}
	})

	t.Run("NODE", func(t *testing.T) {
		host, err := os.ReadFile("/proc/self/uid_map")
		if err != nil {
			t.Fatal(err)
		}
		pc := withUserns("userns-node", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE})
		code, out := runOnce(t, d, pc, `cat /proc/self/uid_map`, nil)
		if code != 0 {
			t.Fatalf("exit code %d, output:\n%s", code, out)
		}
		if got, want := strings.Fields(out), strings.Fields(string(host)); !slices.Equal(got, want) {
			t.Errorf("uid_map in a NODE user namespace pod = %q, want the host's %q", out, host)
		}
	})

	for _, tc := range []struct {
		name string
		o    *runtimeapi.UserNamespace
	}{
		{"more than one mapping", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{mapping[0], {ContainerId: 0, HostId: 2000, Length: 100000}},
			Gids: []*runtimeapi.IDMapping{mapping[0], {ContainerId: 0, HostId: 2000, Length: 100000}}}},
		{"container ID 0 not mapped", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{{ContainerId: 1, HostId: 1000, Length: 100000}},
			Gids: []*runtimeapi.IDMapping{{ContainerId: 1, HostId: 1000, Length: 100000}}}},
		{"CONTAINER mode", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}},
		{"TARGET mode", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}},
	} {
		t.Run("refused "+tc.name, func(t *testing.T) {
			pc := withUserns("userns-bad", tc.o)
			t.Cleanup(func() { os.RemoveAll(pc.LogDirectory) })
			resp, err := d.RuntimeClient().RunPodSandbox(testCtx(t), &runtimeapi.RunPodSandboxRequest{Config: pc})
			if err == nil {
				d.RemovePodAtCleanup(t, resp.GetPodSandboxId())
				t.Fatalf("RunPodSandbox with userns options %v succeeded, want an error", tc.o)
			}
			wantCode(t, "RunPodSandbox", err, codes.InvalidArgument, "userns_options")
		})
	}
	if list, err := d.Runtime().ListPodSandbox(testCtx(t), nil); err != nil || len(list) != 0 {
		t.Errorf("pods left after the refused configs: %v, %v", list, err)
	}
}

// parityHostDirWithSubmount makes a host directory with a tmpfs mounted
// on its "tmpfs" subdirectory, unmounted at the end of the test.
func parityHostDirWithSubmount(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	sub := filepath.Join(dir, "tmpfs")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("none", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", sub, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(sub, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", sub, err)
		}
	})
	return dir
}

// TestParityRecursiveReadOnlyMounts covers critest's "Container Mount
// Readonly" specs: "should support non-recursive readonly mounts" (the
// submount of a readonly mount stays writable), "should support recursive
// readonly mounts" (it is read-only too), and the three "should reject a
// recursive readonly mount with ..." (ReadOnly: false,
// PROPAGATION_HOST_TO_CONTAINER, PROPAGATION_BIDIRECTIONAL).
func TestParityRecursiveReadOnlyMounts(t *testing.T) {
	_, d := podEnv(t)
	if h, _ := parityHandler(t, d); !h.GetFeatures().GetRecursiveReadOnlyMounts() {
		t.Fatalf("the default handler does not report recursive_read_only_mounts: %v", h)
	}
	for _, tc := range []struct {
		name      string
		recursive bool
	}{
		{"non-recursive", false},
		{"recursive", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := parityHostDirWithSubmount(t)
			code, out := runOnce(t, d, privilegedPod("rro"),
				`touch /mnt/top; echo "top=$?"; touch /mnt/tmpfs/sub; echo "sub=$?"`,
				func(c *runtimeapi.ContainerConfig) {
					c.Mounts = []*runtimeapi.Mount{{HostPath: host, ContainerPath: "/mnt", Readonly: true, RecursiveReadOnly: tc.recursive}}
				})
			if code != 0 {
				t.Fatalf("exit code %d, output:\n%s", code, out)
			}
			vals := keyValues(out)
			if vals["top"] == "0" {
				t.Errorf("write to the readonly mount succeeded:\n%s", out)
			}
			if tc.recursive && (vals["sub"] == "0" || strings.Count(out, "Read-only file system") != 2) {
				t.Errorf("recursive readonly mount: write to the submount exit %s; want EROFS for both writes:\n%s", vals["sub"], out)
			}
			if !tc.recursive && vals["sub"] != "0" {
				t.Errorf("non-recursive readonly mount: write to the submount failed (exit %s), want it writable:\n%s", vals["sub"], out)
			}
		})
	}

	t.Run("refused", func(t *testing.T) {
		host := parityHostDirWithSubmount(t)
		pc := privilegedPod("rro-bad")
		pod := d.RunPod(t, pc)
		for _, tc := range []struct {
			name     string
			readonly bool
			prop     runtimeapi.MountPropagation
			part     string
		}{
			{"ReadOnly false", false, runtimeapi.MountPropagation_PROPAGATION_PRIVATE, "readonly"},
			{"PROPAGATION_HOST_TO_CONTAINER", true, runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER, "PROPAGATION"},
			{"PROPAGATION_BIDIRECTIONAL", true, runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL, "PROPAGATION"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := sleeper("c")
				cfg.Mounts = []*runtimeapi.Mount{{HostPath: host, ContainerPath: "/mnt", Readonly: tc.readonly, RecursiveReadOnly: true, Propagation: tc.prop}}
				_, err := d.RuntimeClient().CreateContainer(testCtx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: pc})
				wantCode(t, "CreateContainer", err, codes.InvalidArgument, "recursive_read_only", tc.part)
			})
		}
	})
}

// TestParitySupplementalGroupsPolicy covers critest's "Security Context
// SupplementalGroupsPolicy" specs: with Merge (the default) the groups
// the image's /etc/group gives the user are added to the supplemental
// groups, with Strict they are not; both for the container's process and
// for an exec'd one, and ContainerStatus.user reports them.
func TestParitySupplementalGroupsPolicy(t *testing.T) {
	env, d := podEnv(t)
	_, st := parityHandler(t, d)
	if !st.GetFeatures().GetSupplementalGroupsPolicy() {
		t.Fatalf("Status features = %v, want supplemental_groups_policy", st.GetFeatures())
	}
	const imageGroup = 50000
	l, err := images.NewLayer().
		Dir("etc", 0o755).
		File("etc/group", []byte(images.Group+fmt.Sprintf("group-defined-in-image:x:%d:user\n", imageGroup)), 0o644).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	env.PushImage(t, "predefined-group:v1", images.WithLayers(l), images.WithUser(strconv.Itoa(images.UserUID)))
	// The base image already puts "user" in "users" (100).
	for _, tc := range []struct {
		name   string
		policy runtimeapi.SupplementalGroupsPolicy
		want   []int64
	}{
		{"Merge", runtimeapi.SupplementalGroupsPolicy_Merge, []int64{images.UsersGroup, images.UserGID, 1234, imageGroup}},
		{"Strict", runtimeapi.SupplementalGroupsPolicy_Strict, []int64{images.UserGID, 1234}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := framework.PodConfig("groups")
			pod := d.RunPod(t, pc)
			cfg := framework.Shell("c", "predefined-group:v1", `id -G; exec sleep 100000`)
			sc := secCtx(cfg)
			sc.RunAsUser = &runtimeapi.Int64Value{Value: images.UserUID}
			sc.SupplementalGroups = []int64{1234}
			sc.SupplementalGroupsPolicy = tc.policy
			id := d.CreateStarted(t, pod, cfg, pc)
			want := fmt.Sprintf("%d %d", images.UserUID, images.UserGID)
			for _, g := range tc.want {
				want += fmt.Sprintf(" %d", g)
			}
			want = idLine(want)
			framework.Eventually(t, 30*time.Second, func() (bool, string) {
				out := framework.StreamText(framework.ReadCRILines(t, framework.LogPath(pc, cfg)), crilog.Stdout)
				return strings.TrimSpace(out) != "", "no output yet"
			})
			first := framework.StreamText(framework.ReadCRILines(t, framework.LogPath(pc, cfg)), crilog.Stdout)
			if got := idLine(fmt.Sprintf("%d %d %s", images.UserUID, images.UserGID, first)); got != want {
				t.Errorf("groups of the container's process (id -G) = %q, want %q", strings.TrimSpace(first), strings.TrimPrefix(want, fmt.Sprintf("%d %d ", images.UserUID, images.UserGID)))
			}
			exec := d.ExecOK(t, id, "id", "-G")
			if got := idLine(fmt.Sprintf("%d %d %s", images.UserUID, images.UserGID, exec)); got != want {
				t.Errorf("groups of an exec'd process (id -G) = %q, want those of %q", strings.TrimSpace(exec), want)
			}
			user := d.ContainerStatus(t, id).GetStatus().GetUser().GetLinux()
			groups := slices.Clone(user.GetSupplementalGroups())
			slices.Sort(groups)
			wantGroups := slices.Clone(tc.want)
			slices.Sort(wantGroups)
			if user.GetUid() != images.UserUID || user.GetGid() != images.UserGID || !slices.Equal(groups, wantGroups) {
				t.Errorf("ContainerStatus.user.linux = uid %d gid %d groups %v, want %d %d %v", user.GetUid(), user.GetGid(), groups, images.UserUID, images.UserGID, wantGroups)
			}
		})
	}
}

// TestParityMountPropagation covers critest's "Container Mount
// Propagation" specs: "mount with 'rprivate' should not support
// propagation", "'rslave' should support propagation from host to
// container", "'rshared' should support propagation from host to
// container and vice versa". As critest does, the host directory is a
// shared (or private) bind mount of itself, a mount made on the host
// after the start is looked for in the container, and a mount made in
// the (privileged) container is looked for on the host.
func TestParityMountPropagation(t *testing.T) {
	_, d := podEnv(t)
	for _, tc := range []struct {
		name           string
		prop           runtimeapi.MountPropagation
		toCtr, fromCtr bool
	}{
		{"rprivate", runtimeapi.MountPropagation_PROPAGATION_PRIVATE, false, false},
		{"rslave", runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER, true, false},
		{"rshared", runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			src := filepath.Join(base, "mnt")
			hostMnt := filepath.Join(src, "fromhost")
			ctrMnt := filepath.Join(src, "fromctr")
			flagDir := filepath.Join(base, "flag")
			for _, dir := range []string{hostMnt, ctrMnt, flagDir} {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(flagDir, "flagFile"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mount(src, src, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				for _, m := range []string{ctrMnt, hostMnt, src} {
					unix.Unmount(m, unix.MNT_DETACH)
				}
			})
			flag := unix.MS_PRIVATE
			if tc.prop != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				flag = unix.MS_SHARED
			}
			if err := unix.Mount("", src, "", uintptr(flag|unix.MS_REC), ""); err != nil {
				t.Fatal(err)
			}
			pc := privilegedPod("prop")
			pod := d.RunPod(t, pc)
			cfg := sleeper("c")
			secCtx(cfg).Privileged = true
			cfg.Mounts = []*runtimeapi.Mount{{HostPath: src, ContainerPath: src, Propagation: tc.prop}}
			id := d.CreateStarted(t, pod, cfg, pc)

			if err := unix.Mount(flagDir, hostMnt, "", unix.MS_BIND, ""); err != nil {
				t.Fatal(err)
			}
			seen := strings.TrimSpace(d.ExecOK(t, id, "ls", "-A", hostMnt))
			if got := seen != ""; got != tc.toCtr {
				t.Errorf("host mount made after the start visible in the container = %v (ls: %q), want %v", got, seen, tc.toCtr)
			}

			d.ExecOK(t, id, "mount", "--bind", "/etc", ctrMnt)
			entries, err := os.ReadDir(ctrMnt)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(entries) > 0; got != tc.fromCtr {
				t.Errorf("container mount visible on the host = %v (%d entries), want %v", got, len(entries), tc.fromCtr)
			}
		})
	}
}

// parityNS is the namespace link of kind ("ipc", "net", "pid") of the
// test process.
func parityNS(t *testing.T, kind string) string {
	t.Helper()
	l, err := os.Readlink("/proc/self/ns/" + kind)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestParityHostNamespaces covers critest's "Security Context
// NamespaceOption" specs "runtime should support HostIpc is true/false"
// and "HostNetwork is true/false" by namespace identity: a pod with the
// node's IPC (network) namespace is in the host's, one without is not.
// (HostPID, PodPID and ContainerPID: TestPIDNamespaceModes; the host
// network's interfaces and hostname: TestHostNetworkPod.)
func TestParityHostNamespaces(t *testing.T) {
	_, d := podEnv(t)
	hostIPC, hostNet := parityNS(t, "ipc"), parityNS(t, "net")
	node, pod := runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_POD
	for _, tc := range []struct {
		name     string
		net, ipc runtimeapi.NamespaceMode
	}{
		{"host IPC and network", node, node},
		{"pod IPC and network", pod, pod},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := framework.PodConfig("hostns", framework.WithPodNamespaces(tc.net, runtimeapi.NamespaceMode_CONTAINER, tc.ipc))
			code, out := runOnce(t, d, pc, `echo "ipc=$(readlink /proc/self/ns/ipc)"; echo "net=$(readlink /proc/self/ns/net)"`,
				func(c *runtimeapi.ContainerConfig) {
					ns := c.Linux.SecurityContext.NamespaceOptions
					ns.Network, ns.Ipc = tc.net, tc.ipc
				})
			if code != 0 {
				t.Fatalf("exit code %d, output:\n%s", code, out)
			}
			vals := keyValues(out)
			if got := vals["ipc"] == hostIPC; got != (tc.ipc == node) {
				t.Errorf("container IPC namespace %s, host's %s: shared = %v, want %v", vals["ipc"], hostIPC, got, tc.ipc == node)
			}
			if got := vals["net"] == hostNet; got != (tc.net == node) {
				t.Errorf("container network namespace %s, host's %s: shared = %v, want %v", vals["net"], hostNet, got, tc.net == node)
			}
		})
	}
}

// TestParityCustomMaskedAndReadonlyPaths covers critest's "runtime should
// support MaskedPaths" (a masked file reads empty and cannot be executed)
// and "runtime should support ReadonlyPaths" (/tmp listed: writes fail
// with EROFS) with paths of the image rather than /proc (TestMaskedPaths
// covers kubelet's lists).
func TestParityCustomMaskedAndReadonlyPaths(t *testing.T) {
	env, d := podEnv(t)
	l, err := images.NewLayer().
		Dir("opt", 0o755).
		File("opt/tool", []byte("#!/bin/sh\necho tool-ran\n"), 0o755).
		Dir("opt/secrets", 0o755).
		File("opt/secrets/key", []byte("s3cret\n"), 0o644).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	env.PushImage(t, "masked:v1", images.WithLayers(l))
	pc := framework.PodConfig("masked")
	pod := d.RunPod(t, pc)
	cfg := framework.ContainerConfig("c", "masked:v1", "sleep", "100000")
	sc := secCtx(cfg)
	sc.MaskedPaths = []string{"/opt/tool", "/opt/secrets"}
	sc.ReadonlyPaths = []string{"/tmp"}
	id := d.CreateStarted(t, pod, cfg, pc)

	if r := d.Exec(t, id, 10*time.Second, "/opt/tool"); r.ExitCode == 0 || strings.Contains(r.Stdout, "tool-ran") {
		t.Errorf("masked /opt/tool ran: exit %d stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	if r := d.Exec(t, id, 10*time.Second, "sh", "-c", "/opt/tool"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "Permission denied") {
		t.Errorf("sh -c /opt/tool with /opt/tool masked: exit %d stderr %q, want Permission denied", r.ExitCode, r.Stderr)
	}
	if got := d.ExecOK(t, id, "cat", "/opt/tool"); got != "" {
		t.Errorf("masked /opt/tool reads %q, want nothing", got)
	}
	if got := d.ExecOK(t, id, "ls", "-A", "/opt/secrets"); got != "" {
		t.Errorf("masked directory /opt/secrets lists %q, want nothing", got)
	}
	r := d.Exec(t, id, 10*time.Second, "touch", "/tmp/test")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "Read-only file system") {
		t.Errorf("touch /tmp/test with /tmp read-only: exit %d stderr %q, want EROFS", r.ExitCode, r.Stderr)
	}
	d.ExecOK(t, id, "touch", "/var/writable")
}

// TestParityAddAllCapabilities covers critest's "runtime should support
// adding ALL capabilities": every capability the daemon holds (the test
// process's bounding set: a sandboxed host may lack some) is in the
// container's bounding and effective sets.
func TestParityAddAllCapabilities(t *testing.T) {
	_, d := podEnv(t)
	self, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	want := statusField(string(self), "CapBnd")
	if want == "" || want == capMask() {
		t.Fatalf("test process bounding set %q", want)
	}
	code, out := runOnce(t, d, framework.PodConfig("allcaps"), `grep -E '^Cap(Eff|Bnd):' /proc/self/status`, func(c *runtimeapi.ContainerConfig) {
		secCtx(c).Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"ALL"}}
	})
	if code != 0 {
		t.Fatalf("exit code %d: %s", code, out)
	}
	for _, f := range []string{"CapBnd", "CapEff"} {
		if got := statusField(out, f); got != want {
			t.Errorf("%s with add ALL = %s, want %s (the daemon's bounding set)", f, got, want)
		}
	}
}

// TestParitySeccompHostname covers critest's "Security Context
// SeccompProfilePath" specs not in TestSeccomp: "should support nil
// profile, which is unconfined" and "should support seccomp default on
// the container" (an empty profile message is RuntimeDefault) by the
// Seccomp: field, and the sethostname ones: "runtime should not block
// setting host name with unconfined seccomp and SYS_ADMIN", "runtime
// should support an seccomp profile that blocks setting hostname with
// SYS_ADMIN", "runtime should ignore a seccomp profile that blocks setting
// hostname when privileged".
func TestParitySeccompHostname(t *testing.T) {
	_, d := podEnv(t)
	blockHostname := filepath.Join(t.TempDir(), "block-hostname.json")
	if err := os.WriteFile(blockHostname, []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	const script = `echo "seccomp=$(grep '^Seccomp:' /proc/self/status | cut -f2)"; hostname parity-set; echo "hostname=$?"`
	for _, tc := range []struct {
		name       string
		profile    *runtimeapi.SecurityProfile
		sysAdmin   bool
		privileged bool
		mode       string // Seccomp: of /proc/self/status
		sethost    bool
	}{
		{name: "nil profile is unconfined", mode: "0", sethost: false},
		{name: "empty profile is RuntimeDefault", profile: &runtimeapi.SecurityProfile{}, mode: "2", sethost: false},
		{name: "unconfined with SYS_ADMIN", profile: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, sysAdmin: true, mode: "0", sethost: true},
		{name: "localhost blocking sethostname with SYS_ADMIN", profile: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: blockHostname}, sysAdmin: true, mode: "2", sethost: false},
		{name: "localhost blocking sethostname ignored when privileged", profile: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: blockHostname}, privileged: true, mode: "0", sethost: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := framework.PodConfig("seccomp-host")
			if tc.privileged {
				pc = privilegedPod("seccomp-host")
			}
			code, out := runOnce(t, d, pc, script, func(c *runtimeapi.ContainerConfig) {
				sc := secCtx(c)
				sc.Seccomp = tc.profile
				sc.Privileged = tc.privileged
				if tc.sysAdmin {
					sc.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}
				}
			})
			if code != 0 {
				t.Fatalf("exit code %d: %s", code, out)
			}
			vals := keyValues(out)
			if vals["seccomp"] != tc.mode {
				t.Errorf("Seccomp: %q, want %s (0 none, 2 filter)\n%s", vals["seccomp"], tc.mode, out)
			}
			if got := vals["hostname"] == "0"; got != tc.sethost {
				t.Errorf("sethostname succeeded = %v, want %v\n%s", got, tc.sethost, out)
			}
		})
	}
}

// TestParityRunAsGroupWithoutUser covers critest's "runtime should return
// error if RunAsGroup is set without RunAsUser".
func TestParityRunAsGroupWithoutUser(t *testing.T) {
	_, d := podEnv(t)
	pc := framework.PodConfig("rag")
	pod := d.RunPod(t, pc)
	cfg := sleeper("c")
	secCtx(cfg).RunAsGroup = &runtimeapi.Int64Value{Value: 1002}
	_, err := d.RuntimeClient().CreateContainer(testCtx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: pc})
	wantCode(t, "CreateContainer", err, codes.InvalidArgument, "run_as_group")
}

// TestParityVolumeSymlinkHostPath covers critest's "runtime should support
// starting container with volume when host path is a symlink": the mount
// is of the directory the link points to.
func TestParityVolumeSymlinkHostPath(t *testing.T) {
	_, d := podEnv(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "link")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "hello"), []byte("through-the-link\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	code, out := runOnce(t, d, framework.PodConfig("symvol"), `cat /vol/hello && echo written > /vol/out`, func(c *runtimeapi.ContainerConfig) {
		c.Mounts = []*runtimeapi.Mount{{HostPath: link, ContainerPath: "/vol"}}
	})
	if code != 0 || !strings.Contains(out, "through-the-link") {
		t.Fatalf("exit code %d, output %q; want the content of the link's target", code, out)
	}
	if b, err := os.ReadFile(filepath.Join(target, "out")); err != nil || string(b) != "written\n" {
		t.Errorf("file written through the volume: %q, %v", b, err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the host path symlink was replaced: %v, %v", fi, err)
	}
}

// TestParityImageIDConsistency covers critest's "Image Identifier
// Consistency" specs: "should return the same image identifier across
// all APIs" (PullImage, ImageStatus by tag, by digest and by ID,
// ListImages, ContainerStatus.image_id and .image.image, image_ref) and
// "should return the same image identifier when pulled from different
// registries" (one image, the tags of both).
func TestParityImageIDConsistency(t *testing.T) {
	env, d := podEnv(t)
	img := busybox(t, images.WithLabels(map[string]string{"parity": "id"}))
	id := img.ID().String()
	env.Push(t, "registry.k8s.io/parity/idc:1", img)
	env.Push(t, "docker.io/parity/idc:1", img)

	pull(t, d, "registry.k8s.io/parity/idc:1", id)
	byDigest := "registry.k8s.io/parity/idc@" + img.Digest().String()
	pull(t, d, byDigest, id)
	pull(t, d, "docker.io/parity/idc:1", id)
	for _, ref := range []string{"registry.k8s.io/parity/idc:1", byDigest, "docker.io/parity/idc:1", id} {
		if got := mustStatus(t, d, ref); got.GetId() != id {
			t.Errorf("ImageStatus(%s).id = %s, want %s", ref, got.GetId(), id)
		}
	}
	var found []*runtimeapi.Image
	for _, i := range listImages(t, d, nil) {
		if slices.ContainsFunc(i.GetRepoTags(), func(s string) bool { return strings.Contains(s, "parity/idc") }) {
			found = append(found, i)
		}
	}
	if len(found) != 1 || found[0].GetId() != id {
		t.Fatalf("ListImages: %d images tagged parity/idc (%v), want one with ID %s", len(found), found, id)
	}
	if want := []string{"docker.io/parity/idc:1", "registry.k8s.io/parity/idc:1"}; !sameSet(found[0].GetRepoTags(), want) {
		t.Errorf("repo tags %q, want %q", found[0].GetRepoTags(), want)
	}

	pc := framework.PodConfig("idc")
	pod := d.RunPod(t, pc)
	for _, ref := range []string{"registry.k8s.io/parity/idc:1", byDigest, id} {
		cfg := framework.ContainerConfig("c"+strconv.Itoa(len(ref)), ref, "sleep", "100000")
		ctr := d.CreateContainer(t, pod, cfg, pc)
		st := d.ContainerStatus(t, ctr).GetStatus()
		if st.GetImageId() != id {
			t.Errorf("container from %s: image_id %q, want the image's ID %s", ref, st.GetImageId(), id)
		}
		if st.GetImageRef() == "" {
			t.Errorf("container from %s: empty image_ref", ref)
		}
		list, err := d.Runtime().ListContainers(testCtx(t), &runtimeapi.ContainerFilter{Id: ctr})
		if err != nil || len(list) != 1 || list[0].GetImageId() != id {
			t.Errorf("ListContainers(%s): %v, %v; want image_id %s", ctr, list, err, id)
		}
	}
}

// TestParityPullTimeout covers critest's "public image should timeout if
// requested": a PullImage whose deadline passes fails with
// DeadlineExceeded and returns no image. The deadline passes while the
// daemon downloads (a layer the registry stalls), so it is the daemon
// that must give up: the download stops (the registry sees its client go)
// and nothing is listed.
func TestParityPullTimeout(t *testing.T) {
	d, reg := hostileDaemon(t)
	img := busybox(t)
	hostilePushBlobs(reg, "parity/timeout", img)
	hostilePushManifest(t, reg, "parity/timeout", "1", img, nil)
	reg.StallBlob(img.Layers[0].Digest, 10)
	ref := hostileRef(reg, "parity/timeout", "1")

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	got, err := d.Images().PullImage(ctx, spec(ref), nil, nil)
	if got != "" || status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("PullImage past its deadline = %q, %v; want \"\" and DeadlineExceeded", got, err)
	}
	if reg.BlobGets(img.Layers[0].Digest) == 0 {
		t.Fatalf("the daemon never downloaded the stalled layer: the deadline passed before the pull got there")
	}
	framework.Eventually(t, 10*time.Second, func() (bool, string) {
		return reg.Stalled() == 0, fmt.Sprintf("%d downloads still wait on the stalled layer after the deadline", reg.Stalled())
	})
	if st, err := d.Images().ImageStatus(testCtx(t), spec(ref), false); err != nil || st.GetImage() != nil {
		t.Errorf("after the timed-out pull: ImageStatus = %v, %v; want no image", st.GetImage(), err)
	}
}

// paritySetuidShellLayer is a layer with /opt/sdash, Debian's dash
// installed setuid root, and the libraries ldd lists for it: run with -p
// it keeps the effective uid a setuid exec gave it, and its builtins
// (read, echo) report it without another exec.
func paritySetuidShellLayer(t *testing.T) images.Layer {
	t.Helper()
	const dash = "/bin/dash"
	out, err := exec.Command("ldd", dash).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", dash, err)
	}
	b := images.NewLayer().Dir("opt", 0o755).HostFile("opt/sdash", dash, 0o755|os.ModeSetuid)
	dirs := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		var lib string
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			lib = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			lib = f[0]
		default:
			continue
		}
		rel := strings.TrimPrefix(filepath.Clean(lib), "/")
		parts := strings.Split(filepath.Dir(rel), "/")
		for i := range parts {
			if d := strings.Join(parts[:i+1], "/"); !dirs[d] {
				dirs[d] = true
				b.Dir(d, 0o755)
			}
		}
		b.HostFile(rel, lib, 0o755)
	}
	l, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestParityNoNewPrivsSetuid covers critest's "Security Context
// NoNewPrivs" specs by behaviour ("should not allow privilege escalation
// when true", "should allow privilege escalation when false"): a non-root
// container executing a setuid-root program gets effective uid 0 only
// without no_new_privs. (TestReadonlyRootfsAndNoNewPrivs checks the
// kernel flag itself.)
func TestParityNoNewPrivsSetuid(t *testing.T) {
	env, d := podEnv(t)
	env.PushImage(t, "setuid:v1", images.WithLayers(paritySetuidShellLayer(t)))
	const script = `while read -r k r e s f; do [ "$k" = Uid: ] && echo "uids=$r $e"; done </proc/self/status; true`
	for _, tc := range []struct {
		nnp  bool
		want string // real and effective uid of the setuid program
	}{
		{false, "1000 0"},
		{true, "1000 1000"},
	} {
		t.Run(fmt.Sprintf("no_new_privs=%v", tc.nnp), func(t *testing.T) {
			cfg := framework.ContainerConfig("c", "setuid:v1", "/opt/sdash", "-p", "-c", script)
			sc := secCtx(cfg)
			sc.RunAsUser = &runtimeapi.Int64Value{Value: images.UserUID}
			sc.NoNewPrivs = tc.nnp
			st, out := runToExit(t, d, framework.PodConfig("nnp"), cfg)
			if st.ExitCode != 0 {
				t.Fatalf("exit code %d (%s %s), output %q", st.ExitCode, st.Reason, st.Message, out)
			}
			if got := keyValues(out)["uids"]; got != tc.want {
				t.Errorf("real, effective uid of a setuid-root program run by uid 1000 = %q, want %q", got, tc.want)
			}
		})
	}
}
