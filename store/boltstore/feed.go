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
	keep      int
	keepBytes int

	mu sync.Mutex // guards the following fields
	// log holds the batches after floor, in revision order, and size
	// their ops' sizes (batchSize), in total.
	log  []store.Batch
	size int
	// dead is the size of the batches dropped from the front of log's
	// array since it was last copied: the array still holds them.
	dead int
	// floor is the oldest revision a watcher can start after.
	floor uint64
	// last is the revision of the newest batch (floor if log is empty).
	last uint64
	// wake is closed, and replaced, when a batch arrives or the feed
	// closes.
	wake   chan struct{}
	closed bool
}

func newFeed(rev uint64, keep, keepBytes int) *feed {
	return &feed{keep: keep, keepBytes: keepBytes, floor: rev, last: rev, wake: make(chan struct{})}
}

// opOverhead is what an op costs in the history besides its key's and
// value's bytes (the Op itself), so that many empty ops count too.
const opOverhead = 40

func batchSize(b store.Batch) int {
	n := 0
	for _, op := range b.Ops {
		n += opOverhead + len(op.Key) + len(op.Value)
	}
	return n
}

// publish appends the batches of a committed group, which carries
// consecutive revisions after f.last.
func (f *feed) publish(group []*request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range group {
		b := store.Batch{Rev: r.rev, Ops: r.ops}
		f.log = append(f.log, b)
		f.size += batchSize(b)
		f.last = r.rev
	}
	drop := max(len(f.log)-f.keep, 0)
	dropped := 0
	for i := range drop {
		dropped += batchSize(f.log[i])
	}
	for drop < len(f.log) && f.size-dropped > f.keepBytes {
		dropped += batchSize(f.log[drop])
		drop++
	}
	if drop > 0 {
		f.floor = f.log[drop-1].Rev
		f.size -= dropped
		f.dead += dropped
		// Trim by copying once the dropped part outgrows the kept part,
		// or its ops the byte bound, so that the array neither grows
		// without bound nor keeps dropped ops alive; watchers hold
		// sub-slices of the old array, which stays valid for them.
		if drop > f.keep || f.dead > f.keepBytes {
			f.log = append([]store.Batch(nil), f.log[drop:]...)
			f.dead = 0
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
