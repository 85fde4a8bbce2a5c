package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/proto"
)

// routeRequest is n LPM entries of the route table, /24s under 10/8 in
// VNI vni: entries of the indexed LPM path.
func routeRequest(typ p4v1.Update_Type, vni byte, first, n int) *p4v1.WriteRequest {
	w := &p4v1.WriteRequest{DeviceId: 1}
	for i := first; i < first+n; i++ {
		w.Updates = append(w.Updates, upd(typ, te(tRoute, 0, encap(uint32(i), 0x0a000001, 2), exact(1, vni), lpm(2, 24, u32(0x0a000000|uint32(i)<<8)...))))
	}
	return w
}

// TestWriteSteadyStateAllocs: once a store has held as many entries as a
// flow of inserts and deletes needs, the server decodes (the gRPC fast
// path) and applies a batch of inserts, then of deletes, without
// allocating, for an exact and an LPM table.
func TestWriteSteadyStateAllocs(t *testing.T) {
	const batch = 200
	for _, tc := range []struct {
		name     string
		ins, del *p4v1.WriteRequest
	}{
		{"exact", benchRequest(p4v1.Update_INSERT, 0, batch), benchRequest(p4v1.Update_DELETE, 0, batch)},
		{"lpm", routeRequest(p4v1.Update_INSERT, 3, 0, batch), routeRequest(p4v1.Update_DELETE, 3, 0, batch)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCommitted(t)
			// Entries that stay, so the table is not emptied between
			// batches, as in a switch under churn.
			must(t, s, benchRequest(p4v1.Update_INSERT, 1000, 500).Updates...)
			must(t, s, routeRequest(p4v1.Update_INSERT, 3, 1000, 500).Updates...)
			var wires [2][]byte
			for i, r := range []*p4v1.WriteRequest{tc.ins, tc.del} {
				r.ElectionId = nil
				b, err := proto.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				wires[i] = b
			}
			d := &writeDecoder{}
			ctx := context.Background()
			cycle := func() {
				for _, w := range wires {
					req, err := fastDecode(d, w)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := s.Write(ctx, req); err != nil {
						t.Fatal(err)
					}
				}
			}
			for range 3 {
				cycle()
			}
			// AllocsPerRun averages over runs, rounding down: 0 means
			// fewer than one allocation per batch of 200 inserts and 200
			// deletes.
			if a := testing.AllocsPerRun(20, cycle); a != 0 {
				t.Fatalf("%v allocations per cycle of %d inserts and %d deletes, want 0", a, batch, batch)
			}
		})
	}
}

// blockingSink is a Read stream whose first Send runs f before it looks
// at the response: a Write that lands while a Read is between collecting
// its entities and sending them.
type blockingSink struct {
	readSink
	f    func()
	done bool
}

func (b *blockingSink) Send(m *p4v1.ReadResponse) error {
	if !b.done {
		b.done = true
		b.f()
	}
	b.out = append(b.out, proto.Clone(m).(*p4v1.ReadResponse).GetEntities()...)
	return nil
}

// TestReadSeesDeletedEntriesWhole: entries deleted, and their blocks
// wanted again by inserts, while a Read is sending them still read as
// they were when the Read collected them.
func TestReadSeesDeletedEntriesWhole(t *testing.T) {
	s := newCommitted(t)
	const n = 50
	must(t, s, benchRequest(p4v1.Update_INSERT, 0, n).Updates...)
	q := &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: tDest}}}
	before, err := readAll(t, s, q)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(before)
	// Churn twice: the first Write retires the deleted blocks, the second
	// would reuse them if the Read were not counted.
	churn := func() {
		for i := 1; i <= 2; i++ {
			must(t, s, benchRequest(p4v1.Update_DELETE, (i-1)*n, n).Updates...)
			must(t, s, benchRequest(p4v1.Update_INSERT, i*n, n).Updates...)
		}
	}
	rs := &blockingSink{f: churn}
	if err := s.Read(&p4v1.ReadRequest{DeviceId: 1, Entities: []*p4v1.Entity{q}}, rs); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(rs.out); got != want {
		t.Fatalf("entities changed under the Read:\n got %s\nwant %s", got, want)
	}
	// Once no Read is in flight, the deleted entries' blocks are reused.
	must(t, s, benchRequest(p4v1.Update_DELETE, 2*n, n).Updates...)
	if st := s.Store(); len(st.free) < n {
		t.Fatalf("%d blocks free after deleting %d entries with no Read in flight", len(st.free), n)
	}
}

// TestModifyRecyclesSafely: a MODIFY frees the old entry's block, whose key
// bytes the table's maps must no longer use once an insert refills it;
// and a MODIFY without an action keeps the action the entries share.
func TestModifyRecyclesSafely(t *testing.T) {
	s := newCommitted(t)
	key := func(i uint32) []*p4v1.FieldMatch { return []*p4v1.FieldMatch{exact(1, 1), exact(2, u32(i)...)} }
	routeKey := func(i uint32) []*p4v1.FieldMatch { return []*p4v1.FieldMatch{exact(1, 1), lpm(2, 24, u32(i<<8)...)} }
	for _, tc := range []struct {
		table uint32
		key   func(uint32) []*p4v1.FieldMatch
	}{{tDest, key}, {tRoute, routeKey}} {
		must(t, s, upd(p4v1.Update_INSERT, te(tc.table, 0, encap(1, 1, 1), tc.key(1)...)))
		must(t, s, upd(p4v1.Update_MODIFY, te(tc.table, 0, encap(2, 2, 2), tc.key(1)...)))
		must(t, s, upd(p4v1.Update_INSERT, te(tc.table, 0, encap(3, 3, 3), tc.key(2)...)))
		must(t, s, upd(p4v1.Update_MODIFY, te(tc.table, 0, nil, tc.key(2)...)))
		must(t, s, upd(p4v1.Update_INSERT, te(tc.table, 0, encap(4, 4, 4), tc.key(3)...)))
		for i, wantVNI := range map[uint32]uint64{1: 2, 2: 3, 3: 4} {
			q := &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: te(tc.table, 0, nil, tc.key(i)...)}}
			got, err := readAll(t, s, q)
			if err != nil || len(got) != 1 {
				t.Fatalf("table %d entry %d: %v, %v", tc.table, i, got, err)
			}
			if v := got[0].GetTableEntry().GetAction().GetAction().GetParams()[0].GetValue(); !bytes.Equal(v, be(wantVNI)) {
				t.Fatalf("table %d entry %d runs vni %x, want %d", tc.table, i, v, wantVNI)
			}
		}
		st := s.Store()
		st.RLock()
		n := st.Table(tc.table).Len()
		st.RUnlock()
		if n != 3 {
			t.Fatalf("table %d holds %d entries, want 3", tc.table, n)
		}
	}
}

// TestBlocksMoveBetweenTables: blocks freed by one table's deletes and
// refilled by another's inserts (ternary, range and optional entries and
// exact ones, both ways) leave the same entries, read back and looked up,
// as a switch that was only given the final writes.
func TestBlocksMoveBetweenTables(t *testing.T) {
	acl := func(typ p4v1.Update_Type, i int) *p4v1.Update {
		return upd(typ, te(tACL, int32(10+i), act(aPermit), ternary(1, []byte{byte(i)}, []byte{0x1, 0xff}), rng(2, []byte{byte(i)}, []byte{byte(i), 0xff}),
			optional(3, 6), exact(4, byte(i+1))))
	}
	dest := func(typ p4v1.Update_Type, i int) *p4v1.Update {
		return upd(typ, te(tDest, 0, encap(uint32(i), uint32(i)<<8, byte(i)), exact(1, 1), exact(2, u32(uint32(i))...)))
	}
	step := func(s *Server, f func(p4v1.Update_Type, int) *p4v1.Update, typ p4v1.Update_Type, from, to int) {
		var us []*p4v1.Update
		for i := from; i < to; i++ {
			us = append(us, f(typ, i))
		}
		must(t, s, us...)
	}
	churned := newCommitted(t)
	step(churned, acl, p4v1.Update_INSERT, 0, 20)
	step(churned, acl, p4v1.Update_DELETE, 0, 20)
	step(churned, dest, p4v1.Update_INSERT, 0, 30)
	step(churned, dest, p4v1.Update_DELETE, 0, 25)
	step(churned, acl, p4v1.Update_INSERT, 5, 25)
	fresh := newCommitted(t)
	step(fresh, dest, p4v1.Update_INSERT, 25, 30)
	step(fresh, acl, p4v1.Update_INSERT, 5, 25)
	q := &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{}}}
	a, err := readAll(t, churned, q)
	if err != nil {
		t.Fatal(err)
	}
	b, err := readAll(t, fresh, q)
	if err != nil {
		t.Fatal(err)
	}
	// Insertion order differs by table only, so compare per table.
	byTable := func(es []*p4v1.Entity) map[uint32]string {
		m := map[uint32]string{}
		for _, e := range es {
			m[e.GetTableEntry().GetTableId()] += fmt.Sprint(e) + "\n"
		}
		return m
	}
	if ga, gb := byTable(a), byTable(b); fmt.Sprint(ga) != fmt.Sprint(gb) {
		t.Fatalf("read back after churn:\n%v\nwithout churn:\n%v", ga, gb)
	}
	for _, s := range []*Server{churned, fresh} {
		st := s.Store()
		st.RLock()
		for i := 5; i < 25; i++ {
			// port i (2 bytes), l4 port i<<8|0x80, proto 6, vni i+1.
			key := []byte{0, byte(i), byte(i), 0x80, 6, 0, 0, byte(i + 1)}
			if e := st.Table(tACL).Lookup(key); e == nil || e.ActionID != aPermit || e.priority != int32(10+i) {
				t.Errorf("acl key %x: %+v", key, e)
			}
		}
		for i := 25; i < 30; i++ {
			e := st.Table(tDest).Lookup(append([]byte{0, 0, 1}, u32(uint32(i))...))
			if e == nil || e == st.Table(tDest).Default || e.Args[0] != uint64(i) || e.Args[1] != uint64(i)<<8 {
				t.Errorf("dest %d: %+v", i, e)
			}
		}
		st.RUnlock()
	}
}
