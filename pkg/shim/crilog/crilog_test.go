package crilog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		line    string
		want    Entry
		wantErr bool
	}{
		{line: "2024-01-02T03:04:05.123456789Z stdout F hello world\n", want: Entry{Stream: Stdout, Content: []byte("hello world")}},
		{line: "2024-01-02T03:04:05Z stderr P part", want: Entry{Stream: Stderr, Partial: true, Content: []byte("part")}},
		{line: "2024-01-02T03:04:05+01:00 stdout F ", want: Entry{Stream: Stdout, Content: []byte{}}},
		{line: "not-a-time stdout F x", wantErr: true},
		{line: "2024-01-02T03:04:05Z stdin F x", wantErr: true},
		{line: "2024-01-02T03:04:05Z stdout X x", wantErr: true},
		{line: "2024-01-02T03:04:05Z", wantErr: true},
	}
	for _, tc := range tests {
		got, err := Parse([]byte(tc.line))
		if tc.wantErr {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Parse(%q) error = %v, want ErrMalformed", tc.line, err)
			}
			continue
		}
		if err != nil || got.Stream != tc.want.Stream || got.Partial != tc.want.Partial || !bytes.Equal(got.Content, tc.want.Content) {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.line, got, err, tc.want)
		}
	}
}

func TestStreamWriterRecords(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		max    int
		want   []string // tag+content per record
	}{
		{"full lines", []string{"a\nb\n"}, 8, []string{"F a", "F b"}},
		{"line split across writes", []string{"ab", "c\n"}, 8, []string{"F abc"}},
		{"long line", []string{strings.Repeat("x", 10) + "\n"}, 4, []string{"P xxxx", "P xxxx", "F xx"}},
		{"exactly max", []string{"abcd\n"}, 4, []string{"F abcd"}},
		{"unterminated flushed as partial", []string{"a\ntail"}, 8, []string{"F a", "P tail"}},
		{"empty line", []string{"\n"}, 8, []string{"F "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			w, err := Open(path, Options{MaxLineSize: tc.max})
			if err != nil {
				t.Fatal(err)
			}
			sw := w.Stream(Stdout)
			for _, s := range tc.writes {
				sw.Write([]byte(s))
			}
			sw.Flush()
			w.Close()
			if got := records(t, path); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("records = %q, want %q", got, tc.want)
			}
		})
	}
}

func records(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := NewReader(f)
	var out []string
	for {
		e, err := r.Next()
		if err != nil {
			return out
		}
		tag := "F "
		if e.Partial {
			tag = "P "
		}
		out = append(out, tag+string(e.Content))
	}
}

func TestReopenBuffersWhileDirMissing(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "pod")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "0.log")
	w, err := Open(path, Options{MaxBuffer: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.WriteRecord(Stdout, false, []byte("before"))
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err == nil {
		t.Fatal("Reopen succeeded without a directory")
	}
	for i := 0; i < 5; i++ { // more than MaxBuffer: the oldest are dropped
		w.WriteRecord(Stdout, false, []byte("buffered-"+strings.Repeat("x", i)))
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	w.WriteRecord(Stdout, false, []byte("after"))
	got := records(t, path)
	if len(got) < 3 || !strings.Contains(got[0], "dropped") || got[len(got)-1] != "F after" || got[len(got)-2] != "F buffered-xxxx" {
		t.Errorf("records after reopen = %q", got)
	}
	if old := records(t, filepath.Join(dir+".old", "0.log")); len(old) != 1 || old[0] != "F before" {
		t.Errorf("old file = %q", old)
	}
}

func TestReadLinesReassembles(t *testing.T) {
	ts := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	var buf []byte
	buf = appendRecord(buf, ts, Stdout, true, []byte("ab"))
	buf = appendRecord(buf, ts, Stderr, false, []byte("err"))
	buf = appendRecord(buf, ts, Stdout, false, []byte("cd"))
	lines, err := ReadLines(bytes.NewReader(buf))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || string(lines[0].Content) != "abcd" || !lines[0].Complete || string(lines[1].Content) != "err" {
		t.Errorf("lines = %+v", lines)
	}
}
