package dataplane

import (
	"context"
	"os"
	"sync"
	"testing"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// FuzzWrite feeds arbitrary WriteRequests to a server holding a few
// members, a group and entries: it must never panic, and a Read of
// everything afterwards must work. Seeds are valid requests of each entity
// kind, so mutations reach the checks behind the first ones (the PINS
// p4_fuzzer mutations: bad ids, missing and duplicate fields, bad weights,
// dangling references).
func FuzzWrite(f *testing.F) {
	seeds := [][]*p4v1.Update{
		{upd(p4v1.Update_INSERT, te(tPortVnet, 0, act(aSetVnet, be(1), be(2)), exact(1, 1)))},
		{upd(p4v1.Update_INSERT, te(tRoute, 0, encap(1, 2, 3), exact(1, 1), lpm(2, 8, 10, 0, 0, 0)))},
		{upd(p4v1.Update_INSERT, te(tACL, 3, act(aPermit), ternary(1, []byte{1}, []byte{1, 0xff}), rng(2, []byte{1}, []byte{2}), optional(3, 6), exact(4, 5)))},
		{upd(p4v1.Update_INSERT, member(3, 1)), upd(p4v1.Update_INSERT, group(3, 0, 3, 1))},
		{upd(p4v1.Update_INSERT, poolEntry(4, toGroup(1))), upd(p4v1.Update_DELETE, member(1, 0))},
		{upd(p4v1.Update_MODIFY, &p4v1.TableEntry{TableId: tPortVnet, IsDefaultAction: true, Action: act(aDrop)})},
		{upd(p4v1.Update_MODIFY, &p4v1.DirectCounterEntry{TableEntry: te(tRoute, 0, nil, exact(1, 1), lpm(2, 8, 10, 0, 0, 0)), Data: &p4v1.CounterData{PacketCount: 1}})},
		{upd(p4v1.Update_INSERT, &p4v1.DigestEntry{DigestId: dDigest, Config: &p4v1.DigestEntry_Config{MaxListSize: 1}})},
	}
	for _, us := range seeds {
		b, err := proto.Marshal(&p4v1.WriteRequest{DeviceId: 1, Updates: us})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) { runFuzzWriteOnce(t, data) })
}

// fuzzInfo is the unit P4Info, parsed once for every fuzz execution.
var fuzzInfo = sync.OnceValues(func() (*p4configv1.P4Info, error) {
	b, err := os.ReadFile("testdata/unit.p4info.txtpb")
	if err != nil {
		return nil, err
	}
	info := &p4configv1.P4Info{}
	return info, prototext.Unmarshal(b, info)
})

// runFuzzWriteOnce is one FuzzWrite execution.
func runFuzzWriteOnce(t *testing.T, data []byte) {
	info, err := fuzzInfo()
	if err != nil {
		t.Fatal(err)
	}
	{
		req := &p4v1.WriteRequest{}
		if err := proto.Unmarshal(data, req); err != nil {
			return
		}
		s, err := NewServer(Options{P4Info: info})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(&p4v1.ForwardingPipelineConfig{P4Info: info}); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if _, err := s.Write(ctx, &p4v1.WriteRequest{DeviceId: 1, Updates: []*p4v1.Update{
			upd(p4v1.Update_INSERT, member(1, 1)), upd(p4v1.Update_INSERT, member(2, 2)),
			upd(p4v1.Update_INSERT, group(1, 0, 1, 2)),
			upd(p4v1.Update_INSERT, poolEntry(1, toMember(1))),
			upd(p4v1.Update_INSERT, te(tRoute, 0, encap(1, 2, 3), exact(1, 1), lpm(2, 8, 10, 0, 0, 0))),
		}}); err != nil {
			t.Fatal(err)
		}
		// Arbitration and device checks come first; pin them so the
		// fuzzer's bytes reach the updates.
		req.DeviceId, req.ElectionId, req.Role = 1, nil, ""
		_, _ = s.Write(ctx, req)
		all := []*p4v1.Entity{
			{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{CounterData: &p4v1.CounterData{}}}},
			{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: &p4v1.ActionProfileMember{}}},
			{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: &p4v1.ActionProfileGroup{}}},
			{Entity: &p4v1.Entity_DirectCounterEntry{DirectCounterEntry: &p4v1.DirectCounterEntry{}}},
			{Entity: &p4v1.Entity_DigestEntry{DigestEntry: &p4v1.DigestEntry{}}},
		}
		if err := s.Read(&p4v1.ReadRequest{DeviceId: 1, Entities: all}, &readSink{}); err != nil {
			t.Fatalf("read after write: %v", err)
		}
		// The entities of req used as read queries must not panic either.
		for _, u := range req.GetUpdates() {
			if u.GetEntity() != nil {
				_ = s.Read(&p4v1.ReadRequest{DeviceId: 1, Entities: []*p4v1.Entity{u.GetEntity()}}, &readSink{})
			}
		}
		// A packet looked up in every table must not panic.
		st := s.Store()
		st.RLock()
		for _, tbl := range st.order {
			tbl.Lookup(make([]byte, tbl.KeyLen()))
		}
		st.RUnlock()
	}
}
