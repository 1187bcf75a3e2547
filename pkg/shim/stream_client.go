package shim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// streamDialTimeout bounds connecting to the shim and its answer to the
// stream header (the exec's runtime invocation is part of it).
const streamDialTimeout = runtimeTimeout + 10*time.Second

// Stdio are the caller's ends of a streaming exec or attach. A nil member
// is not connected.
type Stdio struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Resize delivers terminal sizes; it may be closed at any time.
	Resize <-chan WinSize
}

// ExecRequest starts a process in a running container with its stdio
// streamed.
type ExecRequest struct {
	ID string
	// Process is an OCI runtime-spec Process as JSON; its terminal field
	// must match Terminal.
	Process  []byte
	Terminal bool
}

// Errors of streaming sessions; match with errors.Is.
var (
	// ErrStreamBroken reports a stream to the shim that ended without an
	// exit: the shim died or the connection failed.
	ErrStreamBroken = errors.New("stream to the shim ended unexpectedly")
	// ErrDetached reports an exec whose user went away (ctx, a failed
	// output write, a terminal's stdin ending) before the process exited.
	ErrDetached = errors.New("stream closed before the process exited")
)

// Exec runs a process in a running container and connects it to stdio
// until it exits; it returns the exit code (128+n for signal n). Stdin's
// end closes the process's stdin; with a terminal, which has no
// end-of-file, it hangs the terminal up instead. When ctx ends or writing
// to Stdout or Stderr fails (the user went away), the stream is closed and
// the shim hangs up the process's stdio, which is not killed.
func (c *Client) Exec(ctx context.Context, req ExecRequest, stdio Stdio) (int32, error) {
	hdr := streamHeader{
		Op: opExec, ID: req.ID, Process: req.Process, Terminal: req.Terminal,
		Stdin: stdio.Stdin != nil, Stdout: stdio.Stdout != nil, Stderr: stdio.Stderr != nil && !req.Terminal,
	}
	code, exited, err := c.stream(ctx, hdr, stdio)
	if err != nil {
		return 0, err
	}
	if !exited {
		return 0, fmt.Errorf("exec in %s: %w", req.ID, ErrDetached)
	}
	return code, nil
}

// Attach connects stdio to the container's own stdio until the container
// exits, ctx ends, or the user goes away (writing output fails, or stdin
// ends for a terminal). Detaching leaves the container running. Stdin
// requires a container created with stdin.
func (c *Client) Attach(ctx context.Context, id string, terminal bool, stdio Stdio) error {
	hdr := streamHeader{
		Op: opAttach, ID: id, Terminal: terminal,
		Stdin: stdio.Stdin != nil, Stdout: stdio.Stdout != nil, Stderr: stdio.Stderr != nil && !terminal,
	}
	_, _, err := c.stream(ctx, hdr, stdio)
	return err
}

// stream runs one stream session. exited reports whether the shim sent
// an exit; err is set for a refusal or a broken stream, not for a user
// who went away (that is a normal end of a session).
func (c *Client) stream(ctx context.Context, hdr streamHeader, stdio Stdio) (code int32, exited bool, err error) {
	if c.stateDir == "" {
		return 0, false, errors.New("stream: client has no shim state dir")
	}
	dctx, cancel := context.WithTimeout(ctx, streamDialTimeout)
	defer cancel()
	sock, release, err := socketPath(c.stateDir, socketName)
	if err != nil {
		return 0, false, fmt.Errorf("%s stream: %w: %w", hdr.Op, ErrShimGone, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(dctx, "unix", sock)
	release()
	if err != nil {
		if ctx.Err() != nil {
			return 0, false, fmt.Errorf("%s stream: %w", hdr.Op, ctx.Err())
		}
		return 0, false, fmt.Errorf("%s stream: %w: %w", hdr.Op, ErrShimGone, err)
	}
	defer conn.Close()
	fc := newFrameConn(conn, nil)

	// Until the shim answered, ctx (and the dial timeout) end the wait by
	// closing the connection.
	answered := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		select {
		case <-dctx.Done():
			conn.Close()
		case <-answered:
		}
	}()
	typ, payload, err := c.openStream(fc, hdr)
	close(answered)
	watch.Wait()
	if err != nil {
		if ctx.Err() != nil {
			return 0, false, fmt.Errorf("%s stream: %w", hdr.Op, ctx.Err())
		}
		return 0, false, fmt.Errorf("%s stream: %w: %w", hdr.Op, ErrShimGone, err)
	}
	switch typ {
	case frameStarted:
	case frameError:
		return 0, false, decodeError(string(payload))
	default:
		return 0, false, fmt.Errorf("%s stream: unexpected frame %q", hdr.Op, typ)
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // ends with the session
		defer wg.Done()
		select {
		case <-ctx.Done():
			conn.Close()
		case <-done:
		}
	}()
	if stdio.Resize != nil && hdr.Terminal {
		wg.Add(1)
		go func() { // ends with the session or when Resize is closed
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				case ws, ok := <-stdio.Resize:
					if !ok {
						return
					}
					if fc.write(frameResize, encodeWinSize(ws)) != nil {
						return
					}
				}
			}
		}()
	}
	if stdio.Stdin != nil {
		// Not waited for: it blocks in Stdin.Read, which only the
		// stdin's owner can end (the streaming library closes the
		// stream right after the session returns). Once the session
		// is over every write it tries fails, and it returns.
		go copyStdin(fc, stdio.Stdin, hdr.Terminal)
	}
	code, exited, err = readOutput(fc, stdio)
	close(done)
	conn.Close()
	wg.Wait()
	if !exited && ctx.Err() != nil {
		err = fmt.Errorf("%s stream: %w", hdr.Op, ctx.Err())
	}
	return code, exited, err
}

// openStream sends the header and reads the shim's answer.
func (c *Client) openStream(fc *frameConn, hdr streamHeader) (byte, []byte, error) {
	b, err := json.Marshal(hdr)
	if err != nil {
		return 0, nil, fmt.Errorf("encode stream header: %w", err)
	}
	var buf bytes.Buffer
	buf.WriteByte(streamMagic)
	buf.Write(b)
	buf.WriteByte('\n')
	if _, err := fc.conn.Write(buf.Bytes()); err != nil {
		return 0, nil, err
	}
	typ, p, err := fc.read(nil)
	if err != nil {
		return 0, nil, err
	}
	return typ, bytes.Clone(p), nil
}

// copyStdin forwards stdin to the shim. At stdin's end it sends
// stdin-close, or, for a terminal, hangs up by closing the connection.
func copyStdin(fc *frameConn, in io.Reader, terminal bool) {
	buf := make([]byte, maxFramePayload)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if fc.write(frameStdin, buf[:n]) != nil {
				return
			}
		}
		if err != nil {
			if terminal {
				fc.conn.Close()
				return
			}
			_ = fc.write(frameStdinClose, nil)
			return
		}
	}
}

// readOutput copies output frames to stdio until the exit frame or the
// end of the connection. A failed write to stdio means the user went
// away: the session ends without error.
func readOutput(fc *frameConn, stdio Stdio) (int32, bool, error) {
	buf := make([]byte, maxFramePayload)
	for {
		typ, p, err := fc.read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return 0, false, nil // we closed it: ctx ended or stdin hung up
			}
			return 0, false, fmt.Errorf("%w: %w", ErrStreamBroken, err)
		}
		var w io.Writer
		switch typ {
		case frameStdout:
			w = stdio.Stdout
		case frameStderr:
			w = stdio.Stderr
		case frameExit:
			code, ok := decodeExit(p)
			if !ok {
				return 0, false, fmt.Errorf("%w: bad exit frame", ErrStreamBroken)
			}
			return code, true, nil
		default:
			continue
		}
		if w != nil {
			if _, err := w.Write(p); err != nil {
				return 0, false, nil
			}
		}
	}
}
