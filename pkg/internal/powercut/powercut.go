// Package powercut simulates a power cut in tests: a filesystem whose
// "disk" can be copied at any instant as a power loss would leave it.
//
// The filesystem is ext4 on a loop device. A loop device turns each
// block write the filesystem issues into a write to its backing file, so
// the backing file holds exactly what reached the device: a copy of it is
// the disk after a power cut at that instant. Dirty pages still in the
// page cache of the filesystem on the loop device are not in it.
// (posix_fadvise(POSIX_FADV_DONTNEED) cannot simulate this: it never
// drops dirty pages, it writes them back.) The filesystem is mounted with
// a 10 minute journal commit interval and the kernel writes dirty data
// back after 30 s, so within a test nothing reaches the device unless the
// code under test syncs it. Mounting the copy replays the journal, as a
// reboot would.
//
// What a test built on it proves: data the code claimed durable was on
// the device when the claim was made. It does not model a disk that
// loses its volatile write cache (the loop device has none). A sync(2)
// by another process during the test can only make unsynced data look
// durable, never the reverse; Disk.Control checks the setup can see
// unsynced data at all.
//
// Needs root, mkfs.ext4 (e2fsprogs) and losetup (mount).
package powercut

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Disk is a freshly made ext4 filesystem mounted at Dir.
type Disk struct {
	Dir string
	img string
}

// New makes and mounts a 64 MiB filesystem under base; it is unmounted
// and released when the test ends.
func New(t testing.TB, base string) *Disk {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("simulating a power cut needs root (loop devices, mounts)")
	}
	for _, tool := range []string{"mkfs.ext4", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make deps installs e2fsprogs and mount): %v", tool, err)
		}
	}
	d := &Disk{Dir: filepath.Join(base, "disk"), img: filepath.Join(base, "disk.img")}
	if err := os.WriteFile(d.img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(d.img, 64<<20); err != nil {
		t.Fatal(err)
	}
	// No lazy initialisation: nothing may write to the device behind the
	// test's back.
	run(t, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", d.img)
	mountLoop(t, d.img, d.Dir)
	return d
}

// Cut copies the disk as it is now and mounts the copy; it returns the
// copy's mount point, where Dir's content after the power cut is.
func (d *Disk) Cut(t testing.TB) string {
	t.Helper()
	img := fmt.Sprintf("%s.cut-%d", d.img, time.Now().UnixNano())
	copyFile(t, d.img, img)
	mnt := img + ".mnt"
	mountLoop(t, img, mnt)
	return mnt
}

// Control writes a few files under Dir without syncing them and fails
// the test unless a power cut loses them: otherwise the setup cannot tell
// durable from not.
func (d *Disk) Control(t testing.TB) {
	t.Helper()
	files := RandomFiles(20, 1)
	for name, b := range files {
		p := filepath.Join(d.Dir, "control", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if Lost(d.Cut(t), "control", files) == 0 {
		t.Fatalf("control: %d unsynced files survived the simulated power cut; this setup cannot test durability (did something call sync?)", len(files))
	}
}

// Lost counts the files (relative to dir under root) that are missing or
// differ from want.
func Lost(root, dir string, want map[string][]byte) int {
	lost := 0
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(root, dir, name))
		if err != nil || !bytes.Equal(got, b) {
			lost++
		}
	}
	return lost
}

// RandomFiles returns n files of 1 to 64 KiB of random bytes in up to 10
// directories, named d<i>/f<n>.
func RandomFiles(n int, seed int64) map[string][]byte {
	r := rand.New(rand.NewSource(seed))
	out := map[string][]byte{}
	for i := range n {
		b := make([]byte, 1024+r.Intn(63*1024))
		r.Read(b)
		out[fmt.Sprintf("d%d/f%04d", i%10, i)] = b
	}
	return out
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
}

func mountLoop(t testing.TB, img, mnt string) {
	t.Helper()
	dev := strings.TrimSpace(run(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dev, mnt, "ext4", 0, "commit=600"); err != nil {
		t.Fatalf("mount %s: %v", dev, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
