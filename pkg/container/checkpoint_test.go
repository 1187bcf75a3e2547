package container

import (
	"os"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-runtimed/cri-runtimed/pkg/checkpoint"
)

// TestRestoreIntoNewCgroup: a restored container's spec names a CRIU
// config whose cgroup root is the container's new cgroup, in either
// driver's form.
func TestRestoreIntoNewCgroup(t *testing.T) {
	for _, tc := range []struct{ cgroupsPath, want string }{
		{"kubepods-besteffort-pod1.slice:cri-runtimed:abc", "cgroup-root /kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-runtimed-abc.scope\n"},
		{"/kubepods/besteffort/pod1/abc", "cgroup-root /kubepods/besteffort/pod1/abc\n"},
	} {
		ckpt := &checkpoint.Checkpoint{Dir: t.TempDir()}
		spec := &specs.Spec{Linux: &specs.Linux{CgroupsPath: tc.cgroupsPath}}
		if err := restoreIntoNewCgroup(spec, ckpt); err != nil {
			t.Fatalf("%s: %v", tc.cgroupsPath, err)
		}
		conf := spec.Annotations[checkpoint.CRIUConfigAnnotation]
		if !strings.HasPrefix(conf, ckpt.Dir+"/") {
			t.Fatalf("%s: annotation %q is not in the checkpoint's directory %s", tc.cgroupsPath, conf, ckpt.Dir)
		}
		b, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(string(b), tc.want) {
			t.Errorf("%s: CRIU config\n%s\ndoes not end with %q", tc.cgroupsPath, b, tc.want)
		}
	}
}
