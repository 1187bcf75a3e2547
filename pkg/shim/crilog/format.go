package crilog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
)

// Stream names the container output stream a record came from.
type Stream string

// The two streams kubelet knows. TTY output is reported as Stdout.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

const (
	tagFull    = 'F'
	tagPartial = 'P'
)

// Entry is one parsed log record.
type Entry struct {
	Timestamp time.Time
	Stream    Stream
	// Partial is true for a P record: Content continues in the next record
	// of the same stream.
	Partial bool
	// Content never includes the terminating newline of the record.
	Content []byte
}

// ErrMalformed is returned by Parse for a line that is not a CRI record.
var ErrMalformed = errors.New("malformed CRI log record")

// Parse parses one record. A trailing newline is accepted and dropped. The
// returned Content aliases line.
func Parse(line []byte) (Entry, error) {
	line = bytes.TrimSuffix(line, []byte{'\n'})
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return Entry{}, fmt.Errorf("%w: no timestamp delimiter", ErrMalformed)
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return Entry{}, fmt.Errorf("%w: timestamp: %w", ErrMalformed, err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return Entry{}, fmt.Errorf("%w: no stream delimiter", ErrMalformed)
	}
	e := Entry{Timestamp: t, Stream: Stream(stream)}
	if e.Stream != Stdout && e.Stream != Stderr {
		return Entry{}, fmt.Errorf("%w: unknown stream %q", ErrMalformed, stream)
	}
	tag, content, _ := bytes.Cut(rest, []byte{' '})
	switch {
	case len(tag) == 1 && tag[0] == tagFull:
	case len(tag) == 1 && tag[0] == tagPartial:
		e.Partial = true
	default:
		return Entry{}, fmt.Errorf("%w: unknown tag %q", ErrMalformed, tag)
	}
	e.Content = content
	return e, nil
}

// appendRecord formats one record onto buf.
func appendRecord(buf []byte, t time.Time, s Stream, partial bool, content []byte) []byte {
	buf = t.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, ' ')
	buf = append(buf, s...)
	if partial {
		buf = append(buf, ' ', tagPartial, ' ')
	} else {
		buf = append(buf, ' ', tagFull, ' ')
	}
	buf = append(buf, content...)
	return append(buf, '\n')
}

// Reader reads records from a CRI log file.
type Reader struct {
	br *bufio.Reader
}

// NewReader returns a Reader over r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10)}
}

// Next returns the next record, or io.EOF. Content is a fresh copy.
func (r *Reader) Next() (Entry, error) {
	line, err := r.br.ReadBytes('\n')
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			// A record cut short by a crash or a concurrent writer.
			return Entry{}, fmt.Errorf("%w: unterminated record", ErrMalformed)
		}
		return Entry{}, err
	}
	return Parse(line)
}

// Line is a logical line after reassembly of partial records.
type Line struct {
	Timestamp time.Time // of the first record of the line
	Stream    Stream
	Content   []byte
	// Complete is false when the stream ended without a newline.
	Complete bool
}

// ReadLines reads all records from r and joins P records with the records
// that complete them, per stream, the way kubelet does.
func ReadLines(r io.Reader) ([]Line, error) {
	rd := NewReader(r)
	var out []Line
	open := map[Stream]int{} // stream -> index in out of its unfinished line
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		i, ok := open[e.Stream]
		if !ok {
			out = append(out, Line{Timestamp: e.Timestamp, Stream: e.Stream})
			i = len(out) - 1
		}
		out[i].Content = append(out[i].Content, e.Content...)
		if e.Partial {
			open[e.Stream] = i
			continue
		}
		out[i].Complete = true
		delete(open, e.Stream)
	}
}
