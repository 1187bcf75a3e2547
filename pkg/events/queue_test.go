package events

import (
	"testing"
	"time"
)

func TestFanOutInOrder(t *testing.T) {
	var q Queue[int]
	a, cancelA := q.Subscribe(100)
	b, cancelB := q.Subscribe(100)
	defer cancelA()
	defer cancelB()
	for i := range 10 {
		q.Publish(i)
	}
	for _, ch := range []<-chan int{a, b} {
		for i := range 10 {
			if got := <-ch; got != i {
				t.Fatalf("got %d, want %d", got, i)
			}
		}
	}
}

func TestSlowSubscriberIsCutOffNotBlocking(t *testing.T) {
	var q Queue[int]
	slow, cancelSlow := q.Subscribe(2)
	defer cancelSlow()
	fast, cancelFast := q.Subscribe(1000)
	defer cancelFast()
	done := make(chan struct{})
	go func() {
		for i := range 500 {
			q.Publish(i)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a slow subscriber")
	}
	n := 0
	for range slow {
		n++
	}
	if n != 2 {
		t.Fatalf("slow subscriber got %d events before being cut off, want its buffer (2)", n)
	}
	for i := range 500 {
		if got := <-fast; got != i {
			t.Fatalf("fast subscriber: got %d, want %d", got, i)
		}
	}
	if q.Subscribers() != 1 {
		t.Fatalf("%d subscribers, want the fast one only", q.Subscribers())
	}
}

func TestCancelTwice(t *testing.T) {
	var q Queue[int]
	ch, cancel := q.Subscribe(1)
	cancel()
	cancel()
	if _, ok := <-ch; ok {
		t.Fatal("channel open after cancel")
	}
	q.Publish(1)
}
