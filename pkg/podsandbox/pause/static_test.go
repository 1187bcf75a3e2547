package pause

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckStatic(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatalf("gcc builds the test's programs: %v", err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "main.c")
	if err := os.WriteFile(src, []byte("int main(void) { return 0; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		flags  []string
		static bool
	}{
		{"static", []string{"-static"}, true},
		{"dynamic", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := filepath.Join(dir, tc.name)
			if out, err := exec.Command("gcc", append(tc.flags, "-o", bin, src)...).CombinedOutput(); err != nil {
				t.Fatalf("gcc: %v: %s", err, out)
			}
			err := CheckStatic(bin)
			if tc.static && err != nil {
				t.Errorf("a static executable is refused: %v", err)
			}
			if !tc.static && (err == nil || !strings.Contains(err.Error(), "dynamically linked")) {
				t.Errorf("a dynamic executable: %v, want refused as dynamically linked", err)
			}
		})
	}
	if err := CheckStatic(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing executable is not an error")
	}
}
