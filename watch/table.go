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
	// MinLogSize is the fewest changes a table's log may hold, however
	// few its items (see Options.LogSize): a small table that churns
	// still resumes a client that missed a few changes with deltas.
	MinLogSize = 64
	// DefaultProgressInterval bounds PROGRESS to one a second per stream:
	// often enough that a client's resume revision is seconds behind the
	// server's at worst, rarely enough to cost nothing against the changes.
	DefaultProgressInterval = time.Second
)

// Options tune a Table. The zero value means the defaults.
type Options struct {
	// LogSize is how many recent changes are kept to resume streams from
	// (more while a live stream has yet to take them); a client whose
	// revision is older gets RESET and a snapshot. 0 means DefaultLogSize.
	//
	// A table with fewer items than LogSize keeps as many changes as it
	// has items (MinLogSize at least): a resume that needs more changes
	// than that costs a snapshot no more events than the changes would,
	// so a small table that churns need not hold LogSize of them.
	LogSize int
	// Buffer is how many changes a subscriber may have yet to take from
	// the log before it is considered behind and forced to resynchronise.
	// 0 means DefaultBuffer.
	Buffer int
	// Epoch is the base revision: the table starts at it, and what the
	// owner fills it with before serving is its content at that revision.
	// Nothing before it can be resumed. An owner whose revisions are its
	// store's passes the store's revision when it builds the table, so a
	// client that was told that revision by another replica, or by the
	// process before a restart, resumes with no RESET. 0 means the current
	// Unix time in nanoseconds, for owners that number changes with
	// Put/Delete/Replace: revisions then grow across restarts, so a resume
	// revision from before one is below the new table's range and gets
	// RESET instead of being mistaken for a current one.
	Epoch uint64
	// ProgressInterval is the least time between two PROGRESS events on a
	// stream. 0 means DefaultProgressInterval.
	ProgressInterval time.Duration
	// Owned says the owner hands its items over: it never modifies a
	// message after giving it to Put, Commit, ReplaceAt, Replace or
	// NewTableFrom, so the table keeps the message itself instead of a
	// clone (and NewTableFrom keeps the owner's map itself). Cloning is what keeps an owner that reuses messages from
	// changing what streams are sent behind their back; at a million
	// items a commit it is a tenth of the cost.
	Owned bool
	// Clock, if set, is a revision the owner shares between its tables
	// and moves them all to, each change: the table's revision is the
	// clock's when that is above the table's own (see Clock). nil: the
	// table's revision is its own.
	Clock *Clock
	// ResumeFiltered makes the log keep each change's previous value, 16
	// bytes a change, which a ServeFiltered stream needs to resume with
	// deltas: without it, a filtered stream that resumes is sent RESET and
	// a snapshot. Serve and ServeGated never need it.
	ResumeFiltered bool
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
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = DefaultProgressInterval
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

// change is one entry of the log. It is 40 bytes: at a million items a
// log that holds a change of most of them is a large part of the heap.
type change struct {
	rev uint64
	key string
	val proto.Message // nil: the item was deleted
}

// takenChange is a change as a stream copies it out of the log.
type takenChange struct {
	change
	// prev is the value before the change (nil: absent, or not kept:
	// Options.ResumeFiltered). A filtered stream resumed without a
	// snapshot uses it to tell whether the client holds the item, since it
	// has no record of what an earlier stream sent.
	prev proto.Message
	// last is set on the last change of its revision: the stream's last
	// event of the revision goes without more.
	last bool
}

// subscriber is one live stream's position in the log. It holds no
// changes of its own: the log is shared, so a stream whose client stopped
// reading costs the table the same whether one change or a thousand are
// waiting for it.
type subscriber struct {
	// from is the log position (Table.seq) when the stream subscribed,
	// fromRev the revision then (both set before it is in Table.subs), and
	// taken the position of the last change it has copied out of the log.
	// Changes after max(from, taken) are what it still has to take: its
	// backlog at from was bounded when it subscribed, and only changes
	// since count against the buffer.
	from    uint64
	fromRev uint64
	taken   atomic.Uint64
	// wake holds a token when the log has grown since the stream last
	// looked; the producer never waits to leave one.
	wake chan struct{}
	// lost is set, and the subscriber removed from Table.subs, when it
	// fell more than Buffer changes behind. Serve checks it before sending
	// each change it took so it does not send stale deltas before the
	// RESET.
	lost atomic.Bool
	// timed is set while the stream waits with its PROGRESS timer armed:
	// then a revision that moves with no change need not wake it, the
	// timer will, and it tells the client the newest revision then.
	timed atomic.Bool
}

// Table is a keyed set of items (protobuf messages) with a revision and a
// bounded change log, served to any number of watch streams.
//
// Revisions are given by the owner: Commit and ReplaceAt log every change
// they make at the revision they are given, which is the owner's store's,
// so any number of changes may share a revision and revisions have gaps
// (other tables changed). Put, Delete and Replace number their own: each
// change they make is one revision after the table's. Either way the log
// holds every change with a revision in (compacted, rev], and drops whole
// revisions only, which is what lets a stream resumed at any revision in
// that range prove it has no gap.
//
// Stored values are clones owned by the table (or, with Options.Owned,
// the messages the owner handed over) and never modified, so snapshots
// and events share them without copying. A Table is safe for
// concurrent use; Commit, ReplaceAt, Put, Delete and Replace never wait for
// subscribers.
type Table struct {
	name string
	opts Options

	// mu serialises changes and guards the following fields. Mutexes
	// (rather than an actor goroutine) because every operation under them
	// is short and bounded: map updates, a log append and non-blocking
	// channel sends; only Replace holds mu for long, one change at a time.
	mu    sync.Mutex
	items itemSet
	// snap is the last snapshot taken, for streams starting at the same
	// revision to share. Weak: the streams sending it keep it alive, and a
	// table nobody is reading a snapshot of holds no copy of its items.
	snap weak.Pointer[snapshot]

	// logMu guards the following fields; rev is written holding mu as
	// well, so either lock reads it. Apart from mu so that streams keep
	// taking changes from the log during a long Replace, as they would
	// from queues of their own: the producer write-locks logMu once per
	// change, briefly, and streams read-lock it.
	logMu sync.RWMutex
	// rev is the revision of the last Commit or change; the table's is the
	// greater of it and the clock's (revision).
	rev       uint64
	compacted uint64 // newest revision dropped from log; resumable from >= compacted
	// log holds every change with a revision in (compacted, rev], in
	// order: whole revisions, those a resume that needs at most logSize
	// changes is sent, and any older ones a subscriber has yet to take. Streams hold positions in it, not
	// revisions, since a revision may be half sent: seq is the position of
	// its last entry, and log[i] is at seq-len(log)+1+i.
	seq uint64
	log []change
	// prevs, with Options.ResumeFiltered, is each logged change's previous
	// value: prevs[i] log[i]'s.
	prevs     []proto.Message
	subs      map[*subscriber]struct{}
	serving   int // Serve calls in progress, subscribed or not
	resyncs   uint64
	wakes     uint64 // tokens left for subscribers (for tests)
	snapshots uint64
}

// NewTable returns an empty table. name appears in errors, to tell streams
// apart.
func NewTable(name string, o Options) *Table {
	o = o.withDefaults()
	return &Table{
		name:      name,
		opts:      o,
		rev:       o.Epoch,
		compacted: o.Epoch,
		subs:      make(map[*subscriber]struct{}),
	}
}

// NewTableFrom returns a table holding clones of items at its base
// revision o.Epoch, with nothing to resume from before it: what an owner
// builds from its store at the store's revision, after a restart or when
// it becomes the leader, so that clients told that revision resume with no
// RESET. A nil value is a bug in the owner and panics.
//
// With Options.Owned the table takes items itself, the map too, rather
// than a copy: the owner must not use the map after. A copy is a second
// map of every item for as long as the owner's lives, which for an owner
// that builds thousands of tables at its start is its peak.
func NewTableFrom(name string, items map[string]proto.Message, o Options) *Table {
	for k, v := range items {
		if v == nil {
			panic(fmt.Sprintf("watch %s: NewTableFrom with nil value for %q", name, k))
		}
	}
	t := NewTable(name, o)
	if !t.opts.Owned && len(items) > 0 {
		owned := make(map[string]proto.Message, len(items))
		for k, v := range items {
			owned[k] = t.own(v)
		}
		items = owned
	}
	t.items = newItemSet(items)
	return t
}

// own is what the table keeps of v: v itself if the owner hands it over
// (Options.Owned), else a clone.
func (t *Table) own(v proto.Message) proto.Message {
	if t.opts.Owned {
		return v
	}
	return proto.Clone(v)
}

// Put stores a clone of v under key at the revision after the table's and
// returns the revision after it. A v equal (proto.Equal) to the current
// value is a no-op returning the current revision, so a caller may
// recompute a derived view and Put all of it without waking subscribers
// for what did not change. v must not be nil.
func (t *Table) Put(key string, v proto.Message) uint64 {
	if v == nil {
		panic(fmt.Sprintf("watch %s: Put(%q, nil)", t.name, key))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, prev, ok := t.putChange(key, v); ok {
		t.record(t.revision()+1, []change{c}, []proto.Message{prev})
	}
	return t.revision()
}

// Delete removes key at the revision after the table's and returns the
// revision after it; deleting an absent key is a no-op.
func (t *Table) Delete(key string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, prev, ok := t.deleteChange(key); ok {
		t.record(t.revision()+1, []change{c}, []proto.Message{prev})
	}
	return t.revision()
}

// Commit applies one transaction of the owner's store to the table at the
// store's revision rev: a clone of each value of puts is stored under its
// key, and each key of deletes removed. Every change it makes is logged at
// rev, in key order, so two tables fed the same commits from the same base
// log the same sequence; a put equal (proto.Equal) to the current value and
// a delete of an absent key are no-ops. The table's revision becomes rev
// even if nothing in it changed: the store changed at rev, and streams are
// told so (PROGRESS), so that their clients' resume revisions keep up with
// the store's. It returns the number of changes made.
//
// A commit of more changes than Options.Buffer resynchronises every live
// stream (a snapshot then costs them no more than the changes would).
//
// rev must be above the table's revision (so an owner that commits its
// store's revisions sets Options.Epoch), no value may be nil and no key
// both put and deleted: any of these is a bug in the owner (its store's
// revisions only grow, and one transaction leaves a key in one state), so
// Commit panics, as Put(key, nil) does, before changing anything.
func (t *Table) Commit(rev uint64, puts map[string]proto.Message, deletes []string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.checkRev("Commit", rev)
	keys := make([]string, 0, len(puts)+len(deletes))
	for k, v := range puts {
		if v == nil {
			panic(fmt.Sprintf("watch %s: Commit at revision %d puts nil for %q", t.name, rev, k))
		}
		keys = append(keys, k)
	}
	for _, k := range deletes {
		if _, ok := puts[k]; ok {
			panic(fmt.Sprintf("watch %s: Commit at revision %d both puts and deletes %q", t.name, rev, k))
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys) // a key deleted twice is deleted once
	return t.commitLocked(rev, keys, puts)
}

// ReplaceAt makes the content exactly items at revision rev: Commit of
// every new or changed item and a delete of every key not in items. It is
// for owners that recompute a whole view at a store revision. rev and nil
// values are checked as by Commit.
func (t *Table) ReplaceAt(rev uint64, items map[string]proto.Message) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.checkRev("ReplaceAt", rev)
	for k, v := range items {
		if v == nil {
			panic(fmt.Sprintf("watch %s: ReplaceAt revision %d with nil value for %q", t.name, rev, k))
		}
	}
	return t.commitLocked(rev, t.replaceKeys(items), items)
}

// checkRev panics unless rev may follow the table's revision. t.mu must be
// held.
func (t *Table) checkRev(op string, rev uint64) {
	if cur := t.revision(); rev <= cur {
		panic(fmt.Sprintf("watch %s: %s at revision %d, not above the table's revision %d", t.name, op, rev, cur))
	}
}

// revision is the table's revision: its own or its clock's, whichever is
// greater. t.mu or t.logMu must be held.
func (t *Table) revision() uint64 {
	if t.opts.Clock != nil {
		return max(t.rev, t.opts.Clock.Revision())
	}
	return t.rev
}

// commitLocked applies, at rev, a put of puts[k] for each of keys in puts
// and a delete of each other one; keys are sorted and distinct. The
// changes reach the log at once, so a stream never sees half of the
// revision as if it were all of it. t.mu must be held.
func (t *Table) commitLocked(rev uint64, keys []string, puts map[string]proto.Message) int {
	changes := make([]change, 0, len(keys))
	var prevs []proto.Message
	if t.opts.ResumeFiltered {
		prevs = make([]proto.Message, 0, len(keys))
	}
	n := t.items.len() // after the changes
	for _, k := range keys {
		prev, had := t.items.get(k)
		if v, put := puts[k]; put {
			if had && equal(prev, v) {
				continue
			}
			changes = append(changes, change{key: k, val: t.own(v)})
			if !had {
				n++
			}
		} else if had {
			changes = append(changes, change{key: k})
			n--
		} else {
			continue
		}
		if prevs != nil {
			prevs = append(prevs, prev)
		}
	}
	// In one go: a commit of thousands of items is one pass over the
	// table, not thousands of inserts.
	t.items.apply(changes, n)
	t.record(rev, changes, prevs)
	return len(changes)
}

// replaceKeys returns, sorted, the keys of items and of the table.
func (t *Table) replaceKeys(items map[string]proto.Message) []string {
	keys := make([]string, 0, len(items)+t.items.len())
	for k := range items {
		keys = append(keys, k)
	}
	t.items.all(func(k string, _ proto.Message) {
		if _, ok := items[k]; !ok {
			keys = append(keys, k)
		}
	})
	slices.Sort(keys)
	return keys
}

// Replace makes the contents exactly items: a put for each new or changed
// item and a delete for each removed one, one revision step each, in key
// order so two tables fed the same inputs log the same sequence. It is for
// owners that recompute a whole view and want only the difference sent.
// It returns the revision after the last change.
func (t *Table) Replace(items map[string]proto.Message) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, v := range items {
		if v == nil { // checked first, so that a bad call changes nothing
			panic(fmt.Sprintf("watch %s: Replace with nil value for %q", t.name, k))
		}
	}
	for _, k := range t.replaceKeys(items) {
		var c change
		var prev proto.Message
		var ok bool
		if v, put := items[k]; put {
			c, prev, ok = t.putChange(k, v)
		} else {
			c, prev, ok = t.deleteChange(k)
		}
		if ok {
			t.record(t.revision()+1, []change{c}, []proto.Message{prev})
		}
	}
	return t.revision()
}

// putChange stores a clone of v under key and returns the change and
// what key held, or false if v equals it. t.mu must be held.
func (t *Table) putChange(key string, v proto.Message) (change, proto.Message, bool) {
	prev, ok := t.items.get(key)
	if ok && equal(prev, v) {
		return change{}, nil, false
	}
	v = t.own(v)
	t.items.set(key, v)
	t.items.settle()
	return change{key: key, val: v}, prev, true
}

// deleteChange removes key and returns the change and what key held, or
// false if it was absent. t.mu must be held.
func (t *Table) deleteChange(key string) (change, proto.Message, bool) {
	prev, ok := t.items.get(key)
	if !ok {
		return change{}, nil, false
	}
	t.items.set(key, nil)
	t.items.settle()
	return change{key: key}, prev, true
}

// record moves the table to revision rev, logs cs (none: only the revision
// moved) at it, with prevs (what each key of cs held) if the log keeps
// them, and wakes every subscriber, also for none, as they may owe their
// clients a PROGRESS. t.mu must be held, and the items be those after cs.
// A subscriber more than Buffer changes behind is dropped and marked
// rather than waited for: the producer's latency must not depend on the
// slowest client. So a revision of more than Buffer changes resynchronises
// every subscriber, which costs them no more than being sent the changes.
func (t *Table) record(rev uint64, cs []change, prevs []proto.Message) {
	t.logMu.Lock()
	defer t.logMu.Unlock()
	t.rev = rev
	t.log = slices.Grow(t.log, len(cs))
	for _, c := range cs {
		c.rev = rev
		t.log = append(t.log, c)
	}
	if t.opts.ResumeFiltered {
		t.prevs = append(t.prevs, prevs...)
	}
	t.seq += uint64(len(cs))
	keep := t.seq // the log keeps every change after this position
	for s := range t.subs {
		taken := s.taken.Load()
		if t.seq-max(s.from, taken) > uint64(t.opts.Buffer) {
			s.lost.Store(true)
			delete(t.subs, s)
			t.resyncs++
		} else {
			keep = min(keep, taken)
		}
		if len(cs) == 0 && s.timed.Load() {
			continue
		}
		select {
		case s.wake <- struct{}{}:
			t.wakes++
		default:
		}
	}
	// A subscriber is at most its backlog at subscription plus Buffer
	// behind, so keeping what subscribers still need bounds the log at
	// the log's size or 2*Buffer changes, whichever is more, plus the
	// rest of a revision: half of one could not be resumed from.
	size := t.logSize()
	dropped := false
	for len(t.log) > size {
		first := t.log[0].rev
		n := 1
		for n < len(t.log) && t.log[n].rev == first {
			n++
		}
		if t.seq-uint64(len(t.log))+uint64(n) > keep {
			break
		}
		clear(t.log[:n]) // release the values to the collector
		t.log = t.log[n:]
		if t.prevs != nil {
			clear(t.prevs[:n])
			t.prevs = t.prevs[n:]
		}
		t.compacted = first
		dropped = true
	}
	if dropped && cap(t.log) > 2*size {
		// What was dropped is still the front of the log's array,
		// which appends only ever grow: a log that once held a large
		// revision would keep its array for good.
		t.log = slices.Clone(t.log)
		if t.prevs != nil {
			t.prevs = slices.Clone(t.prevs)
		}
	}
}

// logSize is how many changes the log keeps for resumes: LogSize, or as
// many as the table has items if fewer (MinLogSize at least). A resume
// that needs more changes than the table has items is sent a snapshot,
// which is no more events than the changes: a log that holds them costs
// memory for nothing. t.mu must be held.
func (t *Table) logSize() int {
	return min(t.opts.LogSize, max(MinLogSize, t.items.len()))
}

// Snapshot returns the items and the revision they are at. The values are
// the table's own and must not be modified.
func (t *Table) Snapshot() (map[string]proto.Message, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := make(map[string]proto.Message, t.items.len())
	t.items.all(func(k string, v proto.Message) { m[k] = v })
	return m, t.rev
}

// Get returns the item under key, nil if none. It is the table's own and
// must not be modified.
func (t *Table) Get(key string) proto.Message {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, _ := t.items.get(key)
	return v
}

// Has reports whether the table holds key: an owner deleting what a large
// change may have left out checks it rather than commit deletes of keys
// that were never there.
func (t *Table) Has(key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.items.get(key)
	return ok
}

// Revision returns the table's revision: that of the last Commit or
// ReplaceAt, or of the last change Put, Delete or Replace made, or its
// clock's if that is greater.
func (t *Table) Revision() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.revision()
}

// Len returns the number of items.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.items.len()
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
		Revision:      t.revision(),
		Items:         t.items.len(),
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
//
// It is keyed by log position, not revision: a table's revision moves with
// its clock while its items stay as they are.
type snapshot struct {
	seq      uint64 // the log position the items are at
	sorted   sync.Once
	isSorted bool // items came sorted (the table is a slice)
	items    []item
}

// takeSnapshot returns the snapshot of the current items, shared with
// any stream that took it before, and the table's revision.
func (t *Table) takeSnapshot() (*snapshot, uint64) {
	t.mu.Lock()
	t.logMu.Lock()
	t.snapshots++
	t.logMu.Unlock()
	rev := t.revision()
	s := t.snap.Value()
	if s == nil || s.seq != t.seq {
		// seq read under t.mu alone: only writers of the log, who hold
		// t.mu too, change it.
		s = &snapshot{seq: t.seq}
		s.items, s.isSorted = t.items.items()
		t.snap = weak.Make(s)
	}
	t.mu.Unlock()
	// Sorted outside the lock, so the producer waits only for the copy;
	// streams sharing the snapshot wait for the one sort.
	s.sorted.Do(func() {
		if !s.isSorted {
			slices.SortFunc(s.items, func(a, b item) int { return cmp.Compare(a.key, b.key) })
		}
	})
	return s, rev
}

// Serve streams the table to one client per the watch discipline and
// blocks until ctx ends (returning nil) or send fails (returning its error).
//
// If fromRev is 0, below the newest revision compacted away or the table's
// base, or above the table's revision (from another epoch, as after a
// restart of an owner numbering its own revisions), Serve sends RESET
// (unless fromRev is 0), the snapshot as PUTs all carrying the snapshot
// revision, and SYNCED. Otherwise it sends the logged changes with a
// revision after fromRev, whether or not the table changed at fromRev,
// then SYNCED. SYNCED carries the table's revision. Live changes follow,
// each but the last of a revision with more set, and PROGRESS at the
// table's revision when it moved with nothing to send (see
// Options.ProgressInterval). A client that falls behind its buffer is sent
// RESET, a new snapshot and SYNCED.
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

// locate returns the log position of a client that has applied revision
// rev: that of the last change at or before rev. ok is false when only a
// snapshot can make the client whole: rev was compacted away, or is above
// the table's revision (from another epoch).
func (t *Table) locate(rev uint64) (pos uint64, ok bool) {
	t.logMu.RLock()
	defer t.logMu.RUnlock()
	if rev < t.compacted || rev > t.revision() {
		return 0, false
	}
	i, _ := slices.BinarySearchFunc(t.log, rev+1, func(c change, r uint64) int { return cmp.Compare(c.rev, r) })
	return t.seq - uint64(len(t.log)) + uint64(i), true
}

// subscribe registers a stream whose client is at log position pos, if pos
// is in the log and the backlog after it short enough that live changes
// are unlikely to push the stream past the buffer while the backlog is
// being sent; until then a long catch-up costs the producer nothing. It
// returns nil if not.
func (t *Table) subscribe(pos uint64) *subscriber {
	t.logMu.Lock()
	defer t.logMu.Unlock()
	if pos < t.seq-uint64(len(t.log)) || pos > t.seq || t.seq-pos > uint64(t.opts.Buffer) {
		return nil
	}
	s := &subscriber{from: t.seq, fromRev: t.revision(), wake: make(chan struct{}, 1)}
	s.taken.Store(pos)
	t.subs[s] = struct{}{}
	return s
}

// take copies into batch the next changes after log position pos for a
// stream (sub is nil if it has not subscribed), marking the last of each
// revision, and reports whether they bring it to the end of the log and
// the table's revision then. ok is false when only a snapshot can make the
// client whole: sub fell behind, or pos was compacted away. A subscriber's
// changes are never compacted.
func (t *Table) take(sub *subscriber, pos uint64, synced bool, batch []takenChange) (n int, caughtUp bool, rev uint64, ok bool) {
	t.logMu.RLock()
	defer t.logMu.RUnlock()
	first := t.seq - uint64(len(t.log)) // position before log[0]
	if sub != nil && sub.lost.Load() || pos < first || pos > t.seq {
		return 0, false, 0, false
	}
	end := t.seq
	if sub != nil && !synced {
		// A resumed stream's SYNCED comes after its backlog, before what
		// changed since it subscribed.
		end = sub.from
	}
	i := int(pos - first)
	n = int(min(end-pos, uint64(len(batch)), uint64(len(t.log)-i)))
	for j := range n {
		// The log's last change ends its revision: commits reach the log
		// whole.
		next := i + j + 1
		batch[j] = takenChange{change: t.log[i+j], last: next == len(t.log) || t.log[next].rev != t.log[i+j].rev}
		if t.prevs != nil {
			batch[j].prev = t.prevs[i+j]
		}
	}
	if sub != nil {
		sub.taken.Store(pos + uint64(n))
	}
	return n, pos+uint64(n) == t.seq, t.revision(), true
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

	st := &stream{name: t.name, keep: keep, send: send, wrap: wrap, ctx: ctx, gate: g, told: fromRev}
	defer st.leave()
	var batch [takeBatch]takenChange
	var pos uint64           // the log position of the client's view
	snapshot := fromRev == 0 // send a snapshot before anything else
	reset := false           // precede that snapshot with RESET
	synced := false          // SYNCED has been sent on this stream
	if !snapshot && keep != nil && !t.opts.ResumeFiltered {
		// Without the previous values, which keys the client holds
		// cannot be told from the log.
		snapshot, reset = true, true
	}
	if !snapshot {
		var ok bool
		if pos, ok = t.locate(fromRev); !ok {
			snapshot, reset = true, true
		}
	}
	// progress fires when a PROGRESS may be sent again; lastTold is when
	// the client was last told a revision with no change (SYNCED,
	// PROGRESS).
	var progress *time.Timer
	defer func() {
		if progress != nil {
			progress.Stop()
		}
	}()
	var lastTold time.Time
	for ctx.Err() == nil {
		if snapshot {
			// In the gate before taking the snapshot: a stream waiting
			// for its turn would otherwise keep one alive, and streams
			// that arrived at different revisions one each.
			if err := st.enter(); err != nil {
				return err
			}
			snap, rev := t.takeSnapshot()
			if reset {
				if err := st.emit(&p4meshv1.Event{Type: p4meshv1.Event_RESET, Revision: rev}); err != nil {
					return err
				}
			}
			st.restart()
			for _, it := range snap.items {
				if err := st.put(it.key, it.val, rev); err != nil {
					return err
				}
			}
			if err := st.emit(&p4meshv1.Event{Type: p4meshv1.Event_SYNCED, Revision: rev}); err != nil {
				return err
			}
			pos, synced, snapshot, lastTold = snap.seq, true, false, time.Now()
		}

		if sub == nil {
			sub = t.subscribe(pos)
		}
		// Before take reads the revision: a clock that moves after it
		// closes this.
		var moved <-chan struct{}
		if t.opts.Clock != nil {
			moved = t.opts.Clock.next()
		}
		n, caughtUp, rev, ok := t.take(sub, pos, synced, batch[:])
		if !ok {
			// A subscriber that fell behind was already removed from
			// t.subs by the producer.
			sub = nil
			st.held = nil // what follows the RESET replaces it
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
			pos++
		}
		clear(batch[:n]) // hold no values while waiting
		if sub == nil || sub.lost.Load() {
			continue
		}
		if !synced && pos == sub.from {
			if err := st.emit(&p4meshv1.Event{Type: p4meshv1.Event_SYNCED, Revision: sub.fromRev}); err != nil {
				return err
			}
			synced, lastTold = true, time.Now()
		}
		if !caughtUp {
			continue
		}
		var wait <-chan time.Time
		if synced && rev > st.told {
			// The table moved with nothing for this client to apply.
			if d := time.Until(lastTold.Add(t.opts.ProgressInterval)); d > 0 {
				if progress == nil {
					progress = time.NewTimer(d)
				} else {
					progress.Reset(d)
				}
				wait = progress.C
			} else {
				if err := st.emit(&p4meshv1.Event{Type: p4meshv1.Event_PROGRESS, Revision: rev}); err != nil {
					return err
				}
				lastTold = time.Now()
			}
		}
		st.leave()
		// Before the select, so that a revision recorded once the stream
		// has looked either finds it timed (the timer tells it) or wakes
		// it; cleared before the next look (take, under logMu) for the
		// same reason.
		sub.timed.Store(wait != nil)
		if wait != nil {
			moved = nil // the timer tells the newest revision then
		}
		select {
		case <-ctx.Done():
			return nil
		case <-sub.wake:
		case <-wait:
		case <-moved:
		}
		sub.timed.Store(false)
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

	// held is the last change event made, kept back until the stream
	// knows whether another event of its revision follows (it is then sent
	// with more set) or the revision ends; a filtered stream cannot know
	// before, since the revision's later changes may not be for it.
	held *p4meshv1.Event
	// told is the newest revision the client has applied: of the last
	// SYNCED, PROGRESS or change event without more.
	told uint64

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
	return s.emit(s.putEvent(key, v, rev))
}

// change sends a logged change as this subscriber should see it, and ends
// its revision if c is the last change of it.
func (s *stream) change(c takenChange) error {
	ev := s.event(c)
	if ev != nil {
		if s.held != nil {
			// Of c's revision: a revision's last change releases it.
			s.held.More = true
			if err := s.emit(s.held); err != nil {
				return err
			}
		}
		s.held = ev
	}
	if c.last && s.held != nil {
		ev, s.held = s.held, nil
		return s.emit(ev)
	}
	return nil
}

// event returns the event a logged change is to this subscriber, or nil.
func (s *stream) event(c takenChange) *p4meshv1.Event {
	if s.keep == nil {
		if c.val == nil {
			return &p4meshv1.Event{Type: p4meshv1.Event_DELETE, Revision: c.rev, Key: c.key}
		}
		return s.putEvent(c.key, c.val, c.rev)
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
		return s.putEvent(c.key, c.val, c.rev)
	case s.authoritative:
		delete(s.sent, c.key)
	default:
		s.sent[c.key] = false
	}
	if had {
		return &p4meshv1.Event{Type: p4meshv1.Event_DELETE, Revision: c.rev, Key: c.key}
	}
	return nil
}

func (s *stream) putEvent(key string, v proto.Message, rev uint64) *p4meshv1.Event {
	ev := &p4meshv1.Event{Type: p4meshv1.Event_PUT, Revision: rev, Key: key}
	if s.wrap != nil {
		s.wrap(key, v, ev)
	}
	return ev
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
	switch ev.GetType() {
	case p4meshv1.Event_SYNCED, p4meshv1.Event_PROGRESS:
		s.told = ev.GetRevision()
	case p4meshv1.Event_PUT, p4meshv1.Event_DELETE:
		if !ev.GetMore() {
			s.told = ev.GetRevision()
		}
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
