package watch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// dests makes items from "key=ip" pairs, all in VPC red.
func dests(pairs ...string) map[string]proto.Message {
	m := make(map[string]proto.Message)
	for _, p := range pairs {
		k, ip, _ := strings.Cut(p, "=")
		m[k] = dest("red", ip)
	}
	return m
}

// mustPanic runs f and checks it panicked with a message containing want.
func mustPanic(t *testing.T, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Fatalf("no panic, want one saying %q", want)
		}
		if msg := fmt.Sprint(r); !strings.Contains(msg, want) {
			t.Fatalf("panic %q, want it to say %q", msg, want)
		}
	}()
	f()
}

// never is a ProgressInterval no test outlasts: the stream sends no
// PROGRESS, so a test can tell that nothing else was sent.
const never = time.Hour

func TestCommit(t *testing.T) {
	checkNoLeaks(t)
	tab := NewTableFrom("dest", dests("a=1", "b=2", "d=4"), Options{Epoch: 100, ProgressInterval: never})
	s := serve(t, tab, 100, nil)
	s.expect(t, synced(100))

	// One transaction: every change at 103, in key order, all but the
	// last with more; an equal put, an absent delete and a repeated one
	// change nothing.
	n := tab.Commit(103, map[string]proto.Message{"c": dest("red", "3"), "a": dest("red", "1x"), "b": dest("red", "2")}, []string{"zz", "d", "d"})
	if n != 3 {
		t.Errorf("Commit made %d changes, want 3", n)
	}
	s.expect(t, more(put(103, "a", "1x")), more(put(103, "c", "3")), del(103, "d"))

	// Nothing changed, yet the table is at the store's revision.
	if n := tab.Commit(104, dests("b=2"), []string{"zz"}); n != 0 {
		t.Errorf("Commit of no change made %d", n)
	}
	if r := tab.Revision(); r != 104 {
		t.Errorf("revision after an empty Commit = %d, want 104", r)
	}
	tab.Commit(107, dests("a=1y"), nil)
	// The next event: nothing was sent for 104.
	s.expect(t, put(107, "a", "1y"))
	// Put goes on from the store's revision.
	if r := tab.Put("e", dest("red", "5")); r != 108 {
		t.Errorf("Put after Commit at 107: revision %d, want 108", r)
	}
	s.expect(t, put(108, "e", "5"))

	// Bugs in the owner panic, naming what is wrong, and change nothing.
	before, _ := tab.Snapshot()
	mustPanic(t, "Commit at revision 108, not above the table's revision 108", func() { tab.Commit(108, dests("a=2"), nil) })
	mustPanic(t, "Commit at revision 7, not above the table's revision 108", func() { tab.Commit(7, nil, nil) })
	mustPanic(t, `puts nil for "x"`, func() { tab.Commit(109, map[string]proto.Message{"a": dest("red", "2"), "x": nil}, nil) })
	mustPanic(t, `both puts and deletes "a"`, func() { tab.Commit(109, dests("a=2", "b=3"), []string{"a"}) })
	mustPanic(t, "ReplaceAt at revision 108, not above", func() { tab.ReplaceAt(108, nil) })
	mustPanic(t, `ReplaceAt revision 109 with nil value for "x"`, func() { tab.ReplaceAt(109, map[string]proto.Message{"x": nil}) })
	mustPanic(t, `Replace with nil value for "x"`, func() { tab.Replace(map[string]proto.Message{"a": dest("red", "2"), "x": nil}) })
	after, rev := tab.Snapshot()
	if rev != 108 || len(after) != len(before) {
		t.Fatalf("after refused commits: revision %d, %d items; want 108, %d", rev, len(after), len(before))
	}
	for k, v := range before {
		if !proto.Equal(after[k], v) {
			t.Errorf("refused commits changed %s: %v -> %v", k, v, after[k])
		}
	}

	// ReplaceAt: the difference, at one revision.
	if n := tab.ReplaceAt(110, dests("a=1y", "b=2", "z=26")); n != 3 {
		t.Errorf("ReplaceAt made %d changes, want 3", n)
	}
	s.expect(t, more(del(110, "c")), more(del(110, "e")), put(110, "z", "26"))
	if n := tab.ReplaceAt(111, dests("a=1y", "b=2", "z=26")); n != 0 || tab.Revision() != 111 {
		t.Errorf("ReplaceAt of the same: %d changes, revision %d; want 0, 111", n, tab.Revision())
	}
	tab.Put("last", dest("red", "x"))
	s.expect(t, put(112, "last", "x"))
	s.expectNone(t)
}

// replicaCommits is one store's history after base revision 100, where
// every table holds dests("a=1", "b=2"): the transactions that touched a
// table of destinations, and empty ones for those that touched only other
// tables.
var replicaCommits = []struct {
	rev     uint64
	puts    map[string]proto.Message
	deletes []string
}{
	{103, dests("c=3", "a=1x"), []string{"b"}},
	{105, nil, nil},
	{107, dests("d=4"), nil},
	{109, nil, nil}, // the client learns it by PROGRESS alone
	{110, dests("a=1y"), []string{"c"}},
	{111, dests("d=4"), nil}, // no change
	{112, dests("e=5"), nil},
}

func commitAll(tab *Table, from, to int) {
	for _, c := range replicaCommits[from:to] {
		tab.Commit(c.rev, c.puts, c.deletes)
	}
}

// Two replicas fed the same commits log the same sequence, and a client of
// one resumes at the other, by revision, with exactly what it missed.
func TestResumeAtReplica(t *testing.T) {
	checkNoLeaks(t)
	o := Options{Epoch: 100, ProgressInterval: 10 * time.Millisecond}
	a := NewTableFrom("destinations", dests("a=1", "b=2"), o)
	b := NewTableFrom("destinations", dests("a=1", "b=2"), o)
	commitAll(a, 0, 1)
	commitAll(b, 0, 1)
	srv := &destServer{tab: a, cuts: make(map[*context.CancelFunc]struct{})}
	client := startServer(t, srv)

	var view View
	var log eventLog
	h := view.Handler(nil)
	h.OnEvent = log.add
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // a failed wait must not leave Follow running
	followed := make(chan error, 1)
	go func() {
		followed <- Follow(ctx, "destinations", nil, func(ctx context.Context, rev uint64) (Stream, error) {
			return client.WatchDestinations(ctx, &p4meshv1.WatchRequest{ResumeRevision: rev})
		}, h)
	}()
	waitUntil(t, "the first snapshot", view.Synced)
	commitAll(a, 1, 4)
	commitAll(b, 1, 4)
	// Items last changed at 107; 109 comes as a PROGRESS.
	waitUntil(t, "the client at 109", func() bool { return view.Revision() == 109 })

	// A fails; B, its replica, carries on with the store and takes over.
	commitAll(b, 4, len(replicaCommits))
	log.mu.Lock()
	seen := len(log.events)
	log.mu.Unlock()
	srv.mu.Lock()
	srv.tab = b
	srv.mu.Unlock()
	srv.cut()
	waitUntil(t, "the resumed stream's SYNCED", func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		n := len(log.events)
		return n > seen && log.events[n-1].Type == "SYNCED"
	})
	cancel()
	if err := <-followed; err != nil {
		t.Errorf("Follow = %v", err)
	}

	if opens := srv.streams(); opens[1][0] != 109 {
		t.Errorf("resumed at B from %d, want 109", opens[1][0])
	}
	log.mu.Lock()
	got := fmt.Sprint(log.events[seen:])
	log.mu.Unlock()
	want := fmt.Sprint([]ev{more(put(110, "a", "1y")), del(110, "c"), put(112, "e", "5"), synced(112)})
	if got != want {
		t.Errorf("after resuming at B\ngot  %s\nwant %s", got, want)
	}
	if st := b.Stats(); st.Snapshots != 0 {
		t.Errorf("B sent %d snapshots, want none", st.Snapshots)
	}
	snap, _ := b.Snapshot()
	items := view.Items()
	if len(items) != len(snap) {
		t.Errorf("view has %d items, B %d", len(items), len(snap))
	}
	for k, v := range snap {
		if !proto.Equal(items[k].GetDestination(), v) {
			t.Errorf("view %s = %v, B has %v", k, items[k].GetDestination(), v)
		}
	}

	// A, fed the rest too, logged what B did, key order within revisions.
	commitAll(a, 4, len(replicaCommits))
	all := []ev{
		more(put(103, "a", "1x")), more(del(103, "b")), put(103, "c", "3"), put(107, "d", "4"),
		more(put(110, "a", "1y")), del(110, "c"), put(112, "e", "5"), synced(112),
	}
	serve(t, a, 100, nil).expect(t, all...)
	serve(t, b, 100, nil).expect(t, all...)
}

// A restarted controller builds its table from the store at revision S. A
// client told S (by PROGRESS: its items last changed long before) resumes
// there with no RESET; one that was not gets RESET, the safe answer.
func TestResumeAfterRestart(t *testing.T) {
	checkNoLeaks(t)
	old := NewTableFrom("destinations", dests("a=1", "b=2"), Options{Epoch: 100, ProgressInterval: 10 * time.Millisecond})
	srv := &destServer{tab: old, cuts: make(map[*context.CancelFunc]struct{})}
	client := startServer(t, srv)
	var view View
	var log eventLog
	h := view.Handler(nil)
	h.OnEvent = log.add
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // a failed wait must not leave Follow running
	followed := make(chan error, 1)
	go func() {
		followed <- Follow(ctx, "destinations", nil, func(ctx context.Context, rev uint64) (Stream, error) {
			return client.WatchDestinations(ctx, &p4meshv1.WatchRequest{ResumeRevision: rev})
		}, h)
	}()
	waitUntil(t, "the first snapshot", view.Synced)
	old.Commit(105, nil, nil) // other tables changed
	old.Commit(120, nil, nil)
	waitUntil(t, "the client at 120", func() bool { return view.Revision() == 120 })

	restarted := NewTableFrom("destinations", dests("a=1", "b=2"), Options{Epoch: 120})
	log.mu.Lock()
	seen := len(log.events)
	log.mu.Unlock()
	srv.mu.Lock()
	srv.tab = restarted
	srv.mu.Unlock()
	srv.cut()
	waitUntil(t, "the resumed stream", func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return len(log.events) > seen
	})
	restarted.Commit(121, dests("c=3"), nil)
	waitUntil(t, "a live change", func() bool { return view.Revision() == 121 })
	cancel()
	if err := <-followed; err != nil {
		t.Errorf("Follow = %v", err)
	}
	if opens := srv.streams(); opens[1][0] != 120 {
		t.Errorf("resumed from %d, want 120", opens[1][0])
	}
	log.mu.Lock()
	got := fmt.Sprint(log.events[seen:])
	log.mu.Unlock()
	if want := fmt.Sprint([]ev{synced(120), put(121, "c", "3")}); got != want {
		t.Errorf("after the restart\ngot  %s\nwant %s", got, want)
	}
	if st := restarted.Stats(); st.Snapshots != 0 {
		t.Errorf("restarted table sent %d snapshots, want none", st.Snapshots)
	}
	if n := view.Len(); n != 3 {
		t.Errorf("view holds %d items, want 3", n)
	}

	// A client at the revision of its last change, below the base.
	s := serve(t, restarted, 100, nil)
	s.expect(t, reset(121), put(121, "a", "1"), put(121, "b", "2"), put(121, "c", "3"), synced(121))
}

// Compaction drops whole revisions: a resume from a revision it dropped
// gets RESET, and one from the newest it dropped gets every change of the
// next.
func TestCompactionKeepsRevisionsWhole(t *testing.T) {
	checkNoLeaks(t)
	tab := NewTable("dest", Options{Epoch: 100, LogSize: 3, ProgressInterval: never})
	logged := func() string {
		tab.logMu.RLock()
		defer tab.logMu.RUnlock()
		var out []string
		for _, c := range tab.log {
			out = append(out, fmt.Sprintf("%s@%d", c.key, c.rev))
		}
		return fmt.Sprintf("compacted %d %v", tab.compacted, out)
	}
	tab.Commit(101, dests("a=1", "b=2"), nil)
	tab.Commit(102, dests("c=3", "d=4"), nil)
	// Four changes, LogSize 3: both of 101 go, not one.
	if got, want := logged(), "compacted 101 [c@102 d@102]"; got != want {
		t.Errorf("log after 102: %s, want %s", got, want)
	}
	tab.Commit(104, dests("e=5"), nil)
	if got, want := logged(), "compacted 101 [c@102 d@102 e@104]"; got != want {
		t.Errorf("log after 104: %s, want %s", got, want)
	}
	snapshot := []ev{put(104, "a", "1"), put(104, "b", "2"), put(104, "c", "3"), put(104, "d", "4"), put(104, "e", "5"), synced(104)}
	for _, tc := range []struct {
		from uint64
		want []ev
	}{
		{100, append([]ev{reset(104)}, snapshot...)},
		{101, []ev{more(put(102, "c", "3")), put(102, "d", "4"), put(104, "e", "5"), synced(104)}},
		{102, []ev{put(104, "e", "5"), synced(104)}},
		{103, []ev{put(104, "e", "5"), synced(104)}}, // nothing changed at 103
		{104, []ev{synced(104)}},
	} {
		t.Run(fmt.Sprint(tc.from), func(t *testing.T) {
			s := serve(t, tab, tc.from, nil)
			s.expect(t, tc.want...)
			s.stop(t)
		})
	}
}

func TestProgress(t *testing.T) {
	red := func(_ string, v proto.Message) bool { return v.(*p4meshv1.Destination).GetVpc() == "red" }

	// A filtered stream is told the revision when the table moved with
	// nothing for it, and only then; the last event it is sent of a
	// revision has no more, though the revision's later changes were not
	// for it.
	t.Run("filtered", func(t *testing.T) {
		checkNoLeaks(t)
		tab := NewTableFrom("dest", map[string]proto.Message{"a": dest("red", "1"), "b": dest("blue", "2")},
			Options{Epoch: 100, ProgressInterval: 10 * time.Millisecond})
		s := serve(t, tab, 0, red)
		s.expect(t, put(100, "a", "1"), synced(100))
		tab.Commit(101, map[string]proto.Message{"b": dest("blue", "2x")}, nil)
		s.expect(t, progress(101))
		tab.Commit(102, nil, nil)
		s.expect(t, progress(102))
		tab.Commit(103, map[string]proto.Message{"a": dest("red", "x"), "c": dest("blue", "3")}, nil)
		s.expect(t, put(103, "a", "x"))
		tab.Commit(105, map[string]proto.Message{"e": dest("red", "5"), "f": dest("red", "6"), "g": dest("blue", "7")}, nil)
		// The next events: no PROGRESS for 103, which the client applied.
		s.expect(t, more(put(105, "e", "5")), put(105, "f", "6"))
		s.expectNone(t)
	})

	// PROGRESS is at most one per interval, however often the table moves.
	t.Run("coalesced", func(t *testing.T) {
		checkNoLeaks(t)
		const interval = 100 * time.Millisecond
		tab := NewTableFrom("dest", dests("a=1"), Options{Epoch: 100, ProgressInterval: interval})
		start := time.Now()
		s := serve(t, tab, 0, nil)
		s.expect(t, put(100, "a", "1"), synced(100))
		rev := uint64(100)
		for time.Since(start) < 5*interval {
			rev++
			tab.Commit(rev, nil, nil)
			time.Sleep(time.Millisecond)
		}
		var got []uint64
		for len(got) == 0 || got[len(got)-1] != rev {
			select {
			case e := <-s.events:
				if e.GetType() != p4meshv1.Event_PROGRESS {
					t.Fatalf("unexpected %v", summarize(e))
				}
				got = append(got, e.GetRevision())
			case <-time.After(20 * time.Second):
				t.Fatalf("no PROGRESS(%d); got %v", rev, got)
			}
		}
		s.stop(t)
		// Sends are interval apart, the first an interval after SYNCED:
		// however slow the machine, no more than this many fit.
		bound := int(time.Since(start) / interval)
		t.Logf("%d commits, %d PROGRESS in %v", rev-100, len(got), time.Since(start))
		if len(got) > bound {
			t.Errorf("%d PROGRESS events, want at most %d (one per %v)", len(got), bound, interval)
		}
		for i := 1; i < len(got); i++ {
			if got[i] <= got[i-1] {
				t.Errorf("PROGRESS revisions %v do not grow", got)
			}
		}
	})

	// A stream whose every revision brings it a change is never sent
	// PROGRESS: its changes tell the client the revision.
	t.Run("not while changes tell it", func(t *testing.T) {
		checkNoLeaks(t)
		tab := NewTable("dest", Options{Epoch: 100, ProgressInterval: time.Nanosecond})
		s := serve(t, tab, 0, nil)
		s.expect(t, synced(100))
		const commits = 500
		for i := range commits {
			tab.Commit(uint64(102+2*i), dests(fmt.Sprintf("k%d=%d", i%7, i)), nil)
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // let the stream catch up, and idle
			}
		}
		for i := range commits {
			e := <-s.events
			if s := summarize(e); s != put(uint64(102+2*i), fmt.Sprintf("k%d", i%7), fmt.Sprint(i)) {
				t.Fatalf("event %d: %v", i, s)
			}
		}
		tab.Put("last", dest("red", "x"))
		s.expect(t, put(uint64(102+2*commits-1), "last", "x"))
	})
}

// Follow resumes from the last revision it applied whole: a change event
// with more does not complete its revision, PROGRESS moves it without
// touching the view.
func TestFollowRevisions(t *testing.T) {
	checkNoLeaks(t)
	const (
		PUT      = p4meshv1.Event_PUT
		SYNCED   = p4meshv1.Event_SYNCED
		PROGRESS = p4meshv1.Event_PROGRESS
	)
	moreEvent := func(rev uint64, key string) *p4meshv1.Event {
		e := event(PUT, rev, key)
		e.More = true
		return e
	}
	broken := errors.New("connection reset")
	scripts := [][]*p4meshv1.Event{
		{event(PUT, 10, "a"), event(SYNCED, 10, ""), moreEvent(12, "b")},
		// Resumed from 10: 12 again, whole, then half of 13.
		{moreEvent(12, "b"), event(PUT, 12, "c"), event(SYNCED, 12, ""), moreEvent(13, "d")},
		{event(PUT, 13, "d"), event(SYNCED, 13, ""), event(PROGRESS, 20, "")},
		{event(SYNCED, 20, "")},
	}
	var view View
	var changes atomic.Int32
	h := view.Handler(func() { changes.Add(1) })
	var opens []uint64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func(sctx context.Context, rev uint64) (Stream, error) {
		opens = append(opens, rev)
		if len(opens) > len(scripts) {
			cancel()
			return nil, errors.New("no more scripts")
		}
		err := broken
		if len(opens) == len(scripts) {
			err = nil // the last stays open
		}
		return &fakeStream{ctx: sctx, events: scripts[len(opens)-1], err: err}, nil
	}
	synced := h.Synced
	h.Synced = func(rev uint64) {
		synced(rev)
		if len(opens) == len(scripts) {
			cancel()
		}
	}
	var revs []uint64 // the view's revision after each PROGRESS, and its changes
	progress := h.Progress
	h.Progress = func(rev uint64) {
		before := changes.Load()
		progress(rev)
		revs = append(revs, view.Revision(), uint64(changes.Load()-before))
	}
	if err := Follow(ctx, "test", nil, open, h); err != nil {
		t.Fatalf("Follow = %v", err)
	}
	if got, want := fmt.Sprint(opens), "[0 10 12 20]"; got != want {
		t.Errorf("opened from %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(revs), "[20 0]"; got != want {
		t.Errorf("after PROGRESS the view's revision and changes: %s, want %s", got, want)
	}
	if n := view.Len(); n != 4 {
		t.Errorf("view holds %d items, want a b c d", n)
	}
}

// BenchmarkCommit is one-key Commits on tables of growing size, with and
// without live subscribers: what a commit costs must not grow with the
// table (the owner's store transactions go through it one by one).
func BenchmarkCommit(b *testing.B) {
	for _, size := range []int{10_000, 100_000, 1_000_000} {
		items := make(map[string]proto.Message, size)
		keys := make([]string, size)
		for i := range size {
			keys[i] = fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&0xff, i&0xff)
			items[keys[i]] = dest("red", keys[i])
		}
		for _, subs := range []int{0, 100} {
			b.Run(fmt.Sprintf("items=%d/subs=%d", size, subs), func(b *testing.B) {
				// A buffer no run fills: commits come faster than 100
				// streams on a few cores can send them, and a resync
				// would measure snapshots of the table, not commits.
				tab := NewTableFrom("dest", items, Options{Epoch: 1, Buffer: 1 << 24})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var sent atomic.Int64
				done := make(chan struct{})
				for range subs {
					go func() {
						defer func() { done <- struct{}{} }()
						// Resumed at the base: no snapshot, only what
						// the benchmark commits.
						_ = tab.Serve(ctx, 1, func(*p4meshv1.Event) error { sent.Add(1); return nil }, wrapDest)
					}()
				}
				for tab.Subscribers() < subs {
					time.Sleep(time.Millisecond)
				}
				puts := make(map[string]proto.Message, 1)
				vals := [2]*p4meshv1.Destination{dest("red", "x"), dest("red", "y")}
				rev := uint64(1)
				i := 0
				b.ReportAllocs()
				for b.Loop() {
					clear(puts)
					puts[keys[i%size]] = vals[(i/size)&1]
					rev += 2 // other tables' revisions in between
					tab.Commit(rev, puts, nil)
					i++
				}
				// Timed until every stream has sent every change (and its
				// SYNCED): with subscribers, ns/op is a commit delivered.
				for sent.Load() < int64(subs*(b.N+1)) {
					time.Sleep(50 * time.Microsecond)
				}
				b.StopTimer()
				cancel()
				for range subs {
					<-done
				}
				if subs > 0 {
					b.ReportMetric(float64(sent.Load())/float64(b.N)/float64(subs), "events/commit/sub")
				}
				if n := tab.Stats().ResyncsForced; n != 0 {
					b.Errorf("%d subscribers resynced: the run measured snapshots", n)
				}
			})
		}
	}
}

// TestOwnedKeepsTheOwnersMessages: a table of an owner that hands its
// items over keeps them, one that does not keeps clones, so that a
// message the owner changes afterwards changes nothing it serves.
func TestOwnedKeepsTheOwnersMessages(t *testing.T) {
	for _, owned := range []bool{false, true} {
		tb := NewTable("t", Options{Epoch: 10, Owned: owned})
		m := &p4meshv1.Destination{Vpc: "red", Ip: "10.1.0.1"}
		tb.Commit(11, map[string]proto.Message{"a": m}, nil)
		items, _ := tb.Snapshot()
		if same := items["a"] == proto.Message(m); same != owned {
			t.Errorf("Owned %v: the table keeps the owner's message: %v", owned, same)
		}
		if !proto.Equal(items["a"], m) {
			t.Errorf("Owned %v: the table holds %v, want %v", owned, items["a"], m)
		}
	}
}

// TestNewTableFromOwnedTakesTheMap: an owner that hands its items over
// hands the map too, so a table of any size costs it the same few
// allocations (a table up to maxSorted items one more, its sorted slice;
// a larger one keeps the map itself); one that does not gets a copy,
// which grows with the size.
func TestNewTableFromOwnedTakesTheMap(t *testing.T) {
	items := func(n int) map[string]proto.Message {
		m := make(map[string]proto.Message, n)
		for i := range n {
			m[fmt.Sprint(i)] = &p4meshv1.Destination{Vpc: "red", Ip: fmt.Sprint(i)}
		}
		return m
	}
	small, mid, large := items(10), items(maxSorted), items(10000)
	allocs := func(m map[string]proto.Message, owned bool) float64 {
		return testing.AllocsPerRun(5, func() { NewTableFrom("t", m, Options{Epoch: 10, Owned: owned}) })
	}
	a, m, b := allocs(small, true), allocs(mid, true), allocs(large, true)
	if a != m || b > a || a > 3 {
		t.Errorf("Owned: NewTableFrom of 10 items allocates %v times, of %d %v, of 10,000 %v: it copies the items", a, maxSorted, m, b)
	}
	if a, b := allocs(small, false), allocs(large, false); a >= b {
		t.Errorf("not Owned: NewTableFrom of 10 items allocates %v times, of 10,000 %v: it keeps the owner's map", a, b)
	}
	tb := NewTableFrom("t", large, Options{Epoch: 10, Owned: true})
	got, rev := tb.Snapshot()
	if rev != 10 || len(got) != len(large) {
		t.Errorf("Snapshot: %d items at %d, want %d at 10", len(got), rev, len(large))
	}
}

// TestEmptyRevisionsDoNotWakeTimedStreams: a table its owner moves to
// every revision of its store, with no change for it, wakes a stream
// waiting to send its next PROGRESS no more than that PROGRESS needs (at
// most once per interval, not once per revision), and the client is
// still told the newest revision.
func TestEmptyRevisionsDoNotWakeTimedStreams(t *testing.T) {
	checkNoLeaks(t)
	const interval = 300 * time.Millisecond
	tab := NewTableFrom("dest", dests("a=1"), Options{Epoch: 100, ProgressInterval: interval})
	s := serve(t, tab, 0, nil)
	s.expect(t, put(100, "a", "1"), synced(100))
	wakes := func() uint64 {
		tab.logMu.RLock()
		defer tab.logMu.RUnlock()
		return tab.wakes
	}
	// The first empty revision wakes the stream, which arms its timer.
	tab.Commit(101, nil, nil)
	waitUntil(t, "the stream to wait on its PROGRESS timer", func() bool {
		tab.logMu.RLock()
		defer tab.logMu.RUnlock()
		for sub := range tab.subs {
			if sub.timed.Load() {
				return true
			}
		}
		return false
	})
	before := wakes()
	start := time.Now()
	rev := uint64(101)
	for range 100 {
		rev++
		tab.Commit(rev, nil, nil)
		time.Sleep(time.Millisecond) // time for a woken stream to look again
	}
	got := wakes() - before
	// However slow the machine, the timer fires at most once per interval
	// while the commits run.
	if bound := uint64(time.Since(start)/interval) + 1; got > bound {
		t.Errorf("100 revisions without a change woke the timed stream %d times, want at most %d", got, bound)
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-s.events:
			if e.GetType() != p4meshv1.Event_PROGRESS {
				t.Fatalf("unexpected %v", summarize(e))
			}
			if e.GetRevision() == rev {
				s.stop(t)
				return
			}
		case <-deadline:
			t.Fatalf("no PROGRESS(%d)", rev)
		}
	}
}
