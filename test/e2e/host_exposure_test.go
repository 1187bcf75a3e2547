//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

// hostNobody is the unprivileged host user the tests below play.
const hostNobody = 65534

// statAsNobody runs stat(1) on path as uid/gid 65534 without
// supplementary groups and returns its error (nil: nobody reached path).
func statAsNobody(path string) error {
	cmd := exec.Command("stat", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: hostNobody, Gid: hostNobody}}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// fdTargets maps each open fd of pid to what it points at.
func fdTargets(t *testing.T, pid int) map[string]string {
	t.Helper()
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
			out[e.Name()] = target
		}
	}
	return out
}

// TestHostExposure checks what an unprivileged host user and the
// processes the daemon starts can reach, with the daemon started under
// umask 0 (so no mode rests on the umask): the CRI socket is 0660, each
// shim socket 0600, no host user passes a pod's directory to its rootfs,
// bundles or /dev/shm, a container's init holds only its stdio, a shim
// holds no fd the daemon opened for itself (even one started while a
// layer unpacks), a decompression bomb stops at
// image.max_uncompressed_size, and an image's 33-bit uid or gid does not
// become root.
func TestHostExposure(t *testing.T) {
	// A file the daemon inherits without close-on-exec, as from a
	// supervisor or a shell: nothing the daemon starts may hold it.
	marker, err := os.Create(filepath.Join(t.TempDir(), "inherited-by-daemon"))
	if err != nil {
		t.Fatal(err)
	}
	defer marker.Close()
	// It lands on fds 3 to 6 of the daemon: a child's fd 3 is often
	// replaced by a pipe of its own (the shim's ready pipe), so one on
	// fd 3 alone would prove nothing.
	old := syscall.Umask(0)
	env, d := podEnv(t, framework.WithConfig("image.max_uncompressed_size", bombLimit), framework.WithExtraFiles(marker, marker, marker, marker))
	syscall.Umask(old)

	t.Run("CRI socket", func(t *testing.T) {
		fi, err := os.Stat(d.Socket)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || st.Uid != 0 || st.Gid != 0 {
			t.Errorf("CRI socket %v %d:%d, want 0660 root:root", fi.Mode(), st.Uid, st.Gid)
		}
	})

	type podCtr struct{ pod, ctr string }
	var runs []podCtr
	for i := range 2 {
		pc := framework.PodConfig(fmt.Sprintf("exposure-%d", i))
		pod := d.RunPod(t, pc)
		runs = append(runs, podCtr{pod, d.CreateStarted(t, pod, sleeper("c"), pc)})
	}

	t.Run("pod directories", func(t *testing.T) {
		for _, r := range runs {
			podDir := filepath.Join(d.State, "pods", r.pod)
			bundle := filepath.Join(podDir, "bundles", r.ctr)
			for _, p := range []string{bundle, filepath.Join(bundle, "rootfs", "bin", "busybox"), filepath.Join(podDir, "shm")} {
				if _, err := os.Stat(p); err != nil {
					t.Fatalf("the test looks in the wrong place: %v", err)
				}
				if err := statAsNobody(p); err == nil || !strings.Contains(err.Error(), "Permission denied") {
					t.Errorf("uid %d: stat %s: %v, want permission denied", hostNobody, p, err)
				}
			}
			if err := statAsNobody(filepath.Dir(podDir)); err != nil {
				t.Errorf("the pods directory must stay traversable: %v", err)
			}
		}
	})

	t.Run("shim socket", func(t *testing.T) {
		for _, r := range runs {
			sock := filepath.Join(d.State, "pods", r.pod, "shim", "shim.sock")
			fi, err := os.Stat(sock)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
				t.Errorf("shim socket %s: %v under umask 0, want a 0600 socket", sock, fi.Mode())
			}
		}
	})

	t.Run("inherited fds", func(t *testing.T) {
		holds := func(pid int) bool {
			for _, target := range fdTargets(t, pid) {
				if target == marker.Name() {
					return true
				}
			}
			return false
		}
		if !holds(d.Pid()) {
			t.Fatalf("the daemon does not hold %s: the test hands it nothing", marker.Name())
		}
		for _, r := range runs {
			st, err := d.RuntimeClient().PodSandboxStatus(testCtx(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: r.pod, Verbose: true})
			if err != nil {
				t.Fatal(err)
			}
			procs := map[string]int{"shim": d.ShimPid(t, r.pod), "sandbox": infoPid(t, st.GetInfo()), "container": runningPid(t, d, r.ctr)}
			for what, pid := range procs {
				if holds(pid) {
					t.Errorf("the %s (pid %d) of pod %s holds %s, which only the daemon inherited", what, pid, r.pod, marker.Name())
				}
			}
			init := runningPid(t, d, r.ctr)
			for fd, target := range fdTargets(t, init) {
				if n, _ := strconv.Atoi(fd); n > 2 {
					t.Errorf("container init %d holds fd %s -> %s beyond its stdio", init, fd, target)
				}
			}
			shimPid := d.ShimPid(t, r.pod)
			shimDir := filepath.Join(d.State, "pods", r.pod, "shim")
			for fd, target := range fdTargets(t, shimPid) {
				if !shimMayHold(target, shimDir, d) {
					t.Errorf("shim %d of pod %s holds fd %s -> %s", shimPid, r.pod, fd, target)
				}
			}
		}
	})

	t.Run("shim started during an unpack", func(t *testing.T) {
		// Thousands of files at the root of a layer: the daemon holds a
		// duplicate of the layer's root fd through most of the unpack
		// (one per entry), so a process it starts meanwhile inherits it
		// unless it is close-on-exec.
		b := images.NewLayer()
		for i := range 20000 {
			b.File(fmt.Sprintf("f%05d", i), nil, 0o644)
		}
		l, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		env.Push(t, "exposure-big:v1", busybox(t, images.WithoutBase(), images.WithLayers(l)))
		pulled := make(chan error, 1)
		go func() {
			_, err := d.Images().PullImage(testCtx(t), spec("exposure-big:v1"), nil, nil)
			pulled <- err
		}()
		pc := framework.PodConfig("exposure-unpack", framework.WithPodNamespaces(runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD))
		// Start pods while the unpack runs, each between two looks at the
		// daemon's fds that both find the layer's root open.
		var during []string
		var pullErr error
		done := false
		for !done && len(during) < 3 {
			select {
			case pullErr = <-pulled:
				done = true
				continue
			default:
			}
			before := unpackFds(t, d)
			if len(before) == 0 {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			pc.Metadata.Attempt++
			pod := d.RunPod(t, pc)
			for fd, target := range unpackFds(t, d) {
				if before[fd] == target {
					during = append(during, pod)
					break
				}
			}
		}
		if !done {
			pullErr = <-pulled
		}
		if pullErr != nil {
			t.Fatal(pullErr)
		}
		if len(during) == 0 {
			t.Fatal("the unpack ended before a pod started during it: the check proves nothing here")
		}
		for _, pod := range during {
			shimPid := d.ShimPid(t, pod)
			shimDir := filepath.Join(d.State, "pods", pod, "shim")
			for fd, target := range fdTargets(t, shimPid) {
				if !shimMayHold(target, shimDir, d) {
					t.Errorf("shim %d started during an unpack holds fd %s -> %s", shimPid, fd, target)
				}
			}
		}
	})

	t.Run("decompression bomb", func(t *testing.T) {
		// 384 MiB of zeros: a few hundred KiB of gzip.
		const size = 384 << 20
		l, err := images.NewLayer().FileFrom("zeros", size, 0o644, func() io.Reader { return io.LimitReader(zeros{}, size) }).Build()
		if err != nil {
			t.Fatal(err)
		}
		env.Push(t, "exposure-bomb:v1", busybox(t, images.WithLayers(l)))
		_, err = d.Images().PullImage(testCtx(t), spec("exposure-bomb:v1"), nil, nil)
		wantCode(t, "PullImage of a decompression bomb", err, codes.ResourceExhausted, "image.max_uncompressed_size")
		if img := imageStatus(t, d, "exposure-bomb:v1"); img != nil {
			t.Errorf("the bomb was recorded as an image: %v", img)
		}
	})

	t.Run("image ids beyond 32 bits", func(t *testing.T) {
		l, err := images.NewLayer().
			File("etc/passwd", []byte(images.Passwd+"evil:x:4294967296:1000::/:/bin/sh\n"), 0o644).
			File("etc/group", []byte(images.Group+"evilgroup:x:4294967296:\n"), 0o644).
			Build()
		if err != nil {
			t.Fatal(err)
		}
		for _, user := range []string{"evil", "user:evilgroup", "4294967296", "1000:4294967296"} {
			ref := "exposure-user:" + strings.NewReplacer(":", "-").Replace(user)
			env.Push(t, ref, busybox(t, images.WithLayers(l), images.WithUser(user)))
			d.Pull(t, ref)
			pc := framework.PodConfig("exposure-user")
			pod := d.RunPod(t, pc)
			_, err := d.RuntimeClient().CreateContainer(testCtx(t), &runtimeapi.CreateContainerRequest{
				PodSandboxId: pod, Config: framework.ContainerConfig("c", ref, "id", "-u"), SandboxConfig: pc,
			})
			wantCode(t, "CreateContainer with image USER "+user, err, codes.InvalidArgument, "out of range")
		}
	})
}

// bombLimit is the daemon's image.max_uncompressed_size in
// TestHostExposure: room for the test's real images, not for its bomb.
const bombLimit = 256 << 20

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// unpackFds are the daemon's fds on directories of its snapshots: those
// of a layer being unpacked.
func unpackFds(t *testing.T, d *framework.Daemon) map[string]string {
	t.Helper()
	out := map[string]string{}
	for fd, target := range fdTargets(t, d.Pid()) {
		if !strings.HasPrefix(target, d.Root+"/snapshots/") {
			continue
		}
		if fi, err := os.Stat(target); err == nil && fi.IsDir() {
			out[fd] = target
		}
	}
	return out
}

// shimMayHold reports whether a shim may have target open: its stdio,
// pipes and sockets, kernel objects (pidfds, epoll, inotify), its own
// log and state files, the containers' log files, and the cgroup CPU
// limit files the Go runtime keeps open. Nothing of the
// daemon's root (metadata, content, snapshots) and no directory.
func shimMayHold(target, shimDir string, d *framework.Daemon) bool {
	switch {
	case target == "/dev/null", strings.HasPrefix(target, "/dev/pts/"), target == "/dev/ptmx":
		return true
	case strings.HasPrefix(target, "pipe:"), strings.HasPrefix(target, "socket:"), strings.HasPrefix(target, "anon_inode:"):
		return true
	case strings.HasPrefix(target, d.Root+"/"), target == d.Root, target == d.LogPath:
		return false
	case strings.HasPrefix(target, "/sys/fs/cgroup/") && (strings.HasSuffix(target, "/cpu.cfs_quota_us") ||
		strings.HasSuffix(target, "/cpu.cfs_period_us") || strings.HasSuffix(target, "/cpu.max")):
		// The Go runtime's own: it follows its cgroup's CPU limit.
		return true
	case strings.HasPrefix(target, shimDir+"/"):
		return true
	case strings.HasPrefix(target, os.TempDir()+"/e2e-podlogs-") && strings.HasSuffix(target, ".log"):
		return true
	}
	return false
}
