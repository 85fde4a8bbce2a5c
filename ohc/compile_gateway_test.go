package ohc_test

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4rt"
)

const (
	gw1, gw2 = "192.168.1.1", "192.168.1.2"
	hostG    = gw1
)

// bluePool is the gateway pool serving blue, with the given live members.
func bluePool(members ...string) *ohc.GatewayPool {
	p := &ohc.GatewayPool{Name: "blue-gw", VPC: "blue", VNI: 200}
	for i, m := range members {
		p.Members = append(p.Members, ohc.GatewayMember{Host: fmt.Sprintf("gw%d", i+1), IP: ip(m)})
	}
	return p
}

// poolView is testView with red's peering to blue served by a pool of
// gw1 and gw2.
func poolView(members ...string) *ohc.View {
	v := testView()
	v.Peerings[0].Mode = ohc.ModePool
	v.Peerings[0].Pool = bluePool(members...)
	return v
}

// poolLines are the lines of the pool path: the gateway_selector
// members and group, the gateway_pool entry and the routes to the pool.
func poolLines(t *testing.T, lines []string, id uint16, members map[netip.Addr]uint32) []string {
	t.Helper()
	var out []string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "gateway_pool"), strings.Contains(l, "to_gateway_pool"):
			out = append(out, l)
		case strings.HasPrefix(l, "member "), strings.HasPrefix(l, "group "):
			var n uint32
			fmt.Sscanf(strings.Fields(l)[1], "%d", &n)
			if n == uint32(id) || n>>16 == uint32(id) {
				out = append(out, l)
			}
		}
	}
	return out
}

// TestCompilePoolPath: a peering whose peer is served by a pool gives the
// sending VPC a route for each prefix the peer exports to the pool, and the
// pool a group with one member per live gateway (this host left out),
// whose ids derive from the pool and the gateways. Every exported
// destination keeps its direct entry (on-demand filtering is not the
// compiler's), and a route of the VPC for exactly the prefix wins over the
// pool's.
func TestCompilePoolPath(t *testing.T) {
	s := schema(t)
	v := poolView(gw1, gw2, hostA)
	v.Peerings[0].PeerPrefixes = append(v.Peerings[0].PeerPrefixes, pfx("10.2.9.0/24"))
	// red routes 10.2.9.0/24 itself: that route stays.
	v.Routes = append(v.Routes, ohc.Route{VPC: "red", Prefix: pfx("10.2.9.0/24"), NextHopIP: ip("10.1.0.9")})
	got, warnings := compile(t, s, v)
	id := ohc.PoolIDs([]ohc.PoolKey{{Name: "blue-gw", VNI: 200}})[ohc.PoolKey{Name: "blue-gw", VNI: 200}]
	if id == 0 {
		t.Fatal("pool id 0")
	}
	m := ohc.PoolMemberIDs(id, []netip.Addr{ip(gw1), ip(gw2)})
	m1, m2 := min(m[ip(gw1)], m[ip(gw2)]), max(m[ip(gw1)], m[ip(gw2)])
	want := []string{
		fmt.Sprintf("member %d -> encap_to_host(dst_vni=200, host_ip=%s, dmac=00:00:00:00:00:00)", m[ip(gw1)], gw1),
		fmt.Sprintf("member %d -> encap_to_host(dst_vni=200, host_ip=%s, dmac=00:00:00:00:00:00)", m[ip(gw2)], gw2),
		fmt.Sprintf("group %d [%d*1 %d*1]", id, m1, m2),
		fmt.Sprintf("gateway_pool pool_id=%d -> group %d", id, id),
		fmt.Sprintf("vnet_route vni=100 dst_ip=10.2.1.0/24 -> to_gateway_pool(pool_id=%d)", id),
	}
	got1 := poolLines(t, got, id, m)
	slices.Sort(got1)
	slices.Sort(want)
	if !slices.Equal(got1, want) {
		t.Errorf("pool path:\n%s\nwant\n%s", strings.Join(got1, "\n"), strings.Join(want, "\n"))
	}
	for _, l := range []string{
		"vnet_destination vni=100 dst_ip=10.2.1.5 -> encap_to_host(dst_vni=200, host_ip=192.168.0.2, dmac=" + blueVMMAC + ")",
		"vnet_route vni=100 dst_ip=10.2.9.0/24 -> encap_to_host(dst_vni=100, host_ip=192.168.0.2, dmac=" + redRemMAC + ")",
		"vnet_route vni=100 -> drop()",
	} {
		if !slices.Contains(got, l) {
			t.Errorf("missing %q", l)
		}
	}
	if len(warnings) != 1 {
		t.Errorf("warnings %q, want only testView's unknown next hop", warnings)
	}

	// The same pool without this host among its members compiles the
	// same; a mode of direct changes nothing either.
	v2 := poolView(gw2, gw1)
	v2.Peerings[0].PeerPrefixes = v.Peerings[0].PeerPrefixes
	v2.Peerings[0].Mode = ohc.ModeDirect
	v2.Routes = v.Routes
	if got2, _ := compile(t, s, v2); !slices.Equal(got2, got) {
		t.Error("the member list's order, this host among the members or the mode changed the output")
	}
}

// TestCompilePoolMembersChange: a gateway leaving the pool changes the
// group and takes its member away; the routes and the gateway_pool entry,
// and the other member, are left as they were. With no member left, the
// pool path goes.
func TestCompilePoolMembersChange(t *testing.T) {
	s := schema(t)
	before, err := ohc.Compile(s, poolView(gw1, gw2))
	if err != nil {
		t.Fatal(err)
	}
	after, err := ohc.Compile(s, poolView(gw2))
	if err != nil {
		t.Fatal(err)
	}
	id := ohc.PoolIDs([]ohc.PoolKey{{Name: "blue-gw", VNI: 200}})[ohc.PoolKey{Name: "blue-gw", VNI: 200}]
	m := ohc.PoolMemberIDs(id, []netip.Addr{ip(gw1), ip(gw2)})
	got := planOf(t, s, p4rt.Diff(before, after))
	want := []string{
		fmt.Sprintf("delete member %d -> encap_to_host(dst_vni=200, host_ip=%s, dmac=00:00:00:00:00:00)", m[ip(gw1)], gw1),
		fmt.Sprintf("modify group %d [%d*1]", id, m[ip(gw2)]),
	}
	if !slices.Equal(got, want) {
		t.Errorf("gw1 leaves: writes\n%q\nwant\n%q", got, want)
	}

	none, err := ohc.Compile(s, poolView())
	if err != nil {
		t.Fatal(err)
	}
	direct, err := ohc.Compile(s, testView())
	if err != nil {
		t.Fatal(err)
	}
	if d := planOf(t, s, p4rt.Diff(direct, none)); len(d) != 0 {
		t.Errorf("a pool with no live member: %q beyond a peering without a pool, want nothing", d)
	}
	only, _ := compile(t, s, poolView(hostA))
	if slices.ContainsFunc(only, func(l string) bool { return strings.Contains(l, "gateway_pool") }) {
		t.Errorf("a pool whose only member is this host: %q, want no pool path", only)
	}
}

// gatewayView is host G, a gateway of blue's pool with no endpoint of its
// own: blue (peered with red, which exports 10.1.0.0/16 to it) and red's
// records that reach it anyway must not make it program red's side.
func gatewayView() *ohc.View {
	return &ohc.View{
		Host: ohc.Host{ID: "g1", IP: ip(hostG), MAC: mac("02:aa:00:00:01:01"), UnderlayRoutes: []ohc.UnderlayRoute{
			{Prefix: pfx("192.168.0.0/16"), Port: 10, SrcMAC: mac("02:aa:00:00:01:01"), DstMAC: mac(uplinkMAC)},
		}},
		VPCs: map[string]ohc.VPC{
			"blue": {Name: "blue", VNI: 200, Subnets: []netip.Prefix{pfx("10.2.0.0/16")}, GatewayIP: ip("10.2.0.1"), GatewayMAC: mac("02:00:00:02:00:01")},
			"red":  {Name: "red", VNI: 100, Subnets: []netip.Prefix{pfx("10.1.0.0/16")}},
		},
		Peerings: []ohc.Peering{
			// A pool serving red on blue's side: a gateway of blue does
			// not send in blue, so it has no pool path.
			{VPC: "blue", PeerVPC: "red", PeerVNI: 100, Active: true, PeerPrefixes: []netip.Prefix{pfx("10.1.0.0/16")},
				Pool: &ohc.GatewayPool{Name: "red-gw", VNI: 100, Members: []ohc.GatewayMember{{Host: "x", IP: ip("192.168.2.1")}}}},
		},
		Remote: map[string][]ohc.RemoteEndpoint{
			"blue": {
				{IP: ip("10.2.1.5"), MAC: mac(blueVMMAC), HostIP: ip(hostB)},
				{IP: ip("10.2.2.5"), MAC: mac(blueHidMAC), HostIP: ip("192.168.0.3")},
			},
			"red": {{IP: ip("10.1.0.9"), MAC: mac(redRemMAC), HostIP: ip(hostB)}},
		},
		Routes: []ohc.Route{
			{VPC: "blue", Prefix: pfx("0.0.0.0/0")},
			{VPC: "blue", Prefix: pfx("172.16.0.0/12"), NextHopIP: ip("10.2.2.5")},
		},
		Duties: []ohc.GatewayDuty{{Pool: "blue-gw", VPC: "blue", VNI: 200}},
	}
}

// TestCompileGatewayDuty: a gateway duty for blue makes blue present on the
// host as an endpoint would, minus what only a VM of blue here would use:
// tunnels to the host with blue's VNI are terminated, blue's subnets and
// what each active peer exports to it are admitted, every endpoint of blue
// has a destination, blue's routes are programmed; no ARP answers, no peer
// destinations, no pool path of blue's own.
func TestCompileGatewayDuty(t *testing.T) {
	s := schema(t)
	got, warnings := compile(t, s, gatewayView())
	if len(warnings) != 0 {
		t.Errorf("warnings %q", warnings)
	}
	want := []string{
		"local_host default -> set_local_host(host_ip=192.168.1.1, host_mac=02:aa:00:00:01:01)",
		"tunnel_term dst_ip=192.168.1.1 vni=200 -> decap()",
		"underlay_nexthop dst_ip=192.168.0.0/16 -> set_underlay(port=10, smac=02:aa:00:00:01:01, dmac=" + uplinkMAC + ")",
		"vnet_destination vni=200 dst_ip=10.2.1.5 -> encap_to_host(dst_vni=200, host_ip=192.168.0.2, dmac=" + blueVMMAC + ")",
		"vnet_destination vni=200 dst_ip=10.2.2.5 -> encap_to_host(dst_vni=200, host_ip=192.168.0.3, dmac=" + blueHidMAC + ")",
		"vnet_route vni=200 -> drop()",
		"vnet_route vni=200 dst_ip=172.16.0.0/12 -> encap_to_host(dst_vni=200, host_ip=192.168.0.3, dmac=" + blueHidMAC + ")",
		"vnet_source_check vni=200 src_ip=10.1.0.0/16 -> permit()",
		"vnet_source_check vni=200 src_ip=10.2.0.0/16 -> permit()",
		"vnet_source_check vni=200 src_ip=172.16.0.0/12 -> permit()",
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("gateway of blue:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Without the duty, the host has nothing of blue.
	v := gatewayView()
	v.Duties = nil
	if got, _ := compile(t, s, v); len(got) != 2 {
		t.Errorf("no duty: %q, want the host's identity and underlay only", got)
	}

	// A VM of blue on the gateway makes blue an endpoint's VPC like any
	// other: ARP answers, and red's exports as destinations.
	v = gatewayView()
	v.Local = []ohc.LocalEndpoint{{ID: "blue-vm", VPC: "blue", IP: ip("10.2.3.3"), MAC: mac("02:00:00:02:03:03"), Port: 1}}
	got, _ = compile(t, s, v)
	for _, l := range []string{
		"arp_proxy vni=200 target_ip=10.2.1.5 -> arp_reply(mac=" + blueVMMAC + ")",
		"vnet_destination vni=200 dst_ip=10.1.0.9 -> encap_to_host(dst_vni=100, host_ip=192.168.0.2, dmac=" + redRemMAC + ")",
		"vnet_destination vni=200 dst_ip=10.2.3.3 -> to_local_vm(port=1, dmac=02:00:00:02:03:03)",
		"gateway_pool pool_id=" + fmt.Sprint(ohc.PoolIDs([]ohc.PoolKey{{Name: "red-gw", VNI: 100}})[ohc.PoolKey{Name: "red-gw", VNI: 100}]) + " -> group " +
			fmt.Sprint(ohc.PoolIDs([]ohc.PoolKey{{Name: "red-gw", VNI: 100}})[ohc.PoolKey{Name: "red-gw", VNI: 100}]),
	} {
		if !slices.Contains(got, l) {
			t.Errorf("gateway with a VM of blue: missing %q", l)
		}
	}
}

func TestCompileGatewayErrors(t *testing.T) {
	s := schema(t)
	for _, tc := range []struct {
		name   string
		mutate func(v *ohc.View)
		want   string
	}{
		{"duty for an unknown VPC", func(v *ohc.View) { v.Duties[0].VPC = "purple" }, `VPC "purple" is not in the view`},
		{"duty VNI disagrees", func(v *ohc.View) { v.Duties[0].VNI = 201 }, "VNI 201"},
		{"pool without a name", func(v *ohc.View) { v.Peerings[0].Pool.Name = "" }, "without a name"},
		{"pool of another VNI", func(v *ohc.View) { v.Peerings[0].Pool.VNI = 101 }, "serves VNI 101"},
		{"pool of another VPC", func(v *ohc.View) { v.Peerings[0].Pool.VPC = "green" }, `serves VPC "green"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := gatewayView()
			tc.mutate(v)
			_, err := ohc.Compile(s, v)
			if !errors.Is(err, ohc.ErrBadView) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want ErrBadView mentioning %q", err, tc.want)
			}
		})
	}
}

func TestPoolIDsStable(t *testing.T) {
	a, b := ohc.PoolKey{Name: "blue-gw", VNI: 200}, ohc.PoolKey{Name: "blue-gw", VNI: 300}
	all := ohc.PoolIDs([]ohc.PoolKey{b, a})
	alone := ohc.PoolIDs([]ohc.PoolKey{a})
	if all[a] == 0 || all[a] != alone[a] || all[a] == all[b] {
		t.Errorf("pool ids %v with another pool, %v alone: want stable, nonzero, distinct", all, alone)
	}
	m1 := ohc.PoolMemberIDs(all[a], []netip.Addr{ip(gw1), ip(gw2)})
	m2 := ohc.PoolMemberIDs(all[a], []netip.Addr{ip(gw2)})
	if m1[ip(gw2)] != m2[ip(gw2)] || m1[ip(gw2)]>>16 != uint32(all[a]) || m1[ip(gw1)] == m1[ip(gw2)] {
		t.Errorf("member ids %v, then %v", m1, m2)
	}
}

// TestPoolMembers: what a host sends to is the pool's live IPv4 gateways
// but itself, once each; nil for no pool.
func TestPoolMembers(t *testing.T) {
	got := ohc.PoolMembers(bluePool(gw2, hostA, gw1, "2001:db8::1", gw2), ip(hostA))
	if len(got) != 2 || got[0].IP != ip(gw2) || got[1].IP != ip(gw1) {
		t.Errorf("PoolMembers = %+v, want gw2 and gw1", got)
	}
	if got := ohc.PoolMembers(bluePool(hostA), ip(hostA)); len(got) != 0 {
		t.Errorf("only this host: %+v, want none", got)
	}
	if got := ohc.PoolMembers(nil, ip(hostA)); got != nil {
		t.Errorf("no pool: %+v", got)
	}
}
