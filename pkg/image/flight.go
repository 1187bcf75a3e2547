package image

import (
	"context"
	"sync"
)

// flights runs one shared operation per key for concurrent callers, so two
// pulls of the same image download each blob once. The operation runs with
// its own context, cancelled when the last caller waiting for it gives up:
// one client going away must not fail another's pull, but when every client
// is gone the download stops (its partial data stays for resume).
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
	// running counts the operations still running, including those every
	// caller gave up on, which wind down after their context ends.
	running sync.WaitGroup
}

type flight struct {
	done    chan struct{}
	err     error
	waiters int
	cancel  context.CancelFunc
}

func (f *flights) do(ctx context.Context, key string, fn func(context.Context) error) error {
	f.mu.Lock()
	if f.m == nil {
		f.m = map[string]*flight{}
	}
	fl, ok := f.m[key]
	if !ok {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		fl = &flight{done: make(chan struct{}), cancel: cancel}
		f.m[key] = fl
		f.running.Add(1)
		go func() {
			defer f.running.Done()
			fl.err = fn(fctx)
			cancel()
			f.mu.Lock()
			if f.m[key] == fl {
				delete(f.m, key)
			}
			f.mu.Unlock()
			close(fl.done)
		}()
	}
	fl.waiters++
	f.mu.Unlock()

	select {
	case <-fl.done:
		return fl.err
	case <-ctx.Done():
		f.mu.Lock()
		fl.waiters--
		if fl.waiters == 0 {
			fl.cancel()
			// A caller arriving after this starts a fresh flight rather
			// than joining one that is being cancelled.
			if f.m[key] == fl {
				delete(f.m, key)
			}
		}
		f.mu.Unlock()
		return ctx.Err()
	}
}

// wait returns once no operation runs.
func (f *flights) wait() { f.running.Wait() }
