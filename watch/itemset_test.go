package watch

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// TestItemSetMatchesMap drives an itemSet and a plain map through the
// same random puts and deletes, one at a time (Put, Delete) and in sorted
// batches of up to thousands (Commit), across maxSorted both ways, and
// checks after each step that the set holds exactly the map: the sorted
// slice and the map it becomes beyond maxSorted are one set.
func TestItemSetMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const space = maxSorted * 5 / 2
	vals := make([]proto.Message, 4)
	for i := range vals {
		vals[i] = &p4meshv1.Destination{Ip: fmt.Sprint(i)}
	}
	s := newItemSet(nil)
	want := map[string]proto.Message{}
	wasMap, flips := false, 0
	for step := range 240 {
		// Grow for the first half, then shrink, so the set crosses
		// maxSorted in both directions.
		pPut := 0.8
		if step >= 120 {
			pPut = 0.15
		}
		n := 1 + r.IntN(4)
		if r.IntN(3) == 0 {
			n = 1 + r.IntN(3000)
		}
		batch := map[string]proto.Message{}
		for range n {
			k := fmt.Sprintf("k%05d", r.IntN(space))
			if r.Float64() < pPut {
				batch[k] = vals[r.IntN(len(vals))]
			} else {
				batch[k] = nil
			}
		}
		keys := slices.Sorted(maps.Keys(batch))
		var cs []change
		for _, k := range keys {
			prev, had := s.get(k)
			if prev != want[k] || had != (want[k] != nil) {
				t.Fatalf("step %d: get(%s) = %v, %v; want %v", step, k, prev, had, want[k])
			}
			if batch[k] == nil && !had {
				continue
			}
			cs = append(cs, change{key: k, val: batch[k]})
			if batch[k] == nil {
				delete(want, k)
			} else {
				want[k] = batch[k]
			}
		}
		if r.IntN(2) == 0 {
			s.apply(cs, len(want))
		} else {
			for _, c := range cs {
				s.set(c.key, c.val)
				s.settle()
			}
		}
		if isMap := s.m != nil; isMap != wasMap {
			flips++
			wasMap = isMap
		}
		if s.len() != len(want) {
			t.Fatalf("step %d: len %d, want %d", step, s.len(), len(want))
		}
		if s.m == nil && len(s.sorted) > maxSorted {
			t.Fatalf("step %d: a slice of %d items, over maxSorted", step, len(s.sorted))
		}
		if s.m != nil && len(s.m) <= maxSorted/2 {
			t.Fatalf("step %d: a map of %d items, under maxSorted/2", step, len(s.m))
		}
		got, sorted := s.items()
		if !sorted {
			slices.SortFunc(got, compareItems)
		} else if !slices.IsSortedFunc(got, compareItems) {
			t.Fatalf("step %d: items() says sorted, is not", step)
		}
		if len(got) != len(want) {
			t.Fatalf("step %d: items() has %d, want %d", step, len(got), len(want))
		}
		for i, it := range got {
			if want[it.key] != it.val || (i > 0 && got[i-1].key == it.key) {
				t.Fatalf("step %d: items()[%d] = %s=%v, want %v", step, i, it.key, it.val, want[it.key])
			}
		}
	}
	if flips < 2 {
		t.Errorf("the set changed form %d times: the test did not cross maxSorted both ways", flips)
	}
}

// TestTableBeyondMaxSorted serves a table that grows past maxSorted and
// shrinks back under maxSorted/2 to a follower that resumes after each
// step, and checks the follower's view equals the table: the watch
// discipline is the same whatever form the items take.
func TestTableBeyondMaxSorted(t *testing.T) {
	tb := NewTable("t", Options{Epoch: 100, Buffer: 1 << 20, LogSize: 1 << 20})
	rev := uint64(100)
	view := map[string]string{}
	var seen uint64 // the view's revision; 0: none yet
	step := func(puts map[string]proto.Message, dels []string) {
		t.Helper()
		rev++
		tb.Commit(rev, puts, dels)
		sub := serve(t, tb, seen, nil)
		for {
			var e *p4meshv1.Event
			select {
			case e = <-sub.events:
			case <-time.After(10 * time.Second):
				t.Fatalf("revision %d: no SYNCED", rev)
			}
			switch e.GetType() {
			case p4meshv1.Event_PUT:
				view[e.GetKey()] = e.GetDestination().GetIp()
			case p4meshv1.Event_DELETE:
				delete(view, e.GetKey())
			case p4meshv1.Event_RESET:
				t.Fatalf("revision %d: RESET resuming from %d", rev, seen)
			}
			if e.GetType() == p4meshv1.Event_SYNCED {
				seen = e.GetRevision()
				break
			}
		}
		sub.stop(t)
		items, at := tb.Snapshot()
		if at != seen || len(items) != len(view) {
			t.Fatalf("revision %d: the view has %d items at %d, the table %d at %d", rev, len(view), seen, len(items), at)
		}
		for k, v := range items {
			if ip, ok := view[k]; !ok || ip != v.(*p4meshv1.Destination).GetIp() {
				t.Fatalf("revision %d: the view has %s=%q (%v), the table %v", rev, k, ip, ok, v)
			}
		}
	}
	puts := map[string]proto.Message{}
	for i := range maxSorted + 100 {
		puts[fmt.Sprintf("k%05d", i)] = dest("red", fmt.Sprint(i))
	}
	step(puts, nil)
	step(map[string]proto.Message{"k00007": dest("red", "seven")}, []string{"k00008"})
	// Back under maxSorted/2 in two steps, each of fewer changes than
	// the items left: a resume that needs more is a snapshot (logSize).
	var dels []string
	for i := range 2200 {
		dels = append(dels, fmt.Sprintf("k%05d", i))
	}
	step(nil, dels)
	dels = dels[:0]
	for i := range 2000 {
		dels = append(dels, fmt.Sprintf("k%05d", 2200+i))
	}
	step(nil, dels)
	if tb.Len() > maxSorted/2 {
		t.Fatalf("%d items left: the test does not go back under maxSorted/2", tb.Len())
	}
	step(map[string]proto.Message{"a": dest("red", "a")}, nil)
	if tb.items.m != nil {
		t.Errorf("a table of %d items is still a map", tb.Len())
	}
}

// TestGet: Get returns the item a table holds under a key, in either form
// of its items, and nil for a key it does not hold.
func TestGet(t *testing.T) {
	tb := NewTable("t", Options{Epoch: 1})
	puts := map[string]proto.Message{}
	for i := range maxSorted + 1 {
		puts[fmt.Sprintf("k%05d", i)] = dest("red", fmt.Sprint(i))
	}
	for rev, n := range []int{10, maxSorted + 1} {
		tb := tb
		if n != 10 {
			tb = NewTableFrom("t", puts, Options{Epoch: 1})
		} else {
			tb.Commit(uint64(rev+2), map[string]proto.Message{"k00003": dest("red", "3"), "k00004": dest("red", "4")}, nil)
		}
		for _, k := range []string{"k00003", "k00004"} {
			if got := tb.Get(k); got.(*p4meshv1.Destination).GetIp() != k[5:] {
				t.Errorf("%d items: Get(%s) = %v", n, k, got)
			}
		}
		if got := tb.Get("nope"); got != nil {
			t.Errorf("%d items: Get(nope) = %v, want nil", n, got)
		}
	}
}
