package userns

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	// The namespace holder is this test binary in pause mode.
	_ "github.com/cri-runtimed/cri-runtimed/pkg/podsandbox/pause"
)

func TestIDMappedBind(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("idmapped mounts need root")
	}
	src, dst := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	if err := IDMappedBind(src, dst, m, m); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(dst, unix.MNT_DETACH)
	fi, err := os.Stat(filepath.Join(dst, "f"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 100000 || st.Gid != 100000 {
		t.Fatalf("through the idmapped mount the file is %d:%d, want 100000:100000", st.Uid, st.Gid)
	}
	orig, _ := os.Stat(filepath.Join(src, "f"))
	if ost := orig.Sys().(*syscall.Stat_t); ost.Uid != 0 {
		t.Fatalf("the source changed owner: %d", ost.Uid)
	}
}
