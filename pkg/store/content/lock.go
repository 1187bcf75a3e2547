package content

import (
	"context"
	"sync"
)

// refLocks serializes writers of one ingest. Each held key maps to a channel
// that is closed on release, so waiters can also watch their context — a
// sync.Mutex could not be abandoned when a pull is cancelled.
type refLocks struct {
	mu   sync.Mutex
	held map[string]chan struct{}
}

func newRefLocks() *refLocks {
	return &refLocks{held: make(map[string]chan struct{})}
}

// lock blocks until key is free or ctx is done.
func (l *refLocks) lock(ctx context.Context, key string) error {
	for {
		l.mu.Lock()
		ch, busy := l.held[key]
		if !busy {
			l.held[key] = make(chan struct{})
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		select {
		case <-ch:
			// Released; loop to race the other waiters for it.
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// tryLock takes key only if nobody holds it.
func (l *refLocks) tryLock(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, busy := l.held[key]; busy {
		return false
	}
	l.held[key] = make(chan struct{})
	return true
}

func (l *refLocks) unlock(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch, ok := l.held[key]
	if !ok {
		// Unlocking a free key is a programming error in this package.
		panic("content: unlock of unlocked ingest " + key)
	}
	delete(l.held, key)
	close(ch)
}
