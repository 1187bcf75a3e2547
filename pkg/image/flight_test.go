package image

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFlightsShareOneRun(t *testing.T) {
	var f flights
	var runs atomic.Int32
	release := make(chan struct{})
	fn := func(ctx context.Context) error {
		runs.Add(1)
		<-release
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- f.do(context.Background(), "k", fn)
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
}

func TestFlightsCancelWhenLastWaiterLeaves(t *testing.T) {
	var f flights
	cancelled := make(chan struct{})
	fn := func(ctx context.Context) error {
		<-ctx.Done()
		close(cancelled)
		return ctx.Err()
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- f.do(ctx1, "k", fn) }()
	go func() { done <- f.do(ctx2, "k", fn) }()
	time.Sleep(20 * time.Millisecond)
	cancel1()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("first waiter: %v", err)
	}
	select {
	case <-cancelled:
		t.Fatal("operation cancelled while a waiter remained")
	case <-time.After(50 * time.Millisecond):
	}
	cancel2()
	<-done
	select {
	case <-cancelled:
	case <-time.After(time.Second):
		t.Fatal("operation not cancelled after last waiter left")
	}
}
