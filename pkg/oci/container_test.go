package oci

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeHost serves device nodes from a table instead of the host's /dev.
func fakeHost(devs map[string]specs.LinuxDevice, dirs map[string][]string) hostIO {
	return hostIO{
		statDevice: func(p string) (specs.LinuxDevice, bool, error) {
			if _, ok := dirs[p]; ok {
				return specs.LinuxDevice{}, true, nil
			}
			d, ok := devs[p]
			if !ok {
				return d, false, fs.ErrNotExist
			}
			d.Path = p
			return d, false, nil
		},
		readDir: func(dir string) ([]string, error) {
			n, ok := dirs[dir]
			if !ok {
				return nil, fs.ErrNotExist
			}
			return n, nil
		},
		// Profiles are real files in t.TempDir; the host is a cgroup v2
		// host without AppArmor or SELinux unless a test says otherwise.
		readProfile: readProfileFile,
		cgroup2:     func() bool { return true },
		hugetlb:     func() bool { return true },
	}
}

var testDevices = map[string]specs.LinuxDevice{
	"/dev/fuse":    {Type: "c", Major: 10, Minor: 229},
	"/dev/sda":     {Type: "b", Major: 8, Minor: 0},
	"/dev/snd/pcm": {Type: "c", Major: 116, Minor: 2},
	"/dev/snd/ctl": {Type: "c", Major: 116, Minor: 3},
	"/dev/null":    {Type: "c", Major: 1, Minor: 3},
}

var testDirs = map[string][]string{
	"/dev":     {"fuse", "sda", "snd", "null", "pts"},
	"/dev/snd": {"pcm", "ctl"},
}

func testSandboxInfo() SandboxInfo {
	return SandboxInfo{
		ID:           "sb1",
		Pid:          4242,
		NetNSPath:    "/run/cri-runtimed/netns/cni-1",
		Hostname:     "web-0",
		HostnamePath: "/run/cri-runtimed/sb1/hostname",
		HostsPath:    "/run/cri-runtimed/sb1/hosts",
		ResolvPath:   "/run/cri-runtimed/sb1/resolv.conf",
		ShmPath:      "/run/cri-runtimed/sb1/shm",
		CgroupParent: "/kubepods/besteffort/pod123",
	}
}

func testSandboxConfig() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "web-0", Namespace: "default", Uid: "uid-1"},
		Hostname: "web-0",
		Linux:    &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/kubepods/besteffort/pod123"},
	}
}

// testConfig is a minimal valid container config; mod adjusts it.
func testConfig(mod func(*runtimeapi.ContainerConfig)) *runtimeapi.ContainerConfig {
	c := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
		Image:    &runtimeapi.ImageSpec{Image: "sha256:abc", UserSpecifiedImage: "registry.local/app:1"},
		Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
				MaskedPaths:      DefaultMaskedPaths(),
				ReadonlyPaths:    DefaultReadonlyPaths(),
			},
		},
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func sc(c *runtimeapi.ContainerConfig) *runtimeapi.LinuxContainerSecurityContext {
	return c.Linux.SecurityContext
}

var testImage = ocispec.ImageConfig{
	Entrypoint: []string{"/entry"},
	Cmd:        []string{"serve", "--port=80"},
	Env:        []string{"PATH=/image/bin", "LANG=C.UTF-8", "MODE=image"},
	WorkingDir: "/srv",
}

// build runs containerSpec with a fake host and a rootfs holding the test
// user database.
func build(t *testing.T, cfg *runtimeapi.ContainerConfig, img ocispec.ImageConfig, mods ...func(*SandboxInfo, *runtimeapi.PodSandboxConfig)) (*specs.Spec, error) {
	t.Helper()
	rootfs := fakeRootfs(t, map[string]string{"etc/passwd": testPasswd, "etc/group": testGroup})
	info, sbCfg := testSandboxInfo(), testSandboxConfig()
	for _, m := range mods {
		m(&info, sbCfg)
	}
	return fakeHost(testDevices, testDirs).containerSpec("c1", cfg, sbCfg, img, info, rootfs)
}

func mustBuild(t *testing.T, cfg *runtimeapi.ContainerConfig, img ocispec.ImageConfig, mods ...func(*SandboxInfo, *runtimeapi.PodSandboxConfig)) *specs.Spec {
	t.Helper()
	s, err := build(t, cfg, img, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func wantInvalid(t *testing.T, err error, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one naming %q", field)
	}
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), field) {
		t.Fatalf("err = %v, want ErrInvalid naming %q", err, field)
	}
}

func TestProcessArgs(t *testing.T) {
	tests := []struct {
		name          string
		command, args []string
		img           ocispec.ImageConfig
		want          []string
	}{
		{"neither: entrypoint+cmd", nil, nil, testImage, []string{"/entry", "serve", "--port=80"}},
		{"command only: image cmd ignored", []string{"/bin/sh"}, nil, testImage, []string{"/bin/sh"}},
		{"command and args", []string{"/bin/sh"}, []string{"-c", "true"}, testImage, []string{"/bin/sh", "-c", "true"}},
		{"args only: entrypoint+args", nil, []string{"debug"}, testImage, []string{"/entry", "debug"}},
		{"args only, no entrypoint", nil, []string{"/bin/true"}, ocispec.ImageConfig{Cmd: []string{"x"}}, []string{"/bin/true"}},
		{"cmd only image", nil, nil, ocispec.ImageConfig{Cmd: []string{"/bin/sh"}}, []string{"/bin/sh"}},
		{"empty-string entrypoint is none", nil, nil, ocispec.ImageConfig{Entrypoint: []string{""}, Cmd: []string{"/x"}}, []string{"/x"}},
		{"nothing", nil, nil, ocispec.ImageConfig{}, nil},
		{"empty entrypoint and cmd", nil, nil, ocispec.ImageConfig{Entrypoint: []string{""}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(func(c *runtimeapi.ContainerConfig) { c.Command, c.Args = tc.command, tc.args })
			s, err := build(t, cfg, tc.img)
			if tc.want == nil {
				wantInvalid(t, err, "command")
				if !strings.Contains(err.Error(), "Entrypoint") {
					t.Fatalf("error %v should name the image fields too", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Process.Args, tc.want) {
				t.Fatalf("args = %q, want %q", s.Process.Args, tc.want)
			}
		})
	}
}

func kv(k, v string) *runtimeapi.KeyValue { return &runtimeapi.KeyValue{Key: k, Value: []byte(v)} }

func TestEnv(t *testing.T) {
	tests := []struct {
		name    string
		img     []string
		envs    []*runtimeapi.KeyValue
		user    string
		tty     bool
		want    []string
		wantErr string
	}{
		{
			name: "image then CRI overrides in place",
			img:  []string{"PATH=/image/bin", "LANG=C.UTF-8", "MODE=image"},
			envs: []*runtimeapi.KeyValue{kv("MODE", "cri"), kv("EXTRA", "1")},
			want: []string{"HOSTNAME=web-0", "PATH=/image/bin", "LANG=C.UTF-8", "MODE=cri", "EXTRA=1", "HOME=/root"},
		},
		{
			name: "default PATH, HOME from passwd",
			user: "app",
			want: []string{defaultPath, "HOSTNAME=web-0", "HOME=/home/app"},
		},
		{
			name: "CRI may override HOSTNAME and HOME",
			envs: []*runtimeapi.KeyValue{kv("HOSTNAME", "x"), kv("HOME", "/h"), kv("PATH", "/p")},
			want: []string{"HOSTNAME=x", "HOME=/h", "PATH=/p"},
		},
		{
			name: "tty adds TERM",
			tty:  true,
			want: []string{defaultPath, "HOSTNAME=web-0", "HOME=/root", "TERM=xterm"},
		},
		{
			name: "tty keeps TERM",
			tty:  true,
			envs: []*runtimeapi.KeyValue{kv("TERM", "vt100")},
			want: []string{defaultPath, "HOSTNAME=web-0", "TERM=vt100", "HOME=/root"},
		},
		{name: "empty key", envs: []*runtimeapi.KeyValue{kv("", "x")}, wantErr: "envs[0].key"},
		{name: "key with =", envs: []*runtimeapi.KeyValue{kv("A", "1"), kv("B=C", "x")}, wantErr: "envs[1].key"},
		{name: "NUL in value", envs: []*runtimeapi.KeyValue{kv("A", "a\x00b")}, wantErr: "envs[0].value"},
		{name: "bad image env", img: []string{"=x"}, wantErr: "image config Env[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(func(c *runtimeapi.ContainerConfig) { c.Envs, c.Tty = tc.envs, tc.tty })
			img := ocispec.ImageConfig{Cmd: []string{"/x"}, Env: tc.img, User: tc.user}
			s, err := build(t, cfg, img)
			if tc.wantErr != "" {
				wantInvalid(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Process.Env, tc.want) {
				t.Fatalf("env = %q\nwant  %q", s.Process.Env, tc.want)
			}
			if s.Process.Terminal != tc.tty {
				t.Fatalf("terminal = %v, want %v", s.Process.Terminal, tc.tty)
			}
		})
	}
}

func TestWorkingDir(t *testing.T) {
	tests := []struct {
		name, cri, image, want string
	}{
		{"CRI wins", "/work", "/srv", "/work"},
		{"image", "", "/srv", "/srv"},
		{"relative image dir", "", "srv/app", "/srv/app"},
		{"default root", "", "", "/"},
		{"CRI relative is an error", "work", "/srv", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(func(c *runtimeapi.ContainerConfig) { c.WorkingDir = tc.cri })
			s, err := build(t, cfg, ocispec.ImageConfig{Cmd: []string{"/x"}, WorkingDir: tc.image})
			if tc.want == "" {
				wantInvalid(t, err, "working_dir")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Process.Cwd != tc.want {
				t.Fatalf("cwd = %q, want %q", s.Process.Cwd, tc.want)
			}
		})
	}
}

func TestContainerUser(t *testing.T) {
	tests := []struct {
		name     string
		mod      func(*runtimeapi.ContainerConfig)
		image    string
		uid, gid uint32
		gids     []uint32
		wantErr  string
	}{
		{name: "image user", image: "app", uid: 1000, gid: 1000, gids: []uint32{1000, 10, 29}},
		{name: "run_as_user", mod: func(c *runtimeapi.ContainerConfig) { sc(c).RunAsUser = &runtimeapi.Int64Value{Value: 1000} }, image: "daemon", uid: 1000, gid: 1000, gids: []uint32{1000, 10, 29}},
		{name: "run_as_username + group", mod: func(c *runtimeapi.ContainerConfig) {
			sc(c).RunAsUsername = "app"
			sc(c).RunAsGroup = &runtimeapi.Int64Value{Value: 3000}
		}, uid: 1000, gid: 3000, gids: []uint32{3000, 10, 29}},
		{name: "strict policy", mod: func(c *runtimeapi.ContainerConfig) {
			sc(c).RunAsUser = &runtimeapi.Int64Value{Value: 1000}
			sc(c).RunAsGroup = &runtimeapi.Int64Value{Value: 3000}
			sc(c).SupplementalGroups = []int64{4000}
			sc(c).SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsPolicy_Strict
		}, uid: 1000, gid: 3000, gids: []uint32{3000, 4000}},
		{name: "merge policy", mod: func(c *runtimeapi.ContainerConfig) {
			sc(c).RunAsUser = &runtimeapi.Int64Value{Value: 1000}
			sc(c).RunAsGroup = &runtimeapi.Int64Value{Value: 3000}
			sc(c).SupplementalGroups = []int64{4000}
		}, uid: 1000, gid: 3000, gids: []uint32{3000, 10, 29, 4000}},
		{name: "unknown username", mod: func(c *runtimeapi.ContainerConfig) { sc(c).RunAsUsername = "ghost" }, wantErr: "run_as_username"},
		{name: "unknown image user", image: "ghost", wantErr: "image config User"},
		{name: "group without user", mod: func(c *runtimeapi.ContainerConfig) { sc(c).RunAsGroup = &runtimeapi.Int64Value{Value: 1} }, wantErr: "run_as_group"},
		{name: "bad policy", mod: func(c *runtimeapi.ContainerConfig) { sc(c).SupplementalGroupsPolicy = 7 }, wantErr: "supplemental_groups_policy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := build(t, testConfig(tc.mod), ocispec.ImageConfig{Cmd: []string{"/x"}, User: tc.image})
			if tc.wantErr != "" {
				wantInvalid(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			u := s.Process.User
			if u.UID != tc.uid || u.GID != tc.gid || !slices.Equal(u.AdditionalGids, tc.gids) {
				t.Fatalf("user = %+v, want uid=%d gid=%d gids=%v", u, tc.uid, tc.gid, tc.gids)
			}
		})
	}
}

func mountAt(s *specs.Spec, dst string) (specs.Mount, bool) {
	for _, m := range s.Mounts {
		if m.Destination == dst {
			return m, true
		}
	}
	return specs.Mount{}, false
}

func TestMounts(t *testing.T) {
	type check struct {
		dst, src, typ string
		opts          []string // each must be present
		absent        bool
	}
	tests := []struct {
		name     string
		mod      func(*runtimeapi.ContainerConfig)
		info     func(*SandboxInfo)
		checks   []check
		rootProp string
		wantErr  string
	}{
		{
			name: "defaults and pod files",
			checks: []check{
				{dst: "/proc", typ: "proc"},
				{dst: "/dev", typ: "tmpfs"},
				{dst: "/dev/pts", typ: "devpts"},
				{dst: "/dev/mqueue", typ: "mqueue"},
				{dst: "/sys", typ: "sysfs", opts: []string{"ro"}},
				{dst: "/sys/fs/cgroup", typ: "cgroup", opts: []string{"ro"}},
				{dst: "/dev/shm", typ: "bind", src: "/run/cri-runtimed/sb1/shm", opts: []string{"rbind", "rw"}},
				{dst: "/etc/hostname", typ: "bind", src: "/run/cri-runtimed/sb1/hostname", opts: []string{"rw"}},
				{dst: "/etc/hosts", typ: "bind", src: "/run/cri-runtimed/sb1/hosts"},
				{dst: "/etc/resolv.conf", typ: "bind", src: "/run/cri-runtimed/sb1/resolv.conf"},
			},
		},
		{
			name: "readonly rootfs makes pod files ro",
			mod:  func(c *runtimeapi.ContainerConfig) { sc(c).ReadonlyRootfs = true },
			checks: []check{
				{dst: "/etc/hosts", src: "/run/cri-runtimed/sb1/hosts", opts: []string{"ro"}},
				{dst: "/etc/resolv.conf", opts: []string{"ro"}},
			},
		},
		{
			name: "host IPC binds host /dev/shm",
			info: func(i *SandboxInfo) { i.HostIPC = true },
			checks: []check{
				{dst: "/dev/shm", typ: "bind", src: "/dev/shm"},
			},
		},
		{
			name: "no shm path keeps private tmpfs",
			info: func(i *SandboxInfo) { i.ShmPath = "" },
			checks: []check{
				{dst: "/dev/shm", typ: "tmpfs", src: "shm"},
			},
		},
		{
			name: "missing pod files are skipped",
			info: func(i *SandboxInfo) { i.HostnamePath, i.ResolvPath = "", "" },
			checks: []check{
				{dst: "/etc/hostname", absent: true},
				{dst: "/etc/resolv.conf", absent: true},
				{dst: "/etc/hosts", src: "/run/cri-runtimed/sb1/hosts"},
			},
		},
		{
			name: "CRI mounts override pod files and shm",
			mod: func(c *runtimeapi.ContainerConfig) {
				c.Mounts = []*runtimeapi.Mount{
					{ContainerPath: "/etc/hosts", HostPath: "/var/lib/kubelet/pods/x/etc-hosts"},
					{ContainerPath: "/dev/shm/", HostPath: "/tmp/shm"},
				}
			},
			checks: []check{
				{dst: "/etc/hosts", src: "/var/lib/kubelet/pods/x/etc-hosts", opts: []string{"rbind", "rprivate", "rw"}},
				{dst: "/dev/shm", src: "/tmp/shm"},
			},
		},
		{
			name: "readonly, rro and mount options",
			mod: func(c *runtimeapi.ContainerConfig) {
				c.Mounts = []*runtimeapi.Mount{
					{ContainerPath: "/data", HostPath: "/srv/data", Readonly: true, RecursiveReadOnly: true, SelinuxRelabel: true, MountOptions: []string{"noexec", "nosuid"}},
					{ContainerPath: "/cfg", HostPath: "/srv/cfg", Readonly: true},
				}
			},
			checks: []check{
				{dst: "/data", src: "/srv/data", typ: "bind", opts: []string{"rbind", "rprivate", "ro", "rro", "noexec", "nosuid"}},
				{dst: "/cfg", opts: []string{"ro"}},
			},
		},
		{
			name: "host-to-container propagation",
			mod: func(c *runtimeapi.ContainerConfig) {
				c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/mnt", HostPath: "/mnt", Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}}
			},
			checks:   []check{{dst: "/mnt", opts: []string{"rslave"}}},
			rootProp: "rslave",
		},
		{
			name: "bidirectional wins over host-to-container",
			mod: func(c *runtimeapi.ContainerConfig) {
				c.Mounts = []*runtimeapi.Mount{
					{ContainerPath: "/a", HostPath: "/a", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL},
					{ContainerPath: "/b", HostPath: "/b", Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
				}
			},
			checks:   []check{{dst: "/a", opts: []string{"rshared"}}, {dst: "/b", opts: []string{"rslave"}}},
			rootProp: "rshared",
		},
		{
			name: "CRI /dev hides default /dev children",
			mod: func(c *runtimeapi.ContainerConfig) {
				c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/dev", HostPath: "/dev"}}
			},
			checks: []check{{dst: "/dev", typ: "bind", src: "/dev"}, {dst: "/dev/pts", absent: true}, {dst: "/dev/mqueue", absent: true}},
		},
		{name: "relative container path", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "data", HostPath: "/srv"}}
		}, wantErr: "mounts[0].container_path"},
		{name: "mount over root", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/", HostPath: "/srv"}}
		}, wantErr: "mounts[0].container_path"},
		{name: "duplicate destination", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/a"}, {ContainerPath: "/d/", HostPath: "/b"}}
		}, wantErr: "mounts[1].container_path"},
		{name: "relative host path", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "srv"}}
		}, wantErr: "mounts[0].host_path"},
		{name: "image volume unresolved", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/d", Image: &runtimeapi.ImageSpec{Image: "x"}}}
		}, wantErr: "mounts[0].image"},
		{name: "rro without readonly", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/d", RecursiveReadOnly: true}}
		}, wantErr: "mounts[0].recursive_read_only"},
		{name: "rro with propagation", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/d", Readonly: true, RecursiveReadOnly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}}
		}, wantErr: "mounts[0].recursive_read_only"},
		{name: "bad mount option", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/d", MountOptions: []string{"ro,exec"}}}
		}, wantErr: "mounts[0].mount_options[0]"},
		{name: "bad propagation", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/d", Propagation: 9}}
		}, wantErr: "mounts[0].propagation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := build(t, testConfig(tc.mod), testImage, func(i *SandboxInfo, _ *runtimeapi.PodSandboxConfig) {
				if tc.info != nil {
					tc.info(i)
				}
			})
			if tc.wantErr != "" {
				wantInvalid(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.checks {
				m, ok := mountAt(s, c.dst)
				if c.absent {
					if ok {
						t.Errorf("mount at %s present: %+v", c.dst, m)
					}
					continue
				}
				if !ok {
					t.Errorf("no mount at %s", c.dst)
					continue
				}
				if c.src != "" && m.Source != c.src || c.typ != "" && m.Type != c.typ {
					t.Errorf("mount %s = %+v, want source %q type %q", c.dst, m, c.src, c.typ)
				}
				for _, o := range c.opts {
					if !slices.Contains(m.Options, o) {
						t.Errorf("mount %s options %v lack %q", c.dst, m.Options, o)
					}
				}
			}
			if s.Linux.RootfsPropagation != tc.rootProp {
				t.Errorf("rootfsPropagation = %q, want %q", s.Linux.RootfsPropagation, tc.rootProp)
			}
			seen := map[string]bool{}
			for _, m := range s.Mounts {
				if seen[m.Destination] {
					t.Errorf("two mounts at %s", m.Destination)
				}
				seen[m.Destination] = true
			}
		})
	}
}

func TestMountOrder(t *testing.T) {
	cfg := testConfig(func(c *runtimeapi.ContainerConfig) {
		c.Mounts = []*runtimeapi.Mount{
			{ContainerPath: "/var/lib/app/cache", HostPath: "/c"},
			{ContainerPath: "/etc/app/conf.d", HostPath: "/e"},
			{ContainerPath: "/var/lib/app", HostPath: "/b"},
			{ContainerPath: "/etc", HostPath: "/etc-vol"},
			{ContainerPath: "/var", HostPath: "/a"},
		}
	})
	s := mustBuild(t, cfg, testImage)
	pos := map[string]int{}
	for i, m := range s.Mounts {
		pos[m.Destination] = i
	}
	for _, dst := range []string{"/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/dev/shm"} {
		if _, ok := pos[dst]; !ok {
			t.Errorf("no mount at %s", dst)
		}
	}
	for _, pair := range [][2]string{
		{"/var", "/var/lib/app"},
		{"/var/lib/app", "/var/lib/app/cache"},
		{"/etc", "/etc/app/conf.d"},
		{"/etc", "/etc/hosts"},
		{"/etc", "/etc/resolv.conf"},
		{"/dev", "/dev/shm"},
		{"/sys", "/sys/fs/cgroup"},
	} {
		if pos[pair[0]] >= pos[pair[1]] {
			t.Errorf("%s mounted at %d, after child %s at %d", pair[0], pos[pair[0]], pair[1], pos[pair[1]])
		}
	}
}

func TestNamespaces(t *testing.T) {
	type ns map[specs.LinuxNamespaceType]string // type -> path; "-" = new
	tests := []struct {
		name    string
		opts    *runtimeapi.NamespaceOption
		info    func(*SandboxInfo)
		want    ns
		wantErr string
	}{
		{
			name: "pod pid",
			opts: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD},
			want: ns{"mount": "-", "pid": "/proc/4242/ns/pid", "ipc": "/proc/4242/ns/ipc", "uts": "/proc/4242/ns/uts", "network": "/run/cri-runtimed/netns/cni-1"},
		},
		{
			name: "container pid",
			opts: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			want: ns{"mount": "-", "pid": "-", "ipc": "/proc/4242/ns/ipc", "uts": "/proc/4242/ns/uts", "network": "/run/cri-runtimed/netns/cni-1"},
		},
		{
			name: "node pid",
			opts: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE},
			info: func(i *SandboxInfo) { i.HostPID = true },
			want: ns{"mount": "-", "ipc": "/proc/4242/ns/ipc", "uts": "/proc/4242/ns/uts", "network": "/run/cri-runtimed/netns/cni-1"},
		},
		{
			name: "target pid",
			opts: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "c0"},
			info: func(i *SandboxInfo) { i.TargetPid = 777 },
			want: ns{"mount": "-", "pid": "/proc/777/ns/pid", "ipc": "/proc/4242/ns/ipc", "uts": "/proc/4242/ns/uts", "network": "/run/cri-runtimed/netns/cni-1"},
		},
		{
			name:    "target without pid",
			opts:    &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "c0"},
			wantErr: "target_id",
		},
		{
			name: "no options falls back to sandbox mode",
			info: func(i *SandboxInfo) { i.PIDMode = runtimeapi.NamespaceMode_POD },
			want: ns{"mount": "-", "pid": "/proc/4242/ns/pid", "ipc": "/proc/4242/ns/ipc", "uts": "/proc/4242/ns/uts", "network": "/run/cri-runtimed/netns/cni-1"},
		},
		{
			name: "host everything",
			opts: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE, Network: runtimeapi.NamespaceMode_NODE},
			info: func(i *SandboxInfo) { i.HostNetwork, i.HostPID, i.HostIPC, i.NetNSPath = true, true, true, "" },
			want: ns{"mount": "-"},
		},
		{
			name: "netns from pause pid when no path",
			opts: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			info: func(i *SandboxInfo) { i.NetNSPath = "" },
			want: ns{"mount": "-", "pid": "-", "ipc": "/proc/4242/ns/ipc", "uts": "/proc/4242/ns/uts", "network": "/proc/4242/ns/net"},
		},
		{
			name:    "unknown pause pid",
			opts:    &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD},
			info:    func(i *SandboxInfo) { i.Pid = 0 },
			wantErr: "sandbox pid unknown",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(func(c *runtimeapi.ContainerConfig) { sc(c).NamespaceOptions = tc.opts })
			s, err := build(t, cfg, testImage, func(i *SandboxInfo, _ *runtimeapi.PodSandboxConfig) {
				if tc.info != nil {
					tc.info(i)
				}
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ns{}
			for _, n := range s.Linux.Namespaces {
				p := n.Path
				if p == "" {
					p = "-"
				}
				got[n.Type] = p
			}
			if len(got) != len(tc.want) {
				t.Fatalf("namespaces = %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("namespaces = %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestNewCgroupNamespaceOption(t *testing.T) {
	s, err := fakeHost(testDevices, testDirs).containerSpec("c1", testConfig(nil), testSandboxConfig(), testImage, testSandboxInfo(), "", WithNewCgroupNamespace())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.CgroupNamespace && n.Path == "" }) {
		t.Fatalf("no new cgroup namespace in %v", s.Linux.Namespaces)
	}
}

func TestCapabilities(t *testing.T) {
	def := DefaultCapabilities()
	// A node whose runtime holds only the default set and CAP_SYS_ADMIN.
	small := append(slices.Clone(def), "CAP_SYS_ADMIN")
	tests := []struct {
		name       string
		caps       *runtimeapi.Capability
		privileged bool
		grantable  []string // nil: this node's
		want       []string
		ambient    []string
		wantErr    string
	}{
		{name: "default", want: def},
		{name: "add and drop", caps: &runtimeapi.Capability{AddCapabilities: []string{"NET_ADMIN", "cap_sys_time"}, DropCapabilities: []string{"CAP_KILL", "mknod"}},
			want: append(slices.DeleteFunc(slices.Clone(def), func(c string) bool { return c == "CAP_KILL" || c == "CAP_MKNOD" }), "CAP_NET_ADMIN", "CAP_SYS_TIME")},
		{name: "drop all add one", caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}}, want: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "add all drop one", caps: &runtimeapi.Capability{AddCapabilities: []string{"all"}, DropCapabilities: []string{"CHOWN"}},
			want: slices.DeleteFunc(GrantableCapabilities(), func(c string) bool { return c == "CAP_CHOWN" })},
		{name: "drop all", caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}, want: nil},
		{name: "privileged ignores drop", privileged: true, caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}, want: GrantableCapabilities()},
		{name: "ambient", caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddAmbientCapabilities: []string{"NET_BIND_SERVICE"}},
			want: []string{"CAP_NET_BIND_SERVICE"}, ambient: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "unknown add", caps: &runtimeapi.Capability{AddCapabilities: []string{"CAP_BOGUS"}}, wantErr: "capabilities.add_capabilities[0]"},
		{name: "add beyond the node", grantable: small, caps: &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN", "NET_ADMIN"}},
			wantErr: `add_capabilities[1]: capability "NET_ADMIN" is not available on this node`},
		{name: "ambient beyond the node", grantable: small, caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddAmbientCapabilities: []string{"NET_BIND_SERVICE", "SYS_MODULE"}},
			wantErr: `add_ambient_capabilities[1]: capability "SYS_MODULE" is not available on this node`},
		{name: "ambient within the node", grantable: small, caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddAmbientCapabilities: []string{"SYS_ADMIN"}},
			want: []string{"CAP_SYS_ADMIN"}, ambient: []string{"CAP_SYS_ADMIN"}},
		{name: "add all on a small node", grantable: small, caps: &runtimeapi.Capability{AddCapabilities: []string{"ALL"}}, want: small},
		{name: "privileged on a small node", grantable: small, privileged: true, want: small},
		{name: "unknown drop", caps: &runtimeapi.Capability{DropCapabilities: []string{"KILL", "FLY"}}, wantErr: "capabilities.drop_capabilities[1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(func(c *runtimeapi.ContainerConfig) {
				sc(c).Capabilities = tc.caps
				sc(c).Privileged = tc.privileged
			})
			h := fakeHost(testDevices, testDirs)
			if tc.grantable != nil {
				h.grantable = func() []string { return slices.Clone(tc.grantable) }
			}
			sbCfg := testSandboxConfig()
			sbCfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: tc.privileged}
			rootfs := fakeRootfs(t, map[string]string{"etc/passwd": testPasswd, "etc/group": testGroup})
			s, err := h.containerSpec("c1", cfg, sbCfg, testImage, testSandboxInfo(), rootfs)
			if tc.wantErr != "" {
				wantInvalid(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := s.Process.Capabilities
			for name, got := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
				if !slices.Equal(got, tc.want) {
					t.Errorf("%s = %v, want %v", name, got, tc.want)
				}
			}
			if !slices.Equal(c.Ambient, tc.ambient) || !slices.Equal(c.Inheritable, tc.ambient) {
				t.Errorf("ambient = %v inheritable = %v, want %v", c.Ambient, c.Inheritable, tc.ambient)
			}
		})
	}
}

func TestSecurity(t *testing.T) {
	tests := []struct {
		name       string
		mod        func(*runtimeapi.ContainerConfig)
		sbPriv     bool
		masked     []string
		readonly   []string
		rootRO     bool
		nnp        bool
		privileged bool
		wantErr    string
	}{
		{name: "kubelet default lists", masked: DefaultMaskedPaths(), readonly: DefaultReadonlyPaths()},
		{name: "no security context gets defaults", mod: func(c *runtimeapi.ContainerConfig) { c.Linux.SecurityContext = nil }, masked: DefaultMaskedPaths(), readonly: DefaultReadonlyPaths()},
		{name: "unmasked: empty lists", mod: func(c *runtimeapi.ContainerConfig) { sc(c).MaskedPaths, sc(c).ReadonlyPaths = nil, nil }},
		{name: "custom lists", mod: func(c *runtimeapi.ContainerConfig) {
			sc(c).MaskedPaths, sc(c).ReadonlyPaths = []string{"/proc/x"}, []string{"/proc/y"}
		},
			masked: []string{"/proc/x"}, readonly: []string{"/proc/y"}},
		{name: "readonly rootfs and no_new_privs", mod: func(c *runtimeapi.ContainerConfig) { sc(c).ReadonlyRootfs, sc(c).NoNewPrivs = true, true },
			masked: DefaultMaskedPaths(), readonly: DefaultReadonlyPaths(), rootRO: true, nnp: true},
		{name: "privileged", mod: func(c *runtimeapi.ContainerConfig) { sc(c).Privileged = true }, sbPriv: true, privileged: true},
		{name: "privileged in unprivileged sandbox", mod: func(c *runtimeapi.ContainerConfig) { sc(c).Privileged = true }, wantErr: "linux.security_context.privileged"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := build(t, testConfig(tc.mod), testImage, func(_ *SandboxInfo, sb *runtimeapi.PodSandboxConfig) {
				sb.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: tc.sbPriv}
			})
			if tc.wantErr != "" {
				wantInvalid(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Linux.MaskedPaths, tc.masked) || !slices.Equal(s.Linux.ReadonlyPaths, tc.readonly) {
				t.Errorf("masked %v readonly %v, want %v %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, tc.masked, tc.readonly)
			}
			if s.Root.Readonly != tc.rootRO || s.Process.NoNewPrivileges != tc.nnp {
				t.Errorf("root.readonly=%v nnp=%v, want %v %v", s.Root.Readonly, s.Process.NoNewPrivileges, tc.rootRO, tc.nnp)
			}
			sys, _ := mountAt(s, "/sys")
			cg, _ := mountAt(s, "/sys/fs/cgroup")
			rules := s.Linux.Resources.Devices
			if tc.privileged {
				if !slices.Contains(sys.Options, "rw") || !slices.Contains(cg.Options, "rw") {
					t.Errorf("privileged sysfs/cgroup not rw: %v %v", sys.Options, cg.Options)
				}
				if len(rules) != 1 || !rules[0].Allow || rules[0].Access != "rwm" {
					t.Errorf("privileged device rules = %+v, want allow all", rules)
				}
				if len(s.Linux.Devices) != 5 { // fuse, sda, snd/pcm, snd/ctl, null
					t.Errorf("privileged devices = %+v, want all fake host devices", s.Linux.Devices)
				}
			} else {
				if !slices.Contains(sys.Options, "ro") {
					t.Errorf("sysfs not ro: %v", sys.Options)
				}
				if len(rules) == 0 || rules[0].Allow || rules[0].Access != "rwm" || rules[0].Type != "" {
					t.Errorf("first device rule = %+v, want deny all", rules)
				}
				if len(s.Linux.Devices) != 0 {
					t.Errorf("devices = %+v, want none", s.Linux.Devices)
				}
			}
		})
	}
}

func TestDefaultDeviceRules(t *testing.T) {
	s := mustBuild(t, testConfig(nil), testImage)
	allowed := map[[2]int64]bool{}
	for _, r := range s.Linux.Resources.Devices {
		if r.Allow && r.Type == "c" && r.Major != nil && r.Access == "rwm" {
			minor := int64(-1)
			if r.Minor != nil {
				minor = *r.Minor
			}
			allowed[[2]int64{*r.Major, minor}] = true
		}
	}
	for name, mm := range map[string][2]int64{
		"null": {1, 3}, "zero": {1, 5}, "full": {1, 7}, "random": {1, 8}, "urandom": {1, 9},
		"tty": {5, 0}, "ptmx": {5, 2}, "pts": {136, -1},
	} {
		if !allowed[mm] {
			t.Errorf("/dev/%s (%d:%d) not allowed", name, mm[0], mm[1])
		}
	}
}

func TestDevices(t *testing.T) {
	tests := []struct {
		name    string
		devs    []*runtimeapi.Device
		want    []specs.LinuxDevice // Path, Type, Major, Minor checked
		access  []string
		wantErr string
	}{
		{
			name:   "char and block",
			devs:   []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rwm"}, {HostPath: "/dev/sda", ContainerPath: "/dev/xvda", Permissions: "r"}},
			want:   []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}, {Path: "/dev/xvda", Type: "b", Major: 8, Minor: 0}},
			access: []string{"rwm", "r"},
		},
		{
			name:   "directory brings its devices",
			devs:   []*runtimeapi.Device{{HostPath: "/dev/snd", ContainerPath: "/dev/sound", Permissions: "rw"}},
			want:   []specs.LinuxDevice{{Path: "/dev/sound/pcm", Type: "c", Major: 116, Minor: 2}, {Path: "/dev/sound/ctl", Type: "c", Major: 116, Minor: 3}},
			access: []string{"rw", "rw"},
		},
		{
			name:   "empty permissions default to rwm, container path to host path",
			devs:   []*runtimeapi.Device{{HostPath: "/dev/fuse"}},
			want:   []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}},
			access: []string{"rwm"},
		},
		{name: "bad permissions", devs: []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rwx"}}, wantErr: "devices[0].permissions"},
		{name: "relative container path", devs: []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "fuse"}}, wantErr: "devices[0].container_path"},
		{name: "relative host path", devs: []*runtimeapi.Device{{HostPath: "fuse", ContainerPath: "/dev/fuse"}}, wantErr: "devices[0].host_path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := build(t, testConfig(func(c *runtimeapi.ContainerConfig) { c.Devices = tc.devs }), testImage)
			if tc.wantErr != "" {
				wantInvalid(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Linux.Devices) != len(tc.want) {
				t.Fatalf("devices = %+v, want %+v", s.Linux.Devices, tc.want)
			}
			rules := s.Linux.Resources.Devices[len(defaultDeviceRules()):]
			for i, w := range tc.want {
				g := s.Linux.Devices[i]
				if g.Path != w.Path || g.Type != w.Type || g.Major != w.Major || g.Minor != w.Minor {
					t.Errorf("device %d = %+v, want %+v", i, g, w)
				}
				r := rules[i]
				if !r.Allow || r.Type != w.Type || *r.Major != w.Major || *r.Minor != w.Minor || r.Access != tc.access[i] {
					t.Errorf("rule %d = %+v, want allow %s %d:%d %s", i, r, w.Type, w.Major, w.Minor, tc.access[i])
				}
			}
		})
	}

	t.Run("missing host device", func(t *testing.T) {
		_, err := build(t, testConfig(func(c *runtimeapi.ContainerConfig) {
			c.Devices = []*runtimeapi.Device{{HostPath: "/dev/nope", ContainerPath: "/dev/nope"}}
		}), testImage)
		if err == nil || !strings.Contains(err.Error(), "devices[0].host_path") || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v, want not-exist naming devices[0].host_path", err)
		}
	})
}

// TestStatDeviceReal uses the host's /dev/null, which every Linux has.
func TestStatDeviceReal(t *testing.T) {
	if _, err := os.Stat("/dev/null"); err != nil {
		t.Skip("no /dev/null")
	}
	d, isDir, err := statDevice("/dev/null")
	if err != nil || isDir {
		t.Fatalf("statDevice(/dev/null) = %+v, %v, %v", d, isDir, err)
	}
	if d.Type != "c" || d.Major != 1 || d.Minor != 3 {
		t.Fatalf("/dev/null = %+v, want c 1:3", d)
	}
	if _, _, err := statDevice("/etc/hostname"); !errors.Is(err, errNotDevice) && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("regular file: err = %v, want errNotDevice", err)
	}
}

func TestContainerResources(t *testing.T) {
	i64p := func(v int64) *int64 { return &v }
	u64p := func(v uint64) *uint64 { return &v }
	tests := []struct {
		name    string
		res     *runtimeapi.LinuxContainerResources
		want    specs.LinuxResources
		oom     *int
		wantErr string
	}{
		{name: "none", res: nil},
		{
			name: "cpu and memory",
			res: &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, CpusetCpus: "0-3,6", CpusetMems: "0",
				MemoryLimitInBytes: 1 << 30, OomScoreAdj: 1000},
			want: specs.LinuxResources{
				CPU:    &specs.LinuxCPU{Shares: u64p(512), Quota: i64p(50000), Period: u64p(100000), Cpus: "0-3,6", Mems: "0"},
				Memory: &specs.LinuxMemory{Limit: i64p(1 << 30), Swap: i64p(1 << 30)},
			},
			oom: func() *int { v := 1000; return &v }(),
		},
		{
			name: "swap given",
			res:  &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 100 << 20, MemorySwapLimitInBytes: 300 << 20},
			want: specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64p(100 << 20), Swap: i64p(300 << 20)}},
			oom:  func() *int { v := 0; return &v }(),
		},
		{
			name: "hugepages and unified",
			res: &runtimeapi.LinuxContainerResources{
				HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}},
				Unified:        map[string]string{"memory.high": "1000000"},
			},
			want: specs.LinuxResources{
				HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}},
				Unified:        map[string]string{"memory.high": "1000000"},
			},
			oom: func() *int { v := 0; return &v }(),
		},
		{name: "negative shares", res: &runtimeapi.LinuxContainerResources{CpuShares: -1}, wantErr: "linux.resources.cpu_shares"},
		{name: "negative quota", res: &runtimeapi.LinuxContainerResources{CpuQuota: -5}, wantErr: "linux.resources.cpu_quota"},
		{name: "tiny quota", res: &runtimeapi.LinuxContainerResources{CpuQuota: 10}, wantErr: "linux.resources.cpu_quota"},
		{name: "bad period", res: &runtimeapi.LinuxContainerResources{CpuPeriod: 5}, wantErr: "linux.resources.cpu_period"},
		{name: "negative memory", res: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -1}, wantErr: "linux.resources.memory_limit_in_bytes"},
		{name: "swap below limit", res: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 200, MemorySwapLimitInBytes: 100}, wantErr: "linux.resources.memory_swap_limit_in_bytes"},
		{name: "swap without limit", res: &runtimeapi.LinuxContainerResources{MemorySwapLimitInBytes: 100}, wantErr: "linux.resources.memory_swap_limit_in_bytes"},
		{name: "bad cpuset", res: &runtimeapi.LinuxContainerResources{CpusetCpus: "0-"}, wantErr: "linux.resources.cpuset_cpus"},
		{name: "reversed cpuset", res: &runtimeapi.LinuxContainerResources{CpusetMems: "3-1"}, wantErr: "linux.resources.cpuset_mems"},
		{name: "empty page size", res: &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{Limit: 1}}}, wantErr: "hugepage_limits[0].page_size"},
		{name: "unified path key", res: &runtimeapi.LinuxContainerResources{Unified: map[string]string{"../memory.max": "1"}}, wantErr: "linux.resources.unified"},
		{name: "oom out of range", res: &runtimeapi.LinuxContainerResources{OomScoreAdj: 1001}, wantErr: "linux.resources.oom_score_adj"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := build(t, testConfig(func(c *runtimeapi.ContainerConfig) { c.Linux.Resources = tc.res }), testImage)
			if tc.wantErr != "" {
				wantInvalid(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := *s.Linux.Resources
			got.Devices = nil
			if !jsonEqual(t, got, tc.want) {
				t.Errorf("resources = %s\nwant        %s", jsonString(t, got), jsonString(t, tc.want))
			}
			if (s.Process.OOMScoreAdj == nil) != (tc.oom == nil) || tc.oom != nil && *s.Process.OOMScoreAdj != *tc.oom {
				t.Errorf("oomScoreAdj = %v, want %v", s.Process.OOMScoreAdj, tc.oom)
			}
		})
	}
}

func TestContainerAnnotationsAndCgroups(t *testing.T) {
	s := mustBuild(t, testConfig(nil), testImage)
	want := map[string]string{
		AnnotationContainerType:    "container",
		AnnotationSandboxID:        "sb1",
		AnnotationContainerName:    "app",
		AnnotationSandboxName:      "web-0",
		AnnotationSandboxNamespace: "default",
		AnnotationSandboxUID:       "uid-1",
		AnnotationImageName:        "registry.local/app:1",
	}
	for k, v := range want {
		if s.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, s.Annotations[k], v)
		}
	}
	if s.Linux.CgroupsPath != "" {
		t.Errorf("cgroupsPath = %q without WithCgroupsPath; the cgroup driver sets it", s.Linux.CgroupsPath)
	}
	if s.Version != specs.Version || s.Hostname != "" {
		t.Errorf("version %q hostname %q", s.Version, s.Hostname)
	}
}

func TestContainerOptions(t *testing.T) {
	rootfs := t.TempDir()
	s, err := fakeHost(testDevices, testDirs).containerSpec("c1", testConfig(nil), testSandboxConfig(), testImage, testSandboxInfo(), rootfs,
		WithCgroupsPath("kubepods-pod123.slice:cri-runtimed:c1"),
		WithOOMScoreAdj(-997), WithPidsLimit(1024), WithMountLabel("m"), WithProcessLabel("p"),
		WithAnnotations(map[string]string{"x": "y"}), WithRootfsReadonly())
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.CgroupsPath != "kubepods-pod123.slice:cri-runtimed:c1" || *s.Process.OOMScoreAdj != -997 ||
		*s.Linux.Resources.Pids.Limit != 1024 || s.Linux.MountLabel != "m" || s.Process.SelinuxLabel != "p" ||
		s.Annotations["x"] != "y" || !s.Root.Readonly || s.Root.Path != rootfs {
		t.Fatalf("options not applied: %s", jsonString(t, s))
	}
	if _, err := fakeHost(testDevices, testDirs).containerSpec("c1", testConfig(nil), testSandboxConfig(), testImage, testSandboxInfo(), "", WithOOMScoreAdj(-2000)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("WithOOMScoreAdj(-2000): err = %v", err)
	}
}

func TestContainerSpecInputs(t *testing.T) {
	h := fakeHost(testDevices, testDirs)
	if _, err := h.containerSpec("", testConfig(nil), testSandboxConfig(), testImage, testSandboxInfo(), ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty id: %v", err)
	}
	if _, err := h.containerSpec("c", nil, testSandboxConfig(), testImage, testSandboxInfo(), ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil config: %v", err)
	}
	if _, err := h.containerSpec("c", testConfig(func(c *runtimeapi.ContainerConfig) { c.Metadata = nil }), testSandboxConfig(), testImage, testSandboxInfo(), ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("no metadata: %v", err)
	}
	if _, err := h.containerSpec("c", testConfig(nil), testSandboxConfig(), testImage, testSandboxInfo(), "/nonexistent/rootfs"); err == nil || errors.Is(err, ErrInvalid) {
		t.Errorf("missing rootfs: %v, want an I/O error", err)
	}
	// The exported entry point works on a real host too.
	if _, err := ContainerSpec("c", testConfig(nil), testSandboxConfig(), testImage, testSandboxInfo(), ""); err != nil {
		t.Errorf("ContainerSpec: %v", err)
	}
}
