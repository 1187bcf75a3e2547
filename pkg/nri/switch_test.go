package nri

import (
	"context"
	"sync"
	"testing"
	"time"
)

// countingAPI is an NRI that counts the pods it was told of.
type countingAPI struct {
	Off
	mu   sync.Mutex
	pods []string
}

func (c *countingAPI) RunPodSandbox(_ context.Context, pod PodSandbox) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pods = append(c.pods, pod.ID())
	return nil
}

func (c *countingAPI) seen() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.pods...)
}

// TestSwitchReplace: a replacement waits for the creation in progress,
// whose hooks all reach the old NRI; a creation that begins during the
// replacement waits and runs under the new one.
func TestSwitchReplace(t *testing.T) {
	old, next := &countingAPI{}, &countingAPI{}
	s := NewSwitch(old)
	ctx := context.Background()

	unblock := s.BlockSync() // a creation in progress
	replaced := make(chan struct{})
	inReplace := make(chan struct{})
	release := make(chan struct{})
	go func() {
		s.Replace(func(got API) API {
			if got != old {
				t.Errorf("Replace was handed %v, want what runs", got)
			}
			close(inReplace)
			<-release
			return next
		})
		close(replaced)
	}()
	select {
	case <-inReplace:
		t.Fatal("Replace ran while a creation was in progress")
	case <-time.After(100 * time.Millisecond):
	}
	if err := s.RunPodSandbox(ctx, fakePod{id: "during"}); err != nil {
		t.Fatal(err)
	}
	unblock()
	unblock() // twice is once
	<-inReplace

	// A creation that begins now waits for the replacement.
	created := make(chan struct{})
	go func() {
		defer close(created)
		defer s.BlockSync()()
		if err := s.RunPodSandbox(ctx, fakePod{id: "after"}); err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-created:
		t.Fatal("a creation ran during the replacement")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-replaced
	<-created
	if got := old.seen(); len(got) != 1 || got[0] != "during" {
		t.Errorf("old NRI saw %v, want the pod created before the replacement", got)
	}
	if got := next.seen(); len(got) != 1 || got[0] != "after" {
		t.Errorf("new NRI saw %v, want the pod created after it", got)
	}
	if s.Current() != next {
		t.Error("Current is not the replacement")
	}
}
