//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
)

func TestPullInvalidReference(t *testing.T) {
	env := framework.NewEnv(t)
	for _, ref := range []string{
		"",
		"Busybox",            // repository names are lower case
		"busybox:",           // empty tag
		"busybox::latest",    // two separators
		"busy box",           // space
		"-busybox",           // leading separator
		"busybox@sha256:abc", // short digest
		"busybox@md5:" + strings.Repeat("0", 32),
		"docker.io//busybox",                  // empty path component
		"busybox:" + strings.Repeat("t", 129), // tags are at most 128 chars
	} {
		t.Run(ref, func(t *testing.T) {
			_, err := env.Daemon.Images().PullImage(testCtx(t), spec(ref), nil, nil)
			if code := status.Code(err); code != codes.InvalidArgument {
				t.Errorf("PullImage(%q) = %v (code %s), want InvalidArgument", ref, err, code)
			}
		})
	}
}

// TestPullMissing pulls names the registry does not have: the error must
// let a user (who sees it in `kubectl describe pod`) tell which image and
// which registry host failed.
func TestPullMissing(t *testing.T) {
	env := framework.NewEnv(t)
	env.Push(t, "busybox", busybox(t))
	for _, tc := range []struct {
		name, ref, image string
	}{
		{"missing tag", "busybox:nope", "busybox:nope"},
		{"missing repository", "registry.k8s.io/e2e/missing:v1", "e2e/missing:v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := env.Daemon.Images().PullImage(testCtx(t), spec(tc.ref), nil, nil)
			if err == nil {
				t.Fatalf("PullImage(%q) succeeded", tc.ref)
			}
			if code := status.Code(err); code == codes.InvalidArgument || code == codes.OK {
				t.Errorf("PullImage(%q): code %s for a well-formed reference", tc.ref, code)
			}
			msg := status.Convert(err).Message()
			// The registry host is where hosts.toml sent the request.
			for _, want := range []string{tc.image, env.Registry.Host} {
				if !strings.Contains(msg, want) {
					t.Errorf("PullImage(%q) error %q does not name %q", tc.ref, msg, want)
				}
			}
			if got := imageStatus(t, env.Daemon, tc.ref); got != nil {
				t.Errorf("failed pull left image %v", got)
			}
		})
	}
}
