package meta

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	digest "github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

var bucketImages = []byte("images")

// Image is the record of one pulled image, keyed by its ID (the digest of
// its config, as kubelet and crictl expect).
type Image struct {
	ID digest.Digest `json:"id"`
	// Manifest is the platform manifest unpacked on this node.
	Manifest digest.Digest `json:"manifest"`
	// RepoTags are full references with tags: docker.io/library/busybox:latest.
	RepoTags []string `json:"repoTags,omitempty"`
	// RepoDigests are full references with the digest that was resolved
	// for each repository (the index's digest for a multi-arch image).
	RepoDigests []string `json:"repoDigests,omitempty"`
	// Size is the content size: compressed layers plus the config.
	Size int64 `json:"size"`
	// ChainIDs names the committed snapshot of each layer, bottom first.
	ChainIDs []digest.Digest `json:"chainIDs"`
	// Blobs is every content blob the image holds (index, manifest, config,
	// layers); GC keeps exactly the blobs some image lists.
	Blobs       []digest.Digest `json:"blobs"`
	Snapshotter string          `json:"snapshotter"`
	// User is the config's User, kept here because every ListImages
	// reports it and the config would otherwise be read for each image.
	User    string    `json:"user,omitempty"`
	Pinned  bool      `json:"pinned,omitempty"`
	Created time.Time `json:"created"`
}

// TopChainID is the snapshot a container's rootfs is prepared from.
func (i *Image) TopChainID() digest.Digest {
	if len(i.ChainIDs) == 0 {
		return ""
	}
	return i.ChainIDs[len(i.ChainIDs)-1]
}

// GetImage returns the image with exactly this ID.
func (db *DB) GetImage(id digest.Digest) (Image, error) {
	var img Image
	err := db.bolt.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketImages).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("image %s: %w", id, ErrNotFound)
		}
		return json.Unmarshal(v, &img)
	})
	return img, err
}

// ListImages returns every image record.
func (db *DB) ListImages() ([]Image, error) {
	var out []Image
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketImages).ForEach(func(k, v []byte) error {
			var img Image
			if err := json.Unmarshal(v, &img); err != nil {
				return fmt.Errorf("decode image %s: %w", k, err)
			}
			out = append(out, img)
			return nil
		})
	})
	return out, err
}

// SaveImage stores img, merging its names into an existing record of the
// same ID, and in the same transaction takes each of its RepoTags away from
// any other image (a tag names one image). It returns the IDs of images
// that lost a tag.
func (db *DB) SaveImage(img Image) (untagged []digest.Digest, err error) {
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketImages)
		if v := b.Get([]byte(img.ID)); v != nil {
			var old Image
			if err := json.Unmarshal(v, &old); err != nil {
				return fmt.Errorf("decode image %s: %w", img.ID, err)
			}
			img.RepoTags = union(old.RepoTags, img.RepoTags)
			img.RepoDigests = union(old.RepoDigests, img.RepoDigests)
			img.Pinned = img.Pinned || old.Pinned
			if !old.Created.IsZero() {
				img.Created = old.Created
			}
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if string(k) == string(img.ID) {
				continue
			}
			var other Image
			if err := json.Unmarshal(v, &other); err != nil {
				return fmt.Errorf("decode image %s: %w", k, err)
			}
			kept := slices.DeleteFunc(slices.Clone(other.RepoTags), func(t string) bool { return slices.Contains(img.RepoTags, t) })
			if len(kept) == len(other.RepoTags) {
				continue
			}
			other.RepoTags = kept
			if err := put(b, other); err != nil {
				return err
			}
			untagged = append(untagged, other.ID)
		}
		return put(b, img)
	})
	return untagged, err
}

// UpdateImage applies fn to the stored record of id.
func (db *DB) UpdateImage(id digest.Digest, fn func(*Image) error) error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketImages)
		v := b.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("image %s: %w", id, ErrNotFound)
		}
		var img Image
		if err := json.Unmarshal(v, &img); err != nil {
			return fmt.Errorf("decode image %s: %w", id, err)
		}
		if err := fn(&img); err != nil {
			return err
		}
		return put(b, img)
	})
}

// DeleteImage removes the record of id; a missing record is not an error.
func (db *DB) DeleteImage(id digest.Digest) error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketImages).Delete([]byte(id))
	})
}

func put(b *bolt.Bucket, img Image) error {
	v, err := json.Marshal(img)
	if err != nil {
		return fmt.Errorf("encode image %s: %w", img.ID, err)
	}
	return b.Put([]byte(img.ID), v)
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}
