package watch

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// Defaults for Options. The log is sized so a client that was away for a
// short controller hiccup or a reconnect backoff resumes with deltas instead
// of a full snapshot; the buffer absorbs a burst (a VPC's endpoints
// appearing at once) while a client's stream is momentarily slow.
const (
	DefaultLogSize = 4096
	DefaultBuffer  = 1024
)

// Options tune a Table. The zero value means the defaults.
type Options struct {
	// LogSize is how many recent changes are kept to resume streams from
	// (more while a live stream has yet to take them); a client whose
	// revision is older gets RESET and a snapshot. 0 means DefaultLogSize.
	LogSize int
	// Buffer is how many changes a subscriber may have yet to take from
	// the log before it is considered behind and forced to resynchronise.
	// 0 means DefaultBuffer.
	Buffer int
	// Epoch is the revision the table starts at. 0 means the current Unix
	// time in nanoseconds, which is what production wants: revisions then
	// grow across process restarts, so a resume revision handed out before
	// a controller restart is below the new table's range and gets RESET
	// instead of being mistaken for a current one. Tests set it to be
	// deterministic.
	Epoch uint64
}

func (o Options) withDefaults() Options {
	if o.LogSize <= 0 {
		o.LogSize = DefaultLogSize
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	if o.Epoch == 0 {
		o.Epoch = uint64(time.Now().UnixNano())
	}
	return o
}

// Stats are a Table's counters, for the caller to export as metrics (this
// package registers none, so it imposes no registry).
type Stats struct {
	Revision    uint64 // current revision
	Items       int    // items in the table
	Subscribers int    // streams being served (Serve calls in progress)
	// ResyncsForced counts subscribers that fell behind their buffer and
	// were sent RESET and a new snapshot. A steadily growing value means
	// clients or the network are too slow for the change rate.
	ResyncsForced uint64
	// Snapshots counts snapshots served: first connections, resumes from a
	// compacted or foreign revision, and forced resyncs.
	Snapshots uint64
}

// change is one entry of the log.
type change struct {
	rev uint64
	key string
	val proto.Message // nil: the item was deleted
	// prev is the value before the change (nil: absent). A filtered stream
	// resumed without a snapshot uses it to tell whether the client holds
	// the item, since it has no record of what an earlier stream sent.
	prev proto.Message
}

// subscriber is one live stream's position in the log. It holds no
// changes of its own: the log is shared, so a stream whose client stopped
// reading costs the table the same whether one change or a thousand are
// waiting for it.
type subscriber struct {
	// from is the revision when the stream subscribed (set before it is
	// in Table.subs) and taken the last revision it has copied out of the
	// log. Changes after max(from, taken) are what it still has to take:
	// its backlog at from was bounded when it subscribed, and only changes
	// since count against the buffer.
	from  uint64
	taken atomic.Uint64
	// wake holds a token when the log has grown since the stream last
	// looked; the producer never waits to leave one.
	wake chan struct{}
	// lost is set, and the subscriber removed from Table.subs, when it
	// fell more than Buffer changes behind. Serve checks it before sending
	// each change it took so it does not send stale deltas before the
	// RESET.
	lost atomic.Bool
}

// Table is a keyed set of items (protobuf messages) with a revision and a
// bounded change log, served to any number of watch streams.
//
// Each change (a Put of a new or different value, or a Delete of a present
// key) advances the revision by exactly one, which is what lets a resumed
// stream prove it has no gap: the log holds every revision in
// (compacted, rev].
//
// Stored values are clones owned by the table and never modified, so
// snapshots and events share them without copying. A Table is safe for
// concurrent use; Put, Delete and Replace never wait for subscribers.
type Table struct {
	name string
	opts Options

	// mu serialises changes and guards the following fields. Mutexes
	// (rather than an actor goroutine) because every operation under them
	// is short and bounded: map updates, a log append and non-blocking
	// channel sends; only Replace holds mu for long, one change at a time.
	mu    sync.Mutex
	items map[string]proto.Message
	// snap is the last snapshot taken, for streams starting at the same
	// revision to share. Weak: the streams sending it keep it alive, and a
	// table nobody is reading a snapshot of holds no copy of its items.
	snap weak.Pointer[snapshot]

	// logMu guards the following fields; rev is written holding mu as
	// well, so either lock reads it. Apart from mu so that streams keep
	// taking changes from the log during a long Replace, as they would
	// from queues of their own: the producer write-locks logMu once per
	// change, briefly, and streams read-lock it.
	logMu     sync.RWMutex
	rev       uint64 // revision after the last change
	compacted uint64 // newest revision dropped from log; resumable from >= compacted
	// log holds revisions compacted+1 .. rev, in order: the last LogSize,
	// and any older ones a subscriber has yet to take.
	log       []change
	subs      map[*subscriber]struct{}
	serving   int // Serve calls in progress, subscribed or not
	resyncs   uint64
	snapshots uint64
}

// NewTable returns an empty table. name appears in errors, to tell streams
// apart.
func NewTable(name string, o Options) *Table {
	o = o.withDefaults()
	return &Table{
		name:      name,
		opts:      o,
		items:     make(map[string]proto.Message),
		rev:       o.Epoch,
		compacted: o.Epoch,
		subs:      make(map[*subscriber]struct{}),
	}
}

// Put stores a clone of v under key and returns the revision after it.
// A v equal (proto.Equal) to the current value is a no-op returning the
// current revision, so a caller may recompute a derived view and Put all of
// it without waking subscribers for what did not change. v must not be nil.
func (t *Table) Put(key string, v proto.Message) uint64 {
	if v == nil {
		panic(fmt.Sprintf("watch %s: Put(%q, nil)", t.name, key))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.putLocked(key, v)
	return t.rev
}

// Delete removes key and returns the revision after it; deleting an absent
// key is a no-op.
func (t *Table) Delete(key string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.deleteLocked(key)
	return t.rev
}

// Replace makes the contents exactly items: a put for each new or changed
// item and a delete for each removed one, one revision step each, in key
// order so two tables fed the same inputs log the same sequence. It is for
// owners that recompute a whole view and want only the difference sent.
// It returns the revision after the last change.
func (t *Table) Replace(items map[string]proto.Message) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := make([]string, 0, len(items)+len(t.items))
	for k := range items {
		keys = append(keys, k)
	}
	for k := range t.items {
		if _, ok := items[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if v, ok := items[k]; ok {
			if v == nil {
				panic(fmt.Sprintf("watch %s: Replace with nil value for %q", t.name, k))
			}
			t.putLocked(k, v)
		} else {
			t.deleteLocked(k)
		}
	}
	return t.rev
}

func (t *Table) putLocked(key string, v proto.Message) {
	prev, ok := t.items[key]
	if ok && proto.Equal(prev, v) {
		return
	}
	v = proto.Clone(v)
	t.items[key] = v
	t.record(change{key: key, val: v, prev: prev})
}

func (t *Table) deleteLocked(key string) {
	prev, ok := t.items[key]
	if !ok {
		return
	}
	delete(t.items, key)
	t.record(change{key: key, prev: prev})
}

// record advances the revision, logs c and wakes every subscriber. t.mu
// must be held. A subscriber more than Buffer changes behind is dropped and
// marked rather than waited for: the producer's latency must not depend on
// the slowest client.
func (t *Table) record(c change) {
	t.logMu.Lock()
	defer t.logMu.Unlock()
	t.rev++
	c.rev = t.rev
	t.log = append(t.log, c)
	keep := t.rev // the log keeps every revision after this one
	for s := range t.subs {
		taken := s.taken.Load()
		if t.rev-max(s.from, taken) > uint64(t.opts.Buffer) {
			s.lost.Store(true)
			delete(t.subs, s)
			t.resyncs++
		} else {
			keep = min(keep, taken)
		}
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	// A subscriber is at most its backlog at subscription plus Buffer
	// behind, so keeping what subscribers still need bounds the log at
	// LogSize or 2*Buffer changes, whichever is more.
	for len(t.log) > t.opts.LogSize && t.log[0].rev <= keep {
		t.compacted = t.log[0].rev
		t.log[0] = change{} // release the values to the collector
		t.log = t.log[1:]
	}
}

// Snapshot returns the items and the revision they are at. The values are
// the table's own and must not be modified.
func (t *Table) Snapshot() (map[string]proto.Message, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := make(map[string]proto.Message, len(t.items))
	for k, v := range t.items {
		m[k] = v
	}
	return m, t.rev
}

// Revision returns the revision after the last change.
func (t *Table) Revision() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rev
}

// Len returns the number of items.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.items)
}

// Subscribers returns the number of streams being served.
func (t *Table) Subscribers() int {
	t.logMu.RLock()
	defer t.logMu.RUnlock()
	return t.serving
}

// Stats returns the table's counters.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.logMu.RLock()
	defer t.logMu.RUnlock()
	return Stats{
		Revision:      t.rev,
		Items:         len(t.items),
		Subscribers:   t.serving,
		ResyncsForced: t.resyncs,
		Snapshots:     t.snapshots,
	}
}

// item is one entry of a snapshot.
type item struct {
	key string
	val proto.Message
}

// snapshot is the items at one revision, in key order so clients and tests
// see a deterministic stream. It is built at most once per revision and
// shared, read-only, by every stream that starts a snapshot at that
// revision: a stream sending it holds a pointer and its position, so many
// streams stalled in the middle of a snapshot (clients that stopped
// reading) cost one copy of the table's index between them, not one each.
type snapshot struct {
	rev    uint64
	sorted sync.Once
	items  []item
}

// takeSnapshot returns the snapshot at the current revision, shared with
// any stream that took it before.
func (t *Table) takeSnapshot() *snapshot {
	t.mu.Lock()
	t.logMu.Lock()
	t.snapshots++
	t.logMu.Unlock()
	s := t.snap.Value()
	if s == nil || s.rev != t.rev {
		s = &snapshot{rev: t.rev, items: make([]item, 0, len(t.items))}
		for k, v := range t.items {
			s.items = append(s.items, item{k, v})
		}
		t.snap = weak.Make(s)
	}
	t.mu.Unlock()
	// Sorted outside the lock, so the producer waits only for the copy;
	// streams sharing the snapshot wait for the one sort.
	s.sorted.Do(func() {
		slices.SortFunc(s.items, func(a, b item) int { return cmp.Compare(a.key, b.key) })
	})
	return s
}

// Serve streams the table to one client per the watch discipline and
// blocks until ctx ends (returning nil) or send fails (returning its error).
//
// If fromRev is 0, older than the oldest change still in the log, or from
// another epoch (above the current revision, as after a controller
// restart), Serve sends RESET (unless fromRev is 0), the snapshot as PUTs
// all carrying the snapshot revision, and SYNCED. Otherwise it sends the
// logged changes after fromRev, then SYNCED. Live changes follow. A client
// that falls behind its buffer is sent RESET, a new snapshot and SYNCED.
//
// send is called from this goroutine only and may block (a gRPC Send);
// while it does, changes wait in the table's log, up to Buffer of them. wrap
// sets the Event's value from an item: the caller knows its concrete type.
// The value handed to wrap is shared and must not be modified.
func (t *Table) Serve(ctx context.Context, fromRev uint64, send func(*p4meshv1.Event) error, wrap func(key string, v proto.Message, ev *p4meshv1.Event)) error {
	return t.serve(ctx, fromRev, nil, nil, send, wrap)
}

// Gate bounds how many streams may be sending at once. A gRPC server
// queues what a handler sends behind a client that does not read, so what
// stalled clients can make it hold grows with the number of streams in the
// middle of sending, not with the number of streams: a stream waiting for
// changes, or for the gate, has nothing on its way.
//
// A stream enters at the start of a burst (before it takes a snapshot, or
// before the first send of a catch-up or of the changes that woke it) and
// leaves once it has caught up, about to wait for changes, or when it ends. A stream whose client never
// reads never catches up, so it holds its place until its stream or
// connection ends.
type Gate interface {
	// Enter waits for room to send. It fails only when ctx ends, and the
	// stream then ends as if cancelled.
	Enter(ctx context.Context) error
	// Leave gives the room back; it is called once for each Enter that
	// succeeded.
	Leave()
	// Progress is called with true before each send while the stream is
	// in the gate and with false once the send returns, so the gate can
	// tell a send that does not return (a client that stopped reading)
	// from a stream that is merely busy. It may do nothing.
	Progress(sending bool)
}

// ServeGated is Serve with every burst of sends going through g (nil: no
// gate). A stream waiting in g holds no lock of the table: the producer
// and other streams carry on, and a stream that waits long enough to fall
// behind its buffer is resynchronised once it gets in, as a slow one is.
func (t *Table) ServeGated(ctx context.Context, fromRev uint64, g Gate, send func(*p4meshv1.Event) error, wrap func(key string, v proto.Message, ev *p4meshv1.Event)) error {
	return t.serve(ctx, fromRev, nil, g, send, wrap)
}

// ServeFiltered is Serve for one view of the table: only items keep
// accepts are sent, and an item that stops being accepted (or is deleted
// after being accepted) is sent as a DELETE. This is how one table serves
// many subscribers under authorization and export-policy filtering.
//
// keep must give the same answer for the same key and value for the life
// of the stream: on a resumed stream, whether the client holds an item is
// worked out by asking keep about the value it had before the change.
// When what a subscriber may see changes (a policy edit), end its stream so
// the client reconnects and resynchronises.
func (t *Table) ServeFiltered(ctx context.Context, fromRev uint64, keep func(key string, v proto.Message) bool, send func(*p4meshv1.Event) error, wrap func(key string, v proto.Message, ev *p4meshv1.Event)) error {
	if keep == nil {
		keep = func(string, proto.Message) bool { return true }
	}
	return t.serve(ctx, fromRev, keep, nil, send, wrap)
}

func (t *Table) serve(ctx context.Context, fromRev uint64, keep func(string, proto.Message) bool, g Gate, send func(*p4meshv1.Event) error, wrap func(string, proto.Message, *p4meshv1.Event)) error {
	err := t.serveLoop(ctx, fromRev, keep, g, send, wrap)
	if ctx.Err() != nil {
		// A send failing because ctx ended is the client going away,
		// which is how every stream ends: not an error.
		return nil
	}
	return err
}

// takeBatch is how many changes a stream copies out of the log per lock:
// enough to make the lock cheap against the sends, few enough that what a
// stream stalled in Send holds stays small.
const takeBatch = 16

// subscribe registers a stream whose client is at cur, if cur is in the log
// and the backlog after it short enough that live changes are unlikely to
// push the stream past the buffer while the backlog is being sent; until
// then a long catch-up costs the producer nothing. It returns nil if not.
func (t *Table) subscribe(cur uint64) *subscriber {
	t.logMu.Lock()
	defer t.logMu.Unlock()
	if cur < t.compacted || cur > t.rev || t.rev-cur > uint64(t.opts.Buffer) {
		return nil
	}
	s := &subscriber{from: t.rev, wake: make(chan struct{}, 1)}
	s.taken.Store(cur)
	t.subs[s] = struct{}{}
	return s
}

// take copies into batch the next changes after cur for a stream (sub is
// nil if it has not subscribed) and reports whether they bring it to the
// end of the log. ok is false when only a snapshot can make the client
// whole: sub fell behind, or cur was compacted away or is from another
// epoch. A subscriber's changes are never compacted.
func (t *Table) take(sub *subscriber, cur uint64, synced bool, batch []change) (n int, caughtUp, ok bool) {
	t.logMu.RLock()
	defer t.logMu.RUnlock()
	if sub != nil && sub.lost.Load() || cur < t.compacted || cur > t.rev {
		return 0, false, false
	}
	end := t.rev
	if sub != nil && !synced {
		// A resumed stream's SYNCED comes after its backlog, before what
		// changed since it subscribed.
		end = sub.from
	}
	n = copy(batch[:min(end-cur, uint64(len(batch)))], t.log[cur-t.compacted:])
	if sub != nil {
		sub.taken.Store(cur + uint64(n)) // revisions in the log are consecutive
	}
	return n, cur+uint64(n) == t.rev, true
}

func (t *Table) serveLoop(ctx context.Context, fromRev uint64, keep func(string, proto.Message) bool, g Gate, send func(*p4meshv1.Event) error, wrap func(string, proto.Message, *p4meshv1.Event)) error {
	t.logMu.Lock()
	t.serving++
	t.logMu.Unlock()
	var sub *subscriber
	defer func() {
		t.logMu.Lock()
		t.serving--
		if sub != nil {
			delete(t.subs, sub)
		}
		t.logMu.Unlock()
	}()

	st := &stream{name: t.name, keep: keep, send: send, wrap: wrap, ctx: ctx, gate: g}
	defer st.leave()
	var batch [takeBatch]change
	cur := fromRev           // the revision the client's view is at
	snapshot := fromRev == 0 // send a snapshot before anything else
	reset := false           // precede that snapshot with RESET
	synced := false          // SYNCED has been sent on this stream
	for ctx.Err() == nil {
		if snapshot {
			// In the gate before taking the snapshot: a stream waiting
			// for its turn would otherwise keep one alive, and streams
			// that arrived at different revisions one each.
			if err := st.enter(); err != nil {
				return err
			}
			snap := t.takeSnapshot()
			if reset {
				if err := st.emit(&p4meshv1.Event{Type: p4meshv1.Event_RESET, Revision: snap.rev}); err != nil {
					return err
				}
			}
			st.restart()
			for _, it := range snap.items {
				if err := st.put(it.key, it.val, snap.rev); err != nil {
					return err
				}
			}
			if err := st.emit(&p4meshv1.Event{Type: p4meshv1.Event_SYNCED, Revision: snap.rev}); err != nil {
				return err
			}
			cur, synced, snapshot = snap.rev, true, false
		}

		if sub == nil {
			sub = t.subscribe(cur)
		}
		n, caughtUp, ok := t.take(sub, cur, synced, batch[:])
		if !ok {
			// A subscriber that fell behind was already removed from
			// t.subs by the producer.
			sub = nil
			snapshot, reset = true, true
			continue
		}

		for _, c := range batch[:n] {
			if sub != nil && sub.lost.Load() {
				break // fell behind: the rest is stale
			}
			if err := st.change(c); err != nil {
				return err
			}
			cur = c.rev
		}
		clear(batch[:n]) // hold no values while waiting
		if sub == nil || sub.lost.Load() {
			continue
		}
		if !synced && cur == sub.from {
			if err := st.emit(&p4meshv1.Event{Type: p4meshv1.Event_SYNCED, Revision: cur}); err != nil {
				return err
			}
			synced = true
		}
		if caughtUp {
			st.leave()
			select {
			case <-ctx.Done():
				return nil
			case <-sub.wake:
			}
		}
	}
	return nil
}

// stream is the per-subscriber state of one Serve call.
type stream struct {
	name string
	keep func(string, proto.Message) bool // nil: unfiltered
	send func(*p4meshv1.Event) error
	wrap func(string, proto.Message, *p4meshv1.Event)

	// gate, if not nil, is entered (with ctx, the Serve call's) before
	// the first send of a burst; in records that it is.
	ctx  context.Context
	gate Gate
	in   bool

	// sent records, for a filtered stream, whether the client holds a key.
	// After a snapshot it is authoritative: true entries only, a missing
	// key means not held. On a resumed stream it starts empty and records
	// true and false for the keys seen so far; for the others, prev decides.
	sent          map[string]bool
	authoritative bool
}

// restart begins a snapshot: the client's view is empty.
func (s *stream) restart() {
	if s.keep != nil {
		s.sent = make(map[string]bool)
		s.authoritative = true
	}
}

// put sends key=v if the stream's filter accepts it.
func (s *stream) put(key string, v proto.Message, rev uint64) error {
	if s.keep != nil {
		if !s.keep(key, v) {
			return nil
		}
		s.sent[key] = true
	}
	return s.emitPut(key, v, rev)
}

// change sends a logged change as this subscriber should see it.
func (s *stream) change(c change) error {
	if s.keep == nil {
		if c.val == nil {
			return s.emit(&p4meshv1.Event{Type: p4meshv1.Event_DELETE, Revision: c.rev, Key: c.key})
		}
		return s.emitPut(c.key, c.val, c.rev)
	}
	if s.sent == nil {
		s.sent = make(map[string]bool)
	}
	now := c.val != nil && s.keep(c.key, c.val)
	had, known := s.sent[c.key]
	if !known && !s.authoritative {
		had = c.prev != nil && s.keep(c.key, c.prev)
	}
	switch {
	case now:
		s.sent[c.key] = true
		return s.emitPut(c.key, c.val, c.rev)
	case s.authoritative:
		delete(s.sent, c.key)
	default:
		s.sent[c.key] = false
	}
	if had {
		return s.emit(&p4meshv1.Event{Type: p4meshv1.Event_DELETE, Revision: c.rev, Key: c.key})
	}
	return nil
}

func (s *stream) emitPut(key string, v proto.Message, rev uint64) error {
	ev := &p4meshv1.Event{Type: p4meshv1.Event_PUT, Revision: rev, Key: key}
	if s.wrap != nil {
		s.wrap(key, v, ev)
	}
	return s.emit(ev)
}

// enter enters the gate if there is one and the stream is not in it.
func (s *stream) enter() error {
	if s.gate == nil || s.in {
		return nil
	}
	if err := s.gate.Enter(s.ctx); err != nil {
		return fmt.Errorf("watch %s: waiting to send: %w", s.name, err)
	}
	s.in = true
	return nil
}

// emit sends ev, entering the gate first if the stream is not in it.
func (s *stream) emit(ev *p4meshv1.Event) error {
	if err := s.enter(); err != nil {
		return err
	}
	if s.gate != nil {
		s.gate.Progress(true)
	}
	err := s.send(ev)
	if s.gate != nil {
		s.gate.Progress(false)
	}
	if err != nil {
		return fmt.Errorf("watch %s: send %v at revision %d: %w", s.name, ev.GetType(), ev.GetRevision(), err)
	}
	return nil
}

// leave leaves the gate if the stream is in it.
func (s *stream) leave() {
	if s.in {
		s.in = false
		s.gate.Leave()
	}
}
