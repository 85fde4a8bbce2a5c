package ohc_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

func schema(t testing.TB) *p4rt.Schema {
	t.Helper()
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	s, err := p4rt.NewSchema(info)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

var (
	ip  = netip.MustParseAddr
	pfx = netip.MustParsePrefix
)

const (
	hostA = "192.168.0.1"
	hostB = "192.168.0.2"

	redVM1MAC  = "02:00:00:01:00:02"
	redVM2MAC  = "02:00:00:01:00:03"
	redRemMAC  = "02:00:00:01:00:09"
	blueVMMAC  = "02:00:00:02:01:05"
	blueHidMAC = "02:00:00:02:02:05"
	greenMAC   = "02:00:00:03:00:05"
	uplinkMAC  = "02:ff:00:00:00:01"
	hostAMAC   = "02:aa:00:00:00:01"
)

// testView is one host (A) with two red VMs; red is peered with blue, which
// exports only 10.2.1.0/24 to red; red's peering with green is inactive.
// Host B holds a red VM and blue's VMs.
func testView() *ohc.View {
	return &ohc.View{
		Host: ohc.Host{ID: "a", IP: ip(hostA), MAC: mac(hostAMAC), UnderlayRoutes: []ohc.UnderlayRoute{
			{Prefix: pfx("192.168.0.0/16"), Port: 10, SrcMAC: mac(hostAMAC), DstMAC: mac(uplinkMAC)},
		}},
		VPCs: map[string]ohc.VPC{
			"red":   {Name: "red", VNI: 100, Subnets: []netip.Prefix{pfx("10.1.0.0/16")}, GatewayIP: ip("10.1.0.1"), GatewayMAC: mac("02:00:00:01:00:01")},
			"blue":  {Name: "blue", VNI: 200, Subnets: []netip.Prefix{pfx("10.2.0.0/16")}, GatewayIP: ip("10.2.0.1"), GatewayMAC: mac("02:00:00:02:00:01")},
			"green": {Name: "green", VNI: 300, Subnets: []netip.Prefix{pfx("10.3.0.0/16")}},
		},
		Local: []ohc.LocalEndpoint{
			{ID: "red-vm1", VPC: "red", IP: ip("10.1.0.2"), MAC: mac(redVM1MAC), Port: 1},
			{ID: "red-vm2", VPC: "red", IP: ip("10.1.0.3"), MAC: mac(redVM2MAC), Port: 2},
		},
		Peerings: []ohc.Peering{
			{VPC: "red", PeerVPC: "blue", PeerVNI: 200, Active: true, PeerPrefixes: []netip.Prefix{pfx("10.2.1.0/24")}},
			{VPC: "red", PeerVPC: "green", PeerVNI: 300, Active: false, PeerPrefixes: []netip.Prefix{pfx("10.3.0.0/16")}},
		},
		Remote: map[string][]ohc.RemoteEndpoint{
			"red": {
				{IP: ip("10.1.0.2"), MAC: mac(redVM1MAC), HostIP: ip(hostA)}, // ours, also in Local
				{IP: ip("10.1.0.9"), MAC: mac(redRemMAC), HostIP: ip(hostB)},
			},
			"blue": {
				{IP: ip("10.2.1.5"), MAC: mac(blueVMMAC), HostIP: ip(hostB), VPC: "blue", VNI: 200},
				{IP: ip("10.2.2.5"), MAC: mac(blueHidMAC), HostIP: ip(hostB)}, // not exported to red
			},
			"green": {{IP: ip("10.3.0.5"), MAC: mac(greenMAC), HostIP: ip(hostB)}},
		},
		LBs: []ohc.LoadBalancer{
			{Name: "web", VPC: "red", VIP: ip("10.1.0.100"), Protocol: 6, Port: 80, Backends: []ohc.Backend{
				{IP: ip("10.1.0.9"), MAC: mac(redRemMAC), HostIP: ip(hostB), Weight: 2},
				{IP: ip("10.1.0.3"), MAC: mac(redVM2MAC), HostIP: ip(hostA)},
			}},
			{Name: "api", VPC: "blue", VIP: ip("10.2.1.100"), Protocol: 6, Port: 443, Backends: []ohc.Backend{
				{IP: ip("10.2.1.5"), MAC: mac(blueVMMAC), HostIP: ip(hostB)},
			}},
			{Name: "db", VPC: "green", VIP: ip("10.3.0.100"), Protocol: 6, Port: 5432, Backends: []ohc.Backend{
				{IP: ip("10.3.0.5"), MAC: mac(greenMAC), HostIP: ip(hostB)},
			}},
		},
		Routes: []ohc.Route{
			{VPC: "red", Prefix: pfx("0.0.0.0/0")},
			{VPC: "red", Prefix: pfx("172.16.0.0/12"), NextHopIP: ip("10.1.0.9")},
			{VPC: "red", Prefix: pfx("192.168.100.0/24"), NextHopIP: ip("10.2.1.5")},
			{VPC: "red", Prefix: pfx("10.99.0.0/16"), NextHopIP: ip("10.1.0.77")},
			{VPC: "green", Prefix: pfx("0.0.0.0/0")},
		},
	}
}

// render prints an entity the way the tests name them, decoding values by
// the name of their field or parameter.
func render(t testing.TB, s *p4rt.Schema, e *p4v1.Entity) string {
	t.Helper()
	switch x := e.Entity.(type) {
	case *p4v1.Entity_TableEntry:
		te := x.TableEntry
		tbl, err := s.TableByID(te.GetTableId())
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		b.WriteString(tbl.GetPreamble().GetAlias())
		if te.GetIsDefaultAction() {
			b.WriteString(" default")
		}
		for _, m := range te.GetMatch() {
			f, err := tbl.FieldByID(m.GetFieldId())
			if err != nil {
				t.Fatal(err)
			}
			w := int(f.GetBitwidth())
			if lpm := m.GetLpm(); lpm != nil {
				fmt.Fprintf(&b, " %s=%s/%d", f.GetName(), value(t, f.GetName(), lpm.GetValue(), w), lpm.GetPrefixLen())
				continue
			}
			fmt.Fprintf(&b, " %s=%s", f.GetName(), value(t, f.GetName(), m.GetExact().GetValue(), w))
		}
		switch a := te.GetAction().GetType().(type) {
		case *p4v1.TableAction_Action:
			b.WriteString(" -> " + action(t, s, a.Action))
		case *p4v1.TableAction_ActionProfileGroupId:
			fmt.Fprintf(&b, " -> group %d", a.ActionProfileGroupId)
		case *p4v1.TableAction_ActionProfileMemberId:
			fmt.Fprintf(&b, " -> member %d", a.ActionProfileMemberId)
		}
		return b.String()
	case *p4v1.Entity_ActionProfileMember:
		m := x.ActionProfileMember
		return fmt.Sprintf("member %d -> %s", m.GetMemberId(), action(t, s, m.GetAction()))
	case *p4v1.Entity_ActionProfileGroup:
		g := x.ActionProfileGroup
		var ms []string
		for _, m := range g.GetMembers() {
			ms = append(ms, fmt.Sprintf("%d*%d", m.GetMemberId(), m.GetWeight()))
		}
		return fmt.Sprintf("group %d [%s]", g.GetGroupId(), strings.Join(ms, " "))
	}
	t.Fatalf("unexpected entity %T", e.Entity)
	return ""
}

func action(t testing.TB, s *p4rt.Schema, a *p4v1.Action) string {
	t.Helper()
	act, err := s.ActionByID(a.GetActionId())
	if err != nil {
		t.Fatal(err)
	}
	var ps []string
	for _, p := range a.GetParams() {
		spec, err := act.ParamByID(p.GetParamId())
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, spec.GetName()+"="+value(t, spec.GetName(), p.GetValue(), int(spec.GetBitwidth())))
	}
	return act.GetPreamble().GetAlias() + "(" + strings.Join(ps, ", ") + ")"
}

func value(t testing.TB, name string, v []byte, width int) string {
	t.Helper()
	switch {
	case strings.HasSuffix(name, "mac"):
		m, err := p4rt.DecodeMAC(v)
		if err != nil {
			t.Fatal(err)
		}
		return m.String()
	case strings.HasSuffix(name, "ip") || name == "vip":
		a, err := p4rt.DecodeAddr(v, width)
		if err != nil {
			t.Fatal(err)
		}
		return a.String()
	}
	n, err := p4rt.DecodeUint(v, width)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(n)
}

func compile(t testing.TB, s *p4rt.Schema, v *ohc.View) ([]string, []string) {
	t.Helper()
	es, warnings, err := ohc.CompileWithWarnings(s, v)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = render(t, s, e)
	}
	return out, warnings
}

func withPrefix(lines []string, prefix string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

func TestCompileEntries(t *testing.T) {
	s := schema(t)
	got, _ := compile(t, s, testView())
	ids := ohc.LBIDs(testView().LBs)
	web, api := ids[ohc.LBKey{VPC: "red", Name: "web"}], ids[ohc.LBKey{VPC: "blue", Name: "api"}]
	webMembers := ohc.MemberIDs(web, testView().LBs[0].Backends)
	apiMembers := ohc.MemberIDs(api, testView().LBs[1].Backends)

	for _, tc := range []struct{ name, entry string }{
		{"host identity", "local_host default -> set_local_host(host_ip=192.168.0.1, host_mac=" + hostAMAC + ")"},
		{"underlay", "underlay_nexthop dst_ip=192.168.0.0/16 -> set_underlay(port=10, smac=" + hostAMAC + ", dmac=" + uplinkMAC + ")"},
		{"VM port", "port_vnet ingress_port=1 -> set_vnet(vni=100, vm_mac=" + redVM1MAC + ")"},
		{"anti-spoofing", "vm_source_guard vni=100 ingress_port=2 src_ip=10.1.0.3 src_mac=" + redVM2MAC + " -> permit()"},
		{"tunnel termination", "tunnel_term dst_ip=192.168.0.1 vni=100 -> decap()"},
		{"own subnet admitted", "vnet_source_check vni=100 src_ip=10.1.0.0/16 -> permit()"},
		{"peer export admitted", "vnet_source_check vni=100 src_ip=10.2.1.0/24 -> permit()"},
		{"ARP gateway", "arp_proxy vni=100 target_ip=10.1.0.1 -> arp_reply(mac=02:00:00:01:00:01)"},
		{"ARP local", "arp_proxy vni=100 target_ip=10.1.0.2 -> arp_reply(mac=" + redVM1MAC + ")"},
		{"ARP remote", "arp_proxy vni=100 target_ip=10.1.0.9 -> arp_reply(mac=" + redRemMAC + ")"},
		{"local delivery", "vnet_destination vni=100 dst_ip=10.1.0.2 -> to_local_vm(port=1, dmac=" + redVM1MAC + ")"},
		{"own VPC remote", "vnet_destination vni=100 dst_ip=10.1.0.9 -> encap_to_host(dst_vni=100, host_ip=192.168.0.2, dmac=" + redRemMAC + ")"},
		{"peer remote, peer VNI on the wire", "vnet_destination vni=100 dst_ip=10.2.1.5 -> encap_to_host(dst_vni=200, host_ip=192.168.0.2, dmac=" + blueVMMAC + ")"},
		{"own LB frontend", fmt.Sprintf("lb_frontend vni=100 vip=10.1.0.100 protocol=6 l4_port=80 -> to_lb(lb_id=%d)", web)},
		{"peer LB frontend", fmt.Sprintf("lb_frontend vni=100 vip=10.2.1.100 protocol=6 l4_port=443 -> to_lb(lb_id=%d)", api)},
		{"LB backend group", fmt.Sprintf("lb_backend lb_id=%d -> group %d", web, web)},
		{"local backend member", fmt.Sprintf("member %d -> to_local_vm(port=2, dmac=%s)", webMembers[ip("10.1.0.3")], redVM2MAC)},
		{"remote backend member", fmt.Sprintf("member %d -> encap_to_host(dst_vni=100, host_ip=192.168.0.2, dmac=%s)", webMembers[ip("10.1.0.9")], redRemMAC)},
		{"peer backend member", fmt.Sprintf("member %d -> encap_to_host(dst_vni=200, host_ip=192.168.0.2, dmac=%s)", apiMembers[ip("10.2.1.5")], blueVMMAC)},
		{"drop route (default)", "vnet_route vni=100 -> drop()"},
		{"route via own endpoint", "vnet_route vni=100 dst_ip=172.16.0.0/12 -> encap_to_host(dst_vni=100, host_ip=192.168.0.2, dmac=" + redRemMAC + ")"},
		{"route via peer endpoint", "vnet_route vni=100 dst_ip=192.168.100.0/24 -> encap_to_host(dst_vni=200, host_ip=192.168.0.2, dmac=" + blueVMMAC + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !slices.Contains(got, tc.entry) {
				t.Errorf("missing %q", tc.entry)
			}
		})
	}

	// Group weights: unset means 1, members ascending.
	groups := withPrefix(got, "group ")
	w := []uint32{webMembers[ip("10.1.0.3")], webMembers[ip("10.1.0.9")]}
	weights := map[uint32]int{webMembers[ip("10.1.0.3")]: 1, webMembers[ip("10.1.0.9")]: 2}
	slices.Sort(w)
	wantGroup := fmt.Sprintf("group %d [%d*%d %d*%d]", web, w[0], weights[w[0]], w[1], weights[w[1]])
	if !slices.Contains(groups, wantGroup) {
		t.Errorf("groups = %q, want %q among them", groups, wantGroup)
	}

	// Exactly what the peering exports, nothing of green, nothing blue does
	// not export, no ARP for peers, nothing for the host's own remote copy.
	for _, l := range got {
		for _, bad := range []string{"vni=300", "dst_vni=300", "10.3.", "10.2.2.5", "target_ip=10.2.", "vni=200 "} {
			if strings.Contains(l, bad) {
				t.Errorf("unexpected %q (contains %q)", l, bad)
			}
		}
	}
	// Its subnet, blue's export, and where red routes to (its routes with
	// a next hop that resolves; not 10.99.0.0/16, whose next hop is
	// unknown).
	if got, want := withPrefix(got, "vnet_source_check"), []string{
		"vnet_source_check vni=100 src_ip=10.1.0.0/16 -> permit()",
		"vnet_source_check vni=100 src_ip=10.2.1.0/24 -> permit()",
		"vnet_source_check vni=100 src_ip=172.16.0.0/12 -> permit()",
		"vnet_source_check vni=100 src_ip=192.168.100.0/24 -> permit()",
	}; !slices.Equal(got, want) {
		t.Errorf("vnet_source_check = %q, want %q", got, want)
	}
	if got := withPrefix(got, "tunnel_term"); len(got) != 1 {
		t.Errorf("tunnel_term = %q, want red's only", got)
	}
	if got := withPrefix(got, "vnet_destination"); len(got) != 4 {
		t.Errorf("vnet_destination = %q, want 2 local, 1 red remote, 1 exported blue", got)
	}
	if got := withPrefix(got, "lb_frontend"); len(got) != 2 {
		t.Errorf("lb_frontend = %q, want red's and blue's exported one", got)
	}
}

func TestCompileWarnings(t *testing.T) {
	s := schema(t)
	got, warnings := compile(t, s, testView())
	if len(warnings) != 1 || !strings.Contains(warnings[0], "10.1.0.77") {
		t.Errorf("warnings = %q, want one for the unknown next hop 10.1.0.77", warnings)
	}
	for _, l := range got {
		if strings.Contains(l, "10.99.0.0") {
			t.Errorf("route with an unknown next hop programmed: %q", l)
		}
	}
}

func TestCompileInactivePeeringContributesNothing(t *testing.T) {
	s := schema(t)
	inactive, _ := compile(t, s, testView())

	v := testView()
	v.Peerings[1].Active = true
	active, _ := compile(t, s, v)
	for _, want := range []string{
		"vnet_source_check vni=100 src_ip=10.3.0.0/16 -> permit()",
		"vnet_destination vni=100 dst_ip=10.3.0.5 -> encap_to_host(dst_vni=300, host_ip=192.168.0.2, dmac=" + greenMAC + ")",
	} {
		if !slices.Contains(active, want) {
			t.Errorf("active green peering: missing %q", want)
		}
		if slices.Contains(inactive, want) {
			t.Errorf("inactive green peering: has %q", want)
		}
	}

	// Removing the inactive peering changes nothing at all.
	v = testView()
	v.Peerings = v.Peerings[:1]
	without, _ := compile(t, s, v)
	if !slices.Equal(without, inactive) {
		t.Error("an inactive peering changed the output")
	}
}

func TestCompileExportNarrowing(t *testing.T) {
	s := schema(t)
	v := testView()
	v.Peerings[0].PeerPrefixes = []netip.Prefix{pfx("10.2.2.0/24")}
	got, _ := compile(t, s, v)
	want := "vnet_destination vni=100 dst_ip=10.2.2.5 -> encap_to_host(dst_vni=200, host_ip=192.168.0.2, dmac=" + blueHidMAC + ")"
	if !slices.Contains(got, want) {
		t.Errorf("missing %q", want)
	}
	for _, l := range got {
		if strings.Contains(l, "10.2.1.") {
			t.Errorf("no longer exported, still programmed: %q", l)
		}
	}
}

func TestCompilePeerEndpointOnThisHost(t *testing.T) {
	s := schema(t)
	v := testView()
	v.Local = append(v.Local, ohc.LocalEndpoint{ID: "blue-vm", VPC: "blue", IP: ip("10.2.1.7"), MAC: mac("02:00:00:02:01:07"), Port: 3})
	v.Remote["blue"] = append(v.Remote["blue"], ohc.RemoteEndpoint{IP: ip("10.2.1.7"), MAC: mac("02:00:00:02:01:07"), HostIP: ip(hostA)})
	v.Peerings = append(v.Peerings, ohc.Peering{VPC: "blue", PeerVPC: "red", PeerVNI: 100, Active: true, PeerPrefixes: []netip.Prefix{pfx("10.1.0.0/16")}})
	got, _ := compile(t, s, v)
	for _, want := range []string{
		// red to the blue VM next door: straight to its port.
		"vnet_destination vni=100 dst_ip=10.2.1.7 -> to_local_vm(port=3, dmac=02:00:00:02:01:07)",
		// and back.
		"vnet_destination vni=200 dst_ip=10.1.0.2 -> to_local_vm(port=1, dmac=" + redVM1MAC + ")",
		"tunnel_term dst_ip=192.168.0.1 vni=200 -> decap()",
		"vnet_source_check vni=200 src_ip=10.1.0.0/16 -> permit()",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %q", want)
		}
	}
}

func TestCompileDeterministic(t *testing.T) {
	s := schema(t)
	a, err := ohc.Compile(s, testView())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ohc.Compile(s, testView())
	if err != nil {
		t.Fatal(err)
	}
	// The same view with every list in another order.
	v := testView()
	slices.Reverse(v.Local)
	slices.Reverse(v.Peerings)
	slices.Reverse(v.LBs)
	slices.Reverse(v.Routes)
	for _, lb := range v.LBs {
		slices.Reverse(lb.Backends)
	}
	for _, rs := range v.Remote {
		slices.Reverse(rs)
	}
	c, err := ohc.Compile(s, v)
	if err != nil {
		t.Fatal(err)
	}
	for name, other := range map[string][]*p4v1.Entity{"twice": b, "reordered": c} {
		if len(a) != len(other) {
			t.Fatalf("%s: %d entities, then %d", name, len(a), len(other))
		}
		for i := range a {
			if !proto.Equal(a[i], other[i]) {
				t.Fatalf("%s: entity %d differs:\n%s\n%s", name, i, render(t, s, a[i]), render(t, s, other[i]))
			}
		}
	}
}

func TestLBIDsStable(t *testing.T) {
	v := testView()
	all := ohc.LBIDs(v.LBs)
	some := ohc.LBIDs(v.LBs[1:2])
	k := ohc.LBKey{VPC: "blue", Name: "api"}
	if all[k] != some[k] || all[k] == 0 {
		t.Errorf("lb_id of blue/api: %d with others, %d alone; want equal and nonzero", all[k], some[k])
	}
	seen := map[uint16]bool{}
	for _, id := range all {
		if seen[id] {
			t.Errorf("lb_id %d given twice", id)
		}
		seen[id] = true
	}
	m1 := ohc.MemberIDs(7, v.LBs[0].Backends)
	m2 := ohc.MemberIDs(7, v.LBs[0].Backends[:1])
	if b := v.LBs[0].Backends[0].IP; m1[b] != m2[b] || m1[b]>>16 != 7 {
		t.Errorf("member id of %v: %#x with another backend, %#x alone", b, m1[b], m2[b])
	}
}

func TestCompileErrors(t *testing.T) {
	s := schema(t)
	for _, tc := range []struct {
		name   string
		mutate func(v *ohc.View)
		want   string
	}{
		{"no host IP", func(v *ohc.View) { v.Host.IP = netip.Addr{} }, "underlay IP"},
		{"IPv6 host", func(v *ohc.View) { v.Host.IP = ip("2001:db8::1") }, "underlay IP"},
		{"bad host MAC", func(v *ohc.View) { v.Host.MAC = net.HardwareAddr{1, 2} }, "MAC"},
		{"unknown VPC", func(v *ohc.View) { v.Local[0].VPC = "purple" }, `VPC "purple" is not in the view`},
		{"VNI too wide", func(v *ohc.View) { x := v.VPCs["red"]; x.VNI = 1 << 24; v.VPCs["red"] = x }, "VNI"},
		{"VNI zero", func(v *ohc.View) { x := v.VPCs["red"]; x.VNI = 0; v.VPCs["red"] = x }, "VNI"},
		{"duplicate VNI", func(v *ohc.View) { x := v.VPCs["green"]; x.VNI = 100; v.VPCs["green"] = x }, "VNI 100"},
		{"two endpoints on a port", func(v *ohc.View) { v.Local[1].Port = 1 }, "port 1"},
		{"CPU port", func(v *ohc.View) { v.Local[1].Port = 255 }, "CPU port"},
		{"endpoint without MAC", func(v *ohc.View) { v.Local[0].MAC = nil }, "MAC"},
		{"endpoint on the uplink", func(v *ohc.View) { v.Host.UnderlayRoutes[0].Port = 1 }, "port 1"},
		{"peer VNI disagrees", func(v *ohc.View) { v.Peerings[0].PeerVNI = 201 }, "peer VNI 201"},
		{"peering with itself", func(v *ohc.View) { v.Peerings[0].PeerVPC = "red" }, "itself"},
		{"remote filed wrong", func(v *ohc.View) { v.Remote["blue"][0].VPC = "green" }, "filed under"},
		{"remote without host", func(v *ohc.View) { v.Remote["red"][1].HostIP = netip.Addr{} }, "host IP"},
		{"gateway without MAC", func(v *ohc.View) { x := v.VPCs["red"]; x.GatewayMAC = nil; v.VPCs["red"] = x }, "gateway"},
		{"LB without name", func(v *ohc.View) { v.LBs[0].Name = "" }, "name and VPC"},
		{"LB backend twice", func(v *ohc.View) { v.LBs[0].Backends[1].IP = v.LBs[0].Backends[0].IP }, "twice"},
		{"bad route prefix", func(v *ohc.View) { v.Routes[0].Prefix = netip.Prefix{} }, "prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := testView()
			tc.mutate(v)
			_, err := ohc.Compile(s, v)
			if !errors.Is(err, ohc.ErrBadView) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want ErrBadView mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := ohc.Compile(s, nil); !errors.Is(err, ohc.ErrBadView) {
		t.Errorf("nil view: err = %v", err)
	}
	if _, err := ohc.Compile(nil, testView()); err == nil {
		t.Error("nil schema: no error")
	}
}

// TestCompilerMatchesCompile: a Compiler that reuses the entries of earlier
// compiles gives exactly what Compile gives, entity by entity and warning
// by warning, over a sequence of views that add, change, move and remove
// items (each compiled after the one before, so reuse is exercised), and
// after a view that does not compile.
func TestCompilerMatchesCompile(t *testing.T) {
	s := schema(t)
	steps := []struct {
		name   string
		mutate func(v *ohc.View)
	}{
		{"test view", func(*ohc.View) {}},
		{"same again", func(*ohc.View) {}},
		{"remote added", func(v *ohc.View) {
			v.Remote["red"] = append(v.Remote["red"], ohc.RemoteEndpoint{IP: ip("10.1.0.10"), MAC: mac("02:00:00:01:00:0a"), HostIP: ip(hostB)})
		}},
		{"remote moved", func(v *ohc.View) { v.Remote["red"][1].HostIP = ip("192.168.0.3") }},
		{"remote new MAC", func(v *ohc.View) { v.Remote["blue"][0].MAC = mac("02:00:00:02:01:99") }},
		{"remote removed", func(v *ohc.View) { v.Remote["red"] = v.Remote["red"][:1] }},
		{"conflicting remotes", func(v *ohc.View) {
			v.Remote["red"] = append(v.Remote["red"], ohc.RemoteEndpoint{IP: ip("10.1.0.9"), MAC: mac("02:00:00:01:00:0b"), HostIP: ip("192.168.0.3")})
		}},
		{"export narrowed", func(v *ohc.View) { v.Peerings[0].PeerPrefixes = []netip.Prefix{pfx("10.2.2.0/24")} }},
		{"green active", func(v *ohc.View) { v.Peerings[1].Active = true }},
		{"peer endpoint on this host", func(v *ohc.View) {
			v.Local = append(v.Local, ohc.LocalEndpoint{ID: "blue-vm", VPC: "blue", IP: ip("10.2.1.7"), MAC: mac("02:00:00:02:01:07"), Port: 3})
			v.Remote["blue"] = append(v.Remote["blue"], ohc.RemoteEndpoint{IP: ip("10.2.1.7"), MAC: mac("02:00:00:02:01:07"), HostIP: ip(hostA)})
			v.Peerings = append(v.Peerings, ohc.Peering{VPC: "blue", PeerVPC: "red", PeerVNI: 100, Active: true, PeerPrefixes: []netip.Prefix{pfx("10.1.0.0/16")}})
		}},
		{"local endpoint gone", func(v *ohc.View) { v.Local = v.Local[:1] }},
		{"backend weight", func(v *ohc.View) { v.LBs[0].Backends[0].Weight = 5 }},
		{"route changed", func(v *ohc.View) { v.Routes[1].NextHopIP = ip("10.2.1.5") }},
		{"attachment and ECMP routes", func(v *ohc.View) { *v = *routeView() }},
		{"ECMP next hop moved", func(v *ohc.View) { *v = *routeView(); v.Remote["red"][3].HostIP = ip("192.168.0.4") }},
		{"router MAC changed", func(v *ohc.View) { *v = *routeView(); v.Local[2].RouterMAC = mac("02:ee:00:00:00:02") }},
		{"ECMP next hop added", func(v *ohc.View) {
			*v = *routeView()
			v.Routes[3].NextHopIPs = append(v.Routes[3].NextHopIPs, ip("10.1.0.9"))
		}},
		{"VNI changed", func(v *ohc.View) { x := v.VPCs["red"]; x.VNI = 101; v.VPCs["red"] = x }},
		{"does not compile", func(v *ohc.View) { v.Local[1].Port = 1 }},
		{"test view after a failure", func(*ohc.View) {}},
		{"nothing", func(v *ohc.View) { *v = ohc.View{Host: v.Host} }},
		{"test view from nothing", func(*ohc.View) {}},
	}
	c := ohc.NewCompiler(s)
	for _, st := range steps {
		v := testView()
		st.mutate(v)
		want, wantWarn, wantErr := ohc.CompileWithWarnings(s, v)
		got, gotWarn, gotErr := c.Compile(v)
		if (wantErr == nil) != (gotErr == nil) || (wantErr != nil && wantErr.Error() != gotErr.Error()) {
			t.Fatalf("%s: error %v, want %v", st.name, gotErr, wantErr)
		}
		if !slices.Equal(gotWarn, wantWarn) {
			t.Errorf("%s: warnings %q, want %q", st.name, gotWarn, wantWarn)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d entities, want %d", st.name, len(got), len(want))
		}
		for i := range want {
			if !proto.Equal(got[i], want[i]) {
				t.Fatalf("%s: entity %d is\n%s\nwant\n%s", st.name, i, render(t, s, got[i]), render(t, s, want[i]))
			}
		}
	}
}
