//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

// imagesCLI runs `cri-runtimed --config <d's> images args...`.
func imagesCLI(t *testing.T, d *framework.Daemon, args ...string) (string, int) {
	t.Helper()
	out, code, err := framework.RunCLI(testCtx(t), append([]string{"--config", d.ConfigPath, "images"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out, code
}

func mustImagesCLI(t *testing.T, d *framework.Daemon, args ...string) string {
	t.Helper()
	out, code := imagesCLI(t, d, args...)
	if code != 0 {
		t.Fatalf("images %v: exit %d: %s", args, code, out)
	}
	return out
}

// runEcho runs `echo word` from image in a new pod and returns its output.
func runEcho(t *testing.T, d *framework.Daemon, image, word string) string {
	t.Helper()
	pc := framework.PodConfig("archive-" + framework.RandomID(6))
	st, out := runToExit(t, d, pc, framework.ContainerConfig("echo", image, "echo", word))
	if st.ExitCode != 0 {
		t.Fatalf("container from %s exited %d", image, st.ExitCode)
	}
	return strings.TrimSpace(out)
}

// TestImagesExportImportRun is the operator's round trip: export a
// pulled image with the CLI while the daemon runs, remove it, import the
// archive, and the image is back under its names, listed by CRI and
// `images ls`, and runs a container.
func TestImagesExportImportRun(t *testing.T) {
	env := framework.NewPodEnv(t)
	d := env.Daemon
	img := env.PushImage(t, "archived:v1", images.WithLabels(map[string]string{"e2e": "archive"}))
	file := filepath.Join(t.TempDir(), "archived.tar")
	mustImagesCLI(t, d, "export", file, "archived:v1")
	removeImage(t, d, img.ID().String())
	if imageStatus(t, d, "archived:v1") != nil {
		t.Fatal("image still there after removal")
	}
	out := mustImagesCLI(t, d, "import", file)
	if !strings.Contains(out, "docker.io/library/archived:v1") || !strings.Contains(out, img.ID().Encoded()[:12]) {
		t.Fatalf("import said %q", out)
	}
	got := mustStatus(t, d, "archived:v1")
	checkImage(t, got, img.ID().String(), []string{"docker.io/library/archived:v1"}, []string{"docker.io/library/archived@" + img.Digest().String()})
	if findImage(listImages(t, d, nil), img.ID().String()) == nil {
		t.Fatal("imported image not in ListImages")
	}
	if ls := mustImagesCLI(t, d, "ls"); !strings.Contains(ls, "docker.io/library/archived:v1") {
		t.Fatalf("images ls: %s", ls)
	}
	if got := runEcho(t, d, "archived:v1", "imported"); got != "imported" {
		t.Fatalf("container printed %q", got)
	}
}

// dockerSaveArchive is img in the legacy `docker save` layout (one
// directory per layer with an uncompressed layer.tar, <config>.json,
// manifest.json), gzip-compressed as `docker save | gzip` writes it.
func dockerSaveArchive(t *testing.T, tags []string, imgs ...*images.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	put := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	type entry struct {
		Config           string
		RepoTags, Layers []string
	}
	var manifest []entry
	for i, img := range imgs {
		e := entry{Config: img.ID().Encoded() + ".json", RepoTags: []string{tags[i]}}
		for _, l := range img.Layers {
			data := l.Data
			if l.Compression == images.Gzip {
				zr, err := gzip.NewReader(bytes.NewReader(l.Data))
				if err != nil {
					t.Fatal(err)
				}
				if data, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			name := l.DiffID.Encoded() + "/layer.tar"
			put(name, data)
			e.Layers = append(e.Layers, name)
		}
		put(e.Config, img.ConfigBlob.Data)
		manifest = append(manifest, e)
	}
	mb, _ := json.Marshal(manifest)
	put("manifest.json", mb)
	tw.Close()
	zw.Close()
	return b.Bytes()
}

// TestImagesImportDockerSave imports a gzipped `docker save` archive of
// two images, and each runs a container.
func TestImagesImportDockerSave(t *testing.T) {
	env := framework.NewPodEnv(t)
	d := env.Daemon
	one := busybox(t, images.WithLabels(map[string]string{"n": "1"}))
	extra, err := images.NewLayer().Dir("etc", 0o755).File("etc/two", []byte("two\n"), 0o644).Build()
	if err != nil {
		t.Fatal(err)
	}
	two := busybox(t, images.WithLayers(extra))
	file := filepath.Join(t.TempDir(), "saved.tar.gz")
	if err := os.WriteFile(file, dockerSaveArchive(t, []string{"saved:one", "example.com/saved:two"}, one, two), 0o644); err != nil {
		t.Fatal(err)
	}
	mustImagesCLI(t, d, "import", file)
	checkImage(t, mustStatus(t, d, "saved:one"), one.ID().String(), []string{"docker.io/library/saved:one"}, nil)
	checkImage(t, mustStatus(t, d, "example.com/saved:two"), two.ID().String(), []string{"example.com/saved:two"}, nil)
	pc := framework.PodConfig("docker-save")
	_, out := runToExit(t, d, pc, framework.ContainerConfig("cat", "example.com/saved:two", "cat", "/etc/two"))
	if strings.TrimSpace(out) != "two" {
		t.Fatalf("cat /etc/two printed %q", out)
	}
}

// ociLayout writes an OCI image layout tar of imgs named by refs.
func ociLayout(t *testing.T, refs []string, imgs ...*images.Image) []byte {
	return ociLayoutWithout(t, "", refs, imgs...)
}

// ociLayoutWithout is ociLayout without the blob skip.
func ociLayoutWithout(t *testing.T, skip digest.Digest, refs []string, imgs ...*images.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	seen := map[string]bool{}
	if skip != "" {
		seen["blobs/sha256/"+skip.Encoded()] = true
	}
	put := func(name string, data []byte) {
		if seen[name] {
			return
		}
		seen[name] = true
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex}
	idx.SchemaVersion = 2
	for i, img := range imgs {
		for _, bl := range append(img.Blobs(), img.Manifest()) {
			put("blobs/sha256/"+bl.Digest.Encoded(), bl.Data)
		}
		desc := img.Manifest().Descriptor()
		desc.Annotations = map[string]string{"io.containerd.image.name": refs[i]}
		idx.Manifests = append(idx.Manifests, desc)
	}
	ib, _ := json.Marshal(idx)
	put("index.json", ib)
	tw.Close()
	return b.Bytes()
}

// TestImagesImportMultiImage imports an OCI layout naming two images,
// from stdin: both are listed by CRI.
func TestImagesImportMultiImage(t *testing.T) {
	env := framework.NewEnv(t)
	d := env.Daemon
	one := busybox(t, images.WithLabels(map[string]string{"n": "1"}))
	two := busybox(t, images.WithLabels(map[string]string{"n": "2"}))
	bin, err := framework.DaemonBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(testCtx(t), bin, "--config", d.ConfigPath, "images", "import", "-")
	cmd.Stdin = bytes.NewReader(ociLayout(t, []string{"multi:one", "registry.k8s.io/multi:two"}, one, two))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("import from stdin: %v: %s", err, out)
	}
	list := listImages(t, d, nil)
	for _, img := range []*images.Image{one, two} {
		if findImage(list, img.ID().String()) == nil {
			t.Errorf("image %s not listed after import", img.ID())
		}
	}
	checkImage(t, mustStatus(t, d, "registry.k8s.io/multi:two"), two.ID().String(), []string{"registry.k8s.io/multi:two"}, []string{"registry.k8s.io/multi@" + two.Digest().String()})
}

// blobCount is how many blobs the daemon's content store holds.
func blobCount(t *testing.T, d *framework.Daemon) int {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(d.Root, "content", "blobs", "sha256"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(es)
}

// TestImagesImportBadArchives: each broken archive fails the CLI with a
// line that says why; no image is recorded and no blob stays.
func TestImagesImportBadArchives(t *testing.T) {
	env := framework.NewEnv(t)
	d := env.Daemon
	img := busybox(t, images.WithLabels(map[string]string{"bad": "archive"}))
	good := ociLayout(t, []string{"bad:1"}, img)
	withEntry := func(name string, data []byte) []byte {
		var b bytes.Buffer
		b.Write(good[:len(good)-1024]) // before the end-of-archive blocks
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
		tw.Close()
		return b.Bytes()
	}
	corrupt := bytes.Clone(good)
	layer := img.Layers[0].Data
	i := bytes.Index(corrupt, layer[:512])
	if i < 0 {
		t.Fatal("layer not found in the archive")
	}
	corrupt[i+len(layer)/2] ^= 0xff
	noLayer := ociLayoutWithout(t, img.Layers[0].Digest, []string{"bad:1"}, img)
	before := blobCount(t, d)
	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"path traversal", withEntry("../../../tmp/escaped", []byte("x")), "points outside the archive"},
		{"wrong digest", corrupt, "expected sha256:" + img.Layers[0].Digest.Encoded()},
		{"truncated", good[:len(good)*2/3], "truncated"},
		{"missing blob", noLayer, "is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "bad.tar")
			os.WriteFile(file, tc.archive, 0o644)
			out, code := imagesCLI(t, d, "import", file)
			if code != 1 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, output %q; want exit 1 saying %q", code, out, tc.want)
			}
			if got := imageStatus(t, d, "bad:1"); got != nil {
				t.Fatalf("a failed import recorded %s", got.Id)
			}
			// The GC pass the failure scheduled takes what the import
			// stored (and the next case finds none of it: a blob already
			// in the store is not read again from an archive).
			deadline := time.Now().Add(framework.Slow(20 * time.Second))
			for blobCount(t, d) != before {
				if time.Now().After(deadline) {
					t.Fatalf("%d blobs left by a failed import", blobCount(t, d)-before)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
	if _, err := os.Stat("/tmp/escaped"); err == nil {
		t.Fatal("a traversal entry wrote /tmp/escaped")
	}
}

// TestImagesAdminSocketRootOnly: the admin socket is 0600 in the state
// dir, and a user other than the daemon's cannot use it.
func TestImagesAdminSocketRootOnly(t *testing.T) {
	d := framework.NewDaemon(t)
	sock := filepath.Join(d.State, "admin.sock")
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode %v", fi.Mode())
	}
	mustImagesCLI(t, d, "ls")
	// Another user, with read access to the binary and the config.
	os.Chmod(d.Dir, 0o755)
	os.Chmod(d.ConfigPath, 0o644)
	dir, err := os.MkdirTemp("", "e2e-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	bin, _ := framework.DaemonBinary()
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(dir, "cri-runtimed")
	if err := os.WriteFile(own, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(testCtx(t), own, "--config", d.ConfigPath, "images", "ls")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "permission denied") {
		t.Fatalf("images ls as nobody: %v: %s", err, out)
	}
}
