package shim

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"
)

// TestFrames checks the framing without a shim: large payloads are split,
// empty frames survive, oversized frames are refused, and the header line
// is read back whole.
func TestFrames(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	w, r := newFrameConn(a, nil), newFrameConn(b, nil)
	big := bytes.Repeat([]byte("x"), 3*maxFramePayload+7)
	go func() {
		_ = w.write(frameStdout, big)
		_ = w.write(frameStarted, nil)
		_ = w.write(frameResize, encodeWinSize(WinSize{Width: 80, Height: 24}))
		_ = w.write(frameExit, encodeExit(-3))
	}()
	var got []byte
	for len(got) < len(big) {
		typ, p, err := r.read(nil)
		if err != nil || typ != frameStdout || len(p) > maxFramePayload {
			t.Fatalf("read: %q %d %v", typ, len(p), err)
		}
		got = append(got, p...)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("payload mismatch")
	}
	if typ, p, err := r.read(nil); err != nil || typ != frameStarted || len(p) != 0 {
		t.Fatalf("empty frame: %q %q %v", typ, p, err)
	}
	if typ, p, err := r.read(nil); err != nil || typ != frameResize {
		t.Fatalf("resize frame: %q %v", typ, err)
	} else if ws, ok := decodeWinSize(p); !ok || ws != (WinSize{80, 24}) {
		t.Fatalf("resize = %+v", ws)
	}
	if typ, p, err := r.read(nil); err != nil || typ != frameExit {
		t.Fatalf("exit frame: %q %v", typ, err)
	} else if c, ok := decodeExit(p); !ok || c != -3 {
		t.Fatalf("exit = %d", c)
	}

	// A peer announcing a frame over the limit is refused.
	go func() { _, _ = a.Write([]byte{frameStdin, 0xff, 0xff, 0xff, 0xff}) }()
	if _, _, err := r.read(nil); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("oversized frame: %v", err)
	}
}

func TestStreamHeader(t *testing.T) {
	long := strings.Repeat("E", 8000)
	in := "\x00" + `{"op":"exec","id":"c1","process":{"args":["sh"],"env":["` + long + `"]},"tty":true,"stdin":true}` + "\n"
	hdr, err := readStreamHeader(bufio.NewReaderSize(strings.NewReader(in), 16))
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Op != opExec || hdr.ID != "c1" || !hdr.Terminal || !hdr.Stdin || !strings.Contains(string(hdr.Process), long) {
		t.Fatalf("header = %+v", hdr)
	}
	if _, err := readStreamHeader(bufio.NewReader(strings.NewReader("{}\n"))); err == nil {
		t.Fatal("header without magic accepted")
	}
	huge := "\x00" + strings.Repeat(" ", maxStreamHeader+10) + "\n"
	if _, err := readStreamHeader(bufio.NewReader(strings.NewReader(huge))); err == nil {
		t.Fatal("oversized header accepted")
	}
}
