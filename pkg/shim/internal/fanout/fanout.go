package fanout

import (
	"bytes"
	"sync"
	"sync/atomic"
)

// Fanout distributes chunks to subscribers. The zero value is ready to use.
type Fanout struct {
	mu     sync.Mutex
	subs   map[*Sub]struct{}
	closed bool
}

// Sub is one subscriber. Read its chunks from C; C is closed when the
// subscriber is removed or the Fanout is closed.
type Sub struct {
	C       <-chan []byte
	ch      chan []byte
	dropped atomic.Int64
}

// Dropped returns how many bytes this subscriber lost by being slow.
func (s *Sub) Dropped() int64 { return s.dropped.Load() }

// Subscribe adds a subscriber that can hold up to depth chunks.
func (f *Fanout) Subscribe(depth int) *Sub {
	ch := make(chan []byte, depth)
	s := &Sub{C: ch, ch: ch}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		close(ch)
		return s
	}
	if f.subs == nil {
		f.subs = map[*Sub]struct{}{}
	}
	f.subs[s] = struct{}{}
	return s
}

// Unsubscribe removes s and closes its channel.
func (f *Fanout) Unsubscribe(s *Sub) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.subs[s]; ok {
		delete(f.subs, s)
		close(s.ch)
	}
}

// Write hands a copy of p to every subscriber that has room. It never
// blocks and never fails.
func (f *Fanout) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.subs) == 0 {
		return len(p), nil
	}
	c := bytes.Clone(p)
	for s := range f.subs {
		select {
		case s.ch <- c:
		default:
			s.dropped.Add(int64(len(c)))
		}
	}
	return len(p), nil
}

// Close closes all subscribers; later subscribers get a closed channel.
func (f *Fanout) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for s := range f.subs {
		close(s.ch)
	}
	f.subs = nil
}
