package crilog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Defaults for Options.
const (
	DefaultMaxLineSize = 16 << 10
	DefaultMaxBuffer   = 1 << 20
)

// retryInterval bounds how often a write retries opening a log file that
// could not be reopened, so a missing directory does not cost an open(2)
// per line.
const retryInterval = time.Second

// Options tune a Writer. Zero values mean the defaults.
type Options struct {
	// MaxLineSize is the largest content of one record; longer lines are
	// split into P records.
	MaxLineSize int
	// MaxBuffer bounds the bytes held in memory while the file cannot be
	// (re)opened; beyond it the oldest records are dropped.
	MaxBuffer int
	// Now is the clock for timestamps (tests).
	Now func() time.Time
}

// Writer appends records to one container's CRI log file. All methods are
// safe for concurrent use; records are written whole, so lines of stdout and
// stderr never interleave inside a record.
type Writer struct {
	path string
	opts Options

	mu           sync.Mutex
	f            *os.File // nil while the file cannot be opened
	pending      [][]byte // formatted records waiting for an openable file
	pendingBytes int
	droppedBytes int
	lastTry      time.Time
	scratch      []byte
	closed       bool
}

// Open opens (creating if needed) the log file at path for appending.
func Open(path string, opts Options) (*Writer, error) {
	if opts.MaxLineSize <= 0 {
		opts.MaxLineSize = DefaultMaxLineSize
	}
	if opts.MaxBuffer <= 0 {
		opts.MaxBuffer = DefaultMaxBuffer
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	return &Writer{path: path, opts: opts, f: f}, nil
}

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open container log: %w", err)
	}
	return f, nil
}

// Path returns the file path the writer writes to.
func (w *Writer) Path() string { return w.path }

// MaxLineSize returns the effective maximum record content size.
func (w *Writer) MaxLineSize() int { return w.opts.MaxLineSize }

// WriteRecord writes one record with the current time. Content must not
// contain a newline. While the file cannot be opened the record is buffered
// in memory and nil is returned.
func (w *Writer) WriteRecord(s Stream, partial bool, content []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return os.ErrClosed
	}
	w.scratch = appendRecord(w.scratch[:0], w.opts.Now().UTC(), s, partial, content)
	if w.f == nil && time.Since(w.lastTry) >= retryInterval {
		w.tryOpenLocked()
	}
	if w.f == nil {
		w.bufferLocked(bytes.Clone(w.scratch))
		return nil
	}
	if _, err := w.f.Write(w.scratch); err != nil {
		// A full disk must not stall the container: the record is lost.
		return fmt.Errorf("write container log %s: %w", w.path, err)
	}
	return nil
}

func (w *Writer) bufferLocked(rec []byte) {
	w.pending = append(w.pending, rec)
	w.pendingBytes += len(rec)
	for w.pendingBytes > w.opts.MaxBuffer && len(w.pending) > 0 {
		w.pendingBytes -= len(w.pending[0])
		w.droppedBytes += len(w.pending[0])
		w.pending[0] = nil
		w.pending = w.pending[1:]
	}
}

// tryOpenLocked opens the file and flushes buffered records into it.
func (w *Writer) tryOpenLocked() {
	w.lastTry = time.Now()
	f, err := openFile(w.path)
	if err != nil {
		return
	}
	w.f = f
	if w.droppedBytes > 0 {
		note := fmt.Appendf(nil, "[cri-runtimed: %d bytes of output dropped while the log file could not be reopened]", w.droppedBytes)
		rec := appendRecord(nil, w.opts.Now().UTC(), Stderr, false, note)
		if _, err := f.Write(rec); err != nil {
			klog.ErrorS(err, "Write log drop note", "path", w.path)
		}
		w.droppedBytes = 0
	}
	for _, rec := range w.pending {
		if _, err := f.Write(rec); err != nil {
			klog.ErrorS(err, "Flush buffered log records", "path", w.path)
			break
		}
	}
	w.pending, w.pendingBytes = nil, 0
}

// Reopen closes the current file and opens the path again, as kubelet asks
// after it renamed the file for rotation. If the path cannot be opened the
// error is returned and output is buffered until a later write or Reopen
// succeeds.
func (w *Writer) Reopen() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return os.ErrClosed
	}
	var errs []error
	if w.f != nil {
		if err := w.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close rotated log: %w", err))
		}
		w.f = nil
	}
	w.tryOpenLocked()
	if w.f == nil {
		_, err := openFile(w.path) // for the error text only
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Close closes the file. Records still buffered get one last chance to be
// written.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if w.f == nil && len(w.pending) > 0 {
		w.tryOpenLocked()
	}
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// StreamWriter turns the byte stream of one container stream into records.
// It is used by a single goroutine (the stream's pump); the records it
// produces go through the shared Writer.
type StreamWriter struct {
	w      *Writer
	stream Stream
	buf    []byte
}

// Stream returns a StreamWriter for s.
func (w *Writer) Stream(s Stream) *StreamWriter {
	return &StreamWriter{w: w, stream: s}
}

// Write never fails: a container must not stall or die because its log
// cannot be written, so write errors are logged and the data dropped.
func (sw *StreamWriter) Write(p []byte) (int, error) {
	sw.buf = append(sw.buf, p...)
	max := sw.w.opts.MaxLineSize
	start := 0
	for {
		rest := sw.buf[start:]
		i := bytes.IndexByte(rest, '\n')
		switch {
		case i >= 0 && i <= max:
			sw.emit(false, rest[:i])
			start += i + 1
		case len(rest) > max:
			// Either the newline is too far away or there is none yet:
			// a full-size chunk goes out as a partial record.
			sw.emit(true, rest[:max])
			start += max
		default:
			n := copy(sw.buf, rest)
			sw.buf = sw.buf[:n]
			if cap(sw.buf) > 4*max && n < max {
				// Give back the memory of one huge burst.
				sw.buf = bytes.Clone(sw.buf)
			}
			return len(p), nil
		}
	}
}

// Flush writes buffered content that has no newline yet as a P record. It is
// called at EOF of the stream: the content is not a finished line, and a P
// record lets kubelet show it without inventing a newline.
func (sw *StreamWriter) Flush() {
	if len(sw.buf) == 0 {
		return
	}
	sw.emit(true, sw.buf)
	sw.buf = sw.buf[:0]
}

func (sw *StreamWriter) emit(partial bool, content []byte) {
	if err := sw.w.WriteRecord(sw.stream, partial, content); err != nil {
		klog.ErrorS(err, "Dropping container log record", "path", sw.w.path, "stream", sw.stream)
	}
}
