//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/client-go/util/exec"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

// streamImage is the busybox image the streaming tests run.
const streamImage = "busybox"

// streamEnv starts a daemon with a pod and returns both.
func streamEnv(t *testing.T) (*framework.Daemon, string, *runtimeapi.PodSandboxConfig) {
	t.Helper()
	env := framework.NewPodEnv(t)
	env.PushImage(t, streamImage)
	pc := framework.PodConfig("stream")
	return env.Daemon, env.Daemon.RunPod(t, pc), pc
}

// lockedBuffer collects a stream that the test polls while it is written.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// sizeQueue feeds terminal sizes to the client.
type sizeQueue chan remotecommand.TerminalSize

func (q sizeQueue) Next() *remotecommand.TerminalSize {
	s, ok := <-q
	if !ok {
		return nil
	}
	return &s
}

func spdyExecutor(t *testing.T, rawURL string) remotecommand.Executor {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := remotecommand.NewSPDYExecutor(&rest.Config{}, http.MethodPost, u)
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

func execURL(t *testing.T, d *framework.Daemon, req *runtimeapi.ExecRequest) string {
	t.Helper()
	resp, err := d.RuntimeClient().Exec(testCtx(t), req)
	if err != nil {
		t.Fatalf("Exec(%v): %v", req.GetCmd(), err)
	}
	return resp.GetUrl()
}

// exitCode extracts the code of a stream error (0 for nil).
func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ce exec.CodeExitError
	if errors.As(err, &ce) {
		return ce.Code
	}
	t.Fatalf("stream error %v (%T) carries no exit code", err, err)
	return -1
}

// TestStreamingExecTTY: an interactive shell with a terminal through the
// kubectl client: input, output, resize, and the exit code.
func TestStreamingExecTTY(t *testing.T) {
	d, pod, pc := streamEnv(t)
	id := d.CreateStarted(t, pod, sleeper("c"), pc)
	u := execURL(t, d, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-i"}, Tty: true, Stdin: true, Stdout: true})
	inR, inW := io.Pipe()
	defer inW.Close()
	sizes := make(sizeQueue, 1)
	defer close(sizes)
	var out lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- spdyExecutor(t, u).StreamWithContext(testCtx(t), remotecommand.StreamOptions{
			Stdin: inR, Stdout: &out, Tty: true, TerminalSizeQueue: sizes,
		})
	}()
	sizes <- remotecommand.TerminalSize{Width: 132, Height: 43}
	framework.Eventually(t, 20*time.Second, func() (bool, string) {
		if _, err := io.WriteString(inW, "stty size\n"); err != nil {
			return false, err.Error()
		}
		time.Sleep(100 * time.Millisecond)
		return strings.Contains(out.String(), "43 132"), "stty size never showed 43 132: " + out.String()
	})
	if _, err := io.WriteString(inW, "echo hi; exit 3\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if c := exitCode(t, err); c != 3 {
			t.Errorf("exit code %d, want 3", c)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("exec did not end")
	}
	if !strings.Contains(out.String(), "hi\r\n") {
		t.Errorf("output %q lacks hi", out.String())
	}
}

// TestStreamingExec: exit codes, separate stdout and stderr, stdin, the
// container's user and environment, over SPDY and WebSocket.
func TestStreamingExec(t *testing.T) {
	d, pod, pc := streamEnv(t)
	cfg := sleeper("c")
	cfg.Envs = []*runtimeapi.KeyValue{{Key: "FOO", Value: []byte("bar")}}
	id := d.CreateStarted(t, pod, cfg, pc)

	for _, code := range []int{0, 1, 42} {
		u := execURL(t, d, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", fmt.Sprintf("echo out $FOO; echo err >&2; exit %d", code)}, Stdout: true, Stderr: true})
		var out, errb bytes.Buffer
		err := spdyExecutor(t, u).StreamWithContext(testCtx(t), remotecommand.StreamOptions{Stdout: &out, Stderr: &errb})
		if c := exitCode(t, err); c != code {
			t.Errorf("exit code %d, want %d", c, code)
		}
		if out.String() != "out bar\n" || errb.String() != "err\n" {
			t.Errorf("stdout %q stderr %q", out.String(), errb.String())
		}
	}

	// stdin to EOF, through SPDY.
	u := execURL(t, d, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "cat; id -u"}, Stdin: true, Stdout: true})
	var out bytes.Buffer
	if err := spdyExecutor(t, u).StreamWithContext(testCtx(t), remotecommand.StreamOptions{Stdin: strings.NewReader("in-put\n"), Stdout: &out}); err != nil {
		t.Fatalf("stdin exec: %v", err)
	}
	if out.String() != "in-put\n0\n" {
		t.Errorf("stdin exec output %q", out.String())
	}

	// WebSocket (the v4 channel protocol, which the CRI library serves).
	u = execURL(t, d, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo ws; exit 5"}, Stdout: true, Stderr: true})
	ws, err := remotecommand.NewWebSocketExecutorForProtocols(&rest.Config{}, http.MethodGet, u, "v4.channel.k8s.io")
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = ws.StreamWithContext(testCtx(t), remotecommand.StreamOptions{Stdout: &out, Stderr: io.Discard})
	if c := exitCode(t, err); c != 5 || out.String() != "ws\n" {
		t.Errorf("websocket exec: code %d output %q (err %v)", c, out.String(), err)
	}
}

// TestStreamingDaemonRestartDuringExec: the daemon stops within its grace
// on SIGTERM while an exec stream is open (systemctl restart during
// kubectl exec), the stream ends, and after the restart the container
// takes a new exec.
func TestStreamingDaemonRestartDuringExec(t *testing.T) {
	d, pod, pc := streamEnv(t)
	id := d.CreateStarted(t, pod, sleeper("c"), pc)
	u := execURL(t, d, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo ready; sleep 1000"}, Stdout: true})
	var out lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- spdyExecutor(t, u).StreamWithContext(testCtx(t), remotecommand.StreamOptions{Stdout: &out})
	}()
	framework.Eventually(t, 20*time.Second, func() (bool, string) {
		return strings.Contains(out.String(), "ready"), "the exec never wrote ready: " + out.String()
	})
	d.Restart(t) // fails the test if the daemon does not exit in time
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the exec stream stayed open after the daemon stopped")
	}
	u = execURL(t, d, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"echo", "again"}, Stdout: true})
	var again bytes.Buffer
	if err := spdyExecutor(t, u).StreamWithContext(testCtx(t), remotecommand.StreamOptions{Stdout: &again}); err != nil || again.String() != "again\n" {
		t.Errorf("exec after the restart: %q, %v", again.String(), err)
	}
}

// TestStreamingErrors: requests that must fail, and how.
func TestStreamingErrors(t *testing.T) {
	d, pod, pc := streamEnv(t)
	rc := d.RuntimeClient()
	ctx := testCtx(t)

	id := d.CreateStarted(t, pod, framework.Shell("done", streamImage, "true"), pc)
	d.WaitExited(t, id, 30*time.Second)
	_, err := rc.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true})
	wantStreamCode(t, "Exec into an exited container", err, codes.FailedPrecondition)
	_, err = rc.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "0000000000000000", Cmd: []string{"true"}, Stdout: true})
	wantStreamCode(t, "Exec into an unknown container", err, codes.NotFound)

	run := d.CreateStarted(t, pod, sleeper("run"), pc)
	_, err = rc.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: run, Cmd: []string{"true"}, Tty: true, Stderr: true, Stdout: true})
	wantStreamCode(t, "Exec with tty and stderr", err, codes.InvalidArgument)
	_, err = rc.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: run, Stdin: true, Stdout: true})
	wantStreamCode(t, "Attach with stdin to a container without stdin", err, codes.InvalidArgument)
	_, err = rc.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: "0000000000000000", Port: []int32{80}})
	wantStreamCode(t, "PortForward to an unknown pod", err, codes.NotFound)

	// A URL serves once.
	u := execURL(t, d, &runtimeapi.ExecRequest{ContainerId: run, Cmd: []string{"true"}, Stdout: true})
	if err := spdyExecutor(t, u).StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard}); err != nil {
		t.Fatalf("first use of the URL: %v", err)
	}
	if err := spdyExecutor(t, u).StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
		t.Error("second use of the URL succeeded")
	}

	// The container stops while an exec runs: the stream ends.
	u = execURL(t, d, &runtimeapi.ExecRequest{ContainerId: run, Cmd: []string{"sleep", "1000"}, Stdout: true})
	done := make(chan error, 1)
	go func() {
		done <- spdyExecutor(t, u).StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard})
	}()
	time.Sleep(500 * time.Millisecond)
	if err := d.Runtime().StopContainer(ctx, run, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if c := exitCode(t, err); c != 137 {
			t.Errorf("exec in a stopped container: code %d, want 137", c)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("exec did not end when its container stopped")
	}
}

func wantStreamCode(t *testing.T, what string, err error, c codes.Code) {
	t.Helper()
	if status.Code(err) != c {
		t.Errorf("%s: %v (code %s), want %s", what, err, status.Code(err), c)
	}
}

// TestStreamingAttach: two attachers both see a container's output;
// detaching leaves it running; stdin reaches a `cat` container.
func TestStreamingAttach(t *testing.T) {
	d, pod, pc := streamEnv(t)
	id := d.CreateStarted(t, pod, framework.Shell("lines", streamImage, "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.1; done"), pc)
	attach := func(ctx context.Context, id string, in io.Reader, out io.Writer) error {
		resp, err := d.RuntimeClient().Attach(testCtx(t), &runtimeapi.AttachRequest{ContainerId: id, Stdin: in != nil, Stdout: true, Stderr: true})
		if err != nil {
			return err
		}
		return spdyExecutor(t, resp.GetUrl()).StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: in, Stdout: out, Stderr: out})
	}
	var a, b lockedBuffer
	ctx, cancel := context.WithCancel(testCtx(t))
	var wg sync.WaitGroup
	for _, w := range []*lockedBuffer{&a, &b} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = attach(ctx, id, nil, w) }()
	}
	framework.Eventually(t, 20*time.Second, func() (bool, string) {
		return strings.Count(a.String(), "line") >= 5 && strings.Count(b.String(), "line") >= 5,
			fmt.Sprintf("attacher outputs: %q / %q", a.String(), b.String())
	})
	cancel()
	wg.Wait()
	time.Sleep(300 * time.Millisecond)
	if st := d.ContainerStatus(t, id).GetStatus(); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container after detach: %v", st.GetState())
	}

	cfg := framework.ContainerConfig("cat", streamImage, "cat")
	cfg.Stdin = true
	cat := d.CreateStarted(t, pod, cfg, pc)
	inR, inW := io.Pipe()
	var out lockedBuffer
	ctx2, cancel2 := context.WithCancel(testCtx(t))
	defer cancel2()
	done := make(chan error, 1)
	go func() { done <- attach(ctx2, cat, inR, &out) }()
	if _, err := io.WriteString(inW, "hello cat\n"); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 20*time.Second, func() (bool, string) {
		return strings.Contains(out.String(), "hello cat\n"), "cat output: " + out.String()
	})
	cancel2()
	inW.Close()
	<-done
}

// TestStreamingPortForward: three concurrent connections through one
// port-forward to a server in the pod's network namespace; a closed port
// is an error on that stream only.
func TestStreamingPortForward(t *testing.T) {
	d, pod, pc := streamEnv(t)
	id := d.CreateStarted(t, pod, framework.ContainerConfig("nc", streamImage, "nc", "-ll", "-p", "8080", "-e", "echo", "hello"), pc)
	// Forwarded only once nc listens: on a loaded machine the first
	// connection came before it, and client-go's forwarder stopped at
	// that first refused connection (the local port then refused every
	// later one).
	framework.Eventually(t, 20*time.Second, func() (bool, string) {
		tcp := d.ExecOK(t, id, "cat", "/proc/net/tcp", "/proc/net/tcp6")
		for _, l := range strings.Split(tcp, "\n") {
			// local_address :1F90 (8080, v4 or v6), state 0A (LISTEN)
			if f := strings.Fields(l); len(f) > 3 && strings.HasSuffix(f[1], ":1F90") && f[3] == "0A" {
				return true, ""
			}
		}
		return false, "nc does not listen on 8080 yet:\n" + tcp
	})

	resp, err := d.RuntimeClient().PortForward(testCtx(t), &runtimeapi.PortForwardRequest{PodSandboxId: pod})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(resp.GetUrl())
	if err != nil {
		t.Fatal(err)
	}
	transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:8080", "0:8081"}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fwDone := make(chan error, 1)
	go func() { fwDone <- fw.ForwardPorts() }()
	defer close(stop)
	select {
	case <-ready:
	case err := <-fwDone:
		t.Fatalf("ForwardPorts: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("port forward not ready")
	}
	ports, err := fw.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	local := map[uint16]uint16{}
	for _, p := range ports {
		local[p.Remote] = p.Local
	}
	// nc starts listening shortly after the container starts.
	get := func(port uint16) (string, error) {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), 5*time.Second)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		return string(b), err
	}
	framework.Eventually(t, 20*time.Second, func() (bool, string) {
		s, err := get(local[8080])
		return s == "hello\n", fmt.Sprintf("first response %q, %v", s, err)
	})
	var wg sync.WaitGroup
	results := make([]string, 3)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := get(local[8080])
			results[i] = s
			if err != nil {
				results[i] += " (" + err.Error() + ")"
			}
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r != "hello\n" {
			t.Errorf("connection %d got %q", i, r)
		}
	}
	// Nothing listens on 8081: the connection ends without data and the
	// daemon sends the dial error on the stream pair's error stream.
	// client-go (kubectl) ends the whole forward when it reads an error
	// there, which is how the test sees that it arrived.
	if s, _ := get(local[8081]); s != "" {
		t.Errorf("closed port answered %q", s)
	}
	select {
	case <-fwDone:
	case <-time.After(20 * time.Second):
		t.Error("the port-forward client saw no error for the closed port")
	}
}

// procCount counts the entries of /proc/<pid>/<dir> (fd, task).
func procCount(t *testing.T, pid int, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/" + dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// waitUserfaultfd waits up to 10 s for pid to hold a userfaultfd, the
// one a shim registers its binary's pages with at its first trim; on a
// kernel without asynchronous write-protect faults it never does, and
// the wait ends.
func waitUserfaultfd(t *testing.T, pid int) {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if l, _ := os.Readlink(filepath.Join(dir, e.Name())); l == "anon_inode:[userfaultfd]" {
				return
			}
		}
	}
	t.Logf("pid %d holds no userfaultfd after 10 s", pid)
}

func daemonGoroutines(t *testing.T, d *framework.Daemon) int {
	t.Helper()
	resp, err := d.RuntimeClient().Status(testCtx(t), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(resp.GetInfo()["goroutines"])
	if err != nil {
		t.Fatalf("Status info has no goroutine count: %v", resp.GetInfo())
	}
	return n
}

// TestStreamingNoLeaks: after 100 execs (with and without terminal and
// stdin, some abandoned by their client mid-way) the daemon's goroutines
// and the fds of the daemon and of the pod's shim are back to where they
// were.
func TestStreamingNoLeaks(t *testing.T) {
	d, pod, pc := streamEnv(t)
	id := d.CreateStarted(t, pod, sleeper("c"), pc)
	shimPid := d.ShimPid(t, pod)
	// run runs one exec and checks its outcome: a plain exec prints
	// "done" and exits 0 once its stdin ends; a terminal exec, which has
	// no end-of-file, is hung up when stdin ends and exits too; an
	// abandoned one (stdin never ends, the client goes away) fails in the
	// client.
	run := func(i int) {
		tty := i%3 == 0
		abandoned := i%10 == 9
		req := &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "cat >/dev/null; echo done"}, Stdin: true, Stdout: true, Tty: tty, Stderr: !tty}
		u := execURL(t, d, req)
		ctx, cancel := context.WithCancel(testCtx(t))
		defer cancel()
		var stdout, stderr bytes.Buffer
		opts := remotecommand.StreamOptions{Stdin: strings.NewReader("x\n"), Stdout: &stdout, Tty: tty}
		if !tty {
			opts.Stderr = &stderr
		}
		if abandoned {
			// An abandoned client: stdin never ends, the client goes.
			r, w := io.Pipe()
			defer w.Close()
			opts.Stdin = r
			time.AfterFunc(200*time.Millisecond, cancel)
		}
		if tty && !abandoned {
			// A terminal has no end-of-file: the shell ends with the
			// hang-up that the end of stdin causes.
			opts.Stdin = strings.NewReader("")
		}
		err := spdyExecutor(t, u).StreamWithContext(ctx, opts)
		switch {
		case abandoned:
			if err == nil {
				t.Errorf("exec %d: an abandoned exec (stdin never ends) returned without error: stdout %q", i, stdout.String())
			}
		case tty:
			// The end of stdin hangs the terminal up by closing the
			// session (pkg/shim: a terminal has no end-of-file), so the
			// client may get no exit code; if it does, sh died of the
			// hang-up (129) or got to echo (0). Either way the process
			// must go: checked below.
			if err != nil && !strings.Contains(err.Error(), "stream closed before the process exited") {
				if c := exitCode(t, err); c != 0 && c != 129 {
					t.Errorf("exec %d (tty): exit code %d (%v), want 0 or 129 (SIGHUP)", i, c, err)
				}
			}
		default:
			if err != nil || stdout.String() != "done\n" || stderr.Len() != 0 {
				t.Errorf("exec %d: err %v stdout %q stderr %q, want done and exit 0", i, err, stdout.String(), stderr.String())
			}
		}
	}
	// Warm up, so lazily started goroutines are part of the baseline.
	for i := range 5 {
		run(i)
	}
	time.Sleep(time.Second)
	// And after the shim's first trim, which opens its userfaultfd once
	// (pkg/shim serve; were it later, it would count as a leaked fd).
	waitUserfaultfd(t, shimPid)
	baseG, baseFD, baseShimFD := daemonGoroutines(t, d), procCount(t, d.Pid(), "fd"), procCount(t, shimPid, "fd")
	for i := range 100 {
		run(i)
	}
	const slack = 5
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		g, fd, sfd := daemonGoroutines(t, d), procCount(t, d.Pid(), "fd"), procCount(t, shimPid, "fd")
		return g <= baseG+slack && fd <= baseFD+2 && sfd <= baseShimFD,
			fmt.Sprintf("after 100 execs: daemon goroutines %d (baseline %d), daemon fds %d (%d), shim fds %d (%d)", g, baseG, fd, baseFD, sfd, baseShimFD)
	})
	// Hung-up and abandoned execs do not linger in the container.
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		ps := d.ExecOK(t, id, "ps", "-o", "args")
		return !strings.Contains(ps, "cat >/dev/null"), "exec'd processes still run after their sessions ended:\n" + ps
	})
	t.Logf("daemon goroutines %d (baseline %d), shim threads %d", daemonGoroutines(t, d), baseG, procCount(t, shimPid, "task"))
}
