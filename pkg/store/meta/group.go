package meta

import (
	"sync"

	bolt "go.etcd.io/bbolt"
)

// group commits concurrent writes in one bbolt transaction: a transaction
// costs two fdatasyncs whatever it holds, and bbolt has one writer, so
// eight containers of a pod removed at once would otherwise queue for
// eight commits. Unlike bolt.Batch, a write that finds no transaction in
// flight commits at once (bolt.Batch waits MaxBatchDelay for company):
// the writes that arrive while one commits go together in the next.
//
// Each write returns once the transaction holding it is durable. If a
// combined transaction fails, every write in it is run again alone, so
// one write's error never fails another: the functions must only change
// the database (bbolt rolled back their first run).
type group struct {
	db    *bolt.DB
	mu    sync.Mutex
	busy  bool // a caller is committing; queued writes wait for it
	queue []*write
}

type write struct {
	fn   func(*bolt.Tx) error
	done chan error    // the result, once committed
	lead chan struct{} // the caller commits the queue itself
}

// update runs fn in a read-write transaction, shared with the writes
// queued meanwhile.
func (g *group) update(fn func(*bolt.Tx) error) error {
	w := &write{fn: fn, done: make(chan error, 1), lead: make(chan struct{}, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	leader := !g.busy
	g.busy = true
	g.mu.Unlock()
	if leader {
		g.commitQueue()
		return <-w.done
	}
	select {
	case err := <-w.done:
		return err
	case <-w.lead:
		g.commitQueue()
		return <-w.done
	}
}

// commitQueue commits what is queued, then hands the next batch to its
// first writer (so no caller waits for more than its own batch and the
// one before it) or ends the busy period.
func (g *group) commitQueue() {
	g.mu.Lock()
	batch := g.queue
	g.queue = nil
	g.mu.Unlock()
	g.run(batch)
	g.mu.Lock()
	if len(g.queue) == 0 {
		g.busy = false
		g.mu.Unlock()
		return
	}
	next := g.queue[0]
	g.mu.Unlock()
	next.lead <- struct{}{}
}

func (g *group) run(batch []*write) {
	if len(batch) == 1 {
		batch[0].done <- g.db.Update(batch[0].fn)
		return
	}
	err := g.db.Update(func(tx *bolt.Tx) error {
		for _, w := range batch {
			if err := w.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		for _, w := range batch {
			w.done <- nil
		}
		return
	}
	for _, w := range batch {
		w.done <- g.db.Update(w.fn)
	}
}
