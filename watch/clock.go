package watch

import (
	"fmt"
	"sync/atomic"
)

// Clock is a revision shared by the tables of one owner (Options.Clock),
// for an owner whose store revision moves every table, changed or not:
// the tables a change leaves alone read the clock rather than each take an
// empty commit, so that a change costs the tables it touches and one
// Advance, not a lock and a log entry in each of thousands of tables (a
// controller at a million endpoints has a table per host and five per
// published service). A table's revision is the greater of its own, that
// of its last change, and the clock's.
//
// The owner advances the clock to a revision only once every table it
// changes at that revision has it (Commit, ReplaceAt): a stream told the
// clock's revision has then been sent everything up to it, and a client
// that resumes from it misses nothing.
type Clock struct {
	rev atomic.Uint64
	// moved is closed at the next Advance and replaced by a new one:
	// streams with nothing to send wait on it to tell their clients the
	// new revision (PROGRESS). A stream loads it before it reads the
	// revision, so an Advance in between closes what it waits on.
	moved atomic.Pointer[chan struct{}]
}

// NewClock returns a clock at rev.
func NewClock(rev uint64) *Clock {
	c := &Clock{}
	c.rev.Store(rev)
	ch := make(chan struct{})
	c.moved.Store(&ch)
	return c
}

// Revision returns the clock's revision.
func (c *Clock) Revision() uint64 { return c.rev.Load() }

// Advance moves the clock to rev and wakes the streams waiting for it to
// move; it is the owner's to call, one call at a time. A rev equal to the
// clock's moves nothing; one below is a bug in the owner (its store's
// revisions only grow) and panics: the tables' revisions must never go
// back.
func (c *Clock) Advance(rev uint64) {
	if old := c.rev.Load(); rev <= old {
		if rev == old {
			return
		}
		panic(fmt.Sprintf("watch: Clock.Advance to revision %d, below the clock's %d", rev, old))
	}
	c.rev.Store(rev)
	ch := make(chan struct{})
	close(*c.moved.Swap(&ch))
}

// next returns a channel closed once the clock moves past the revision
// read after this call.
func (c *Clock) next() <-chan struct{} { return *c.moved.Load() }
