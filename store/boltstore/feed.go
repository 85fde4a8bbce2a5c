package boltstore

import (
	"context"
	"fmt"
	"iter"
	"sort"
	"sync"

	"github.com/p4mesh/p4mesh/store"
)

// feed is the recent history of committed batches, for watchers in this
// process. Batches are immutable once published, so watchers read them
// without holding mu.
type feed struct {
	keep int

	mu sync.Mutex // guards the following fields
	// log holds the batches after floor, in revision order.
	log []store.Batch
	// floor is the oldest revision a watcher can start after.
	floor uint64
	// last is the revision of the newest batch (floor if log is empty).
	last uint64
	// wake is closed, and replaced, when a batch arrives or the feed
	// closes.
	wake   chan struct{}
	closed bool
}

func newFeed(rev uint64, keep int) *feed {
	return &feed{keep: keep, floor: rev, last: rev, wake: make(chan struct{})}
}

// publish appends the batches of a committed group, which carries
// consecutive revisions after f.last.
func (f *feed) publish(group []*request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range group {
		f.log = append(f.log, store.Batch{Rev: r.rev, Ops: r.ops})
		f.last = r.rev
	}
	if drop := len(f.log) - f.keep; drop > 0 {
		f.floor = f.log[drop-1].Rev
		// Trim by copying once the dropped part outgrows the kept part,
		// so the array does not grow without bound; watchers hold
		// sub-slices of the old array, which stays valid for them.
		if drop > f.keep {
			f.log = append([]store.Batch(nil), f.log[drop:]...)
		} else {
			f.log = f.log[drop:]
		}
	}
	close(f.wake)
	f.wake = make(chan struct{})
}

func (f *feed) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.wake)
	}
}

func (f *feed) watch(ctx context.Context, path string, after uint64) iter.Seq2[store.Batch, error] {
	return func(yield func(store.Batch, error) bool) {
		next := after
		for {
			f.mu.Lock()
			var err error
			switch {
			case f.closed:
				err = fmt.Errorf("watch %s: %w", path, store.ErrClosed)
			case next < f.floor:
				err = fmt.Errorf("watch %s after revision %d: history starts after %d: %w", path, next, f.floor, store.ErrCompacted)
			case next > f.last:
				err = fmt.Errorf("watch %s after revision %d: the store is at revision %d", path, next, f.last)
			}
			i := sort.Search(len(f.log), func(i int) bool { return f.log[i].Rev > next })
			pending, wake := f.log[i:], f.wake
			f.mu.Unlock()
			if err != nil {
				yield(store.Batch{}, err)
				return
			}
			for _, b := range pending {
				if !yield(b, nil) {
					return
				}
				next = b.Rev
			}
			if len(pending) > 0 {
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-wake:
			}
		}
	}
}
