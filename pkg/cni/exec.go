package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// ErrPluginTimeout is wrapped by the error of a plugin execution that did
// not finish within Options.PluginTimeout.
var ErrPluginTimeout = errors.New("CNI plugin timed out")

// busyRetries bounds retries of a plugin binary that is being written
// (ETXTBSY), as libcni's RawExec does: DaemonSets replace plugins on live
// nodes.
const busyRetries = 5

// pluginExec runs CNI plugins for libcni. It replaces libcni's RawExec to
// bound every execution by a timeout and to kill the plugin's whole process
// group when it expires: exec.CommandContext alone kills only the plugin,
// and a child it forked that still holds the stdout pipe would keep Wait
// blocked.
type pluginExec struct {
	version.PluginDecoder
	timeout time.Duration
}

var _ invoke.Exec = (*pluginExec)(nil)

func (e *pluginExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

func (e *pluginExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, e.timeout, ErrPluginTimeout)
	defer cancel()
	name := filepath.Base(pluginPath)
	for attempt := 0; ; attempt++ {
		start := time.Now()
		stdout, stderr, err := e.run(ctx, pluginPath, stdin, environ)
		if stderr.Len() > 0 {
			// Plugins log to stderr; keep it out of the daemon's
			// output unless asked for.
			klog.V(4).InfoS("CNI plugin stderr", "plugin", name, "stderr", stderr.String())
		}
		klog.V(5).InfoS("CNI plugin ran", "plugin", name, "duration", time.Since(start), "err", err)
		if err == nil {
			return stdout.Bytes(), nil
		}
		if cerr := context.Cause(ctx); cerr != nil {
			if errors.Is(cerr, ErrPluginTimeout) {
				return nil, fmt.Errorf("%s did not finish within %s: %w", name, e.timeout, ErrPluginTimeout)
			}
			return nil, fmt.Errorf("%s: %w", name, cerr)
		}
		if errors.Is(err, syscall.ETXTBSY) && attempt < busyRetries {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		return nil, pluginError(err, stdout.Bytes(), stderr.Bytes())
	}
}

func (e *pluginExec) run(ctx context.Context, path string, stdin []byte, environ []string) (stdout, stderr *bytes.Buffer, err error) {
	stdout, stderr = &bytes.Buffer{}, &bytes.Buffer{}
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = environ
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The plugin leads its own process group (Setpgid), so this
		// kills whatever it forked too.
		return unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
	}
	// A grandchild that escaped the group could still hold the pipes;
	// WaitDelay stops waiting for them.
	cmd.WaitDelay = 2 * time.Second
	err = cmd.Run()
	return stdout, stderr, err
}

// pluginError turns a failed execution into the plugin's own CNI error
// (the JSON it printed on stdout) so its code and message reach the caller,
// falling back to stderr or the exit status.
func pluginError(err error, stdout, stderr []byte) error {
	perr := &types.Error{}
	switch {
	case len(stdout) > 0:
		if jerr := json.Unmarshal(stdout, perr); jerr != nil || perr.Msg == "" {
			perr = &types.Error{Msg: fmt.Sprintf("plugin failed (%v) with unparsable output %q", err, stdout)}
		}
	case len(stderr) > 0:
		perr.Msg = fmt.Sprintf("plugin failed (%v): %s", err, bytes.TrimSpace(stderr))
	default:
		perr.Msg = fmt.Sprintf("plugin failed with no message: %v", err)
	}
	return perr
}
