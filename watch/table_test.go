package watch

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

func TestServeSnapshotThenDeltas(t *testing.T) {
	checkNoLeaks(t)
	tab := NewTable("dest", Options{Epoch: 1000})
	tab.Put("b", dest("red", "2"))
	tab.Put("a", dest("red", "1"))

	s := serve(t, tab, 0, nil)
	// Snapshot in key order, every PUT at the snapshot revision, no RESET
	// for a client that asked for a snapshot.
	s.expect(t, put(1002, "a", "1"), put(1002, "b", "2"), synced(1002))

	if got := tab.Put("c", dest("red", "3")); got != 1003 {
		t.Errorf("Put returned revision %d, want 1003", got)
	}
	tab.Delete("a")
	tab.Put("c", dest("red", "3")) // equal: no-op
	tab.Delete("zz")               // absent: no-op
	tab.Put("b", dest("red", "2b"))
	s.expect(t, put(1003, "c", "3"), del(1004, "a"), put(1005, "b", "2b"))
	s.expectNone(t)

	if st := tab.Stats(); st != (Stats{Revision: 1005, Items: 2, Subscribers: 1, Snapshots: 1}) {
		t.Errorf("Stats = %+v", st)
	}
	s.stop(t)
	if n := tab.Subscribers(); n != 0 {
		t.Errorf("Subscribers after cancel = %d, want 0", n)
	}
}

// TestServeResume covers every way a fromRev can relate to the table: the
// log holds revisions 1003..1010 (LogSize 8, ten changes from epoch 1000).
func TestServeResume(t *testing.T) {
	newTable := func() *Table {
		tab := NewTable("dest", Options{Epoch: 1000, LogSize: 8})
		for i := range 10 { // revisions 1001..1010; k0 k1 k2 rewritten
			tab.Put(fmt.Sprintf("k%d", i%3), dest("red", fmt.Sprint(i)))
		}
		return tab
	}
	snapshot := []ev{put(1010, "k0", "9"), put(1010, "k1", "7"), put(1010, "k2", "8")}
	tests := []struct {
		name    string
		fromRev uint64
		want    []ev
	}{
		{"fresh", 0, append(snapshot, synced(1010))},
		{"in log", 1006, []ev{put(1007, "k0", "6"), put(1008, "k1", "7"), put(1009, "k2", "8"), put(1010, "k0", "9"), synced(1010)}},
		{"oldest resumable", 1002, []ev{
			put(1003, "k2", "2"), put(1004, "k0", "3"), put(1005, "k1", "4"), put(1006, "k2", "5"),
			put(1007, "k0", "6"), put(1008, "k1", "7"), put(1009, "k2", "8"), put(1010, "k0", "9"), synced(1010),
		}},
		{"up to date", 1010, []ev{synced(1010)}},
		{"compacted", 1001, append(append([]ev{reset(1010)}, snapshot...), synced(1010))},
		{"earlier epoch", 500, append(append([]ev{reset(1010)}, snapshot...), synced(1010))},
		{"later epoch", 5000, append(append([]ev{reset(1010)}, snapshot...), synced(1010))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeaks(t)
			tab := newTable()
			s := serve(t, tab, tc.fromRev, nil)
			s.expect(t, tc.want...)
			// Live changes follow with no gap, whichever way it started.
			tab.Delete("k1")
			s.expect(t, del(1011, "k1"))
		})
	}
}

// A controller restart makes a new table whose epoch is the clock: a
// revision from before the restart must get RESET even though the new
// table holds the same items.
func TestServeAcrossRestart(t *testing.T) {
	checkNoLeaks(t)
	before := uint64(time.Now().UnixNano())
	old := NewTable("dest", Options{})
	if old.Revision() < before {
		t.Fatalf("epoch %d is before the clock at creation %d", old.Revision(), before)
	}
	items := map[string]proto.Message{"a": dest("red", "1"), "b": dest("red", "2")}
	clientRev := old.Replace(items)

	restarted := NewTable("dest", Options{})
	rev := restarted.Replace(items)
	if rev <= clientRev {
		t.Fatalf("restarted table at revision %d, not above the old one's %d", rev, clientRev)
	}
	s := serve(t, restarted, clientRev, nil)
	s.expect(t, reset(rev), put(rev, "a", "1"), put(rev, "b", "2"), synced(rev))
}

func TestPutEqualIsNoop(t *testing.T) {
	tab := NewTable("dest", Options{Epoch: 1})
	r1 := tab.Put("a", dest("red", "1"))
	s := serve(t, tab, 0, nil)
	s.expect(t, put(r1, "a", "1"), synced(r1))

	if r := tab.Put("a", dest("red", "1")); r != r1 {
		t.Errorf("equal Put moved the revision %d -> %d", r1, r)
	}
	if r := tab.Replace(map[string]proto.Message{"a": dest("red", "1")}); r != r1 {
		t.Errorf("equal Replace moved the revision %d -> %d", r1, r)
	}
	tab.Put("b", dest("red", "2"))
	// b is the next event: nothing was sent for the equal puts.
	s.expect(t, put(r1+1, "b", "2"))
}

// Put stores a clone: a caller reusing its message must not change the
// table or what subscribers were sent.
func TestPutClones(t *testing.T) {
	tab := NewTable("dest", Options{Epoch: 1})
	m := dest("red", "1")
	tab.Put("a", m)
	m.Ip = "changed"
	snap, _ := tab.Snapshot()
	if got := snap["a"].(*p4meshv1.Destination).GetIp(); got != "1" {
		t.Errorf("stored ip = %q after the caller modified its message, want 1", got)
	}
	if r := tab.Put("a", m); r != 3 {
		t.Errorf("Put of the modified message: revision %d, want 3", r)
	}
}

func TestReplace(t *testing.T) {
	tests := []struct {
		name    string
		initial map[string]string
		replace map[string]string
		want    []ev // changes, from revision 101
	}{
		{"from empty", nil, map[string]string{"b": "2", "a": "1"}, []ev{put(101, "a", "1"), put(102, "b", "2")}},
		{"to empty", map[string]string{"a": "1", "b": "2"}, nil, []ev{del(101, "a"), del(102, "b")}},
		{"mixed, key order", map[string]string{"a": "1", "b": "2", "c": "3"}, map[string]string{"a": "1", "b": "2x", "d": "4"},
			[]ev{put(101, "b", "2x"), del(102, "c"), put(103, "d", "4")}},
		{"unchanged", map[string]string{"a": "1"}, map[string]string{"a": "1"}, nil},
	}
	toItems := func(m map[string]string) map[string]proto.Message {
		out := make(map[string]proto.Message)
		for k, ip := range m {
			out[k] = dest("red", ip)
		}
		return out
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tab := NewTable("dest", Options{Epoch: 1})
			tab.Replace(toItems(tc.initial))
			// Rebase so the changes under test start at 101.
			tab = rebase(tab, 100)
			s := serve(t, tab, 100, nil)
			s.expect(t, synced(100))
			rev := tab.Replace(toItems(tc.replace))
			if want := uint64(100 + len(tc.want)); rev != want {
				t.Errorf("Replace returned revision %d, want %d", rev, want)
			}
			s.expect(t, tc.want...)
			if tab.Len() != len(tc.replace) {
				t.Errorf("Len = %d, want %d", tab.Len(), len(tc.replace))
			}
			snap, _ := tab.Snapshot()
			for k, ip := range tc.replace {
				if got := snap[k].(*p4meshv1.Destination).GetIp(); got != ip {
					t.Errorf("%s = %q, want %q", k, got, ip)
				}
			}
		})
	}
}

// rebase copies tab's contents into a fresh table at revision epoch, so
// table-driven cases can name absolute revisions.
func rebase(tab *Table, epoch uint64) *Table {
	items, _ := tab.Snapshot()
	out := NewTable(tab.name, Options{Epoch: epoch - uint64(len(items))})
	out.Replace(items)
	if out.Revision() != epoch {
		panic("rebase")
	}
	return out
}

// A subscriber whose stream is stuck must not slow Put down; it is marked
// behind and, once it moves again, gets RESET and a whole snapshot.
func TestSlowConsumer(t *testing.T) {
	checkNoLeaks(t)
	const keys, puts = 1000, 100_000
	tab := NewTable("dest", Options{Epoch: 1})
	for i := range keys {
		tab.Put(fmt.Sprintf("k%04d", i), dest("red", "init"))
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu  sync.Mutex
		got []*p4meshv1.Event
	)
	firstSynced := make(chan struct{})
	stuck := make(chan struct{}) // closed once the subscriber is stuck
	gate := make(chan struct{})  // closed to unstick it
	send := func(e *p4meshv1.Event) error {
		mu.Lock()
		got = append(got, e)
		n := len(got)
		mu.Unlock()
		switch n {
		case keys + 1: // the SYNCED after the snapshot
			close(firstSynced)
		case keys + 2: // the first delta: stuck, like a client that stopped reading
			close(stuck)
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- tab.Serve(ctx, 0, send, wrapDest) }()
	<-firstSynced
	// The first delta, sent once Serve has subscribed (from its catch-up
	// or live), is where the subscriber gets stuck.
	tab.Put("k0000", dest("red", "first"))
	<-stuck

	putsDone := make(chan struct{})
	go func() {
		defer close(putsDone)
		for i := range puts {
			tab.Put(fmt.Sprintf("k%04d", i%keys), dest("red", fmt.Sprint(i)))
		}
	}()
	// A liveness bound, not a performance assertion: if Put waited for the
	// stuck subscriber it would never finish.
	select {
	case <-putsDone:
	case <-time.After(2 * time.Minute):
		t.Fatal("Put is blocked behind a stuck subscriber")
	}
	final := tab.Revision()
	if st := tab.Stats(); st.ResyncsForced != 1 || st.Subscribers != 1 {
		t.Fatalf("Stats with the subscriber stuck = %+v, want 1 forced resync, 1 subscriber", st)
	}

	close(gate)
	waitFor := func(want int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			n := len(got)
			mu.Unlock()
			if n >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("subscriber got %d events after being unstuck, want %d", n, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// snapshot + SYNCED + 1 stuck delta + RESET + snapshot + SYNCED
	waitFor(2*keys + 4)
	tab.Put("after", dest("red", "after")) // live again once resynced
	waitFor(2*keys + 5)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	rest := got[keys+2:] // after the first snapshot, SYNCED and the delta it got stuck on
	if s := summarize(rest[0]); s != reset(final) {
		t.Fatalf("after the stall: %v, want %v", s, reset(final))
	}
	snap, _ := tab.Snapshot()
	for i := range keys {
		key := fmt.Sprintf("k%04d", i)
		want := put(final, key, snap[key].(*p4meshv1.Destination).GetIp())
		if s := summarize(rest[1+i]); s != want {
			t.Fatalf("snapshot event %d = %v, want %v", i, s, want)
		}
	}
	if s := summarize(rest[1+keys]); s != synced(final) {
		t.Fatalf("after the snapshot: %v, want %v", s, synced(final))
	}
	if s := summarize(rest[2+keys]); s != put(final+1, "after", "after") {
		t.Fatalf("live change after the resync: %v", s)
	}
	if len(rest) != keys+3 {
		t.Fatalf("%d events after the resync, want %d", len(rest), keys+3)
	}
	if st := tab.Stats(); st.Snapshots != 2 || st.Subscribers != 0 {
		t.Errorf("Stats at the end = %+v, want 2 snapshots, 0 subscribers", st)
	}
}

func TestServeFiltered(t *testing.T) {
	red := func(_ string, v proto.Message) bool { return v.(*p4meshv1.Destination).GetVpc() == "red" }

	t.Run("live", func(t *testing.T) {
		checkNoLeaks(t)
		tab := NewTable("dest", Options{Epoch: 100})
		tab.Put("a", dest("red", "1"))  // 101
		tab.Put("b", dest("blue", "2")) // 102
		s := serve(t, tab, 0, red)
		s.expect(t, put(102, "a", "1"), synced(102))

		tab.Put("a", dest("blue", "1")) // 103: stops matching
		tab.Put("b", dest("blue", "3")) // 104: never sent, stays unsent
		tab.Delete("b")                 // 105: never sent
		tab.Put("c", dest("red", "4"))  // 106
		tab.Put("a", dest("red", "5"))  // 107: matches again
		tab.Delete("c")                 // 108
		s.expect(t, del(103, "a"), put(106, "c", "4"), put(107, "a", "5"), del(108, "c"))
		s.expectNone(t)
	})

	// A resumed stream has no record of what the client was sent; it works
	// it out from the value each item had before the change.
	t.Run("resumed", func(t *testing.T) {
		checkNoLeaks(t)
		tab := NewTable("dest", Options{Epoch: 100, ResumeFiltered: true})
		tab.Put("a", dest("red", "1"))  // 101
		tab.Put("b", dest("blue", "2")) // 102: client at 102 holds a only
		tab.Put("a", dest("blue", "1")) // 103: a stops matching
		tab.Put("b", dest("blue", "3")) // 104: not held, stays unsent
		tab.Put("c", dest("red", "4"))  // 105
		tab.Put("c", dest("blue", "4")) // 106: c was sent on this stream
		tab.Put("c", dest("blue", "5")) // 107: already deleted once
		s := serve(t, tab, 102, red)
		s.expect(t, del(103, "a"), put(105, "c", "4"), del(106, "c"), synced(107))
		tab.Put("b", dest("red", "6")) // 108
		tab.Delete("b")                // 109
		s.expect(t, put(108, "b", "6"), del(109, "b"))
		s.expectNone(t)
	})

	// Without the values before each change the log cannot tell what the
	// client holds: the stream starts over.
	t.Run("resumed without previous values", func(t *testing.T) {
		checkNoLeaks(t)
		tab := NewTable("dest", Options{Epoch: 100})
		tab.Put("a", dest("red", "1"))  // 101
		tab.Put("b", dest("blue", "2")) // 102: client at 102 holds a only
		tab.Put("a", dest("blue", "1")) // 103: a stops matching
		tab.Put("c", dest("red", "4"))  // 104
		s := serve(t, tab, 102, red)
		s.expect(t, reset(104), put(104, "c", "4"), synced(104))
		tab.Put("a", dest("red", "5")) // 105
		s.expect(t, put(105, "a", "5"))
		s.expectNone(t)
	})
}

func TestServeSendError(t *testing.T) {
	checkNoLeaks(t)
	tab := NewTable("dest", Options{Epoch: 1})
	tab.Put("a", dest("red", "1"))
	boom := errors.New("boom")
	err := tab.Serve(context.Background(), 0, func(*p4meshv1.Event) error { return boom }, wrapDest)
	if !errors.Is(err, boom) {
		t.Fatalf("Serve = %v, want it to wrap %v", err, boom)
	}
	if n := tab.Subscribers(); n != 0 {
		t.Errorf("Subscribers after a failed send = %d, want 0", n)
	}
}

// Many subscribers and writers at once, for the race detector; every
// subscriber must end with the table's contents.
func TestConcurrentSubscribers(t *testing.T) {
	checkNoLeaks(t)
	tab := NewTable("dest", Options{Epoch: 1, Buffer: 8, LogSize: 16})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				key := fmt.Sprintf("k%d", i%50)
				if i%7 == 0 {
					tab.Delete(key)
				} else {
					tab.Put(key, dest("red", fmt.Sprint(w, i)))
				}
			}
		})
	}
	views := make([]*View, 4)
	ctx, cancel := context.WithCancel(context.Background())
	var serving sync.WaitGroup
	for i := range views {
		v := &View{}
		views[i] = v
		h := v.Handler(nil)
		f := &follower{h: h}
		serving.Go(func() {
			_ = tab.Serve(ctx, 0, func(e *p4meshv1.Event) error { f.apply(e); return nil }, wrapDest)
		})
	}
	wg.Wait()
	final := tab.Revision()
	deadline := time.Now().Add(30 * time.Second)
	for _, v := range views {
		for !v.Synced() || v.Revision() != final {
			if time.Now().After(deadline) {
				t.Fatalf("view at %d (synced %v), table at %d", v.Revision(), v.Synced(), final)
			}
			time.Sleep(time.Millisecond)
		}
	}
	cancel()
	serving.Wait()
	snap, _ := tab.Snapshot()
	for i, v := range views {
		items := v.Items()
		if len(items) != len(snap) {
			t.Errorf("view %d has %d items, table %d", i, len(items), len(snap))
		}
		for k, e := range items {
			if !proto.Equal(e.GetDestination(), snap[k]) {
				t.Errorf("view %d: %s = %v, table has %v", i, k, e.GetDestination(), snap[k])
			}
		}
	}
}

// Streams starting a snapshot at one revision share it; a change makes the
// next one take a new snapshot and leaves the old one as it was; once no
// stream holds a snapshot, the table holds none either.
func TestSnapshotShared(t *testing.T) {
	tab := NewTable("dest", Options{Epoch: 1})
	tab.Put("b", dest("red", "2"))
	tab.Put("a", dest("red", "1"))
	s1, r1 := tab.takeSnapshot()
	s2, _ := tab.takeSnapshot()
	if s1 != s2 {
		t.Error("two snapshots at one revision are two copies")
	}
	tab.Put("c", dest("red", "3"))
	s3, r3 := tab.takeSnapshot()
	if s3 == s1 {
		t.Fatal("a snapshot taken after a change is the one from before it")
	}
	for _, tc := range []struct {
		s         *snapshot
		rev, want uint64
		keys      string
	}{{s1, r1, 3, "[a b]"}, {s3, r3, 4, "[a b c]"}} {
		var keys []string
		for _, it := range tc.s.items {
			keys = append(keys, it.key)
		}
		if tc.rev != tc.want || fmt.Sprint(keys) != tc.keys {
			t.Errorf("snapshot at %d holds %v, want %v at %d", tc.rev, keys, tc.keys, tc.want)
		}
	}
	runtime.KeepAlive(s1)
	s1, s2, s3 = nil, nil, nil
	runtime.GC()
	if tab.snap.Value() != nil {
		t.Error("the table keeps a snapshot no stream holds")
	}
}

// Streams stalled in the middle of a snapshot (clients that stopped
// reading) each hold a position in the shared snapshot, not a copy of the
// table's index: one copy of 20k items is about 625 KiB.
func TestStalledStreamsShareSnapshot(t *testing.T) {
	checkNoLeaks(t)
	const items, streams = 20_000, 100
	tab := NewTable("dest", Options{Epoch: 1})
	for i := range items {
		tab.Put(fmt.Sprintf("k%05d", i), dest("red", fmt.Sprint(i)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	var stalled, done sync.WaitGroup
	stalled.Add(streams)
	for range streams {
		first := true
		done.Go(func() {
			_ = tab.Serve(ctx, 0, func(*p4meshv1.Event) error {
				if first {
					first = false
					stalled.Done()
				}
				<-ctx.Done()
				return ctx.Err()
			}, wrapDest)
		})
	}
	stalled.Wait()
	runtime.GC()
	runtime.ReadMemStats(&after)
	perStream := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / streams
	t.Logf("%d streams stalled in a snapshot of %d items: %d bytes of heap each", streams, items, perStream)
	if perStream > 32<<10 {
		t.Errorf("a stalled stream holds %d bytes of heap, want under 32 KiB", perStream)
	}
	if st := tab.Stats(); st.Snapshots != streams || st.Subscribers != streams {
		t.Errorf("Stats = %+v, want %d snapshots and subscribers", st, streams)
	}
	cancel()
	done.Wait()
}

// A subscriber stalled in Send holds its position in the shared log, not a
// queue of its own: 1024 changes of queue per subscriber was 56 KiB each,
// allocated when it subscribed.
func TestStalledSubscribersHoldNoQueue(t *testing.T) {
	checkNoLeaks(t)
	const streams, puts = 200, 500 // puts < DefaultBuffer: none falls behind
	tab := NewTable("dest", Options{Epoch: 1})
	tab.Put("a", dest("red", "0"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	var synced, stalled, done sync.WaitGroup
	synced.Add(streams)
	stalled.Add(streams)
	for range streams {
		done.Go(func() {
			_ = tab.Serve(ctx, 0, func(e *p4meshv1.Event) error {
				switch e.GetType() {
				case p4meshv1.Event_SYNCED:
					synced.Done()
				case p4meshv1.Event_PUT:
					if e.GetRevision() > 2 { // the first delta: stuck
						stalled.Done()
						<-ctx.Done()
						return ctx.Err()
					}
				}
				return nil
			}, wrapDest)
		})
	}
	synced.Wait()
	for i := range puts {
		tab.Put("a", dest("red", fmt.Sprint(i+1)))
	}
	stalled.Wait()
	runtime.GC()
	runtime.ReadMemStats(&after)
	perStream := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / streams
	t.Logf("%d subscribers stalled %d changes behind: %d bytes of heap each", streams, puts, perStream)
	if perStream > 8<<10 {
		t.Errorf("a stalled subscriber holds %d bytes of heap, want under 8 KiB", perStream)
	}
	if st := tab.Stats(); st.ResyncsForced != 0 {
		t.Errorf("Stats = %+v, want no forced resync", st)
	}
	cancel()
	done.Wait()
}

// The log keeps what a subscriber within its buffer has yet to take even
// past LogSize, so a log shorter than the buffer forces no resync; once the
// subscriber falls behind, or catches up, the log is LogSize again.
func TestLogKeepsWhatSubscribersNeed(t *testing.T) {
	checkNoLeaks(t)
	tab := NewTable("dest", Options{Epoch: 100, LogSize: 4, Buffer: 50})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan *p4meshv1.Event, 1000)
	stuck, gate := make(chan struct{}), make(chan struct{})
	go tab.Serve(ctx, 0, func(e *p4meshv1.Event) error {
		if e.GetType() == p4meshv1.Event_PUT && e.GetRevision() == 101 {
			close(stuck)
			<-gate
		}
		events <- e
		return nil
	}, wrapDest)
	if e := <-events; e.GetType() != p4meshv1.Event_SYNCED {
		t.Fatalf("first event %v, want SYNCED", summarize(e))
	}
	logLen := func() int {
		tab.logMu.RLock()
		defer tab.logMu.RUnlock()
		return len(tab.log)
	}
	for i := range 40 { // revisions 101..140
		tab.Put(fmt.Sprintf("k%d", i), dest("red", fmt.Sprint(i)))
		if i == 0 {
			<-stuck // having taken 101 alone
		}
	}
	if n := logLen(); n != 39 {
		t.Errorf("log holds %d changes with a subscriber stalled having taken the first of 40, want the other 39", n)
	}
	close(gate)
	for i := range 40 {
		e := <-events
		if s := summarize(e); s != put(uint64(101+i), fmt.Sprintf("k%d", i), fmt.Sprint(i)) {
			t.Fatalf("event %d: %v", i, s)
		}
	}
	tab.Put("last", dest("red", "last")) // compacts, the subscriber having caught up
	if s := summarize(<-events); s != put(141, "last", "last") {
		t.Fatalf("after catching up: %v", s)
	}
	if n := logLen(); n != 4 {
		t.Errorf("log holds %d changes once the subscriber caught up, want LogSize 4", n)
	}
	if st := tab.Stats(); st.ResyncsForced != 0 {
		t.Errorf("Stats = %+v, want no forced resync", st)
	}
}
