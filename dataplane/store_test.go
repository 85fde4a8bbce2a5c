package dataplane

import (
	"math/rand/v2"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
)

func ip4(a, b, c, d byte) []byte { return []byte{a, b, c, d} }

func key(parts ...[]byte) []byte {
	var k []byte
	for _, p := range parts {
		k = append(k, p...)
	}
	return k
}

func TestLookupExact(t *testing.T) {
	s := newCommitted(t)
	must(t, s,
		upd(p4v1.Update_INSERT, te(tPortVnet, 0, act(aSetVnet, be(100), be(0xa)), exact(1, 1))),
		upd(p4v1.Update_INSERT, te(tPortVnet, 0, act(aSetVnet, be(200), be(0xb)), exact(1, 0x01, 0xff))),
		upd(p4v1.Update_INSERT, te(tDest, 0, encap(7, 0x0a000001, 1), exact(1, 5), exact(2, 10, 0, 0, 1))),
	)
	st := s.Store()
	pv, dest := st.Table(tPortVnet), st.Table(tDest)
	tests := []struct {
		name   string
		tbl    *Table
		key    []byte
		action uint32
		args   []uint64
	}{
		{"port 1", pv, []byte{0, 1}, aSetVnet, []uint64{100, 0xa}},
		{"port 511", pv, []byte{1, 0xff}, aSetVnet, []uint64{200, 0xb}},
		{"port miss runs the initial default", pv, []byte{0, 2}, aDrop, []uint64{}},
		{"two exact fields", dest, key([]byte{0, 0, 5}, ip4(10, 0, 0, 1)), aEncap, []uint64{7, 0x0a000001, 1}},
		{"two exact fields, miss runs the const default", dest, key([]byte{0, 0, 6}, ip4(10, 0, 0, 1)), aDrop, []uint64{}},
		{"wrong key length misses", pv, []byte{1}, aDrop, []uint64{}},
	}
	st.RLock()
	defer st.RUnlock()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.tbl.Lookup(tc.key)
			if e == nil || e.ActionID != tc.action || !equalU64(e.Args, tc.args) {
				t.Fatalf("Lookup(%x) = %+v, want action %d args %v", tc.key, e, tc.action, tc.args)
			}
		})
	}
	if got := pv.Lookup([]byte{0, 1}).Params[1]; len(got) != 6 || got[5] != 0xa {
		t.Errorf("Params are padded to the parameter width: %x", got)
	}
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLookupLPM(t *testing.T) {
	s := newCommitted(t)
	vni1 := []byte{1}
	must(t, s,
		upd(p4v1.Update_INSERT, te(tRoute, 0, encap(1, 1, 1), exact(1, vni1...), lpm(2, 8, 10, 0, 0, 0))),
		upd(p4v1.Update_INSERT, te(tRoute, 0, encap(1, 2, 2), exact(1, vni1...), lpm(2, 16, 10, 1, 0, 0))),
		upd(p4v1.Update_INSERT, te(tRoute, 0, encap(1, 3, 3), exact(1, vni1...), lpm(2, 24, 10, 1, 2, 0))),
		upd(p4v1.Update_INSERT, te(tRoute, 0, encap(1, 5, 5), exact(1, vni1...), lpm(2, 32, 10, 1, 2, 3))),
		upd(p4v1.Update_INSERT, te(tRoute, 0, encap(2, 4, 4), exact(1, 2), lpm(2, 8, 10, 0, 0, 0))),
		upd(p4v1.Update_INSERT, te(tRoute, 0, act(aDrop), exact(1, vni1...))), // prefix 0
	)
	st := s.Store()
	rt := st.Table(tRoute)
	k := func(vni byte, ip []byte) []byte { return key([]byte{0, 0, vni}, ip) }
	tests := []struct {
		name string
		key  []byte
		want uint64 // host_ip argument, 0 for drop, 99 for the default
	}{
		{"host route wins", k(1, ip4(10, 1, 2, 3)), 5},
		{"/24 wins over /16 and /8", k(1, ip4(10, 1, 2, 4)), 3},
		{"/16", k(1, ip4(10, 1, 3, 3)), 2},
		{"/8", k(1, ip4(10, 2, 0, 1)), 1},
		{"/0 catches the rest of the vni", k(1, ip4(11, 0, 0, 1)), 0},
		{"other vni has its own routes", k(2, ip4(10, 1, 2, 3)), 4},
		{"unknown vni misses", k(3, ip4(10, 1, 2, 3)), 99},
	}
	check := func() {
		st.RLock()
		defer st.RUnlock()
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				e := rt.Lookup(tc.key)
				got := uint64(99)
				switch {
				case e == nil:
					t.Fatalf("Lookup(%x) = nil", tc.key)
				case e.ActionID == aEncap:
					got = e.Args[1]
				case e.ActionID == aDrop:
					got = 0
				case e.ActionID != aMiss:
					t.Fatalf("Lookup(%x): action %d", tc.key, e.ActionID)
				}
				if got != tc.want {
					t.Errorf("Lookup(%x) = %d, want %d", tc.key, got, tc.want)
				}
			})
		}
	}
	check()
	// Deleting the /24 and the host route lets the /16 win again.
	must(t, s,
		upd(p4v1.Update_DELETE, te(tRoute, 0, nil, exact(1, vni1...), lpm(2, 24, 10, 1, 2, 0))),
		upd(p4v1.Update_DELETE, te(tRoute, 0, nil, exact(1, vni1...), lpm(2, 32, 10, 1, 2, 3))),
	)
	tests[0].want, tests[1].want = 2, 2
	check()
	if got := len(rt.lens); got != 3 {
		t.Errorf("prefix lengths present = %v, want 16, 8, 0", rt.lens)
	}
}

func TestLookupTernaryPriority(t *testing.T) {
	s := newCommitted(t)
	vni := exact(4, 5)
	must(t, s,
		upd(p4v1.Update_INSERT, te(tACL, 10, act(aPermit), ternary(1, []byte{1}, []byte{1, 0xff}), vni)),
		upd(p4v1.Update_INSERT, te(tACL, 20, act(aDrop), rng(2, []byte{80}, []byte{90}), vni)),
		upd(p4v1.Update_INSERT, te(tACL, 5, act(aPermit), optional(3, 6), vni)),
		upd(p4v1.Update_INSERT, te(tACL, 1, act(aDrop), vni)), // everything else of vni 5
	)
	st := s.Store()
	acl := st.Table(tACL)
	// port (2 bytes), l4_port (2), proto (1), vni (3), in field-id order.
	k := func(port, l4 uint16, proto byte, v byte) []byte {
		return []byte{byte(port >> 8), byte(port), byte(l4 >> 8), byte(l4), proto, 0, 0, v}
	}
	tests := []struct {
		name string
		key  []byte
		prio int32 // 0: miss
	}{
		{"range beats ternary by priority", k(1, 85, 6, 5), 20},
		{"ternary", k(1, 100, 6, 5), 10},
		{"optional", k(2, 100, 6, 5), 5},
		{"catch-all", k(2, 100, 17, 5), 1},
		{"range bounds are inclusive", k(2, 90, 17, 5), 20},
		{"other vni misses", k(1, 85, 6, 6), 0},
	}
	st.RLock()
	defer st.RUnlock()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := acl.Lookup(tc.key)
			switch {
			case tc.prio == 0 && e != nil:
				t.Fatalf("Lookup(%x) = priority %d, want the (absent) default", tc.key, e.priority)
			case tc.prio != 0 && (e == nil || e.priority != tc.prio):
				t.Fatalf("Lookup(%x) = %+v, want priority %d", tc.key, e, tc.prio)
			}
		})
	}
}

func TestGroupSelect(t *testing.T) {
	s := newCommitted(t)
	mem := func(id uint32, host uint32) *p4v1.ActionProfileMember {
		return &p4v1.ActionProfileMember{ActionProfileId: pSelector, MemberId: id, Action: encap(1, host, 1).GetAction()}
	}
	must(t, s,
		upd(p4v1.Update_INSERT, mem(2, 2)),
		upd(p4v1.Update_INSERT, mem(1, 1)),
		upd(p4v1.Update_INSERT, &p4v1.ActionProfileGroup{ActionProfileId: pSelector, GroupId: 9, Members: []*p4v1.ActionProfileGroup_Member{
			{MemberId: 2, Weight: 1}, {MemberId: 1, Weight: 2},
		}}),
		upd(p4v1.Update_INSERT, te(tPool, 0, &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileGroupId{ActionProfileGroupId: 9}}, exact(1, 3))),
	)
	st := s.Store()
	st.RLock()
	defer st.RUnlock()
	e := st.Table(tPool).Lookup([]byte{0, 3})
	if e == nil || e.GroupID != 9 {
		t.Fatalf("pool lookup = %+v", e)
	}
	g := st.Group(pSelector, e.GroupID)
	var got []uint32
	for h := range uint64(3) {
		got = append(got, g.Select(h).ID)
	}
	// Member 2 was inserted first (handle 0), member 1 second (handle 1),
	// and member 1's weight copy took handle 2: BMv2 indexes by handle.
	if want := []uint32{2, 1, 1}; !equalU32(got, want) {
		t.Errorf("Select(0..2) = %v, want %v (members by BMv2 handle)", got, want)
	}
	if st.Table(tPool).Default != nil {
		t.Error("a selector table has no default entry")
	}
	if m := st.Member(pSelector, 2); m == nil || m.Args[1] != 2 {
		t.Errorf("Member(2) = %+v", m)
	}
}

func equalU32(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestModifyKeepsCounterAndPosition(t *testing.T) {
	s := newCommitted(t)
	m := []*p4v1.FieldMatch{exact(1, 1), lpm(2, 8, 10, 0, 0, 0)}
	must(t, s, upd(p4v1.Update_INSERT, te(tRoute, 0, encap(1, 1, 1), m...)))
	st := s.Store()
	k := key([]byte{0, 0, 1}, ip4(10, 0, 0, 1))
	st.RLock()
	st.Table(tRoute).Lookup(k).Count(100)
	st.RUnlock()
	must(t, s, upd(p4v1.Update_MODIFY, te(tRoute, 0, encap(1, 2, 1), m...)))
	st.RLock()
	defer st.RUnlock()
	e := st.Table(tRoute).Lookup(k)
	if e.Args[1] != 2 || e.Packets.Load() != 1 || e.Bytes.Load() != 100 {
		t.Errorf("after MODIFY: args %v, counter %d/%d; want the new action and the old counter", e.Args, e.Packets.Load(), e.Bytes.Load())
	}
}

// TestLookupLPMMatchesBruteForce checks the LPM lookup (and its index of
// prefix lengths per /16 and /8) against a scan of every entry, over nested
// random routes of every length in two VNIs, after inserts, deletes and
// modifies.
func TestLookupLPMMatchesBruteForce(t *testing.T) {
	s := newCommitted(t)
	rt := s.Store().Table(tRoute)
	r := rand.New(rand.NewPCG(1, 2))
	type route struct {
		vni  byte
		plen int
		ip   uint32
	}
	// Few /8s and /16s, so that routes nest and share index buckets.
	addr := func() uint32 {
		return uint32(10+r.IntN(3))<<24 | uint32(r.IntN(4))<<16 | uint32(r.IntN(8))<<8 | uint32(r.IntN(256))
	}
	routes := map[route]uint32{} // -> the host_ip argument, its identity
	id := uint32(1)
	var order []route
	upsert := func(typ p4v1.Update_Type, rt route, v uint32) {
		t.Helper()
		must(t, s, upd(typ, te(tRoute, 0, encap(1, v, 1), exact(1, rt.vni), lpm(2, int32(rt.plen), u32(rt.ip)...))))
	}
	for len(routes) < 3000 {
		plen := 1 + r.IntN(32)
		x := route{vni: byte(1 + r.IntN(2)), plen: plen, ip: addr() &^ (1<<(32-plen) - 1)}
		if plen == 32 {
			x.ip = addr()
		}
		if _, dup := routes[x]; dup {
			continue
		}
		routes[x] = id
		order = append(order, x)
		upsert(p4v1.Update_INSERT, x, id)
		id++
	}
	check := func(when string) {
		t.Helper()
		s.Store().RLock()
		defer s.Store().RUnlock()
		for range 5000 {
			vni, dst := byte(1+r.IntN(2)), addr()
			want, best := uint32(0), -1
			for x, v := range routes {
				if x.vni == vni && x.plen > best && (x.plen == 0 || dst>>(32-x.plen) == x.ip>>(32-x.plen)) {
					want, best = v, x.plen
				}
			}
			got := uint32(0)
			if e := rt.Lookup(append([]byte{0, 0, vni}, u32(dst)...)); e != nil && e != rt.Default {
				got = uint32(e.Args[1])
			}
			if got != want {
				t.Fatalf("%s: vni %d dst %#x: route %d, want %d (/%d)", when, vni, dst, got, want, best)
			}
		}
	}
	check("after inserts")
	for _, x := range order[:1500] {
		must(t, s, upd(p4v1.Update_DELETE, te(tRoute, 0, nil, exact(1, x.vni), lpm(2, int32(x.plen), u32(x.ip)...))))
		delete(routes, x)
	}
	check("after deletes")
	for _, x := range order[1500:2000] {
		routes[x] = id
		upsert(p4v1.Update_MODIFY, x, id)
		id++
	}
	check("after modifies")
	for _, x := range order[:700] {
		routes[x] = id
		upsert(p4v1.Update_INSERT, x, id)
		id++
	}
	check("after re-inserts")
}
