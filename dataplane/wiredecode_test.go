package dataplane

import (
	"fmt"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// decodeSeeds are WriteRequests of what the fast path decodes: every match
// kind, direct actions, members and groups named by entries, priorities,
// metadata, an election id, the default entry.
func decodeSeeds() []*p4v1.WriteRequest {
	return []*p4v1.WriteRequest{
		{DeviceId: 1, ElectionId: &p4v1.Uint128{High: 2, Low: 3}, Atomicity: p4v1.WriteRequest_CONTINUE_ON_ERROR, Updates: []*p4v1.Update{
			upd(p4v1.Update_INSERT, te(tPortVnet, 0, act(aSetVnet, be(1), be(2)), exact(1, 1))),
			upd(p4v1.Update_MODIFY, te(tRoute, 0, encap(1, 2, 3), exact(1, 1), lpm(2, 8, 10, 0, 0, 0))),
			upd(p4v1.Update_DELETE, te(tACL, 3, act(aPermit), ternary(1, []byte{1}, []byte{1, 0xff}), rng(2, []byte{1}, []byte{2}), optional(3, 6), exact(4, 5))),
			upd(p4v1.Update_INSERT, poolEntry(4, toGroup(1))),
			upd(p4v1.Update_MODIFY, &p4v1.TableEntry{TableId: tPortVnet, IsDefaultAction: true, Action: act(aDrop)}),
			upd(p4v1.Update_INSERT, &p4v1.TableEntry{TableId: tPool, Match: []*p4v1.FieldMatch{exact(1, 9)},
				Action: &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileMemberId{ActionProfileMemberId: 7}}, Metadata: []byte("cookie"), ControllerMetadata: 5}),
			{Type: p4v1.Update_INSERT, Entity: &p4v1.Entity{}},
			{Type: p4v1.Update_INSERT},
		}},
		benchRequest(p4v1.Update_INSERT, 0, 100),
	}
}

// benchRequest is n vnet-like exact entries with a three-parameter action.
func benchRequest(typ p4v1.Update_Type, first, n int) *p4v1.WriteRequest {
	w := &p4v1.WriteRequest{DeviceId: 1, ElectionId: &p4v1.Uint128{Low: 1}}
	for i := first; i < first+n; i++ {
		w.Updates = append(w.Updates, upd(typ, te(tDest, 0, encap(uint32(i), 0x0a000001, 2), exact(1, 1), exact(2, u32(uint32(i))...))))
	}
	return w
}

// fastDecode runs the fast path on b as the codec does.
func fastDecode(d *writeDecoder, b []byte) (*p4v1.WriteRequest, error) {
	d.buf = append(d.buf[:0], b...)
	if err := d.decode(d.buf); err != nil {
		return nil, err
	}
	return &d.req, nil
}

// TestWriteDecoderMatchesProtobuf: the fast path decodes what the
// controller sends, to messages equal to protobuf-go's; and a decoder
// reused for another request leaves nothing of the first behind.
func TestWriteDecoderMatchesProtobuf(t *testing.T) {
	d := &writeDecoder{}
	for round := range 2 {
		for i, w := range decodeSeeds() {
			b, err := proto.Marshal(w)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fastDecode(d, b)
			if err != nil {
				t.Fatalf("round %d request %d: the fast path refused it: %v", round, i, err)
			}
			want := &p4v1.WriteRequest{}
			if err := proto.Unmarshal(b, want); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("round %d request %d:\nfast     %v\nprotobuf %v", round, i, got, want)
			}
		}
	}
}

// TestWriteDecoderSlowPath: what the fast path does not know goes to
// protobuf-go instead of being decoded wrong or dropped.
func TestWriteDecoderSlowPath(t *testing.T) {
	for name, w := range map[string]*p4v1.WriteRequest{
		"role":           {DeviceId: 1, Role: "r"},
		"member entity":  {DeviceId: 1, Updates: []*p4v1.Update{upd(p4v1.Update_INSERT, member(3, 1))}},
		"counter data":   {DeviceId: 1, Updates: []*p4v1.Update{upd(p4v1.Update_INSERT, &p4v1.TableEntry{TableId: 1, CounterData: &p4v1.CounterData{PacketCount: 1}})}},
		"action set":     {DeviceId: 1, Updates: []*p4v1.Update{upd(p4v1.Update_INSERT, &p4v1.TableEntry{TableId: 1, Action: &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileActionSet{ActionProfileActionSet: &p4v1.ActionProfileActionSet{}}}})}},
		"unknown fields": nil,
	} {
		var b []byte
		if w == nil {
			b = protoAppendUnknown(t)
		} else {
			var err error
			if b, err = proto.Marshal(w); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := fastDecode(&writeDecoder{}, b); err != errSlowPath {
			t.Errorf("%s: fast path = %v, want errSlowPath", name, err)
		}
	}
}

// protoAppendUnknown is a valid table-entry write with an unknown field in
// the FieldMatch (number 50).
func protoAppendUnknown(t *testing.T) []byte {
	fm := exact(1, 1)
	fm.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 50, protowire.VarintType), 1))
	b, err := proto.Marshal(&p4v1.WriteRequest{DeviceId: 1, Updates: []*p4v1.Update{upd(p4v1.Update_INSERT, te(tPortVnet, 0, act(aSetVnet, be(1), be(2)), fm))}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWriteDecoderNoAllocations: decoding a 1000-update batch with a warm
// decoder allocates nothing.
func TestWriteDecoderNoAllocations(t *testing.T) {
	b, err := proto.Marshal(benchRequest(p4v1.Update_INSERT, 0, 1000))
	if err != nil {
		t.Fatal(err)
	}
	d := &writeDecoder{}
	if _, err := fastDecode(d, b); err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(20, func() { fastDecode(d, b) }); a != 0 {
		t.Fatalf("%v allocations per 1000-update request, want 0", a)
	}
}

// FuzzWriteDecoder: on any input, the fast path either defers to
// protobuf-go or decodes exactly what protobuf-go decodes.
func FuzzWriteDecoder(f *testing.F) {
	for _, w := range decodeSeeds() {
		b, err := proto.Marshal(w)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	d := &writeDecoder{}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := fastDecode(d, b)
		if err != nil {
			return
		}
		want := &p4v1.WriteRequest{}
		if err := proto.Unmarshal(b, want); err != nil {
			t.Fatalf("fast path decoded what protobuf-go rejects (%v): %v", err, got)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("\nfast     %v\nprotobuf %v", got, want)
		}
	})
}

// BenchmarkWriteDecode decodes a 1000-update batch, fast path against
// protobuf-go.
func BenchmarkWriteDecode(b *testing.B) {
	wire, err := proto.Marshal(benchRequest(p4v1.Update_INSERT, 0, 1000))
	if err != nil {
		b.Fatal(err)
	}
	for _, fast := range []bool{true, false} {
		b.Run(fmt.Sprintf("fast=%v", fast), func(b *testing.B) {
			d := &writeDecoder{}
			b.ReportAllocs()
			for b.Loop() {
				if fast {
					if _, err := fastDecode(d, wire); err != nil {
						b.Fatal(err)
					}
				} else if err := proto.Unmarshal(wire, &p4v1.WriteRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
