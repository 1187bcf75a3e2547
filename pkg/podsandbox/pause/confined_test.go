package pause

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startConfined starts the test binary as a confined pause, as the shim
// does (pkg/shim/pausestart.go): new namespaces, the sync socket as fd 3,
// the binary as fd 4, the options sent to let it go. It returns the process and
// pause's report.
func startConfined(t *testing.T, opts ...string) (*exec.Cmd, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: namespaces, mounts and capabilities")
	}
	exe, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer exe.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "ours"), os.NewFile(uintptr(pair[1]), "theirs")
	defer ours.Close()
	cmd := exec.Command(os.Args[0], Arg)
	cmd.ExtraFiles = []*os.File{theirs, exe}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid:     true,
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWNET,
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if _, err := ours.Write([]byte(strings.Join(append([]string{"root=" + t.TempDir()}, opts...), "\x00"))); err != nil {
		t.Fatal(err)
	}
	_ = ours.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1024)
	n, _ := ours.Read(buf)
	return cmd, string(buf[:n])
}

func statusField(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", name, pid)
	return ""
}

// TestConfinedPause checks each guard of the confined start: no
// capability in any set, no_new_privs, a seccomp filter that kills what
// pause does not call, the pod's ids and hostname, and an empty
// read-only root with nothing of the host mounted.
func TestConfinedPause(t *testing.T) {
	cmd, report := startConfined(t, "uid=65534", "gid=65534", "groups=5,6", "hostname=confined-pod", "sysctl=kernel/shmmni=1234")
	if report != "ok" {
		t.Fatalf("pause reported %q", report)
	}
	pid := cmd.Process.Pid
	for field, want := range map[string]string{
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
		"NoNewPrivs": "1", "Seccomp": "2",
		"Uid": "65534\t65534\t65534\t65534", "Gid": "65534\t65534\t65534\t65534", "Groups": "5 6",
		"Threads": "1",
	} {
		if got := statusField(t, pid, field); got != want {
			t.Errorf("%s: %q, want %q", field, got, want)
		}
	}
	mi, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(mi)), "\n")
	if len(lines) != 1 {
		t.Errorf("pause sees %d mounts, want only its root:\n%s", len(lines), mi)
	}
	if f := strings.Fields(lines[0]); len(f) < 10 || f[4] != "/" || !strings.HasPrefix(f[5], "ro,") || f[len(f)-3] != "tmpfs" || !strings.HasPrefix(f[len(f)-1], "ro") {
		t.Errorf("pause's root is not a read-only tmpfs: %s", lines[0])
	}
	entries, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/root/")
	if err != nil || len(entries) != 0 {
		t.Errorf("pause's root is not empty: %v %v", entries, err)
	}
	// The UTS and IPC namespaces are pause's: what it set is seen there.
	for _, c := range []struct{ ns, file, want string }{
		{"uts", "/proc/sys/kernel/hostname", "confined-pod"},
		{"ipc", "/proc/sys/kernel/shmmni", "1234"},
	} {
		out, err := exec.Command("nsenter", "-t", strconv.Itoa(pid), "--"+c.ns, "cat", c.file).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != c.want {
			t.Errorf("%s in pause's %s namespace: %q %v, want %q", c.file, c.ns, out, err, c.want)
		}
	}
	checkPageByPage(t, pid)
	// SIGTERM ends it through its handler's exit_group, which the filter
	// allows.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if err != nil {
		t.Errorf("pause after SIGTERM: %v (want exit 0)", err)
	}
}

// TestConfinedPauseFailure: a setting it cannot apply is reported on the
// socket, and pause exits.
func TestConfinedPauseFailure(t *testing.T) {
	cmd, report := startConfined(t, "sysctl=net/no/such/sysctl=1")
	if !strings.Contains(report, "sysctl=net/no/such/sysctl=1") {
		t.Errorf("report %q does not name the sysctl", report)
	}
	if err := cmd.Wait(); err == nil {
		t.Error("pause exited 0 after a failed setup")
	}
}
