//go:build e2e

package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/test/e2e/framework"
	"github.com/cri-runtimed/cri-runtimed/test/e2e/images"
)

// pushDataImage pushes and pulls an image that holds data, not a program:
// data/hello, data/nested/deep, a script bin/run.sh and a setuid copy of
// it, under ref and each of tags. It returns the image ID.
func pushDataImage(t *testing.T, env *framework.Env, ref string, tags ...string) string {
	t.Helper()
	layer, err := images.NewLayer().
		Dir("data", 0o755).File("data/hello", []byte("hello from the image\n"), 0o644).
		Dir("data/nested", 0o755).File("data/nested/deep", []byte("deep\n"), 0o644).
		Dir("bin", 0o755).File("bin/run.sh", []byte("#!/bin/sh\necho ran\n"), 0o755).
		File("top", []byte("top level\n"), 0o644).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	img := env.PushImage(t, ref, images.WithoutBase(), images.WithLayers(layer))
	for _, tag := range tags {
		env.Push(t, tag, img)
		env.Daemon.Pull(t, tag)
	}
	return img.ID().String()
}

func imageMount(path, ref, sub string) *runtimeapi.Mount {
	return &runtimeapi.Mount{ContainerPath: path, Image: &runtimeapi.ImageSpec{Image: ref}, ImageSubPath: sub, Readonly: true}
}

// TestImageVolumes (KEP-4639): Mount.image mounts a pulled image read-only
// and noexec into the container, whole or at image_sub_path; the image is
// pinned and its removal refused while a container mounts it; removing
// the container leaves no mount and no snapshot, also after the daemon
// was killed in between.
func TestImageVolumes(t *testing.T) {
	env, d := podEnv(t)
	const ref, other = "voldata:v1", "voldata:other"
	imageID := pushDataImage(t, env, ref, other)
	pc := framework.PodConfig("imagevol")
	pod := d.RunPod(t, pc)
	snapsBefore := len(d.SnapshotDirs())

	cfg := framework.ContainerConfig("vol", bb, "sleep", "100000")
	cfg.Mounts = []*runtimeapi.Mount{imageMount("/vol", ref, ""), imageMount("/sub", imageID, "data/nested")}
	id := d.CreateStarted(t, pod, cfg, pc)

	if out := d.ExecOK(t, id, "cat", "/vol/data/hello"); out != "hello from the image\n" {
		t.Errorf("/vol/data/hello = %q", out)
	}
	if out := d.ExecOK(t, id, "ls", "/sub"); strings.Fields(out)[0] != "deep" || len(strings.Fields(out)) != 1 {
		t.Errorf("the sub path mount holds %q, want only deep", out)
	}
	if r := d.Exec(t, id, 10*time.Second, "touch", "/vol/new"); r.ExitCode == 0 || !strings.Contains(string(r.Stderr), "Read-only") {
		t.Errorf("write into the image volume: exit %d %q, want a read-only file system", r.ExitCode, r.Stderr)
	}
	if r := d.Exec(t, id, 10*time.Second, "/vol/bin/run.sh"); r.ExitCode == 0 || !strings.Contains(string(r.Stderr), "denied") {
		t.Errorf("running a program of the image volume: exit %d %q %q, want permission denied (noexec)", r.ExitCode, r.Stdout, r.Stderr)
	}
	if opts := mountOptions(t, d, id, "/vol"); !slices.Contains(opts, "ro") || !slices.Contains(opts, "noexec") || !slices.Contains(opts, "nosuid") || !slices.Contains(opts, "nodev") {
		t.Errorf("/vol mount options %v, want ro, noexec, nosuid, nodev", opts)
	}
	st := d.ContainerStatus(t, id).Status
	if len(st.Mounts) != 2 || st.Mounts[0].GetImage().GetImage() != ref || st.Mounts[1].GetImageSubPath() != "data/nested" {
		t.Errorf("status mounts %v, want the image mounts as requested", st.Mounts)
	}

	// In use: pinned, and not removable.
	img, err := d.Images().ImageStatus(testCtx(t), &runtimeapi.ImageSpec{Image: ref}, false)
	if err != nil || !img.GetImage().GetPinned() {
		t.Errorf("ImageStatus of a mounted image: pinned=%v, %v; want pinned", img.GetImage().GetPinned(), err)
	}
	// Removing one of its two tags only untags it: the image stays,
	// mounted and known by its ID and other tag. Its last tag and its ID
	// are refused.
	if err := d.Images().RemoveImage(testCtx(t), &runtimeapi.ImageSpec{Image: other}); err != nil {
		t.Errorf("RemoveImage of one tag of a mounted image: %v", err)
	}
	img, err = d.Images().ImageStatus(testCtx(t), &runtimeapi.ImageSpec{Image: imageID}, false)
	if err != nil || !slices.Equal(img.GetImage().GetRepoTags(), []string{"docker.io/library/" + ref}) {
		t.Errorf("after untagging %s: image %v, %v; want the image with only %s", other, img.GetImage(), err, ref)
	}
	err = d.Images().RemoveImage(testCtx(t), &runtimeapi.ImageSpec{Image: ref})
	wantCode(t, "RemoveImage of a mounted image", err, codes.FailedPrecondition, id)
	err = d.Images().RemoveImage(testCtx(t), &runtimeapi.ImageSpec{Image: imageID})
	wantCode(t, "RemoveImage of a mounted image by ID", err, codes.FailedPrecondition, id)

	// A crash leaves the volume mounted for the running container; the
	// restarted daemon still knows it and cleans it up at removal.
	d.Kill(t)
	d.Start(t)
	if out := d.ExecOK(t, id, "cat", "/sub/deep"); out != "deep\n" {
		t.Errorf("after a daemon crash: /sub/deep = %q", out)
	}
	err = d.Images().RemoveImage(testCtx(t), &runtimeapi.ImageSpec{Image: ref})
	wantCode(t, "RemoveImage of a mounted image after a restart", err, codes.FailedPrecondition, id)

	if err := d.Runtime().StopContainer(testCtx(t), id, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Runtime().RemoveContainer(testCtx(t), id); err != nil {
		t.Fatal(err)
	}
	if ms, _ := framework.Mounts(d.State); slices.ContainsFunc(ms, func(m string) bool { return strings.Contains(m, "imagevolumes") }) {
		t.Errorf("image volume mounts left after removal: %v", ms)
	}
	if n := len(d.SnapshotDirs()); n != snapsBefore {
		t.Errorf("%d snapshot directories after removal, %d before the container", n, snapsBefore)
	}
	if err := d.Images().RemoveImage(testCtx(t), &runtimeapi.ImageSpec{Image: ref}); err != nil {
		t.Errorf("RemoveImage after the container was removed: %v", err)
	}

	// Errors kubelet sees.
	for _, tc := range []struct {
		name string
		m    *runtimeapi.Mount
		code codes.Code
		want string
	}{
		{"image not pulled", imageMount("/vol", "absent:v1", ""), codes.NotFound, "absent"},
		{"sub path missing", imageMount("/vol", bb, "no/such/dir"), codes.InvalidArgument, "no/such/dir"},
		{"sub path escaping", imageMount("/vol", bb, "../../../etc"), codes.InvalidArgument, "image_sub_path"},
	} {
		c := framework.ContainerConfig("bad", bb, "sleep", "1")
		c.Mounts = []*runtimeapi.Mount{tc.m}
		_, err := d.Runtime().CreateContainer(testCtx(t), pod, c, pc)
		wantCode(t, tc.name, err, tc.code, tc.want)
	}
	if ms, _ := framework.Mounts(d.State); slices.ContainsFunc(ms, func(m string) bool { return strings.Contains(m, "imagevolumes") }) {
		t.Errorf("image volume mounts left after failed creations: %v", ms)
	}
}

// TestImageVolumeUserNamespace: in a pod with a user namespace the image
// volume is idmapped like the rootfs: its root-owned files belong to the
// pod's root.
func TestImageVolumeUserNamespace(t *testing.T) {
	env, d := podEnv(t)
	parityTraversable(t, d.State)
	const ref = "voldata:v1"
	pushDataImage(t, env, ref)
	mapping := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1000, Length: 100000}}
	pc := framework.PodConfig("imagevol-userns", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: mapping, Gids: mapping}
	})
	pod := d.RunPod(t, pc)
	cfg := framework.ContainerConfig("vol", bb, "sleep", "100000")
	cfg.Mounts = []*runtimeapi.Mount{imageMount("/vol", ref, "data")}
	id := d.CreateStarted(t, pod, cfg, pc)
	if out := d.ExecOK(t, id, "stat", "-c", "%u:%g", "/vol/hello"); strings.TrimSpace(out) != "0:0" {
		t.Errorf("/vol/hello in the user namespace is owned by %q, want 0:0 (idmapped)", out)
	}
	if out := d.ExecOK(t, id, "cat", "/vol/hello"); out != "hello from the image\n" {
		t.Errorf("/vol/hello = %q", out)
	}
	if err := d.Runtime().RemoveContainer(testCtx(t), id); err != nil {
		t.Fatal(err)
	}
	if ms, _ := framework.Mounts(d.State); slices.ContainsFunc(ms, func(m string) bool { return strings.Contains(m, "imagevolumes") }) {
		t.Errorf("image volume mounts left after removal: %v", ms)
	}
}

// mountOptions are the per-mount options of path in container id's mount
// namespace.
func mountOptions(t *testing.T, d *framework.Daemon, id, path string) []string {
	t.Helper()
	for _, l := range strings.Split(d.ExecOK(t, id, "cat", "/proc/self/mountinfo"), "\n") {
		f := strings.Fields(l)
		if len(f) > 5 && f[4] == path {
			return strings.Split(f[5], ",")
		}
	}
	t.Fatalf("%s is not a mount point in container %s", path, id)
	return nil
}

// pushDataArtifact pushes an OCI artifact (artifactType set, the empty
// config) as oras would: a tar+gzip layer of a directory (with a 0755
// script), a JSON file and
// a script as plain file layers named by their titles, and a file layer
// without a title. It returns the artifact.
func pushDataArtifact(t *testing.T, env *framework.Env, ref string) *images.OCIArtifact {
	t.Helper()
	bundle, err := images.NewLayer().
		Dir("model", 0o755).File("model/weights.bin", []byte("0123456789"), 0o644).
		File("model/README", []byte("a model\n"), 0o644).
		File("model/tool.sh", []byte("#!/bin/sh\necho ran\n"), 0o755).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	a, err := images.NewArtifact("application/vnd.cri-runtimed.test.data.v1",
		images.ArtifactLayer{Blob: images.LayerBlob("application/vnd.cri-runtimed.test.bundle.v1.tar+gzip", bundle)},
		images.ArtifactLayer{Blob: images.FileBlob("application/json", []byte(`{"threshold": 3}`+"\n")), Title: "config.json"},
		images.ArtifactLayer{Blob: images.FileBlob("text/x-shellscript", []byte("#!/bin/sh\necho ran\n")), Title: "bin/run.sh"},
		images.ArtifactLayer{Blob: images.FileBlob("application/octet-stream", []byte("untitled\n"))},
	)
	if err != nil {
		t.Fatal(err)
	}
	env.Push(t, ref, a)
	env.Daemon.Pull(t, ref)
	return a
}

// TestImageVolumeArtifact (KEP-4639 with an OCI artifact): an artifact
// pulls (its ID is its manifest digest), is listed, and mounts as an image
// volume: its tar layers unpacked, its other layers as files named by
// their titles (by digest without one), read-only and noexec, whole or at
// image_sub_path; it is pinned and not removable while mounted, also
// after a daemon crash; removal leaves nothing; an artifact cannot be a
// container's image.
func TestImageVolumeArtifact(t *testing.T) {
	env, d := podEnv(t)
	const ref = "volartifact:v1"
	a := pushDataArtifact(t, env, ref)
	id := a.Digest().String()
	st, err := d.Images().ImageStatus(testCtx(t), &runtimeapi.ImageSpec{Image: ref}, true)
	if err != nil || st.GetImage().GetId() != id {
		t.Fatalf("ImageStatus of the artifact: %v, %v; want ID %s (its manifest digest)", st.GetImage(), err, id)
	}
	if at, _ := verboseInfo(t, st.GetInfo())["artifactType"].(string); at != "application/vnd.cri-runtimed.test.data.v1" {
		t.Errorf("verbose ImageStatus artifactType = %q", at)
	}
	pc := framework.PodConfig("artifactvol")
	pod := d.RunPod(t, pc)
	snapsBefore := len(d.SnapshotDirs())

	run := framework.ContainerConfig("run-artifact", ref, "sleep", "1")
	_, err = d.Runtime().CreateContainer(testCtx(t), pod, run, pc)
	wantCode(t, "CreateContainer with an artifact as its image", err, codes.FailedPrecondition, "artifact")

	cfg := framework.ContainerConfig("vol", bb, "sleep", "100000")
	cfg.Mounts = []*runtimeapi.Mount{imageMount("/art", ref, ""), imageMount("/model", id, "model")}
	ctr := d.CreateStarted(t, pod, cfg, pc)
	for path, want := range map[string]string{
		"/art/config.json":   `{"threshold": 3}` + "\n",
		"/art/model/README":  "a model\n",
		"/model/weights.bin": "0123456789",
		"/art/sha256-" + a.LayerBlobs[3].Digest.Encoded(): "untitled\n",
	} {
		if out := d.ExecOK(t, ctr, "cat", path); out != want {
			t.Errorf("%s = %q, want %q", path, out, want)
		}
	}
	if r := d.Exec(t, ctr, 10*time.Second, "touch", "/art/new"); r.ExitCode == 0 || !strings.Contains(string(r.Stderr), "Read-only") {
		t.Errorf("write into the artifact volume: exit %d %q, want a read-only file system", r.ExitCode, r.Stderr)
	}
	// tool.sh is 0755 in its tar layer: only noexec stops it.
	if r := d.Exec(t, ctr, 10*time.Second, "/art/model/tool.sh"); r.ExitCode == 0 || !strings.Contains(string(r.Stderr), "denied") {
		t.Errorf("running a program of the artifact volume: exit %d %q %q, want permission denied (noexec)", r.ExitCode, r.Stdout, r.Stderr)
	}
	if out := d.ExecOK(t, ctr, "stat", "-c", "%a", "/art/bin/run.sh"); strings.TrimSpace(out) != "644" {
		t.Errorf("a file layer's mode is %q, want 644", out)
	}
	if opts := mountOptions(t, d, ctr, "/art"); !slices.Contains(opts, "ro") || !slices.Contains(opts, "noexec") || !slices.Contains(opts, "nosuid") || !slices.Contains(opts, "nodev") {
		t.Errorf("/art mount options %v, want ro, noexec, nosuid, nodev", opts)
	}

	img, err := d.Images().ImageStatus(testCtx(t), &runtimeapi.ImageSpec{Image: ref}, false)
	if err != nil || !img.GetImage().GetPinned() {
		t.Errorf("ImageStatus of a mounted artifact: pinned=%v, %v; want pinned", img.GetImage().GetPinned(), err)
	}
	err = d.Images().RemoveImage(testCtx(t), &runtimeapi.ImageSpec{Image: ref})
	wantCode(t, "RemoveImage of a mounted artifact", err, codes.FailedPrecondition, ctr)

	d.Kill(t)
	d.Start(t)
	if out := d.ExecOK(t, ctr, "cat", "/model/README"); out != "a model\n" {
		t.Errorf("after a daemon crash: /model/README = %q", out)
	}
	err = d.Images().RemoveImage(testCtx(t), &runtimeapi.ImageSpec{Image: id})
	wantCode(t, "RemoveImage of a mounted artifact after a restart", err, codes.FailedPrecondition, ctr)

	if err := d.Runtime().StopContainer(testCtx(t), ctr, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Runtime().RemoveContainer(testCtx(t), ctr); err != nil {
		t.Fatal(err)
	}
	if ms, _ := framework.Mounts(d.State); slices.ContainsFunc(ms, func(m string) bool { return strings.Contains(m, "imagevolumes") }) {
		t.Errorf("artifact volume mounts left after removal: %v", ms)
	}
	if n := len(d.SnapshotDirs()); n != snapsBefore {
		t.Errorf("%d snapshot directories after removal, %d before the container", n, snapsBefore)
	}
	if err := d.Images().RemoveImage(testCtx(t), &runtimeapi.ImageSpec{Image: ref}); err != nil {
		t.Errorf("RemoveImage of the artifact after the container was removed: %v", err)
	}
	if st, err := d.Images().ImageStatus(testCtx(t), &runtimeapi.ImageSpec{Image: id}, false); err != nil || st.GetImage() != nil {
		t.Errorf("ImageStatus after removal: %v, %v; want none", st.GetImage(), err)
	}
}
