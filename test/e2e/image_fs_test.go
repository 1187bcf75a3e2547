//go:build e2e

package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

func imageFs(t *testing.T, d *framework.Daemon) *runtimeapi.FilesystemUsage {
	t.Helper()
	resp, err := d.Images().ImageFsInfo(testCtx(t))
	if err != nil {
		t.Fatalf("ImageFsInfo: %v", err)
	}
	if len(resp.ImageFilesystems) != 1 {
		t.Fatalf("ImageFsInfo: %d image filesystems, want 1: %v", len(resp.ImageFilesystems), resp)
	}
	return resp.ImageFilesystems[0]
}

// TestImageFsInfo checks what kubelet's eviction and image GC read: the
// image filesystem is the daemon's, and its usage follows pulls and
// removals (removing the last reference frees blobs and snapshots).
func TestImageFsInfo(t *testing.T) {
	env := framework.NewEnv(t)
	d := env.Daemon

	fs := imageFs(t, d)
	mp := fs.GetFsId().GetMountpoint()
	if rel, err := filepath.Rel(d.Root, mp); err != nil || strings.HasPrefix(rel, "..") {
		t.Errorf("image fs mountpoint %q is not under the root %q", mp, d.Root)
	}
	if fs.Timestamp == 0 {
		t.Errorf("image fs usage has no timestamp")
	}
	before := fs.GetUsedBytes().GetValue()

	// 16 MiB of incompressible data: stored once as a blob and once
	// unpacked, far above any metadata noise.
	const size = 16 << 20
	big, err := images.RandomLayer("big.bin", size, 42)
	if err != nil {
		t.Fatal(err)
	}
	img := busybox(t, images.WithLayers(big))
	env.Push(t, "fsinfo:v1", img)
	pull(t, d, "fsinfo:v1", img.ID().String())

	// The image is stored twice, as blobs and unpacked: the big layer's
	// 16 MiB (incompressible, so its blob is as large) twice, plus
	// busybox (its blob, about 1 MiB, and its files, about 2 MiB).
	var blobs uint64
	for _, b := range img.Blobs() {
		blobs += uint64(len(b.Data))
	}
	low, high := before+blobs+size, before+blobs+size+4<<20
	// Usage may be computed in the background: poll.
	var used uint64
	framework.Eventually(t, time.Minute, func() (bool, string) {
		used = imageFs(t, d).GetUsedBytes().GetValue()
		return used >= low && used <= high, fmt.Sprintf("used %d bytes after the pull (%d before, blobs %d), want %d to %d", used, before, blobs, low, high)
	})
	t.Logf("used %d bytes before, %d after the pull (blobs %d)", before, used, blobs)

	removeImage(t, d, img.ID().String())
	framework.Eventually(t, time.Minute, func() (bool, string) {
		used = imageFs(t, d).GetUsedBytes().GetValue()
		// Directories the first pull created (blobs/sha256) remain.
		return used <= before+64<<10, fmt.Sprintf("used %d bytes after removing the image, want %d as before the pull (+ a few directories)", used, before)
	})
}
