package p4rt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

func fm(id uint32, t any) *p4v1.FieldMatch {
	m := &p4v1.FieldMatch{FieldId: id}
	switch x := t.(type) {
	case *p4v1.FieldMatch_Exact:
		m.FieldMatchType = &p4v1.FieldMatch_Exact_{Exact: x}
	case *p4v1.FieldMatch_LPM:
		m.FieldMatchType = &p4v1.FieldMatch_Lpm{Lpm: x}
	case *p4v1.FieldMatch_Ternary:
		m.FieldMatchType = &p4v1.FieldMatch_Ternary_{Ternary: x}
	case *p4v1.FieldMatch_Range:
		m.FieldMatchType = &p4v1.FieldMatch_Range_{Range: x}
	case *p4v1.FieldMatch_Optional:
		m.FieldMatchType = &p4v1.FieldMatch_Optional_{Optional: x}
	}
	return m
}

func encAction(id uint32, params ...[]byte) *p4v1.TableAction {
	a := &p4v1.Action{ActionId: id}
	for i, p := range params {
		a.Params = append(a.Params, &p4v1.Action_Param{ParamId: uint32(i + 1), Value: p})
	}
	return &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: a}}
}

// encodeCases are updates of every shape appendUpdate writes, and some it
// leaves to protobuf-go.
func encodeCases() []*p4v1.Update {
	te := func(e *p4v1.TableEntry) *p4v1.Entity {
		return &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: e}}
	}
	long := bytes.Repeat([]byte{0xab}, 300)
	// A match kind with a field this p4runtime does not know: protobuf-go
	// keeps it on the wire, so the hand encoder must leave it to it.
	unknownExact := &p4v1.FieldMatch_Exact{Value: []byte{1}}
	unknownExact.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 7))
	return []*p4v1.Update{
		{Type: p4v1.Update_INSERT, Entity: te(&p4v1.TableEntry{TableId: 7, Match: []*p4v1.FieldMatch{fm(1, &p4v1.FieldMatch_Exact{Value: []byte{1}}), fm(2, &p4v1.FieldMatch_Exact{Value: []byte{10, 0, 0, 1}})},
			Action: encAction(9, []byte{1, 0}, []byte{192, 168, 0, 2}, []byte{2, 0, 0, 0, 0, 2})})},
		{Type: p4v1.Update_DELETE, Entity: te(&p4v1.TableEntry{TableId: 7, Match: []*p4v1.FieldMatch{fm(2, &p4v1.FieldMatch_LPM{Value: []byte{10}, PrefixLen: 8})}})},
		{Type: p4v1.Update_MODIFY, Entity: te(&p4v1.TableEntry{TableId: 3, Priority: -5, ControllerMetadata: 1 << 40, Metadata: []byte("cookie"),
			Match:  []*p4v1.FieldMatch{fm(1, &p4v1.FieldMatch_Ternary{Value: []byte{1}, Mask: []byte{0xff}}), fm(2, &p4v1.FieldMatch_Range{Low: []byte{1}, High: []byte{9}}), fm(3, &p4v1.FieldMatch_Optional{Value: []byte{6}})},
			Action: &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileMemberId{}}})},
		{Type: p4v1.Update_INSERT, Entity: te(&p4v1.TableEntry{TableId: 4, Priority: 1 << 30, Action: &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileGroupId{ActionProfileGroupId: 300}}})},
		{Type: p4v1.Update_MODIFY, Entity: te(&p4v1.TableEntry{TableId: 5, IsDefaultAction: true, Action: encAction(2)})},
		// Messages of 128 bytes and more: two-byte length prefixes.
		{Type: p4v1.Update_INSERT, Entity: te(&p4v1.TableEntry{TableId: 5, Metadata: long, Match: []*p4v1.FieldMatch{fm(1, &p4v1.FieldMatch_Exact{Value: long})}, Action: encAction(3, long, long[:200])})},
		// Empty and nil parts that protobuf-go still writes.
		{Entity: te(&p4v1.TableEntry{Match: []*p4v1.FieldMatch{{}, fm(0, &p4v1.FieldMatch_Exact{})}, Action: &p4v1.TableAction{}})},
		{Entity: te(&p4v1.TableEntry{Action: &p4v1.TableAction{Type: &p4v1.TableAction_Action{}}})},
		{Type: p4v1.Update_INSERT, Entity: te(&p4v1.TableEntry{})},
		// Left to protobuf-go.
		{Type: p4v1.Update_MODIFY, Entity: te(&p4v1.TableEntry{TableId: 1, CounterData: &p4v1.CounterData{PacketCount: 3}})},
		{Type: p4v1.Update_MODIFY, Entity: te(&p4v1.TableEntry{TableId: 1, IdleTimeoutNs: 5})},
		{Type: p4v1.Update_MODIFY, Entity: te(&p4v1.TableEntry{TableId: 1, MeterConfig: &p4v1.MeterConfig{Cir: 1}})},
		{Type: p4v1.Update_MODIFY, Entity: te(&p4v1.TableEntry{TableId: 1, MeterCounterData: &p4v1.MeterCounterData{}})},
		{Type: p4v1.Update_MODIFY, Entity: te(&p4v1.TableEntry{TableId: 1, TimeSinceLastHit: &p4v1.TableEntry_IdleTimeout{ElapsedNs: 1}})},
		{Type: p4v1.Update_MODIFY, Entity: te(&p4v1.TableEntry{TableId: 1, IsConst: true})},
		{Type: p4v1.Update_INSERT, Entity: te(&p4v1.TableEntry{TableId: 1, Action: &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileActionSet{ActionProfileActionSet: &p4v1.ActionProfileActionSet{}}}})},
		{Type: p4v1.Update_INSERT, Entity: te(&p4v1.TableEntry{TableId: 1, Match: []*p4v1.FieldMatch{{FieldId: 1, FieldMatchType: &p4v1.FieldMatch_Other{Other: &anypb.Any{}}}}})},
		{Type: p4v1.Update_INSERT, Entity: te(&p4v1.TableEntry{TableId: 1, Match: []*p4v1.FieldMatch{fm(1, unknownExact)}})},
		{Type: p4v1.Update_INSERT, Entity: &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: &p4v1.ActionProfileMember{ActionProfileId: 1, MemberId: 2}}}},
		{Type: p4v1.Update_INSERT},
	}
}

// TestAppendUpdateMatchesProtobuf: the hand encoder writes, for every
// update it takes, the bytes protobuf-go writes; the rest it leaves.
func TestAppendUpdateMatchesProtobuf(t *testing.T) {
	cases := encodeCases()
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		var ms []*p4v1.FieldMatch
		for i := range r.IntN(4) {
			v := make([]byte, r.IntN(20))
			for j := range v {
				v[j] = byte(r.Uint32())
			}
			ms = append(ms, fm(uint32(i+r.IntN(3)), &p4v1.FieldMatch_LPM{Value: v, PrefixLen: int32(r.IntN(200)) - 10}))
		}
		var ps [][]byte
		for range r.IntN(5) {
			ps = append(ps, make([]byte, r.IntN(70)))
		}
		cases = append(cases, &p4v1.Update{Type: p4v1.Update_Type(r.IntN(4)), Entity: &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{
			TableId: r.Uint32() >> r.IntN(32), Match: ms, Action: encAction(r.Uint32()>>r.IntN(32), ps...), Priority: int32(r.Uint32()) >> r.IntN(32)}}}})
	}
	handled := 0
	for i, u := range cases {
		want, err := proto.Marshal(u)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendUpdate([]byte("prefix"), u)
		if !ok {
			if string(got) != "prefix" {
				t.Fatalf("case %d: refused but appended %x", i, got[6:])
			}
			continue
		}
		handled++
		if !bytes.Equal(got[6:], want) {
			t.Fatalf("case %d: %v\n got %x\nwant %x", i, u, got[6:], want)
		}
	}
	if handled != len(cases)-11 {
		t.Fatalf("hand-encoded %d of %d cases, want all but the 11 left to protobuf-go", handled, len(cases))
	}
}

// TestAppendUpdateKnowsEveryField: the hand encoder names every field of
// the messages it writes, so a field added to P4Runtime's protos is not
// dropped silently; a new one must be encoded or refused.
func TestAppendUpdateKnowsEveryField(t *testing.T) {
	known := map[protoreflect.FullName][]protoreflect.FieldNumber{
		"p4.v1.Update":              {fUpdateType, fUpdateEntity},
		"p4.v1.TableEntry":          {fTETable, fTEMatch, fTEAction, fTEPriority, fTECtrlMeta, fTEIsDefault, fTEMetadata, 6, 7, 9, 10, 12, 13},
		"p4.v1.FieldMatch":          {fFMField, fFMExact, fFMTernary, fFMLPM, fFMRange, fFMOptional, 100},
		"p4.v1.FieldMatch.Exact":    {1},
		"p4.v1.FieldMatch.Ternary":  {1, 2},
		"p4.v1.FieldMatch.LPM":      {1, 2},
		"p4.v1.FieldMatch.Range":    {1, 2},
		"p4.v1.FieldMatch.Optional": {1},
		"p4.v1.TableAction":         {fTAAction, fTAMember, fTAGroup, 4},
		"p4.v1.Action":              {fActionID, fActionParams},
		"p4.v1.Action.Param":        {fParamID, fParamValue},
	}
	for _, m := range []proto.Message{&p4v1.Update{}, &p4v1.TableEntry{}, &p4v1.FieldMatch{}, &p4v1.FieldMatch_Exact{}, &p4v1.FieldMatch_Ternary{},
		&p4v1.FieldMatch_LPM{}, &p4v1.FieldMatch_Range{}, &p4v1.FieldMatch_Optional{}, &p4v1.TableAction{}, &p4v1.Action{}, &p4v1.Action_Param{}} {
		d := m.ProtoReflect().Descriptor()
		fs := d.Fields()
		if fs.Len() != len(known[d.FullName()]) {
			t.Errorf("%s has %d fields, the encoder knows %d", d.FullName(), fs.Len(), len(known[d.FullName()]))
		}
		for _, n := range known[d.FullName()] {
			if fs.ByNumber(n) == nil {
				t.Errorf("%s has no field %d", d.FullName(), n)
			}
		}
	}
}

// TestEncodeWrite: the requests a Write sends decode to the WriteRequests
// protobuf-go would have sent, batch by batch.
func TestEncodeWrite(t *testing.T) {
	ups := encodeCases()
	head := &p4v1.WriteRequest{DeviceId: 3, Role: "r", ElectionId: &p4v1.Uint128{High: 1, Low: 2}, Atomicity: p4v1.WriteRequest_CONTINUE_ON_ERROR}
	c := &Client{cfg: Config{MaxBatch: 4}}
	enc, err := encodeUpdates(ups)
	if err != nil {
		t.Fatal(err)
	}
	batches := 0
	for start := 0; start < len(ups); {
		end := c.batchEnd(enc, start)
		w, err := newEncodedWrite(head, enc, start, end)
		if err != nil {
			t.Fatal(err)
		}
		got := &p4v1.WriteRequest{}
		if err := proto.Unmarshal(*w.b, got); err != nil {
			t.Fatal(err)
		}
		want := proto.Clone(head).(*p4v1.WriteRequest)
		want.Updates = ups[start:end]
		if !proto.Equal(got, want) {
			t.Fatalf("batch %d..%d:\n got %v\nwant %v", start, end, got, want)
		}
		start = end
		batches++
	}
	if want := (len(ups) + 3) / 4; batches != want {
		t.Fatalf("%d batches, want %d", batches, want)
	}
}

// BenchmarkEncodeWrite encodes 1000 vnet_destination-like updates into
// one request: by hand as a Write does, or by protobuf-go as gRPC's codec
// did (sized once for batching, then sized and written).
func BenchmarkEncodeWrite(b *testing.B) {
	var ups []*p4v1.Update
	for i := range 1000 {
		ups = append(ups, &p4v1.Update{Type: p4v1.Update_INSERT, Entity: &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: 7,
			Match:  []*p4v1.FieldMatch{fm(1, &p4v1.FieldMatch_Exact{Value: []byte{1, 0}}), fm(2, &p4v1.FieldMatch_Exact{Value: []byte{10, 0, byte(i >> 8), byte(i)}})},
			Action: encAction(9, []byte{1, 0}, []byte{192, 168, 0, 2}, []byte{2, 0, 0, 0, 0, 2})}}}})
	}
	head := &p4v1.WriteRequest{DeviceId: 1, ElectionId: &p4v1.Uint128{Low: 1}}
	for _, hand := range []bool{false, true} {
		b.Run(fmt.Sprintf("hand=%v", hand), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if hand {
					enc, err := encodeUpdates(ups)
					if err != nil {
						b.Fatal(err)
					}
					w, err := newEncodedWrite(head, enc, 0, len(ups))
					if err != nil {
						b.Fatal(err)
					}
					s, _ := theWriteCodec.Marshal(w)
					s.Free()
					continue
				}
				for _, u := range ups {
					proto.Size(u)
				}
				req := proto.Clone(head).(*p4v1.WriteRequest)
				req.Updates = ups
				s, err := theWriteCodec.Marshal(req)
				if err != nil {
					b.Fatal(err)
				}
				s.Free()
			}
		})
	}
}
