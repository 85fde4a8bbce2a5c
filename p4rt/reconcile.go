package p4rt

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/proto"
)

// Device is what the reconciler needs of a switch connection; *Client is one.
type Device interface {
	Read(ctx context.Context, entities []*p4v1.Entity, fn func(*p4v1.Entity) error) error
	Write(ctx context.Context, updates []*p4v1.Update) error
}

// Reconciler makes the tables and action profiles one writer owns on a
// switch equal to a desired set of entities. It reads back only what it owns,
// so it never deletes another writer's entries, and writes only the
// difference, so reconciling after a restart of the writer, the switch or
// both leaves traffic untouched where nothing changed.
type Reconciler struct {
	Schema *Schema
	Device Device
	// Tables and Profiles name what this writer owns. Desired entities
	// outside them are refused.
	Tables   []string
	Profiles []string
}

// Change counts one kind of change to one table or profile.
type Change struct {
	Inserted, Modified, Deleted int
}

// Result reports what a reconcile changed, by table or profile name.
type Result struct {
	Changes map[string]Change
}

// Total sums the changes.
func (r Result) Total() Change {
	var t Change
	for _, c := range r.Changes {
		t.Inserted += c.Inserted
		t.Modified += c.Modified
		t.Deleted += c.Deleted
	}
	return t
}

// Empty reports whether nothing changed.
func (r Result) Empty() bool { return r.Total() == Change{} }

func (r Result) String() string {
	names := make([]string, 0, len(r.Changes))
	for n := range r.Changes {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		c := r.Changes[n]
		fmt.Fprintf(&b, "%s +%d ~%d -%d; ", n, c.Inserted, c.Modified, c.Deleted)
	}
	return strings.TrimSuffix(b.String(), "; ")
}

// Reconcile reads what the switch holds in the owned tables and profiles,
// computes the minimal INSERT / MODIFY / DELETE against desired, and applies
// it in dependency order: members, then groups, then table entries on the
// way in; table entries, then groups, then members on the way out. Each
// stage is its own Write, because a server may reorder updates within one.
func (r *Reconciler) Reconcile(ctx context.Context, desired []*p4v1.Entity) (Result, error) {
	res, _, err := r.ReconcileKeeping(ctx, desired, nil)
	return res, err
}

// ReconcileKeeping is Reconcile for a writer that cannot yet account for
// everything in its tables: one that restarted while a source of its
// desired state is silent, and so cannot tell that source's entries from
// stale ones. It inserts and modifies as Reconcile does, but an entity the
// switch holds and desired lacks is deleted only if keep says no; the ones
// kept are returned, so the writer can tell them apart later (they are
// entities as read back, counter data included). A nil keep keeps nothing.
func (r *Reconciler) ReconcileKeeping(ctx context.Context, desired []*p4v1.Entity, keep func(*p4v1.Entity) bool) (Result, []*p4v1.Entity, error) {
	owned, err := r.owned()
	if err != nil {
		return Result{}, nil, err
	}
	if err := r.check(owned, desired); err != nil {
		return Result{}, nil, err
	}
	current, err := r.read(ctx, owned)
	if err != nil {
		return Result{}, nil, err
	}
	plan := Diff(current, desired)
	var kept []*p4v1.Entity
	plan.Deletes = slices.DeleteFunc(plan.Deletes, func(e *p4v1.Entity) bool {
		if keep != nil && keep(e) {
			kept = append(kept, e)
			return true
		}
		return false
	})
	res, err := r.apply(ctx, plan)
	return res, kept, err
}

// Apply is Reconcile without the read back: current is what the caller
// knows the switch holds, because its last Reconcile or Apply succeeded
// and nothing has happened to the switch since (no new arbitration). It
// saves a full read per change, which is most of a reconcile's cost on a
// large table; callers still Reconcile after a reconnect and periodically,
// to catch drift.
func (r *Reconciler) Apply(ctx context.Context, current, desired []*p4v1.Entity) (Result, error) {
	owned, err := r.owned()
	if err != nil {
		return Result{}, err
	}
	if err := r.check(owned, desired); err != nil {
		return Result{}, err
	}
	return r.apply(ctx, Diff(current, desired))
}

// check refuses desired entities outside what this writer owns.
func (r *Reconciler) check(owned map[uint32]string, desired []*p4v1.Entity) error {
	for _, e := range desired {
		if _, ok := owned[ownerID(e)]; !ok {
			return fmt.Errorf("reconcile: desired %s is not in a table or profile this writer owns", describe(r.Schema, e))
		}
	}
	return nil
}

func (r *Reconciler) apply(ctx context.Context, plan Plan) (Result, error) {
	res := plan.result(r.Schema)
	for _, stage := range plan.Stages() {
		if len(stage) == 0 {
			continue
		}
		if err := r.Device.Write(ctx, stage); err != nil {
			return res, fmt.Errorf("reconcile: %w", err)
		}
	}
	return res, nil
}

// owned maps the IDs of owned tables and profiles to their names.
func (r *Reconciler) owned() (map[uint32]string, error) {
	ids := map[uint32]string{}
	for _, n := range r.Tables {
		t, err := r.Schema.Table(n)
		if err != nil {
			return nil, fmt.Errorf("reconcile: %w", err)
		}
		ids[t.ID()] = t.Name()
	}
	for _, n := range r.Profiles {
		p, err := r.Schema.ActionProfile(n)
		if err != nil {
			return nil, fmt.Errorf("reconcile: %w", err)
		}
		ids[p.ID()] = p.Name()
	}
	return ids, nil
}

func (r *Reconciler) read(ctx context.Context, owned map[uint32]string) ([]*p4v1.Entity, error) {
	var query []*p4v1.Entity
	for id := range owned {
		if t, err := r.Schema.TableByID(id); err == nil {
			query = append(query,
				&p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: id}}})
			if t.Profile == nil {
				// Wildcard reads leave the default entry out; ask for it.
				query = append(query, &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{
					TableEntry: &p4v1.TableEntry{TableId: id, IsDefaultAction: true}}})
			}
			continue
		}
		query = append(query,
			&p4v1.Entity{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: &p4v1.ActionProfileMember{ActionProfileId: id}}},
			&p4v1.Entity{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: &p4v1.ActionProfileGroup{ActionProfileId: id}}})
	}
	var current []*p4v1.Entity
	err := r.Device.Read(ctx, query, func(e *p4v1.Entity) error {
		current = append(current, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile: read back: %w", err)
	}
	return current, nil
}

// Plan is the difference between what a switch holds and what is desired.
type Plan struct {
	Inserts, Modifies, Deletes []*p4v1.Entity
}

// Diff computes the minimal plan that turns current into desired. Entities
// are matched by their key (table and match and priority; profile and member
// or group id) and compared by what a writer sets, so counter data in a read
// never looks like a change. A default entry is modified, never inserted or
// deleted: the spec allows nothing else on it, and a default that is no
// longer desired is left as it is.
func Diff(current, desired []*p4v1.Entity) Plan {
	have := make(map[string]*p4v1.Entity, len(current))
	var buf []byte
	for _, e := range current {
		buf = appendKey(buf[:0], e)
		have[string(buf)] = e
	}
	var p Plan
	wanted := make(map[string]struct{}, len(desired))
	for _, e := range desired {
		buf = appendKey(buf[:0], e)
		k := string(buf)
		if _, dup := wanted[k]; dup {
			continue
		}
		wanted[k] = struct{}{}
		cur, ok := have[k]
		switch {
		case !ok && isDefault(e):
			p.Modifies = append(p.Modifies, e)
		case !ok:
			p.Inserts = append(p.Inserts, e)
		case !sameContent(cur, e):
			p.Modifies = append(p.Modifies, e)
		}
	}
	for _, e := range current {
		buf = appendKey(buf[:0], e)
		if _, ok := wanted[string(buf)]; !ok && !isDefault(e) {
			p.Deletes = append(p.Deletes, e)
		}
	}
	return p
}

// Stages returns the plan as Write batches in dependency order.
func (p Plan) Stages() [][]*p4v1.Update {
	var members, groups, entries [3][]*p4v1.Update // in, then out
	put := func(t p4v1.Update_Type, es []*p4v1.Entity) {
		for _, e := range es {
			u := &p4v1.Update{Type: t, Entity: e}
			switch e.Entity.(type) {
			case *p4v1.Entity_ActionProfileMember:
				members[stageOf(t)] = append(members[stageOf(t)], u)
			case *p4v1.Entity_ActionProfileGroup:
				groups[stageOf(t)] = append(groups[stageOf(t)], u)
			default:
				entries[stageOf(t)] = append(entries[stageOf(t)], u)
			}
		}
	}
	put(p4v1.Update_INSERT, p.Inserts)
	put(p4v1.Update_MODIFY, p.Modifies)
	put(p4v1.Update_DELETE, stripForDelete(p.Deletes))
	return [][]*p4v1.Update{members[0], groups[0], entries[0], entries[1], groups[1], members[1]}
}

func stageOf(t p4v1.Update_Type) int {
	if t == p4v1.Update_DELETE {
		return 1
	}
	return 0
}

// stripForDelete drops what a read returns but a DELETE must not carry
// (counter data), so strict servers accept the delete.
func stripForDelete(es []*p4v1.Entity) []*p4v1.Entity {
	out := make([]*p4v1.Entity, len(es))
	for i, e := range es {
		if te := e.GetTableEntry(); te != nil && (te.CounterData != nil || te.MeterConfig != nil) {
			te = proto.CloneOf(te)
			te.CounterData, te.MeterConfig = nil, nil
			e = &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: te}}
		}
		out[i] = e
	}
	return out
}

func (p Plan) result(s *Schema) Result {
	res := Result{Changes: map[string]Change{}}
	count := func(es []*p4v1.Entity, f func(*Change)) {
		for _, e := range es {
			n := ownerName(s, e)
			c := res.Changes[n]
			f(&c)
			res.Changes[n] = c
		}
	}
	count(p.Inserts, func(c *Change) { c.Inserted++ })
	count(p.Modifies, func(c *Change) { c.Modified++ })
	count(p.Deletes, func(c *Change) { c.Deleted++ })
	return res
}

func isDefault(e *p4v1.Entity) bool { return e.GetTableEntry().GetIsDefaultAction() }

// ownerID is the table or profile an entity lives in.
func ownerID(e *p4v1.Entity) uint32 {
	switch x := e.Entity.(type) {
	case *p4v1.Entity_TableEntry:
		return x.TableEntry.GetTableId()
	case *p4v1.Entity_ActionProfileMember:
		return x.ActionProfileMember.GetActionProfileId()
	case *p4v1.Entity_ActionProfileGroup:
		return x.ActionProfileGroup.GetActionProfileId()
	}
	return 0
}

func ownerName(s *Schema, e *p4v1.Entity) string {
	id := ownerID(e)
	if t, err := s.TableByID(id); err == nil {
		return t.Name()
	}
	if p, err := s.ActionProfileByID(id); err == nil {
		return p.Name()
	}
	return fmt.Sprintf("0x%08x", id)
}

func describe(s *Schema, e *p4v1.Entity) string {
	switch e.Entity.(type) {
	case *p4v1.Entity_TableEntry:
		return "entry of " + ownerName(s, e)
	case *p4v1.Entity_ActionProfileMember:
		return "member of " + ownerName(s, e)
	case *p4v1.Entity_ActionProfileGroup:
		return "group of " + ownerName(s, e)
	}
	return fmt.Sprintf("entity %T", e.Entity)
}

// Key is the identity of an entity: what a server finds it by (table, match
// and priority; profile and member or group id), as Diff matches entities.
// Two entities with the same key are one entry on the switch.
func Key(e *p4v1.Entity) string { return string(appendKey(nil, e)) }

// appendKey appends the identity of an entity: what a server uses to find
// it. Match fields are keyed in field-ID order whatever order they came in.
func appendKey(b []byte, e *p4v1.Entity) []byte {
	switch x := e.Entity.(type) {
	case *p4v1.Entity_TableEntry:
		te := x.TableEntry
		b = append(b, 't')
		b = binary.BigEndian.AppendUint32(b, te.GetTableId())
		if te.GetIsDefaultAction() {
			return append(b, 'd')
		}
		b = binary.BigEndian.AppendUint32(b, uint32(te.GetPriority()))
		ms := te.GetMatch()
		if !slices.IsSortedFunc(ms, byFieldID) {
			ms = slices.SortedFunc(slices.Values(ms), byFieldID)
		}
		for _, m := range ms {
			b = appendFieldMatch(b, m)
		}
	case *p4v1.Entity_ActionProfileMember:
		b = append(b, 'm')
		b = binary.BigEndian.AppendUint32(b, x.ActionProfileMember.GetActionProfileId())
		b = binary.BigEndian.AppendUint32(b, x.ActionProfileMember.GetMemberId())
	case *p4v1.Entity_ActionProfileGroup:
		b = append(b, 'g')
		b = binary.BigEndian.AppendUint32(b, x.ActionProfileGroup.GetActionProfileId())
		b = binary.BigEndian.AppendUint32(b, x.ActionProfileGroup.GetGroupId())
	default:
		b = append(b, '?')
		b, _ = proto.MarshalOptions{Deterministic: true}.MarshalAppend(b, e)
	}
	return b
}

func byFieldID(a, b *p4v1.FieldMatch) int { return int(a.GetFieldId()) - int(b.GetFieldId()) }

// appendFieldMatch encodes one field match, each bytestring length-prefixed
// so that no two different matches share an encoding.
func appendFieldMatch(b []byte, m *p4v1.FieldMatch) []byte {
	b = binary.BigEndian.AppendUint32(b, m.GetFieldId())
	bs := func(v []byte) {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	switch x := m.FieldMatchType.(type) {
	case *p4v1.FieldMatch_Exact_:
		b = append(b, 'e')
		bs(x.Exact.GetValue())
	case *p4v1.FieldMatch_Lpm:
		b = append(b, 'l')
		bs(x.Lpm.GetValue())
		b = binary.AppendUvarint(b, uint64(x.Lpm.GetPrefixLen()))
	case *p4v1.FieldMatch_Ternary_:
		b = append(b, 't')
		bs(x.Ternary.GetValue())
		bs(x.Ternary.GetMask())
	case *p4v1.FieldMatch_Range_:
		b = append(b, 'r')
		bs(x.Range.GetLow())
		bs(x.Range.GetHigh())
	case *p4v1.FieldMatch_Optional_:
		b = append(b, 'o')
		bs(x.Optional.GetValue())
	default:
		b = append(b, '?')
		mb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		bs(mb)
	}
	return b
}

// sameContent compares what a writer sets on two entities with the same key.
func sameContent(a, b *p4v1.Entity) bool {
	switch x := a.Entity.(type) {
	case *p4v1.Entity_TableEntry:
		y := b.GetTableEntry()
		return sameTableAction(x.TableEntry.GetAction(), y.GetAction()) &&
			x.TableEntry.GetControllerMetadata() == y.GetControllerMetadata() &&
			x.TableEntry.GetIdleTimeoutNs() == y.GetIdleTimeoutNs() &&
			string(x.TableEntry.GetMetadata()) == string(y.GetMetadata())
	case *p4v1.Entity_ActionProfileMember:
		return sameAction(x.ActionProfileMember.GetAction(), b.GetActionProfileMember().GetAction())
	case *p4v1.Entity_ActionProfileGroup:
		y := b.GetActionProfileGroup()
		ma := slices.SortedFunc(slices.Values(x.ActionProfileGroup.GetMembers()), byMemberID)
		mb := slices.SortedFunc(slices.Values(y.GetMembers()), byMemberID)
		if len(ma) != len(mb) {
			return false
		}
		for i := range ma {
			if ma[i].GetMemberId() != mb[i].GetMemberId() || weight(ma[i]) != weight(mb[i]) {
				return false
			}
		}
		// max_size 0 means "target's choice": a read may report the size
		// the target picked, which is no change.
		return x.ActionProfileGroup.GetMaxSize() == y.GetMaxSize() ||
			x.ActionProfileGroup.GetMaxSize() == 0 || y.GetMaxSize() == 0
	}
	return proto.Equal(a, b)
}

func byMemberID(a, b *p4v1.ActionProfileGroup_Member) int {
	return int(a.GetMemberId()) - int(b.GetMemberId())
}

// weight treats an unset weight as 1: BMv2 reports 1 for members written
// without one.
func weight(m *p4v1.ActionProfileGroup_Member) int32 { return max(m.GetWeight(), 1) }

func sameTableAction(a, b *p4v1.TableAction) bool {
	switch x := a.GetType().(type) {
	case *p4v1.TableAction_Action:
		return sameAction(x.Action, b.GetAction())
	case *p4v1.TableAction_ActionProfileMemberId:
		_, ok := b.GetType().(*p4v1.TableAction_ActionProfileMemberId)
		return ok && x.ActionProfileMemberId == b.GetActionProfileMemberId()
	case *p4v1.TableAction_ActionProfileGroupId:
		_, ok := b.GetType().(*p4v1.TableAction_ActionProfileGroupId)
		return ok && x.ActionProfileGroupId == b.GetActionProfileGroupId()
	}
	return proto.Equal(a, b)
}

// sameAction compares actions by id and parameter values in parameter-id
// order, without reflection: this runs once per entry on every reconcile.
func sameAction(a, b *p4v1.Action) bool {
	if a.GetActionId() != b.GetActionId() || len(a.GetParams()) != len(b.GetParams()) {
		return false
	}
	pa, pb := a.GetParams(), b.GetParams()
	byID := func(x, y *p4v1.Action_Param) int { return int(x.GetParamId()) - int(y.GetParamId()) }
	if !slices.IsSortedFunc(pa, byID) {
		pa = slices.SortedFunc(slices.Values(pa), byID)
	}
	if !slices.IsSortedFunc(pb, byID) {
		pb = slices.SortedFunc(slices.Values(pb), byID)
	}
	for i := range pa {
		if pa[i].GetParamId() != pb[i].GetParamId() || !sameBytes(pa[i].GetValue(), pb[i].GetValue()) {
			return false
		}
	}
	return true
}

// sameBytes compares two bytestrings as numbers, so a padded value written
// by someone else equals its canonical form.
func sameBytes(a, b []byte) bool {
	trim := func(v []byte) []byte {
		for len(v) > 1 && v[0] == 0 {
			v = v[1:]
		}
		return v
	}
	return string(trim(a)) == string(trim(b))
}
