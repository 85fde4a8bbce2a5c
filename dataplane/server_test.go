package dataplane

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func member(id uint32, host uint32) *p4v1.ActionProfileMember {
	return &p4v1.ActionProfileMember{ActionProfileId: pSelector, MemberId: id, Action: encap(1, host, 1).GetAction()}
}

func group(id uint32, maxSize int32, ms ...uint32) *p4v1.ActionProfileGroup {
	g := &p4v1.ActionProfileGroup{ActionProfileId: pSelector, GroupId: id, MaxSize: maxSize}
	for _, m := range ms {
		g.Members = append(g.Members, &p4v1.ActionProfileGroup_Member{MemberId: m, Weight: 1})
	}
	return g
}

func poolEntry(pool byte, ta *p4v1.TableAction) *p4v1.TableEntry {
	return te(tPool, 0, ta, exact(1, pool))
}

func toMember(id uint32) *p4v1.TableAction {
	return &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileMemberId{ActionProfileMemberId: id}}
}

func toGroup(id uint32) *p4v1.TableAction {
	return &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileGroupId{ActionProfileGroupId: id}}
}

func TestWriteCodes(t *testing.T) {
	pv := func(port byte) *p4v1.TableEntry { return te(tPortVnet, 0, act(aSetVnet, be(1), be(2)), exact(1, port)) }
	ins := func(m any) *p4v1.Update { return upd(p4v1.Update_INSERT, m) }
	mod := func(m any) *p4v1.Update { return upd(p4v1.Update_MODIFY, m) }
	del := func(m any) *p4v1.Update { return upd(p4v1.Update_DELETE, m) }
	dflt := func(a *p4v1.TableAction) *p4v1.TableEntry {
		return &p4v1.TableEntry{TableId: tPortVnet, IsDefaultAction: true, Action: a}
	}
	vni := exact(4, 5)
	tests := []struct {
		name  string
		setup []*p4v1.Update
		u     *p4v1.Update
		want  codes.Code
	}{
		{"insert", nil, ins(pv(1)), codes.OK},
		{"padded values are accepted", nil, ins(te(tPortVnet, 0, act(aSetVnet, []byte{0, 0, 1}, []byte{0, 0, 0, 0, 0, 0, 0, 2}), exact(1, 0, 0, 1))), codes.OK},
		{"duplicate insert", []*p4v1.Update{ins(pv(1))}, ins(pv(1)), codes.AlreadyExists},
		{"duplicate insert, padded", []*p4v1.Update{ins(pv(1))}, ins(te(tPortVnet, 0, act(aSetVnet, be(1), be(2)), exact(1, 0, 1))), codes.AlreadyExists},
		{"modify missing", nil, mod(pv(1)), codes.NotFound},
		{"delete missing", nil, del(pv(1)), codes.NotFound},
		{"delete ignores the action", []*p4v1.Update{ins(pv(1))}, del(te(tPortVnet, 0, act(12345), exact(1, 1))), codes.OK},
		{"modify", []*p4v1.Update{ins(pv(1))}, mod(pv(1)), codes.OK},
		{"too wide match value", nil, ins(te(tPortVnet, 0, act(aSetVnet, be(1), be(2)), exact(1, 2, 0))), codes.OutOfRange},
		{"too wide param", nil, ins(te(tPortVnet, 0, act(aSetVnet, []byte{1, 0, 0, 0}, be(2)), exact(1, 1))), codes.OutOfRange},
		{"empty match value", nil, ins(te(tPortVnet, 0, act(aSetVnet, be(1), be(2)), exact(1))), codes.OutOfRange},
		{"missing exact field", nil, ins(te(tPortVnet, 0, act(aSetVnet, be(1), be(2)))), codes.InvalidArgument},
		{"unknown field", nil, ins(te(tPortVnet, 0, act(aSetVnet, be(1), be(2)), exact(1, 1), exact(9, 1))), codes.InvalidArgument},
		{"duplicate field", nil, ins(te(tPortVnet, 0, act(aSetVnet, be(1), be(2)), exact(1, 1), exact(1, 2))), codes.InvalidArgument},
		{"wrong match kind", nil, ins(te(tPortVnet, 0, act(aSetVnet, be(1), be(2)), lpm(1, 9, 1))), codes.InvalidArgument},
		{"unknown table", nil, ins(te(99, 0, act(aSetVnet, be(1), be(2)), exact(1, 1))), codes.InvalidArgument},
		{"action not in table", nil, ins(te(tPortVnet, 0, act(aPermit), exact(1, 1))), codes.InvalidArgument},
		{"unknown action", nil, ins(te(tPortVnet, 0, act(4242), exact(1, 1))), codes.InvalidArgument},
		{"missing param", nil, ins(te(tPortVnet, 0, act(aSetVnet, be(1)), exact(1, 1))), codes.InvalidArgument},
		{"insert without action", nil, ins(te(tPortVnet, 0, nil, exact(1, 1))), codes.InvalidArgument},
		{"priority on an exact table", nil, ins(te(tPortVnet, 3, act(aSetVnet, be(1), be(2)), exact(1, 1))), codes.InvalidArgument},
		{"no priority on a ternary table", nil, ins(te(tACL, 0, act(aPermit), vni)), codes.InvalidArgument},
		{"same match, other priority", []*p4v1.Update{ins(te(tACL, 1, act(aPermit), vni))}, ins(te(tACL, 2, act(aPermit), vni)), codes.OK},
		{"defaultonly action in an entry", nil, ins(te(tRoute, 0, act(aMiss), exact(1, 1), lpm(2, 8, 10, 0, 0, 0))), codes.PermissionDenied},
		{"LPM bits past prefix", nil, ins(te(tRoute, 0, act(aDrop), exact(1, 1), lpm(2, 8, 10, 1, 0, 0))), codes.InvalidArgument},
		{"LPM prefix 0", nil, ins(te(tRoute, 0, act(aDrop), exact(1, 1), lpm(2, 0, 0))), codes.InvalidArgument},
		{"LPM prefix too long", nil, ins(te(tRoute, 0, act(aDrop), exact(1, 1), lpm(2, 33, 10, 0, 0, 0))), codes.InvalidArgument},
		{"ternary zero mask", nil, ins(te(tACL, 1, act(aPermit), ternary(1, []byte{0}, []byte{0}), vni)), codes.InvalidArgument},
		{"ternary value outside mask", nil, ins(te(tACL, 1, act(aPermit), ternary(1, []byte{3}, []byte{1}), vni)), codes.InvalidArgument},
		{"range low above high", nil, ins(te(tACL, 1, act(aPermit), rng(2, []byte{9}, []byte{8}), vni)), codes.InvalidArgument},
		{"range of everything", nil, ins(te(tACL, 1, act(aPermit), rng(2, []byte{0}, []byte{0xff, 0xff}), vni)), codes.InvalidArgument},
		{"is_const", nil, ins(&p4v1.TableEntry{TableId: tPortVnet, Match: []*p4v1.FieldMatch{exact(1, 1)}, Action: act(aDrop), IsConst: true}), codes.InvalidArgument},
		{"counter data on a table without counter", nil, ins(&p4v1.TableEntry{TableId: tPortVnet, Match: []*p4v1.FieldMatch{exact(1, 1)}, Action: act(aDrop), CounterData: &p4v1.CounterData{}}), codes.InvalidArgument},
		{"default: insert", nil, ins(dflt(act(aDrop))), codes.InvalidArgument},
		{"default: delete", nil, del(dflt(nil)), codes.InvalidArgument},
		{"default: modify", nil, mod(dflt(act(aSetVnet, be(1), be(2)))), codes.OK},
		{"default: reset", nil, mod(dflt(nil)), codes.OK},
		{"default: with match", nil, mod(&p4v1.TableEntry{TableId: tPortVnet, IsDefaultAction: true, Action: act(aDrop), Match: []*p4v1.FieldMatch{exact(1, 1)}}), codes.InvalidArgument},
		{"default: const", nil, mod(&p4v1.TableEntry{TableId: tDest, IsDefaultAction: true, Action: act(aDrop)}), codes.PermissionDenied},
		{"default: indirect table", nil, mod(&p4v1.TableEntry{TableId: tPool, IsDefaultAction: true}), codes.PermissionDenied},
		{"member", nil, ins(member(1, 1)), codes.OK},
		{"member without action", nil, ins(&p4v1.ActionProfileMember{ActionProfileId: pSelector, MemberId: 1}), codes.InvalidArgument},
		{"member of unknown profile", nil, ins(&p4v1.ActionProfileMember{ActionProfileId: 7, MemberId: 1, Action: encap(1, 1, 1).GetAction()}), codes.InvalidArgument},
		{"member action not in profile's tables", nil, ins(&p4v1.ActionProfileMember{ActionProfileId: pSelector, MemberId: 1, Action: &p4v1.Action{ActionId: aPermit}}), codes.InvalidArgument},
		{"duplicate member", []*p4v1.Update{ins(member(1, 1))}, ins(member(1, 1)), codes.AlreadyExists},
		{"modify missing member", nil, mod(member(1, 1)), codes.NotFound},
		{"group of missing member", nil, ins(group(1, 0, 1)), codes.NotFound},
		{"group", []*p4v1.Update{ins(member(1, 1))}, ins(group(1, 0, 1)), codes.OK},
		{"group weight 0", []*p4v1.Update{ins(member(1, 1))}, ins(&p4v1.ActionProfileGroup{ActionProfileId: pSelector, GroupId: 1, Members: []*p4v1.ActionProfileGroup_Member{{MemberId: 1}}}), codes.InvalidArgument},
		{"group member twice", []*p4v1.Update{ins(member(1, 1))}, ins(group(1, 0, 1, 1)), codes.InvalidArgument},
		{"group max_size above max_group_size", []*p4v1.Update{ins(member(1, 1))}, ins(group(1, 5, 1)), codes.InvalidArgument},
		{"group larger than max_size", []*p4v1.Update{ins(member(1, 1)), ins(member(2, 1))}, ins(group(1, 1, 1, 2)), codes.ResourceExhausted},
		{"group max_size changed", []*p4v1.Update{ins(member(1, 1)), ins(group(1, 2, 1))}, mod(group(1, 3, 1)), codes.InvalidArgument},
		{"delete member in a group", []*p4v1.Update{ins(member(1, 1)), ins(group(1, 0, 1))}, del(member(1, 0)), codes.FailedPrecondition},
		{"delete member used by an entry", []*p4v1.Update{ins(member(1, 1)), ins(poolEntry(1, toMember(1)))}, del(member(1, 0)), codes.FailedPrecondition},
		{"delete group used by an entry", []*p4v1.Update{ins(member(1, 1)), ins(group(1, 0, 1)), ins(poolEntry(1, toGroup(1)))}, del(group(1, 0)), codes.FailedPrecondition},
		{"delete group then member", []*p4v1.Update{ins(member(1, 1)), ins(group(1, 0, 1)), del(group(1, 0))}, del(member(1, 0)), codes.OK},
		{"entry to missing member", nil, ins(poolEntry(1, toMember(3))), codes.NotFound},
		{"entry to missing group", nil, ins(poolEntry(1, toGroup(3))), codes.NotFound},
		{"action on an indirect table", nil, ins(poolEntry(1, encap(1, 1, 1))), codes.InvalidArgument},
		{"member on a direct table", nil, ins(te(tPortVnet, 0, toMember(1), exact(1, 1))), codes.InvalidArgument},
		{"one-shot, empty action set", nil, ins(poolEntry(1, &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileActionSet{ActionProfileActionSet: &p4v1.ActionProfileActionSet{}}})), codes.InvalidArgument},
		{"direct counter insert", nil, ins(&p4v1.DirectCounterEntry{TableEntry: te(tRoute, 0, nil, exact(1, 1))}), codes.InvalidArgument},
		{"direct counter of missing entry", nil, mod(&p4v1.DirectCounterEntry{TableEntry: te(tRoute, 0, nil, exact(1, 1)), Data: &p4v1.CounterData{}}), codes.NotFound},
		{"direct counter of a table without one", nil, mod(&p4v1.DirectCounterEntry{TableEntry: te(tPortVnet, 0, nil, exact(1, 1))}), codes.InvalidArgument},
		{"digest", nil, ins(&p4v1.DigestEntry{DigestId: dDigest, Config: &p4v1.DigestEntry_Config{MaxListSize: 1}}), codes.OK},
		{"digest twice", []*p4v1.Update{ins(&p4v1.DigestEntry{DigestId: dDigest, Config: &p4v1.DigestEntry_Config{}})}, ins(&p4v1.DigestEntry{DigestId: dDigest, Config: &p4v1.DigestEntry_Config{}}), codes.AlreadyExists},
		{"digest modify missing", nil, mod(&p4v1.DigestEntry{DigestId: dDigest, Config: &p4v1.DigestEntry_Config{}}), codes.NotFound},
		{"unknown digest", nil, ins(&p4v1.DigestEntry{DigestId: 5, Config: &p4v1.DigestEntry_Config{}}), codes.InvalidArgument},
		{"no entity", nil, &p4v1.Update{Type: p4v1.Update_INSERT, Entity: &p4v1.Entity{}}, codes.InvalidArgument},
		{"no update type", nil, &p4v1.Update{Entity: ins(pv(1)).Entity}, codes.InvalidArgument},
		{"unsupported entity", nil, ins(&p4v1.CounterEntry{CounterId: 1}), codes.Unimplemented},
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
}

func TestWriteTableFull(t *testing.T) {
	s := newCommitted(t)
	var us []*p4v1.Update
	for i := range 65 {
		us = append(us, upd(p4v1.Update_INSERT, te(tACL, int32(i+1), act(aPermit), exact(4, byte(i)))))
	}
	got := write(t, s, us...)
	for i, c := range got[:64] {
		if c != codes.OK {
			t.Fatalf("update %d: %v", i, c)
		}
	}
	if got[64] != codes.ResourceExhausted {
		t.Errorf("65th entry of a 64-entry table: %v, want RESOURCE_EXHAUSTED", got[64])
	}
}

func TestWriteBatchErrorsInOrder(t *testing.T) {
	s := newCommitted(t)
	pv := func(port byte) *p4v1.Update {
		return upd(p4v1.Update_INSERT, te(tPortVnet, 0, act(aSetVnet, be(1), be(2)), exact(1, port)))
	}
	_, err := s.Write(context.Background(), &p4v1.WriteRequest{DeviceId: 1, Updates: []*p4v1.Update{pv(1), pv(1), pv(2), pv(0x7f), pv(2)}})
	st := status.Convert(err)
	if st.Code() != codes.Unknown {
		t.Fatalf("code %v, want UNKNOWN", st.Code())
	}
	var got []codes.Code
	for _, d := range st.Details() {
		pe := d.(*p4v1.Error)
		got = append(got, codes.Code(pe.GetCanonicalCode()))
		if pe.GetCanonicalCode() == 0 && (pe.GetSpace() != "" || pe.GetMessage() != "") {
			t.Errorf("an OK detail carries only the code: %v", pe)
		}
	}
	want := []codes.Code{codes.OK, codes.AlreadyExists, codes.OK, codes.OK, codes.AlreadyExists}
	if !slices.Equal(got, want) {
		t.Errorf("details %v, want %v", got, want)
	}
	if s.Stats().UpdateErrors != 2 {
		t.Errorf("stats: %+v", s.Stats())
	}
}

// TestOnWrite: the write log sees every applied update in order, and
// neither the ones that failed nor a commit that clears the store.
func TestOnWrite(t *testing.T) {
	info := unitInfo(t)
	var log []string
	s, err := NewServer(Options{P4Info: info, OnWrite: func(u *p4v1.Update) {
		log = append(log, fmt.Sprintf("%v %x", u.GetType(), u.GetEntity().GetTableEntry().GetMatch()[0].GetExact().GetValue()))
	}})
	if err != nil {
		t.Fatal(err)
	}
	commit := func() {
		t.Helper()
		if err := s.Commit(&p4v1.ForwardingPipelineConfig{P4Info: info}); err != nil {
			t.Fatal(err)
		}
	}
	commit()
	pv := func(typ p4v1.Update_Type, port, vnet byte) *p4v1.Update {
		return upd(typ, te(tPortVnet, 0, act(aSetVnet, be(uint64(vnet)), be(2)), exact(1, port)))
	}
	write(t, s, pv(p4v1.Update_INSERT, 1, 1), pv(p4v1.Update_INSERT, 1, 1), pv(p4v1.Update_INSERT, 2, 1),
		pv(p4v1.Update_MODIFY, 2, 3), pv(p4v1.Update_DELETE, 1, 1), pv(p4v1.Update_DELETE, 1, 1))
	commit() // clears the store: OnCommit's business, not OnWrite's
	want := []string{"INSERT 01", "INSERT 02", "MODIFY 02", "DELETE 01"}
	if !slices.Equal(log, want) {
		t.Errorf("write log %q, want %q", log, want)
	}
}

func TestWriteRefusals(t *testing.T) {
	ctx := context.Background()
	s, err := NewServer(Options{})
	if err != nil {
		t.Fatal(err)
	}
	u := upd(p4v1.Update_INSERT, te(tPortVnet, 0, act(aDrop), exact(1, 1)))
	tests := []struct {
		name string
		req  *p4v1.WriteRequest
		want codes.Code
	}{
		{"unknown device", &p4v1.WriteRequest{DeviceId: 2}, codes.NotFound},
		{"unknown role", &p4v1.WriteRequest{DeviceId: 1, Role: "nobody"}, codes.NotFound},
		{"election id with no primary", &p4v1.WriteRequest{DeviceId: 1, ElectionId: &p4v1.Uint128{Low: 1}}, codes.PermissionDenied},
		{"no pipeline", &p4v1.WriteRequest{DeviceId: 1, Updates: []*p4v1.Update{u}}, codes.FailedPrecondition},
	}
	for _, tc := range tests {
		if _, err := s.Write(ctx, tc.req); status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	s = newCommitted(t)
	for _, a := range []p4v1.WriteRequest_Atomicity{p4v1.WriteRequest_ROLLBACK_ON_ERROR, p4v1.WriteRequest_DATAPLANE_ATOMIC} {
		if _, err := s.Write(ctx, &p4v1.WriteRequest{DeviceId: 1, Atomicity: a, Updates: []*p4v1.Update{u}}); status.Code(err) != codes.Unimplemented {
			t.Errorf("%v: %v, want UNIMPLEMENTED", a, err)
		}
	}
}

func TestReadAfterWrite(t *testing.T) {
	s := newCommitted(t)
	entries := []*p4v1.TableEntry{
		te(tPortVnet, 0, act(aSetVnet, be(100), be(0xaabbcc)), exact(1, 1)),
		te(tRoute, 0, encap(7, 0x0a000001, 9), exact(1, 7), lpm(2, 16, 10, 1, 0, 0)),
		te(tACL, 3, act(aPermit), ternary(1, []byte{1}, []byte{1, 0xff}), rng(2, []byte{1}, []byte{2}), optional(3, 6), exact(4, 5)),
	}
	entries[0].ControllerMetadata = 42
	entries[1].Metadata = []byte("cookie")
	for _, e := range entries {
		must(t, s, upd(p4v1.Update_INSERT, e))
	}
	// A padded write reads back canonical.
	must(t, s, upd(p4v1.Update_INSERT, te(tPortVnet, 0, act(aSetVnet, []byte{0, 0, 0, 5}, []byte{0, 6}), exact(1, 0, 2))))
	entries = append(entries, te(tPortVnet, 0, act(aSetVnet, be(5), be(6)), exact(1, 2)))

	for _, e := range entries {
		got, err := readAll(t, s, &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: e.TableId, Match: e.Match, Priority: e.Priority}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !proto.Equal(got[0].GetTableEntry(), e) {
			t.Errorf("read %v,\nwant %v", got, e)
		}
	}
	all, err := readAll(t, s, &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{}}})
	if err != nil || len(all) != 4 {
		t.Fatalf("wildcard read of all tables: %d entities, %v", len(all), err)
	}
	one, err := readAll(t, s, &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: tPortVnet}}})
	if err != nil || len(one) != 2 {
		t.Fatalf("wildcard read of one table: %d entities, %v", len(one), err)
	}
	// Insertion order.
	if !proto.Equal(one[0].GetTableEntry(), entries[0]) || !proto.Equal(one[1].GetTableEntry(), entries[3]) {
		t.Errorf("one table, in insertion order: %v", one)
	}
	byAction, _ := readAll(t, s, &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: tRoute, Action: act(aDrop)}}})
	if len(byAction) != 0 {
		t.Errorf("action filter: %v", byAction)
	}
	// Defaults.
	def, _ := readAll(t, s, &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: tRoute, IsDefaultAction: true}}})
	if want := (&p4v1.TableEntry{TableId: tRoute, IsDefaultAction: true, Action: act(aMiss)}); len(def) != 1 || !proto.Equal(def[0].GetTableEntry(), want) {
		t.Errorf("default entry: %v, want %v", def, want)
	}
	// Errors.
	for name, q := range map[string]*p4v1.Entity{
		"no entity":     {},
		"unknown table": {Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: 5}}},
		"bad match":     {Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: tPortVnet, Match: []*p4v1.FieldMatch{exact(1, 9, 9)}}}},
	} {
		if _, err := readAll(t, s, q); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := s.Read(&p4v1.ReadRequest{DeviceId: 1}, &readSink{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty read: %v", err)
	}
}

func TestCountersAndProfilesRead(t *testing.T) {
	s := newCommitted(t)
	route := te(tRoute, 0, encap(7, 1, 9), exact(1, 7), lpm(2, 16, 10, 1, 0, 0))
	route.CounterData = &p4v1.CounterData{PacketCount: 3, ByteCount: 300}
	must(t, s, upd(p4v1.Update_INSERT, route),
		upd(p4v1.Update_INSERT, member(2, 2)), upd(p4v1.Update_INSERT, member(1, 1)),
		upd(p4v1.Update_INSERT, group(4, 0, 2, 1)))
	key := te(tRoute, 0, nil, exact(1, 7), lpm(2, 16, 10, 1, 0, 0))
	got, err := readAll(t, s, &p4v1.Entity{Entity: &p4v1.Entity_DirectCounterEntry{DirectCounterEntry: &p4v1.DirectCounterEntry{TableEntry: key}}})
	if err != nil || len(got) != 1 || got[0].GetDirectCounterEntry().GetData().GetPacketCount() != 3 {
		t.Fatalf("direct counter read: %v %v", got, err)
	}
	must(t, s, upd(p4v1.Update_MODIFY, &p4v1.DirectCounterEntry{TableEntry: key, Data: &p4v1.CounterData{}}))
	rq := te(tRoute, 0, nil, exact(1, 7), lpm(2, 16, 10, 1, 0, 0))
	rq.CounterData = &p4v1.CounterData{}
	got, _ = readAll(t, s, &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: rq}})
	if len(got) != 1 || got[0].GetTableEntry().GetCounterData() == nil || got[0].GetTableEntry().GetCounterData().GetPacketCount() != 0 {
		t.Errorf("counter after reset: %v", got)
	}
	ms, _ := readAll(t, s, &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: &p4v1.ActionProfileMember{}}})
	if len(ms) != 2 || ms[0].GetActionProfileMember().GetMemberId() != 1 || !proto.Equal(ms[1].GetActionProfileMember(), member(2, 2)) {
		t.Errorf("members: %v", ms)
	}
	gs, _ := readAll(t, s, &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: &p4v1.ActionProfileGroup{ActionProfileId: pSelector, GroupId: 4}}})
	if len(gs) != 1 || !proto.Equal(gs[0].GetActionProfileGroup(), group(4, 0, 1, 2)) {
		t.Errorf("group: %v", gs)
	}
}

func TestPipelineConfig(t *testing.T) {
	ctx := context.Background()
	info := unitInfo(t)
	s, err := NewServer(Options{P4Info: info})
	if err != nil {
		t.Fatal(err)
	}
	set := func(a p4v1.SetForwardingPipelineConfigRequest_Action, cfg *p4v1.ForwardingPipelineConfig) error {
		_, err := s.SetForwardingPipelineConfig(ctx, &p4v1.SetForwardingPipelineConfigRequest{DeviceId: 1, Action: a, Config: cfg})
		return err
	}
	cfg := &p4v1.ForwardingPipelineConfig{P4Info: info, P4DeviceConfig: []byte("json"), Cookie: &p4v1.ForwardingPipelineConfig_Cookie{Cookie: 99}}
	wider := proto.Clone(info).(*p4configv1.P4Info)
	wider.Tables[0].MatchFields[0].Bitwidth = 8
	got, _ := s.GetForwardingPipelineConfig(ctx, &p4v1.GetForwardingPipelineConfigRequest{DeviceId: 1})
	if got.GetConfig() != nil {
		t.Errorf("before any commit: %v", got)
	}
	if err := set(p4v1.SetForwardingPipelineConfigRequest_COMMIT, nil); status.Code(err) != codes.NotFound {
		t.Errorf("COMMIT with nothing saved: %v", err)
	}
	if err := set(p4v1.SetForwardingPipelineConfigRequest_COMMIT, cfg); status.Code(err) != codes.InvalidArgument {
		t.Errorf("COMMIT with a config: %v", err)
	}
	err = set(p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT, &p4v1.ForwardingPipelineConfig{P4Info: wider})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "table Ing.acl: match field port is 8 bits, the pipeline has 9") {
		t.Errorf("changed width: %v", err)
	}
	if err := set(p4v1.SetForwardingPipelineConfigRequest_VERIFY, cfg); err != nil || s.Store() != nil {
		t.Errorf("VERIFY: %v, store %v", err, s.Store())
	}
	if err := set(p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT, cfg); err != nil {
		t.Fatal(err)
	}
	must(t, s, upd(p4v1.Update_INSERT, te(tPortVnet, 0, act(aDrop), exact(1, 1))))
	for _, tc := range []struct {
		rt   p4v1.GetForwardingPipelineConfigRequest_ResponseType
		info bool
		dev  bool
	}{
		{p4v1.GetForwardingPipelineConfigRequest_ALL, true, true},
		{p4v1.GetForwardingPipelineConfigRequest_COOKIE_ONLY, false, false},
		{p4v1.GetForwardingPipelineConfigRequest_P4INFO_AND_COOKIE, true, false},
		{p4v1.GetForwardingPipelineConfigRequest_DEVICE_CONFIG_AND_COOKIE, false, true},
	} {
		got, err := s.GetForwardingPipelineConfig(ctx, &p4v1.GetForwardingPipelineConfigRequest{DeviceId: 1, ResponseType: tc.rt})
		c := got.GetConfig()
		if err != nil || c.GetCookie().GetCookie() != 99 || (c.GetP4Info() != nil) != tc.info || (c.GetP4DeviceConfig() != nil) != tc.dev {
			t.Errorf("%v: %v %v", tc.rt, c, err)
		}
	}
	if err := set(p4v1.SetForwardingPipelineConfigRequest_RECONCILE_AND_COMMIT, cfg); err != nil || s.Store().Table(tPortVnet).Len() != 1 {
		t.Errorf("RECONCILE_AND_COMMIT keeps state: %v", err)
	}
	if err := set(p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_SAVE, cfg); err != nil {
		t.Fatal(err)
	}
	if err := set(p4v1.SetForwardingPipelineConfigRequest_COMMIT, nil); err != nil || s.Store().Table(tPortVnet).Len() != 1 {
		t.Errorf("COMMIT of the saved config: %v", err)
	}
	if err := set(p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT, cfg); err != nil || s.Store().Table(tPortVnet).Len() != 0 {
		t.Errorf("VERIFY_AND_COMMIT clears state: %v", err)
	}
}

// --- over gRPC ---

func startGRPC(t testing.TB, s *Server) p4v1.P4RuntimeClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := NewGRPCServer()
	s.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return p4v1.NewP4RuntimeClient(cc)
}

type session struct {
	t      testing.TB
	cancel context.CancelFunc
	sc     p4v1.P4Runtime_StreamChannelClient
	in     chan *p4v1.StreamMessageResponse
	end    chan error
}

func open(t testing.TB, c p4v1.P4RuntimeClient, role string, id *p4v1.Uint128) *session {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sc, err := c.StreamChannel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := &session{t: t, cancel: cancel, sc: sc, in: make(chan *p4v1.StreamMessageResponse, 64), end: make(chan error, 1)}
	go func() {
		for {
			m, err := sc.Recv()
			if err != nil {
				s.end <- err
				return
			}
			s.in <- m
		}
	}()
	t.Cleanup(cancel)
	s.arbitrate(1, role, id)
	return s
}

func (s *session) arbitrate(dev uint64, role string, id *p4v1.Uint128) {
	u := &p4v1.MasterArbitrationUpdate{DeviceId: dev, ElectionId: id}
	if role != "" {
		u.Role = &p4v1.Role{Name: role}
	}
	if err := s.sc.Send(&p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_Arbitration{Arbitration: u}}); err != nil {
		s.t.Fatal(err)
	}
}

func (s *session) next() *p4v1.StreamMessageResponse {
	s.t.Helper()
	select {
	case m := <-s.in:
		return m
	case err := <-s.end:
		s.t.Fatalf("stream ended: %v", err)
	case <-time.After(5 * time.Second):
		s.t.Fatal("no stream message within 5s")
	}
	return nil
}

// status waits for the next arbitration update and returns its code.
func (s *session) status() codes.Code {
	s.t.Helper()
	for {
		if a := s.next().GetArbitration(); a != nil {
			return codes.Code(a.GetStatus().GetCode())
		}
	}
}

func (s *session) ended() codes.Code {
	s.t.Helper()
	select {
	case err := <-s.end:
		return status.Code(err)
	case <-time.After(5 * time.Second):
		s.t.Fatal("stream still open after 5s")
	}
	return codes.OK
}

func id(n uint64) *p4v1.Uint128 { return &p4v1.Uint128{Low: n} }

func TestArbitration(t *testing.T) {
	s := newCommitted(t)
	c := startGRPC(t, s)
	ctx := context.Background()
	w := func(n uint64) codes.Code {
		_, err := c.Write(ctx, &p4v1.WriteRequest{DeviceId: 1, ElectionId: id(n), Updates: []*p4v1.Update{
			upd(p4v1.Update_MODIFY, &p4v1.TableEntry{TableId: tPortVnet, IsDefaultAction: true, Action: act(aDrop)}),
		}})
		return status.Code(err)
	}
	a := open(t, c, "", id(5))
	if got := a.status(); got != codes.OK {
		t.Fatalf("first controller: %v, want OK", got)
	}
	b := open(t, c, "", id(3))
	if got := b.status(); got != codes.AlreadyExists {
		t.Fatalf("lower id: %v, want ALREADY_EXISTS", got)
	}
	none := open(t, c, "", nil)
	if got := none.status(); got != codes.AlreadyExists {
		t.Fatalf("no election id: %v, want ALREADY_EXISTS (backup)", got)
	}
	if w(5) != codes.OK || w(3) != codes.PermissionDenied {
		t.Fatalf("writes: primary %v, backup %v", w(5), w(3))
	}
	dup := open(t, c, "", id(3))
	if got := dup.ended(); got != codes.InvalidArgument {
		t.Errorf("reused election id: %v, want INVALID_ARGUMENT", got)
	}
	// A new primary: everyone is told, the old one is refused.
	d := open(t, c, "", id(9))
	if got := d.status(); got != codes.OK {
		t.Fatalf("higher id: %v", got)
	}
	for name, x := range map[string]*session{"a": a, "b": b, "none": none} {
		if got := x.status(); got != codes.AlreadyExists {
			t.Errorf("%s told %v, want ALREADY_EXISTS", name, got)
		}
	}
	if w(5) != codes.PermissionDenied || w(9) != codes.OK {
		t.Errorf("after takeover: old %v new %v", w(5), w(9))
	}
	// The primary leaves: everyone is told there is none.
	d.cancel()
	for name, x := range map[string]*session{"a": a, "b": b, "none": none} {
		if got := x.status(); got != codes.NotFound {
			t.Errorf("%s told %v, want NOT_FOUND", name, got)
		}
	}
	// A lower id cannot take over; re-arbitrating with a higher one can.
	a.arbitrate(1, "", id(5))
	if got := a.status(); got != codes.NotFound {
		t.Errorf("id below the highest seen: %v, want NOT_FOUND", got)
	}
	a.arbitrate(1, "", id(10))
	if got := a.status(); got != codes.OK {
		t.Errorf("re-arbitration with a higher id: %v", got)
	}
	// Device and role cannot change.
	b.arbitrate(2, "", id(3))
	if got := b.ended(); got != codes.FailedPrecondition {
		t.Errorf("device change: %v", got)
	}
	none.arbitrate(1, "other", nil)
	if got := none.ended(); got != codes.FailedPrecondition {
		t.Errorf("role change: %v", got)
	}
	unknown := open(t, c, "", id(1))
	unknown.arbitrate(7, "", id(1))
	if got := unknown.ended(); got != codes.FailedPrecondition {
		t.Errorf("device change on an open stream: %v", got)
	}
	bad := open(t, c, "", nil)
	_ = bad
	fresh, _ := c.StreamChannel(ctx)
	fresh.Send(&p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_Arbitration{Arbitration: &p4v1.MasterArbitrationUpdate{DeviceId: 3}}})
	if _, err := fresh.Recv(); status.Code(err) != codes.NotFound {
		t.Errorf("unknown device: %v", err)
	}
	// Named roles are arbitrated apart.
	r := open(t, c, "sdn", id(1))
	if got := r.status(); got != codes.OK {
		t.Errorf("named role primary: %v", got)
	}
	if _, err := c.Write(ctx, &p4v1.WriteRequest{DeviceId: 1, Role: "sdn", ElectionId: id(1)}); err != nil {
		t.Errorf("named role write: %v", err)
	}
}

func TestMaxStreams(t *testing.T) {
	s, _ := NewServer(Options{MaxStreams: 2})
	c := startGRPC(t, s)
	open(t, c, "", id(1)).status()
	open(t, c, "", id(2)).status()
	if got := open(t, c, "", id(3)).ended(); got != codes.ResourceExhausted {
		t.Errorf("third stream: %v", got)
	}
}

func TestPacketIO(t *testing.T) {
	s := newCommitted(t)
	c := startGRPC(t, s)
	outs := make(chan *p4v1.PacketOut, 4)
	s.SetPacketOutHandler(func(po *p4v1.PacketOut) error { outs <- po; return nil })
	p := open(t, c, "", id(1))
	p.status()
	send := func(md ...*p4v1.PacketMetadata) {
		if err := p.sc.Send(&p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_Packet{Packet: &p4v1.PacketOut{Payload: []byte{1}, Metadata: md}}}); err != nil {
			t.Fatal(err)
		}
	}
	md := func(id uint32, v ...byte) *p4v1.PacketMetadata { return &p4v1.PacketMetadata{MetadataId: id, Value: v} }
	for name, bad := range map[string][]*p4v1.PacketMetadata{
		"missing field": {md(1, 1)},
		"too wide":      {md(1, 2, 0), md(2, 0)},
		"twice":         {md(1, 1), md(1, 1), md(2, 0)},
		"unknown":       {md(1, 1), md(2, 0), md(3, 0)},
	} {
		send(bad...)
		e := p.next().GetError()
		if e == nil || codes.Code(e.GetCanonicalCode()) != codes.InvalidArgument || e.GetPacketOut() == nil {
			t.Errorf("%s: %v", name, e)
		}
	}
	send(md(1, 1, 0xff), md(2, 0))
	select {
	case po := <-outs:
		if len(po.GetMetadata()) != 2 {
			t.Errorf("packet out: %v", po)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the valid packet-out never reached the handler: the stream must survive bad ones")
	}
	s.SendPacketIn([]byte{9}, []*p4v1.PacketMetadata{md(1, 1)})
	if pi := p.next().GetPacket(); pi == nil || pi.GetPayload()[0] != 9 {
		t.Errorf("packet in: %v", pi)
	}
	// Digests: one list of two distinct messages, duplicates dropped until acked.
	if _, err := s.Write(context.Background(), &p4v1.WriteRequest{DeviceId: 1, ElectionId: id(1), Updates: []*p4v1.Update{
		upd(p4v1.Update_INSERT, &p4v1.DigestEntry{DigestId: dDigest, Config: &p4v1.DigestEntry_Config{MaxListSize: 2, MaxTimeoutNs: int64(time.Hour), AckTimeoutNs: int64(time.Hour)}}),
	}}); err != nil {
		t.Fatal(err)
	}
	d1 := &p4v1.P4Data{Data: &p4v1.P4Data_Bitstring{Bitstring: []byte{1}}}
	d2 := &p4v1.P4Data{Data: &p4v1.P4Data_Bitstring{Bitstring: []byte{2}}}
	s.SendDigest(dDigest, d1)
	s.SendDigest(dDigest, d1)
	s.SendDigest(dDigest, d2)
	dl := p.next().GetDigest()
	if dl == nil || len(dl.GetData()) != 2 {
		t.Fatalf("digest list: %v", dl)
	}
	s.SendDigest(dDigest, d1) // in the cache: dropped
	p.sc.Send(&p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_DigestAck{DigestAck: &p4v1.DigestListAck{DigestId: dDigest, ListId: dl.GetListId()}}})
	p.sc.Send(&p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_DigestAck{DigestAck: &p4v1.DigestListAck{DigestId: 1}}})
	if e := p.next().GetError(); e == nil || e.GetDigestListAck() == nil {
		t.Errorf("ack of an unknown digest: %v", e)
	}
	s.SendDigest(dDigest, d1)
	s.SendDigest(dDigest, d2)
	if dl := p.next().GetDigest(); dl == nil || len(dl.GetData()) != 2 {
		t.Errorf("after the ack the same data is sent again: %v", dl)
	}
	// Backups get no packets, and may not send them.
	b := open(t, c, "", id(0))
	b.status()
	b.sc.Send(&p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_Packet{Packet: &p4v1.PacketOut{}}})
	if e := b.next().GetError(); e == nil || codes.Code(e.GetCanonicalCode()) != codes.PermissionDenied {
		t.Errorf("packet-out from a backup: %v", e)
	}
}

func TestCapabilities(t *testing.T) {
	s, _ := NewServer(Options{})
	r, err := s.Capabilities(context.Background(), &p4v1.CapabilitiesRequest{})
	if err != nil || r.GetP4RuntimeApiVersion() != "1.5.0" {
		t.Errorf("%v %v", r, err)
	}
}
