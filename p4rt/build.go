package p4rt

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
)

// Match is one match field of a table entry, made by Exact, LPM, Prefix,
// Ternary, Optional or Range. Its kind must be the field's match kind.
type Match struct {
	Field     string
	Kind      p4configv1.MatchField_MatchType
	Value     Value
	Mask      Value // ternary
	High      Value // range
	PrefixLen int   // LPM
}

// Exact matches field against v.
func Exact(field string, v Value) Match {
	return Match{Field: field, Kind: p4configv1.MatchField_EXACT, Value: v}
}

// LPM matches the first prefixLen bits of field against v; bits of v past
// the prefix are cleared.
func LPM(field string, v Value, prefixLen int) Match {
	return Match{Field: field, Kind: p4configv1.MatchField_LPM, Value: v, PrefixLen: prefixLen}
}

// Prefix is LPM of an address prefix. A /0 prefix is a don't-care match and
// is left out of the entry, as the spec requires.
func Prefix(field string, p netip.Prefix) Match {
	return LPM(field, IP(p.Addr()), p.Bits())
}

// Ternary matches field against v under mask.
func Ternary(field string, v, mask Value) Match {
	return Match{Field: field, Kind: p4configv1.MatchField_TERNARY, Value: v, Mask: mask}
}

// Optional matches field against v exactly; leave it out to match anything.
func Optional(field string, v Value) Match {
	return Match{Field: field, Kind: p4configv1.MatchField_OPTIONAL, Value: v}
}

// Range matches lo <= field <= hi.
func Range(field string, lo, hi Value) Match {
	return Match{Field: field, Kind: p4configv1.MatchField_RANGE, Value: lo, High: hi}
}

// Param is one action parameter (or packet metadata field) by name.
type Param struct {
	Name  string
	Value Value
}

// P makes a Param.
func P(name string, v Value) Param { return Param{Name: name, Value: v} }

// ActionCall is an action with its arguments by name.
type ActionCall struct {
	Name   string
	Params []Param
}

// Call makes an ActionCall.
func Call(name string, params ...Param) ActionCall { return ActionCall{Name: name, Params: params} }

// Entry describes a table entry by name. Exactly one of Action, Member or
// Group is set: a direct action for a plain table, a member or group
// reference for a table with an action profile or selector.
type Entry struct {
	Table    string
	Match    []Match
	Action   *ActionCall
	Member   uint32
	Group    uint32
	Priority int32
}

// TableEntry builds the P4Runtime TableEntry for e, checking every name,
// kind, width and rule the spec puts on a table entry, so the error names the
// field at fault rather than a switch's status code.
func (s *Schema) TableEntry(e Entry) (*p4v1.TableEntry, error) {
	t, err := s.Table(e.Table)
	if err != nil {
		return nil, err
	}
	te := &p4v1.TableEntry{TableId: t.ID(), Priority: e.Priority}
	if t.Priority && e.Priority <= 0 {
		return nil, fmt.Errorf("table %s has ternary, range or optional fields: entries need a priority > 0", t.Name())
	}
	if !t.Priority && e.Priority != 0 {
		return nil, fmt.Errorf("table %s has only exact and LPM fields: priority must be 0, not %d", t.Name(), e.Priority)
	}
	te.Match, err = s.matches(t, e.Match)
	if err != nil {
		return nil, err
	}
	te.Action, err = s.tableAction(t, e, false)
	if err != nil {
		return nil, err
	}
	return te, nil
}

// DefaultEntry builds the entry that sets table's default action: a MODIFY
// of it is the only write the spec allows on a default entry.
func (s *Schema) DefaultEntry(table string, a ActionCall) (*p4v1.TableEntry, error) {
	t, err := s.Table(table)
	if err != nil {
		return nil, err
	}
	if t.GetConstDefaultActionId() != 0 {
		return nil, fmt.Errorf("table %s has a const default action", t.Name())
	}
	if t.Profile != nil {
		return nil, fmt.Errorf("table %s uses action profile %s and has no default action to set", t.Name(), t.Profile.Name())
	}
	ta, err := s.tableAction(t, Entry{Action: &a}, true)
	if err != nil {
		return nil, err
	}
	return &p4v1.TableEntry{TableId: t.ID(), IsDefaultAction: true, Action: ta}, nil
}

func (s *Schema) matches(t *Table, ms []Match) ([]*p4v1.FieldMatch, error) {
	out := make([]*p4v1.FieldMatch, 0, len(ms))
	for _, m := range ms {
		f, err := t.Field(m.Field)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(out, func(fm *p4v1.FieldMatch) bool { return fm.FieldId == f.GetId() }) {
			return nil, fmt.Errorf("table %s: field %s given twice", t.Name(), m.Field)
		}
		if f.GetMatchType() != m.Kind {
			return nil, fmt.Errorf("table %s: field %s is %s, not %s", t.Name(), m.Field, f.GetMatchType(), m.Kind)
		}
		fm, err := fieldMatch(f, m)
		if err != nil {
			return nil, fmt.Errorf("table %s field %s: %w", t.Name(), m.Field, err)
		}
		if fm != nil {
			out = append(out, fm)
		}
	}
	for _, f := range t.GetMatchFields() {
		if f.GetMatchType() == p4configv1.MatchField_EXACT &&
			!slices.ContainsFunc(out, func(fm *p4v1.FieldMatch) bool { return fm.FieldId == f.GetId() }) {
			return nil, fmt.Errorf("table %s: exact field %s is missing", t.Name(), f.GetName())
		}
	}
	// Servers answer reads in field-ID order; building in that order too
	// makes written and read entries compare equal.
	slices.SortFunc(out, func(a, b *p4v1.FieldMatch) int { return int(a.FieldId) - int(b.FieldId) })
	return out, nil
}

// fieldMatch encodes one field; it returns nil for a don't-care match, which
// the spec requires to be left out.
func fieldMatch(f *p4configv1.MatchField, m Match) (*p4v1.FieldMatch, error) {
	w := int(f.GetBitwidth())
	if m.Value == nil {
		return nil, fmt.Errorf("%w: no value", ErrValue)
	}
	v, err := m.Value.Encode(w)
	if err != nil {
		return nil, err
	}
	var fm *p4v1.FieldMatch
	switch m.Kind {
	case p4configv1.MatchField_EXACT:
		// The field, its oneof wrapper and its value message in one
		// allocation: exact fields are most of what a controller builds.
		b := &exactMatch{}
		b.x.Value = v
		b.w.Exact = &b.x
		b.fm.FieldId, b.fm.FieldMatchType = f.GetId(), &b.w
		return &b.fm, nil
	case p4configv1.MatchField_OPTIONAL:
		fm = &p4v1.FieldMatch{FieldId: f.GetId(), FieldMatchType: &p4v1.FieldMatch_Optional_{Optional: &p4v1.FieldMatch_Optional{Value: v}}}
	case p4configv1.MatchField_LPM:
		if m.PrefixLen == 0 {
			return nil, nil
		}
		v, err = MaskPrefix(v, w, m.PrefixLen)
		if err != nil {
			return nil, err
		}
		fm = &p4v1.FieldMatch{FieldId: f.GetId(), FieldMatchType: &p4v1.FieldMatch_Lpm{Lpm: &p4v1.FieldMatch_LPM{Value: v, PrefixLen: int32(m.PrefixLen)}}}
	case p4configv1.MatchField_TERNARY:
		if m.Mask == nil {
			return nil, fmt.Errorf("%w: ternary match without a mask", ErrValue)
		}
		mask, err := m.Mask.Encode(w)
		if err != nil {
			return nil, err
		}
		if err := CheckTernary(v, mask, w); err != nil {
			return nil, err
		}
		fm = &p4v1.FieldMatch{FieldId: f.GetId(), FieldMatchType: &p4v1.FieldMatch_Ternary_{Ternary: &p4v1.FieldMatch_Ternary{Value: v, Mask: mask}}}
	case p4configv1.MatchField_RANGE:
		if m.High == nil {
			return nil, fmt.Errorf("%w: range match without a high bound", ErrValue)
		}
		hi, err := m.High.Encode(w)
		if err != nil {
			return nil, err
		}
		n := (w + 7) / 8
		if string(padTo(v, n)) > string(padTo(hi, n)) {
			return nil, fmt.Errorf("%w: range low 0x%x above high 0x%x", ErrValue, v, hi)
		}
		fm = &p4v1.FieldMatch{FieldId: f.GetId(), FieldMatchType: &p4v1.FieldMatch_Range_{Range: &p4v1.FieldMatch_Range{Low: v, High: hi}}}
	default:
		return nil, fmt.Errorf("%w: unsupported match kind %s", ErrValue, m.Kind)
	}
	return fm, nil
}

// exactMatch is an exact FieldMatch with its messages, allocated together.
type exactMatch struct {
	fm p4v1.FieldMatch
	w  p4v1.FieldMatch_Exact_
	x  p4v1.FieldMatch_Exact
}

func (s *Schema) tableAction(t *Table, e Entry, isDefault bool) (*p4v1.TableAction, error) {
	set := 0
	for _, b := range []bool{e.Action != nil, e.Member != 0, e.Group != 0} {
		if b {
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("table %s: give exactly one of an action, a member or a group", t.Name())
	}
	if e.Action == nil {
		if t.Profile == nil {
			return nil, fmt.Errorf("table %s has no action profile: use a direct action", t.Name())
		}
		if e.Group != 0 {
			if !t.Profile.GetWithSelector() {
				return nil, fmt.Errorf("table %s: profile %s has no selector, so no groups", t.Name(), t.Profile.Name())
			}
			return &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileGroupId{ActionProfileGroupId: e.Group}}, nil
		}
		return &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileMemberId{ActionProfileMemberId: e.Member}}, nil
	}
	if t.Profile != nil {
		return nil, fmt.Errorf("table %s uses action profile %s: reference a member or group", t.Name(), t.Profile.Name())
	}
	a, err := s.action(*e.Action)
	if err != nil {
		return nil, err
	}
	ref, err := t.ActionRef(a.ActionId)
	if err != nil {
		return nil, err
	}
	switch {
	case isDefault && ref.GetScope() == p4configv1.ActionRef_TABLE_ONLY:
		return nil, fmt.Errorf("table %s: action %s is @tableonly, not a default action", t.Name(), e.Action.Name)
	case !isDefault && ref.GetScope() == p4configv1.ActionRef_DEFAULT_ONLY:
		return nil, fmt.Errorf("table %s: action %s is @defaultonly", t.Name(), e.Action.Name)
	}
	b := &directAction{}
	b.w.Action = a
	b.ta.Type = &b.w
	return &b.ta, nil
}

// directAction is a TableAction of a direct action with its oneof wrapper,
// allocated together.
type directAction struct {
	ta p4v1.TableAction
	w  p4v1.TableAction_Action
}

// action encodes an action call: every parameter given once, by name.
func (s *Schema) action(c ActionCall) (*p4v1.Action, error) {
	a, err := s.Action(c.Name)
	if err != nil {
		return nil, err
	}
	params, err := encodeParams(a.Name(), a.GetParams(), c.Params, false)
	if err != nil {
		return nil, err
	}
	out := &p4v1.Action{ActionId: a.ID(), Params: make([]*p4v1.Action_Param, len(params))}
	ps := make([]p4v1.Action_Param, len(params)) // one allocation for all
	for i, p := range params {
		ps[i].ParamId, ps[i].Value = p.id, p.value
		out.Params[i] = &ps[i]
	}
	return out, nil
}

type encoded struct {
	id    uint32
	value []byte
}

// paramSpec is what action params and packet metadata fields share.
type paramSpec interface {
	GetId() uint32
	GetName() string
	GetBitwidth() int32
}

// encodeParams encodes args against specs in spec order. With zeroMissing a
// spec without an argument is encoded as zero (padding fields of packet
// metadata), otherwise it is an error.
func encodeParams[S paramSpec](owner string, specs []S, args []Param, zeroMissing bool) ([]encoded, error) {
	out := make([]encoded, len(specs))
	var seenBuf [16]bool
	seen := seenBuf[:0]
	if len(specs) <= len(seenBuf) {
		seen = seenBuf[:len(specs)]
	} else {
		seen = make([]bool, len(specs))
	}
	for _, arg := range args {
		i := slices.IndexFunc(specs, func(p S) bool { return p.GetName() == arg.Name })
		if i < 0 {
			return nil, fmt.Errorf("%s: parameter %q: %w", owner, arg.Name, ErrUnknown)
		}
		if seen[i] {
			return nil, fmt.Errorf("%s: parameter %s given twice", owner, arg.Name)
		}
		if arg.Value == nil {
			return nil, fmt.Errorf("%s: parameter %s: %w: no value", owner, arg.Name, ErrValue)
		}
		v, err := arg.Value.Encode(int(specs[i].GetBitwidth()))
		if err != nil {
			return nil, fmt.Errorf("%s: parameter %s: %w", owner, arg.Name, err)
		}
		out[i], seen[i] = encoded{specs[i].GetId(), v}, true
	}
	for i, p := range specs {
		if seen[i] {
			continue
		}
		if !zeroMissing {
			return nil, fmt.Errorf("%s: parameter %s is missing", owner, p.GetName())
		}
		out[i] = encoded{p.GetId(), []byte{0}}
	}
	return out, nil
}

// GroupMember is one member of an action profile group with its weight.
type GroupMember struct {
	ID     uint32
	Weight int32
}

// ActionProfileMember builds member id of profile running action a.
func (s *Schema) ActionProfileMember(profile string, id uint32, a ActionCall) (*p4v1.ActionProfileMember, error) {
	p, err := s.ActionProfile(profile)
	if err != nil {
		return nil, err
	}
	if id == 0 {
		return nil, fmt.Errorf("profile %s: member id 0 is reserved", p.Name())
	}
	act, err := s.action(a)
	if err != nil {
		return nil, err
	}
	if err := s.profileRunsAction(p, act.ActionId); err != nil {
		return nil, err
	}
	return &p4v1.ActionProfileMember{ActionProfileId: p.ID(), MemberId: id, Action: act}, nil
}

// profileRunsAction checks that some table of the profile can run action id.
func (s *Schema) profileRunsAction(p *ActionProfile, id uint32) error {
	for _, tid := range p.GetTableIds() {
		t, err := s.TableByID(tid)
		if err != nil {
			return err
		}
		if _, err := t.ActionRef(id); err == nil {
			return nil
		}
	}
	a, _ := s.ActionByID(id)
	return fmt.Errorf("profile %s: no table of it runs action %s", p.Name(), a.Name())
}

// ActionProfileGroup builds group id of a selector profile. maxSize 0 leaves
// the size to the target.
func (s *Schema) ActionProfileGroup(profile string, id uint32, members []GroupMember, maxSize int32) (*p4v1.ActionProfileGroup, error) {
	p, err := s.ActionProfile(profile)
	if err != nil {
		return nil, err
	}
	if !p.GetWithSelector() {
		return nil, fmt.Errorf("profile %s has no selector, so no groups", p.Name())
	}
	if id == 0 {
		return nil, fmt.Errorf("profile %s: group id 0 is reserved", p.Name())
	}
	// The group's size is its sum of weights unless the P4Info says sizes
	// count members (P4Runtime 1.4 selector_size_semantics).
	size := int32(0)
	for _, m := range members {
		if p.GetSumOfMembers() != nil {
			size++
		} else {
			size += m.Weight
		}
	}
	if limit := p.GetMaxGroupSize(); limit > 0 && size > limit {
		return nil, fmt.Errorf("profile %s: group size %d exceeds the max group size %d", p.Name(), size, limit)
	}
	g := &p4v1.ActionProfileGroup{ActionProfileId: p.ID(), GroupId: id, MaxSize: maxSize}
	for _, m := range members {
		if m.ID == 0 || m.Weight <= 0 {
			return nil, fmt.Errorf("profile %s group %d: member %d with weight %d (ids and weights must be > 0)", p.Name(), id, m.ID, m.Weight)
		}
		if slices.ContainsFunc(g.Members, func(x *p4v1.ActionProfileGroup_Member) bool { return x.MemberId == m.ID }) {
			return nil, fmt.Errorf("profile %s group %d: member %d given twice", p.Name(), id, m.ID)
		}
		g.Members = append(g.Members, &p4v1.ActionProfileGroup_Member{MemberId: m.ID, Weight: m.Weight})
	}
	// Sorted by member id: the order reads come back in, so a reconcile sees
	// no change where there is none.
	slices.SortFunc(g.Members, func(a, b *p4v1.ActionProfileGroup_Member) int { return int(a.MemberId) - int(b.MemberId) })
	return g, nil
}

// DirectCounterEntry builds the direct counter entry of the table entry e
// (its action is ignored). data nil reads or resets to zero.
func (s *Schema) DirectCounterEntry(e Entry, data *p4v1.CounterData) (*p4v1.DirectCounterEntry, error) {
	t, err := s.Table(e.Table)
	if err != nil {
		return nil, err
	}
	if t.Counter == nil {
		return nil, fmt.Errorf("table %s has no direct counter", t.Name())
	}
	match, err := s.matches(t, e.Match)
	if err != nil {
		return nil, err
	}
	return &p4v1.DirectCounterEntry{
		TableEntry: &p4v1.TableEntry{TableId: t.ID(), Match: match, Priority: e.Priority},
		Data:       data,
	}, nil
}

// PacketOut builds a packet-out with one metadata value per field of the
// packet_out controller header, as the spec requires; fields not given (such
// as padding) are zero.
func (s *Schema) PacketOut(payload []byte, meta ...Param) (*p4v1.PacketOut, error) {
	m, err := s.PacketMetadata("packet_out")
	if err != nil {
		return nil, err
	}
	vals, err := encodeParams("packet_out", m.GetMetadata(), meta, true)
	if err != nil {
		return nil, err
	}
	po := &p4v1.PacketOut{Payload: payload, Metadata: make([]*p4v1.PacketMetadata, len(vals))}
	for i, v := range vals {
		po.Metadata[i] = &p4v1.PacketMetadata{MetadataId: v.id, Value: v.value}
	}
	return po, nil
}

// PacketInMetadata decodes the metadata of a packet-in by field name.
func (s *Schema) PacketInMetadata(pi *p4v1.PacketIn) (map[string]uint64, error) {
	m, err := s.PacketMetadata("packet_in")
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(pi.GetMetadata()))
	for _, md := range pi.GetMetadata() {
		f, err := m.FieldByID(md.GetMetadataId())
		if err != nil {
			return nil, err
		}
		v, err := DecodeUint(md.GetValue(), int(f.GetBitwidth()))
		if err != nil {
			return nil, fmt.Errorf("packet_in %s: %w", f.GetName(), err)
		}
		out[f.GetName()] = v
	}
	return out, nil
}

// DigestEntry builds the entry that enables digest name with the given
// batching config (INSERT it to enable, MODIFY to change, DELETE to disable).
func (s *Schema) DigestEntry(name string, cfg *p4v1.DigestEntry_Config) (*p4v1.DigestEntry, error) {
	d, err := s.Digest(name)
	if err != nil {
		return nil, err
	}
	return &p4v1.DigestEntry{DigestId: d.GetPreamble().GetId(), Config: cfg}, nil
}

// ErrNoEntity is returned by Entity for a message that is not an entity.
var ErrNoEntity = errors.New("not a P4Runtime entity")

// Entity wraps an entity message (*p4v1.TableEntry, *p4v1.ActionProfileMember,
// ...) in a p4v1.Entity.
func Entity(msg any) (*p4v1.Entity, error) {
	switch m := msg.(type) {
	case *p4v1.Entity:
		return m, nil
	case *p4v1.TableEntry:
		return &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: m}}, nil
	case *p4v1.ActionProfileMember:
		return &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: m}}, nil
	case *p4v1.ActionProfileGroup:
		return &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: m}}, nil
	case *p4v1.DirectCounterEntry:
		return &p4v1.Entity{Entity: &p4v1.Entity_DirectCounterEntry{DirectCounterEntry: m}}, nil
	case *p4v1.CounterEntry:
		return &p4v1.Entity{Entity: &p4v1.Entity_CounterEntry{CounterEntry: m}}, nil
	case *p4v1.DigestEntry:
		return &p4v1.Entity{Entity: &p4v1.Entity_DigestEntry{DigestEntry: m}}, nil
	}
	return nil, fmt.Errorf("%w: %T", ErrNoEntity, msg)
}

// Update wraps an entity message in an update of type t.
func Update(t p4v1.Update_Type, msg any) (*p4v1.Update, error) {
	e, err := Entity(msg)
	if err != nil {
		return nil, err
	}
	return &p4v1.Update{Type: t, Entity: e}, nil
}
