package meta

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// queued waits until n writes wait in g's queue.
func queued(t *testing.T, g *group, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		g.mu.Lock()
		l := len(g.queue)
		g.mu.Unlock()
		if l == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", l, n)
		}
	}
}

// TestGroupCommitsQueuedWritesTogether: the writes that arrive while one
// commits share the next transaction; each is durable when it returns;
// one write's error fails only that write.
func TestGroupCommitsQueuedWritesTogether(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail int // index of the queued write that fails, -1 for none
	}{{"all succeed", -1}, {"one fails", 3}} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := Open(filepath.Join(t.TempDir(), "meta.db"), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			g := &db.records
			const n = 8
			release, inFirst := make(chan struct{}), make(chan struct{})
			var firstErr error
			var wg sync.WaitGroup
			wg.Go(func() {
				firstErr = g.update(func(tx *bolt.Tx) error {
					close(inFirst)
					<-release // holds the commit until the others queue
					return tx.Bucket(bucketContainers).Put([]byte("first"), []byte("{}"))
				})
			})
			<-inFirst
			var mu sync.Mutex
			txs := map[int]int{}
			errs := make([]error, n)
			boom := errors.New("boom")
			for i := range n {
				wg.Go(func() {
					errs[i] = g.update(func(tx *bolt.Tx) error {
						if i == tc.fail {
							return boom
						}
						id := tx.ID()
						tx.OnCommit(func() { mu.Lock(); txs[id]++; mu.Unlock() })
						return tx.Bucket(bucketContainers).Put([]byte(fmt.Sprint("w", i)), []byte("{}"))
					})
				})
			}
			queued(t, g, n)
			close(release)
			wg.Wait()
			if firstErr != nil {
				t.Fatal(firstErr)
			}
			for i, err := range errs {
				if i == tc.fail {
					if !errors.Is(err, boom) {
						t.Errorf("write %d = %v, want its own error", i, err)
					}
					continue
				}
				if err != nil {
					t.Errorf("write %d = %v", i, err)
				}
			}
			recs, err := db.ListContainers()
			if err != nil {
				t.Fatal(err)
			}
			want := n + 1
			if tc.fail >= 0 {
				want--
			}
			if len(recs) != want {
				t.Errorf("%d records stored, want %d", len(recs), want)
			}
			if tc.fail < 0 && len(txs) != 1 {
				t.Errorf("the %d queued writes took %d transactions, want 1: %v", n, len(txs), txs)
			}
			if g.busy || len(g.queue) != 0 {
				t.Errorf("after the writes: busy %v, %d queued", g.busy, len(g.queue))
			}
		})
	}
}
