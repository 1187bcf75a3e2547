//go:build e2e

package framework

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

var nriPlugin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// NRIPluginBinary builds the test plugin (./test/nriplugin) once per
// test binary.
func NRIPluginBinary() (string, error) {
	nriPlugin.once.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			nriPlugin.err = err
			return
		}
		if nriPlugin.dir, err = os.MkdirTemp("", "e2e-nri-"); err != nil {
			nriPlugin.err = err
			return
		}
		nriPlugin.path = filepath.Join(nriPlugin.dir, "nriplugin")
		cmd := exec.Command("go", "build", "-o", nriPlugin.path, "./test/nriplugin")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			nriPlugin.err = fmt.Errorf("go build ./test/nriplugin: %v\n%s", err, out)
		}
	})
	return nriPlugin.path, nriPlugin.err
}

// NRIPlugin is a test plugin process connected to a daemon's NRI socket.
type NRIPlugin struct {
	Name string
	// Ready is created by the plugin once it is synchronized.
	Ready string
	// LogPath has the plugin's stderr.
	LogPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// StartNRIPlugin runs the test plugin as name (index idx) against d's NRI
// socket with the plugin's flags args, and waits until it registered and
// was synchronized. It is killed when the test ends.
func (d *Daemon) StartNRIPlugin(t testing.TB, idx, name string, args ...string) *NRIPlugin {
	t.Helper()
	bin, err := NRIPluginBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(d.Dir, "nri-plugins", idx+"-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &NRIPlugin{Name: name, Ready: filepath.Join(dir, "ready"), LogPath: filepath.Join(dir, "log"), exited: make(chan struct{})}
	os.Remove(p.Ready)
	logf, err := os.Create(p.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	p.cmd = exec.Command(bin, append([]string{"-name", name, "-idx", idx, "-socket", d.Config.String("nri.socket_path"), "-ready", p.Ready}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(p.LogPath)
			t.Logf("NRI plugin %s log:\n%s", name, b)
		}
	})
	Eventually(t, 20*time.Second, func() (bool, string) {
		select {
		case <-p.exited:
			b, _ := os.ReadFile(p.LogPath)
			t.Fatalf("NRI plugin %s exited before it registered:\n%s", name, b)
		default:
		}
		_, err := os.Stat(p.Ready)
		return err == nil, fmt.Sprintf("NRI plugin %s not synchronized", name)
	})
	return p
}

// Kill kills the plugin (as a crash would) and waits for it.
func (p *NRIPlugin) Kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.exited
}

// Exited is closed once the plugin process is gone.
func (p *NRIPlugin) Exited() <-chan struct{} { return p.exited }

// InstallNRIPlugin puts the test plugin into d's plugin_path as
// <idx>-<name>, with config (marshalled to JSON) in plugin_config_path,
// for the daemon to start it at its next start.
func (d *Daemon) InstallNRIPlugin(t testing.TB, idx, name string, config any) {
	t.Helper()
	bin, err := NRIPluginBinary()
	if err != nil {
		t.Fatal(err)
	}
	pluginDir, confDir := d.Config.String("nri.plugin_path"), d.Config.String("nri.plugin_config_path")
	for _, dir := range []string{pluginDir, confDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pluginDir, idx+"-"+name), b, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := json.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(confDir, idx+"-"+name+".conf"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
}
