package p4rt

import (
	"errors"
	"fmt"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
)

// ErrUnknown is wrapped by every lookup of a name or ID the P4Info does not
// have. Silently mapping an unknown name to ID 0 is how a typo becomes a
// switch error far from its cause, so every lookup fails loudly instead.
var ErrUnknown = errors.New("not in P4Info")

// Schema is an index of one P4Info. It is immutable once built and safe for
// concurrent use.
type Schema struct {
	info *p4configv1.P4Info

	tables         index[*Table]
	actions        index[*Action]
	profiles       index[*ActionProfile]
	directCounters index[*DirectCounter]
	counters       index[*p4configv1.Counter]
	digests        index[*p4configv1.Digest]
	packetMeta     map[string]*PacketMetadata // by controller_header name: "packet_in", "packet_out"
}

// Table is a P4Info table with its fields, actions and implementation resolved.
type Table struct {
	*p4configv1.Table
	fields   index[*p4configv1.MatchField]
	actions  map[uint32]*p4configv1.ActionRef
	Profile  *ActionProfile // the action profile or selector, nil for direct actions
	Counter  *DirectCounter // the direct counter, if any
	Priority bool           // entries carry a priority: a ternary, range or optional field
}

// Action is a P4Info action with its parameters indexed.
type Action struct {
	*p4configv1.Action
	params index[*p4configv1.Action_Param]
}

// ActionProfile is a P4Info action profile (or selector, WithSelector).
type ActionProfile struct {
	*p4configv1.ActionProfile
}

// DirectCounter is a P4Info direct counter.
type DirectCounter struct {
	*p4configv1.DirectCounter
}

// PacketMetadata is one controller header (packet_in or packet_out).
type PacketMetadata struct {
	*p4configv1.ControllerPacketMetadata
	fields index[*p4configv1.ControllerPacketMetadata_Metadata]
}

// index finds a P4Info object by fully qualified name, by alias, or by ID.
type index[T any] struct {
	kind   string
	byName map[string]T
	byID   map[uint32]T
}

func newIndex[T any](kind string) index[T] {
	return index[T]{kind: kind, byName: map[string]T{}, byID: map[uint32]T{}}
}

func (x *index[T]) add(id uint32, name, alias string, v T) error {
	if _, dup := x.byID[id]; dup {
		return fmt.Errorf("P4Info: duplicate %s id 0x%08x (%s)", x.kind, id, name)
	}
	x.byID[id] = v
	x.byName[name] = v
	// An alias shadows nothing: a full name always wins over another
	// object's alias.
	if _, taken := x.byName[alias]; alias != "" && !taken {
		x.byName[alias] = v
	}
	return nil
}

func (x *index[T]) name(name string) (T, error) {
	v, ok := x.byName[name]
	if !ok {
		return v, fmt.Errorf("%s %q: %w", x.kind, name, ErrUnknown)
	}
	return v, nil
}

func (x *index[T]) id(id uint32) (T, error) {
	v, ok := x.byID[id]
	if !ok {
		return v, fmt.Errorf("%s id 0x%08x: %w", x.kind, id, ErrUnknown)
	}
	return v, nil
}

// NewSchema indexes info. It refuses a P4Info whose cross references are
// broken (a table naming an action or profile that is not there), since no
// switch would accept it either.
func NewSchema(info *p4configv1.P4Info) (*Schema, error) {
	if info == nil {
		return nil, errors.New("P4Info is nil")
	}
	s := &Schema{
		info:           info,
		tables:         newIndex[*Table]("table"),
		actions:        newIndex[*Action]("action"),
		profiles:       newIndex[*ActionProfile]("action profile"),
		directCounters: newIndex[*DirectCounter]("direct counter"),
		counters:       newIndex[*p4configv1.Counter]("counter"),
		digests:        newIndex[*p4configv1.Digest]("digest"),
		packetMeta:     map[string]*PacketMetadata{},
	}
	for _, a := range info.GetActions() {
		act := &Action{Action: a, params: newIndex[*p4configv1.Action_Param]("param of " + a.GetPreamble().GetName())}
		for _, p := range a.GetParams() {
			if err := act.params.add(p.GetId(), p.GetName(), "", p); err != nil {
				return nil, err
			}
		}
		if err := s.actions.add(a.GetPreamble().GetId(), a.GetPreamble().GetName(), a.GetPreamble().GetAlias(), act); err != nil {
			return nil, err
		}
	}
	for _, p := range info.GetActionProfiles() {
		if err := s.profiles.add(p.GetPreamble().GetId(), p.GetPreamble().GetName(), p.GetPreamble().GetAlias(), &ActionProfile{p}); err != nil {
			return nil, err
		}
	}
	for _, c := range info.GetDirectCounters() {
		if err := s.directCounters.add(c.GetPreamble().GetId(), c.GetPreamble().GetName(), c.GetPreamble().GetAlias(), &DirectCounter{c}); err != nil {
			return nil, err
		}
	}
	for _, c := range info.GetCounters() {
		if err := s.counters.add(c.GetPreamble().GetId(), c.GetPreamble().GetName(), c.GetPreamble().GetAlias(), c); err != nil {
			return nil, err
		}
	}
	for _, d := range info.GetDigests() {
		if err := s.digests.add(d.GetPreamble().GetId(), d.GetPreamble().GetName(), d.GetPreamble().GetAlias(), d); err != nil {
			return nil, err
		}
	}
	for _, t := range info.GetTables() {
		tbl, err := s.newTable(t)
		if err != nil {
			return nil, err
		}
		if err := s.tables.add(t.GetPreamble().GetId(), t.GetPreamble().GetName(), t.GetPreamble().GetAlias(), tbl); err != nil {
			return nil, err
		}
	}
	for _, m := range info.GetControllerPacketMetadata() {
		pm := &PacketMetadata{ControllerPacketMetadata: m, fields: newIndex[*p4configv1.ControllerPacketMetadata_Metadata]("metadata of " + m.GetPreamble().GetName())}
		for _, f := range m.GetMetadata() {
			if err := pm.fields.add(f.GetId(), f.GetName(), "", f); err != nil {
				return nil, err
			}
		}
		s.packetMeta[m.GetPreamble().GetName()] = pm
	}
	return s, nil
}

func (s *Schema) newTable(t *p4configv1.Table) (*Table, error) {
	name := t.GetPreamble().GetName()
	tbl := &Table{
		Table:   t,
		fields:  newIndex[*p4configv1.MatchField]("match field of " + name),
		actions: map[uint32]*p4configv1.ActionRef{},
	}
	for _, f := range t.GetMatchFields() {
		if err := tbl.fields.add(f.GetId(), f.GetName(), "", f); err != nil {
			return nil, err
		}
		switch f.GetMatchType() {
		case p4configv1.MatchField_TERNARY, p4configv1.MatchField_RANGE, p4configv1.MatchField_OPTIONAL:
			tbl.Priority = true
		}
	}
	for _, ref := range t.GetActionRefs() {
		if _, err := s.actions.id(ref.GetId()); err != nil {
			return nil, fmt.Errorf("P4Info: table %s: %w", name, err)
		}
		tbl.actions[ref.GetId()] = ref
	}
	if id := t.GetImplementationId(); id != 0 {
		p, err := s.profiles.id(id)
		if err != nil {
			return nil, fmt.Errorf("P4Info: table %s implementation: %w", name, err)
		}
		tbl.Profile = p
	}
	for _, id := range t.GetDirectResourceIds() {
		if c, err := s.directCounters.id(id); err == nil {
			tbl.Counter = c
		}
	}
	return tbl, nil
}

// P4Info returns the P4Info the schema indexes. Callers must not modify it.
func (s *Schema) P4Info() *p4configv1.P4Info { return s.info }

// Table looks a table up by fully qualified name ("VpcIngress.port_vnet") or alias.
func (s *Schema) Table(name string) (*Table, error) { return s.tables.name(name) }

// TableByID looks a table up by ID.
func (s *Schema) TableByID(id uint32) (*Table, error) { return s.tables.id(id) }

// Action looks an action up by fully qualified name or alias.
func (s *Schema) Action(name string) (*Action, error) { return s.actions.name(name) }

// ActionByID looks an action up by ID.
func (s *Schema) ActionByID(id uint32) (*Action, error) { return s.actions.id(id) }

// ActionProfile looks an action profile or selector up by name or alias.
func (s *Schema) ActionProfile(name string) (*ActionProfile, error) { return s.profiles.name(name) }

// ActionProfileByID looks an action profile up by ID.
func (s *Schema) ActionProfileByID(id uint32) (*ActionProfile, error) { return s.profiles.id(id) }

// DirectCounter looks a direct counter up by name or alias.
func (s *Schema) DirectCounter(name string) (*DirectCounter, error) {
	return s.directCounters.name(name)
}

// DirectCounterByID looks a direct counter up by ID.
func (s *Schema) DirectCounterByID(id uint32) (*DirectCounter, error) {
	return s.directCounters.id(id)
}

// Counter looks an indirect counter up by name or alias.
func (s *Schema) Counter(name string) (*p4configv1.Counter, error) { return s.counters.name(name) }

// Digest looks a digest up by name (the P4 struct type name for v1model).
func (s *Schema) Digest(name string) (*p4configv1.Digest, error) { return s.digests.name(name) }

// DigestByID looks a digest up by ID.
func (s *Schema) DigestByID(id uint32) (*p4configv1.Digest, error) { return s.digests.id(id) }

// PacketMetadata returns the controller header named by its
// @controller_header annotation: "packet_in" or "packet_out".
func (s *Schema) PacketMetadata(kind string) (*PacketMetadata, error) {
	m, ok := s.packetMeta[kind]
	if !ok {
		return nil, fmt.Errorf("controller packet metadata %q: %w", kind, ErrUnknown)
	}
	return m, nil
}

// Tables returns every table in P4Info order.
func (s *Schema) Tables() []*Table {
	out := make([]*Table, 0, len(s.info.GetTables()))
	for _, t := range s.info.GetTables() {
		out = append(out, s.tables.byID[t.GetPreamble().GetId()])
	}
	return out
}

// Name is the table's fully qualified name.
func (t *Table) Name() string { return t.GetPreamble().GetName() }

// ID is the table's P4Runtime ID.
func (t *Table) ID() uint32 { return t.GetPreamble().GetId() }

// Field looks a match field up by name.
func (t *Table) Field(name string) (*p4configv1.MatchField, error) { return t.fields.name(name) }

// FieldByID looks a match field up by ID.
func (t *Table) FieldByID(id uint32) (*p4configv1.MatchField, error) { return t.fields.id(id) }

// ActionRef returns how the table refers to action id, or an error if the
// table cannot run that action.
func (t *Table) ActionRef(id uint32) (*p4configv1.ActionRef, error) {
	ref, ok := t.actions[id]
	if !ok {
		return nil, fmt.Errorf("action 0x%08x is not an action of table %s: %w", id, t.Name(), ErrUnknown)
	}
	return ref, nil
}

// Name is the action's fully qualified name.
func (a *Action) Name() string { return a.GetPreamble().GetName() }

// ID is the action's P4Runtime ID.
func (a *Action) ID() uint32 { return a.GetPreamble().GetId() }

// Param looks an action parameter up by name.
func (a *Action) Param(name string) (*p4configv1.Action_Param, error) { return a.params.name(name) }

// ParamByID looks an action parameter up by ID.
func (a *Action) ParamByID(id uint32) (*p4configv1.Action_Param, error) { return a.params.id(id) }

// Name is the profile's fully qualified name.
func (p *ActionProfile) Name() string { return p.GetPreamble().GetName() }

// ID is the profile's P4Runtime ID.
func (p *ActionProfile) ID() uint32 { return p.GetPreamble().GetId() }

// Field looks a controller metadata field up by name.
func (m *PacketMetadata) Field(name string) (*p4configv1.ControllerPacketMetadata_Metadata, error) {
	return m.fields.name(name)
}

// FieldByID looks a controller metadata field up by ID.
func (m *PacketMetadata) FieldByID(id uint32) (*p4configv1.ControllerPacketMetadata_Metadata, error) {
	return m.fields.id(id)
}
