package p4rt

import (
	"net/netip"
	"testing"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"

	"github.com/p4mesh/p4mesh/p4"
)

func pipelineSchema(t testing.TB) *Schema {
	t.Helper()
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSchema(info)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPipelineSchema checks the lookups the rest of p4mesh relies on against
// the committed P4Info of vpc_peering.p4.
func TestPipelineSchema(t *testing.T) {
	s := pipelineSchema(t)
	fields := []struct {
		table, field string
		width        int32
		kind         p4configv1.MatchField_MatchType
	}{
		{"port_vnet", "ingress_port", 9, p4configv1.MatchField_EXACT},
		{"vm_source_guard", "src_mac", 48, p4configv1.MatchField_EXACT},
		{"tunnel_term", "vni", 24, p4configv1.MatchField_EXACT},
		{"vnet_source_check", "src_ip", 32, p4configv1.MatchField_LPM},
		{"vnet_destination", "dst_ip", 32, p4configv1.MatchField_EXACT},
		{"vnet_route", "dst_ip", 32, p4configv1.MatchField_LPM},
		{"gateway_pool", "pool_id", 16, p4configv1.MatchField_EXACT},
		{"lb_backend", "lb_id", 16, p4configv1.MatchField_EXACT},
		{"underlay_nexthop", "dst_ip", 32, p4configv1.MatchField_LPM},
	}
	for _, f := range fields {
		tbl, err := s.Table("VpcIngress." + f.table)
		if err != nil {
			t.Errorf("table %s: %v", f.table, err)
			continue
		}
		mf, err := tbl.Field(f.field)
		if err != nil || mf.GetBitwidth() != f.width || mf.GetMatchType() != f.kind {
			t.Errorf("%s.%s = %v, %v; want %d-bit %s", f.table, f.field, mf, err, f.width, f.kind)
		}
	}
	for _, sel := range []string{"gateway_pool", "lb_backend"} {
		tbl, _ := s.Table(sel)
		if tbl.Profile == nil || !tbl.Profile.GetWithSelector() {
			t.Errorf("%s has no action selector", sel)
		}
	}
	for _, c := range []string{"vnet_destination", "vnet_route"} {
		if tbl, _ := s.Table(c); tbl.Counter == nil {
			t.Errorf("%s has no direct counter", c)
		}
	}
	if _, err := s.Digest("gateway_digest_t"); err != nil {
		t.Error(err)
	}
	for _, k := range []string{"packet_in", "packet_out"} {
		if _, err := s.PacketMetadata(k); err != nil {
			t.Error(err)
		}
	}
}

// TestPipelineBuilders builds one entity of each kind the OHC writes.
func TestPipelineBuilders(t *testing.T) {
	s := pipelineSchema(t)
	encap := Call("encap_to_host", P("dst_vni", Uint(0x20)), P("host_ip", Addr("192.168.0.2")), P("dmac", HW("02:00:00:00:00:02")))
	if _, err := s.TableEntry(Entry{Table: "vnet_destination", Match: []Match{Exact("vni", Uint(0x10)), Exact("dst_ip", Addr("10.0.0.2"))}, Action: &encap}); err != nil {
		t.Error(err)
	}
	if _, err := s.TableEntry(Entry{Table: "vnet_route", Match: []Match{Exact("vni", Uint(0x10)), Prefix("dst_ip", netip.MustParsePrefix("10.2.0.0/16"))}, Action: &ActionCall{Name: "to_gateway_pool", Params: []Param{P("pool_id", Uint(1))}}}); err != nil {
		t.Error(err)
	}
	if _, err := s.ActionProfileMember("gateway_selector", 1, encap); err != nil {
		t.Error(err)
	}
	if _, err := s.ActionProfileGroup("gateway_selector", 1, []GroupMember{{1, 1}}, 0); err != nil {
		t.Error(err)
	}
	if _, err := s.TableEntry(Entry{Table: "gateway_pool", Match: []Match{Exact("pool_id", Uint(1))}, Group: 1}); err != nil {
		t.Error(err)
	}
	if _, err := s.DefaultEntry("local_host", Call("set_local_host", P("host_ip", Addr("192.168.0.1")), P("host_mac", HW("02:00:00:00:00:01")))); err != nil {
		t.Error(err)
	}
	if _, err := s.DefaultEntry("vnet_route", Call("drop")); err == nil {
		t.Error("modifying vnet_route's const default action succeeded")
	}
	if _, err := s.TableEntry(Entry{Table: "vnet_destination", Match: []Match{Exact("vni", Uint(1)), Exact("dst_ip", Addr("10.0.0.2"))}, Action: &ActionCall{Name: "destination_miss"}}); err == nil {
		t.Error("a @defaultonly action in an entry succeeded")
	}
	if _, err := s.PacketOut([]byte{0xff}, P("egress_port", Uint(3))); err != nil {
		t.Error(err)
	}
}
