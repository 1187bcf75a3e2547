package meta

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	digest "github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketImages = []byte("images")
	// bucketImageNames indexes every RepoTags and RepoDigests entry:
	// name -> image ID, so that a lookup by tag or digest reads one
	// record instead of decoding them all. It is kept in the same
	// transactions as the records, and rebuilt from them when missing.
	bucketImageNames = []byte("imageNames")
)

// Image is the record of one pulled image, keyed by its ID (the digest of
// its config, as kubelet and crictl expect; an artifact's manifest digest).
type Image struct {
	ID digest.Digest `json:"id"`
	// Manifest is the platform manifest unpacked on this node.
	Manifest digest.Digest `json:"manifest"`
	// ArtifactType is set for an OCI artifact (its artifactType, or its
	// config's media type), which is mounted as an image volume but never
	// run; its ID is then its manifest digest.
	ArtifactType string `json:"artifactType,omitempty"`
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

// ImageByName returns the image one of whose RepoTags or RepoDigests is
// exactly name.
func (db *DB) ImageByName(name string) (Image, error) {
	var img Image
	err := db.bolt.View(func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketImageNames).Get([]byte(name))
		if id == nil {
			return fmt.Errorf("image %s: %w", name, ErrNotFound)
		}
		v := tx.Bucket(bucketImages).Get(id)
		if v == nil {
			return fmt.Errorf("image %s (%s): %w", name, id, ErrNotFound)
		}
		return json.Unmarshal(v, &img)
	})
	return img, err
}

// ImagesByIDPrefix returns up to limit images whose ID starts with
// prefix ("sha256:" and some hex digits), in ID order.
func (db *DB) ImagesByIDPrefix(prefix string, limit int) ([]Image, error) {
	var out []Image
	err := db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketImages).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p) && len(out) < limit; k, v = c.Next() {
			var img Image
			if err := json.Unmarshal(v, &img); err != nil {
				return fmt.Errorf("decode image %s: %w", k, err)
			}
			out = append(out, img)
		}
		return nil
	})
	return out, err
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
	return db.SaveImages([]Image{img})
}

// SaveImages stores imgs as SaveImage does, all in one transaction: an
// import of several images records all of them or none.
func (db *DB) SaveImages(imgs []Image) (untagged []digest.Digest, err error) {
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		b, names := tx.Bucket(bucketImages), tx.Bucket(bucketImageNames)
		for _, img := range imgs {
			moved, err := saveImage(b, names, img)
			if err != nil {
				return err
			}
			untagged = append(untagged, moved...)
		}
		return nil
	})
	return untagged, err
}

func saveImage(b, names *bolt.Bucket, img Image) (untagged []digest.Digest, err error) {
	if v := b.Get([]byte(img.ID)); v != nil {
		var old Image
		if err := json.Unmarshal(v, &old); err != nil {
			return nil, fmt.Errorf("decode image %s: %w", img.ID, err)
		}
		img.RepoTags = union(old.RepoTags, img.RepoTags)
		img.RepoDigests = union(old.RepoDigests, img.RepoDigests)
		img.Pinned = img.Pinned || old.Pinned
		if !old.Created.IsZero() {
			img.Created = old.Created
		}
	}
	for _, tag := range img.RepoTags {
		owner := names.Get([]byte(tag))
		if owner == nil || string(owner) == string(img.ID) {
			continue
		}
		moved, err := untag(b, digest.Digest(owner), tag)
		if err != nil {
			return nil, err
		}
		if moved {
			untagged = append(untagged, digest.Digest(owner))
		}
	}
	return untagged, put(b, names, img)
}

// untag removes tag from the record of id, if it has it.
func untag(b *bolt.Bucket, id digest.Digest, tag string) (bool, error) {
	v := b.Get([]byte(id))
	if v == nil {
		return false, nil
	}
	var other Image
	if err := json.Unmarshal(v, &other); err != nil {
		return false, fmt.Errorf("decode image %s: %w", id, err)
	}
	kept := slices.DeleteFunc(slices.Clone(other.RepoTags), func(t string) bool { return t == tag })
	if len(kept) == len(other.RepoTags) {
		return false, nil
	}
	other.RepoTags = kept
	v, err := json.Marshal(other)
	if err != nil {
		return false, fmt.Errorf("encode image %s: %w", other.ID, err)
	}
	return true, b.Put([]byte(other.ID), v)
}

// UpdateImage applies fn to the stored record of id; names fn drops or
// adds are dropped from or added to the index.
func (db *DB) UpdateImage(id digest.Digest, fn func(*Image) error) error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		b, names := tx.Bucket(bucketImages), tx.Bucket(bucketImageNames)
		v := b.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("image %s: %w", id, ErrNotFound)
		}
		var img Image
		if err := json.Unmarshal(v, &img); err != nil {
			return fmt.Errorf("decode image %s: %w", id, err)
		}
		before := imageNames(img)
		if err := fn(&img); err != nil {
			return err
		}
		if err := unindex(names, id, before); err != nil {
			return err
		}
		return put(b, names, img)
	})
}

// DeleteImage removes the record of id and its names; a missing record
// is not an error.
func (db *DB) DeleteImage(id digest.Digest) error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketImages)
		v := b.Get([]byte(id))
		if v == nil {
			return nil
		}
		var img Image
		if err := json.Unmarshal(v, &img); err != nil {
			return fmt.Errorf("decode image %s: %w", id, err)
		}
		if err := unindex(tx.Bucket(bucketImageNames), id, imageNames(img)); err != nil {
			return err
		}
		return b.Delete([]byte(id))
	})
}

func imageNames(img Image) []string {
	return append(slices.Clone(img.RepoTags), img.RepoDigests...)
}

// unindex drops the names that still point at id.
func unindex(names *bolt.Bucket, id digest.Digest, list []string) error {
	for _, n := range list {
		if string(names.Get([]byte(n))) != string(id) {
			continue
		}
		if err := names.Delete([]byte(n)); err != nil {
			return err
		}
	}
	return nil
}

// indexImageNames rebuilds the name index from the records; Open runs it
// when the index bucket is new (a database written before the index).
func indexImageNames(tx *bolt.Tx) error {
	names := tx.Bucket(bucketImageNames)
	return tx.Bucket(bucketImages).ForEach(func(k, v []byte) error {
		var img Image
		if err := json.Unmarshal(v, &img); err != nil {
			return fmt.Errorf("decode image %s: %w", k, err)
		}
		for _, n := range imageNames(img) {
			if err := names.Put([]byte(n), k); err != nil {
				return err
			}
		}
		return nil
	})
}

// put stores the record and points each of its names at it.
func put(b, names *bolt.Bucket, img Image) error {
	v, err := json.Marshal(img)
	if err != nil {
		return fmt.Errorf("encode image %s: %w", img.ID, err)
	}
	for _, n := range imageNames(img) {
		if err := names.Put([]byte(n), []byte(img.ID)); err != nil {
			return err
		}
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
