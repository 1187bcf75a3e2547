//go:build e2e

package e2e

// Hostile registries and hostile images must not hurt the node (docs/DESIGN.md,
// invariant 4): every test here points the daemon at content crafted to
// escape its box and checks that the pull or the container fails with a
// clear error or stays confined, that sentinel files and directories in a
// temporary directory outside the daemon's root are untouched (nothing
// written, linked, deleted, chmodded or mounted there), that no partial
// image, snapshot or mount is left, and that the daemon still pulls a good
// image afterwards.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry/registrytest"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

// hostileMaxManifest is image.max_manifest_size of the daemons of this
// file: small, so that "over the limit" needs only a few KiB, yet far above
// the manifests and configs of the good images.
const hostileMaxManifest = 8 << 10

// hostileUp climbs far above any root the daemon can unpack into: joined
// with an absolute path without its leading "/", it names that host path
// from anywhere.
var hostileUp = strings.Repeat("../", 24)

// hostilePullTimeout bounds one hostile pull: every case must be refused
// by a check, never by a client timeout.
const hostilePullTimeout = 90 * time.Second

// hostileDiskBudget is how much the daemon's root may grow during one
// hostile pull; an endless body stored without a bound exceeds it in a
// fraction of a second, and the pull is then cancelled to protect the node.
const hostileDiskBudget = 256 << 20

// ---------------------------------------------------------------------------
// Sentinels: host files the hostile content aims at.

// hostileSentinel is a directory outside the daemon's root, shaped like the
// host files an attacker wants (a passwd, a group, a secret), whose every
// inode is fingerprinted so any write, link, chmod, deletion or new entry
// shows.
type hostileSentinel struct {
	Dir    string
	Secret string // content of Dir/secret: must never be copied into an image
	before map[string]string
}

func newHostileSentinel(t *testing.T) *hostileSentinel {
	t.Helper()
	dir, err := os.MkdirTemp("", "e2e-hostile-sentinel-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := framework.UnmountAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		os.RemoveAll(dir)
	})
	s := &hostileSentinel{Dir: dir, Secret: "hostile-sentinel-secret-" + framework.RandomID(8) + "\n"}
	files := map[string]string{
		"passwd":   "root:x:0:0:sentinel:/root:/bin/sh\nhostileuser:x:4242:4242:sentinel:/:/bin/sh\n",
		"group":    "root:x:0:\nhostileuser:x:4242:\n",
		"target":   "sentinel target\n",
		"secret":   s.Secret,
		"sub/keep": "sentinel keep\n",
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.before = s.fingerprint(t)
	return s
}

// Rel is Dir without its leading slash.
func (s *hostileSentinel) Rel() string { return strings.TrimPrefix(s.Dir, "/") }

// fingerprint maps every path below Dir (Dir itself as ".") to its type,
// mode, owner, link count, inode, size, mtime, ctime and content or link
// target, without following symlinks.
func (s *hostileSentinel) fingerprint(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(s.Dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		fp := fmt.Sprintf("mode=%o uid=%d gid=%d nlink=%d ino=%d size=%d mtime=%d.%d ctime=%d.%d",
			st.Mode, st.Uid, st.Gid, st.Nlink, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			fp += " sha256=" + hex.EncodeToString(sum[:])
		case syscall.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fp += " -> " + target
		}
		rel, _ := filepath.Rel(s.Dir, p)
		out[rel] = fp
		return nil
	})
	if err != nil {
		t.Fatalf("fingerprint sentinel %s: %v", s.Dir, err)
	}
	return out
}

// check fails the test if anything below Dir changed, appeared or
// disappeared since newHostileSentinel, or if anything is mounted at or
// below Dir in the host's mount namespace.
func (s *hostileSentinel) check(t *testing.T) {
	t.Helper()
	after := s.fingerprint(t)
	var diffs []string
	for p, fp := range s.before {
		switch got, ok := after[p]; {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("removed %s (was %s)", p, fp))
		case got != fp:
			diffs = append(diffs, fmt.Sprintf("changed %s: %s, was %s", p, got, fp))
		}
	}
	for p, fp := range after {
		if _, ok := s.before[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("new %s (%s)", p, fp))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("host sentinel %s was modified from inside the box:\n  %s", s.Dir, strings.Join(diffs, "\n  "))
	}
	mounts, err := framework.Mounts(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) > 0 {
		t.Errorf("mounts at or below the host sentinel %s: %v", s.Dir, mounts)
	}
}

// ---------------------------------------------------------------------------
// Raw layers: images.LayerBuilder cleans entry names, so hostile names are
// written here verbatim.

type hostileEntry struct {
	typ  byte
	name string
	link string
	data string
	mode int64
}

func hFile(name, data string) hostileEntry {
	return hostileEntry{typ: tar.TypeReg, name: name, data: data, mode: 0o644}
}
func hDir(name string) hostileEntry {
	return hostileEntry{typ: tar.TypeDir, name: name, mode: 0o755}
}
func hSymlink(name, target string) hostileEntry {
	return hostileEntry{typ: tar.TypeSymlink, name: name, link: target, mode: 0o777}
}
func hHardlink(name, target string) hostileEntry {
	return hostileEntry{typ: tar.TypeLink, name: name, link: target, mode: 0o644}
}

// hostileLayer builds a gzip layer of entries exactly as given.
func hostileLayer(t *testing.T, entries ...hostileEntry) images.Layer {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	mtime := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, e := range entries {
		hdr := &tar.Header{
			Typeflag: e.typ,
			Name:     e.name,
			Linkname: e.link,
			Mode:     e.mode,
			ModTime:  mtime,
			Size:     int64(len(e.data)),
			Format:   tar.FormatPAX,
		}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if hdr.Size > 0 {
			if _, err := io.WriteString(tw, e.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var blob bytes.Buffer
	gz := gzip.NewWriter(&blob)
	if _, err := gz.Write(tarBuf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return images.Layer{
		Data:             blob.Bytes(),
		Digest:           digest.FromBytes(blob.Bytes()),
		DiffID:           digest.FromBytes(tarBuf.Bytes()),
		UncompressedSize: int64(tarBuf.Len()),
		Compression:      images.Gzip,
	}
}

// ---------------------------------------------------------------------------
// Daemon, registry and pull helpers.

// hostileDaemon starts an in-process registry (registrytest, with fault
// injection) and a daemon whose hosts.toml sends the registry's host to it.
func hostileDaemon(t *testing.T, opts ...framework.Option) (*framework.Daemon, *registrytest.Registry) {
	t.Helper()
	framework.RequireRoot(t)
	// Created first so that its cleanup (closing the servers, which waits
	// for endless responses to end) runs after the daemon's.
	reg := registrytest.New(t)
	opts = append([]framework.Option{framework.WithConfig("image.max_manifest_size", hostileMaxManifest)}, opts...)
	d := framework.NewDaemon(t, append(opts, framework.WithoutStart())...)
	if err := framework.WriteHosts(d.CertsDir, reg.Host(), framework.Hosts{Server: reg.URL()}); err != nil {
		t.Fatal(err)
	}
	d.Start(t)
	return d, reg
}

// hostileRef names repo:tag in reg.
func hostileRef(reg *registrytest.Registry, repo, tag string) string {
	return reg.Host() + "/" + repo + ":" + tag
}

// hostilePushBlobs stores the config and layers of img in repo.
func hostilePushBlobs(reg *registrytest.Registry, repo string, img *images.Image) {
	for _, b := range img.Blobs() {
		reg.PushBlob(repo, b.Data)
	}
}

// hostilePushManifest stores img's manifest, changed by edit (nil: as
// built), under tag and returns its digest.
func hostilePushManifest(t *testing.T, reg *registrytest.Registry, repo, tag string, img *images.Image, edit func(*ocispec.Manifest)) ocispec.Descriptor {
	t.Helper()
	body := img.ManifestBlob.Data
	if edit != nil {
		var m ocispec.Manifest
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		edit(&m)
		var err error
		if body, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
	}
	return reg.PushManifest(repo, tag, img.ManifestBlob.MediaType, body)
}

// hostileImageIDs lists the IDs the daemon reports.
func hostileImageIDs(t *testing.T, d *framework.Daemon) []string {
	t.Helper()
	var out []string
	for _, img := range listImages(t, d, nil) {
		out = append(out, img.GetId())
	}
	sort.Strings(out)
	return out
}

// hostileStoreLeaks is the part of d.Leaks a pull can hold: mounts under
// the daemon's directories and snapshot directories (the other kinds are
// about pods, and some are node-wide).
func hostileStoreLeaks(t *testing.T, d *framework.Daemon) framework.Snapshot {
	t.Helper()
	all := d.Leaks(t)
	return framework.Snapshot{
		framework.LeakMounts:    all[framework.LeakMounts],
		framework.LeakSnapshots: all[framework.LeakSnapshots],
	}
}

// hostileCheckNoStoreLeaks polls until the store holds nothing beyond
// before.
func hostileCheckNoStoreLeaks(t *testing.T, d *framework.Daemon, before framework.Snapshot) {
	t.Helper()
	framework.Eventually(t, 10*time.Second, func() (bool, string) {
		left := before.New(hostileStoreLeaks(t, d))
		return len(left) == 0, fmt.Sprintf("left behind by the pull (a refused pull must remove every snapshot "+
			"it made, committed lower layers that no image references included):\n  %s", strings.Join(left, "\n  "))
	})
}

// hostileDirSize sums the sizes of the regular files below dir.
func hostileDirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if e.Type().IsRegular() {
			if info, err := e.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// hostilePullResult is what one watched pull of a hostile image came to.
type hostilePullResult struct {
	ref  string        // the image reference the daemon returned
	err  error         // the pull's error, a gRPC status
	took time.Duration // how long the pull ran
	grew int64         // root growth past hostileDiskBudget that cancelled it, or 0
}

// hostilePull pulls ref with a deadline while watching the daemon's disk
// use: if the root grows by more than hostileDiskBudget the pull is
// cancelled and grew reports it.
func hostilePull(t *testing.T, d *framework.Daemon, ref string) hostilePullResult {
	t.Helper()
	var grew int64
	ctx, cancel := context.WithTimeout(testCtx(t), hostilePullTimeout)
	defer cancel()
	base := hostileDirSize(d.Root)
	type result struct {
		ref string
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		// The generated client: cri-client turns Unknown statuses into
		// plain errors, and the code is part of what is checked.
		resp, err := d.ImageClient().PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec(ref)})
		done <- result{resp.GetImageRef(), err}
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			return hostilePullResult{ref: r.ref, err: r.err, took: time.Since(start), grew: grew}
		case <-tick.C:
			if g := hostileDirSize(d.Root) - base; g > hostileDiskBudget && grew == 0 {
				grew = g
				cancel()
			}
		}
	}
}

// hostileRefused checks that a pull of a hostile image failed as a refusal:
// a gRPC status whose code says neither "your request is malformed" nor
// "no such image" nor "timed out", whose message names the image and
// contains one of causes (case-insensitive), and that came in time.
func hostileRefused(t *testing.T, ref string, r hostilePullResult, causes []string) {
	t.Helper()
	err, took, grew := r.err, r.took, r.grew
	if grew > 0 {
		t.Errorf("PullImage(%q): the daemon's root grew by %d bytes (budget %d) before the pull ended; the test cancelled it", ref, grew, hostileDiskBudget)
	}
	if err == nil {
		t.Errorf("PullImage(%q) succeeded, want a refusal", ref)
		return
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Errorf("PullImage(%q): error %v is not a gRPC status", ref, err)
		return
	}
	switch st.Code() {
	case codes.OK, codes.InvalidArgument, codes.NotFound, codes.Canceled, codes.DeadlineExceeded,
		codes.Unimplemented, codes.AlreadyExists, codes.PermissionDenied, codes.Unauthenticated:
		t.Errorf("PullImage(%q): code %s (%q); want a code for refused content (Unknown, FailedPrecondition, DataLoss...)", ref, st.Code(), st.Message())
	}
	if took > hostilePullTimeout/2 {
		t.Errorf("PullImage(%q) took %s to fail: a hostile registry must be cut off by a check, not by the client's patience", ref, took)
	}
	msg := st.Message()
	// ref is <host>/<repo>:<tag>: the repository path names the image.
	_, repo, _ := strings.Cut(ref, "/")
	repo = repo[:strings.LastIndex(repo, ":")]
	if !strings.Contains(msg, repo) {
		t.Errorf("PullImage(%q): error %q does not name the image (%s)", ref, msg, repo)
	}
	lower := strings.ToLower(msg)
	if !slices.ContainsFunc(causes, func(c string) bool { return strings.Contains(lower, strings.ToLower(c)) }) {
		t.Errorf("PullImage(%q): error %q names none of the causes %q", ref, msg, causes)
	}
}

// hostileNoImage checks that no record of ref exists and the image list is
// what it was.
func hostileNoImage(t *testing.T, d *framework.Daemon, ref string, idsBefore []string) {
	t.Helper()
	if got := imageStatus(t, d, ref); got != nil {
		t.Errorf("refused pull of %q left an image: %v", ref, got)
	}
	if got := hostileImageIDs(t, d); !slices.Equal(got, idsBefore) {
		t.Errorf("image list after the refused pull of %q: %q, want %q", ref, got, idsBefore)
	}
}

// hostileHealthy pulls a new good image through the same registry: the
// daemon still serves and still pulls.
func hostileHealthy(t *testing.T, d *framework.Daemon, reg *registrytest.Registry, name string) {
	t.Helper()
	select {
	case <-d.Exited():
		t.Fatalf("daemon exited (%s)", d.ExitState())
	default:
	}
	img := busybox(t, images.WithLabels(map[string]string{"e2e-hostile-healthy": name}))
	repo := "hostile/healthy-" + name
	hostilePushBlobs(reg, repo, img)
	hostilePushManifest(t, reg, repo, "v1", img, nil)
	pull(t, d, hostileRef(reg, repo, "v1"), img.ID().String())
}

// hostileFindContent returns the regular files below dir whose content is
// exactly want, relative to dir.
func hostileFindContent(t *testing.T, dir, want string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return nil
		}
		info, err := e.Info()
		if err != nil || info.Size() != int64(len(want)) {
			return nil
		}
		if data, err := os.ReadFile(p); err == nil && string(data) == want {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// ---------------------------------------------------------------------------
// TestHostileRegistry: registries that lie about sizes, never stop sending,
// send too much or send the wrong bytes.

// hostileImage is what a registry case works on: a unique image (its own
// layer and config, so no blob is shared with another case) in repo.
type hostileImage struct {
	reg  *registrytest.Registry
	repo string
	img  *images.Image
}

func (h hostileImage) layer() images.Layer { return h.img.Layers[len(h.img.Layers)-1] }

func TestHostileRegistry(t *testing.T) {
	d, reg := hostileDaemon(t)
	// The busybox base layer is shared by every case's image: pull it once
	// so its snapshot is part of every baseline.
	hostileHealthy(t, d, reg, "warmup")

	sizeCauses := []string{"size", "bytes", "digest"}
	limitCauses := []string{"limit", "too large"}
	digestCauses := []string{"digest"}
	big := strings.Repeat("x", 2*hostileMaxManifest)

	for _, tc := range []struct {
		name   string
		opts   []images.Option
		setup  func(t *testing.T, h hostileImage) // pushes and injects faults; the tag is "v1"
		causes []string
	}{
		{
			name: "layer size smaller than blob",
			setup: func(t *testing.T, h hostileImage) {
				hostilePushBlobs(h.reg, h.repo, h.img)
				hostilePushManifest(t, h.reg, h.repo, "v1", h.img, func(m *ocispec.Manifest) {
					m.Layers[len(m.Layers)-1].Size /= 2
				})
			},
			causes: sizeCauses,
		},
		{
			name: "layer size larger than blob",
			setup: func(t *testing.T, h hostileImage) {
				hostilePushBlobs(h.reg, h.repo, h.img)
				hostilePushManifest(t, h.reg, h.repo, "v1", h.img, func(m *ocispec.Manifest) {
					m.Layers[len(m.Layers)-1].Size += 4096
				})
			},
			causes: sizeCauses,
		},
		{
			name: "layer size zero with endless blob",
			setup: func(t *testing.T, h hostileImage) {
				hostilePushBlobs(h.reg, h.repo, h.img)
				hostilePushManifest(t, h.reg, h.repo, "v1", h.img, func(m *ocispec.Manifest) {
					m.Layers[len(m.Layers)-1].Size = 0
				})
				h.reg.EndlessBlob(h.layer().Digest)
			},
			causes: append(append([]string{}, sizeCauses...), limitCauses...),
		},
		{
			name: "config size smaller than blob",
			setup: func(t *testing.T, h hostileImage) {
				hostilePushBlobs(h.reg, h.repo, h.img)
				hostilePushManifest(t, h.reg, h.repo, "v1", h.img, func(m *ocispec.Manifest) { m.Config.Size /= 2 })
			},
			causes: sizeCauses,
		},
		{
			name: "config size larger than blob",
			setup: func(t *testing.T, h hostileImage) {
				hostilePushBlobs(h.reg, h.repo, h.img)
				hostilePushManifest(t, h.reg, h.repo, "v1", h.img, func(m *ocispec.Manifest) { m.Config.Size += 100 })
			},
			causes: sizeCauses,
		},
		{
			name: "endless manifest",
			setup: func(t *testing.T, h hostileImage) {
				hostilePushBlobs(h.reg, h.repo, h.img)
				desc := hostilePushManifest(t, h.reg, h.repo, "v1", h.img, nil)
				// By tag and by digest: a resolver that asks for the
				// tag's digest first gets the endless body too.
				h.reg.EndlessManifest(h.repo, "v1")
				h.reg.EndlessManifest(h.repo, desc.Digest.String())
			},
			causes: limitCauses,
		},
		{
			name: "endless layer blob",
			setup: func(t *testing.T, h hostileImage) {
				hostilePushBlobs(h.reg, h.repo, h.img)
				hostilePushManifest(t, h.reg, h.repo, "v1", h.img, nil)
				h.reg.EndlessBlob(h.layer().Digest)
			},
			causes: append(append([]string{}, sizeCauses...), limitCauses...),
		},
		{
			name: "endless config blob",
			setup: func(t *testing.T, h hostileImage) {
				hostilePushBlobs(h.reg, h.repo, h.img)
				hostilePushManifest(t, h.reg, h.repo, "v1", h.img, nil)
				h.reg.EndlessBlob(h.img.ID())
			},
			causes: append(append([]string{}, sizeCauses...), limitCauses...),
		},
		{
			name: "manifest over the size limit",
			setup: func(t *testing.T, h hostileImage) {
				hostilePushBlobs(h.reg, h.repo, h.img)
				hostilePushManifest(t, h.reg, h.repo, "v1", h.img, func(m *ocispec.Manifest) {
					m.Annotations = map[string]string{"e2e.hostile/padding": big}
				})
			},
			causes: limitCauses,
		},
		{
			name: "config over the size limit",
			opts: []images.Option{images.WithLabels(map[string]string{"e2e.hostile/padding": big})},
			setup: func(t *testing.T, h hostileImage) {
				hostilePushBlobs(h.reg, h.repo, h.img)
				hostilePushManifest(t, h.reg, h.repo, "v1", h.img, nil)
			},
			causes: limitCauses,
		},
		{
			name: "index child over the size limit",
			setup: func(t *testing.T, h hostileImage) {
				hostilePushBlobs(h.reg, h.repo, h.img)
				child := hostilePushManifest(t, h.reg, h.repo, "", h.img, func(m *ocispec.Manifest) {
					m.Annotations = map[string]string{"e2e.hostile/padding": big}
				})
				hostilePushIndex(t, h, child)
			},
			causes: limitCauses,
		},
		{
			name: "index child size smaller than manifest",
			setup: func(t *testing.T, h hostileImage) {
				hostilePushBlobs(h.reg, h.repo, h.img)
				child := hostilePushManifest(t, h.reg, h.repo, "", h.img, nil)
				child.Size -= 10
				hostilePushIndex(t, h, child)
			},
			causes: sizeCauses,
		},
		{
			name: "corrupt layer blob",
			setup: func(t *testing.T, h hostileImage) {
				hostilePushBlobs(h.reg, h.repo, h.img)
				hostilePushManifest(t, h.reg, h.repo, "v1", h.img, nil)
				h.reg.CorruptBlob(h.layer().Digest)
			},
			causes: digestCauses,
		},
		{
			name: "corrupt config blob",
			setup: func(t *testing.T, h hostileImage) {
				hostilePushBlobs(h.reg, h.repo, h.img)
				hostilePushManifest(t, h.reg, h.repo, "v1", h.img, nil)
				h.reg.CorruptBlob(h.img.ID())
			},
			causes: digestCauses,
		},
		{
			name: "corrupt manifest",
			setup: func(t *testing.T, h hostileImage) {
				hostilePushBlobs(h.reg, h.repo, h.img)
				desc := hostilePushManifest(t, h.reg, h.repo, "v1", h.img, nil)
				h.reg.CorruptBlob(desc.Digest)
			},
			causes: digestCauses,
		},
		{
			name: "layer diff id mismatch",
			setup: func(t *testing.T, h hostileImage) {
				// The config promises other uncompressed content than the
				// layer holds: the unpacked snapshot must be discarded.
				cfg := h.img.Config
				cfg.RootFS.DiffIDs = slices.Clone(cfg.RootFS.DiffIDs)
				cfg.RootFS.DiffIDs[len(cfg.RootFS.DiffIDs)-1] = digest.FromString("not the layer")
				data, err := json.Marshal(cfg)
				if err != nil {
					t.Fatal(err)
				}
				cfgDesc := h.reg.PushBlob(h.repo, data)
				hostilePushBlobs(h.reg, h.repo, h.img)
				hostilePushManifest(t, h.reg, h.repo, "v1", h.img, func(m *ocispec.Manifest) {
					m.Config.Digest, m.Config.Size = cfgDesc.Digest, cfgDesc.Size
				})
			},
			causes: []string{"diff", "digest"},
		},
	} {
		for _, format := range []images.Format{images.OCI, images.Docker} {
			name := strings.ReplaceAll(tc.name, " ", "-") + "-" + format.String()
			t.Run(name, func(t *testing.T) {
				// A layer of its own makes every blob of the case unique.
				own, err := images.NewLayer().File("hostile-case", []byte(name+"\n"), 0o644).Build()
				if err != nil {
					t.Fatal(err)
				}
				opts := append([]images.Option{images.WithFormat(format), images.WithLayers(own)}, tc.opts...)
				h := hostileImage{reg: reg, repo: "hostile/" + name, img: busybox(t, opts...)}
				tc.setup(t, h)
				ref := hostileRef(reg, h.repo, "v1")

				idsBefore := hostileImageIDs(t, d)
				leaksBefore := hostileStoreLeaks(t, d)
				hostileRefused(t, ref, hostilePull(t, d, ref), tc.causes)
				hostileNoImage(t, d, ref, idsBefore)
				hostileCheckNoStoreLeaks(t, d, leaksBefore)
				hostileHealthy(t, d, reg, name)
			})
		}
	}
}

// hostilePushIndex tags an index (of h.img's format) listing child as
// linux/amd64 as "v1".
func hostilePushIndex(t *testing.T, h hostileImage, child ocispec.Descriptor) {
	t.Helper()
	mt, childMT := images.MediaTypeOCIIndex, images.MediaTypeOCIManifest
	if h.img.Format == images.Docker {
		mt, childMT = images.MediaTypeDockerList, images.MediaTypeDockerManifest
	}
	child.MediaType = childMT
	child.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	body, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: mt,
		Manifests: []ocispec.Descriptor{child},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.PushManifest(h.repo, "v1", mt, body)
}

// ---------------------------------------------------------------------------
// TestHostileLayers: layers whose entries try to reach the host.

// hostileOutcome is what the daemon may do with a hostile layer.
type hostileOutcome int

const (
	// hostileRefuse: the pull must fail naming the image and the cause.
	hostileRefuse hostileOutcome = iota
	// hostileConfine: the pull must succeed with the entry inside the
	// image (an absolute name is relative to the rootfs).
	hostileConfine
	// hostileEither: refusing and confining are both safe (an overlayfs
	// upper layer that shadows a lower symlink with a directory, a
	// whiteout that has nothing to hide).
	hostileEither
)

func (o hostileOutcome) String() string {
	return [...]string{"refuse", "confine", "refuse or confine"}[o]
}

// hostileUnsafeCauses are words a refusal of an escaping entry may use.
var hostileUnsafeCauses = []string{"unsafe", "outside", "escape", "climbs", "beneath", "insecure", "symlink", "not exist", "no such"}

func TestHostileLayers(t *testing.T) {
	type layersFunc func(t *testing.T, s *hostileSentinel, marker string) []images.Layer
	one := func(entries func(s *hostileSentinel, marker string) []hostileEntry) layersFunc {
		return func(t *testing.T, s *hostileSentinel, marker string) []images.Layer {
			return []images.Layer{hostileLayer(t, entries(s, marker)...)}
		}
	}
	two := func(first func(s *hostileSentinel) []hostileEntry, second func(s *hostileSentinel, marker string) []hostileEntry) layersFunc {
		return func(t *testing.T, s *hostileSentinel, marker string) []images.Layer {
			return []images.Layer{hostileLayer(t, first(s)...), hostileLayer(t, second(s, marker)...)}
		}
	}
	absLink := func(s *hostileSentinel) []hostileEntry { return []hostileEntry{hSymlink("d", s.Dir)} }
	relLink := func(s *hostileSentinel) []hostileEntry { return []hostileEntry{hSymlink("d", hostileUp+s.Rel())} }

	cases := []struct {
		name    string
		layers  layersFunc
		outcome hostileOutcome
		// inside is where, relative to the rootfs, the marker file must be
		// when the pull succeeds ("" for anywhere in the image, nil when
		// the layers write no marker).
		inside func(s *hostileSentinel) string
	}{
		{
			name: "dotdot file",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hFile(hostileUp+s.Rel()+"/evil", m)}
			}),
		},
		{
			name: "dotdot overwrite passwd",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hFile(hostileUp+s.Rel()+"/passwd", "evil::0:0::/:/bin/sh\n")}
			}),
		},
		{
			name: "dotdot dir",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hDir(hostileUp + s.Rel() + "/evildir")}
			}),
		},
		{
			name: "dotdot after a real dir",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hDir("a"), hFile("a/"+hostileUp+s.Rel()+"/evil", m)}
			}),
		},
		{
			name: "absolute name",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hFile(s.Dir+"/evil", m)}
			}),
			outcome: hostileConfine,
			inside:  func(s *hostileSentinel) string { return s.Rel() + "/evil" },
		},
		{
			name: "absolute symlink parent",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hSymlink("l", s.Dir), hFile("l/evil", m)}
			}),
		},
		{
			name: "absolute symlink parent overwrite passwd",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hSymlink("l", s.Dir), hFile("l/passwd", "evil::0:0::/:/bin/sh\n")}
			}),
		},
		{
			name: "relative symlink parent climbing out",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hSymlink("l", hostileUp+s.Rel()), hFile("l/evil", m)}
			}),
		},
		{
			name: "symlink chain parent",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hSymlink("b", s.Dir), hSymlink("a", "b"), hFile("a/evil", m)}
			}),
		},
		{
			name: "symlink parent of a dir entry",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hSymlink("l", s.Dir), hDir("l/evildir")}
			}),
		},
		{
			name: "symlink parent of a symlink entry",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hSymlink("l", s.Dir), hSymlink("l/evil-link", "/etc/shadow")}
			}),
		},
		{
			name: "hardlink to dotdot target",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hHardlink("evil-link", hostileUp+s.Rel()+"/target")}
			}),
		},
		{
			name: "hardlink to absolute target",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hHardlink("evil-link", s.Dir+"/passwd")}
			}),
		},
		{
			name: "hardlink target through symlinked parent",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hSymlink("l", s.Dir), hHardlink("evil-link", "l/passwd")}
			}),
		},
		{
			name: "hardlink name through symlinked parent",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hFile("x", m), hSymlink("l", s.Dir), hHardlink("l/evil", "x")}
			}),
		},
		{
			name: "whiteout through symlinked parent",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hSymlink("l", s.Dir), hFile("l/.wh.passwd", "")}
			}),
			outcome: hostileEither,
		},
		{
			name: "opaque whiteout through symlinked parent",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hSymlink("l", s.Dir), hFile("l/.wh..wh..opq", "")}
			}),
			outcome: hostileEither,
		},
		{
			name: "dotdot whiteout",
			layers: one(func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hFile(hostileUp+s.Rel()+"/.wh.passwd", "")}
			}),
		},
		{
			name: "symlinked parent from lower layer",
			layers: two(absLink, func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hFile("d/evil", m)}
			}),
			outcome: hostileEither,
			inside:  func(*hostileSentinel) string { return "" },
		},
		{
			name: "relative symlinked parent from lower layer",
			layers: two(relLink, func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hFile("d/evil", m)}
			}),
			outcome: hostileEither,
			inside:  func(*hostileSentinel) string { return "" },
		},
		{
			name: "whiteout through symlinked parent from lower layer",
			layers: two(absLink, func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hFile("d/.wh.passwd", "")}
			}),
			outcome: hostileEither,
		},
		{
			name: "opaque whiteout through symlinked parent from lower layer",
			layers: two(absLink, func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hFile("d/.wh..wh..opq", "")}
			}),
			outcome: hostileEither,
		},
		{
			name: "hardlink through symlinked parent from lower layer",
			layers: two(absLink, func(s *hostileSentinel, m string) []hostileEntry {
				return []hostileEntry{hHardlink("evil-link", "d/target")}
			}),
		},
	}

	for _, snap := range []string{"overlayfs", "native"} {
		t.Run(snap, func(t *testing.T) {
			d, reg := hostileDaemon(t, framework.WithConfig("image.snapshotter", snap))
			hostileHealthy(t, d, reg, "warmup")
			// "first": the hostile layers are the image's bottom layers
			// (whiteouts are deletions); "on-base": they go on the busybox
			// layer already unpacked (overlayfs whiteouts are devices).
			for _, place := range []string{"first", "on-base"} {
				for _, tc := range cases {
					name := strings.ReplaceAll(tc.name, " ", "-") + "-" + place
					t.Run(name, func(t *testing.T) {
						s := newHostileSentinel(t)
						marker := "hostile-marker-" + framework.RandomID(8) + "\n"
						opts := []images.Option{images.WithLayers(tc.layers(t, s, marker)...)}
						if place == "first" {
							opts = append(opts, images.WithoutBase())
						}
						img := busybox(t, opts...)
						repo := "hostile/" + snap + "-" + name
						hostilePushBlobs(reg, repo, img)
						hostilePushManifest(t, reg, repo, "v1", img, nil)
						ref := hostileRef(reg, repo, "v1")

						idsBefore := hostileImageIDs(t, d)
						leaksBefore := hostileStoreLeaks(t, d)
						pulled := hostilePull(t, d, ref)
						got, err := pulled.ref, pulled.err
						// Whatever the outcome, the host is untouched and no
						// host content was copied into the daemon's store.
						s.check(t)
						hostileNoHostContent(t, d, s)

						switch {
						case err != nil && tc.outcome == hostileConfine:
							t.Errorf("PullImage(%q) = %v; want success with the entry confined to the image (outcome %s)", ref, err, tc.outcome)
						case err != nil:
							t.Logf("refused: %s", status.Convert(err).Message())
							hostileRefused(t, ref, pulled, hostileUnsafeCauses)
							hostileNoImage(t, d, ref, idsBefore)
						case tc.outcome == hostileRefuse:
							t.Errorf("PullImage(%q) succeeded (image %s); want a refusal of the escaping entry", ref, got)
						}
						if err == nil {
							hostileCheckConfined(t, d, s, marker, tc.inside)
							removeImage(t, d, ref)
						}
						hostileCheckNoStoreLeaks(t, d, leaksBefore)
						s.check(t)
						hostileHealthy(t, d, reg, snap+"-"+name)
					})
				}
			}
		})
	}
}

// hostileNoHostContent fails if the sentinel's secret was copied anywhere
// below the daemon's root (a copy or unpack that followed a symlink to the
// host).
func hostileNoHostContent(t *testing.T, d *framework.Daemon, s *hostileSentinel) {
	t.Helper()
	if leaked := hostileFindContent(t, d.Root, s.Secret); len(leaked) > 0 {
		t.Errorf("host file %s/secret was copied into the daemon's store: %q", s.Dir, leaked)
	}
}

// hostileCheckConfined checks a hostile image that was pulled: the marker
// file of its layers is inside a snapshot at /<inside> (nothing to check
// when inside is nil).
func hostileCheckConfined(t *testing.T, d *framework.Daemon, s *hostileSentinel, marker string, inside func(*hostileSentinel) string) {
	t.Helper()
	snaps := filepath.Join(d.Root, "snapshots")
	if inside == nil {
		return
	}
	want := inside(s)
	found := hostileFindContent(t, snaps, marker)
	if want == "" {
		if len(found) == 0 {
			t.Errorf("confined entry: the layer's file is nowhere in the daemon's snapshots")
		}
		return
	}
	if !slices.ContainsFunc(found, func(p string) bool { return strings.HasSuffix(p, "/fs/"+want) }) {
		t.Errorf("confined entry: want the layer's file at /%s inside a snapshot, found it at %q", want, found)
	}
}

// ---------------------------------------------------------------------------
// TestHostileContainerPaths: an image whose paths are symlinks to the host
// must not steer the runtime's mounts, working directory or user lookup
// outside the rootfs.

func TestHostileContainerPaths(t *testing.T) {
	env := framework.NewPodEnv(t)
	d := env.Daemon
	s := newHostileSentinel(t)

	paths, err := images.NewLayer().
		Symlink("data", s.Dir).
		Symlink("rel", hostileUp+s.Rel()).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	env.Push(t, "hostile-paths:v1", busybox(t, images.WithLayers(paths)))
	d.Pull(t, "hostile-paths:v1")

	userImage := func(ref, target string) {
		l, err := images.NewLayer().
			Symlink("etc/passwd", target+"/passwd").
			Symlink("etc/group", target+"/group").
			Build()
		if err != nil {
			t.Fatal(err)
		}
		env.Push(t, ref, busybox(t, images.WithLayers(l), images.WithUser("hostileuser")))
		d.Pull(t, ref)
	}
	userImage("hostile-user-abs:v1", s.Dir)
	userImage("hostile-user-rel:v1", "../"+hostileUp+s.Rel())

	for _, tc := range []struct {
		name  string
		image string
		// mountAt is a CRI mount's container_path ("" for none); the
		// container touches <mountAt>/x.
		mountAt string
		// workdir is the CRI working_dir ("" for the image's).
		workdir string
		// user: the image's user lives only in the host's sentinel passwd.
		user bool
	}{
		{name: "mount below absolute symlink", image: "hostile-paths:v1", mountAt: "/data/sub"},
		{name: "mount below relative symlink", image: "hostile-paths:v1", mountAt: "/rel/sub"},
		{name: "mount onto absolute symlink", image: "hostile-paths:v1", mountAt: "/data"},
		{name: "mount deep below absolute symlink", image: "hostile-paths:v1", mountAt: "/data/sub/deeper"},
		{name: "workdir below absolute symlink", image: "hostile-paths:v1", workdir: "/data/wd"},
		{name: "workdir below relative symlink", image: "hostile-paths:v1", workdir: "/rel/wd"},
		{name: "passwd absolute symlink", image: "hostile-user-abs:v1", user: true},
		{name: "passwd relative symlink", image: "hostile-user-rel:v1", user: true},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			before := d.Leaks(t)
			hostDir := t.TempDir()
			script := "sleep 100000"
			var names []string // what a refusal must name
			switch {
			case tc.mountAt != "":
				script = "touch " + tc.mountAt + "/x && sleep 100000"
				names = []string{tc.mountAt}
			case tc.workdir != "":
				script = "touch x && sleep 100000"
				// runc names the component it could not create: the
				// symlink itself.
				names = []string{tc.workdir, "/" + strings.Split(tc.workdir, "/")[1]}
			case tc.user:
				names = []string{"hostileuser"}
			}
			cfg := framework.Shell("hostile", tc.image, script)
			if tc.mountAt != "" {
				cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: tc.mountAt, HostPath: hostDir}}
			}
			cfg.WorkingDir = tc.workdir

			pc := framework.PodConfig("hostile")
			pod := d.RunPod(t, pc)
			ctx, cancel := context.WithTimeout(testCtx(t), 2*time.Minute)
			defer cancel()
			id, err := d.Runtime().CreateContainer(ctx, pod, cfg, pc)
			step := "CreateContainer"
			if err == nil {
				t.Cleanup(func() {
					if err := d.Runtime().RemoveContainer(context.Background(), id); err != nil && status.Code(err) != codes.NotFound {
						t.Errorf("cleanup: RemoveContainer: %v", err)
					}
				})
				step = "StartContainer"
				err = d.Runtime().StartContainer(ctx, id)
			}
			s.check(t)
			if err != nil {
				// Refused: clearly, and for this container's own reason.
				msg := status.Convert(err).Message()
				if c := status.Code(err); c == codes.OK || c == codes.NotFound || c == codes.AlreadyExists {
					t.Errorf("%s: code %s (%q)", step, c, msg)
				}
				if !slices.ContainsFunc(names, func(w string) bool { return strings.Contains(msg, w) }) {
					t.Errorf("%s refused the container with %q, which names none of %q", step, msg, names)
				}
				t.Logf("%s refused: %v", step, err)
			} else {
				hostileCheckRunning(t, d, id, s, hostDir, tc.mountAt, tc.workdir, tc.user)
			}
			// Stop and remove now, so what is left can be checked.
			d.RemovePodAtCleanup(t, pod)
			d.CheckNoLeaks(t, before, 30*time.Second)
			s.check(t)
		})
	}
	// Still healthy: a fresh image pulls and runs.
	env.PushImage(t, "hostile-healthy:v1", images.WithLabels(map[string]string{"e2e-hostile": "paths"}))
	pc := framework.PodConfig("hostile-healthy")
	pod := d.RunPod(t, pc)
	id := d.CreateStarted(t, pod, framework.ContainerConfig("ok", "hostile-healthy:v1", "sleep", "100000"), pc)
	if out := d.ExecOK(t, id, "echo", "ok"); out != "ok\n" {
		t.Errorf("exec in a healthy container: %q", out)
	}
	s.check(t)
}

// hostileCheckRunning checks a container the daemon accepted: the CRI
// mount (or working directory) is inside the rootfs where the container
// sees it, the image user was not looked up on the host, and nothing is
// mounted on the host sentinel while it runs.
func hostileCheckRunning(t *testing.T, d *framework.Daemon, id string, s *hostileSentinel, hostDir, mountAt, workdir string, user bool) {
	t.Helper()
	switch {
	case mountAt != "":
		// touch <mountAt>/x went through the bind mount: the bind is
		// where the container sees mountAt, and the host file is in the
		// volume, not in the sentinel.
		framework.Eventually(t, 30*time.Second, func() (bool, string) {
			if _, err := os.Stat(filepath.Join(hostDir, "x")); err == nil {
				return true, ""
			}
			st, err := d.Runtime().ContainerStatus(context.Background(), id, false)
			return false, fmt.Sprintf("%s/x not created through the mount at %s (container %v, %v)", hostDir, mountAt, st.GetStatus(), err)
		})
		hostileCheckBindInRootfs(t, d, id, hostDir)
	case workdir != "":
		framework.Eventually(t, 30*time.Second, func() (bool, string) {
			r := d.Exec(t, id, 10*time.Second, "sh", "-c", "pwd && test -f x")
			return r.ExitCode == 0 && strings.TrimSpace(strings.Split(r.Stdout, "\n")[0]) == workdir,
				fmt.Sprintf("pwd/test -f x: exit %d, stdout %q, stderr %q; want cwd %s holding x", r.ExitCode, r.Stdout, r.Stderr, workdir)
		})
	case user:
		out := strings.TrimSpace(d.ExecOK(t, id, "id", "-u"))
		if out == "4242" {
			t.Errorf("container runs as uid 4242: the image's user was looked up in the host's %s/passwd", s.Dir)
		}
		t.Logf("image user hostileuser resolved to uid %s", out)
	}
	s.check(t)
}

// hostileCheckBindInRootfs finds the bind mount of hostDir in the
// container's mountinfo and checks that its mount point exists as a
// directory in the rootfs's overlayfs upper layer on the host: the runtime
// resolved the target inside the rootfs (where the container's symlinks
// lead inside its own root), not on the host.
func hostileCheckBindInRootfs(t *testing.T, d *framework.Daemon, id, hostDir string) {
	t.Helper()
	info := d.ExecOK(t, id, "cat", "/proc/self/mountinfo")
	var target, upper string
	for _, line := range strings.Split(info, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		if fields[3] == hostDir {
			target = fields[4]
		}
		if fields[4] == "/" {
			for _, opt := range strings.Split(line[strings.Index(line, " - "):], ",") {
				if v, ok := strings.CutPrefix(opt, "upperdir="); ok {
					upper = strings.Fields(v)[0]
				}
			}
		}
	}
	if target == "" {
		t.Fatalf("no mount of %s in the container's mountinfo:\n%s", hostDir, info)
	}
	t.Logf("bind of %s is at %s in the container", hostDir, target)
	if upper == "" {
		if d.Snapshotter(t) == "overlayfs" {
			t.Fatalf("the container's root is not an overlay with an upperdir although the daemon runs overlayfs:\n%s", info)
		}
		return // native: no upper layer to look in
	}
	if st, err := os.Lstat(filepath.Join(upper, target)); err != nil || !st.IsDir() {
		t.Errorf("mount target %s is not a directory in the rootfs upper layer %s (%v): the bind was not resolved inside the rootfs", target, upper, err)
	}
}
