package registrar

import (
	"errors"
	"fmt"
	"sync"
)

// ErrNameReserved is wrapped by *ReservedError: the name belongs to
// another ID.
var ErrNameReserved = errors.New("name is reserved")

// ErrIDReserved means the ID is already reserved under another name. IDs
// are random, so this points at a bug in the caller rather than at a
// client's mistake.
var ErrIDReserved = errors.New("id is reserved for another name")

// ReservedError reports a name taken by another ID, so that the
// AlreadyExists message can name the existing object as CRI asks.
type ReservedError struct {
	Name string
	ID   string // the holder
}

func (e *ReservedError) Error() string {
	return fmt.Sprintf("name %q is reserved for %q", e.Name, e.ID)
}

func (e *ReservedError) Unwrap() error { return ErrNameReserved }

// Registrar maps names to IDs one to one. It is safe for concurrent use.
type Registrar struct {
	mu    sync.Mutex
	names map[string]string // name -> id
	ids   map[string]string // id -> name, for ReleaseID
}

// New returns an empty Registrar.
func New() *Registrar {
	return &Registrar{names: map[string]string{}, ids: map[string]string{}}
}

// Reserve gives name to id. Reserving the same pair again succeeds, so a
// step that is repeated (recovery after a restart) need not check first.
// A name held by another ID fails with a *ReservedError naming it; an ID
// held under another name fails with ErrIDReserved.
func (r *Registrar) Reserve(name, id string) error {
	if name == "" || id == "" {
		return fmt.Errorf("reserve name %q for id %q: name and id must not be empty", name, id)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if holder, ok := r.names[name]; ok {
		if holder == id {
			return nil
		}
		return &ReservedError{Name: name, ID: holder}
	}
	if other, ok := r.ids[id]; ok {
		return fmt.Errorf("reserve name %q for id %q: id holds name %q: %w", name, id, other, ErrIDReserved)
	}
	r.names[name] = id
	r.ids[id] = name
	return nil
}

// Release frees name. Releasing a free name does nothing.
func (r *Registrar) Release(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id, ok := r.names[name]; ok {
		delete(r.names, name)
		delete(r.ids, id)
	}
}

// ReleaseID frees the name id holds, for callers that remove objects by ID.
// Releasing an ID without a name does nothing.
func (r *Registrar) ReleaseID(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name, ok := r.ids[id]; ok {
		delete(r.ids, id)
		delete(r.names, name)
	}
}

// Get returns the ID holding name.
func (r *Registrar) Get(name string) (id string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok = r.names[name]
	return id, ok
}
