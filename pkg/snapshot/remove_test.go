package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var errRolledBack = errors.New("shared transaction failed")

// rollBack runs fn in a transaction that then fails, as a group commit's
// shared transaction fails for another write's sake.
func rollBack(db *bolt.DB, fn func(*bolt.Tx) error) error {
	err := db.Update(func(tx *bolt.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errRolledBack
	})
	if !errors.Is(err, errRolledBack) {
		return err
	}
	return nil
}

// Remove's transaction may run twice under WithRemoveUpdate: the first,
// rolled-back run has already moved the directory aside.
func TestRemoveTransactionRunTwice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tc := range []struct {
		name string
		// update runs Remove's transaction; db is the snapshotter's.
		update  func(db *bolt.DB, fn func(*bolt.Tx) error) error
		removed bool
	}{
		{"rolled back then committed", func(db *bolt.DB, fn func(*bolt.Tx) error) error {
			if err := rollBack(db, fn); err != nil {
				return err
			}
			return db.Update(fn)
		}, true},
		{"rolled back twice", func(db *bolt.DB, fn func(*bolt.Tx) error) error {
			if err := rollBack(db, fn); err != nil {
				return err
			}
			if err := rollBack(db, fn); err != nil {
				return err
			}
			return errRolledBack
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			base := t.TempDir()
			db, err := bolt.Open(filepath.Join(base, "meta.db"), 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			update := func(fn func(*bolt.Tx) error) error { return tc.update(db, fn) }
			s, err := NewNative(ctx, filepath.Join(base, "snapshots"), db, WithRemoveUpdate(update))
			if err != nil {
				t.Fatal(err)
			}
			layerOnto(t, s, "base", "", f("a", "1"))
			mounts, err := s.Prepare(ctx, "rw", "base")
			if err != nil {
				t.Fatal(err)
			}
			dir := mounts[0].Source
			if err := os.WriteFile(filepath.Join(dir, "b"), []byte("2"), 0o644); err != nil {
				t.Fatal(err)
			}

			err = s.Remove(ctx, "rw")
			_, statErr := s.Stat(ctx, "rw")
			left, _ := os.ReadDir(filepath.Join(s.Root(), snapshotsDir))
			if tc.removed {
				if err != nil || !errors.Is(statErr, ErrNotFound) {
					t.Fatalf("Remove = %v, then Stat = %v; want removed", err, statErr)
				}
				if len(left) != 1 { // base
					t.Errorf("snapshot directories left: %v, want base's only", names(left))
				}
				return
			}
			if !errors.Is(err, errRolledBack) || statErr != nil {
				t.Fatalf("Remove = %v, then Stat = %v; want the failure and the record kept", err, statErr)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "b")); err != nil || string(b) != "2" {
				t.Errorf("the kept record's directory: b = %q, %v", b, err)
			}
			if len(left) != 2 {
				t.Errorf("snapshot directories: %v, want base's and rw's", names(left))
			}
		})
	}
}

func names(es []os.DirEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}
