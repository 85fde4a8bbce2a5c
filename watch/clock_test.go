package watch

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// TestClockMovesUntouchedTables: a table its owner leaves alone is at its
// clock's revision, a stream of it is told so (PROGRESS) even when it
// waits with nothing to send, a client resumes from that revision without
// RESET on this table and on one built at it (a restart), and the owner's
// next change to it goes above it.
func TestClockMovesUntouchedTables(t *testing.T) {
	checkNoLeaks(t)
	clock := NewClock(100)
	o := Options{Epoch: 100, Clock: clock, ProgressInterval: time.Millisecond}
	tab := NewTableFrom("dest", map[string]proto.Message{"a": dest("red", "1")}, o)
	other := NewTable("other", o)

	s := serve(t, tab, 0, nil)
	s.expect(t, put(100, "a", "1"), synced(100))
	// The stream has told its client everything: it waits for the clock,
	// with no timer armed.
	other.Commit(101, map[string]proto.Message{"x": dest("red", "x")}, nil)
	clock.Advance(101)
	s.expect(t, progress(101))
	clock.Advance(102)
	clock.Advance(103)
	// 102 too if the stream looked in between and its interval had
	// passed.
	for rev := uint64(101); rev < 103; {
		select {
		case e := <-s.events:
			got := summarize(e)
			if got.Type != "PROGRESS" || got.Rev <= rev || got.Rev > 103 {
				t.Fatalf("after the clock moved from %d to 103: %v", rev, got)
			}
			rev = got.Rev
		case <-time.After(10 * time.Second):
			t.Fatal("no PROGRESS to 103")
		}
	}
	if got := tab.Revision(); got != 103 {
		t.Errorf("Revision() = %d, want the clock's 103", got)
	}

	// A client at the clock's revision resumes with nothing to apply.
	r := serve(t, tab, 103, nil)
	r.expect(t, synced(103))
	// A snapshot is at the clock's revision too.
	n := serve(t, tab, 0, nil)
	n.expect(t, put(103, "a", "1"), synced(103))

	// The owner's next change goes above the clock, and every stream
	// sees it at its revision.
	tab.Commit(104, map[string]proto.Message{"b": dest("red", "2")}, nil)
	clock.Advance(104)
	s.expect(t, put(104, "b", "2"))
	r.expect(t, put(104, "b", "2"))
	n.expect(t, put(104, "b", "2"))
	s.expectNone(t)

	// After a restart the owner builds its tables at its store's
	// revision: a client told the clock's resumes there with no RESET.
	clock.Advance(105)
	s.expect(t, progress(105))
	items, _ := tab.Snapshot()
	again := NewTableFrom("dest", items, Options{Epoch: 105, Clock: NewClock(105)})
	a := serve(t, again, 105, nil)
	a.expect(t, synced(105))
	a.expectNone(t)
}

// TestClockNeverBackwards: a revision at or below the clock's is refused
// as the owner's bug, by Commit and by Advance, before anything changes.
func TestClockNeverBackwards(t *testing.T) {
	clock := NewClock(10)
	tab := NewTable("t", Options{Epoch: 10, Clock: clock})
	clock.Advance(12)
	mustPanic(t, "not above the table's revision 12", func() {
		tab.Commit(12, map[string]proto.Message{"a": dest("red", "1")}, nil)
	})
	mustPanic(t, "Advance to revision 11, below the clock's 12", func() { clock.Advance(11) })
	clock.Advance(12) // the same revision again moves nothing
	if tab.Len() != 0 || tab.Revision() != 12 || clock.Revision() != 12 {
		t.Errorf("after refused calls: %d items at %d, clock %d; want 0 at 12, 12", tab.Len(), tab.Revision(), clock.Revision())
	}
	// Put numbers its change after the table's revision, the clock's.
	if rev := tab.Put("a", dest("red", "1")); rev != 13 {
		t.Errorf("Put at revision %d, want 13", rev)
	}
}

// TestLogSizeFollowsItems: a table keeps as many changes to resume from
// as it has items (MinLogSize at least, LogSize at most): a resume that
// needs that many is sent them, one that needs more a snapshot.
func TestLogSizeFollowsItems(t *testing.T) {
	for _, tc := range []struct {
		name    string
		items   int // held throughout
		logSize int
		want    int // changes kept
	}{
		{"items", 200, 0, 200},
		{"floor", 5, 0, MinLogSize},
		{"LogSize", 200, 150, 150},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeaks(t)
			items := map[string]proto.Message{}
			for i := range tc.items {
				items[fmt.Sprintf("k%04d", i)] = dest("red", "0")
			}
			tab := NewTableFrom("t", items, Options{Epoch: 1, LogSize: tc.logSize})
			// One change a revision, each an edit of an item.
			rev := uint64(1)
			for i := range tc.want + 10 {
				rev++
				tab.Commit(rev, map[string]proto.Message{fmt.Sprintf("k%04d", i%tc.items): dest("red", fmt.Sprint(rev))}, nil)
			}
			// A client that needs exactly the changes kept gets them.
			from := rev - uint64(tc.want)
			s := serve(t, tab, from, nil)
			s.expect(t, put(from+1, fmt.Sprintf("k%04d", (from-1)%uint64(tc.items)), fmt.Sprint(from+1)))
			// One more is a snapshot.
			r := serve(t, tab, from-1, nil)
			r.expect(t, reset(rev))
		})
	}
}

// TestLogSizeShrinksArray: once a large revision is dropped the log does
// not keep the array that held it.
func TestLogSizeShrinksArray(t *testing.T) {
	tab := NewTable("t", Options{Epoch: 1})
	big := map[string]proto.Message{}
	for i := range 2000 {
		big[fmt.Sprintf("k%04d", i)] = dest("red", "0")
	}
	tab.Commit(2, big, nil)
	var dels []string
	for k := range big {
		if k >= "k0010" {
			dels = append(dels, k)
		}
	}
	tab.Commit(3, nil, dels) // 10 items left: both revisions are dropped
	for i := range 3 {
		tab.Commit(uint64(4+i), map[string]proto.Message{"k0000": dest("red", fmt.Sprint(i+1))}, nil)
	}
	tab.logMu.RLock()
	n, c := len(tab.log), cap(tab.log)
	tab.logMu.RUnlock()
	if n != 3 || c > 2*MinLogSize {
		t.Errorf("log of %d changes (capacity %d), want 3 in at most %d", n, c, 2*MinLogSize)
	}
}
