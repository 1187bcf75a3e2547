package oci

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

const testPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:App:/home/app:/bin/sh
nohome:x:1001:1001::::
`

const testGroup = `root:x:0:
daemon:x:1:
wheel:x:10:app
app:x:1000:
audio:x:29:app,daemon
staff:x:50:
`

// fakeRootfs builds a rootfs with the given /etc files; a value starting
// with "->" makes a symlink to the rest.
func fakeRootfs(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func i64(v int64) *int64 { return &v }

func TestResolveUser(t *testing.T) {
	std := fakeRootfs(t, map[string]string{"etc/passwd": testPasswd, "etc/group": testGroup})
	empty := fakeRootfs(t, map[string]string{"bin/.keep": ""})
	// Ids past 32 bits would be truncated: 4294967296 is uid/gid 0.
	hostile := fakeRootfs(t, map[string]string{
		"etc/passwd": testPasswd + "evil:x:4294967296:1000::/:/bin/sh\nevilgid:x:1002:4294967296::/:/bin/sh\nneg:x:-1:1000::/:/bin/sh\nmember:x:1003:1003::/:/bin/sh\nbig:x:2147483648:1000::/:/bin/sh\n",
		"etc/group":  testGroup + "evilgroup:x:4294967296:\nrootish:x:4294967296:member\n",
	})

	tests := []struct {
		name     string
		rootfs   string
		req      UserRequest
		uid, gid uint32
		gids     []uint32
		home     string
		wantErr  string // substring; "" = success
	}{
		{name: "default is root", rootfs: std, req: UserRequest{}, uid: 0, gid: 0, gids: []uint32{0}, home: "/root"},
		{name: "image name", rootfs: std, req: UserRequest{Image: "app"}, uid: 1000, gid: 1000, gids: []uint32{1000, 10, 29}, home: "/home/app"},
		{name: "image uid", rootfs: std, req: UserRequest{Image: "1000"}, uid: 1000, gid: 1000, gids: []uint32{1000, 10, 29}, home: "/home/app"},
		{name: "image name:group", rootfs: std, req: UserRequest{Image: "app:staff"}, uid: 1000, gid: 50, gids: []uint32{50, 10, 29}, home: "/home/app"},
		{name: "image uid:gid", rootfs: std, req: UserRequest{Image: "1000:50"}, uid: 1000, gid: 50, gids: []uint32{50, 10, 29}, home: "/home/app"},
		{name: "image uid:groupname", rootfs: std, req: UserRequest{Image: "1000:audio"}, uid: 1000, gid: 29, gids: []uint32{29, 10}, home: "/home/app"},
		{name: "unknown numeric uid", rootfs: std, req: UserRequest{Image: "4242"}, uid: 4242, gid: 0, gids: []uint32{0}, home: "/"},
		{name: "unknown numeric uid:gid", rootfs: std, req: UserRequest{Image: "4242:4343"}, uid: 4242, gid: 4343, gids: []uint32{4343}, home: "/"},
		{name: "unknown name", rootfs: std, req: UserRequest{Image: "ghost"}, wantErr: `user "ghost" not found`},
		{name: "unknown group name", rootfs: std, req: UserRequest{Image: "app:ghosts"}, wantErr: `group "ghosts" not found`},
		{name: "empty user part", rootfs: std, req: UserRequest{Image: ":50"}, wantErr: "no user part"},
		{name: "run_as_user wins over image", rootfs: std, req: UserRequest{UID: i64(1), Image: "app"}, uid: 1, gid: 1, gids: []uint32{1, 29}, home: "/usr/sbin"},
		{name: "run_as_user with run_as_group", rootfs: std, req: UserRequest{UID: i64(1000), GID: i64(7)}, uid: 1000, gid: 7, gids: []uint32{7, 10, 29}, home: "/home/app"},
		{name: "run_as_username", rootfs: std, req: UserRequest{Username: "app"}, uid: 1000, gid: 1000, gids: []uint32{1000, 10, 29}, home: "/home/app"},
		{name: "run_as_username unknown", rootfs: std, req: UserRequest{Username: "ghost"}, wantErr: "run_as_username"},
		{name: "run_as_group alone", rootfs: std, req: UserRequest{GID: i64(5)}, wantErr: "run_as_group"},
		{name: "negative run_as_user", rootfs: std, req: UserRequest{UID: i64(-1)}, wantErr: "run_as_user"},
		{name: "supplemental merge", rootfs: std, req: UserRequest{UID: i64(1000), SupplementalGroups: []int64{4000, 10}}, uid: 1000, gid: 1000, gids: []uint32{1000, 10, 29, 4000}, home: "/home/app"},
		{name: "supplemental strict", rootfs: std, req: UserRequest{UID: i64(1000), GID: i64(3000), SupplementalGroups: []int64{4000}, Strict: true}, uid: 1000, gid: 3000, gids: []uint32{3000, 4000}, home: "/home/app"},
		{name: "negative supplemental", rootfs: std, req: UserRequest{UID: i64(1000), SupplementalGroups: []int64{-3}}, wantErr: "supplemental_groups[0]"},
		{name: "empty home falls back to /", rootfs: std, req: UserRequest{Image: "nohome"}, uid: 1001, gid: 1001, gids: []uint32{1001}, home: "/"},
		{name: "no passwd numeric ok", rootfs: empty, req: UserRequest{Image: "1000:1000"}, uid: 1000, gid: 1000, gids: []uint32{1000}, home: "/"},
		{name: "no passwd name fails", rootfs: empty, req: UserRequest{Image: "app"}, wantErr: `user "app" not found`},
		{name: "image user with a 33-bit uid", rootfs: hostile, req: UserRequest{Image: "evil", NonRoot: true}, wantErr: "uid of user evil: 4294967296 out of range"},
		{name: "image user with uid 2^31", rootfs: hostile, req: UserRequest{Image: "big"}, wantErr: "out of range"},
		{name: "image user with a negative uid", rootfs: hostile, req: UserRequest{Image: "neg"}, wantErr: "out of range"},
		{name: "run_as_username with a 33-bit uid", rootfs: hostile, req: UserRequest{Username: "evil"}, wantErr: "out of range"},
		{name: "image user with a 33-bit gid", rootfs: hostile, req: UserRequest{Image: "evilgid"}, wantErr: "gid of user evilgid: 4294967296 out of range"},
		{name: "image uid of a user with a 33-bit gid", rootfs: hostile, req: UserRequest{Image: "1002"}, wantErr: "gid of user evilgid"},
		{name: "image group with a 33-bit gid", rootfs: hostile, req: UserRequest{Image: "app:evilgroup"}, wantErr: "gid of group evilgroup: 4294967296 out of range"},
		{name: "member of a group with a 33-bit gid", rootfs: hostile, req: UserRequest{Image: "member"}, wantErr: "gid of group rootish"},
		{name: "strict ignores the image's groups", rootfs: hostile, req: UserRequest{Image: "member", Strict: true}, uid: 1003, gid: 1003, gids: []uint32{1003}, home: "/"},
		{name: "image numeric uid 2^32", rootfs: std, req: UserRequest{Image: "4294967296"}, wantErr: "out of range"},
		{name: "image numeric uid 2^31", rootfs: std, req: UserRequest{Image: "2147483648"}, wantErr: "out of range"},
		{name: "image numeric gid 2^32", rootfs: std, req: UserRequest{Image: "1000:4294967296"}, wantErr: "out of range"},
		{name: "run_as_user 2^32", rootfs: std, req: UserRequest{UID: i64(1 << 32)}, wantErr: "run_as_user"},
		{name: "run_as_group 2^32", rootfs: std, req: UserRequest{UID: i64(1000), GID: i64(1 << 32)}, wantErr: "run_as_group"},
		{name: "negative run_as_group", rootfs: std, req: UserRequest{UID: i64(1000), GID: i64(-1)}, wantErr: "run_as_group"},
		{name: "supplemental 2^32", rootfs: std, req: UserRequest{UID: i64(1000), SupplementalGroups: []int64{1 << 32}}, wantErr: "supplemental_groups[0]"},
		{name: "no rootfs numeric", rootfs: "", req: UserRequest{UID: i64(65535), SupplementalGroups: []int64{1}}, uid: 65535, gid: 0, gids: []uint32{0, 1}, home: "/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, home, err := ResolveUser(tc.rootfs, tc.req)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.UID != tc.uid || u.GID != tc.gid || !slices.Equal(u.AdditionalGids, tc.gids) || home != tc.home {
				t.Fatalf("got uid=%d gid=%d gids=%v home=%q, want uid=%d gid=%d gids=%v home=%q",
					u.UID, u.GID, u.AdditionalGids, home, tc.uid, tc.gid, tc.gids, tc.home)
			}
		})
	}
}

// TestResolveUserHostileRootfs checks that a hostile image cannot make the
// daemon read host files through symlinks, nor block or flood it.
func TestResolveUserHostileRootfs(t *testing.T) {
	// A host file an attacker would love to read.
	hostDir := t.TempDir()
	hostShadow := filepath.Join(hostDir, "shadow")
	if err := os.WriteFile(hostShadow, []byte("hostonly:x:4711:4711::/secret:/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(filepath.Join(t.TempDir(), "etc"), hostShadow)
	if err != nil {
		t.Fatal(err)
	}

	fifoRoot := fakeRootfs(t, map[string]string{"etc/group": testGroup})
	if err := syscall.Mkfifo(filepath.Join(fifoRoot, "etc/passwd"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := fakeRootfs(t, map[string]string{"etc/passwd": strings.Repeat("#\n", maxUserFileBytes/2+1)})

	tests := []struct {
		name    string
		rootfs  string
		user    string
		wantErr string
	}{
		{"absolute symlink to host file", fakeRootfs(t, map[string]string{"etc/passwd": "->" + hostShadow}), "hostonly", `user "hostonly" not found`},
		{"relative symlink escaping", fakeRootfs(t, map[string]string{"etc/passwd": "->" + rel}), "hostonly", `user "hostonly" not found`},
		{"etc symlinked to host dir", fakeRootfs(t, map[string]string{"etc": "->" + hostDir}), "hostonly", `user "hostonly" not found`},
		{"symlink inside rootfs is followed", fakeRootfs(t, map[string]string{"etc/passwd.real": testPasswd, "etc/passwd": "->/etc/passwd.real"}), "app", ""},
		{"fifo is refused", fifoRoot, "app", "not a regular file"},
		{"directory is refused", fakeRootfs(t, map[string]string{"etc/passwd/x": ""}), "app", "not a regular file"},
		{"oversized passwd", big, "app", "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, _, err := ResolveUser(tc.rootfs, UserRequest{Image: tc.user})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if u.UID != 1000 {
					t.Fatalf("uid = %d, want 1000", u.UID)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v (user %+v), want containing %q", err, u, tc.wantErr)
			}
		})
	}
}
