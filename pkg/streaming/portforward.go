package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/cri-runtimed/cri-runtimed/pkg/netns"
)

const (
	// dialTimeout bounds connecting to the port in the pod.
	dialTimeout = 10 * time.Second
	// halfCloseLinger is how long the pod side may stay silent after the
	// client finished sending before the forward gives up on it. The
	// client's end of the stream cannot tell "done sending" from "gone",
	// so waiting forever would pin a forward whose client left.
	halfCloseLinger = time.Minute
	// readPoll is how often a forward that waits for the pod checks
	// whether the client half-closed.
	readPoll = time.Second
)

// ForwardPort connects stream to TCP port on the loopback of the network
// namespace pinned at netnsPath ("" means the host's: a pod on the host
// network) and copies both ways until the pod side is done. A failed dial
// (nothing listens) is returned, for the library to send on the stream's
// error channel.
//
// The socket is created by a thread inside the namespace and stays there
// when the thread leaves: a socket belongs to the namespace it was made
// in, so the copying happens on ordinary goroutines.
func ForwardPort(ctx context.Context, netnsPath string, port int32, stream io.ReadWriteCloser) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("invalid port %d", port)
	}
	conn, err := dialLoopback(ctx, netnsPath, port)
	if err != nil {
		return err
	}
	defer conn.Close()

	// Client to pod. Not waited for: it blocks in stream.Read, which only
	// ends when the client closes its side or the library resets the
	// stream after this function returned.
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		if _, err := io.Copy(conn, stream); err == nil {
			// The client finished sending: pass the half-close on, as a
			// request-then-response protocol needs.
			_ = conn.CloseWrite()
		}
	}()

	// Pod to client, until the pod closes, the client cannot take more, or
	// the pod stays silent for halfCloseLinger after the client's
	// half-close. Reads poll so that the half-close is noticed.
	buf := make([]byte, 32<<10)
	var silentSince time.Time
	for {
		_ = conn.SetReadDeadline(time.Now().Add(readPoll))
		n, err := conn.Read(buf)
		if n > 0 {
			silentSince = time.Time{}
			if _, werr := stream.Write(buf[:n]); werr != nil {
				return nil // the client went away
			}
		}
		var ne net.Error
		switch {
		case err == nil:
		case errors.As(err, &ne) && ne.Timeout():
			select {
			case <-clientDone:
				if silentSince.IsZero() {
					silentSince = time.Now()
				} else if time.Since(silentSince) > halfCloseLinger {
					return nil
				}
			default:
			}
		case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			return nil
		default:
			return fmt.Errorf("read from port %d: %w", port, err)
		}
	}
}

// dialLoopback dials 127.0.0.1:port from inside the network namespace.
func dialLoopback(ctx context.Context, netnsPath string, port int32) (*net.TCPConn, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	dial := func() (net.Conn, error) {
		d := net.Dialer{Timeout: dialTimeout}
		return d.DialContext(ctx, "tcp4", addr)
	}
	var (
		conn net.Conn
		err  error
	)
	if netnsPath == "" {
		conn, err = dial()
	} else {
		ns, oerr := netns.Open(netnsPath)
		if oerr != nil {
			return nil, fmt.Errorf("pod network namespace: %w", oerr)
		}
		if derr := ns.Do(func() error { conn, err = dial(); return nil }); derr != nil {
			return nil, derr
		}
	}
	if err != nil {
		return nil, fmt.Errorf("connect to port %d in the pod: %w", port, err)
	}
	return conn.(*net.TCPConn), nil
}
