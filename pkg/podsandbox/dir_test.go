package podsandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// statAs runs stat(1) on path as uid:gid with no supplementary groups
// and returns its error.
func statAs(t *testing.T, uid, gid uint32, path string) error {
	t.Helper()
	cmd := exec.Command("stat", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// TestPodDirKeepsHostUsersOut checks that no host user but root (and, for
// a pod with a user namespace, the pod's root group) passes the pod's
// directory, whatever lies below it is mode.
func TestPodDirKeepsHostUsersOut(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown and to run stat as another user")
	}
	// Not t.TempDir: its parent is 0700, which alone would keep others out.
	state, err := os.MkdirTemp("", "poddir")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	if err := os.Chmod(state, 0o711); err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	for _, tc := range []struct {
		name     string
		gids     []specs.LinuxIDMapping
		mode     os.FileMode
		podGroup uint32 // a gid that may pass; 0: none
	}{
		{name: "plain pod", mode: 0o700},
		{name: "user namespace pod", gids: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}, mode: 0o710, podGroup: 200000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(state, "pods", tc.name)
			// An older daemon's wide directory must be narrowed too.
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := makePodDir(dir, tc.gids); err != nil {
				t.Fatal(err)
			}
			rootfs := filepath.Join(dir, "bundles", "c1", "rootfs")
			if err := os.MkdirAll(rootfs, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(rootfs, "suid"), nil, 0o4755); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tc.mode || fi.Sys().(*syscall.Stat_t).Gid != tc.podGroup {
				t.Errorf("pod dir mode %v gid %d, want %v gid %d", fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Gid, tc.mode, tc.podGroup)
			}
			// The pods directory above must stay passable: the socket
			// paths of shims and user namespace pods go through it.
			if err := statAs(t, nobody, nobody, filepath.Dir(dir)); err != nil {
				t.Errorf("%s is not traversable by other users: %v", filepath.Dir(dir), err)
			}
			for _, p := range []string{dir + "/bundles", rootfs, rootfs + "/suid"} {
				if statAs(t, nobody, nobody, p) == nil {
					t.Errorf("uid %d reached %s", nobody, p)
				}
				if tc.podGroup == 0 {
					continue
				}
				if err := statAs(t, tc.podGroup, tc.podGroup, p); err != nil {
					t.Errorf("the pod's root group %d cannot reach %s: %v", tc.podGroup, p, err)
				}
			}
		})
	}
}
