//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/registry"
)

// imageSet is ListImages reduced to what must survive a restart.
func imageSet(t *testing.T, d *framework.Daemon) []string {
	t.Helper()
	var out []string
	for _, img := range listImages(t, d, nil) {
		out = append(out, fmt.Sprintf("%s tags=%v digests=%v size=%d",
			img.Id, slices.Sorted(slices.Values(img.RepoTags)), slices.Sorted(slices.Values(img.RepoDigests)), img.Size))
	}
	slices.Sort(out)
	return out
}

func TestRestartKeepsImages(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(d *framework.Daemon, t testing.TB)
	}{
		{"SIGTERM", (*framework.Daemon).Stop},
		{"SIGKILL", (*framework.Daemon).Kill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := framework.NewEnv(t)
			d := env.Daemon
			a := busybox(t)
			b := busybox(t, images.WithLabels(map[string]string{"b": "1"}))
			env.Push(t, "busybox", a)
			env.Push(t, "registry.k8s.io/e2e/keep:1", a)
			env.Push(t, "docker.io/library/keep@"+b.Digest().String(), b)
			pull(t, d, "busybox", a.ID().String())
			pull(t, d, "registry.k8s.io/e2e/keep:1", a.ID().String())
			pull(t, d, "docker.io/library/keep@"+b.Digest().String(), b.ID().String())
			want := imageSet(t, d)
			if len(want) != 2 {
				t.Fatalf("before restart: %v, want 2 images", want)
			}

			tc.stop(d, t)
			d.Start(t)
			if got := imageSet(t, d); !slices.Equal(got, want) {
				t.Errorf("after %s and start:\n got %v\nwant %v", tc.name, got, want)
			}
			checkImage(t, mustStatus(t, d, "busybox"), a.ID().String(),
				[]string{"docker.io/library/busybox:latest", "registry.k8s.io/e2e/keep:1"},
				[]string{"docker.io/library/busybox@" + a.Digest().String(), "registry.k8s.io/e2e/keep@" + a.Digest().String()})
			// The kept content is usable: removing and re-pulling works.
			removeImage(t, d, b.ID().String())
			pull(t, d, "docker.io/library/keep@"+b.Digest().String(), b.ID().String())
		})
	}
}

// TestPullInterruptedByKill kills the daemon while a layer is half
// downloaded (a proxy holds the rest back, so "mid-pull" is certain), then
// starts it again on the same state.
func TestPullInterruptedByKill(t *testing.T) {
	env := framework.NewEnv(t, framework.WithoutStart())
	d := env.Daemon
	proxy := registry.StartProxy(t, env.Registry.URL)
	if err := framework.WriteHosts(d.CertsDir, "docker.io", framework.Hosts{Server: proxy.URL}); err != nil {
		t.Fatal(err)
	}
	d.Start(t)

	const size, stallAt = 200 << 20, 64 << 20
	big, err := images.RandomLayer("big.bin", size, 7)
	if err != nil {
		t.Fatal(err)
	}
	img := busybox(t, images.WithLayers(big))
	env.Push(t, "big:v1", img)

	stall := proxy.StallBlob(big.Digest, stallAt)
	pullErr := make(chan error, 1)
	go func() {
		// Not pull(): t.Fatal must not be called from this goroutine.
		_, err := d.Images().PullImage(context.Background(), spec("big:v1"), nil, nil)
		pullErr <- err
	}()
	select {
	case <-stall.Reached():
	case err := <-pullErr:
		t.Fatalf("pull ended before the big layer was half downloaded: %v", err)
	case <-time.After(5 * time.Minute):
		t.Fatal("the daemon never downloaded 64 MiB of the big layer")
	}
	d.Kill(t)
	select {
	case err := <-pullErr:
		if err == nil {
			t.Fatal("PullImage succeeded although the daemon was killed mid-pull")
		}
	case <-time.After(time.Minute):
		t.Fatal("PullImage did not return after the daemon was killed")
	}
	stall.Release()

	// Start checks the database opens and the daemon serves.
	d.Start(t)
	t.Run("image not listed", func(t *testing.T) {
		if slices.Contains(ids(listImages(t, d, nil)), img.ID().String()) {
			t.Error("the half-pulled image is listed")
		}
		if got := imageStatus(t, d, "big:v1"); got != nil {
			t.Errorf("ImageStatus of the half-pulled image = %v", got)
		}
	})
	t.Run("pull again", func(t *testing.T) {
		pull(t, d, "big:v1", img.ID().String())
		checkImage(t, mustStatus(t, d, "big:v1"), img.ID().String(),
			[]string{"docker.io/library/big:v1"}, []string{"docker.io/library/big@" + img.Digest().String()})
	})
	t.Run("download resumed", func(t *testing.T) {
		// DESIGN: an interrupted ingest keeps its bytes and the next
		// download resumes from them with a Range request.
		gets := proxy.BlobGets(big.Digest)
		if len(gets) < 2 {
			t.Fatalf("big layer fetched %d times, want a second fetch", len(gets))
		}
		last := gets[len(gets)-1].Range
		m := regexp.MustCompile(`^bytes=(\d+)-`).FindStringSubmatch(last)
		if m == nil {
			t.Fatalf("second fetch of the big layer has Range %q, want bytes=<offset>-", last)
		}
		if off, _ := strconv.ParseInt(m[1], 10, 64); off <= 0 || off > stallAt {
			t.Errorf("resumed at offset %d, want within (0, %d]", off, stallAt)
		}
	})
}

func TestSecondDaemonOnSameRoot(t *testing.T) {
	first := framework.NewDaemon(t)
	// Own state dir and socket, same root: only the root lock can stop it.
	second := framework.NewDaemon(t, framework.WithConfig("root", first.Root), framework.WithoutStart())
	second.StartProcess(t)
	if !second.WaitExit(15 * time.Second) {
		t.Fatal("a second daemon on the same root is still running after 15s")
	}
	if code := second.ExitCode(); code <= 0 {
		t.Errorf("second daemon ended with %s, want a non-zero exit status", second.ExitState())
	}
	if log := second.Log(); !regexp.MustCompile(`(?i)lock|another instance|already running|in use`).MatchString(log) {
		t.Errorf("second daemon's output does not mention the lock or the other instance:\n%s", log)
	}
	// The first one is unharmed.
	if _, err := first.Runtime().Version(testCtx(t), ""); err != nil {
		t.Errorf("first daemon after the second one's attempt: %v", err)
	}
	if _, err := first.Images().ImageFsInfo(testCtx(t)); err != nil {
		t.Errorf("first daemon ImageFsInfo: %v", err)
	}
}

// TestMirrorFallthrough lists a broken mirror before the server in
// hosts.toml: pulls must fall through to the server.
func TestMirrorFallthrough(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mirror func(t *testing.T) (url string, used func() bool)
	}{
		{"mirror down", func(t *testing.T) (string, func() bool) {
			return registry.DownURL(t), nil
		}},
		{"mirror answers 500", func(t *testing.T) (string, func() bool) {
			es := registry.StartErrorServer(t, http.StatusInternalServerError)
			return es.URL, func() bool { return es.Requests() > 0 }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := framework.NewEnv(t, framework.WithoutStart())
			mirror, used := tc.mirror(t)
			err := framework.WriteHosts(env.Daemon.CertsDir, "docker.io", framework.Hosts{
				Server:  env.Registry.URL,
				Mirrors: []string{mirror},
			})
			if err != nil {
				t.Fatal(err)
			}
			env.Daemon.Start(t)
			img := busybox(t)
			env.Push(t, "busybox", img)
			pull(t, env.Daemon, "busybox", img.ID().String())
			checkImage(t, mustStatus(t, env.Daemon, "busybox"), img.ID().String(),
				[]string{"docker.io/library/busybox:latest"}, []string{"docker.io/library/busybox@" + img.Digest().String()})
			// Proves the mirror was read from hosts.toml and tried first.
			if used != nil && !used() {
				t.Error("the mirror listed in hosts.toml was never asked")
			}
		})
	}
}

func TestCLI(t *testing.T) {
	framework.RequireRoot(t)
	for _, tc := range []struct {
		name  string
		args  []string
		ok    bool
		check func(t *testing.T, out string)
	}{
		{"version", []string{"--version"}, true, func(t *testing.T, out string) {
			if strings.TrimSpace(out) == "" {
				t.Error("--version printed nothing")
			}
		}},
		{"config default", []string{"config", "default"}, true, func(t *testing.T, out string) {
			var cfg map[string]any
			if err := toml.Unmarshal([]byte(out), &cfg); err != nil {
				t.Fatalf("config default is not TOML: %v\n%s", err, out)
			}
			// Every key the tests write must exist; the paths are the
			// defaults of docs/DESIGN.md "On the node".
			c := framework.Config(cfg)
			for key, want := range map[string]any{
				"root":                           "/var/lib/cri-runtimed",
				"state":                          "/run/cri-runtimed",
				"grpc.address":                   "/run/cri-runtimed/cri-runtimed.sock",
				"image.snapshotter":              "overlayfs",
				"image.registry_config_path":     "/etc/cri-runtimed/certs.d",
				"image.max_concurrent_downloads": nil,
				"image.pull_progress_timeout":    nil,
			} {
				got, ok := c.Get(key)
				if !ok {
					t.Errorf("config default lacks %s", key)
				} else if want != nil && got != want {
					t.Errorf("config default %s = %v, want %v", key, got, want)
				}
			}
		}},
		{"missing config", []string{"--config", "/nonexistent/cri-runtimed.toml"}, false, func(t *testing.T, out string) {
			if !strings.Contains(out, "/nonexistent/cri-runtimed.toml") {
				t.Errorf("error does not name the config file:\n%s", out)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(testCtx(t), 30*time.Second)
			defer cancel()
			out, code, err := framework.RunCLI(ctx, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if (code == 0) != tc.ok {
				t.Fatalf("cri-runtimed %s: exit %d\n%s", strings.Join(tc.args, " "), code, out)
			}
			tc.check(t, out)
		})
	}
}
