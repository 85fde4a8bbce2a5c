package dataplane

import (
	"context"
	"errors"
	"sync"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The Write fast path: a WriteRequest is decoded by hand from the wire into
// protobuf messages a decoder keeps and reuses, so a batch of table entries
// costs no allocation per update before the store sees it (protobuf-go
// allocates every message of every update). The decoder handles what the
// on-host controller sends (table entries with every match kind, direct
// actions, members and groups); anything else, or anything it does not
// understand, is decoded by protobuf-go as before. Values alias the
// decoder's copy of the request, which the store copies what it keeps out
// of (keep), and the decoder is reused only after the handler returned.

// errSlowPath means: decode this request with protobuf-go.
var errSlowPath = errors.New("dataplane: write request needs the generic decoder")

// slab hands out zeroed values of T from chunks that are kept and reused
// after reset: pointers handed out stay valid until then.
type slab[T any] struct {
	chunks [][]T
	ci, i  int
}

func (s *slab[T]) get() *T {
	for {
		if s.ci < len(s.chunks) {
			c := s.chunks[s.ci]
			if s.i < len(c) {
				p := &c[s.i]
				s.i++
				var zero T
				*p = zero
				return p
			}
			s.ci, s.i = s.ci+1, 0
			continue
		}
		n := 64
		if len(s.chunks) > 0 {
			n = 2 * len(s.chunks[len(s.chunks)-1])
		}
		s.chunks = append(s.chunks, make([]T, n))
	}
}

func (s *slab[T]) reset() { s.ci, s.i = 0, 0 }

// writeDecoder decodes WriteRequests into messages it owns.
type writeDecoder struct {
	buf []byte // the request's bytes; decoded values alias it
	req p4v1.WriteRequest
	eid p4v1.Uint128

	updates  []*p4v1.Update
	upd      slab[p4v1.Update]
	ent      slab[p4v1.Entity]
	entTE    slab[p4v1.Entity_TableEntry]
	te       slab[p4v1.TableEntry]
	fm       slab[p4v1.FieldMatch]
	fmPtrs   []*p4v1.FieldMatch
	exact    slab[p4v1.FieldMatch_Exact]
	exactW   slab[p4v1.FieldMatch_Exact_]
	lpm      slab[p4v1.FieldMatch_LPM]
	lpmW     slab[p4v1.FieldMatch_Lpm]
	tern     slab[p4v1.FieldMatch_Ternary]
	ternW    slab[p4v1.FieldMatch_Ternary_]
	rng      slab[p4v1.FieldMatch_Range]
	rngW     slab[p4v1.FieldMatch_Range_]
	opt      slab[p4v1.FieldMatch_Optional]
	optW     slab[p4v1.FieldMatch_Optional_]
	ta       slab[p4v1.TableAction]
	taAct    slab[p4v1.TableAction_Action]
	taMember slab[p4v1.TableAction_ActionProfileMemberId]
	taGroup  slab[p4v1.TableAction_ActionProfileGroupId]
	act      slab[p4v1.Action]
	param    slab[p4v1.Action_Param]
	parPtrs  []*p4v1.Action_Param
}

func (d *writeDecoder) reset() {
	d.req.Reset()
	d.updates = d.updates[:0]
	d.upd.reset()
	d.ent.reset()
	d.entTE.reset()
	d.te.reset()
	d.fm.reset()
	d.fmPtrs = d.fmPtrs[:0]
	d.exact.reset()
	d.exactW.reset()
	d.lpm.reset()
	d.lpmW.reset()
	d.tern.reset()
	d.ternW.reset()
	d.rng.reset()
	d.rngW.reset()
	d.opt.reset()
	d.optW.reset()
	d.ta.reset()
	d.taAct.reset()
	d.taMember.reset()
	d.taGroup.reset()
	d.act.reset()
	d.param.reset()
	d.parPtrs = d.parPtrs[:0]
}

// field reads one field's tag and value: v for varints, b for
// length-delimited fields. Any other wire type means the slow path.
func field(b []byte) (num protowire.Number, v uint64, val []byte, rest []byte, err error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, nil, nil, errSlowPath
	}
	b = b[n:]
	switch typ {
	case protowire.VarintType:
		v, n = protowire.ConsumeVarint(b)
	case protowire.BytesType:
		val, n = protowire.ConsumeBytes(b)
	default:
		return 0, 0, nil, nil, errSlowPath
	}
	if n < 0 {
		return 0, 0, nil, nil, errSlowPath
	}
	return num, v, val, b[n:], nil
}

// wantVarint checks that a field the decoder reads as a varint came as
// one; anything else (a varint field sent length-delimited, which
// protobuf-go may accept as packed) is left to protobuf-go.
func wantVarint(val []byte) error {
	if val != nil {
		return errSlowPath
	}
	return nil
}

// decode fills d.req from b, which must stay unchanged while the request
// is in use (the codec passes d.buf).
func (d *writeDecoder) decode(b []byte) error {
	d.reset()
	for len(b) > 0 {
		num, v, val, rest, err := field(b)
		if err != nil {
			return err
		}
		b = rest
		switch num {
		case 1: // device_id
			if err := wantVarint(val); err != nil {
				return err
			}
			d.req.DeviceId = v
		case 3: // election_id
			if val == nil || d.req.ElectionId != nil {
				return errSlowPath
			}
			d.eid.Reset()
			if err := d.uint128(val); err != nil {
				return err
			}
			d.req.ElectionId = &d.eid
		case 4: // updates
			if val == nil {
				return errSlowPath
			}
			u, err := d.update(val)
			if err != nil {
				return err
			}
			d.updates = append(d.updates, u)
		case 5: // atomicity
			if err := wantVarint(val); err != nil {
				return err
			}
			d.req.Atomicity = p4v1.WriteRequest_Atomicity(int32(v))
		default: // role_id, role (a string to check), unknown fields
			return errSlowPath
		}
	}
	d.req.Updates = d.updates
	return nil
}

func (d *writeDecoder) uint128(b []byte) error {
	for len(b) > 0 {
		num, v, val, rest, err := field(b)
		if err != nil || val != nil {
			return errSlowPath
		}
		b = rest
		switch num {
		case 1:
			d.eid.High = v
		case 2:
			d.eid.Low = v
		default:
			return errSlowPath
		}
	}
	return nil
}

func (d *writeDecoder) update(b []byte) (*p4v1.Update, error) {
	u := d.upd.get()
	for len(b) > 0 {
		num, v, val, rest, err := field(b)
		if err != nil {
			return nil, err
		}
		b = rest
		switch num {
		case 1:
			if err := wantVarint(val); err != nil {
				return nil, err
			}
			u.Type = p4v1.Update_Type(int32(v))
		case 2:
			if val == nil || u.Entity != nil {
				return nil, errSlowPath
			}
			e, err := d.entity(val)
			if err != nil {
				return nil, err
			}
			u.Entity = e
		default:
			return nil, errSlowPath
		}
	}
	return u, nil
}

func (d *writeDecoder) entity(b []byte) (*p4v1.Entity, error) {
	e := d.ent.get()
	for len(b) > 0 {
		num, _, val, rest, err := field(b)
		if err != nil {
			return nil, err
		}
		b = rest
		if num != 2 || val == nil || e.Entity != nil { // only table_entry, once
			return nil, errSlowPath
		}
		te, err := d.tableEntry(val)
		if err != nil {
			return nil, err
		}
		w := d.entTE.get()
		w.TableEntry = te
		e.Entity = w
	}
	return e, nil
}

func (d *writeDecoder) tableEntry(b []byte) (*p4v1.TableEntry, error) {
	te := d.te.get()
	start := len(d.fmPtrs)
	for len(b) > 0 {
		num, v, val, rest, err := field(b)
		if err != nil {
			return nil, err
		}
		b = rest
		switch num {
		case 1:
			if err := wantVarint(val); err != nil {
				return nil, err
			}
			te.TableId = uint32(v)
		case 2:
			if val == nil {
				return nil, errSlowPath
			}
			fm, err := d.fieldMatch(val)
			if err != nil {
				return nil, err
			}
			d.fmPtrs = append(d.fmPtrs, fm)
		case 3:
			if val == nil || te.Action != nil {
				return nil, errSlowPath
			}
			ta, err := d.tableAction(val)
			if err != nil {
				return nil, err
			}
			te.Action = ta
		case 4:
			if err := wantVarint(val); err != nil {
				return nil, err
			}
			te.Priority = int32(v)
		case 5:
			if err := wantVarint(val); err != nil {
				return nil, err
			}
			te.ControllerMetadata = v
		case 8:
			if err := wantVarint(val); err != nil {
				return nil, err
			}
			te.IsDefaultAction = v != 0
		case 11:
			if val == nil {
				return nil, errSlowPath
			}
			te.Metadata = val
		case 13:
			if err := wantVarint(val); err != nil {
				return nil, err
			}
			te.IsConst = v != 0
		default:
			return nil, errSlowPath
		}
	}
	if n := len(d.fmPtrs) - start; n > 0 {
		// A full slice expression: appending to it never writes into the
		// next entry's matches.
		te.Match = d.fmPtrs[start:len(d.fmPtrs):len(d.fmPtrs)]
	}
	return te, nil
}

// Which fields a match kind's message has: value (exact, optional); value
// and mask, or low and high (ternary, range); value and prefix_len (lpm).
const (
	oneBytes = iota
	twoBytes
	bytesAndVarint
)

// matchFields decodes the message of a match kind.
func matchFields(b []byte, kind int) (f1, f2 []byte, plen int32, err error) {
	for len(b) > 0 {
		num, v, val, rest, err := field(b)
		if err != nil {
			return nil, nil, 0, err
		}
		b = rest
		switch {
		case num == 1 && val != nil:
			f1 = val
		case num == 2 && kind == bytesAndVarint && val == nil:
			plen = int32(v)
		case num == 2 && kind == twoBytes && val != nil:
			f2 = val
		default:
			return nil, nil, 0, errSlowPath
		}
	}
	return f1, f2, plen, nil
}

func (d *writeDecoder) fieldMatch(b []byte) (*p4v1.FieldMatch, error) {
	fm := d.fm.get()
	for len(b) > 0 {
		num, v, val, rest, err := field(b)
		if err != nil {
			return nil, err
		}
		b = rest
		if num == 1 {
			if err := wantVarint(val); err != nil {
				return nil, err
			}
			fm.FieldId = uint32(v)
			continue
		}
		if val == nil || fm.FieldMatchType != nil {
			return nil, errSlowPath
		}
		switch num {
		case 2:
			v1, _, _, err := matchFields(val, oneBytes)
			if err != nil {
				return nil, err
			}
			x, w := d.exact.get(), d.exactW.get()
			x.Value, w.Exact = v1, x
			fm.FieldMatchType = w
		case 3:
			v1, v2, _, err := matchFields(val, twoBytes)
			if err != nil {
				return nil, err
			}
			x, w := d.tern.get(), d.ternW.get()
			x.Value, x.Mask, w.Ternary = v1, v2, x
			fm.FieldMatchType = w
		case 4:
			v1, _, plen, err := matchFields(val, bytesAndVarint)
			if err != nil {
				return nil, err
			}
			x, w := d.lpm.get(), d.lpmW.get()
			x.Value, x.PrefixLen, w.Lpm = v1, plen, x
			fm.FieldMatchType = w
		case 6:
			v1, v2, _, err := matchFields(val, twoBytes)
			if err != nil {
				return nil, err
			}
			x, w := d.rng.get(), d.rngW.get()
			x.Low, x.High, w.Range = v1, v2, x
			fm.FieldMatchType = w
		case 7:
			v1, _, _, err := matchFields(val, oneBytes)
			if err != nil {
				return nil, err
			}
			x, w := d.opt.get(), d.optW.get()
			x.Value, w.Optional = v1, x
			fm.FieldMatchType = w
		default:
			return nil, errSlowPath
		}
	}
	return fm, nil
}

func (d *writeDecoder) tableAction(b []byte) (*p4v1.TableAction, error) {
	ta := d.ta.get()
	for len(b) > 0 {
		num, v, val, rest, err := field(b)
		if err != nil {
			return nil, err
		}
		b = rest
		if ta.Type != nil {
			return nil, errSlowPath
		}
		switch {
		case num == 1 && val != nil:
			a, err := d.action(val)
			if err != nil {
				return nil, err
			}
			w := d.taAct.get()
			w.Action = a
			ta.Type = w
		case num == 2 && val == nil:
			w := d.taMember.get()
			w.ActionProfileMemberId = uint32(v)
			ta.Type = w
		case num == 3 && val == nil:
			w := d.taGroup.get()
			w.ActionProfileGroupId = uint32(v)
			ta.Type = w
		default:
			return nil, errSlowPath
		}
	}
	return ta, nil
}

func (d *writeDecoder) action(b []byte) (*p4v1.Action, error) {
	a := d.act.get()
	start := len(d.parPtrs)
	for len(b) > 0 {
		num, v, val, rest, err := field(b)
		if err != nil {
			return nil, err
		}
		b = rest
		switch {
		case num == 1 && val == nil:
			a.ActionId = uint32(v)
		case num == 4 && val != nil:
			p := d.param.get()
			for len(val) > 0 {
				pn, pv, pval, prest, err := field(val)
				if err != nil {
					return nil, err
				}
				val = prest
				switch {
				case pn == 2 && pval == nil:
					p.ParamId = uint32(pv)
				case pn == 3 && pval != nil:
					p.Value = pval
				default:
					return nil, errSlowPath
				}
			}
			d.parPtrs = append(d.parPtrs, p)
		default:
			return nil, errSlowPath
		}
	}
	if n := len(d.parPtrs) - start; n > 0 {
		a.Params = d.parPtrs[start:len(d.parPtrs):len(d.parPtrs)]
	}
	return a, nil
}

// writeFrame is what the Write handler decodes into: a WriteRequest
// (embedded, so any codec can fill it as a proto.Message) and, for the
// fast path, the decoder that owns its messages.
type writeFrame struct {
	*p4v1.WriteRequest
	d *writeDecoder
}

// codec is the server's gRPC codec: protobuf-go for every message but a
// writeFrame with a decoder, which it decodes by hand when it can.
type codec struct{ encoding.CodecV2 }

func newCodec() codec { return codec{encoding.GetCodecV2("proto")} }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*writeFrame)
	if !ok || f.d == nil {
		return c.CodecV2.Unmarshal(data, v)
	}
	// Into the decoder's buffer: no allocation once it is large enough.
	n := data.Len()
	d := f.d
	if cap(d.buf) < n {
		d.buf = make([]byte, n)
	}
	d.buf = d.buf[:n]
	b := d.buf
	off := 0
	for _, s := range data {
		off += copy(b[off:], s.ReadOnlyData())
	}
	if err := d.decode(b); err == nil {
		f.WriteRequest = &d.req
		return nil
	}
	f.WriteRequest = &p4v1.WriteRequest{}
	return proto.Unmarshal(b, f.WriteRequest)
}

var decoders = sync.Pool{New: func() any { return &writeDecoder{} }}

// The largest request and batch a pooled decoder is kept for: the
// controller's batches (1000 updates, well under 1 MB) many times over.
const (
	maxPooledRequest = 16 << 20
	maxPooledUpdates = 1 << 16
)

// writeHandler is the P4Runtime Write method's gRPC handler: the generated
// one, decoding into a pooled writeFrame.
func (s *Server) writeHandler(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	f := &writeFrame{WriteRequest: &p4v1.WriteRequest{}}
	// OnWrite hands updates to code that may keep them: they must not be
	// reused.
	if s.opts.OnWrite == nil {
		d := decoders.Get().(*writeDecoder)
		defer func() {
			// A decoder that grew for an outsized request is left to
			// the garbage collector rather than kept.
			if cap(d.buf) <= maxPooledRequest && cap(d.updates) <= maxPooledUpdates {
				decoders.Put(d)
			}
		}()
		f.d = d
	}
	if err := dec(f); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return s.Write(ctx, f.WriteRequest)
	}
	info := &grpc.UnaryServerInfo{Server: s, FullMethod: p4v1.P4Runtime_Write_FullMethodName}
	return interceptor(ctx, f.WriteRequest, info, func(ctx context.Context, req any) (any, error) {
		return s.Write(ctx, req.(*p4v1.WriteRequest))
	})
}

// serviceDesc is P4Runtime's service description with Write's handler
// replaced by s.writeHandler.
func (s *Server) serviceDesc() *grpc.ServiceDesc {
	sd := p4v1.P4Runtime_ServiceDesc
	sd.Methods = append([]grpc.MethodDesc(nil), sd.Methods...)
	for i := range sd.Methods {
		if sd.Methods[i].MethodName == "Write" {
			sd.Methods[i].Handler = s.writeHandler
		}
	}
	return &sd
}
