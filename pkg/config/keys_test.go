package config

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestKeysCoverConfig: every key of the file has its entry, so reload and
// `config default` say what SIGHUP does with it.
func TestKeysCoverConfig(t *testing.T) {
	c := Default()
	c.Runtime.Handlers["kata"] = Handler{Binary: "kata", Root: "/run/kata"}
	flat, err := flatten(c)
	if err != nil {
		t.Fatal(err)
	}
	for key := range flat {
		k, ok := Lookup(key)
		if !ok {
			t.Errorf("%s: no entry in keys", key)
			continue
		}
		if k.Note == "" {
			t.Errorf("%s: no note", key)
		}
		if k.Reloadable() != (k.copy != nil) {
			t.Errorf("%s: reloadable %v but copy set %v", key, k.Reloadable(), k.copy != nil)
		}
	}
	for _, k := range keys {
		if _, ok := flat[k.Name]; !ok && !strings.HasSuffix(k.Name, ".") {
			t.Errorf("entry %s names no key of the file", k.Name)
		}
	}
}

// TestApply: each reloadable key is copied, and only it; keys needing a
// restart keep the running value; groups say what to apply.
func TestApply(t *testing.T) {
	running, next := Default(), Default()
	next.Root = "/elsewhere"
	next.Image.MaxConcurrentDownloads = 7
	next.Runtime.Handlers["kata"] = Handler{Binary: "kata"}
	next.NRI.PluginRequestTimeout = Duration(time.Minute)
	next.NRI.SocketPath = "/run/other.sock"
	next.NRI.DefaultValidator.Enable = true
	next.Tracing.Endpoint = "127.0.0.1:4317"
	changed, err := Changed(running, next)
	if err != nil {
		t.Fatal(err)
	}
	groups := Apply(running, next, changed)
	want := Default()
	want.Image.MaxConcurrentDownloads = 7
	want.Runtime.Handlers = next.Runtime.Handlers
	want.NRI.PluginRequestTimeout = Duration(time.Minute)
	want.NRI.SocketPath = "/run/other.sock"
	want.NRI.DefaultValidator.Enable = true
	want.Tracing.Endpoint = "127.0.0.1:4317"
	if !reflect.DeepEqual(running, want) {
		left, _ := Changed(running, want)
		t.Errorf("after Apply, keys differ from the expected: %v", left)
	}
	for g, n := range map[Group]int{GroupPull: 1, GroupHandlers: 1, GroupNRITimeouts: 1, GroupNRI: 2, GroupTracing: 1} {
		if len(groups[g]) != n {
			t.Errorf("group %s: keys %v, want %d", g, groups[g], n)
		}
	}
	if len(groups) != 5 {
		t.Errorf("groups %v", groups)
	}
}

// TestEncodeAnnotated: `config default` says above every key whether
// SIGHUP applies it, and still reads back as the defaults.
func TestEncodeAnnotated(t *testing.T) {
	b, err := Default().Encode()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if keyRe.MatchString(l) {
			prev := strings.TrimSpace(lines[i-1])
			if !strings.HasPrefix(prev, "# SIGHUP: ") && !strings.HasPrefix(prev, "# Restart needed: ") {
				t.Errorf("line %d %q: no reload annotation above it", i+1, l)
			}
		}
	}
	for _, want := range []string{"# SIGHUP: " + noteNRI, "# Restart needed: " + noteGRPC, "# SIGHUP: " + noteTracing} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("no %q", want)
		}
	}
	got := &Config{}
	if err := Decode(b, got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, Default()) {
		t.Error("the annotated defaults do not read back as the defaults")
	}
}
