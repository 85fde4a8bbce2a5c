package p4rt

import (
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/proto"
)

// TestEncodeWrite: a batch encoded from its updates' cached sizes decodes
// to the WriteRequest protobuf-go would have sent, and an update changed
// after it was sized is refused rather than sent with stale lengths.
func TestEncodeWrite(t *testing.T) {
	var ups []*p4v1.Update
	for i := range 50 {
		te := &p4v1.TableEntry{TableId: 7, Priority: int32(i), Match: []*p4v1.FieldMatch{{FieldId: 1,
			FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: []byte{byte(i), 1, 2}}}}},
			Action: &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: &p4v1.Action{ActionId: 9,
				Params: []*p4v1.Action_Param{{ParamId: 1, Value: make([]byte, i*7)}}}}}}
		u, err := Update(p4v1.Update_INSERT, te)
		if err != nil {
			t.Fatal(err)
		}
		ups = append(ups, u)
	}
	head := &p4v1.WriteRequest{DeviceId: 3, Role: "r", ElectionId: &p4v1.Uint128{High: 1, Low: 2}, Atomicity: p4v1.WriteRequest_CONTINUE_ON_ERROR}
	c := &Client{cfg: Config{MaxBatch: 20}}
	sizes := make([]int, len(ups))
	for start := 0; start < len(ups); {
		end := c.batchEnd(ups, start, sizes)
		b, err := encodeWrite(nil, head, ups[start:end], sizes[start:end])
		if err != nil {
			t.Fatal(err)
		}
		got := &p4v1.WriteRequest{}
		if err := proto.Unmarshal(b, got); err != nil {
			t.Fatal(err)
		}
		want := proto.Clone(head).(*p4v1.WriteRequest)
		want.Updates = ups[start:end]
		if !proto.Equal(got, want) {
			t.Fatalf("batch %d..%d:\n got %v\nwant %v", start, end, got, want)
		}
		start = end
	}
	ups[3].GetEntity().GetTableEntry().Priority = 1 << 30
	if _, err := encodeWrite(nil, head, ups[:5], sizes[:5]); err == nil {
		t.Fatal("an update changed after sizing was encoded with its stale size")
	}
}

// BenchmarkEncodeWrite encodes a 1000-update batch as a Write sends it:
// sized for batching, then encoded by gRPC's proto codec (proto) or from
// the cached sizes (cached).
func BenchmarkEncodeWrite(b *testing.B) {
	var ups []*p4v1.Update
	for i := range 1000 {
		te := &p4v1.TableEntry{TableId: 7, Match: []*p4v1.FieldMatch{
			{FieldId: 1, FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: []byte{1, 0}}}},
			{FieldId: 2, FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: []byte{10, 0, byte(i >> 8), byte(i)}}}}},
			Action: &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: &p4v1.Action{ActionId: 9, Params: []*p4v1.Action_Param{
				{ParamId: 1, Value: []byte{1, 0}}, {ParamId: 2, Value: []byte{192, 168, 0, 2}}, {ParamId: 3, Value: []byte{2, 0, 0, 0, 0, 2}}}}}}}
		u, err := Update(p4v1.Update_INSERT, te)
		if err != nil {
			b.Fatal(err)
		}
		ups = append(ups, u)
	}
	head := &p4v1.WriteRequest{DeviceId: 1, ElectionId: &p4v1.Uint128{Low: 1}}
	c := &Client{cfg: Config{MaxBatch: 1000}}
	sizes := make([]int, len(ups))
	for _, cached := range []bool{false, true} {
		name := map[bool]string{false: "proto", true: "cached"}[cached]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.batchEnd(ups, 0, sizes)
				var bs interface{ Free() }
				if cached {
					w, err := newEncodedWrite(head, ups, sizes)
					if err != nil {
						b.Fatal(err)
					}
					s, _ := theWriteCodec.Marshal(w)
					bs = s
				} else {
					req := proto.Clone(head).(*p4v1.WriteRequest)
					req.Updates = ups
					s, err := theWriteCodec.Marshal(req)
					if err != nil {
						b.Fatal(err)
					}
					bs = s
				}
				bs.Free()
			}
		})
	}
}
