package userns

import (
	"os"
	"testing"
)

func TestProbe(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("idmapped mounts need root")
	}
	// This machine's kernel (6.x) idmaps tmpfs and ext4 alike; the
	// probe must leave nothing behind.
	dir := t.TempDir()
	if err := Probe(dir); err != nil {
		t.Fatalf("Probe(%s): %v", dir, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("Probe left %v", entries)
	}
	if !MountSetattrSupported() {
		t.Errorf("MountSetattrSupported() = false on a kernel with mount_setattr")
	}
	if err := Probe("/proc/self"); err == nil {
		t.Errorf("Probe of a directory where nothing can be created succeeded")
	}
}
