package shim

import (
	"context"
	"sync"
	"time"
)

// maxEvents bounds the history kept for long-polls; a client that falls
// further behind must resynchronise with List.
const maxEvents = 1024

// eventLog is an in-memory, bounded, ordered history of events.
type eventLog struct {
	mu      sync.Mutex
	events  []Event
	seq     uint64
	changed chan struct{} // closed and replaced on every append
	// done ends every long-poll at once when the shim stops, so that
	// the connections' pending calls finish and clients can hang up.
	done      chan struct{}
	closeOnce sync.Once
}

func (l *eventLog) close() { l.closeOnce.Do(func() { close(l.done) }) }

func newEventLog() *eventLog {
	// Seq starts at the wall clock in nanoseconds so that numbers keep
	// growing across a shim restart, when the history itself is lost: a
	// client polling with the last Seq it saw still gets the new events.
	return &eventLog{seq: uint64(time.Now().UnixNano()), changed: make(chan struct{}), done: make(chan struct{})}
}

func (l *eventLog) publish(id string, t EventType, st State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	l.events = append(l.events, Event{Seq: l.seq, ID: id, Type: t, State: st})
	if len(l.events) > maxEvents {
		l.events = append(l.events[:0:0], l.events[len(l.events)-maxEvents:]...)
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// wait returns the events after seq, waiting up to maxWait for one.
func (l *eventLog) wait(ctx context.Context, after uint64, maxWait time.Duration) []Event {
	t := time.NewTimer(maxWait)
	defer t.Stop()
	for {
		l.mu.Lock()
		var out []Event
		for _, e := range l.events {
			if e.Seq > after {
				out = append(out, e)
			}
		}
		ch := l.changed
		l.mu.Unlock()
		if len(out) > 0 {
			return out
		}
		select {
		case <-ch:
		case <-t.C:
			return nil
		case <-ctx.Done():
			return nil
		case <-l.done:
			return nil
		}
	}
}
