package p4rt

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

func unitSchema(t testing.TB) *Schema {
	t.Helper()
	b, err := os.ReadFile("testdata/unit.p4info.txtpb")
	if err != nil {
		t.Fatal(err)
	}
	info := &p4configv1.P4Info{}
	if err := prototext.Unmarshal(b, info); err != nil {
		t.Fatal(err)
	}
	s, err := NewSchema(info)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSchemaLookups(t *testing.T) {
	s := unitSchema(t)
	tbl, err := s.Table("Ing.route")
	if err != nil {
		t.Fatal(err)
	}
	if alias, _ := s.Table("route"); alias != tbl {
		t.Error("alias lookup found a different table")
	}
	if byID, _ := s.TableByID(tbl.ID()); byID != tbl {
		t.Error("ID lookup found a different table")
	}
	if tbl.Counter == nil || tbl.Counter.GetPreamble().GetName() != "Ing.route_counter" {
		t.Errorf("route's direct counter = %v", tbl.Counter)
	}
	if tbl.Priority {
		t.Error("route (exact+LPM) needs no priority")
	}
	acl, _ := s.Table("acl")
	if !acl.Priority {
		t.Error("acl (ternary) needs a priority")
	}
	pool, _ := s.Table("pool")
	if pool.Profile == nil || !pool.Profile.GetWithSelector() {
		t.Error("pool has no selector profile")
	}
	f, err := tbl.Field("dst_ip")
	if err != nil || f.GetBitwidth() != 32 || f.GetMatchType() != p4configv1.MatchField_LPM {
		t.Errorf("Field(dst_ip) = %v, %v", f, err)
	}
	a, _ := s.Action("encap")
	if p, err := a.Param("host_ip"); err != nil || p.GetId() != 2 {
		t.Errorf("Param(host_ip) = %v, %v", p, err)
	}
	if _, err := s.PacketMetadata("packet_out"); err != nil {
		t.Error(err)
	}
	if _, err := s.Digest("digest_t"); err != nil {
		t.Error(err)
	}

	unknown := []struct {
		what string
		err  error
		want string
	}{
		{"table", second(s.Table("Ing.nope")), `table "Ing.nope"`},
		{"table id", second(s.TableByID(42)), "table id 0x0000002a"},
		{"action", second(s.Action("nope")), `action "nope"`},
		{"field", second(tbl.Field("src_ip")), `match field of Ing.route "src_ip"`},
		{"param", second(a.Param("smac")), `param of Ing.encap "smac"`},
		{"profile", second(s.ActionProfile("nope")), `action profile "nope"`},
		{"counter", second(s.DirectCounter("nope")), `direct counter "nope"`},
		{"digest", second(s.Digest("nope")), `digest "nope"`},
		{"metadata", second(s.PacketMetadata("packet_sideways")), `"packet_sideways"`},
	}
	for _, u := range unknown {
		if !errors.Is(u.err, ErrUnknown) || !strings.Contains(u.err.Error(), u.want) {
			t.Errorf("%s lookup error = %v; want ErrUnknown naming %s", u.what, u.err, u.want)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestNewSchemaRefusesBrokenP4Info(t *testing.T) {
	s := unitSchema(t)
	broken := proto.CloneOf(s.P4Info())
	broken.Tables[0].ActionRefs = append(broken.Tables[0].ActionRefs, &p4configv1.ActionRef{Id: 0x01999999})
	if _, err := NewSchema(broken); !errors.Is(err, ErrUnknown) {
		t.Errorf("NewSchema with a dangling action ref = %v; want ErrUnknown", err)
	}
	dup := proto.CloneOf(s.P4Info())
	dup.Actions = append(dup.Actions, dup.Actions[0])
	if _, err := NewSchema(dup); err == nil || !strings.Contains(err.Error(), "duplicate action id") {
		t.Errorf("NewSchema with a duplicate action = %v", err)
	}
}

func TestTableEntry(t *testing.T) {
	s := unitSchema(t)
	encap := Call("encap", P("vni", Uint(7)), P("host_ip", Addr("192.168.0.2")), P("dmac", HW("02:00:00:00:00:02")))
	got, err := s.TableEntry(Entry{
		Table:  "route",
		Match:  []Match{Prefix("dst_ip", netip.MustParsePrefix("10.1.2.3/24")), Exact("vni", Uint(0x10))},
		Action: &encap,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := &p4v1.TableEntry{
		TableId: 33554434,
		Match: []*p4v1.FieldMatch{
			{FieldId: 1, FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: []byte{0x10}}}},
			{FieldId: 2, FieldMatchType: &p4v1.FieldMatch_Lpm{Lpm: &p4v1.FieldMatch_LPM{Value: []byte{10, 1, 2, 0}, PrefixLen: 24}}},
		},
		Action: &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: &p4v1.Action{
			ActionId: 16777219,
			Params: []*p4v1.Action_Param{
				{ParamId: 1, Value: []byte{7}},
				{ParamId: 2, Value: []byte{192, 168, 0, 2}},
				{ParamId: 3, Value: []byte{2, 0, 0, 0, 0, 2}},
			},
		}}},
	}
	if !proto.Equal(got, want) {
		t.Errorf("TableEntry =\n%v\nwant\n%v", prototext.Format(got), prototext.Format(want))
	}

	acl, err := s.TableEntry(Entry{
		Table: "acl",
		Match: []Match{
			Exact("vni", Uint(1)),
			Ternary("port", Uint(0x100), Uint(0x1f0)),
			Range("l4_port", Uint(1000), Uint(2000)),
			Optional("proto", Uint(6)),
		},
		Action:   &ActionCall{Name: "permit"},
		Priority: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(acl.Match) != 4 || acl.Priority != 10 {
		t.Errorf("acl entry = %v", prototext.Format(acl))
	}
	for i, m := range acl.Match {
		if m.FieldId != uint32(i+1) {
			t.Errorf("match %d has field id %d; want field-ID order", i, m.FieldId)
		}
	}

	drop := Call("drop")
	bad := []struct {
		name string
		e    Entry
		want string
	}{
		{"unknown table", Entry{Table: "nope", Action: &drop}, `table "nope"`},
		{"unknown field", Entry{Table: "route", Match: []Match{Exact("vni", Uint(1)), Exact("src", Uint(1))}, Action: &drop}, `"src"`},
		{"wrong kind", Entry{Table: "route", Match: []Match{LPM("vni", Uint(1), 8)}, Action: &drop}, "is EXACT, not LPM"},
		{"missing exact", Entry{Table: "route", Match: []Match{Prefix("dst_ip", netip.MustParsePrefix("10.0.0.0/8"))}, Action: &drop}, "exact field vni is missing"},
		{"value too wide", Entry{Table: "route", Match: []Match{Exact("vni", Uint(1<<24))}, Action: &drop}, "does not fit in 24 bits"},
		{"field twice", Entry{Table: "route", Match: []Match{Exact("vni", Uint(1)), Exact("vni", Uint(2))}, Action: &drop}, "given twice"},
		{"ternary needs priority", Entry{Table: "acl", Match: []Match{Exact("vni", Uint(1))}, Action: &drop}, "priority > 0"},
		{"exact table refuses priority", Entry{Table: "route", Match: []Match{Exact("vni", Uint(1))}, Action: &drop, Priority: 5}, "priority must be 0"},
		{"ternary value outside mask", Entry{Table: "acl", Match: []Match{Exact("vni", Uint(1)), Ternary("port", Uint(3), Uint(1))}, Action: &drop, Priority: 1}, "outside mask"},
		{"range reversed", Entry{Table: "acl", Match: []Match{Exact("vni", Uint(1)), Range("l4_port", Uint(9), Uint(3))}, Action: &drop, Priority: 1}, "above high"},
		{"action not of table", Entry{Table: "acl", Match: []Match{Exact("vni", Uint(1))}, Action: &encap, Priority: 1}, "not an action of table"},
		{"missing param", Entry{Table: "route", Match: []Match{Exact("vni", Uint(1))}, Action: &ActionCall{Name: "encap", Params: []Param{P("vni", Uint(1))}}}, "host_ip is missing"},
		{"unknown param", Entry{Table: "route", Match: []Match{Exact("vni", Uint(1))}, Action: &ActionCall{Name: "encap", Params: append(encap.Params, P("ttl", Uint(1)))}}, `"ttl"`},
		{"param too wide", Entry{Table: "route", Match: []Match{Exact("vni", Uint(1))}, Action: &ActionCall{Name: "encap", Params: []Param{P("vni", Uint(1<<24)), encap.Params[1], encap.Params[2]}}}, "parameter vni"},
		{"defaultonly action in entry", Entry{Table: "route", Match: []Match{Exact("vni", Uint(1))}, Action: &ActionCall{Name: "miss"}}, "@defaultonly"},
		{"direct action on selector table", Entry{Table: "pool", Match: []Match{Exact("pool_id", Uint(1))}, Action: &encap}, "reference a member or group"},
		{"member on direct table", Entry{Table: "route", Match: []Match{Exact("vni", Uint(1))}, Member: 3}, "use a direct action"},
		{"two actions", Entry{Table: "pool", Match: []Match{Exact("pool_id", Uint(1))}, Member: 1, Group: 2}, "exactly one"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.TableEntry(tc.e)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("TableEntry error = %v; want one containing %q", err, tc.want)
			}
		})
	}
}

func TestPrefixZeroIsDontCare(t *testing.T) {
	s := unitSchema(t)
	drop := Call("drop")
	e, err := s.TableEntry(Entry{Table: "route", Match: []Match{Exact("vni", Uint(1)), Prefix("dst_ip", netip.MustParsePrefix("0.0.0.0/0"))}, Action: &drop})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Match) != 1 {
		t.Errorf("a /0 LPM match was kept: %v", prototext.Format(e))
	}
}

func TestDefaultEntry(t *testing.T) {
	s := unitSchema(t)
	e, err := s.DefaultEntry("route", Call("miss"))
	if err != nil {
		t.Fatal(err)
	}
	if !e.IsDefaultAction || len(e.Match) != 0 || e.Priority != 0 || e.GetAction().GetAction().GetActionId() != 16777220 {
		t.Errorf("DefaultEntry = %v", prototext.Format(e))
	}
	if _, err := s.DefaultEntry("pool", Call("encap")); err == nil {
		t.Error("DefaultEntry on a selector table succeeded")
	}
}

func TestActionProfileBuilders(t *testing.T) {
	s := unitSchema(t)
	encap := Call("encap", P("vni", Uint(7)), P("host_ip", Addr("192.168.0.2")), P("dmac", HW("02:00:00:00:00:02")))
	m, err := s.ActionProfileMember("pool_selector", 5, encap)
	if err != nil {
		t.Fatal(err)
	}
	if m.ActionProfileId != 285212673 || m.MemberId != 5 || m.Action.ActionId != 16777219 {
		t.Errorf("member = %v", prototext.Format(m))
	}
	if _, err := s.ActionProfileMember("pool_selector", 6, Call("drop")); err == nil {
		t.Error("member running an action no table of the profile has succeeded")
	}
	if _, err := s.ActionProfileMember("pool_selector", 0, encap); err == nil {
		t.Error("member id 0 accepted")
	}
	g, err := s.ActionProfileGroup("pool_selector", 1, []GroupMember{{ID: 9, Weight: 1}, {ID: 5, Weight: 3}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Members) != 2 || g.Members[0].MemberId != 5 || g.Members[0].Weight != 3 {
		t.Errorf("group = %v; want members sorted by id", prototext.Format(g))
	}
	for _, bad := range [][]GroupMember{
		{{ID: 1, Weight: 0}},
		{{ID: 1, Weight: 1}, {ID: 1, Weight: 1}},
		{{ID: 1, Weight: 1}, {ID: 2, Weight: 1}, {ID: 3, Weight: 1}, {ID: 4, Weight: 1}, {ID: 5, Weight: 1}},
		{{ID: 1, Weight: 3}, {ID: 2, Weight: 2}}, // sum of weights 5 > max_group_size 4
	} {
		if _, err := s.ActionProfileGroup("pool_selector", 1, bad, 0); err == nil {
			t.Errorf("group %v accepted", bad)
		}
	}
	e, err := s.TableEntry(Entry{Table: "pool", Match: []Match{Exact("pool_id", Uint(1))}, Group: 1})
	if err != nil || e.GetAction().GetActionProfileGroupId() != 1 {
		t.Errorf("group reference entry = %v, %v", e, err)
	}
}

func TestDirectCounterEntry(t *testing.T) {
	s := unitSchema(t)
	c, err := s.DirectCounterEntry(Entry{Table: "route", Match: []Match{Exact("vni", Uint(1))}}, &p4v1.CounterData{ByteCount: 1})
	if err != nil {
		t.Fatal(err)
	}
	if c.TableEntry.TableId != 33554434 || len(c.TableEntry.Match) != 1 || c.Data.ByteCount != 1 {
		t.Errorf("counter entry = %v", prototext.Format(c))
	}
	if _, err := s.DirectCounterEntry(Entry{Table: "acl", Match: []Match{Exact("vni", Uint(1))}, Priority: 1}, nil); err == nil {
		t.Error("direct counter entry on a table without one succeeded")
	}
}

func TestPacketOutAndIn(t *testing.T) {
	s := unitSchema(t)
	po, err := s.PacketOut([]byte{1, 2, 3}, P("egress_port", Uint(3)))
	if err != nil {
		t.Fatal(err)
	}
	want := []*p4v1.PacketMetadata{{MetadataId: 1, Value: []byte{3}}, {MetadataId: 2, Value: []byte{0}}}
	if len(po.Metadata) != 2 || !proto.Equal(po.Metadata[0], want[0]) || !proto.Equal(po.Metadata[1], want[1]) {
		t.Errorf("PacketOut metadata = %v; want one per field, padding zero", po.Metadata)
	}
	if _, err := s.PacketOut(nil, P("egress_port", Uint(512))); err == nil {
		t.Error("9-bit egress_port 512 accepted")
	}
	if _, err := s.PacketOut(nil, P("ingress_port", Uint(1))); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown metadata: %v", err)
	}
	md, err := s.PacketInMetadata(&p4v1.PacketIn{Metadata: []*p4v1.PacketMetadata{{MetadataId: 1, Value: []byte{1, 0xff}}}})
	if err != nil || md["ingress_port"] != 511 {
		t.Errorf("PacketInMetadata = %v, %v", md, err)
	}
}

func TestEntityAndUpdate(t *testing.T) {
	u, err := Update(p4v1.Update_INSERT, &p4v1.ActionProfileMember{MemberId: 3})
	if err != nil || u.GetEntity().GetActionProfileMember().GetMemberId() != 3 {
		t.Errorf("Update = %v, %v", u, err)
	}
	if _, err := Entity(&p4v1.PacketOut{}); !errors.Is(err, ErrNoEntity) {
		t.Errorf("Entity(PacketOut) = %v", err)
	}
}
