package shim

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Streaming exec and attach protocol.
//
// A stream is one unix connection to the shim's socket, separate from the
// net/rpc connection, and lives exactly as long as the exec or attach it
// carries: when either side closes it, the other releases everything the
// stream held. That makes cleanup after a client that went away a
// consequence of the connection closing, not of a second call that may
// never come.
//
// The daemon opens the connection and writes one header line: the byte
// streamMagic, then a JSON streamHeader, then '\n'. streamMagic (0x00) can
// never start a net/rpc (gob) connection, whose first byte is the positive
// length of its first message, so the shim tells the two apart by peeking
// at one byte. After the header both directions carry frames: a type byte,
// a big-endian uint32 payload length, the payload. The shim answers the
// header with frameStarted or frameError, then sends output frames and, at
// the end, one frameExit. The daemon sends stdin, stdin-close and resize
// frames.
const (
	streamMagic = 0x00
	// maxStreamHeader bounds the header line (it carries the exec's OCI
	// process, environment included).
	maxStreamHeader = 1 << 20
	// maxFramePayload bounds one frame; larger writes are split.
	maxFramePayload = 32 << 10
)

// Frame types. Daemon to shim: stdin data, stdin closed, terminal resize.
// Shim to daemon: started, stdout, stderr, exit (int32 code), error.
const (
	frameStdin      byte = 'i'
	frameStdinClose byte = 'c'
	frameResize     byte = 'r'
	frameStarted    byte = 's'
	frameStdout     byte = 'o'
	frameStderr     byte = 'e'
	frameExit       byte = 'x'
	frameError      byte = '!'
)

// Stream operations.
const (
	opExec   = "exec"
	opAttach = "attach"
)

// streamHeader opens a stream.
type streamHeader struct {
	Op string `json:"op"`
	ID string `json:"id"`
	// Process is the exec's OCI runtime-spec Process as JSON.
	Process  json.RawMessage `json:"process,omitempty"`
	Terminal bool            `json:"tty,omitempty"`
	Stdin    bool            `json:"stdin,omitempty"`
	Stdout   bool            `json:"stdout,omitempty"`
	Stderr   bool            `json:"stderr,omitempty"`
}

// WinSize is a terminal size in character cells.
type WinSize struct {
	Width, Height uint16
}

// errFrameTooLarge is a protocol violation by the peer.
var errFrameTooLarge = errors.New("stream frame too large")

// frameConn reads and writes frames on a stream connection. Reads happen
// on one goroutine; writes may come from several and are serialized.
type frameConn struct {
	conn net.Conn
	r    *bufio.Reader
	wmu  sync.Mutex
	hdr  [5]byte
}

func newFrameConn(conn net.Conn, r *bufio.Reader) *frameConn {
	if r == nil {
		r = bufio.NewReaderSize(conn, maxFramePayload+5)
	}
	return &frameConn{conn: conn, r: r}
}

// write sends p as one or more frames of type typ; an empty p sends one
// empty frame.
func (f *frameConn) write(typ byte, p []byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	for first := true; first || len(p) > 0; first = false {
		n := min(len(p), maxFramePayload)
		var h [5]byte
		h[0] = typ
		binary.BigEndian.PutUint32(h[1:], uint32(n))
		// One write per frame: net.Buffers turns into writev.
		bufs := net.Buffers{h[:], p[:n]}
		if _, err := bufs.WriteTo(f.conn); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// read returns the next frame. The payload is valid until the next read.
func (f *frameConn) read(buf []byte) (byte, []byte, error) {
	if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(f.hdr[1:])
	if n > maxFramePayload {
		return 0, nil, fmt.Errorf("%w: %d bytes", errFrameTooLarge, n)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(f.r, buf); err != nil {
		return 0, nil, err
	}
	return f.hdr[0], buf, nil
}

func encodeWinSize(s WinSize) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint16(b, s.Width)
	binary.BigEndian.PutUint16(b[2:], s.Height)
	return b
}

func decodeWinSize(p []byte) (WinSize, bool) {
	if len(p) != 4 {
		return WinSize{}, false
	}
	return WinSize{Width: binary.BigEndian.Uint16(p), Height: binary.BigEndian.Uint16(p[2:])}, true
}

func encodeExit(code int32) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(code))
}

func decodeExit(p []byte) (int32, bool) {
	if len(p) != 4 {
		return 0, false
	}
	return int32(binary.BigEndian.Uint32(p)), true
}

// setWinsize resizes the terminal whose master is f. It goes through
// SyscallConn because Fd would put the file back into blocking mode, and
// Close could then no longer interrupt a pending Read.
func setWinsize(f *os.File, s WinSize) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("resize terminal: %w", err)
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: s.Height, Col: s.Width})
	}); err != nil {
		return fmt.Errorf("resize terminal: %w", err)
	}
	if ierr != nil {
		return fmt.Errorf("resize terminal: %w", ierr)
	}
	return nil
}
