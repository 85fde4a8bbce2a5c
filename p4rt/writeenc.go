package p4rt

import (
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// A Write encodes each of its updates once, up front: the lengths decide
// where batches end, and a batch's request is its updates' bytes behind the
// request's other fields, handed to gRPC as they are. Table entries, what
// a controller writes by the thousand, are encoded by hand (appendUpdate),
// to the bytes protobuf-go produces, at a fraction of its cost; anything
// else goes through protobuf-go.

// encodedWrite is a WriteRequest already in its wire form, in a buffer of
// gRPC's pool, which gRPC returns once it has sent it.
type encodedWrite struct{ b *[]byte }

// writeCodec sends an encodedWrite as it is and anything else as gRPC's
// proto codec does.
type writeCodec struct{ encoding.CodecV2 }

var theWriteCodec = writeCodec{encoding.GetCodecV2("proto")}

func (c writeCodec) Marshal(v any) (mem.BufferSlice, error) {
	if w, ok := v.(*encodedWrite); ok {
		return mem.BufferSlice{mem.NewBuffer(w.b, mem.DefaultBufferPool())}, nil
	}
	return c.CodecV2.Marshal(v)
}

// encodedUpdates are a Write's updates in wire form: update i is
// buf[off[i]:off[i+1]].
type encodedUpdates struct {
	buf []byte
	off []int
}

func (e *encodedUpdates) size(i int) int { return e.off[i+1] - e.off[i] }

// encodeUpdates encodes updates one after the other.
func encodeUpdates(updates []*p4v1.Update) (*encodedUpdates, error) {
	e := &encodedUpdates{buf: make([]byte, 0, 96*len(updates)), off: make([]int, 1, len(updates)+1)}
	for _, u := range updates {
		var ok bool
		if e.buf, ok = appendUpdate(e.buf, u); !ok {
			var err error
			if e.buf, err = (proto.MarshalOptions{}).MarshalAppend(e.buf, u); err != nil {
				return nil, err
			}
		}
		e.off = append(e.off, len(e.buf))
	}
	return e, nil
}

// newEncodedWrite is the request with head's fields and updates start to
// end of e, in a buffer of gRPC's pool.
func newEncodedWrite(head *p4v1.WriteRequest, e *encodedUpdates, start, end int) (*encodedWrite, error) {
	n := proto.Size(head)
	for i := start; i < end; i++ {
		n += 1 + protowire.SizeVarint(uint64(e.size(i))) + e.size(i)
	}
	buf := mem.DefaultBufferPool().Get(n)
	b, err := (proto.MarshalOptions{}).MarshalAppend((*buf)[:0], head)
	if err != nil {
		mem.DefaultBufferPool().Put(buf)
		return nil, err
	}
	// Fields may come in any order on the wire, so the updates (field 4)
	// can follow the others.
	for i := start; i < end; i++ {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, e.buf[e.off[i]:e.off[i+1]])
	}
	*buf = b
	return &encodedWrite{buf}, nil
}

// Field numbers of the messages appendUpdate encodes.
const (
	fUpdateType, fUpdateEntity                                    = 1, 2
	fEntityTableEntry                                             = 2
	fTETable, fTEMatch, fTEAction, fTEPriority, fTECtrlMeta       = 1, 2, 3, 4, 5
	fTEIsDefault, fTEMetadata                                     = 8, 11
	fFMField, fFMExact, fFMTernary, fFMLPM, fFMRange, fFMOptional = 1, 2, 3, 4, 6, 7
	fTAAction, fTAMember, fTAGroup                                = 1, 2, 3
	fActionID, fActionParams, fParamID, fParamValue               = 1, 4, 2, 3
)

// appendUpdate appends u's wire form, as protobuf-go would write it, when
// u is a table entry update of the fields a controller writes (match,
// action, member or group, priority, metadata, default entries); it
// returns false, having appended nothing, for anything else.
func appendUpdate(b []byte, u *p4v1.Update) ([]byte, bool) {
	te := u.GetEntity().GetTableEntry()
	if te == nil || !plainEntry(te) || len(u.ProtoReflect().GetUnknown()) > 0 || len(u.GetEntity().ProtoReflect().GetUnknown()) > 0 {
		return b, false
	}
	start := len(b)
	if t := u.GetType(); t != 0 {
		b = protowire.AppendTag(b, fUpdateType, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(t))
	}
	b = protowire.AppendTag(b, fUpdateEntity, protowire.BytesType)
	m := openLen(&b)
	b = protowire.AppendTag(b, fEntityTableEntry, protowire.BytesType)
	m2 := openLen(&b)
	b, ok := appendTableEntry(b, te)
	if !ok {
		return b[:start], false
	}
	b = closeLen(b, m2)
	return closeLen(b, m), true
}

// plainEntry reports whether te sets only fields appendTableEntry writes.
func plainEntry(te *p4v1.TableEntry) bool {
	return te.MeterConfig == nil && te.CounterData == nil && te.MeterCounterData == nil && te.IdleTimeoutNs == 0 &&
		te.TimeSinceLastHit == nil && !te.IsConst && len(te.ProtoReflect().GetUnknown()) == 0
}

func appendTableEntry(b []byte, te *p4v1.TableEntry) ([]byte, bool) {
	if te.TableId != 0 {
		b = protowire.AppendTag(b, fTETable, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(te.TableId))
	}
	for _, fm := range te.Match {
		if fm == nil || len(fm.ProtoReflect().GetUnknown()) > 0 {
			return b, false
		}
		b = protowire.AppendTag(b, fTEMatch, protowire.BytesType)
		m := openLen(&b)
		if fm.FieldId != 0 {
			b = protowire.AppendTag(b, fFMField, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(fm.FieldId))
		}
		switch x := fm.FieldMatchType.(type) {
		case nil:
		case *p4v1.FieldMatch_Exact_:
			if x.Exact != nil && len(x.Exact.ProtoReflect().GetUnknown()) > 0 {
				return b, false
			}
			b = appendTwo(b, fFMExact, x.Exact.GetValue(), nil, 0)
		case *p4v1.FieldMatch_Ternary_:
			if x.Ternary != nil && len(x.Ternary.ProtoReflect().GetUnknown()) > 0 {
				return b, false
			}
			b = appendTwo(b, fFMTernary, x.Ternary.GetValue(), x.Ternary.GetMask(), 0)
		case *p4v1.FieldMatch_Lpm:
			if x.Lpm != nil && len(x.Lpm.ProtoReflect().GetUnknown()) > 0 {
				return b, false
			}
			b = appendTwo(b, fFMLPM, x.Lpm.GetValue(), nil, x.Lpm.GetPrefixLen())
		case *p4v1.FieldMatch_Range_:
			if x.Range != nil && len(x.Range.ProtoReflect().GetUnknown()) > 0 {
				return b, false
			}
			b = appendTwo(b, fFMRange, x.Range.GetLow(), x.Range.GetHigh(), 0)
		case *p4v1.FieldMatch_Optional_:
			if x.Optional != nil && len(x.Optional.ProtoReflect().GetUnknown()) > 0 {
				return b, false
			}
			b = appendTwo(b, fFMOptional, x.Optional.GetValue(), nil, 0)
		default:
			return b, false
		}
		b = closeLen(b, m)
	}
	if ta := te.Action; ta != nil {
		if len(ta.ProtoReflect().GetUnknown()) > 0 {
			return b, false
		}
		b = protowire.AppendTag(b, fTEAction, protowire.BytesType)
		m := openLen(&b)
		switch x := ta.Type.(type) {
		case nil:
		case *p4v1.TableAction_Action:
			a := x.Action
			if a != nil && len(a.ProtoReflect().GetUnknown()) > 0 {
				return b, false
			}
			b = protowire.AppendTag(b, fTAAction, protowire.BytesType)
			m2 := openLen(&b)
			if id := a.GetActionId(); id != 0 {
				b = protowire.AppendTag(b, fActionID, protowire.VarintType)
				b = protowire.AppendVarint(b, uint64(id))
			}
			for _, p := range a.GetParams() {
				if p == nil || len(p.ProtoReflect().GetUnknown()) > 0 {
					return b, false
				}
				b = protowire.AppendTag(b, fActionParams, protowire.BytesType)
				m3 := openLen(&b)
				if p.ParamId != 0 {
					b = protowire.AppendTag(b, fParamID, protowire.VarintType)
					b = protowire.AppendVarint(b, uint64(p.ParamId))
				}
				if len(p.Value) > 0 {
					b = protowire.AppendTag(b, fParamValue, protowire.BytesType)
					b = protowire.AppendBytes(b, p.Value)
				}
				b = closeLen(b, m3)
			}
			b = closeLen(b, m2)
		case *p4v1.TableAction_ActionProfileMemberId:
			// A oneof member is written even when zero.
			b = protowire.AppendTag(b, fTAMember, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(x.ActionProfileMemberId))
		case *p4v1.TableAction_ActionProfileGroupId:
			b = protowire.AppendTag(b, fTAGroup, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(x.ActionProfileGroupId))
		default:
			return b, false
		}
		b = closeLen(b, m)
	}
	if te.Priority != 0 {
		b = protowire.AppendTag(b, fTEPriority, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(te.Priority)))
	}
	if te.ControllerMetadata != 0 {
		b = protowire.AppendTag(b, fTECtrlMeta, protowire.VarintType)
		b = protowire.AppendVarint(b, te.ControllerMetadata)
	}
	if te.IsDefaultAction {
		b = protowire.AppendTag(b, fTEIsDefault, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if len(te.Metadata) > 0 {
		b = protowire.AppendTag(b, fTEMetadata, protowire.BytesType)
		b = protowire.AppendBytes(b, te.Metadata)
	}
	return b, true
}

// appendTwo appends a match kind's message as field num: bytes fields 1
// and 2 (value and mask, low and high), or bytes field 1 and the varint
// prefix length for LPM.
func appendTwo(b []byte, num protowire.Number, f1, f2 []byte, plen int32) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	m := openLen(&b)
	if len(f1) > 0 {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, f1)
	}
	if len(f2) > 0 {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, f2)
	}
	if plen != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(plen)))
	}
	return closeLen(b, m)
}

// openLen reserves one byte for a length prefix and returns where it is;
// closeLen writes the length of what followed, making room when it takes
// more than one byte (rare: a message of 128 bytes or more).
func openLen(b *[]byte) int {
	*b = append(*b, 0)
	return len(*b) - 1
}

func closeLen(b []byte, at int) []byte {
	n := len(b) - at - 1
	if n < 0x80 {
		b[at] = byte(n)
		return b
	}
	k := protowire.SizeVarint(uint64(n))
	b = append(b, make([]byte, k-1)...)
	copy(b[at+k:], b[at+1:at+1+n])
	protowire.AppendVarint(b[at:at], uint64(n))
	return b
}
