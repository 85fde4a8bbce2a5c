package p4rt

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// memDevice is an in-memory switch for the reconciler's unit tests. It keys
// entities by their text form without the action, independently of the
// reconciler's own keys, and refuses writes a real switch would refuse
// (duplicate insert, missing modify/delete, dangling member references).
type memDevice struct {
	entities map[string]*p4v1.Entity
	writes   [][]*p4v1.Update
	// counters makes reads return counter data, as a switch with direct
	// counters does.
	counters bool
}

func newMemDevice() *memDevice { return &memDevice{entities: map[string]*p4v1.Entity{}} }

func memKey(e *p4v1.Entity) string {
	c := proto.CloneOf(e)
	switch x := c.Entity.(type) {
	case *p4v1.Entity_TableEntry:
		x.TableEntry.Action, x.TableEntry.CounterData = nil, nil
	case *p4v1.Entity_ActionProfileMember:
		x.ActionProfileMember.Action = nil
	case *p4v1.Entity_ActionProfileGroup:
		x.ActionProfileGroup.Members, x.ActionProfileGroup.MaxSize = nil, 0
	}
	return prototext.MarshalOptions{}.Format(c)
}

func (d *memDevice) Write(_ context.Context, updates []*p4v1.Update) error {
	d.writes = append(d.writes, updates)
	for _, u := range updates {
		k := memKey(u.Entity)
		_, have := d.entities[k]
		switch {
		case u.Type == p4v1.Update_INSERT && have:
			return fmt.Errorf("duplicate insert %s", k)
		case u.Type != p4v1.Update_INSERT && !have && !isDefault(u.Entity):
			return fmt.Errorf("%s of missing %s", u.Type, k)
		}
		if g := u.Entity.GetActionProfileGroup(); g != nil && u.Type != p4v1.Update_DELETE {
			for _, m := range g.Members {
				mk := memKey(&p4v1.Entity{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: &p4v1.ActionProfileMember{ActionProfileId: g.ActionProfileId, MemberId: m.MemberId}}})
				if _, ok := d.entities[mk]; !ok {
					return fmt.Errorf("group %d references missing member %d", g.GroupId, m.MemberId)
				}
			}
		}
		if u.Type == p4v1.Update_DELETE {
			delete(d.entities, k)
		} else {
			d.entities[k] = proto.CloneOf(u.Entity)
		}
	}
	return nil
}

func (d *memDevice) Read(_ context.Context, query []*p4v1.Entity, fn func(*p4v1.Entity) error) error {
	for _, q := range query {
		for _, e := range d.entities {
			if !readMatches(q, e) {
				continue
			}
			e = proto.CloneOf(e)
			if te := e.GetTableEntry(); te != nil && d.counters {
				te.CounterData = &p4v1.CounterData{PacketCount: 42, ByteCount: 4200}
			}
			if err := fn(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// readMatches answers a read as a switch does, id 0 included: the wildcard
// for every table or profile. Without it a reconciler that read beyond its
// own tables would see nothing there, and fail on a duplicate insert rather
// than on what it did to another writer's entries.
func readMatches(q, e *p4v1.Entity) bool {
	id := func(want, have uint32) bool { return want == 0 || want == have }
	switch x := q.Entity.(type) {
	case *p4v1.Entity_TableEntry:
		te := e.GetTableEntry()
		return te != nil && id(x.TableEntry.TableId, te.TableId) && te.IsDefaultAction == x.TableEntry.IsDefaultAction
	case *p4v1.Entity_ActionProfileMember:
		m := e.GetActionProfileMember()
		return m != nil && id(x.ActionProfileMember.ActionProfileId, m.ActionProfileId)
	case *p4v1.Entity_ActionProfileGroup:
		g := e.GetActionProfileGroup()
		return g != nil && id(x.ActionProfileGroup.ActionProfileId, g.ActionProfileId)
	}
	return false
}

// desiredSet builds n routes, a pool with two members in one group, and a
// pool entry pointing at the group.
func desiredSet(t testing.TB, s *Schema, n int, hostIP string) []*p4v1.Entity {
	t.Helper()
	var out []*p4v1.Entity
	add := func(msg any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		e, err := Entity(msg)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	encap := func(host string) ActionCall {
		return Call("encap", P("vni", Uint(7)), P("host_ip", Addr(host)), P("dmac", HW("02:00:00:00:00:02")))
	}
	for i := range n {
		a := encap(hostIP)
		add(s.TableEntry(Entry{Table: "route", Match: []Match{
			Exact("vni", Uint(1)),
			Prefix("dst_ip", netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)),
		}, Action: &a}))
	}
	add(s.ActionProfileMember("pool_selector", 1, encap("192.168.1.1")))
	add(s.ActionProfileMember("pool_selector", 2, encap("192.168.1.2")))
	add(s.ActionProfileGroup("pool_selector", 10, []GroupMember{{1, 1}, {2, 1}}, 0))
	add(s.TableEntry(Entry{Table: "pool", Match: []Match{Exact("pool_id", Uint(1))}, Group: 10}))
	add(s.DefaultEntry("route", Call("miss")))
	return out
}

func stageKinds(writes [][]*p4v1.Update) []string {
	var out []string
	for _, w := range writes {
		kinds := map[string]bool{}
		for _, u := range w {
			k := fmt.Sprintf("%T", u.Entity.Entity)
			k = strings.TrimPrefix(k, "*v1.Entity_")
			kinds[u.Type.String()+" "+k] = true
		}
		ks := make([]string, 0, len(kinds))
		for k := range kinds {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		out = append(out, strings.Join(ks, ","))
	}
	return out
}

func TestReconcile(t *testing.T) {
	s := unitSchema(t)
	dev := newMemDevice()
	dev.counters = true
	r := &Reconciler{Schema: s, Device: dev, Tables: []string{"route", "pool"}, Profiles: []string{"pool_selector"}}
	ctx := context.Background()

	// Another writer's entry in a table this reconciler does not own.
	foreign, _ := s.TableEntry(Entry{Table: "acl", Match: []Match{Exact("vni", Uint(1))}, Action: &ActionCall{Name: "permit"}, Priority: 1})
	fe, _ := Entity(foreign)
	if err := dev.Write(ctx, []*p4v1.Update{{Type: p4v1.Update_INSERT, Entity: fe}}); err != nil {
		t.Fatal(err)
	}
	dev.writes = nil

	want := desiredSet(t, s, 3, "192.168.0.2")
	res, err := r.Reconcile(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Total(); got != (Change{Inserted: 7, Modified: 1}) {
		t.Errorf("first reconcile = %+v (%s); want 7 inserts and the default modified", got, res)
	}
	if got, want := stageKinds(dev.writes), []string{
		"INSERT ActionProfileMember", "INSERT ActionProfileGroup", "INSERT TableEntry,MODIFY TableEntry",
	}; !slices.Equal(got, want) {
		t.Errorf("insert order = %q; want %q", got, want)
	}

	// Idempotent: nothing to do the second time, though reads carry
	// counter data.
	dev.writes = nil
	res, err = r.Reconcile(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Empty() || len(dev.writes) != 0 {
		t.Errorf("second reconcile changed %s with %d writes; want nothing", res, len(dev.writes))
	}

	// Fewer routes, one moved to another host, the pool gone.
	next := desiredSet(t, s, 2, "192.168.0.3")[:2]
	dev.writes = nil
	res, err = r.Reconcile(ctx, next)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Changes["Ing.route"]; got != (Change{Modified: 2, Deleted: 1}) {
		t.Errorf("route changes = %+v", got)
	}
	if got := res.Changes["Ing.pool_selector"]; got != (Change{Deleted: 3}) {
		t.Errorf("pool_selector changes = %+v", got)
	}
	if got, want := stageKinds(dev.writes), []string{
		"MODIFY TableEntry", "DELETE TableEntry", "DELETE ActionProfileGroup", "DELETE ActionProfileMember",
	}; !slices.Equal(got, want) {
		t.Errorf("update order = %q; want %q", got, want)
	}
	if _, ok := dev.entities[memKey(fe)]; !ok {
		t.Error("the reconciler deleted another writer's entry")
	}
	for _, w := range dev.writes {
		for _, u := range w {
			if u.Type == p4v1.Update_DELETE && u.Entity.GetTableEntry().GetCounterData() != nil {
				t.Error("a DELETE carried counter data read back from the switch")
			}
		}
	}

	// A desired entity outside what the reconciler owns is refused whole.
	dev.writes = nil
	if _, err := r.Reconcile(ctx, append(next, fe)); err == nil || !strings.Contains(err.Error(), "Ing.acl") {
		t.Errorf("reconcile with a foreign entity = %v", err)
	}
	if len(dev.writes) != 0 {
		t.Error("a refused reconcile wrote to the switch")
	}
}

// TestReconcileLeavesOtherWritersAlone: entries of a table the reconciler
// does not own (here another writer's ACL, default included) are neither
// deleted nor modified, whether the reconcile inserts, prunes some of its
// own entries, or prunes all of them. The device answers wildcard reads,
// so a reconciler that looked beyond its own tables would see these
// entries and, finding them undesired, delete them.
func TestReconcileLeavesOtherWritersAlone(t *testing.T) {
	s := unitSchema(t)
	dev := newMemDevice()
	r := &Reconciler{Schema: s, Device: dev, Tables: []string{"route", "pool"}, Profiles: []string{"pool_selector"}}
	ctx := context.Background()
	acl, err := s.Table("acl")
	if err != nil {
		t.Fatal(err)
	}

	var foreign []*p4v1.Entity
	for i, a := range []string{"permit", "drop"} {
		te, err := s.TableEntry(Entry{Table: "acl", Match: []Match{Exact("vni", Uint(uint64(i+1)))}, Action: &ActionCall{Name: a}, Priority: int32(10 + i)})
		if err != nil {
			t.Fatal(err)
		}
		e, _ := Entity(te)
		foreign = append(foreign, e)
	}
	def, err := s.DefaultEntry("acl", Call("drop"))
	if err != nil {
		t.Fatal(err)
	}
	de, _ := Entity(def)
	foreign = append(foreign, de)
	var seed []*p4v1.Update
	for _, e := range foreign {
		u := &p4v1.Update{Type: p4v1.Update_INSERT, Entity: e}
		if isDefault(e) {
			u.Type = p4v1.Update_MODIFY
		}
		seed = append(seed, u)
	}
	if err := dev.Write(ctx, seed); err != nil {
		t.Fatal(err)
	}
	if n := len(dev.entities); n != 3 {
		t.Fatalf("seeded %d foreign entries, want 3", n)
	}

	full := desiredSet(t, s, 3, "192.168.0.2")
	for _, step := range []struct {
		name    string
		desired []*p4v1.Entity
		deleted int // of the reconciler's own entries
	}{
		{"full reconcile", full, 0},
		{"two routes move, one goes, the pool goes", desiredSet(t, s, 2, "192.168.0.3")[:2], 5},
		{"nothing desired", nil, 2},
	} {
		dev.writes = nil
		res, err := r.Reconcile(ctx, step.desired)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := res.Total().Deleted; got != step.deleted {
			t.Errorf("%s: deleted %d (%s), want %d of its own", step.name, got, res, step.deleted)
		}
		for _, w := range dev.writes {
			for _, u := range w {
				if ownerID(u.Entity) == acl.ID() {
					t.Errorf("%s: wrote %v to a table it does not own: %v", step.name, u.Type, u.Entity)
				}
			}
		}
		for _, e := range foreign {
			if got, ok := dev.entities[memKey(e)]; !ok {
				t.Errorf("%s: another writer's entry is gone: %v", step.name, e)
			} else if !proto.Equal(got, e) {
				t.Errorf("%s: another writer's entry changed: %v, was %v", step.name, got, e)
			}
		}
	}
	// All that is left is the foreign entries and route's default, which
	// a reconcile modifies but never deletes.
	if n := len(dev.entities); n != len(foreign)+1 {
		t.Errorf("after pruning everything the switch holds %d entities, want %d", n, len(foreign)+1)
	}
}

func TestDiffIgnoresOrderAndPadding(t *testing.T) {
	s := unitSchema(t)
	want := desiredSet(t, s, 1, "192.168.0.2")
	cur := make([]*p4v1.Entity, len(want))
	for i, e := range want {
		c := proto.CloneOf(e)
		if te := c.GetTableEntry(); te != nil {
			slices.Reverse(te.Match)
			if a := te.GetAction().GetAction(); a != nil {
				slices.Reverse(a.Params)
				for _, p := range a.Params {
					p.Value = append([]byte{0}, p.Value...)
				}
			}
		}
		if g := c.GetActionProfileGroup(); g != nil {
			slices.Reverse(g.Members)
			g.MaxSize = 4
		}
		cur[i] = c
	}
	if p := Diff(cur, want); len(p.Inserts)+len(p.Modifies)+len(p.Deletes) != 0 {
		t.Errorf("Diff of equal sets in another order = %d/%d/%d", len(p.Inserts), len(p.Modifies), len(p.Deletes))
	}
}

// TestReconcileKeeping: entities the switch holds and desired lacks are
// deleted unless keep says to leave them; inserts and modifies go in as
// with Reconcile, and the kept ones are returned.
func TestReconcileKeeping(t *testing.T) {
	s := unitSchema(t)
	dev := newMemDevice()
	dev.counters = true
	r := &Reconciler{Schema: s, Device: dev, Tables: []string{"route", "pool"}, Profiles: []string{"pool_selector"}}
	ctx := context.Background()
	before := desiredSet(t, s, 3, "192.168.0.2")[:3] // routes 0, 1 and 2
	if _, err := r.Reconcile(ctx, before); err != nil {
		t.Fatal(err)
	}

	// Route 0 moves, route 1 is someone's the writer cannot account for,
	// route 2 is stale, route 3 is new.
	after := desiredSet(t, s, 4, "192.168.0.3")[:4]
	want := []*p4v1.Entity{after[0], after[3]}
	held := Key(before[1])
	res, kept, err := r.ReconcileKeeping(ctx, want, func(e *p4v1.Entity) bool { return Key(e) == held })
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Changes["Ing.route"]; got != (Change{Inserted: 1, Modified: 1, Deleted: 1}) {
		t.Errorf("route changes = %+v; want route 3 in, route 0 moved, route 2 out", got)
	}
	if len(kept) != 1 || Key(kept[0]) != held {
		t.Errorf("kept %v; want route 1", kept)
	}
	for i, e := range []*p4v1.Entity{after[0], before[1], after[3]} {
		if _, ok := dev.entities[memKey(e)]; !ok {
			t.Errorf("entity %d not on the switch", i)
		}
	}
	if _, ok := dev.entities[memKey(before[2])]; ok {
		t.Error("the stale route is still on the switch")
	}

	// Once the writer accounts for everything, Reconcile prunes the rest.
	if res, err := r.Reconcile(ctx, want); err != nil || res.Changes["Ing.route"] != (Change{Deleted: 1}) {
		t.Errorf("reconcile after keeping = %s, %v; want route 1 deleted", res, err)
	}
}
