package registrar

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// recorder is a create function that counts its runs and returns
// "name#run", and an expire callback that records what it gets.
type recorder struct {
	mu      sync.Mutex
	runs    int
	expired []string
	// delay is how long create takes; fail makes it fail.
	delay time.Duration
	fail  bool
	// ctxErrAfter is create's context error when it finishes.
	ctxErrAfter error
}

func (r *recorder) create(name string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		r.mu.Lock()
		r.runs++
		n := r.runs
		r.mu.Unlock()
		time.Sleep(r.delay)
		r.mu.Lock()
		r.ctxErrAfter = ctx.Err()
		r.mu.Unlock()
		if r.fail {
			return "", errors.New("create failed")
		}
		return fmt.Sprintf("%s#%d", name, n), nil
	}
}

func (r *recorder) expire(name, v string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expired = append(r.expired, v)
}

func (r *recorder) counts() (runs int, expired []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs, append([]string(nil), r.expired...)
}

func (r *recorder) lastCtxErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ctxErrAfter
}

// TestDoRetry covers kubelet's timeout-and-retry: the first caller gives
// up after 1s while create takes 10s; the retry comes at retryAt.
func TestDoRetry(t *testing.T) {
	tests := []struct {
		name      string
		retryAt   time.Duration
		wantWait  time.Duration // how long the retry waits
		keep      time.Duration
		fail      bool
		wantV     string
		wantRetry bool
		wantErr   bool
		wantRuns  int // after the retry
	}{
		{name: "retry while create runs", retryAt: 2 * time.Second, wantWait: 8 * time.Second,
			keep: time.Minute, wantV: "pod#1", wantRetry: true, wantRuns: 1},
		{name: "retry after create finished", retryAt: 30 * time.Second, wantWait: 0,
			keep: time.Minute, wantV: "pod#1", wantRetry: true, wantRuns: 1},
		{name: "retry after the result expired", retryAt: 2 * time.Minute, wantWait: 10 * time.Second,
			keep: time.Minute, wantV: "pod#2", wantRetry: false, wantRuns: 2},
		{name: "abandoned create failed: retry creates again", retryAt: 30 * time.Second, wantWait: 10 * time.Second,
			keep: time.Minute, fail: true, wantErr: true, wantRuns: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &recorder{delay: 10 * time.Second, fail: tc.fail}
				c := NewCreations(tc.keep, WithExpire(rec.expire))
				defer c.Close()
				start := time.Now()

				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, _, err := c.Do(ctx, "pod", rec.create("pod"))
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("first Do = %v, want DeadlineExceeded", err)
				}
				if d := time.Since(start); d != time.Second {
					t.Errorf("first Do returned after %v, want 1s", d)
				}

				time.Sleep(tc.retryAt - time.Since(start))
				retryStart := time.Now()
				v, retried, err := c.Do(context.Background(), "pod", rec.create("pod"))
				if (err != nil) != tc.wantErr {
					t.Fatalf("retry Do = %q, %v; want error %v", v, err, tc.wantErr)
				}
				if v != tc.wantV || retried != tc.wantRetry {
					t.Errorf("retry Do = %q, fromRetry %v; want %q, %v", v, retried, tc.wantV, tc.wantRetry)
				}
				if d := time.Since(retryStart); d != tc.wantWait {
					t.Errorf("retry waited %v, want %v", d, tc.wantWait)
				}
				runs, expired := rec.counts()
				if runs != tc.wantRuns {
					t.Errorf("create ran %d times, want %d", runs, tc.wantRuns)
				}
				if err := rec.lastCtxErr(); err != nil {
					t.Errorf("create's context ended (%v) although only its caller gave up", err)
				}
				// The first result either reached the retry or expired,
				// never both.
				wantExpired := 0
				if tc.wantRuns == 2 && !tc.fail {
					wantExpired = 1
				}
				if len(expired) != wantExpired {
					t.Errorf("expired %v, want %d results", expired, wantExpired)
				}

				// The result was handed out once: the next request for
				// the name is a new create (the caller's Reserve turns it
				// into AlreadyExists).
				rec.fail = false
				v, retried, err = c.Do(context.Background(), "pod", rec.create("pod"))
				if err != nil || retried || v != fmt.Sprintf("pod#%d", tc.wantRuns+1) {
					t.Errorf("Do after the retry = %q, %v, %v; want a fresh create", v, retried, err)
				}
			})
		})
	}
}

func TestDoSequentialNotDeduplicated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{delay: time.Second}
		c := NewCreations(time.Minute, WithExpire(rec.expire))
		defer c.Close()
		for i := 1; i <= 2; i++ {
			v, retried, err := c.Do(context.Background(), "ctr", rec.create("ctr"))
			if want := fmt.Sprintf("ctr#%d", i); err != nil || retried || v != want {
				t.Errorf("Do %d = %q, %v, %v; want %q, false, nil", i, v, retried, err, want)
			}
		}
	})
}

func TestDoJoinWhileFirstStillWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{delay: 10 * time.Second}
		c := NewCreations(time.Minute, WithExpire(rec.expire))
		defer c.Close()

		type res struct {
			v       string
			retried bool
			err     error
		}
		first := make(chan res, 1)
		go func() {
			v, r, err := c.Do(context.Background(), "pod", rec.create("pod"))
			first <- res{v, r, err}
		}()
		time.Sleep(time.Second)
		v, retried, err := c.Do(context.Background(), "pod", rec.create("other"))
		f := <-first
		if f != (res{"pod#1", false, nil}) {
			t.Errorf("first Do = %+v, want pod#1 as the creator", f)
		}
		if err != nil || !retried || v != "pod#1" {
			t.Errorf("joining Do = %q, %v, %v; want pod#1 from the retry", v, retried, err)
		}
		if runs, expired := rec.counts(); runs != 1 || len(expired) != 0 {
			t.Errorf("create ran %d times, expired %v; want 1 and none", runs, expired)
		}
	})
}

func TestDoCancelledBeforeStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		c := NewCreations(time.Minute, WithExpire(rec.expire))
		defer c.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, err := c.Do(ctx, "pod", rec.create("pod")); !errors.Is(err, context.Canceled) {
			t.Errorf("Do = %v, want Canceled", err)
		}
		if runs, _ := rec.counts(); runs != 0 {
			t.Errorf("create ran %d times for a cancelled request", runs)
		}
	})
}

func TestExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{delay: 10 * time.Second}
		c := NewCreations(5*time.Minute, WithExpire(rec.expire))
		defer c.Close()
		start := time.Now()
		for _, name := range []string{"a", "b"} {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if _, _, err := c.Do(ctx, name, rec.create(name)); err == nil {
				t.Fatalf("Do(%s) finished within its timeout", name)
			}
			cancel()
		}
		// The creates began at 0s and 1s and finish at 10s and 11s; their
		// results expire 5m after that.
		time.Sleep(5*time.Minute + 9*time.Second - time.Since(start))
		synctest.Wait()
		if _, expired := rec.counts(); len(expired) != 0 {
			t.Fatalf("expired %v before the keep period", expired)
		}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if _, expired := rec.counts(); fmt.Sprint(expired) != "[a#1 b#2]" {
			t.Errorf("expired %v, want [a#1 b#2]", expired)
		}
		// Gone for good: a late retry creates anew.
		v, retried, err := c.Do(context.Background(), "a", rec.create("a"))
		if err != nil || retried || v != "a#3" {
			t.Errorf("Do after expiry = %q, %v, %v; want a fresh create", v, retried, err)
		}
	})
}

func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var expired []string
		c := NewCreations(time.Hour, WithExpire(func(name, v string) {
			mu.Lock()
			defer mu.Unlock()
			expired = append(expired, v)
		}))

		// One kept result.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _, _ = c.Do(ctx, "kept", func(context.Context) (string, error) {
			time.Sleep(2 * time.Second)
			return "kept-v", nil
		})
		cancel()
		time.Sleep(2 * time.Second)

		// One create in progress that only stops when its context does.
		ctx, cancel = context.WithTimeout(context.Background(), time.Second)
		var createErr error
		_, _, _ = c.Do(ctx, "slow", func(ctx context.Context) (string, error) {
			<-ctx.Done()
			createErr = ctx.Err()
			return "slow-v", nil
		})
		cancel()

		c.Close()
		c.Close() // idempotent
		if !errors.Is(createErr, context.Canceled) {
			t.Errorf("in-progress create saw %v, want its context cancelled by Close", createErr)
		}
		mu.Lock()
		got := map[string]bool{}
		for _, v := range expired {
			got[v] = true
		}
		mu.Unlock()
		if len(expired) != 2 || !got["kept-v"] || !got["slow-v"] {
			t.Errorf("expired %v at Close, want kept-v and slow-v once each", expired)
		}
		if _, _, err := c.Do(context.Background(), "x", func(context.Context) (string, error) {
			t.Error("create ran after Close")
			return "", nil
		}); !errors.Is(err, ErrClosed) {
			t.Errorf("Do after Close = %v, want ErrClosed", err)
		}
		// synctest.Test itself fails if a goroutine of the bubble is
		// still blocked here.
	})
}

// TestCloseStopsGoroutines checks the same without synctest's help.
func TestCloseStopsGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 20 {
		c := NewCreations[int](time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		_, _, _ = c.Do(ctx, "n", func(context.Context) (int, error) {
			time.Sleep(5 * time.Millisecond)
			return 1, nil
		})
		cancel()
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEachResultOnce races retries, timeouts and expiry with the real
// clock: every result ends up either with callers or with the expire
// callback, never both, and a kept result is picked up at most once.
func TestEachResultOnce(t *testing.T) {
	var (
		mu        sync.Mutex
		created   = map[string]bool{}
		received  = map[string]int{} // received through a retry pick-up or a join
		delivered = map[string]bool{}
		expired   = map[string]int{}
		seq       atomic.Int64
	)
	c := NewCreations(200*time.Microsecond, WithExpire(func(_ string, v string) {
		mu.Lock()
		defer mu.Unlock()
		expired[v]++
	}))
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 1)) // this goroutine's only
			for range 200 {
				name := fmt.Sprintf("n%d", rnd.IntN(16))
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rnd.IntN(3000))*time.Microsecond)
				v, retried, err := c.Do(ctx, name, func(context.Context) (string, error) {
					v := fmt.Sprintf("%s#%d", name, seq.Add(1))
					mu.Lock()
					created[v] = true
					mu.Unlock()
					time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
					return v, nil
				})
				cancel()
				if err == nil {
					mu.Lock()
					delivered[v] = true
					if retried {
						received[v]++
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	c.Close()

	mu.Lock()
	defer mu.Unlock()
	if len(created) == 0 {
		t.Fatal("nothing was created")
	}
	var kept int
	for v := range created {
		d, e := delivered[v], expired[v]
		switch {
		case d && e > 0:
			t.Errorf("%s was delivered and expired", v)
		case !d && e == 0:
			t.Errorf("%s was lost", v)
		case e > 1:
			t.Errorf("%s expired %d times", v, e)
		}
		if e > 0 {
			kept++
		}
	}
	t.Logf("%d creates, %d delivered, %d expired, %d retry receipts", len(created), len(delivered), kept, len(received))
}

// lateCtx is a caller's context whose deadline passes as create
// finishes, without Done firing first: the gRPC server's view of a client
// that gave up a moment before the result came.
type lateCtx struct {
	context.Context
	dead atomic.Bool
}

func (c *lateCtx) Err() error {
	if c.dead.Load() {
		return context.DeadlineExceeded
	}
	return nil
}

// TestDoDeadlineAsCreateFinishes: a result whose only caller's context
// ended by the time it came is kept for the retry, not handed to a caller
// that cannot deliver it (the retry then found the name taken).
func TestDoDeadlineAsCreateFinishes(t *testing.T) {
	r := &recorder{}
	c := NewCreations(time.Minute, WithExpire(r.expire))
	defer c.Close()
	ctx := &lateCtx{Context: context.Background()}
	_, _, err := c.Do(ctx, "n", func(cctx context.Context) (string, error) {
		v, err := r.create("n")(cctx)
		ctx.dead.Store(true)
		return v, err
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do whose context ended as create finished: err %v, want DeadlineExceeded", err)
	}
	v, retried, err := c.Do(context.Background(), "n", r.create("n"))
	if err != nil || !retried || v != "n#1" {
		t.Fatalf("retry: %q, retried %v, err %v; want n#1 from the first create", v, retried, err)
	}
	if runs, expired := r.counts(); runs != 1 || len(expired) != 0 {
		t.Errorf("runs %d, expired %v; want one create, nothing expired", runs, expired)
	}
}

// TestDoDeadlineWithinMargin: a result that comes within deliverMargin of
// the caller's deadline is kept for the retry too (the client, whose
// deadline is earlier by the request's transit, may be gone already).
func TestDoDeadlineWithinMargin(t *testing.T) {
	r := &recorder{}
	c := NewCreations(time.Minute, WithExpire(r.expire))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deliverMargin/2)
	defer cancel()
	if _, _, err := c.Do(ctx, "n", r.create("n")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do finishing within the margin of its deadline: err %v, want DeadlineExceeded", err)
	}
	v, retried, err := c.Do(context.Background(), "n", r.create("n"))
	if err != nil || !retried || v != "n#1" {
		t.Fatalf("retry: %q, retried %v, err %v; want n#1 from the first create", v, retried, err)
	}
	// Far from its deadline, a caller gets its result.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	if v, _, err := c.Do(ctx2, "m", r.create("m")); err != nil || v != "m#2" {
		t.Fatalf("Do with a minute left: %q, %v; want m#2", v, err)
	}
}
