package shim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

const recordName = "state.json"

// record is the durable form of a container, written on every transition.
type record struct {
	State       State
	Bundle      string
	LogPath     string
	Stdin       bool
	StdinOnce   bool
	Terminal    bool
	CgroupsPath string
	// RestoreFrom: Start restores from these CRIU images (CreateRequest).
	RestoreFrom string `json:",omitempty"`
	// Pause: the shim started the pause itself (CreateRequest.Pause); no
	// OCI runtime knows it.
	Pause bool `json:",omitempty"`
}

// writeFileAtomic replaces path with data so that a crash leaves either the
// old or the new content, never a torn file.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	cleanup := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return cleanup(err)
	}
	if err := f.Sync(); err != nil {
		return cleanup(err)
	}
	if err := f.Close(); err != nil {
		return cleanup(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir of %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir of %s: %w", path, err)
	}
	return nil
}

func saveRecord(dir string, r *record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, recordName), b)
}

func loadRecord(dir string) (*record, error) {
	b, err := os.ReadFile(filepath.Join(dir, recordName))
	if err != nil {
		return nil, fmt.Errorf("read record: %w", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Join(dir, recordName), err)
	}
	return &r, nil
}
