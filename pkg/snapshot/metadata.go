package snapshot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Metadata layout inside the daemon's bbolt database:
//
//	snapshots/<name>/          top-level bucket; its sequence allocates ids
//	    version   -> "1"
//	    keys/     key -> JSON record
//	    children/ parent "\x00" child -> ""   (reverse index for ErrInUse)
const (
	bucketPrefix   = "snapshots/"
	schemaVersion  = "1"
	maxKeyLength   = 1024
	childSeparator = "\x00"
)

var (
	keyVersion     = []byte("version")
	bucketKeys     = []byte("keys")
	bucketChildren = []byte("children")
)

// record is the persisted form of a snapshot.
type record struct {
	ID      uint64            `json:"id"`
	Parent  string            `json:"parent,omitempty"`
	Kind    Kind              `json:"kind"`
	View    bool              `json:"view,omitempty"`
	Created time.Time         `json:"created"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Usage of committed snapshots, computed once at commit.
	Size   int64 `json:"size,omitempty"`
	Inodes int64 `json:"inodes,omitempty"`
}

func (r record) info(key string) Info {
	labels := make(map[string]string, len(r.Labels))
	for k, v := range r.Labels {
		labels[k] = v
	}
	return Info{Key: key, Parent: r.Parent, Kind: r.Kind, Created: r.Created, Labels: labels}
}

func validateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("empty snapshot key")
	case len(key) > maxKeyLength:
		return fmt.Errorf("snapshot key of %d bytes exceeds %d", len(key), maxKeyLength)
	case strings.Contains(key, childSeparator):
		return fmt.Errorf("snapshot key %q contains NUL", key)
	}
	return nil
}

type buckets struct {
	top, keys, children *bolt.Bucket
}

func initBuckets(db *bolt.DB, name string) error {
	return db.Update(func(tx *bolt.Tx) error {
		top, err := tx.CreateBucketIfNotExists([]byte(bucketPrefix + name))
		if err != nil {
			return fmt.Errorf("create bucket %s%s: %w", bucketPrefix, name, err)
		}
		if v := top.Get(keyVersion); v != nil && string(v) != schemaVersion {
			return fmt.Errorf("bucket %s%s has schema version %q, want %q", bucketPrefix, name, v, schemaVersion)
		}
		if err := top.Put(keyVersion, []byte(schemaVersion)); err != nil {
			return err
		}
		if _, err := top.CreateBucketIfNotExists(bucketKeys); err != nil {
			return err
		}
		_, err = top.CreateBucketIfNotExists(bucketChildren)
		return err
	})
}

func (s *snapshotter) buckets(tx *bolt.Tx) (buckets, error) {
	top := tx.Bucket(s.bucket)
	if top == nil {
		return buckets{}, fmt.Errorf("bucket %s missing", s.bucket)
	}
	b := buckets{top: top, keys: top.Bucket(bucketKeys), children: top.Bucket(bucketChildren)}
	if b.keys == nil || b.children == nil {
		return buckets{}, fmt.Errorf("bucket %s is incomplete", s.bucket)
	}
	return b, nil
}

func (b buckets) get(key string) (record, error) {
	v := b.keys.Get([]byte(key))
	if v == nil {
		return record{}, fmt.Errorf("snapshot %q: %w", key, ErrNotFound)
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return record{}, fmt.Errorf("decode snapshot record %q: %w", key, err)
	}
	return r, nil
}

func (b buckets) put(key string, r record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode snapshot record %q: %w", key, err)
	}
	return b.keys.Put([]byte(key), v)
}

func childKey(parent, child string) []byte {
	return []byte(parent + childSeparator + child)
}

func (b buckets) hasChildren(key string) (string, bool) {
	prefix := []byte(key + childSeparator)
	k, _ := b.children.Cursor().Seek(prefix)
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return "", false
	}
	return string(k[len(prefix):]), true
}

// chain returns the records of key's ancestors, nearest first.
func (b buckets) chain(parent string) ([]record, error) {
	var out []record
	for parent != "" {
		r, err := b.get(parent)
		if err != nil {
			return nil, fmt.Errorf("parent chain: %w", err)
		}
		out = append(out, r)
		parent = r.Parent
		if len(out) > maxChainDepth {
			return nil, fmt.Errorf("parent chain longer than %d (cycle?)", maxChainDepth)
		}
	}
	return out, nil
}
