package crilog

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no line may panic the parser; a line it accepts has a known
// stream and, written back in the same format, parses to the same entry.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"2026-11-22T08:24:43.074843722Z stdout F hello\n",
		"2026-11-22T08:24:43.074913175+01:00 stderr P part",
		"2026-11-22T08:24:43Z stdout F ",
		"bogus stdout F x", "2026-11-22T08:24:43Z stdin F x", "2026-11-22T08:24:43Z stdout X x", "", " ", "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := Parse(line)
		if err != nil {
			return
		}
		if e.Stream != Stdout && e.Stream != Stderr {
			t.Fatalf("accepted stream %q", e.Stream)
		}
		tag := "F"
		if e.Partial {
			tag = "P"
		}
		again, err := Parse([]byte(e.Timestamp.Format("2006-01-02T15:04:05.999999999Z07:00") + " " + string(e.Stream) + " " + tag + " " + string(e.Content)))
		if err != nil || !again.Timestamp.Equal(e.Timestamp) || again.Partial != e.Partial || !bytes.Equal(again.Content, e.Content) {
			t.Fatalf("round trip of %q: %+v, %v", line, again, err)
		}
	})
}

// FuzzWriterRoundTrip: whatever a container writes, in whatever chunks,
// kubelet's reading of the log gives back exactly those bytes.
func FuzzWriterRoundTrip(f *testing.F) {
	f.Add([]byte("hello\nworld\n"), uint8(3), uint16(64))
	f.Add([]byte("no newline at the end"), uint8(1), uint16(256))
	f.Add(bytes.Repeat([]byte("x"), 1000), uint8(7), uint16(300))
	f.Add([]byte("\n\n\n"), uint8(2), uint16(256))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, maxLine uint16) {
		if len(data) > 1<<16 {
			return
		}
		path := filepath.Join(t.TempDir(), "c.log")
		w, err := Open(path, Options{MaxLineSize: 256 + int(maxLine)%4096})
		if err != nil {
			t.Fatal(err)
		}
		sw := w.Stream(Stdout)
		step := int(chunk)%17 + 1
		for i := 0; i < len(data); i += step {
			sw.Write(data[i:min(i+step, len(data))])
		}
		sw.Flush()
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		lines, err := ReadLines(f)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		for _, l := range lines {
			got = append(got, l.Content...)
			if l.Complete {
				got = append(got, '\n')
			}
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("log gives back %q, container wrote %q", got, data)
		}
	})
}
