package events

import (
	"sync"
)

// Queue broadcasts values to its subscribers. Publish never blocks: each
// subscriber has a bounded buffer, and one whose buffer is full is closed
// (its reader sees the channel end and must resynchronise, as kubelet does
// by relisting).
type Queue[T any] struct {
	mu   sync.Mutex
	subs map[*subscriber[T]]struct{}
}

type subscriber[T any] struct {
	ch     chan T
	closed bool
}

// Subscribe returns a channel of the events published from now on, and a
// cancel func that ends the subscription (safe to call more than once).
func (q *Queue[T]) Subscribe(buffer int) (<-chan T, func()) {
	s := &subscriber[T]{ch: make(chan T, buffer)}
	q.mu.Lock()
	if q.subs == nil {
		q.subs = map[*subscriber[T]]struct{}{}
	}
	q.subs[s] = struct{}{}
	q.mu.Unlock()
	return s.ch, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.drop(s)
	}
}

// Publish hands v to every subscriber without waiting for any of them.
func (q *Queue[T]) Publish(v T) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for s := range q.subs {
		select {
		case s.ch <- v:
		default:
			q.drop(s)
		}
	}
}

// Subscribers is the number of current subscribers.
func (q *Queue[T]) Subscribers() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.subs)
}

// drop must be called with q.mu held.
func (q *Queue[T]) drop(s *subscriber[T]) {
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
	delete(q.subs, s)
}
