package p4

import (
	"fmt"
	"strings"
	"testing"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	"google.golang.org/protobuf/proto"
)

// These tests keep the committed P4Infos honest without a P4 compiler: they
// read each architecture's vpc_peering.p4 with a small scanner, build the
// P4Info that the architecture's p4c emits for it (p4info_model_test.go) and
// compare message by message.

func TestP4InfoParses(t *testing.T) {
	for _, arch := range Archs() {
		t.Run(arch, func(t *testing.T) { testP4InfoParses(t, arch) })
	}
	if _, err := P4InfoFor("psa"); err == nil {
		t.Error("P4InfoFor(psa): no error")
	}
	if _, err := SourceFor("psa"); err == nil {
		t.Error("SourceFor(psa): no error")
	}
}

func testP4InfoParses(t *testing.T, arch string) {
	info, err := P4InfoFor(arch)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.GetPkgInfo().GetArch(); got != arch {
		t.Errorf("pkg_info.arch = %q, want %s", got, arch)
	}
	if len(info.GetTables()) == 0 || len(info.GetActions()) == 0 {
		t.Fatalf("embedded P4Info has %d tables and %d actions", len(info.GetTables()), len(info.GetActions()))
	}

	// Every reference inside the P4Info resolves.
	ids := map[uint32]string{}
	add := func(kind string, pre *p4configv1.Preamble) {
		if prev, dup := ids[pre.GetId()]; dup {
			t.Errorf("%s %q: id %#x already used by %s", kind, pre.GetName(), pre.GetId(), prev)
		}
		ids[pre.GetId()] = kind + " " + pre.GetName()
	}
	for _, x := range info.GetTables() {
		add("table", x.GetPreamble())
	}
	for _, x := range info.GetActions() {
		add("action", x.GetPreamble())
	}
	for _, x := range info.GetActionProfiles() {
		add("action profile", x.GetPreamble())
	}
	for _, x := range info.GetDirectCounters() {
		add("direct counter", x.GetPreamble())
	}
	for _, x := range info.GetControllerPacketMetadata() {
		add("controller packet metadata", x.GetPreamble())
	}
	for _, x := range info.GetDigests() {
		add("digest", x.GetPreamble())
	}
	resolve := func(what string, id uint32, prefix uint32) {
		name, ok := ids[id]
		switch {
		case !ok:
			t.Errorf("%s refers to id %#x, which nothing has", what, id)
		case id>>24 != prefix:
			t.Errorf("%s refers to id %#x (%s), want resource type %#02x", what, id, name, prefix)
		}
	}
	for _, tbl := range info.GetTables() {
		what := "table " + tbl.GetPreamble().GetName()
		for _, ref := range tbl.GetActionRefs() {
			resolve(what+" action_ref", ref.GetId(), uint32(p4configv1.P4Ids_ACTION))
		}
		if tbl.GetConstDefaultActionId() != 0 {
			resolve(what+" const_default_action_id", tbl.GetConstDefaultActionId(), uint32(p4configv1.P4Ids_ACTION))
		}
		if tbl.GetInitialDefaultAction() != nil {
			resolve(what+" initial_default_action", tbl.GetInitialDefaultAction().GetActionId(), uint32(p4configv1.P4Ids_ACTION))
		}
		if tbl.GetImplementationId() != 0 {
			resolve(what+" implementation_id", tbl.GetImplementationId(), uint32(p4configv1.P4Ids_ACTION_PROFILE))
		}
		for _, id := range tbl.GetDirectResourceIds() {
			resolve(what+" direct_resource_ids", id, uint32(p4configv1.P4Ids_DIRECT_COUNTER))
		}
	}
	for _, ap := range info.GetActionProfiles() {
		for _, id := range ap.GetTableIds() {
			resolve("action profile "+ap.GetPreamble().GetName()+" table_ids", id, uint32(p4configv1.P4Ids_TABLE))
		}
	}
	for _, dc := range info.GetDirectCounters() {
		resolve("direct counter "+dc.GetPreamble().GetName()+" direct_table_id", dc.GetDirectTableId(), uint32(p4configv1.P4Ids_TABLE))
	}
	for _, d := range info.GetDigests() {
		name := d.GetTypeSpec().GetStruct().GetName()
		if _, ok := info.GetTypeInfo().GetStructs()[name]; !ok {
			t.Errorf("digest %s: struct %q not in type_info", d.GetPreamble().GetName(), name)
		}
	}

	// Each call hands out its own message.
	info.Tables = nil
	again, err := P4InfoFor(arch)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.GetTables()) == 0 {
		t.Error("P4InfoFor() returned a message shared with an earlier caller")
	}
	text, _ := P4InfoTextFor(arch)
	text[0] ^= 0xff
	if again, _ := P4InfoTextFor(arch); again[0] == text[0] {
		t.Error("P4InfoTextFor() returned the embedded slice itself")
	}
	src, err := SourceFor(arch)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), "control VpcIngress(") || !strings.Contains(string(src), "header vxlan_t {") ||
		!strings.Contains(string(src), "state parse_inner_tcp {") || strings.Contains(string(src), `#include "`) {
		t.Error("SourceFor() does not look like vpc_peering.p4 with common/ included")
	}
	if arch == V1Model {
		if !strings.Contains(string(Source()), "control VpcIngress(") {
			t.Error("Source() does not look like vpc_peering.p4")
		}
		if string(P4InfoText()) != string(mustText(t, V1Model)) {
			t.Error("P4InfoText() is not the v1model P4Info")
		}
	}
}

func mustText(t *testing.T, arch string) []byte {
	t.Helper()
	b, err := P4InfoTextFor(arch)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestP4InfoMatchesSource is the contract between each vpc_peering.p4 and
// its committed P4Info: same IDs, same names, same shape, nothing more.
func TestP4InfoMatchesSource(t *testing.T) {
	for _, arch := range Archs() {
		t.Run(arch, func(t *testing.T) {
			info, err := P4InfoFor(arch)
			if err != nil {
				t.Fatal(err)
			}
			src, err := SourceFor(arch)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range checkP4Info(arch, string(src), info) {
				t.Error(p)
			}
		})
	}
}

// TestP4InfoRules checks the properties the rest of p4mesh relies on, with a
// message that says which rule broke.
func TestP4InfoRules(t *testing.T) {
	for _, arch := range Archs() {
		t.Run(arch, func(t *testing.T) { testP4InfoRules(t, arch) })
	}
}

func testP4InfoRules(t *testing.T, arch string) {
	info, err := P4InfoFor(arch)
	if err != nil {
		t.Fatal(err)
	}
	actionName := map[uint32]string{}
	for _, a := range info.GetActions() {
		actionName[a.GetPreamble().GetId()] = a.GetPreamble().GetName()
	}
	tests := []struct {
		name  string
		check func() []string
	}{
		{"NoAction is absent", func() (bad []string) {
			for _, a := range info.GetActions() {
				if a.GetPreamble().GetName() == "NoAction" || a.GetPreamble().GetAlias() == "NoAction" {
					bad = append(bad, "action NoAction is in the P4Info: a table lacks an explicit default action")
				}
			}
			return bad
		}},
		{"every table has a default action it lists", func() (bad []string) {
			for _, tbl := range info.GetTables() {
				def := tbl.GetInitialDefaultAction().GetActionId()
				if def == 0 {
					bad = append(bad, fmt.Sprintf("table %s has no default action", tbl.GetPreamble().GetName()))
					continue
				}
				listed := false
				for _, ref := range tbl.GetActionRefs() {
					listed = listed || ref.GetId() == def
				}
				if !listed {
					bad = append(bad, fmt.Sprintf("table %s: default action %s is not in its action_refs", tbl.GetPreamble().GetName(), actionName[def]))
				}
				if c := tbl.GetConstDefaultActionId(); c != 0 && c != def {
					bad = append(bad, fmt.Sprintf("table %s: const and initial default actions differ", tbl.GetPreamble().GetName()))
				}
			}
			return bad
		}},
		{"ids carry their resource type", func() (bad []string) {
			want := func(kind string, pre *p4configv1.Preamble, prefix p4configv1.P4Ids_Prefix) {
				if pre.GetId()>>24 != uint32(prefix) || pre.GetId()&0xffffff == 0 {
					bad = append(bad, fmt.Sprintf("%s %s: id %#08x, want prefix %#02x", kind, pre.GetName(), pre.GetId(), uint32(prefix)))
				}
			}
			for _, x := range info.GetTables() {
				want("table", x.GetPreamble(), p4configv1.P4Ids_TABLE)
			}
			for _, x := range info.GetActions() {
				want("action", x.GetPreamble(), p4configv1.P4Ids_ACTION)
			}
			for _, x := range info.GetActionProfiles() {
				want("action profile", x.GetPreamble(), p4configv1.P4Ids_ACTION_PROFILE)
			}
			for _, x := range info.GetDirectCounters() {
				want("direct counter", x.GetPreamble(), p4configv1.P4Ids_DIRECT_COUNTER)
			}
			for _, x := range info.GetControllerPacketMetadata() {
				want("controller packet metadata", x.GetPreamble(), p4configv1.P4Ids_CONTROLLER_HEADER)
			}
			for _, x := range info.GetDigests() {
				want("digest", x.GetPreamble(), p4configv1.P4Ids_DIGEST)
			}
			return bad
		}},
		{"selector tables have an action selector", func() (bad []string) {
			for _, ap := range info.GetActionProfiles() {
				if !ap.GetWithSelector() {
					bad = append(bad, fmt.Sprintf("action profile %s has no selector", ap.GetPreamble().GetName()))
				}
				if len(ap.GetTableIds()) == 0 {
					bad = append(bad, fmt.Sprintf("action profile %s is used by no table", ap.GetPreamble().GetName()))
				}
			}
			return bad
		}},
		{"packet_in and packet_out exist", func() (bad []string) {
			got := map[string]bool{}
			for _, m := range info.GetControllerPacketMetadata() {
				got[m.GetPreamble().GetName()] = true
			}
			for _, n := range []string{"packet_in", "packet_out"} {
				if !got[n] {
					bad = append(bad, "no controller_packet_metadata "+n)
				}
			}
			return bad
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range tc.check() {
				t.Error(p)
			}
		})
	}
}

// TestJenkinsHash pins the hash to IDs p4c actually emitted (p4c's
// testdata/p4_16_samples_outputs: NoAction everywhere, IngressI.drop and
// IngressI.as in action_selector_shared-bmv2, fabric.p4's controller headers).
func TestJenkinsHash(t *testing.T) {
	tests := []struct {
		name   string
		prefix p4configv1.P4Ids_Prefix
		want   uint32
	}{
		{"NoAction", p4configv1.P4Ids_ACTION, 21257015},
		{"IngressI.drop", p4configv1.P4Ids_ACTION, 23455883},
		{"IngressI.indirect_ws", p4configv1.P4Ids_TABLE, 38116258},
		{"IngressI.as", p4configv1.P4Ids_ACTION_PROFILE, 291652621},
		{"packet_in_header_t", p4configv1.P4Ids_CONTROLLER_HEADER, 81826293},
		{"packet_out_header_t", p4configv1.P4Ids_CONTROLLER_HEADER, 76689799},
	}
	for _, tc := range tests {
		if got := hashID(tc.prefix, tc.name); got != tc.want {
			t.Errorf("hashID(%v, %q) = %d, want %d", tc.prefix, tc.name, got, tc.want)
		}
	}
}

// TestCheckerCatchesMistakes makes sure checkP4Info can fail: each mutation of
// the P4Info or of the source must be reported.
func TestCheckerCatchesMistakes(t *testing.T) {
	b, err := SourceFor(V1Model)
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	good, err := P4Info()
	if err != nil {
		t.Fatal(err)
	}
	if p := checkP4Info(V1Model, src, good); len(p) != 0 {
		t.Fatalf("unmutated P4Info already fails: %v", p)
	}
	tableNamed := func(info *p4configv1.P4Info, alias string) *p4configv1.Table {
		for _, tbl := range info.GetTables() {
			if tbl.GetPreamble().GetAlias() == alias {
				return tbl
			}
		}
		t.Fatalf("no table %s", alias)
		return nil
	}
	actionNamed := func(info *p4configv1.P4Info, alias string) *p4configv1.Action {
		for _, a := range info.GetActions() {
			if a.GetPreamble().GetAlias() == alias {
				return a
			}
		}
		t.Fatalf("no action %s", alias)
		return nil
	}
	infoMutations := []struct {
		name   string
		mutate func(*p4configv1.P4Info)
	}{
		{"table id typo", func(i *p4configv1.P4Info) { tableNamed(i, "vnet_route").Preamble.Id++ }},
		{"action id typo", func(i *p4configv1.P4Info) { actionNamed(i, "encap_to_host").Preamble.Id = 0x0100000f }},
		{"param renamed", func(i *p4configv1.P4Info) { actionNamed(i, "set_vnet").Params[1].Name = "mac" }},
		{"param width", func(i *p4configv1.P4Info) { actionNamed(i, "to_local_vm").Params[0].Bitwidth = 16 }},
		{"match field renamed", func(i *p4configv1.P4Info) { tableNamed(i, "lb_frontend").MatchFields[3].Name = "port" }},
		{"match type", func(i *p4configv1.P4Info) {
			tableNamed(i, "vnet_route").MatchFields[1].Match = &p4configv1.MatchField_MatchType_{MatchType: p4configv1.MatchField_EXACT}
		}},
		{"selector field exposed", func(i *p4configv1.P4Info) {
			tbl := tableNamed(i, "gateway_pool")
			tbl.MatchFields = append(tbl.MatchFields, &p4configv1.MatchField{Id: 2, Name: "src_ip", Bitwidth: 32,
				Match: &p4configv1.MatchField_MatchType_{MatchType: p4configv1.MatchField_EXACT}})
		}},
		{"default action removed", func(i *p4configv1.P4Info) { tableNamed(i, "arp_proxy").InitialDefaultAction = nil }},
		{"default made const", func(i *p4configv1.P4Info) {
			tbl := tableNamed(i, "local_host")
			tbl.ConstDefaultActionId = tbl.GetInitialDefaultAction().GetActionId()
		}},
		{"NoAction added", func(i *p4configv1.P4Info) {
			i.Actions = append(i.Actions, &p4configv1.Action{Preamble: &p4configv1.Preamble{Id: 21257015, Name: "NoAction", Alias: "NoAction"}})
		}},
		{"extra table", func(i *p4configv1.P4Info) {
			i.Tables = append(i.Tables, &p4configv1.Table{Preamble: &p4configv1.Preamble{Id: 0x02000fff, Name: "VpcIngress.extra", Alias: "extra"}})
		}},
		{"tables reordered", func(i *p4configv1.P4Info) { i.Tables[0], i.Tables[1] = i.Tables[1], i.Tables[0] }},
		{"digest id", func(i *p4configv1.P4Info) { i.Digests[0].Preamble.Id++ }},
		{"controller header id", func(i *p4configv1.P4Info) { i.ControllerPacketMetadata[1].Preamble.Id = 0x04000001 }},
		{"selector size", func(i *p4configv1.P4Info) { i.ActionProfiles[0].Size = 2048 }},
		{"counter detached", func(i *p4configv1.P4Info) { tableNamed(i, "vnet_route").DirectResourceIds = nil }},
		{"type_info lost", func(i *p4configv1.P4Info) { i.TypeInfo = nil }},
	}
	for _, tc := range infoMutations {
		t.Run("p4info/"+tc.name, func(t *testing.T) {
			info := proto.Clone(good).(*p4configv1.P4Info)
			tc.mutate(info)
			if p := checkP4Info(V1Model, src, info); len(p) == 0 {
				t.Error("mutation not detected")
			}
		})
	}

	srcMutations := []struct{ name, old, new string }{
		{"@id typo", "@id(0x02000008)", "@id(0x02000018)"},
		{"key renamed", `exact @name("target_ip")`, `exact @name("tpa")`},
		{"action param renamed", "action to_lb(bit<16> lb_id)", "action to_lb(bit<16> lb)"},
		{"default action changed", "const default_action = destination_miss();", "const default_action = to_lb(0);"},
		{"@id removed", "@id(0x0100000E)\n", ""},
		{"counter removed", "counters = vnet_route_counter;", ""},
		{"digest struct changed", "bit<32> dst_ip;\n}", "bit<32> dst_addr;\n}"},
	}
	for _, tc := range srcMutations {
		t.Run("source/"+tc.name, func(t *testing.T) {
			if !strings.Contains(src, tc.old) {
				t.Fatalf("source has no %q", tc.old)
			}
			mutated := strings.Replace(src, tc.old, tc.new, 1)
			if p := checkP4Info(V1Model, mutated, good); len(p) == 0 {
				t.Error("mutation not detected")
			}
		})
	}
}

// TestCheckerCatchesArchMistakes: the TNA and PNA models fail too, on what
// their compilers do differently.
func TestCheckerCatchesArchMistakes(t *testing.T) {
	tests := []struct {
		arch, name string
		old, new   string                   // a source mutation, or
		mutate     func(*p4configv1.P4Info) // a P4Info one
	}{
		{arch: TNA, name: "port translation dropped", old: "@p4runtime_translation(\"tna/PortId_t\", 32)\ntype", new: "type"},
		{arch: TNA, name: "selector over another profile", old: "ActionSelector(lb_selector, ", new: "ActionSelector(route_selector, "},
		{arch: TNA, name: "implementation names the profile", old: "implementation = lb_selector_groups;", new: "implementation = lb_selector;"},
		{arch: TNA, name: "digest loses its global name", old: "@name(\".gateway_digest_t\")\n    Digest", new: "Digest"},
		{arch: TNA, name: "direct counter", old: "table vnet_route {", new: "DirectCounter<bit<64>>(CounterType_t.PACKETS_AND_BYTES) c;\n    table vnet_route {"},
		{arch: TNA, name: "@id taken for a profile id", mutate: func(i *p4configv1.P4Info) { i.ActionProfiles[0].Preamble.Id = 0x11000001 }},
		{arch: TNA, name: "pipe prefix kept", mutate: func(i *p4configv1.P4Info) { i.Tables[0].Preamble.Name = "pipe." + i.Tables[0].Preamble.Name }},
		{arch: TNA, name: "port metadata extern dropped", mutate: func(i *p4configv1.P4Info) { i.Externs = nil }},
		{arch: TNA, name: "max_group_size dropped", mutate: func(i *p4configv1.P4Info) { i.ActionProfiles[1].MaxGroupSize = 0 }},
		{arch: PNA, name: "v1model's implementation property", old: "pna_implementation = lb_selector;", new: "implementation = lb_selector;"},
		{arch: PNA, name: "lpm beside ternary", old: `meta.vni:                exact @name("vni");
            hdr.inner_ipv4.dst_addr: lpm @name("dst_ip");`, new: `meta.vni:                ternary @name("vni");
            hdr.inner_ipv4.dst_addr: lpm @name("dst_ip");`},
		{arch: PNA, name: "digest", old: "control VpcDeparser(packet_out packet,", new: "control VpcDigest(in headers_t hdr) {\n    Digest<gateway_digest_t>() d;\n    apply { }\n}\ncontrol VpcDeparser(packet_out packet,"},
		{arch: PNA, name: "wide selector hash", old: "32w4096, 32w8) lb_selector;", new: "32w4096, 32w32) lb_selector;"},
		{arch: PNA, name: "no pipe prefix", mutate: func(i *p4configv1.P4Info) { i.ActionProfiles[0].Preamble.Name = "VpcIngress.gateway_selector" }},
		{arch: PNA, name: "selector extern's profile id", mutate: func(i *p4configv1.P4Info) {
			i.Externs[0].Instances[0].Info.Value[len(i.Externs[0].Instances[0].Info.Value)-1]++
		}},
		{arch: PNA, name: "port width", mutate: func(i *p4configv1.P4Info) { i.ControllerPacketMetadata[1].Metadata[0].Bitwidth = 9 }},
	}
	for _, tc := range tests {
		t.Run(tc.arch+"/"+tc.name, func(t *testing.T) {
			b, err := SourceFor(tc.arch)
			if err != nil {
				t.Fatal(err)
			}
			src := string(b)
			info, err := P4InfoFor(tc.arch)
			if err != nil {
				t.Fatal(err)
			}
			if p := checkP4Info(tc.arch, src, info); len(p) != 0 {
				t.Fatalf("unmutated %s P4Info already fails: %v", tc.arch, p)
			}
			if tc.mutate != nil {
				tc.mutate(info)
			} else {
				if !strings.Contains(src, tc.old) {
					t.Fatalf("source has no %q", tc.old)
				}
				src = strings.Replace(src, tc.old, tc.new, 1)
			}
			if p := checkP4Info(tc.arch, src, info); len(p) == 0 {
				t.Error("mutation not detected")
			}
		})
	}
}
