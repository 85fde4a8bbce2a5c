package ohc_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// archTarget is the target that runs each architecture's program.
var archTarget = map[string]string{p4.V1Model: "bmv2", p4.TNA: "tofino", p4.PNA: "dpdk"}

func archSchema(t *testing.T, arch string) (*p4rt.Schema, *p4rt.Capabilities) {
	t.Helper()
	info, err := p4.P4InfoFor(arch)
	if err != nil {
		t.Fatal(err)
	}
	s, err := p4rt.NewSchema(info)
	if err != nil {
		t.Fatalf("%s: %v", arch, err)
	}
	tp, err := p4rt.LookupTarget(archTarget[arch])
	if err != nil {
		t.Fatal(err)
	}
	caps, err := tp.Capabilities(info)
	if err != nil {
		t.Fatalf("%s: %v", arch, err)
	}
	return s, caps
}

// TestCompileGoldenAcrossArchs is the golden test of issue 12: the OHC
// compiles one View into the v1model, TNA and PNA P4Infos, and the entities
// differ only as docs/targets.md says:
//
//   - PNA: nothing. Its tables, actions and action profiles have v1model's
//     ids; its ports are 32 bits wide, and P4Runtime's canonical encoding
//     of a port number is the same bytes whatever the width.
//   - TNA: the action profile ids of members and groups (bf-p4c gives TNA
//     externs ids from their names). The ports are Stratum's port ids
//     rather than dev ports, the same numbers on the wire.
//   - none of them programs a one-shot action set (the compiler uses
//     members and groups, which Stratum and infrap4d take).
//
// Port numbering differs in what a View may carry: see
// TestCompilePortsAcrossArchs.
func TestCompileGoldenAcrossArchs(t *testing.T) {
	compiled := map[string][]*p4v1.Entity{}
	schemas := map[string]*p4rt.Schema{}
	for _, arch := range p4.Archs() {
		s, _ := archSchema(t, arch)
		es, err := ohc.Compile(s, testView())
		if err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		compiled[arch], schemas[arch] = es, s
		for _, e := range es {
			if e.GetTableEntry().GetAction().GetActionProfileActionSet() != nil {
				t.Errorf("%s: a one-shot action set: %v", arch, e)
			}
		}
	}
	base := compiled[p4.V1Model]
	if len(base) < 20 {
		t.Fatalf("the view compiles to %d entities; the test wants a view that uses every kind", len(base))
	}

	// PNA: the very same entities.
	if diff := entitiesDiff(base, compiled[p4.PNA]); diff != "" {
		t.Errorf("PNA differs from v1model: %s", diff)
	}

	// TNA: the same once each action profile id is v1model's.
	profileIDs := map[uint32]uint32{}
	for _, p := range schemas[p4.TNA].P4Info().GetActionProfiles() {
		v, err := schemas[p4.V1Model].ActionProfile(p.GetPreamble().GetAlias())
		if err != nil {
			t.Fatalf("TNA profile %s: %v", p.GetPreamble().GetName(), err)
		}
		if v.GetPreamble().GetId() == p.GetPreamble().GetId() {
			t.Errorf("TNA profile %s has v1model's id %#x; bf-p4c hashes the name", p.GetPreamble().GetName(), p.GetPreamble().GetId())
		}
		profileIDs[p.GetPreamble().GetId()] = v.GetPreamble().GetId()
	}
	var tna []*p4v1.Entity
	renamed := 0
	for _, e := range compiled[p4.TNA] {
		e = proto.Clone(e).(*p4v1.Entity)
		switch x := e.GetEntity().(type) {
		case *p4v1.Entity_ActionProfileMember:
			x.ActionProfileMember.ActionProfileId = profileIDs[x.ActionProfileMember.GetActionProfileId()]
			renamed++
		case *p4v1.Entity_ActionProfileGroup:
			x.ActionProfileGroup.ActionProfileId = profileIDs[x.ActionProfileGroup.GetActionProfileId()]
			renamed++
		}
		tna = append(tna, e)
	}
	if renamed == 0 {
		t.Error("the view has no selector members or groups")
	}
	if diff := entitiesDiff(base, tna); diff != "" {
		t.Errorf("TNA differs from v1model beyond its action profile ids: %s", diff)
	}
}

func entitiesDiff(want, got []*p4v1.Entity) string {
	if len(want) != len(got) {
		return fmt.Sprintf("%d entities, want %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(want[i], got[i]) {
			return fmt.Sprintf("entity %d:\n got: %v\nwant: %v", i, got[i], want[i])
		}
	}
	return ""
}

// TestCompilePortsAcrossArchs: which ports a View may carry is each
// P4Info's: v1model's 9-bit ports without its CPU port 255; TNA's Stratum
// port ids (32 bits, 255 and the chip's CPU port 192 are ordinary ids);
// PNA's 32-bit ports without its CPU port 255.
func TestCompilePortsAcrossArchs(t *testing.T) {
	tests := []struct {
		port uint16
		ok   map[string]bool
	}{
		{7, map[string]bool{p4.V1Model: true, p4.TNA: true, p4.PNA: true}},
		{192, map[string]bool{p4.V1Model: true, p4.TNA: true, p4.PNA: true}},
		{255, map[string]bool{p4.V1Model: false, p4.TNA: true, p4.PNA: false}},
		{511, map[string]bool{p4.V1Model: true, p4.TNA: true, p4.PNA: true}},
		{512, map[string]bool{p4.V1Model: false, p4.TNA: true, p4.PNA: true}},
		{65535, map[string]bool{p4.V1Model: false, p4.TNA: true, p4.PNA: true}},
	}
	for _, arch := range p4.Archs() {
		s, caps := archSchema(t, arch)
		for _, tc := range tests {
			for _, where := range []string{"endpoint", "uplink"} {
				v := testView()
				if where == "endpoint" {
					v.Local[1].Port = tc.port
				} else {
					v.Host.UnderlayRoutes[0].Port = tc.port
				}
				_, err := ohc.Compile(s, v)
				if tc.ok[arch] != (err == nil) {
					t.Errorf("%s: %s on port %d: err = %v; want ok %v", arch, where, tc.port, err, tc.ok[arch])
				}
				if err != nil && !errors.Is(err, ohc.ErrBadView) {
					t.Errorf("%s: port %d: %v is no ErrBadView", arch, tc.port, err)
				}
				// The compiler's check is the target's, as far as a
				// View's port can reach.
				if capsErr := caps.CheckPort(uint64(tc.port)); (capsErr == nil) != tc.ok[arch] {
					t.Errorf("%s: the %s target's CheckPort(%d) = %v, the compiler's ok %v", arch, caps.Target, tc.port, capsErr, tc.ok[arch])
				}
			}
		}
	}
}

// TestCheckBudgetAcrossArchs: the compile of testView fits every program;
// a target whose tables were smaller would be told which are over.
func TestCheckBudgetAcrossArchs(t *testing.T) {
	for _, arch := range p4.Archs() {
		s, caps := archSchema(t, arch)
		es, err := ohc.Compile(s, testView())
		if err != nil {
			t.Fatal(err)
		}
		if err := ohc.CheckBudget(caps, s, es); err != nil {
			t.Errorf("%s: %v", arch, err)
		}
		route, err := s.Table("vnet_destination")
		if err != nil {
			t.Fatal(err)
		}
		lb, err := s.ActionProfile("lb_selector")
		if err != nil {
			t.Fatal(err)
		}
		small := *caps
		small.TableSize = map[string]int64{}
		for k, v := range caps.TableSize {
			small.TableSize[k] = v
		}
		small.ProfileSize = map[string]int64{}
		for k, v := range caps.ProfileSize {
			small.ProfileSize[k] = v
		}
		small.TableSize[route.GetPreamble().GetName()] = 1
		small.ProfileSize[lb.GetPreamble().GetName()] = 1
		err = ohc.CheckBudget(&small, s, es)
		var be *p4rt.BudgetError
		if !errors.As(err, &be) || len(be.Over) != 2 || !strings.Contains(err.Error(), route.GetPreamble().GetName()) ||
			!strings.Contains(err.Error(), lb.GetPreamble().GetName()+" needs") {
			t.Errorf("%s: shrunk budget: %v", arch, err)
		}
	}
}

// TestArchDifferencesDocumented pins the differences docs/targets.md lists,
// as each P4Info and target say them.
func TestArchDifferencesDocumented(t *testing.T) {
	type row struct {
		portBits               int32
		translation            string
		cpuPort                uint64
		oneShot                bool
		maxGroupSize           int32 // lb_selector's
		directCounters, digest int
	}
	want := map[string]row{
		p4.V1Model: {9, "", 255, true, 0, 2, 1},
		p4.TNA:     {32, "tna/PortId_t", 0xFFFFFFFD, false, 128, 0, 1},
		p4.PNA:     {32, "", 255, false, 0, 0, 0},
	}
	var tables, actions map[string]bool
	for _, arch := range p4.Archs() {
		s, caps := archSchema(t, arch)
		info := s.P4Info()
		lb, _ := s.ActionProfile("lb_selector")
		got := row{caps.PortBits, caps.PortTranslation, caps.CPUPort, caps.OneShotSelectors,
			lb.GetMaxGroupSize(), len(info.GetDirectCounters()), len(info.GetDigests())}
		if got != want[arch] {
			t.Errorf("%s: %+v; docs/targets.md says %+v", arch, got, want[arch])
		}
		// The rest of the contract is one: the same tables and actions by
		// alias, with the same ids.
		ts, as := aliasIDs(info)
		if tables == nil {
			tables, actions = ts, as
			continue
		}
		if fmt.Sprint(ts) != fmt.Sprint(tables) || fmt.Sprint(as) != fmt.Sprint(actions) {
			t.Errorf("%s: tables or actions differ from v1model's", arch)
		}
	}
}

func aliasIDs(info *p4configv1.P4Info) (tables, actions map[string]bool) {
	tables, actions = map[string]bool{}, map[string]bool{}
	for _, x := range info.GetTables() {
		tables[fmt.Sprintf("%s=%#x", x.GetPreamble().GetAlias(), x.GetPreamble().GetId())] = true
	}
	for _, x := range info.GetActions() {
		actions[fmt.Sprintf("%s=%#x", x.GetPreamble().GetAlias(), x.GetPreamble().GetId())] = true
	}
	return tables, actions
}
