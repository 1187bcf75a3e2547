package image

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot"
)

// TestPullUncompressedLimit: the uncompressed bytes of all the layers a
// pull unpacks count against image.max_uncompressed_size; a pull past it
// fails with ErrTooLarge naming the limit, leaves no snapshot of the
// failed unpack and records no image. A gzip bomb stops at the limit.
func TestPullUncompressedLimit(t *testing.T) {
	const limit = 1 << 20
	l1, _ := layer(t, file{name: "a", body: strings.Repeat("a", 600<<10)})
	l2, _ := layer(t, file{name: "b", body: strings.Repeat("b", 600<<10)})
	bomb, _ := layer(t, file{name: "zeros", body: strings.Repeat("\x00", 64<<20)})
	if len(bomb) > 1<<20 {
		t.Fatalf("the bomb is %d bytes compressed: not a bomb", len(bomb))
	}
	for _, tc := range []struct {
		name   string
		limit  int64
		layers [][]byte
		fail   bool
	}{
		{name: "layers within the limit", limit: 2 * limit, layers: [][]byte{l1, l2}},
		{name: "layers past the limit together", limit: limit, layers: [][]byte{l1, l2}, fail: true},
		{name: "gzip bomb", limit: limit, layers: [][]byte{bomb}, fail: true},
		{name: "no limit", limit: 0, layers: [][]byte{l1, l2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, WithMaxUncompressedSize(tc.limit))
			ctx := context.Background()
			push(t, e.reg, "app", "v1", "amd64", tc.layers...)
			_, err := e.svc.Pull(ctx, e.ref("app:v1"), registry.Credentials{})
			if !tc.fail {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "image.max_uncompressed_size") {
				t.Fatalf("Pull = %v, want ErrTooLarge naming image.max_uncompressed_size", err)
			}
			if err := e.snap.Walk(ctx, func(i snapshot.Info) error {
				if i.Kind != snapshot.KindCommitted {
					t.Errorf("snapshot %s of the failed unpack left behind (%s)", i.Key, i.Kind)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if imgs, _ := e.svc.List(ctx); len(imgs) != 0 {
				t.Errorf("images recorded after a failed pull: %v", imgs)
			}
		})
	}
}

// TestReconfigure: new limits and a new registry client apply to the
// pulls that start after Reconfigure (image.* keys reloaded on SIGHUP).
func TestReconfigure(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	big, _ := layer(t, file{name: "a", body: strings.Repeat("a", 600<<10)})
	push(t, e.reg, "app", "v1", "amd64", big)
	e.svc.Reconfigure(registry.New(e.reg.HostsDir()), WithMaxUncompressedSize(100<<10))
	if _, err := e.svc.Pull(ctx, e.ref("app:v1"), registry.Credentials{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Pull past a reloaded limit = %v, want ErrTooLarge", err)
	}
	// The new client is the one used: one refusing every manifest fails.
	other, _ := layer(t, file{name: "b", body: "b"})
	push(t, e.reg, "app", "v2", "amd64", other)
	e.svc.Reconfigure(registry.New(e.reg.HostsDir(), registry.WithMaxManifestSize(16)), WithMaxUncompressedSize(0))
	if _, err := e.svc.Pull(ctx, e.ref("app:v2"), registry.Credentials{}); err == nil {
		t.Fatal("Pull through a client refusing every manifest succeeded")
	}
	e.svc.Reconfigure(registry.New(e.reg.HostsDir()))
	if _, err := e.svc.Pull(ctx, e.ref("app:v1"), registry.Credentials{}); err != nil {
		t.Fatalf("Pull after restoring the client: %v", err)
	}
}
