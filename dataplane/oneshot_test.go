package dataplane

import (
	"context"
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/p4rt"
)

// wa is one action of a one-shot action set: an action and its weight.
type wa struct {
	a *p4v1.TableAction
	w int32
}

// actionSet is a one-shot TableAction of the given actions.
func actionSet(as ...wa) *p4v1.TableAction {
	set := &p4v1.ActionProfileActionSet{}
	for _, x := range as {
		set.ActionProfileActions = append(set.ActionProfileActions, &p4v1.ActionProfileAction{Action: x.a.GetAction(), Weight: x.w})
	}
	return &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileActionSet{ActionProfileActionSet: set}}
}

// hostOf is an encap action to host ip (the unit P4Info's only selector
// action), weighted w.
func hostOf(ip uint32, w int32) wa { return wa{encap(1, ip, 1), w} }

// slotHosts lists the host_ip of each slot of g, in Select order.
func slotHosts(g *Group) []uint64 {
	var out []uint64
	for h := range len(g.slots) {
		out = append(out, g.Select(uint64(h)).Args[1])
	}
	return out
}

// poolGroup is the hidden group of the pool entry with key pool.
func poolGroup(t *testing.T, s *Server, pool byte) *Group {
	t.Helper()
	tb := s.Store().Table(tPool)
	for e := tb.head; e != nil; e = e.next {
		if e.proto.GetMatch()[0].GetExact().GetValue()[0] == pool {
			if e.group == nil || e.group.owner == nil {
				t.Fatalf("pool %d: entry has no hidden group", pool)
			}
			if e.GroupID != 0 || e.MemberID != 0 {
				t.Errorf("pool %d: one-shot entry has ids %d/%d", pool, e.MemberID, e.GroupID)
			}
			return e.group
		}
	}
	t.Fatalf("no pool %d entry", pool)
	return nil
}

// usedHandles lists the BMv2 member handles in use in the unit selector.
func usedHandles(s *Server) []int {
	var out []int
	for h, used := range s.Store().profiles[pSelector].handles {
		if used {
			out = append(out, h)
		}
	}
	return out
}

func readOne(t *testing.T, s *Server, q *p4v1.TableEntry) *p4v1.TableEntry {
	t.Helper()
	got, err := readAll(t, s, &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: q}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("read %d entities, want 1: %v", len(got), got)
	}
	return got[0].GetTableEntry()
}

// TestOneShotLifecycle inserts, reads, modifies and deletes one-shot
// entries, checking the read-back, the slots BMv2 would select from and
// the member handles held, as PI lays them out on BMv2: weight handles per
// action, in request order, lowest free first.
func TestOneShotLifecycle(t *testing.T) {
	s := newCommitted(t)
	ins := func(m any) *p4v1.Update { return upd(p4v1.Update_INSERT, m) }
	mod := func(m any) *p4v1.Update { return upd(p4v1.Update_MODIFY, m) }
	del := func(m any) *p4v1.Update { return upd(p4v1.Update_DELETE, m) }

	// Insert with padded values: read back canonical.
	want := poolEntry(1, actionSet(hostOf(0x0a000001, 2), hostOf(0x0a000002, 1)))
	padded := proto.Clone(want).(*p4v1.TableEntry)
	for _, apa := range padded.GetAction().GetActionProfileActionSet().GetActionProfileActions() {
		for _, p := range apa.GetAction().GetParams() {
			p.Value = append([]byte{0}, p.Value...)
		}
	}
	must(t, s, ins(padded))
	if got := readOne(t, s, &p4v1.TableEntry{TableId: tPool, Match: want.Match}); !proto.Equal(got, want) {
		t.Errorf("read back %v,\nwant %v", got, want)
	}
	if got := readOne(t, s, &p4v1.TableEntry{TableId: tPool}); !proto.Equal(got, want) {
		t.Errorf("wildcard read %v,\nwant %v", got, want)
	}
	// Weight 2 then 1: handles 0, 1 for the first action, 2 for the
	// second; BMv2 indexes them in handle order.
	if got, w := slotHosts(poolGroup(t, s, 1)), []uint64{0x0a000001, 0x0a000001, 0x0a000002}; !slices.Equal(got, w) {
		t.Errorf("slots = %x; want %x", got, w)
	}
	for h, w := range map[uint64]uint64{0: 0x0a000001, 1: 0x0a000001, 2: 0x0a000002, 3: 0x0a000001, 5: 0x0a000002} {
		if got := poolGroup(t, s, 1).Select(h).Args[1]; got != w {
			t.Errorf("Select(%d) = host %x; want %x", h, got, w)
		}
	}
	if got := usedHandles(s); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("handles in use %v; want [0 1 2]", got)
	}
	// Hidden members and groups are not the client's: wildcard reads of
	// the profile and of every profile see none.
	for _, q := range []*p4v1.Entity{
		{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: &p4v1.ActionProfileMember{}}},
		{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: &p4v1.ActionProfileMember{ActionProfileId: pSelector}}},
		{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: &p4v1.ActionProfileGroup{}}},
		{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: &p4v1.ActionProfileGroup{ActionProfileId: pSelector}}},
	} {
		if got, err := readAll(t, s, q); err != nil || len(got) != 0 {
			t.Errorf("read %v: %v, %v; want nothing", q, got, err)
		}
	}

	// MODIFY to three actions: the new set gets handles before the old one
	// frees its own, as PI builds the new group before deleting the old.
	want = poolEntry(1, actionSet(hostOf(3, 1), hostOf(4, 1), hostOf(5, 1)))
	must(t, s, mod(want))
	if got := readOne(t, s, &p4v1.TableEntry{TableId: tPool, Match: want.Match}); !proto.Equal(got, want) {
		t.Errorf("after modify read %v,\nwant %v", got, want)
	}
	if got, w := slotHosts(poolGroup(t, s, 1)), []uint64{3, 4, 5}; !slices.Equal(got, w) {
		t.Errorf("slots after modify = %v; want %v", got, w)
	}
	if got := usedHandles(s); !slices.Equal(got, []int{3, 4, 5}) {
		t.Errorf("handles in use after modify %v; want [3 4 5]", got)
	}

	// A second entry reuses the freed handles, lowest first.
	must(t, s, ins(poolEntry(2, actionSet(hostOf(6, 1), hostOf(7, 2)))))
	if got := usedHandles(s); !slices.Equal(got, []int{0, 1, 2, 3, 4, 5}) {
		t.Errorf("handles in use %v; want [0 .. 5]", got)
	}
	if got, w := slotHosts(poolGroup(t, s, 2)), []uint64{6, 7, 7}; !slices.Equal(got, w) {
		t.Errorf("slots of pool 2 = %v; want %v", got, w)
	}

	// MODIFY without an action keeps the set, and its handles.
	must(t, s, mod(poolEntry(2, nil)))
	if got := readOne(t, s, &p4v1.TableEntry{TableId: tPool, Match: []*p4v1.FieldMatch{exact(1, 2)}}); got.GetAction().GetActionProfileActionSet() == nil {
		t.Errorf("after a modify without action: %v; want the action set kept", got)
	}
	if got, w := slotHosts(poolGroup(t, s, 2)), []uint64{6, 7, 7}; !slices.Equal(got, w) {
		t.Errorf("slots of pool 2 after a modify without action = %v; want %v", got, w)
	}
	if got := usedHandles(s); len(got) != 6 {
		t.Errorf("handles in use %v; want 6", got)
	}

	// DELETE frees the hidden members: once the profile is empty, an
	// explicit member may be written and gets the lowest handle.
	must(t, s, del(poolEntry(1, nil)), del(poolEntry(2, nil)))
	if got := usedHandles(s); len(got) != 0 {
		t.Errorf("handles in use after delete %v; want none", got)
	}
	if n := len(s.Store().profiles[pSelector].oneshot); n != 0 {
		t.Errorf("%d hidden groups left", n)
	}
	must(t, s, ins(member(9, 9)))
	if h := s.Store().Member(pSelector, 9).handles; !slices.Equal(h, []uint32{0}) {
		t.Errorf("explicit member after the one-shot entries went: handles %v; want [0]", h)
	}
}

// TestOneShotMixing checks that a selector is programmed either with
// one-shot entries or with members and groups, never both, and that the
// mode resets when the profile empties.
func TestOneShotMixing(t *testing.T) {
	ins := func(m any) *p4v1.Update { return upd(p4v1.Update_INSERT, m) }
	mod := func(m any) *p4v1.Update { return upd(p4v1.Update_MODIFY, m) }
	del := func(m any) *p4v1.Update { return upd(p4v1.Update_DELETE, m) }
	oneShot := poolEntry(1, actionSet(hostOf(1, 1)))
	tests := []struct {
		name  string
		setup []*p4v1.Update
		u     *p4v1.Update
		want  codes.Code
	}{
		{"one-shot after a member", []*p4v1.Update{ins(member(1, 1))}, ins(oneShot), codes.InvalidArgument},
		{"one-shot after a member and group", []*p4v1.Update{ins(member(1, 1)), ins(group(1, 0, 1))}, ins(poolEntry(2, actionSet(hostOf(1, 1)))), codes.InvalidArgument},
		{"one-shot modify of a group entry", []*p4v1.Update{ins(member(1, 1)), ins(group(1, 0, 1)), ins(poolEntry(1, toGroup(1)))}, mod(oneShot), codes.InvalidArgument},
		{"member after a one-shot", []*p4v1.Update{ins(oneShot)}, ins(member(1, 1)), codes.InvalidArgument},
		{"member modify after a one-shot", []*p4v1.Update{ins(oneShot)}, mod(member(1, 1)), codes.InvalidArgument},
		{"member delete after a one-shot", []*p4v1.Update{ins(oneShot)}, del(member(1, 1)), codes.InvalidArgument},
		{"group after a one-shot", []*p4v1.Update{ins(oneShot)}, ins(group(1, 0)), codes.InvalidArgument},
		{"entry to a member after a one-shot", []*p4v1.Update{ins(oneShot)}, ins(poolEntry(2, toMember(1))), codes.InvalidArgument},
		{"entry to a group after a one-shot", []*p4v1.Update{ins(oneShot)}, ins(poolEntry(2, toGroup(1))), codes.InvalidArgument},
		{"one-shot after another", []*p4v1.Update{ins(oneShot)}, ins(poolEntry(2, actionSet(hostOf(2, 1)))), codes.OK},
		{"member once the one-shots are gone", []*p4v1.Update{ins(oneShot), del(oneShot)}, ins(member(1, 1)), codes.OK},
		{"one-shot once the members are gone", []*p4v1.Update{ins(member(1, 1)), del(member(1, 1))}, ins(oneShot), codes.OK},
		{"one-shot once members and groups are gone", []*p4v1.Update{ins(member(1, 1)), ins(group(1, 0, 1)), del(group(1, 0)), del(member(1, 1))}, ins(oneShot), codes.OK},
		{"one-shot while a group is left", []*p4v1.Update{ins(member(1, 1)), ins(group(1, 0, 1)), del(group(1, 0)), ins(group(2, 0))}, ins(oneShot), codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newCommitted(t)
			must(t, s, tc.setup...)
			if got := write(t, s, tc.u)[0]; got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}

	// The error names the rule and the profile.
	s := newCommitted(t)
	must(t, s, ins(member(1, 1)))
	_, err := s.Write(context.Background(), &p4v1.WriteRequest{DeviceId: 1, Updates: []*p4v1.Update{ins(oneShot)}})
	ds := status.Convert(err).Details()
	if len(ds) != 1 || !strings.Contains(ds[0].(*p4v1.Error).GetMessage(), "mixing one-shot and member/group programming on profile Ing.pool_selector") {
		t.Errorf("mixing error: %v", err)
	}
}

// TestOneShotBadSets checks the codes for action sets the spec or the
// P4Info refuse, and that a refused set leaves nothing behind.
func TestOneShotBadSets(t *testing.T) {
	withWatch := actionSet(hostOf(1, 1))
	withWatch.GetActionProfileActionSet().ActionProfileActions[0].WatchKind = &p4v1.ActionProfileAction_WatchPort{WatchPort: []byte{1}}
	noAction := actionSet(hostOf(1, 1))
	noAction.GetActionProfileActionSet().ActionProfileActions[0].Action = nil
	tests := []struct {
		name string
		te   *p4v1.TableEntry
		want codes.Code
	}{
		{"empty set", poolEntry(1, actionSet()), codes.InvalidArgument},
		{"weight 0", poolEntry(1, actionSet(hostOf(1, 1), hostOf(2, 0))), codes.InvalidArgument},
		{"negative weight", poolEntry(1, actionSet(hostOf(1, -1))), codes.InvalidArgument},
		{"weights above max_group_size", poolEntry(1, actionSet(hostOf(1, 3), hostOf(2, 2))), codes.ResourceExhausted},
		{"weights at max_group_size", poolEntry(1, actionSet(hostOf(1, 3), hostOf(2, 1))), codes.OK},
		{"same action twice", poolEntry(1, actionSet(hostOf(1, 1), hostOf(1, 1))), codes.OK},
		{"action not of the table", poolEntry(1, actionSet(hostOf(1, 1), wa{act(aPermit), 1})), codes.InvalidArgument},
		{"unknown action", poolEntry(1, actionSet(wa{act(4242), 1})), codes.InvalidArgument},
		{"missing parameter", poolEntry(1, actionSet(wa{act(aEncap, be(1), be(2)), 1})), codes.InvalidArgument},
		{"too wide parameter", poolEntry(1, actionSet(wa{act(aEncap, be(1<<24), be(2), be(3)), 1})), codes.OutOfRange},
		{"no action", poolEntry(1, noAction), codes.InvalidArgument},
		{"watch port", poolEntry(1, withWatch), codes.Unimplemented},
		{"direct table", te(tPortVnet, 0, actionSet(wa{act(aSetVnet, be(1), be(2)), 1}), exact(1, 1)), codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newCommitted(t)
			if got := write(t, s, upd(p4v1.Update_INSERT, tc.te))[0]; got != tc.want {
				t.Errorf("insert: got %v, want %v", got, tc.want)
			}
			if tc.want != codes.OK {
				if h := usedHandles(s); len(h) != 0 || len(s.Store().profiles[pSelector].oneshot) != 0 {
					t.Errorf("a refused set left handles %v", h)
				}
				// A refused MODIFY leaves the entry as it was.
				good := poolEntry(1, actionSet(hostOf(7, 1)))
				must(t, s, upd(p4v1.Update_INSERT, good))
				if tc.te.GetTableId() == tPool {
					if got := write(t, s, upd(p4v1.Update_MODIFY, tc.te))[0]; got != tc.want {
						t.Errorf("modify: got %v, want %v", got, tc.want)
					}
				}
				if got := readOne(t, s, &p4v1.TableEntry{TableId: tPool}); !proto.Equal(got, good) {
					t.Errorf("after a refused modify: %v; want %v", got, good)
				}
				if got := usedHandles(s); !slices.Equal(got, []int{0}) {
					t.Errorf("after a refused modify handles %v; want [0]", got)
				}
			}
		})
	}
}

// TestOneShotPipeline sends packets through vpc_peering's gateway path,
// where gateway_pool holds a one-shot set of encap_to_host actions: each
// flow goes to the action at slot crc16(5-tuple) % n, as on BMv2.
func TestOneShotPipeline(t *testing.T) {
	U, IP, MAC := func(v uint64) p4rt.Uint { return p4rt.Uint(v) }, p4rt.Addr, p4rt.HW
	gateways := []string{"192.168.1.1", "192.168.1.2"}
	tests := []struct {
		name    string
		weights []int32
		slots   []int // index in gateways of each slot
	}{
		{"weights 1 1", []int32{1, 1}, []int{0, 1}},
		{"weights 2 1", []int32{2, 1}, []int{0, 0, 1}},
		{"weights 1 3", []int32{1, 3}, []int{0, 1, 1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ps := newPipelineSwitch(t)
			ps.program()
			ps.entry("vnet_route", p4rt.Call("to_gateway_pool", p4rt.P("pool_id", U(7))),
				p4rt.Exact("vni", U(0x100)), p4rt.Prefix("dst_ip", netip.MustParsePrefix("10.3.0.0/16")))
			e, err := ps.s.TableEntry(p4rt.Entry{Table: "gateway_pool", Match: []p4rt.Match{p4rt.Exact("pool_id", U(7))}, Group: 1})
			if err != nil {
				t.Fatal(err)
			}
			set := &p4v1.ActionProfileActionSet{}
			for i, gw := range gateways {
				m, err := ps.s.ActionProfileMember("gateway_selector", 1, p4rt.Call("encap_to_host",
					p4rt.P("dst_vni", U(0x300)), p4rt.P("host_ip", IP(gw)), p4rt.P("dmac", MAC("02:cc:00:00:00:01"))))
				if err != nil {
					t.Fatal(err)
				}
				set.ActionProfileActions = append(set.ActionProfileActions, &p4v1.ActionProfileAction{Action: m.GetAction(), Weight: tc.weights[i]})
			}
			e.Action = &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileActionSet{ActionProfileActionSet: set}}
			ps.write(p4v1.Update_INSERT, e, nil)

			out := make([]byte, 2048)
			seen := map[int]bool{}
			for sport := uint16(4000); sport < 4032; sport++ {
				pkt := vmFrame()
				copy(pkt[30:34], []byte{10, 3, 0, 9})
				binary.BigEndian.PutUint16(pkt[34:], sport)
				var sel [13]byte
				copy(sel[0:8], pkt[26:34])
				sel[8] = pkt[23]
				copy(sel[9:13], pkt[34:38])
				want := tc.slots[int(crc16(sel[:]))%len(tc.slots)]
				seen[want] = true
				egress, n, ok := ps.pipe.Process(1, pkt, out)
				if !ok || egress != 3 || n != len(pkt)+50 {
					t.Fatalf("sport %d: Process = port %d, %d bytes, ok %v; want port 3, %d bytes", sport, egress, n, ok, len(pkt)+50)
				}
				if got, w := netip.AddrFrom4([4]byte(out[30:34])), netip.MustParseAddr(gateways[want]); got != w {
					t.Errorf("sport %d: outer dst %v; want %v (slot %d of %d)", sport, got, w, int(crc16(sel[:]))%len(tc.slots), len(tc.slots))
				}
				if vni := get24(out[46:49]); vni != 0x300 {
					t.Errorf("sport %d: VNI %#x; want 0x300", sport, vni)
				}
			}
			if len(seen) != len(gateways) {
				t.Errorf("the flows reached gateways %v only; pick other ports", seen)
			}
			pkt := vmFrame()
			copy(pkt[30:34], []byte{10, 3, 0, 9})
			if allocs := testing.AllocsPerRun(100, func() { ps.pipe.Process(1, pkt, out) }); allocs != 0 {
				t.Errorf("%v allocations per packet on the one-shot path; want 0", allocs)
			}
		})
	}
}
