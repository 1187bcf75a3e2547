package registrar

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("creations closed")

// Creations tracks create requests in progress, by name, and keeps the
// results of those whose caller gave up until a retry picks them up or they
// expire. It is safe for concurrent use. It owns one goroutine for expiry
// and one per create in progress; Close stops them all.
type Creations[T any] struct {
	keep   time.Duration
	expire func(name string, v T)

	mu       sync.Mutex
	inflight map[string]*creation[T]
	kept     map[string]keptResult[T]
	closed   bool

	wake      chan struct{} // a result was kept: recompute the next expiry
	stop      chan struct{} // closed by Close to end the expiry goroutine
	stopped   chan struct{} // closed by the expiry goroutine as it ends
	creates   sync.WaitGroup
	closeOnce sync.Once
}

// creation is one create in progress. v and err are written before done
// is closed, both under Creations.mu.
type creation[T any] struct {
	done    chan struct{}
	v       T
	err     error
	waiters int               // callers of Do waiting for done
	callers []context.Context // the contexts of the callers that waited
	// keptForRetry: when create finished every caller was gone or about
	// to be (callerGone), so the result was kept for a retry and no
	// caller receives it.
	keptForRetry bool
	cancel       context.CancelFunc // cancels create's context; used by Close
}

type keptResult[T any] struct {
	v        T
	deadline time.Time
}

// Option configures Creations.
type Option[T any] func(*Creations[T])

// WithExpire sets the callback that receives results nobody picked up: the
// caller deletes the orphan object there. It runs on the expiry goroutine,
// one call at a time, and during Close for what is still kept; it must not
// call Close. Without it, such results are dropped with a log line.
func WithExpire[T any](fn func(name string, v T)) Option[T] {
	return func(c *Creations[T]) { c.expire = fn }
}

// NewCreations returns a Creations that keeps the results of abandoned
// requests for keep (kubelet retries within a few minutes; 5m is a sound
// value). keep <= 0 hands them to the expire callback at once. Call Close
// to stop its goroutine.
func NewCreations[T any](keep time.Duration, opts ...Option[T]) *Creations[T] {
	c := &Creations[T]{
		keep:     keep,
		inflight: map[string]*creation[T]{},
		kept:     map[string]keptResult[T]{},
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	for _, o := range opts {
		o(c)
	}
	if c.expire == nil {
		c.expire = func(name string, _ T) {
			klog.InfoS("Dropping the result of an abandoned create request", "name", name)
		}
	}
	go c.expireLoop()
	return c
}

// Do runs create for name and returns its result, with fromRetry false.
//
// If a create for name is in progress, Do waits for it instead and returns
// its result with fromRetry true. If a create for name finished after all
// its callers gave up, Do returns that result at once with fromRetry true,
// and forgets it: each result is handed out once per wait, and a later Do
// runs create again (so a true duplicate reaches the caller's Reserve and
// fails there). Failed creates are not kept: create is expected to undo its
// work on error, and the retry simply tries again.
//
// create runs on a goroutine of its own with a context that carries ctx's
// values but not its cancellation: when ctx ends Do returns ctx's error,
// and create carries on so that its result is there for the retry. Only
// Close cancels create's context.
//
// Everyone who receives a result owns it: the first caller and a retry
// that joined in time can both receive the same object, so publishing it
// must be idempotent. A caller whose deadline has passed or is about to
// (callerGone) when create finishes gets DeadlineExceeded, and if every
// caller is, the result is kept for the retry: its client has most
// likely given up already (a server's deadline is the client's plus the
// request's transit), and a retry would otherwise find the name taken by
// an object nobody has. A caller taken for gone too early costs only its
// retry, which gets the kept result.
func (c *Creations[T]) Do(ctx context.Context, name string, create func(ctx context.Context) (T, error)) (v T, fromRetry bool, err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return v, false, ErrClosed
	}
	if k, ok := c.kept[name]; ok {
		delete(c.kept, name)
		c.mu.Unlock()
		return k.v, true, nil
	}
	cr, joined := c.inflight[name]
	if !joined {
		if err := ctx.Err(); err != nil {
			c.mu.Unlock()
			return v, false, err
		}
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		cr = &creation[T]{done: make(chan struct{}), cancel: cancel}
		c.inflight[name] = cr
		c.creates.Add(1)
		go c.run(cctx, name, cr, create)
	}
	cr.waiters++
	cr.callers = append(cr.callers, ctx)
	c.mu.Unlock()

	select {
	case <-cr.done:
		return received(name, cr, joined)
	case <-ctx.Done():
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-cr.done:
		// run counted us as a recipient when it decided where the
		// result goes.
		return received(name, cr, joined)
	default:
	}
	cr.waiters--
	return v, false, fmt.Errorf("waiting for the creation of %q: %w", name, ctx.Err())
}

// received is what a caller of Do that waited for cr gets once done is
// closed.
func received[T any](name string, cr *creation[T], joined bool) (v T, fromRetry bool, err error) {
	if cr.keptForRetry {
		return v, false, fmt.Errorf("waiting for the creation of %q: %w", name, context.DeadlineExceeded)
	}
	return cr.v, joined, cr.err
}

// deliverMargin is how long before its deadline a caller is taken to be
// gone already (see Do).
const deliverMargin = 50 * time.Millisecond

// callerGone reports whether ctx's caller has given up or is about to.
func callerGone(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && time.Until(d) < deliverMargin
}

// allGone reports whether every caller in ctxs is gone (callerGone).
func allGone(ctxs []context.Context) bool {
	for _, ctx := range ctxs {
		if !callerGone(ctx) {
			return false
		}
	}
	return true
}

// run executes one create and hands the result to the callers waiting for
// it, or keeps it if they all gave up.
func (c *Creations[T]) run(ctx context.Context, name string, cr *creation[T], create func(context.Context) (T, error)) {
	defer c.creates.Done()
	v, err := create(ctx)
	cr.cancel()

	c.mu.Lock()
	cr.v, cr.err = v, err
	delete(c.inflight, name)
	// Callers that gave up are gone too, so no waiter means all gone.
	abandoned := cr.waiters == 0 || allGone(cr.callers)
	cr.callers = nil
	if abandoned && err == nil {
		cr.keptForRetry = true
		// No kept result can exist for name: Do takes it before it
		// starts a create, and only one create per name runs at a time.
		c.kept[name] = keptResult[T]{v: v, deadline: time.Now().Add(c.keep)}
		select {
		case c.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	close(cr.done)
	c.mu.Unlock()

	if abandoned && err != nil {
		klog.InfoS("Abandoned create request failed", "name", name, "err", err)
	}
}

// expireLoop hands results whose keep period is over to the expire
// callback, until Close.
func (c *Creations[T]) expireLoop() {
	defer close(c.stopped)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		case <-timer.C:
		}
		now := time.Now()
		due, next := c.takeDue(now)
		for _, d := range due {
			c.expire(d.name, d.v)
		}
		if !next.IsZero() {
			// Since Go 1.23 Reset needs no draining of timer.C.
			timer.Reset(next.Sub(now))
		}
	}
}

type named[T any] struct {
	name string
	v    T
}

// takeDue removes the kept results due at now and returns them with the
// earliest deadline of the rest (zero if none).
func (c *Creations[T]) takeDue(now time.Time) (due []named[T], next time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, k := range c.kept {
		if !k.deadline.After(now) {
			due = append(due, named[T]{name, k.v})
			delete(c.kept, name)
			continue
		}
		if next.IsZero() || k.deadline.Before(next) {
			next = k.deadline
		}
	}
	return due, next
}

// Close cancels the contexts of creates in progress and waits for them,
// stops the expiry goroutine, and hands every kept result (including those
// of the creates just finished, if nobody was waiting for them) to the
// expire callback. Do fails with ErrClosed afterwards. Close is idempotent.
func (c *Creations[T]) Close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		for _, cr := range c.inflight {
			cr.cancel()
		}
		c.mu.Unlock()

		c.creates.Wait()
		close(c.stop)
		<-c.stopped

		c.mu.Lock()
		kept := c.kept
		c.kept = map[string]keptResult[T]{}
		c.mu.Unlock()
		for name, k := range kept {
			c.expire(name, k.v)
		}
	})
}
