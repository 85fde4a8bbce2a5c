package watch

import (
	"maps"
	"sync"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// View is a client's in-memory copy of one stream: the latest PUT event of
// each key. OHC and controller code keeps one per stream and compiles its
// desired state from Items once the view is Synced. The zero value is an
// empty view, ready to use, and safe for concurrent use (Follow writes while
// a reconciler reads).
type View struct {
	mu     sync.Mutex // guards the following fields
	items  map[string]*p4meshv1.Event
	rev    uint64
	synced bool
}

// Put sets key to the item carried by ev. ev is kept, not copied: the
// caller must not modify it afterwards.
func (v *View) Put(key string, ev *p4meshv1.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.items == nil {
		v.items = make(map[string]*p4meshv1.Event)
	}
	v.items[key] = ev
	v.rev = ev.GetRevision()
}

// Delete removes key, at server revision rev. An absent key is not an
// error: a filtered stream resumed without a snapshot may delete what this
// view never had.
func (v *View) Delete(key string, rev uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.items, key)
	v.rev = rev
}

// Reset empties the view and marks it not synced: a snapshot follows.
func (v *View) Reset() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.items = nil
	v.rev = 0
	v.synced = false
}

// MarkSynced records that the view is whole at rev.
func (v *View) MarkSynced(rev uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rev = rev
	v.synced = true
}

// Progress records that the server is at rev with nothing more for this
// view: the items are as they were.
func (v *View) Progress(rev uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rev = rev
}

// Synced reports whether the view is whole: a SYNCED has been received
// since the last Reset. Before that Items is a partial snapshot.
func (v *View) Synced() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.synced
}

// Revision returns the server revision of the last event applied,
// PROGRESS included.
func (v *View) Revision() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.rev
}

// Len returns the number of items.
func (v *View) Len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.items)
}

// Get returns the event holding key's item, or nil.
func (v *View) Get(key string) *p4meshv1.Event {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.items[key]
}

// Items returns a copy of the view's map; the events in it are shared and
// must not be modified.
func (v *View) Items() map[string]*p4meshv1.Event {
	v.mu.Lock()
	defer v.mu.Unlock()
	m := make(map[string]*p4meshv1.Event, len(v.items))
	maps.Copy(m, v.items)
	return m
}

// Handler returns a Handler that keeps v up to date. onChange (may be nil)
// is called, on Follow's goroutine, whenever the view is whole and has
// changed: at each SYNCED and after each PUT or DELETE while synced. It is
// not called while a snapshot is arriving, so consumers never compile from
// a half view. It must not block; poking a one-slot channel lets the
// consumer coalesce bursts.
func (v *View) Handler(onChange func()) Handler {
	notify := func() {
		if onChange != nil {
			onChange()
		}
	}
	return Handler{
		Put: func(key string, ev *p4meshv1.Event) {
			v.Put(key, ev)
			if v.Synced() {
				notify()
			}
		},
		Delete: func(key string, rev uint64) {
			v.Delete(key, rev)
			if v.Synced() {
				notify()
			}
		},
		Reset: v.Reset,
		Synced: func(rev uint64) {
			v.MarkSynced(rev)
			notify()
		},
		// Not notified: nothing a consumer compiles from changed.
		Progress: v.Progress,
	}
}
