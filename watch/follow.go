package watch

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// Reconnect delays for Follow. The first retry is quick because most stream
// failures are a controller restart or a load balancer dropping idle
// connections; the cap bounds how stale a view gets after a long outage.
const (
	backoffInitial = 50 * time.Millisecond
	backoffMax     = 5 * time.Second
)

// Stream is the receiving half of a watch stream;
// grpc.ServerStreamingClient[p4meshv1.Event] satisfies it. Recv must return
// once the context the stream was opened with ends.
type Stream interface {
	Recv() (*p4meshv1.Event, error)
}

// Handler receives a stream's events from Follow, on Follow's goroutine.
// Nil fields are skipped.
type Handler struct {
	// Put sets key to the item in ev (a PUT event, whose oneof holds the
	// value and whose Revision is the server's revision after it).
	Put func(key string, ev *p4meshv1.Event)
	// Delete removes key.
	Delete func(key string, rev uint64)
	// Reset drops the whole view: a snapshot follows. Follow also calls it
	// itself when a stream breaks in the middle of a snapshot, because the
	// half-received snapshot cannot be resumed and may hold items the next
	// snapshot no longer has.
	Reset func()
	// Synced says the view is whole at rev: after the snapshot, or after
	// the backlog of a resumed stream. Consumers compile from the view only
	// once it is synced.
	Synced func(rev uint64)
	// Progress says the server is at rev with nothing more for this view:
	// the view is unchanged, and its revision is rev.
	Progress func(rev uint64)
	// OnEvent, if set, sees every event before it is applied: a hook for
	// metrics (events by type, last revision) that needs no import here.
	OnEvent func(ev *p4meshv1.Event)
}

// Follow keeps one watch stream open until ctx ends. It opens the stream
// with open(ctx, resumeRev), applies its events to h, and when the stream
// fails reconnects after an exponential backoff with jitter (50ms doubling
// to 5s, back to 50ms after each SYNCED), resuming from the last revision
// applied whole, so the view sees every change in order, and once unless
// the stream broke in the middle of a revision (whose events then come
// again, which PUT and DELETE being idempotent makes harmless). open must bind
// the stream to the ctx it is given: Follow cancels it to release a stream
// it is done with. Follow returns nil when ctx ends; there is no other way
// out, since a watch that gives up would leave its consumer with a silently
// stale view. name labels the log lines; log may be nil.
func Follow(ctx context.Context, name string, log *slog.Logger, open func(ctx context.Context, resumeRev uint64) (Stream, error), h Handler) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("watch", name)
	f := &follower{h: h, log: log}
	for {
		err := f.once(ctx, open)
		if ctx.Err() != nil {
			return nil
		}
		d := f.backoff.next()
		log.Warn("watch stream ended; reconnecting", "err", err, "resume_revision", f.resumeRev(), "delay", d)
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// follower is Follow's state across reconnects.
type follower struct {
	h       Handler
	log     *slog.Logger
	backoff backoff

	// rev is the last revision applied whole (of a SYNCED, a PROGRESS, or
	// a change event without more); meaningful only when whole. A change
	// event with more leaves it where it is: the stream may break before
	// the rest of its revision, and resuming from rev has the server send
	// the whole of it again.
	rev   uint64
	whole bool // the view is complete as of rev (a SYNCED was seen since the last RESET)
	// partial: events of an unfinished snapshot have been applied, so the
	// view must be dropped before starting over.
	partial bool
}

// resumeRev is what to ask the server for: the last applied revision if
// the view is whole, else a fresh snapshot.
func (f *follower) resumeRev() uint64 {
	if f.whole {
		return f.rev
	}
	return 0
}

// once runs one stream until it fails.
func (f *follower) once(ctx context.Context, open func(context.Context, uint64) (Stream, error)) error {
	// Cancelling sctx releases the stream (gRPC keeps a client stream's
	// resources until its context ends or it is read to the end).
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !f.whole && f.partial {
		f.partial = false
		if f.h.Reset != nil {
			f.h.Reset()
		}
	}
	from := f.resumeRev()
	s, err := open(sctx, from)
	if err != nil {
		return fmt.Errorf("open from revision %d: %w", from, err)
	}
	for {
		ev, err := s.Recv()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		f.apply(ev)
	}
}

func (f *follower) apply(ev *p4meshv1.Event) {
	if f.h.OnEvent != nil {
		f.h.OnEvent(ev)
	}
	switch ev.GetType() {
	case p4meshv1.Event_PUT:
		f.applied(ev)
		if f.h.Put != nil {
			f.h.Put(ev.GetKey(), ev)
		}
	case p4meshv1.Event_DELETE:
		f.applied(ev)
		if f.h.Delete != nil {
			f.h.Delete(ev.GetKey(), ev.GetRevision())
		}
	case p4meshv1.Event_SYNCED:
		f.rev, f.whole, f.partial = ev.GetRevision(), true, false
		f.backoff.reset()
		if f.h.Synced != nil {
			f.h.Synced(ev.GetRevision())
		}
	case p4meshv1.Event_RESET:
		f.rev, f.whole, f.partial = 0, false, false
		if f.h.Reset != nil {
			f.h.Reset()
		}
	case p4meshv1.Event_PROGRESS:
		// A server sends it only after SYNCED; one in a snapshot would
		// say nothing about a view that is not whole.
		if f.whole && ev.GetRevision() > f.rev {
			f.rev = ev.GetRevision()
			if f.h.Progress != nil {
				f.h.Progress(f.rev)
			}
		}
	default:
		// A type from a newer server: skipping it is safer than breaking
		// a stream that would hit it again on every reconnect.
		f.log.Warn("watch event of unknown type ignored", "type", ev.GetType(), "revision", ev.GetRevision())
	}
}

// applied records a PUT or DELETE.
func (f *follower) applied(ev *p4meshv1.Event) {
	if !f.whole {
		f.partial = true
	} else if !ev.GetMore() {
		f.rev = ev.GetRevision()
	}
}

// backoff is an exponential delay with "equal jitter": a random point in
// the upper half of the current delay. The jitter spreads out the OHCs that
// all lost their stream when a controller restarted; keeping the lower half
// guarantees a pause, so a server that accepts and drops streams at once
// is not hammered.
type backoff struct {
	cur time.Duration // last delay before jitter; 0 after a reset
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = backoffInitial
	} else {
		b.cur = min(2*b.cur, backoffMax)
	}
	half := b.cur / 2
	return half + rand.N(b.cur-half)
}

func (b *backoff) reset() { b.cur = 0 }
