package shim

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestFindBinary(t *testing.T) {
	want := VersionLine("1.2.3", "abc")
	tests := []struct {
		name   string
		script string // the shim binary's content; "" for none
		ok     bool
	}{
		{name: "absent", script: ""},
		{name: "same build", script: "#!/bin/sh\necho '" + want + "'\n", ok: true},
		{name: "another build", script: "#!/bin/sh\necho '" + VersionLine("1.2.2", "abd") + "'\n"},
		{name: "fails", script: "#!/bin/sh\necho broken >&2\nexit 3\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			daemon := filepath.Join(dir, "cri-runtimed")
			if tt.script != "" {
				if err := os.WriteFile(filepath.Join(dir, BinaryName), []byte(tt.script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			got, err := FindBinary(context.Background(), daemon, want)
			if tt.ok {
				if err != nil || got != filepath.Join(dir, BinaryName) {
					t.Fatalf("FindBinary = %q, %v; want the shim beside the daemon", got, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("FindBinary = %q, want an error", got)
			}
		})
	}
}
