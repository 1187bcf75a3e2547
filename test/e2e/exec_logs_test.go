//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/shim/crilog"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// maxLogLine is the daemon's default max_container_log_line_size.
const maxLogLine = 16 << 10

// TestContainerLogs checks the CRI log file kubelet reads: one record per
// line in `<RFC3339Nano> stdout|stderr F|P <content>`, streams kept apart
// and a line longer than the maximum split into P records that reassemble.
func TestContainerLogs(t *testing.T) {
	_, d := podEnv(t)
	pc := framework.PodConfig("logs")
	pod := d.RunPod(t, pc)
	const long = 40000
	cfg := framework.Shell("c", bb, fmt.Sprintf(
		`echo out-1; echo err-1 >&2; echo out-2; echo err-2 >&2; head -c %d /dev/zero | tr '\0' x; echo; echo out-3`, long))
	id := d.CreateStarted(t, pod, cfg, pc)
	if st := d.WaitExited(t, id, 30*time.Second); st.ExitCode != 0 {
		t.Fatalf("container exit code %d: %s", st.ExitCode, st.Message)
	}
	path := framework.LogPath(pc, cfg)

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	record := regexp.MustCompile(`^(\S+) (stdout|stderr) (F|P) `)
	for i, line := range strings.SplitAfter(string(raw), "\n") {
		if line == "" {
			continue
		}
		m := record.FindStringSubmatch(line)
		if m == nil || !strings.HasSuffix(line, "\n") {
			t.Fatalf("record %d is not a CRI log record: %.100q", i+1, line)
		}
		if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
			t.Errorf("record %d timestamp %q: %v", i+1, m[1], err)
		}
	}

	entries := framework.ReadCRILog(t, path)
	partial := 0
	var prev time.Time
	for _, e := range entries {
		if len(e.Content) > maxLogLine {
			t.Errorf("record of %d bytes, want at most %d", len(e.Content), maxLogLine)
		}
		if e.Partial {
			partial++
			if e.Stream != crilog.Stdout {
				t.Errorf("partial record on %s", e.Stream)
			}
		}
		if e.Timestamp.Before(prev) {
			t.Errorf("timestamps go back: %s after %s", e.Timestamp, prev)
		}
		prev = e.Timestamp
	}
	if want := (long+maxLogLine-1)/maxLogLine - 1; partial != want {
		t.Errorf("%d partial records for a %d byte line, want %d", partial, long, want)
	}

	lines := framework.ReadCRILines(t, path)
	wantOut := "out-1\nout-2\n" + strings.Repeat("x", long) + "\nout-3\n"
	if got := framework.StreamText(lines, crilog.Stdout); got != wantOut {
		t.Errorf("stdout reassembled = %.200q (%d bytes), want %.200q (%d bytes)", got, len(got), wantOut, len(wantOut))
	}
	if got := framework.StreamText(lines, crilog.Stderr); got != "err-1\nerr-2\n" {
		t.Errorf("stderr = %q, want err-1, err-2", got)
	}
	for _, l := range lines {
		if !l.Complete {
			t.Errorf("line %.40q of %s not complete", l.Content, l.Stream)
		}
	}
}

// TestReopenContainerLog rotates a running container's log as kubelet
// does (rename, then ReopenContainerLog): every line is in one of the two
// files, none lost or doubled.
func TestReopenContainerLog(t *testing.T) {
	_, d := podEnv(t)
	pc := framework.PodConfig("rotate")
	pod := d.RunPod(t, pc)
	cfg := framework.Shell("c", bb, `i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.02; done`)
	id := d.CreateStarted(t, pod, cfg, pc)
	path := framework.LogPath(pc, cfg)
	count := func(p string) int {
		data, _ := os.ReadFile(p)
		return strings.Count(string(data), "\n")
	}
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		return count(path) >= 10, "fewer than 10 lines logged"
	})
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := d.Runtime().ReopenContainerLog(testCtx(t), id); err != nil {
		t.Fatalf("ReopenContainerLog: %v", err)
	}
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		return count(path) >= 10, "fewer than 10 lines in the new log file"
	})
	if err := d.Runtime().StopContainer(testCtx(t), id, 0); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	d.WaitExited(t, id, 30*time.Second)

	old := framework.StreamText(framework.ReadCRILines(t, rotated), crilog.Stdout)
	cur := framework.StreamText(framework.ReadCRILines(t, path), crilog.Stdout)
	if old == "" || cur == "" {
		t.Fatalf("rotated file %d bytes, new file %d bytes: want lines in both", len(old), len(cur))
	}
	all := strings.Split(strings.TrimSuffix(old+cur, "\n"), "\n")
	for i, l := range all {
		if want := fmt.Sprintf("line-%d", i); l != want {
			t.Fatalf("line %d across the two files = %q, want %q (lost or repeated around the rotation)", i, l, want)
		}
	}

	// A stopped container has no log writer to reopen.
	if err := d.Runtime().ReopenContainerLog(testCtx(t), id); err == nil {
		t.Errorf("ReopenContainerLog of an exited container succeeded")
	}
}

// TestExecSync checks ExecSync: output, exit codes, the timeout (the
// command is killed, DeadlineExceeded), the output cap and errors.
func TestExecSync(t *testing.T) {
	const limit = 4096
	_, d := podEnv(t, framework.WithConfig("runtime.max_exec_sync_output", limit))
	pc := framework.PodConfig("exec")
	pod := d.RunPod(t, pc)
	id := d.CreateStarted(t, pod, sleeper("c"), pc)

	for _, tc := range []struct {
		name           string
		cmd            []string
		stdout, stderr string
		code           int
	}{
		{"stdout", []string{"echo", "hello"}, "hello\n", "", 0},
		{"stderr and code", []string{"sh", "-c", "echo out; echo err >&2; exit 7"}, "out\n", "err\n", 7},
		{"false", []string{"false"}, "", "", 1},
		{"env and cwd", []string{"sh", "-c", "echo $PATH; pwd"}, "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/\n", "", 0},
		{"stdin is empty", []string{"cat"}, "", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := d.Exec(t, id, 10*time.Second, tc.cmd...)
			if r.Stdout != tc.stdout || r.Stderr != tc.stderr || r.ExitCode != tc.code {
				t.Errorf("exec %q = stdout %q stderr %q code %d, want %q %q %d", tc.cmd, r.Stdout, r.Stderr, r.ExitCode, tc.stdout, tc.stderr, tc.code)
			}
		})
	}

	t.Run("command not found", func(t *testing.T) {
		ctx := testCtx(t)
		resp, err := d.RuntimeClient().ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"/no/such/cmd"}, Timeout: 10})
		if err == nil && resp.ExitCode == 0 {
			t.Errorf("exec of a missing command succeeded")
		}
		if err == nil && !strings.Contains(string(resp.Stderr), "/no/such/cmd") && resp.ExitCode != 126 && resp.ExitCode != 127 {
			t.Errorf("exec of a missing command: code %d stderr %q: want 126/127 or the reason", resp.ExitCode, resp.Stderr)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		_, err := d.RuntimeClient().ExecSync(testCtx(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sleep", "4848"}, Timeout: 1})
		took := time.Since(start)
		wantCode(t, "ExecSync past its timeout", err, codes.DeadlineExceeded)
		if took < time.Second || took > 10*time.Second {
			t.Errorf("ExecSync with a 1s timeout returned after %s", took)
		}
		framework.Eventually(t, 10*time.Second, func() (bool, string) {
			ps := d.ExecOK(t, id, "ps", "-o", "args")
			return !strings.Contains(ps, "sleep 4848"), "the timed out command still runs:\n" + ps
		})
	})

	t.Run("output cap", func(t *testing.T) {
		r := d.Exec(t, id, 30*time.Second, "sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a; head -c 50000 /dev/zero | tr '\\0' b >&2")
		if r.ExitCode != 0 {
			t.Fatalf("exit code %d", r.ExitCode)
		}
		if r.Stdout != strings.Repeat("a", limit) {
			t.Errorf("stdout of %d bytes (limit %d): %.40q...", len(r.Stdout), limit, r.Stdout)
		}
		if r.Stderr != strings.Repeat("b", limit) {
			t.Errorf("stderr of %d bytes (limit %d): %.40q...", len(r.Stderr), limit, r.Stderr)
		}
	})

	t.Run("errors", func(t *testing.T) {
		ctx := testCtx(t)
		_, err := d.RuntimeClient().ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: strings.Repeat("cd", 32), Cmd: []string{"true"}})
		wantCode(t, "ExecSync in an unknown container", err, codes.NotFound)
		_, err = d.RuntimeClient().ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id})
		wantCode(t, "ExecSync without a command", err, codes.InvalidArgument)

		created := d.CreateContainer(t, pod, sleeper("created"), pc)
		_, err = d.RuntimeClient().ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: created, Cmd: []string{"true"}})
		wantCode(t, "ExecSync in a created container", err, codes.FailedPrecondition)

		done := d.CreateStarted(t, pod, framework.ContainerConfig("done", bb, "true"), pc)
		d.WaitExited(t, done, 30*time.Second)
		_, err = d.RuntimeClient().ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: done, Cmd: []string{"true"}})
		wantCode(t, "ExecSync in an exited container", err, codes.FailedPrecondition)
	})
}

// TestExecSyncOutputFitsOneMessage: both streams at their cap exceed the
// gRPC send limit; ExecSync returns the output truncated to fit instead
// of failing (it failed with ResourceExhausted before).
func TestExecSyncOutputFitsOneMessage(t *testing.T) {
	const limit = 1 << 20
	_, d := podEnv(t, framework.WithConfig("runtime.max_exec_sync_output", limit), framework.WithConfig("grpc.max_send_message_size", limit))
	pc := framework.PodConfig("exec-big")
	pod := d.RunPod(t, pc)
	id := d.CreateStarted(t, pod, sleeper("c"), pc)
	r := d.Exec(t, id, 30*time.Second, "sh", "-c", fmt.Sprintf("head -c %d /dev/zero | tr '\\0' a; head -c %d /dev/zero | tr '\\0' b >&2; exit 3", limit, limit))
	total := len(r.Stdout) + len(r.Stderr)
	if r.ExitCode != 3 || total > limit || total < limit-4096 || len(r.Stdout) < limit/2-4096 || len(r.Stderr) < limit/2-4096 {
		t.Fatalf("exit code %d, stdout %d bytes, stderr %d bytes; want 3 and about half of %d each", r.ExitCode, len(r.Stdout), len(r.Stderr), limit)
	}
	if strings.Trim(r.Stdout, "a") != "" || strings.Trim(r.Stderr, "b") != "" {
		t.Errorf("output is not the start of each stream")
	}
}
