package shim

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cri-runtimed/cri-runtimed/pkg/internal/powercut"
)

// TestRecordDurable cuts the power right after a container's exit is
// recorded: the record must be on the disk, whole (see package powercut).
// The shim's state normally lives on tmpfs, where a power cut loses it
// with the containers it describes; on a node whose state directory is on
// disk, an exit the shim reported must still read back after a reboot.
func TestRecordDurable(t *testing.T) {
	disk := powercut.New(t, t.TempDir())
	disk.Control(t)
	dir := filepath.Join(disk.Dir, "shim", "c1")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	want := &record{State: State{ID: "c1", Pid: 42, Status: StatusExited, ExitCode: 3, FinishedAt: time.Unix(1700000000, 0).UTC(), Reason: ReasonError}, Bundle: "/b"}
	if err := saveRecord(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := loadRecord(filepath.Join(disk.Cut(t), "shim", "c1"))
	if err != nil {
		t.Fatalf("the exit record did not survive a power cut: %v", err)
	}
	if got.State != want.State || got.Bundle != want.Bundle {
		t.Fatalf("record after the power cut = %+v, want %+v", got, want)
	}
}
