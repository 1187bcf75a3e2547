package container

import (
	"sync"

	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// imageRefs counts, per image ID, the references that keep an image in
// use (ImagesInUse): one for the image of each listed container that has
// not exited, one for each image volume of each listed container.
// ImageStatus and ListImages ask on every call, so the answer is one map
// read instead of a walk of every container. Its mutex is a leaf: taken
// under the controller's and a container's, never the other way round.
type imageRefs struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *imageRefs) add(id string, delta int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	if v := r.n[id] + delta; v > 0 {
		r.n[id] = v
	} else {
		delete(r.n, id)
	}
}

func (r *imageRefs) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[id] > 0
}

func (r *imageRefs) set() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]bool, len(r.n))
	for id := range r.n {
		out[id] = true
	}
	return out
}

// pin counts what ctr references, once: called as it is listed, under
// the controller's lock. Its image counts until it exits (unpinExited),
// its image volumes until it is removed (unpin).
func (c *Controller) pin(ctr *Container) {
	ctr.mu.Lock()
	defer ctr.mu.Unlock()
	if !ctr.pinsImage && ctr.rec.State != meta.ContainerExited {
		c.refs.add(ctr.rec.ImageID, 1)
		ctr.pinsImage = true
	}
	if !ctr.pinsVolumes {
		for _, id := range ctr.rec.ImageVolumes {
			c.refs.add(id, 1)
		}
		ctr.pinsVolumes = true
	}
}

// unpinExited drops the reference of an exited container to its image;
// called under ctr.mu once its record says exited.
func (c *Controller) unpinExited(ctr *Container) {
	if ctr.pinsImage {
		c.refs.add(ctr.rec.ImageID, -1)
		ctr.pinsImage = false
	}
}

// unpin drops every reference of ctr, once it is no longer listed.
func (c *Controller) unpin(ctr *Container) {
	ctr.mu.Lock()
	defer ctr.mu.Unlock()
	c.unpinExited(ctr)
	if ctr.pinsVolumes {
		for _, id := range ctr.rec.ImageVolumes {
			c.refs.add(id, -1)
		}
		ctr.pinsVolumes = false
	}
}
