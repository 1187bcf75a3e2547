package cni

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fakeBinDir holds the fake plugin built once by TestMain, under the names
// "fake" and "fake2" so a list can chain two of them.
var fakeBinDir string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "cni-fakeplugin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "fake"), "./internal/fakeplugin").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build fake plugin: %v\n%s", err, out)
			return 1
		}
		if err := os.Link(filepath.Join(dir, "fake"), filepath.Join(dir, "fake2")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fakeBinDir = dir
		return m.Run()
	}())
}

// call mirrors fakeplugin's record.
type call struct {
	Command     string         `json:"command"`
	ContainerID string         `json:"containerID"`
	NetNS       string         `json:"netns"`
	IfName      string         `json:"ifname"`
	Args        string         `json:"args"`
	Path        string         `json:"path"`
	Plugin      string         `json:"plugin"`
	Config      map[string]any `json:"config"`
}

func (c call) short() string { return c.Command + " " + filepath.Base(c.Plugin) }

type env struct {
	confDir, cacheDir, record string
	opts                      Options
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{
		confDir:  filepath.Join(dir, "net.d"),
		cacheDir: filepath.Join(dir, "cache"),
		record:   filepath.Join(dir, "calls.jsonl"),
	}
	if err := os.MkdirAll(e.confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	e.opts = Options{
		ConfDir:       e.confDir,
		BinDirs:       []string{fakeBinDir, filepath.Join(dir, "nobin")},
		CacheDir:      e.cacheDir,
		PluginTimeout: 10 * time.Second,
		PollInterval:  20 * time.Millisecond,
	}
	return e
}

func (e *env) manager(t *testing.T) *Manager {
	t.Helper()
	m, err := New(context.Background(), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// write installs a config file atomically, as installers should.
func (e *env) write(t *testing.T, name string, v any) {
	t.Helper()
	var b []byte
	switch v := v.(type) {
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(e.confDir, ".tmp-"+name)
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.confDir, name)); err != nil {
		t.Fatal(err)
	}
}

// list builds a conflist whose plugins record to e.record.
func (e *env) list(name string, plugins ...map[string]any) map[string]any {
	for _, p := range plugins {
		if _, ok := p["record"]; !ok {
			p["record"] = e.record
		}
	}
	return map[string]any{"cniVersion": "1.0.0", "name": name, "plugins": plugins}
}

func (e *env) calls(t *testing.T) []call {
	t.Helper()
	return readCalls(t, e.record)
}

func readCalls(t *testing.T, path string) []call {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var calls []call
	s := bufio.NewScanner(f)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		var c call
		if err := json.Unmarshal(s.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		calls = append(calls, c)
	}
	return calls
}

func shorts(calls []call) []string {
	var s []string
	for _, c := range calls {
		s = append(s, c.short())
	}
	return s
}

func (e *env) cacheEntries(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.cacheDir, "results"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range ents {
		names = append(names, d.Name())
	}
	return names
}

func testPod(id string) Pod {
	return Pod{ID: id, Name: "web", Namespace: "default", UID: "uid-" + id, NetNS: "/run/test/netns/" + id}
}

// canned is a result with a pod address of each family (IPv6 first, to
// check the ordering) and a host-side address that is not the pod's.
var canned = map[string]any{
	"interfaces": []any{
		map[string]any{"name": "cni0", "mac": "aa:aa:aa:aa:aa:01"},
		map[string]any{"name": "eth0", "mac": "aa:aa:aa:aa:aa:02", "sandbox": "/run/test/netns/x"},
	},
	"ips": []any{
		map[string]any{"address": "fd00::3/64", "interface": 1},
		map[string]any{"address": "10.1.2.1/24", "interface": 0},
		map[string]any{"address": "10.1.2.3/24", "interface": 1, "gateway": "10.1.2.1"},
	},
}

func TestSetupArgsAndRuntimeConfig(t *testing.T) {
	e := newEnv(t)
	e.write(t, "10-test.conflist", e.list("testnet",
		map[string]any{"type": "fake", "result": canned},
		map[string]any{"type": "fake2", "capabilities": map[string]bool{
			"portMappings": true, "bandwidth": true, "ipRanges": true, "dns": true, "cgroupPath": true,
		}},
	))
	m := e.manager(t)
	if err := m.Status(); err != nil {
		t.Fatalf("Status: %v", err)
	}
	if err := m.UpdatePodCIDR("10.9.0.0/24, fd09::/64"); err != nil {
		t.Fatal(err)
	}
	p := testPod("abc")
	p.PortMappings = []PortMapping{
		{HostPort: 8080, ContainerPort: 80, Protocol: "TCP"},
		{HostPort: 0, ContainerPort: 9090, Protocol: "tcp"}, // not published
		{HostPort: 5353, ContainerPort: 53, Protocol: "udp", HostIP: "127.0.0.1"},
	}
	p.Annotations = map[string]string{IngressBandwidthAnnotation: "10M", EgressBandwidthAnnotation: "1Mi", "other": "x"}
	p.DNS = &DNS{Servers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local"}, Options: []string{"ndots:5"}}
	p.CgroupParent = "/kubepods/burstable/poduid-abc"

	res, err := m.Setup(context.Background(), p)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if got, want := fmt.Sprint(res.IPs), "[10.1.2.3 fd00::3]"; got != want {
		t.Errorf("IPs = %s, want %s", got, want)
	}
	if res.Network != "testnet" || len(res.Interfaces) != 2 {
		t.Errorf("result = %+v", res)
	}

	calls := e.calls(t)
	if got, want := shorts(calls), []string{"ADD fake", "ADD fake2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
	wantArgs := "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=uid-abc"
	for _, c := range calls {
		if c.Args != wantArgs || c.IfName != "eth0" || c.NetNS != p.NetNS || c.ContainerID != "abc" || c.Path != strings.Join(e.opts.BinDirs, ":") {
			t.Errorf("%s env: args=%q ifname=%q netns=%q id=%q path=%q", c.short(), c.Args, c.IfName, c.NetNS, c.ContainerID, c.Path)
		}
		if c.Config["name"] != "testnet" || c.Config["cniVersion"] != "1.0.0" {
			t.Errorf("%s config name/version = %v/%v", c.short(), c.Config["name"], c.Config["cniVersion"])
		}
	}
	if _, ok := calls[0].Config["runtimeConfig"]; ok {
		t.Errorf("plugin without capabilities got runtimeConfig %v", calls[0].Config["runtimeConfig"])
	}
	if _, ok := calls[1].Config["prevResult"]; !ok {
		t.Error("second plugin got no prevResult")
	}
	var wantRC map[string]any
	if err := json.Unmarshal([]byte(`{
		"portMappings": [
			{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
			{"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}
		],
		"bandwidth": {"ingressRate": 10000000, "ingressBurst": 2147483647, "egressRate": 1048576, "egressBurst": 2147483647},
		"ipRanges": [[{"subnet": "10.9.0.0/24"}], [{"subnet": "fd09::/64"}]],
		"dns": {"servers": ["10.96.0.10"], "searches": ["default.svc.cluster.local"], "options": ["ndots:5"]},
		"cgroupPath": "/kubepods/burstable/poduid-abc"
	}`), &wantRC); err != nil {
		t.Fatal(err)
	}
	if got := calls[1].Config["runtimeConfig"]; !reflect.DeepEqual(got, wantRC) {
		gb, _ := json.Marshal(got)
		t.Errorf("runtimeConfig = %s", gb)
	}
	if got := e.cacheEntries(t); len(got) != 1 || got[0] != "testnet-abc-eth0" {
		t.Errorf("cache entries = %v", got)
	}
}

func TestSetupInvalidPod(t *testing.T) {
	e := newEnv(t)
	e.write(t, "10-test.conflist", e.list("testnet", map[string]any{"type": "fake"}))
	m := e.manager(t)
	for _, tc := range []struct {
		name string
		mod  func(*Pod)
	}{
		{"no netns", func(p *Pod) { p.NetNS = "" }},
		{"bad bandwidth", func(p *Pod) { p.Annotations = map[string]string{IngressBandwidthAnnotation: "ten"} }},
		{"tiny bandwidth", func(p *Pod) { p.Annotations = map[string]string{EgressBandwidthAnnotation: "10"} }},
		{"bad protocol", func(p *Pod) { p.PortMappings = []PortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "icmp"}} }},
		{"bad host IP", func(p *Pod) { p.PortMappings = []PortMapping{{HostPort: 1, ContainerPort: 1, HostIP: "x"}} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPod("bad")
			tc.mod(&p)
			_, err := m.Setup(context.Background(), p)
			if !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("Setup error = %v, want ErrInvalidArgument", err)
			}
		})
	}
	if c := e.calls(t); len(c) != 0 {
		t.Errorf("plugins were called: %v", shorts(c))
	}
	if err := m.UpdatePodCIDR("10.0.0.0/33"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("UpdatePodCIDR error = %v", err)
	}
}

func TestFailedAddRunsDel(t *testing.T) {
	e := newEnv(t)
	e.write(t, "10-test.conflist", e.list("testnet",
		map[string]any{"type": "fake", "result": canned},
		map[string]any{"type": "fake2", "fail": map[string]any{"ADD": map[string]any{"cniVersion": "1.0.0", "code": 11, "msg": "no more addresses", "details": "range 10.1.2.0/24 full"}}},
	))
	m := e.manager(t)
	_, err := m.Setup(context.Background(), testPod("p1"))
	if err == nil || !strings.Contains(err.Error(), "no more addresses") || !strings.Contains(err.Error(), "fake2") {
		t.Fatalf("Setup error = %v, want the plugin's message", err)
	}
	if got, want := shorts(e.calls(t)), []string{"ADD fake", "ADD fake2", "DEL fake2", "DEL fake"}; !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if got := e.cacheEntries(t); len(got) != 0 {
		t.Errorf("cache entries after failed ADD = %v", got)
	}
}

func TestTeardownIdempotent(t *testing.T) {
	e := newEnv(t)
	e.write(t, "10-test.conflist", e.list("testnet",
		map[string]any{"type": "fake", "result": canned},
		map[string]any{"type": "fake2", "capabilities": map[string]bool{"portMappings": true}},
	))
	m := e.manager(t)
	p := testPod("p1")
	p.PortMappings = []PortMapping{{HostPort: 8080, ContainerPort: 80}}
	if _, err := m.Setup(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if ids, err := m.Attached(); err != nil || !reflect.DeepEqual(ids, []string{"p1"}) {
		t.Errorf("Attached = %v, %v; want [p1]", ids, err)
	}
	for i := range 2 {
		if err := m.Teardown(context.Background(), p); err != nil {
			t.Fatalf("Teardown %d: %v", i, err)
		}
	}
	if err := m.Teardown(context.Background(), testPod("never-added")); err != nil {
		t.Fatalf("Teardown of a pod never set up: %v", err)
	}
	calls := e.calls(t)
	if got, want := shorts(calls), []string{"ADD fake", "ADD fake2", "DEL fake2", "DEL fake", "DEL fake2", "DEL fake", "DEL fake2", "DEL fake"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
	// The first DEL (from the cache) carries the ADD's port mappings and
	// prevResult, as portmap needs.
	if rc, ok := calls[2].Config["runtimeConfig"].(map[string]any); !ok || rc["portMappings"] == nil {
		t.Errorf("DEL runtimeConfig = %v", calls[2].Config["runtimeConfig"])
	}
	if calls[2].Config["prevResult"] == nil {
		t.Error("DEL got no prevResult")
	}
	if got := e.cacheEntries(t); len(got) != 0 {
		t.Errorf("cache entries after Teardown = %v", got)
	}
	if ids, err := m.Attached(); err != nil || len(ids) != 0 {
		t.Errorf("Attached after Teardown = %v, %v", ids, err)
	}
}

func TestTeardownFromCache(t *testing.T) {
	for _, tc := range []struct {
		name string
		// change alters the conf dir after Setup.
		change func(t *testing.T, e *env, newRecord string)
	}{
		{"config unchanged", func(t *testing.T, e *env, _ string) {}},
		{"config changed", func(t *testing.T, e *env, rec string) {
			e.write(t, "10-test.conflist", e.list("othernet", map[string]any{"type": "fake2", "record": rec}))
		}},
		{"config removed", func(t *testing.T, e *env, _ string) {
			if err := os.Remove(filepath.Join(e.confDir, "10-test.conflist")); err != nil {
				t.Fatal(err)
			}
		}},
		{"config broken", func(t *testing.T, e *env, _ string) {
			e.write(t, "10-test.conflist", "{not json")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(t, "10-test.conflist", e.list("testnet",
				map[string]any{"type": "fake", "result": canned},
				map[string]any{"type": "fake2", "capabilities": map[string]bool{"portMappings": true}},
			))
			p := testPod("p1")
			p.PortMappings = []PortMapping{{HostPort: 8080, ContainerPort: 80}}
			// The daemon that set the pod up is gone.
			m1, err := New(context.Background(), e.opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m1.Setup(context.Background(), p); err != nil {
				t.Fatal(err)
			}
			m1.Close()

			newRecord := filepath.Join(t.TempDir(), "new.jsonl")
			tc.change(t, e, newRecord)
			m2 := e.manager(t)
			// After the restart the pod controller knows only the ID and
			// netns from its records.
			if err := m2.Teardown(context.Background(), Pod{ID: p.ID, NetNS: p.NetNS}); err != nil {
				t.Fatalf("Teardown: %v", err)
			}
			calls := e.calls(t)
			if got, want := shorts(calls), []string{"ADD fake", "ADD fake2", "DEL fake2", "DEL fake"}; !reflect.DeepEqual(got, want) {
				t.Fatalf("calls = %v, want %v", got, want)
			}
			del := calls[2]
			if del.Config["name"] != "testnet" || !strings.Contains(del.Args, "K8S_POD_NAME=web") {
				t.Errorf("DEL used name %v args %q, want the cached ones", del.Config["name"], del.Args)
			}
			if rc, ok := del.Config["runtimeConfig"].(map[string]any); !ok || rc["portMappings"] == nil {
				t.Errorf("DEL runtimeConfig = %v", del.Config["runtimeConfig"])
			}
			if c := readCalls(t, newRecord); len(c) != 0 {
				t.Errorf("new config's plugins were called: %v", shorts(c))
			}
			if got := e.cacheEntries(t); len(got) != 0 {
				t.Errorf("cache entries after Teardown = %v", got)
			}
		})
	}
}

func TestPluginTimeout(t *testing.T) {
	e := newEnv(t)
	e.opts.PluginTimeout = 300 * time.Millisecond
	e.write(t, "10-test.conflist", e.list("testnet",
		map[string]any{"type": "fake", "result": canned},
		map[string]any{"type": "fake2", "hang": "ADD"},
	))
	m := e.manager(t)
	start := time.Now()
	_, err := m.Setup(context.Background(), testPod("p1"))
	if !errors.Is(err, ErrPluginTimeout) {
		t.Fatalf("Setup error = %v, want ErrPluginTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Setup took %s", d)
	}
	if got, want := shorts(e.calls(t)), []string{"ADD fake", "ADD fake2", "DEL fake2", "DEL fake"}; !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
}

func TestSetupCallerCancelStillCleansUp(t *testing.T) {
	e := newEnv(t)
	e.write(t, "10-test.conflist", e.list("testnet",
		map[string]any{"type": "fake", "result": canned},
		map[string]any{"type": "fake2", "hang": "ADD"},
	))
	m := e.manager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := m.Setup(ctx, testPod("p1")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Setup error = %v, want context.DeadlineExceeded", err)
	}
	if got, want := shorts(e.calls(t)), []string{"ADD fake", "ADD fake2", "DEL fake2", "DEL fake"}; !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
}

// waitStatus polls Status until check accepts it.
func waitStatus(t *testing.T, m *Manager, what string, check func(error) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := m.Status()
		if check(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Status never became %s; last: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func reason(r string) func(error) bool {
	return func(err error) bool {
		var nr *NotReadyError
		return errors.As(err, &nr) && nr.Reason == r
	}
}

func TestStatusTransitions(t *testing.T) {
	e := newEnv(t)
	// The conf dir does not even exist at first.
	if err := os.Remove(e.confDir); err != nil {
		t.Fatal(err)
	}
	m := e.manager(t)
	if !reason(ReasonNoConfig)(m.Status()) {
		t.Fatalf("Status = %v, want %s", m.Status(), ReasonNoConfig)
	}
	if err := os.MkdirAll(e.confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name  string
		apply func(t *testing.T)
		want  func(error) bool
		msg   string // substring of the error
	}{
		{"valid installed", func(t *testing.T) {
			e.write(t, "10-test.conflist", e.list("testnet", map[string]any{"type": "fake"}))
		}, func(err error) bool { return err == nil }, ""},
		{"malformed earlier file", func(t *testing.T) {
			e.write(t, "05-broken.conflist", `{"cniVersion": "1.0.0", "name": "x", "plugins": [`)
		}, reason(ReasonInvalidConfig), "05-broken.conflist"},
		{"malformed removed", func(t *testing.T) {
			os.Remove(filepath.Join(e.confDir, "05-broken.conflist"))
		}, func(err error) bool { return err == nil }, ""},
		{"plugin missing", func(t *testing.T) {
			e.write(t, "10-test.conflist", e.list("testnet", map[string]any{"type": "notyet"}))
		}, reason(ReasonPluginNotReady), "notyet"},
		{"plugin installed", func(t *testing.T) {
			if err := os.MkdirAll(e.opts.BinDirs[1], 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(fakeBinDir, "fake"), filepath.Join(e.opts.BinDirs[1], "notyet")); err != nil {
				t.Fatal(err)
			}
		}, func(err error) bool { return err == nil }, ""},
		{"no plugins", func(t *testing.T) {
			e.write(t, "10-test.conflist", `{"cniVersion": "1.0.0", "name": "x", "plugins": []}`)
		}, reason(ReasonInvalidConfig), "no plugins"},
		{"all removed", func(t *testing.T) {
			os.Remove(filepath.Join(e.confDir, "10-test.conflist"))
		}, reason(ReasonNoConfig), e.confDir},
	}
	for _, s := range steps {
		s.apply(t)
		waitStatus(t, m, s.name, s.want)
		if err := m.Status(); s.msg != "" && !strings.Contains(err.Error(), s.msg) {
			t.Errorf("%s: Status = %q, want it to mention %q", s.name, err, s.msg)
		}
	}
	// Setup refuses to run without a config and says why.
	if _, err := m.Setup(context.Background(), testPod("p")); !reason(ReasonNoConfig)(err) {
		t.Errorf("Setup without config: %v", err)
	}
	m.Close()
	if !reason(ReasonClosed)(m.Status()) {
		t.Errorf("Status after Close = %v", m.Status())
	}
}

func TestConfigSelection(t *testing.T) {
	plugin := func(e *env) map[string]any { return map[string]any{"type": "fake", "record": e.record} }
	for _, tc := range []struct {
		name     string
		files    func(e *env) map[string]any
		wantFile string
		wantNet  string
	}{
		{"first by name across extensions", func(e *env) map[string]any {
			return map[string]any{
				"20-b.conflist": e.list("b", plugin(e)),
				"10-a.conf":     map[string]any{"cniVersion": "0.4.0", "name": "a", "type": "fake", "record": e.record},
				"30-c.json":     map[string]any{"cniVersion": "1.0.0", "name": "c", "type": "fake"},
			}
		}, "10-a.conf", "a"},
		{"conflist", func(e *env) map[string]any {
			return map[string]any{"50-x.conflist": e.list("x", plugin(e)), "60-y.conflist": e.list("y", plugin(e))}
		}, "50-x.conflist", "x"},
		{"json is a single conf", func(e *env) map[string]any {
			return map[string]any{"01-j.json": map[string]any{"cniVersion": "1.0.0", "name": "j", "type": "fake", "record": e.record}}
		}, "01-j.json", "j"},
		{"hidden and other extensions skipped", func(e *env) map[string]any {
			return map[string]any{
				".00-hidden.conflist": e.list("hidden", plugin(e)),
				"00-a.conflist.tmp":   e.list("tmp", plugin(e)),
				"00-README":           "not json",
				"99-last.conflist":    e.list("last", plugin(e)),
			}
		}, "99-last.conflist", "last"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			for name, v := range tc.files(e) {
				e.write(t, name, v)
			}
			m := e.manager(t)
			if err := m.Status(); err != nil {
				t.Fatalf("Status: %v", err)
			}
			if got := filepath.Base(m.net.file); got != tc.wantFile {
				t.Errorf("loaded %s, want %s", got, tc.wantFile)
			}
			if _, err := m.Setup(context.Background(), testPod("p1")); err != nil {
				t.Fatalf("Setup: %v", err)
			}
			calls := e.calls(t)
			if len(calls) != 1 || calls[0].Config["name"] != tc.wantNet {
				t.Fatalf("calls = %+v, want one ADD of network %s", calls, tc.wantNet)
			}
			// A wrapped .conf keeps its own cniVersion.
			if tc.wantNet == "a" && calls[0].Config["cniVersion"] != "0.4.0" {
				t.Errorf("cniVersion = %v", calls[0].Config["cniVersion"])
			}
			if err := m.Teardown(context.Background(), testPod("p1")); err != nil {
				t.Fatalf("Teardown: %v", err)
			}
		})
	}
}

func TestLoopbackOption(t *testing.T) {
	e := newEnv(t)
	e.opts.Loopback = true
	// The fake plugin stands in for loopback.
	if err := os.MkdirAll(e.opts.BinDirs[1], 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(fakeBinDir, "fake"), filepath.Join(e.opts.BinDirs[1], "loopback")); err != nil {
		t.Fatal(err)
	}
	e.write(t, "10-test.conflist", e.list("testnet", map[string]any{"type": "fake", "result": canned}))
	m := e.manager(t)
	p := testPod("p1")
	if _, err := m.Setup(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if got := e.cacheEntries(t); !reflect.DeepEqual(got, []string{"cri-runtimed-loopback-p1-lo", "testnet-p1-eth0"}) {
		t.Errorf("cache entries = %v", got)
	}
	if err := m.Teardown(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if got := e.cacheEntries(t); len(got) != 0 {
		t.Errorf("cache entries after Teardown = %v", got)
	}
}

func TestConcurrentSetups(t *testing.T) {
	e := newEnv(t)
	e.write(t, "10-test.conflist", e.list("testnet", map[string]any{"type": "fake", "result": canned}))
	m := e.manager(t)
	errs := make(chan error, 16)
	for i := range cap(errs) {
		go func() {
			p := testPod(fmt.Sprintf("p%d", i))
			_, err := m.Setup(context.Background(), p)
			if err == nil {
				err = m.Teardown(context.Background(), p)
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := len(e.calls(t)); got != 2*cap(errs) {
		t.Errorf("%d calls, want %d", got, 2*cap(errs))
	}
}

func TestDeployConfig(t *testing.T) {
	list, err := loadFile("../../deploy/cni/10-cri-runtimed.conflist")
	if err != nil {
		t.Fatal(err)
	}
	if list.Name != "cri-runtimed" || list.CNIVersion != "1.0.0" || len(list.Plugins) != 2 {
		t.Fatalf("name %q version %q plugins %d", list.Name, list.CNIVersion, len(list.Plugins))
	}
	var bridge struct {
		Type   string `json:"type"`
		IPMasq *bool  `json:"ipMasq"`
	}
	if err := json.Unmarshal(list.Plugins[0].Bytes, &bridge); err != nil {
		t.Fatal(err)
	}
	// Masquerading is the operator's choice (README), never our default.
	if bridge.Type != "bridge" || bridge.IPMasq == nil || *bridge.IPMasq {
		t.Errorf("bridge plugin = %+v, want ipMasq false", bridge)
	}
	if !list.Plugins[1].Network.Capabilities["portMappings"] {
		t.Error("portmap lacks the portMappings capability")
	}
}
