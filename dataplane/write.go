package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"unsafe"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
)

// opError is the outcome of one failed update or query, with the canonical
// code the spec gives that failure. Codes are chosen where the failure is
// found, because only there is it known which rule was broken.
type opError struct {
	code codes.Code
	msg  string
}

func (e *opError) Error() string { return e.code.String() + ": " + e.msg }

func errf(c codes.Code, format string, a ...any) *opError {
	return &opError{code: c, msg: fmt.Sprintf(format, a...)}
}

// scratch is reused by every update of one WriteRequest, so parsing a key
// allocates nothing.
type scratch struct {
	found []*p4v1.FieldMatch
	id    []byte
	param []*p4v1.Action_Param
	// blk, while a table entry is being written, is where its direct
	// action's messages go.
	blk *entryBlock
}

// entryBlock is a table entry with the messages of its canonical form and
// the buffers its slices are cut from: a stored entry lives and dies with
// them, and the Store recycles the whole block for a later entry, buffers
// and all, so that an insert in steady state allocates nothing. The
// entry's and the messages' own slices (Args, Params, Match, the action's
// Params, the ternary data) are the buffers: a free block keeps them
// empty, with their capacity.
type entryBlock struct {
	e     Entry
	te    p4v1.TableEntry
	ta    p4v1.TableAction
	taAct p4v1.TableAction_Action
	act   p4v1.Action

	arena   []byte // values (canonical and padded), metadata
	key     []byte // the identity key, which e.key views
	mblocks []matchBlock
	pv      []p4v1.Action_Param
}

// reset empties b for reuse, keeping its buffers. A MODIFY without an
// action leaves the new entry's Args and Params those of the entry it
// replaced, whose block is then never reused; so whenever b is reset, no
// other live entry holds its slices.
func (b *entryBlock) reset() {
	e := &b.e
	// The buffers keep pointers into the last entry's arena; clearing them
	// lets an arena that was outgrown be collected.
	args, params, value, mask := e.Args[:0], e.Params[:cap(e.Params)], e.value[:0], e.mask[:0]
	ranges := e.ranges[:cap(e.ranges)]
	clear(params)
	clear(ranges)
	e.ActionID, e.MemberID, e.GroupID = 0, 0, 0
	e.Packets.Store(0)
	e.Bytes.Store(0)
	e.proto, e.key, e.prefix, e.priority = nil, "", 0, 0
	e.member, e.group, e.prev, e.next = nil, nil, nil, nil
	e.Args, e.Params, e.value, e.mask, e.ranges = args, params[:0], value, mask, ranges[:0]
	matches := b.te.Match[:cap(b.te.Match)]
	clear(matches)
	b.te.Reset()
	b.te.Match = matches[:0]
	b.ta.Reset()
	b.taAct.Action = nil
	pptrs := b.act.Params[:cap(b.act.Params)]
	clear(pptrs)
	b.act.Reset()
	b.act.Params = pptrs[:0]
	clear(b.mblocks[:cap(b.mblocks)])
	clear(b.pv[:cap(b.pv)])
}

// reuse is s resliced to n zero elements, reallocated only if too small.
func reuse[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// matchBlock is one exact or LPM field of a stored entry's canonical
// match, in one allocation with the other fields'.
type matchBlock struct {
	fm   p4v1.FieldMatch
	exW  p4v1.FieldMatch_Exact_
	ex   p4v1.FieldMatch_Exact
	lpmW p4v1.FieldMatch_Lpm
	lpm  p4v1.FieldMatch_LPM
}

// desc names what a value is for in an error message, built only when the
// error is: concatenating the name of every field and parameter of every
// update up front cost a few allocations per update.
type desc [4]string

func (d desc) String() string { return d[0] + d[1] + d[2] + d[3] }

// with is d with suffix in its last part.
func (d desc) with(suffix string) desc {
	d[3] += suffix
	return d
}

// canon checks a bytestring received for a field of width bits and returns
// its canonical form (a sub-slice of b). Padded values are accepted as the
// spec requires; empty or too wide ones are OUT_OF_RANGE (spec §8.4).
func canon(b []byte, width int, what desc) ([]byte, error) {
	if len(b) == 0 {
		return nil, errf(codes.OutOfRange, "%s: empty bytestring", what)
	}
	i := 0
	for i < len(b)-1 && b[i] == 0 {
		i++
	}
	b = b[i:]
	if n := (len(b)-1)*8 + bits.Len8(b[0]); n > width {
		return nil, errf(codes.OutOfRange, "%s: 0x%x does not fit in %d bits", what, b, width)
	}
	return b, nil
}

// appendPadded appends canonical value c padded to n bytes.
func appendPadded(dst, c []byte, n int) []byte {
	for range n - len(c) {
		dst = append(dst, 0)
	}
	return append(dst, c...)
}

// keep copies b into the entry's arena and returns the copy, so stored
// values never alias a request's buffers.
func keep(arena *[]byte, b []byte) []byte {
	a := append(*arena, b...)
	*arena = a
	return a[len(a)-len(b) : len(a) : len(a)]
}

func (t *Table) fieldIndex(id uint32) int {
	for i := range t.fields {
		if t.fields[i].id == id {
			return i
		}
	}
	return -1
}

// parseKey checks the match and priority of te and leaves its identity key
// in sc.id: for exact and LPM tables the padded lookup key (and the prefix
// length), for the others each field's value and mask or bounds, then the
// priority. When e is not nil it also fills the entry's match data and
// canonical match list for storing.
func (t *Table) parseKey(te *p4v1.TableEntry, sc *scratch, blk *entryBlock, arena *[]byte) ([]*p4v1.FieldMatch, error) {
	var e *Entry
	if blk != nil {
		e = &blk.e
	}
	name := t.Info.Name()
	if len(t.fields) == 0 {
		return nil, errf(codes.InvalidArgument, "table %s has no match key: only its default entry can be written", name)
	}
	sc.found = slices.Grow(sc.found[:0], len(t.fields))[:len(t.fields)]
	clear(sc.found)
	for _, fm := range te.GetMatch() {
		i := t.fieldIndex(fm.GetFieldId())
		if i < 0 {
			return nil, errf(codes.InvalidArgument, "table %s has no match field id %d", name, fm.GetFieldId())
		}
		if sc.found[i] != nil {
			return nil, errf(codes.InvalidArgument, "table %s: match field %s given twice", name, t.fields[i].name)
		}
		sc.found[i] = fm
	}
	prio := te.GetPriority()
	if t.Info.Priority && prio <= 0 {
		return nil, errf(codes.InvalidArgument, "table %s has ternary, range or optional fields: priority must be > 0, not %d", name, prio)
	}
	if !t.Info.Priority && prio != 0 {
		return nil, errf(codes.InvalidArgument, "table %s has no ternary, range or optional field: priority must be 0, not %d", name, prio)
	}
	var matches []*p4v1.FieldMatch
	var blocks []matchBlock
	if e != nil {
		// blocks must not grow once pointers into it are taken: there is
		// at most one block per match given.
		matches = blk.te.Match[:0]
		blocks = reuse(blk.mblocks, len(te.GetMatch()))[:0]
		e.priority = prio
		if t.kind == kindTernary {
			e.value, e.mask, e.ranges = reuse(e.value, t.keyLen), reuse(e.mask, t.keyLen), e.ranges[:0]
		}
		defer func() { blk.te.Match, blk.mblocks = matches, blocks }()
	}
	id := sc.id[:0]
	plen := 0
	for i := range t.fields {
		f := &t.fields[i]
		fm := sc.found[i]
		what := desc{name, " field ", f.name}
		start := len(id)
		switch f.kind {
		case p4configv1.MatchField_EXACT:
			if fm == nil {
				return nil, errf(codes.InvalidArgument, "%s: exact match fields cannot be omitted", what)
			}
			x := fm.GetExact()
			if x == nil {
				return nil, errf(codes.InvalidArgument, "%s is an exact match field", what)
			}
			v, err := canon(x.GetValue(), f.width, what)
			if err != nil {
				return nil, err
			}
			id = appendPadded(id, v, f.n)
			if e != nil {
				blocks = blocks[:len(blocks)+1]
				mb := &blocks[len(blocks)-1]
				mb.ex.Value = keep(arena, v)
				mb.exW.Exact = &mb.ex
				mb.fm.FieldId, mb.fm.FieldMatchType = f.id, &mb.exW
				matches = append(matches, &mb.fm)
				if t.kind == kindTernary {
					copy(e.value[f.off:], id[start:])
					fill(e.mask[f.off:f.off+f.n], 0xff)
				}
			}
		case p4configv1.MatchField_LPM:
			if fm == nil {
				id = appendPadded(id, nil, f.n)
				break
			}
			x := fm.GetLpm()
			if x == nil {
				return nil, errf(codes.InvalidArgument, "%s is an LPM match field", what)
			}
			v, err := canon(x.GetValue(), f.width, what)
			if err != nil {
				return nil, err
			}
			plen = int(x.GetPrefixLen())
			if plen <= 0 || plen > f.width {
				return nil, errf(codes.InvalidArgument, "%s: prefix length %d is not in 1..%d (omit the field to match anything)", what, plen, f.width)
			}
			id = appendPadded(id, v, f.n)
			if !zeroFrom(id[start:], f.n*8-f.width+plen) {
				return nil, errf(codes.InvalidArgument, "%s: value 0x%x has bits set past prefix length %d", what, v, plen)
			}
			if t.kind == kindTernary {
				id = binary.BigEndian.AppendUint16(id, uint16(plen))
			}
			if e != nil {
				blocks = blocks[:len(blocks)+1]
				mb := &blocks[len(blocks)-1]
				mb.lpm.Value, mb.lpm.PrefixLen = keep(arena, v), int32(plen)
				mb.lpmW.Lpm = &mb.lpm
				mb.fm.FieldId, mb.fm.FieldMatchType = f.id, &mb.lpmW
				matches = append(matches, &mb.fm)
				if t.kind == kindTernary {
					copy(e.value[f.off:], id[start:start+f.n])
					m := e.mask[f.off : f.off+f.n]
					fill(m, 0xff)
					maskFrom(m, f.n*8-f.width+plen)
				}
			}
		case p4configv1.MatchField_TERNARY:
			if fm == nil {
				id = appendPadded(appendPadded(id, nil, f.n), nil, f.n)
				break
			}
			x := fm.GetTernary()
			if x == nil {
				return nil, errf(codes.InvalidArgument, "%s is a ternary match field", what)
			}
			v, err := canon(x.GetValue(), f.width, what)
			if err != nil {
				return nil, err
			}
			m, err := canon(x.GetMask(), f.width, what.with(" mask"))
			if err != nil {
				return nil, err
			}
			if len(m) == 1 && m[0] == 0 {
				return nil, errf(codes.InvalidArgument, "%s: ternary mask is zero (omit the field to match anything)", what)
			}
			id = appendPadded(id, v, f.n)
			id = appendPadded(id, m, f.n)
			pv, pm := id[start:start+f.n], id[start+f.n:]
			for j := range pv {
				if pv[j]&^pm[j] != 0 {
					return nil, errf(codes.InvalidArgument, "%s: value 0x%x has bits outside mask 0x%x", what, v, m)
				}
			}
			if e != nil {
				matches = append(matches, &p4v1.FieldMatch{FieldId: f.id, FieldMatchType: &p4v1.FieldMatch_Ternary_{Ternary: &p4v1.FieldMatch_Ternary{Value: keep(arena, v), Mask: keep(arena, m)}}})
				copy(e.value[f.off:], pv)
				copy(e.mask[f.off:], pm)
			}
		case p4configv1.MatchField_RANGE:
			if fm == nil {
				id = appendPadded(id, nil, f.n)
				id = appendMax(id, f.n, f.width)
				break
			}
			x := fm.GetRange()
			if x == nil {
				return nil, errf(codes.InvalidArgument, "%s is a range match field", what)
			}
			lo, err := canon(x.GetLow(), f.width, what.with(" low"))
			if err != nil {
				return nil, err
			}
			hi, err := canon(x.GetHigh(), f.width, what.with(" high"))
			if err != nil {
				return nil, err
			}
			id = appendPadded(id, lo, f.n)
			id = appendPadded(id, hi, f.n)
			plo, phi := id[start:start+f.n], id[start+f.n:]
			if bytes.Compare(plo, phi) > 0 {
				return nil, errf(codes.InvalidArgument, "%s: low bound 0x%x is above high bound 0x%x", what, lo, hi)
			}
			if isZero(plo) && bytes.Equal(phi, appendMax(nil, f.n, f.width)) {
				return nil, errf(codes.InvalidArgument, "%s: the range covers every value (omit the field to match anything)", what)
			}
			if e != nil {
				matches = append(matches, &p4v1.FieldMatch{FieldId: f.id, FieldMatchType: &p4v1.FieldMatch_Range_{Range: &p4v1.FieldMatch_Range{Low: keep(arena, lo), High: keep(arena, hi)}}})
				e.ranges = append(e.ranges, keyRange{off: f.off, n: f.n, low: keep(arena, plo), high: keep(arena, phi)})
			}
		case p4configv1.MatchField_OPTIONAL:
			if fm == nil {
				id = append(id, 0)
				id = appendPadded(id, nil, f.n)
				break
			}
			x := fm.GetOptional()
			if x == nil {
				return nil, errf(codes.InvalidArgument, "%s is an optional match field", what)
			}
			v, err := canon(x.GetValue(), f.width, what)
			if err != nil {
				return nil, err
			}
			id = append(id, 1)
			id = appendPadded(id, v, f.n)
			if e != nil {
				matches = append(matches, &p4v1.FieldMatch{FieldId: f.id, FieldMatchType: &p4v1.FieldMatch_Optional_{Optional: &p4v1.FieldMatch_Optional{Value: keep(arena, v)}}})
				copy(e.value[f.off:], id[start+1:])
				fill(e.mask[f.off:f.off+f.n], 0xff)
			}
		default:
			return nil, errf(codes.Unimplemented, "%s: match kind %v is not supported", what, f.kind)
		}
	}
	switch t.kind {
	case kindLPM:
		id = binary.BigEndian.AppendUint16(id, uint16(plen))
	case kindTernary:
		if t.Info.Priority {
			id = binary.BigEndian.AppendUint32(id, uint32(prio))
		}
	}
	sc.id = id
	if e != nil {
		e.prefix = plen
	}
	return matches, nil
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// appendMax appends the largest value of a width-bit field, padded to n bytes.
func appendMax(dst []byte, n, width int) []byte {
	lead := n*8 - width
	for i := range n {
		b := byte(0xff)
		if i == 0 && lead > 0 {
			b >>= lead
		}
		dst = append(dst, b)
	}
	return dst
}

// zeroFrom reports whether every bit of b from bit index keep on is zero.
func zeroFrom(b []byte, keep int) bool {
	for i, c := range b {
		switch {
		case (i+1)*8 <= keep:
		case i*8 >= keep:
			if c != 0 {
				return false
			}
		default:
			if c&^byte(0xff<<(8-(keep-i*8))) != 0 {
				return false
			}
		}
	}
	return true
}

// actionData is a checked action: its canonical message and decoded
// arguments.
type actionData struct {
	proto  *p4v1.Action
	id     uint32
	args   []uint64
	params [][]byte
}

// parseAction checks an action call against the P4Info: every parameter
// given once, with a value that fits.
func (s *Store) parseAction(a *p4v1.Action, sc *scratch, arena *[]byte) (actionData, error) {
	ai, err := s.schema.ActionByID(a.GetActionId())
	if err != nil {
		return actionData{}, errf(codes.InvalidArgument, "unknown action id %d", a.GetActionId())
	}
	specs := ai.GetParams()
	sc.param = slices.Grow(sc.param[:0], len(specs))[:len(specs)]
	clear(sc.param)
	for _, p := range a.GetParams() {
		i := slices.IndexFunc(specs, func(x *p4configv1.Action_Param) bool { return x.GetId() == p.GetParamId() })
		if i < 0 {
			return actionData{}, errf(codes.InvalidArgument, "action %s has no parameter id %d", ai.Name(), p.GetParamId())
		}
		if sc.param[i] != nil {
			return actionData{}, errf(codes.InvalidArgument, "action %s: parameter %s given twice", ai.Name(), specs[i].GetName())
		}
		sc.param[i] = p
	}
	d := actionData{id: ai.ID()}
	var pv []p4v1.Action_Param
	if b := sc.blk; b != nil {
		// Kept in the entry until entryAction sets them, so a failure
		// keeps the buffers.
		b.e.Args, b.e.Params = reuse(b.e.Args, len(specs)), reuse(b.e.Params, len(specs))
		b.act.Params, b.pv = reuse(b.act.Params, len(specs)), reuse(b.pv, len(specs))
		d.proto, d.args, d.params, pv = &b.act, b.e.Args, b.e.Params, b.pv
	} else {
		d.proto, d.args, d.params = &p4v1.Action{}, make([]uint64, len(specs)), make([][]byte, len(specs))
		d.proto.Params, pv = make([]*p4v1.Action_Param, len(specs)), make([]p4v1.Action_Param, len(specs))
	}
	d.proto.ActionId = ai.ID()
	for i, spec := range specs {
		p := sc.param[i]
		if p == nil {
			return actionData{}, errf(codes.InvalidArgument, "action %s: parameter %s is missing", ai.Name(), spec.GetName())
		}
		w := int(spec.GetBitwidth())
		v, err := canon(p.GetValue(), w, desc{"action ", ai.Name(), " parameter ", spec.GetName()})
		if err != nil {
			return actionData{}, err
		}
		pv[i].ParamId, pv[i].Value = spec.GetId(), keep(arena, v)
		d.proto.Params[i] = &pv[i]
		n := (w + 7) / 8
		start := len(*arena)
		*arena = appendPadded(*arena, v, n)
		d.params[i] = (*arena)[start : start+n : start+n]
		if w <= 64 {
			var x uint64
			for _, c := range v {
				x = x<<8 | uint64(c)
			}
			d.args[i] = x
		}
	}
	return d, nil
}

// tableAction checks that action id may run in t: as an entry action, or
// as the default action when isDefault.
func tableAction(t *Table, id uint32, isDefault bool) error {
	ref, err := t.Info.ActionRef(id)
	if err != nil {
		return errf(codes.InvalidArgument, "action id %d is not an action of table %s", id, t.Info.Name())
	}
	switch {
	case isDefault && ref.GetScope() == p4configv1.ActionRef_TABLE_ONLY:
		return errf(codes.PermissionDenied, "table %s: action id %d is @tableonly, it cannot be the default action", t.Info.Name(), id)
	case !isDefault && ref.GetScope() == p4configv1.ActionRef_DEFAULT_ONLY:
		return errf(codes.PermissionDenied, "table %s: action id %d is @defaultonly, it cannot be an entry's action", t.Info.Name(), id)
	}
	return nil
}

// defaultEntry builds a default entry of t running a.
func (s *Store) defaultEntry(t *Table, a *p4v1.Action) (*Entry, error) {
	if err := tableAction(t, a.GetActionId(), true); err != nil {
		return nil, err
	}
	var sc scratch
	var arena []byte
	d, err := s.parseAction(a, &sc, &arena)
	if err != nil {
		return nil, err
	}
	e := &Entry{ActionID: d.id, Args: d.args, Params: d.params}
	e.proto = &p4v1.TableEntry{TableId: t.Info.ID(), IsDefaultAction: true, Action: &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: d.proto}}}
	return e, nil
}

// writeTableEntry applies one table entry update.
func (s *Store) writeTableEntry(typ p4v1.Update_Type, te *p4v1.TableEntry, sc *scratch) error {
	t := s.tables[te.GetTableId()]
	if t == nil {
		return errf(codes.InvalidArgument, "unknown table id %d", te.GetTableId())
	}
	if te.GetIsConst() {
		return errf(codes.InvalidArgument, "table %s: is_const must be false in a write", t.Info.Name())
	}
	if te.GetIsDefaultAction() {
		return s.writeDefault(typ, t, te, sc)
	}
	if t.Info.GetIsConstTable() {
		return errf(codes.PermissionDenied, "table %s is const", t.Info.Name())
	}
	switch typ {
	case p4v1.Update_DELETE:
		if _, err := t.parseKey(te, sc, nil, nil); err != nil {
			return err
		}
		old := t.entries[string(sc.id)]
		if old == nil {
			return errf(codes.NotFound, "table %s: no such entry", t.Info.Name())
		}
		t.remove(old)
		release(old)
		s.dropBlock(old)
		return nil
	case p4v1.Update_INSERT, p4v1.Update_MODIFY:
	default:
		return errf(codes.InvalidArgument, "update type %v", typ)
	}
	blk := s.takeBlock()
	if err := s.fillEntry(typ, t, te, sc, blk); err != nil {
		// Never stored, so no reader has seen it.
		s.recycle(blk)
		return err
	}
	return nil
}

// fillEntry builds the entry of an INSERT or MODIFY of te in blk and stores
// it in t.
func (s *Store) fillEntry(typ p4v1.Update_Type, t *Table, te *p4v1.TableEntry, sc *scratch, blk *entryBlock) error {
	e := &blk.e
	arena := blk.arena[:0]
	defer func() { blk.arena = arena }()
	matches, err := t.parseKey(te, sc, blk, &arena)
	if err != nil {
		return err
	}
	old := t.entries[string(sc.id)]
	switch {
	case typ == p4v1.Update_INSERT && old != nil:
		return errf(codes.AlreadyExists, "table %s: entry already exists", t.Info.Name())
	case typ == p4v1.Update_MODIFY && old == nil:
		return errf(codes.NotFound, "table %s: no such entry", t.Info.Name())
	case typ == p4v1.Update_INSERT && t.size > 0 && t.count >= t.size:
		return errf(codes.ResourceExhausted, "table %s is full (%d entries)", t.Info.Name(), t.size)
	}
	if err := s.checkDirect(t, te); err != nil {
		return err
	}
	proto := &blk.te
	proto.TableId, proto.Match, proto.Priority, proto.ControllerMetadata = t.Info.ID(), matches, te.GetPriority(), te.GetControllerMetadata()
	if md := te.GetMetadata(); len(md) > 0 {
		proto.Metadata = keep(&arena, md)
	}
	switch {
	case te.GetAction() != nil:
		sc.blk = blk
		a, err := s.entryAction(t, e, old, te.GetAction(), sc, &arena)
		sc.blk = nil
		if err != nil {
			return err
		}
		proto.Action = a
	case typ == p4v1.Update_INSERT:
		return errf(codes.InvalidArgument, "table %s: an inserted entry needs an action", t.Info.Name())
	default:
		// MODIFY without an action keeps the action (spec §9.1.2).
		e.ActionID, e.Args, e.Params = old.ActionID, old.Args, old.Params
		e.MemberID, e.GroupID, e.member, e.group = old.MemberID, old.GroupID, old.member, old.group
		proto.Action = old.proto.GetAction()
	}
	e.proto = proto
	// The key views the block's own copy, which changes only once the
	// entry has left its table's maps and the block is reused.
	blk.key = append(blk.key[:0], sc.id...)
	e.key = unsafe.String(unsafe.SliceData(blk.key), len(blk.key))
	hold(e)
	if old == nil {
		t.insert(e)
	} else {
		t.replace(old, e)
		release(old)
		if te.GetAction() != nil {
			// A MODIFY without an action shares old's action data, so
			// only a new action frees old's block.
			s.dropBlock(old)
		}
	}
	if cd := te.GetCounterData(); cd != nil {
		e.Packets.Store(uint64(cd.GetPacketCount()))
		e.Bytes.Store(uint64(cd.GetByteCount()))
	}
	return nil
}

// entryAction checks the action of a table entry, sets it on e and returns
// its canonical form. old is the entry e replaces (MODIFY), or nil.
func (s *Store) entryAction(t *Table, e, old *Entry, ta *p4v1.TableAction, sc *scratch, arena *[]byte) (*p4v1.TableAction, error) {
	name := t.Info.Name()
	prof := t.Info.Profile
	// Only a direct action's messages go in the entry's block; one-shot
	// members' actions must not.
	blk := sc.blk
	sc.blk = nil
	switch x := ta.GetType().(type) {
	case *p4v1.TableAction_Action:
		if prof != nil {
			return nil, errf(codes.InvalidArgument, "table %s is indirect: entries name a member or group, not an action", name)
		}
		if err := tableAction(t, x.Action.GetActionId(), false); err != nil {
			return nil, err
		}
		sc.blk = blk
		d, err := s.parseAction(x.Action, sc, arena)
		sc.blk = nil
		if err != nil {
			return nil, err
		}
		e.ActionID, e.Args, e.Params = d.id, d.args, d.params
		if b := blk; b != nil {
			b.taAct.Action = d.proto
			b.ta.Type = &b.taAct
			return &b.ta, nil
		}
		return &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: d.proto}}, nil
	case *p4v1.TableAction_ActionProfileMemberId:
		if prof == nil {
			return nil, errf(codes.InvalidArgument, "table %s is direct: entries name an action, not a member", name)
		}
		p := s.profiles[prof.ID()]
		if len(p.oneshot) > 0 {
			return nil, mixing(p)
		}
		m := p.members[x.ActionProfileMemberId]
		if m == nil {
			return nil, errf(codes.NotFound, "table %s: profile %s has no member %d", name, prof.Name(), x.ActionProfileMemberId)
		}
		e.MemberID, e.member = m.ID, m
		return &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileMemberId{ActionProfileMemberId: m.ID}}, nil
	case *p4v1.TableAction_ActionProfileGroupId:
		if prof == nil || !prof.GetWithSelector() {
			return nil, errf(codes.InvalidArgument, "table %s has no action selector: entries cannot name a group", name)
		}
		p := s.profiles[prof.ID()]
		if len(p.oneshot) > 0 {
			return nil, mixing(p)
		}
		g := p.groups[x.ActionProfileGroupId]
		if g == nil {
			return nil, errf(codes.NotFound, "table %s: selector %s has no group %d", name, prof.Name(), x.ActionProfileGroupId)
		}
		e.GroupID, e.group = g.ID, g
		return &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileGroupId{ActionProfileGroupId: g.ID}}, nil
	case *p4v1.TableAction_ActionProfileActionSet:
		if prof == nil || !prof.GetWithSelector() {
			return nil, errf(codes.InvalidArgument, "table %s has no action selector: entries cannot carry an action set", name)
		}
		g, set, err := s.oneShot(t, s.profiles[prof.ID()], x.ActionProfileActionSet, old, sc, arena)
		if err != nil {
			return nil, err
		}
		e.group = g
		return &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileActionSet{ActionProfileActionSet: set}}, nil
	default:
		return nil, errf(codes.InvalidArgument, "table %s: the entry's action is empty", name)
	}
}

// checkDirect refuses direct resource data the table has no resource for.
func (s *Store) checkDirect(t *Table, te *p4v1.TableEntry) error {
	name := t.Info.Name()
	if te.GetCounterData() != nil && !t.directIx {
		return errf(codes.InvalidArgument, "table %s has no direct counter", name)
	}
	if cd := te.GetCounterData(); cd != nil && (cd.GetPacketCount() < 0 || cd.GetByteCount() < 0) {
		return errf(codes.InvalidArgument, "table %s: negative counter data", name)
	}
	if te.GetMeterConfig() != nil || te.GetMeterCounterData() != nil {
		return errf(codes.InvalidArgument, "table %s has no direct meter", name)
	}
	if te.GetIdleTimeoutNs() != 0 {
		if t.Info.GetIdleTimeoutBehavior() == p4configv1.Table_NO_TIMEOUT {
			return errf(codes.InvalidArgument, "table %s does not support idle timeout", name)
		}
		return errf(codes.Unimplemented, "table %s: idle timeout is not supported", name)
	}
	return nil
}

// hold and release count the references of an entry to its member or group,
// which keep them from being deleted.
func hold(e *Entry) {
	if e.member != nil {
		e.member.entries++
	}
	if e.group != nil {
		e.group.entries++
	}
}

func release(e *Entry) {
	if e.member != nil {
		e.member.entries--
	}
	if g := e.group; g != nil {
		g.entries--
		if g.owner != nil && g.entries == 0 {
			// The last entry holding a one-shot group: its hidden
			// members and group go with it (a MODIFY that keeps the
			// action set holds it from the new entry first).
			g.owner.dropOneShot(g)
		}
	}
}

// mixing is the error for a write that would mix one-shot entries with
// client members and groups on profile p (spec §9.2.3).
func mixing(p *profile) error {
	return errf(codes.InvalidArgument, "mixing one-shot and member/group programming on profile %s", p.info.Name())
}

// oneShot checks the action set of a one-shot entry of t and builds its
// hidden group in selector p, as PI does: one hidden member per action, in
// request order, each given as many BMv2 member handles as its weight (PI
// creates weight members per action), so the group's slots are laid out as
// BMv2's. old is the entry being modified, or nil: its hidden group, if
// any, is freed by the caller after this one is built, as PI frees the old
// group after the entry points at the new one. It returns the group and the
// canonical action set Read returns.
func (s *Store) oneShot(t *Table, p *profile, set *p4v1.ActionProfileActionSet, old *Entry, sc *scratch, arena *[]byte) (*Group, *p4v1.ActionProfileActionSet, error) {
	name, pname := t.Info.Name(), p.info.Name()
	acts := set.GetActionProfileActions()
	if len(acts) == 0 {
		return nil, nil, errf(codes.InvalidArgument, "table %s: the one-shot action set is empty", name)
	}
	if len(p.members) > 0 || len(p.groups) > 0 {
		return nil, nil, mixing(p)
	}
	sumOfMembers := p.info.GetSumOfMembers()
	g := &Group{owner: p}
	out := &p4v1.ActionProfileActionSet{ActionProfileActions: make([]*p4v1.ActionProfileAction, 0, len(acts))}
	size, handles := 0, 0
	for i, apa := range acts {
		w := apa.GetWeight()
		switch {
		case apa.GetAction() == nil:
			return nil, nil, errf(codes.InvalidArgument, "table %s: action %d of the action set is missing", name, i)
		case p.info.GetWeightsDisallowed() && w != 0:
			return nil, nil, errf(codes.InvalidArgument, "profile %s disallows weights: action %d of the set has weight %d", pname, i, w)
		case !p.info.GetWeightsDisallowed() && w < 1:
			return nil, nil, errf(codes.InvalidArgument, "table %s: action %d of the set has weight %d, weights are ≥ 1", name, i, w)
		case sumOfMembers != nil && sumOfMembers.GetMaxMemberWeight() > 0 && w > sumOfMembers.GetMaxMemberWeight():
			return nil, nil, errf(codes.InvalidArgument, "table %s: action %d of the set has weight %d, above %d", name, i, w, sumOfMembers.GetMaxMemberWeight())
		case apa.GetWatchPort() != nil || apa.GetWatch() != 0:
			return nil, nil, errf(codes.Unimplemented, "table %s: watch ports are not supported", name)
		}
		if err := tableAction(t, apa.GetAction().GetActionId(), false); err != nil {
			return nil, nil, err
		}
		d, err := s.parseAction(apa.GetAction(), sc, arena)
		if err != nil {
			return nil, nil, err
		}
		out.ActionProfileActions = append(out.ActionProfileActions, &p4v1.ActionProfileAction{Action: d.proto, Weight: w})
		if w == 0 {
			w = 1
		}
		if sumOfMembers != nil {
			size++
		} else {
			size += int(w)
		}
		handles += int(w)
		g.Members = append(g.Members, &Member{ActionID: d.id, Args: d.args, Params: d.params, groups: 1})
		g.Weights = append(g.Weights, w)
	}
	if limit := p.info.GetMaxGroupSize(); limit > 0 && size > int(limit) {
		return nil, nil, errf(codes.ResourceExhausted, "table %s: the action set's size %d exceeds profile %s's max_group_size %d", name, size, pname, limit)
	}
	if limit := p.info.GetSize(); limit > 0 {
		used := p.usedHandles()
		if og := old.oneShotGroup(); og != nil && og.entries == 1 {
			used -= len(og.slots)
		}
		if int64(used+handles) > limit {
			return nil, nil, errf(codes.ResourceExhausted, "profile %s is full (%d members)", pname, limit)
		}
	}
	// weigh hands out each member's handles in request order, lowest
	// free first: the same handles PI's member creations get from BMv2.
	p.weigh(g)
	p.oneshot[g] = struct{}{}
	return g, out, nil
}

// oneShotGroup is the hidden group of e, nil if e is nil or not a one-shot
// entry.
func (e *Entry) oneShotGroup() *Group {
	if e == nil || e.group == nil || e.group.owner == nil {
		return nil
	}
	return e.group
}

// writeDefault applies an update of t's default entry: MODIFY only.
func (s *Store) writeDefault(typ p4v1.Update_Type, t *Table, te *p4v1.TableEntry, sc *scratch) error {
	name := t.Info.Name()
	if typ != p4v1.Update_MODIFY {
		return errf(codes.InvalidArgument, "table %s: the default entry can only be modified, not inserted or deleted", name)
	}
	if len(te.GetMatch()) != 0 || te.GetPriority() != 0 {
		return errf(codes.InvalidArgument, "table %s: the default entry has no match and priority 0", name)
	}
	if t.Info.Profile != nil {
		return errf(codes.PermissionDenied, "table %s is indirect: its default entry is constant", name)
	}
	if t.Info.GetConstDefaultActionId() != 0 {
		return errf(codes.PermissionDenied, "table %s: the default action is const", name)
	}
	if err := s.checkDirect(t, te); err != nil {
		return err
	}
	old := t.Default
	var e *Entry
	if te.GetAction() == nil {
		// Reset to the P4Info default, direct resources and metadata
		// included (spec §9.1.3).
		if t.initial == nil {
			t.Default = nil
			return nil
		}
		init := t.initial
		e = &Entry{ActionID: init.ActionID, Args: init.Args, Params: init.Params, proto: init.proto}
		t.Default = e
		return nil
	}
	x, ok := te.GetAction().GetType().(*p4v1.TableAction_Action)
	if !ok {
		return errf(codes.InvalidArgument, "table %s: the default entry of a direct table runs an action", name)
	}
	e, err := s.defaultEntry(t, x.Action)
	if err != nil {
		return err
	}
	e.proto.ControllerMetadata = te.GetControllerMetadata()
	if md := te.GetMetadata(); len(md) > 0 {
		e.proto.Metadata = bytes.Clone(md)
	}
	if old != nil {
		e.Packets.Store(old.Packets.Load())
		e.Bytes.Store(old.Bytes.Load())
	}
	if cd := te.GetCounterData(); cd != nil {
		e.Packets.Store(uint64(cd.GetPacketCount()))
		e.Bytes.Store(uint64(cd.GetByteCount()))
	}
	t.Default = e
	return nil
}

// writeMember applies one action profile member update.
func (s *Store) writeMember(typ p4v1.Update_Type, m *p4v1.ActionProfileMember, sc *scratch) error {
	p := s.profiles[m.GetActionProfileId()]
	if p == nil {
		return errf(codes.InvalidArgument, "unknown action profile id %d", m.GetActionProfileId())
	}
	name := p.info.Name()
	if len(p.oneshot) > 0 {
		return mixing(p)
	}
	if m.GetMemberId() == 0 {
		return errf(codes.InvalidArgument, "profile %s: member id 0 is not valid", name)
	}
	old := p.members[m.GetMemberId()]
	switch typ {
	case p4v1.Update_DELETE:
		switch {
		case old == nil:
			return errf(codes.NotFound, "profile %s has no member %d", name, m.GetMemberId())
		case old.groups > 0:
			return errf(codes.FailedPrecondition, "profile %s: member %d is in %d group(s)", name, old.ID, old.groups)
		case old.entries > 0:
			return errf(codes.FailedPrecondition, "profile %s: member %d is used by %d table entries", name, old.ID, old.entries)
		}
		delete(p.members, old.ID)
		p.freeHandles(old.handles)
		return nil
	case p4v1.Update_INSERT:
		if old != nil {
			return errf(codes.AlreadyExists, "profile %s: member %d already exists", name, old.ID)
		}
		if size := p.info.GetSize(); size > 0 && int64(len(p.members)) >= size {
			return errf(codes.ResourceExhausted, "profile %s is full (%d members)", name, size)
		}
	case p4v1.Update_MODIFY:
		if old == nil {
			return errf(codes.NotFound, "profile %s has no member %d", name, m.GetMemberId())
		}
	default:
		return errf(codes.InvalidArgument, "update type %v", typ)
	}
	if m.GetAction() == nil {
		return errf(codes.InvalidArgument, "profile %s member %d: the action is missing", name, m.GetMemberId())
	}
	if err := s.profileAction(p, m.GetAction().GetActionId()); err != nil {
		return err
	}
	var arena []byte
	d, err := s.parseAction(m.GetAction(), sc, &arena)
	if err != nil {
		return err
	}
	proto := &p4v1.ActionProfileMember{ActionProfileId: p.info.ID(), MemberId: m.GetMemberId(), Action: d.proto}
	if old != nil {
		// In place, so every group and entry holding the member runs the
		// new action (spec §9.2.2).
		old.ActionID, old.Args, old.Params, old.proto = d.id, d.args, d.params, proto
		return nil
	}
	p.members[m.GetMemberId()] = &Member{ID: m.GetMemberId(), ActionID: d.id, Args: d.args, Params: d.params, proto: proto,
		handles: []uint32{p.newHandle()}}
	return nil
}

// profileAction checks that the tables of profile p can run action id.
func (s *Store) profileAction(p *profile, id uint32) error {
	for _, tid := range p.info.GetTableIds() {
		if t := s.tables[tid]; t != nil {
			return tableAction(t, id, false)
		}
	}
	return errf(codes.InvalidArgument, "profile %s is used by no table", p.info.Name())
}

// writeGroup applies one action profile group update.
func (s *Store) writeGroup(typ p4v1.Update_Type, g *p4v1.ActionProfileGroup) error {
	p := s.profiles[g.GetActionProfileId()]
	if p == nil {
		return errf(codes.InvalidArgument, "unknown action profile id %d", g.GetActionProfileId())
	}
	name := p.info.Name()
	if !p.info.GetWithSelector() {
		return errf(codes.InvalidArgument, "profile %s has no selector, so no groups", name)
	}
	if len(p.oneshot) > 0 {
		return mixing(p)
	}
	if g.GetGroupId() == 0 {
		return errf(codes.InvalidArgument, "profile %s: group id 0 is not valid", name)
	}
	old := p.groups[g.GetGroupId()]
	switch typ {
	case p4v1.Update_DELETE:
		switch {
		case old == nil:
			return errf(codes.NotFound, "profile %s has no group %d", name, g.GetGroupId())
		case old.entries > 0:
			return errf(codes.FailedPrecondition, "profile %s: group %d is used by %d table entries", name, old.ID, old.entries)
		}
		for _, m := range old.Members {
			m.groups--
		}
		delete(p.groups, old.ID)
		p.purge(old.Members)
		return nil
	case p4v1.Update_INSERT:
		if old != nil {
			return errf(codes.AlreadyExists, "profile %s: group %d already exists", name, old.ID)
		}
	case p4v1.Update_MODIFY:
		if old == nil {
			return errf(codes.NotFound, "profile %s has no group %d", name, g.GetGroupId())
		}
		if g.GetMaxSize() != old.proto.GetMaxSize() {
			return errf(codes.InvalidArgument, "profile %s group %d: max_size cannot change (%d, was %d)", name, old.ID, g.GetMaxSize(), old.proto.GetMaxSize())
		}
	default:
		return errf(codes.InvalidArgument, "update type %v", typ)
	}
	maxGroup := p.info.GetMaxGroupSize()
	ms := g.GetMaxSize()
	if ms < 0 || (maxGroup > 0 && ms > maxGroup) {
		return errf(codes.InvalidArgument, "profile %s group %d: max_size %d is not in 0..%d", name, g.GetGroupId(), ms, maxGroup)
	}
	// max_size 0 with a max_group_size leaves the size to the target, as
	// PI does, so clients that do not set it keep working.
	limit := int(ms)
	if limit == 0 {
		limit = int(maxGroup)
	}
	ng := &Group{ID: g.GetGroupId()}
	proto := &p4v1.ActionProfileGroup{ActionProfileId: p.info.ID(), GroupId: g.GetGroupId(), MaxSize: ms}
	type mw struct {
		m *Member
		w int32
	}
	list := make([]mw, 0, len(g.GetMembers()))
	size := 0
	sumOfMembers := p.info.GetSumOfMembers()
	for _, gm := range g.GetMembers() {
		id, w := gm.GetMemberId(), gm.GetWeight()
		if slices.ContainsFunc(list, func(x mw) bool { return x.m.ID == id }) {
			return errf(codes.InvalidArgument, "profile %s group %d: member %d given twice", name, g.GetGroupId(), id)
		}
		switch {
		case p.info.GetWeightsDisallowed() && w != 0:
			return errf(codes.InvalidArgument, "profile %s disallows weights: member %d has weight %d", name, id, w)
		case !p.info.GetWeightsDisallowed() && w < 1:
			return errf(codes.InvalidArgument, "profile %s group %d: member %d has weight %d, weights are ≥ 1", name, g.GetGroupId(), id, w)
		case sumOfMembers != nil && sumOfMembers.GetMaxMemberWeight() > 0 && w > sumOfMembers.GetMaxMemberWeight():
			return errf(codes.InvalidArgument, "profile %s group %d: member %d weight %d exceeds %d", name, g.GetGroupId(), id, w, sumOfMembers.GetMaxMemberWeight())
		case gm.GetWatchPort() != nil || gm.GetWatch() != 0:
			return errf(codes.Unimplemented, "profile %s group %d: watch ports are not supported", name, g.GetGroupId())
		}
		m := p.members[id]
		if m == nil {
			return errf(codes.NotFound, "profile %s has no member %d", name, id)
		}
		if w == 0 {
			w = 1
		}
		if sumOfMembers != nil {
			size++
		} else {
			size += int(w)
		}
		list = append(list, mw{m, w})
		proto.Members = append(proto.Members, &p4v1.ActionProfileGroup_Member{MemberId: id, Weight: gm.GetWeight()})
	}
	if limit > 0 && size > limit {
		return errf(codes.ResourceExhausted, "profile %s group %d: size %d exceeds %d", name, g.GetGroupId(), size, limit)
	}
	slices.SortFunc(list, func(a, b mw) int { return int(a.m.ID) - int(b.m.ID) })
	slices.SortFunc(proto.Members, func(a, b *p4v1.ActionProfileGroup_Member) int { return int(a.MemberId) - int(b.MemberId) })
	for _, x := range list {
		ng.Members = append(ng.Members, x.m)
		ng.Weights = append(ng.Weights, x.w)
		x.m.groups++
	}
	ng.proto = proto
	p.weigh(ng)
	if old != nil {
		for _, m := range old.Members {
			m.groups--
		}
		gone := old.Members
		// In place, so entries pointing at the group see the new members.
		old.Members, old.Weights, old.slots, old.proto = ng.Members, ng.Weights, ng.slots, ng.proto
		p.purge(gone)
		return nil
	}
	p.groups[ng.ID] = ng
	return nil
}

// writeDirectCounter applies a DirectCounterEntry update: MODIFY only.
func (s *Store) writeDirectCounter(typ p4v1.Update_Type, dc *p4v1.DirectCounterEntry, sc *scratch) error {
	if typ != p4v1.Update_MODIFY {
		return errf(codes.InvalidArgument, "direct counter entries can only be modified")
	}
	e, err := s.directEntry(dc.GetTableEntry(), sc)
	if err != nil {
		return err
	}
	if d := dc.GetData(); d != nil {
		if d.GetPacketCount() < 0 || d.GetByteCount() < 0 {
			return errf(codes.InvalidArgument, "negative counter data")
		}
		e.Packets.Store(uint64(d.GetPacketCount()))
		e.Bytes.Store(uint64(d.GetByteCount()))
	}
	return nil
}

// directEntry finds the entry whose direct counter te names.
func (s *Store) directEntry(te *p4v1.TableEntry, sc *scratch) (*Entry, error) {
	if te == nil {
		return nil, errf(codes.InvalidArgument, "direct counter entry without a table entry")
	}
	t := s.tables[te.GetTableId()]
	if t == nil {
		return nil, errf(codes.InvalidArgument, "unknown table id %d", te.GetTableId())
	}
	if !t.directIx {
		return nil, errf(codes.InvalidArgument, "table %s has no direct counter", t.Info.Name())
	}
	if te.GetIsDefaultAction() {
		if t.Default == nil {
			return nil, errf(codes.NotFound, "table %s has no default entry", t.Info.Name())
		}
		return t.Default, nil
	}
	if _, err := t.parseKey(te, sc, nil, nil); err != nil {
		return nil, err
	}
	e := t.entries[string(sc.id)]
	if e == nil {
		return nil, errf(codes.NotFound, "table %s: no such entry", t.Info.Name())
	}
	return e, nil
}
