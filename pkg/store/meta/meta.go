package meta

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var (
	// ErrLocked means another process holds the database.
	ErrLocked = errors.New("metadata database is locked by another process (is another cri-runtimed running on this root?)")
	// ErrNotFound is returned for a missing record.
	ErrNotFound = errors.New("not found")
)

// DB is the daemon's metadata database.
type DB struct {
	bolt *bolt.DB
	// records groups the writes of sandbox and container records.
	records group
}

// Open opens or creates the database at path, failing after lockTimeout
// if another process holds it.
func Open(path string, lockTimeout time.Duration) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create metadata dir: %w", err)
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open metadata database %s: %w", path, err)
	}
	db := &DB{bolt: b, records: group{db: b}}
	if err := b.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketImages); err != nil {
			return err
		}
		if tx.Bucket(bucketImageNames) != nil {
			return nil
		}
		if _, err := tx.CreateBucket(bucketImageNames); err != nil {
			return err
		}
		return indexImageNames(tx)
	}); err != nil {
		b.Close()
		return nil, fmt.Errorf("initialise metadata database %s: %w", path, err)
	}
	if err := db.initRecords(); err != nil {
		b.Close()
		return nil, fmt.Errorf("initialise metadata database %s: %w", path, err)
	}
	return db, nil
}

// Bolt returns the raw handle for packages keeping their own buckets.
func (db *DB) Bolt() *bolt.DB { return db.bolt }

// Update runs fn in a read-write transaction that it shares with the
// record writes (and other Updates) arriving meanwhile, and returns once
// that transaction is durable. fn may run twice: if the shared
// transaction fails, bbolt rolls it back and fn runs again alone, so it
// must leave nothing outside the database that a second run gets wrong.
func (db *DB) Update(fn func(*bolt.Tx) error) error { return db.records.update(fn) }

// Close closes the database and releases its lock.
func (db *DB) Close() error { return db.bolt.Close() }
