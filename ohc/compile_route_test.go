package ohc_test

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/p4mesh/p4mesh/ohc"
)

// Routes through attachments (issue 10): host A holds red's VPN attachment
// 10.1.0.50 on port 5; host B holds a second one, 10.1.0.51, and host C a
// third, 10.1.0.52.
const (
	hostC     = "192.168.0.3"
	vpnMAC    = "02:00:00:01:00:50"
	routerMAC = "02:ee:00:00:00:01"
	vpnBMAC   = "02:00:00:01:00:51"
	vpnCMAC   = "02:00:00:01:00:52"
)

func routeView() *ohc.View {
	v := testView()
	v.Local = append(v.Local, ohc.LocalEndpoint{ID: "red-vpn", VPC: "red", IP: ip("10.1.0.50"), MAC: mac(vpnMAC), Port: 5,
		Kind: ohc.KindVPN, RouterMAC: mac(routerMAC)})
	v.Remote["red"] = append(v.Remote["red"],
		ohc.RemoteEndpoint{IP: ip("10.1.0.51"), MAC: mac(vpnBMAC), HostIP: ip(hostB)},
		ohc.RemoteEndpoint{IP: ip("10.1.0.52"), MAC: mac(vpnCMAC), HostIP: ip(hostC)},
	)
	v.Routes = []ohc.Route{
		{VPC: "red", Prefix: pfx("0.0.0.0/0")},
		// One next hop here, one on host B.
		{VPC: "red", Prefix: pfx("172.20.0.0/16"), NextHopIP: ip("10.1.0.50")},
		{VPC: "red", Prefix: pfx("172.21.0.0/16"), NextHopIP: ip("10.1.0.51")},
		// Equal cost over B and C, twice: one group.
		{VPC: "red", Prefix: pfx("172.30.0.0/16"), NextHopIP: ip("10.1.0.51"), NextHopIPs: []netip.Addr{ip("10.1.0.51"), ip("10.1.0.52")}},
		{VPC: "red", Prefix: pfx("172.31.0.0/16"), NextHopIP: ip("10.1.0.51"), NextHopIPs: []netip.Addr{ip("10.1.0.52"), ip("10.1.0.51")}},
		// Equal cost over this host's attachment and B's: the local one.
		{VPC: "red", Prefix: pfx("172.40.0.0/16"), NextHopIP: ip("10.1.0.50"), NextHopIPs: []netip.Addr{ip("10.1.0.50"), ip("10.1.0.51")}},
		// A VM as a router.
		{VPC: "red", Prefix: pfx("172.50.0.0/16"), NextHopIP: ip("10.1.0.3")},
	}
	return v
}

func TestCompileRoutes(t *testing.T) {
	s := schema(t)
	got, warnings := compile(t, s, routeView())
	if len(warnings) != 0 {
		t.Errorf("warnings = %q, want none", warnings)
	}
	gk := ohc.RouteGroupKey{VPC: "red", NextHops: "10.1.0.51,10.1.0.52"}
	gid := ohc.RouteGroupIDs([]ohc.RouteGroupKey{gk})[gk]
	ms := ohc.RouteMemberIDs(gid, []netip.Addr{ip("10.1.0.51"), ip("10.1.0.52")})
	m := []uint32{ms[ip("10.1.0.51")], ms[ip("10.1.0.52")]}
	slices.Sort(m)

	for _, tc := range []struct{ name, entry string }{
		{"attachment here: its port, the router's MAC",
			"vnet_route vni=100 dst_ip=172.20.0.0/16 -> to_local_vm(port=5, dmac=" + routerMAC + ")"},
		{"attachment on host B: tunnel to B",
			"vnet_route vni=100 dst_ip=172.21.0.0/16 -> encap_to_host(dst_vni=100, host_ip=192.168.0.2, dmac=" + vpnBMAC + ")"},
		{"ECMP route", fmt.Sprintf("vnet_route vni=100 dst_ip=172.30.0.0/16 -> to_route_group(group_id=%d)", gid)},
		{"ECMP route with the same next hops, listed in another order",
			fmt.Sprintf("vnet_route vni=100 dst_ip=172.31.0.0/16 -> to_route_group(group_id=%d)", gid)},
		{"ECMP group entry", fmt.Sprintf("route_ecmp group_id=%d -> group %d", gid, gid)},
		{"ECMP group, members ascending", fmt.Sprintf("group %d [%d*1 %d*1]", gid, m[0], m[1])},
		{"ECMP member B", fmt.Sprintf("member %d -> encap_to_host(dst_vni=100, host_ip=192.168.0.2, dmac=%s)", ms[ip("10.1.0.51")], vpnBMAC)},
		{"ECMP member C", fmt.Sprintf("member %d -> encap_to_host(dst_vni=100, host_ip=192.168.0.3, dmac=%s)", ms[ip("10.1.0.52")], vpnCMAC)},
		{"ECMP with a next hop here: the local one only",
			"vnet_route vni=100 dst_ip=172.40.0.0/16 -> to_local_vm(port=5, dmac=" + routerMAC + ")"},
		{"VM as a router: its port, its own MAC",
			"vnet_route vni=100 dst_ip=172.50.0.0/16 -> to_local_vm(port=2, dmac=" + redVM2MAC + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !slices.Contains(got, tc.entry) {
				t.Errorf("missing %q; vnet_route is %q", tc.entry, withPrefix(got, "vnet_route"))
			}
		})
	}
	// One group for the two routes that share it: members, group and
	// route_ecmp entry exactly once.
	if n := len(withPrefix(got, "route_ecmp")); n != 1 {
		t.Errorf("route_ecmp = %q, want one entry", withPrefix(got, "route_ecmp"))
	}
	var routeMembers []string
	for _, l := range withPrefix(got, "member ") {
		id := 0
		fmt.Sscanf(l, "member %d", &id)
		if uint32(id)>>16 == uint32(gid) {
			routeMembers = append(routeMembers, l)
		}
	}
	if len(routeMembers) != 2 {
		t.Errorf("route members = %q, want B and C once each", routeMembers)
	}
	// The attachment's port is its router's: ARP answers go to the
	// router's MAC (set_attachment), which may send from what is routed out
	// of the port; the attachment's own address is an endpoint like any
	// other. Every host of red hears from where red routes to.
	for _, want := range []string{
		"port_vnet ingress_port=5 -> set_attachment(vni=100, router_mac=" + routerMAC + ")",
		"attachment_source_check ingress_port=5 src_ip=172.20.0.0/16 -> permit()",
		"attachment_source_check ingress_port=5 src_ip=172.40.0.0/16 -> permit()",
		"arp_proxy vni=100 target_ip=10.1.0.50 -> arp_reply(mac=" + vpnMAC + ")",
		"vnet_destination vni=100 dst_ip=10.1.0.50 -> to_local_vm(port=5, dmac=" + vpnMAC + ")",
		"vnet_source_check vni=100 src_ip=172.20.0.0/16 -> permit()",
		"vnet_source_check vni=100 src_ip=172.30.0.0/16 -> permit()",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %q", want)
		}
	}
	// Only what is routed out of this host's attachment, and no guard that
	// would hold its router to the attachment's own address.
	if got := withPrefix(got, "attachment_source_check"); len(got) != 2 {
		t.Errorf("attachment_source_check = %q, want 172.20.0.0/16 and 172.40.0.0/16", got)
	}
	if l := withPrefix(got, "vm_source_guard vni=100 ingress_port=5 "); len(l) != 0 {
		t.Errorf("attachment port has a VM's source guard: %q", l)
	}
}

// TestCompileRouteOrder: entities come members, then groups, then the
// selector tables' entries (route_ecmp points at a group), then the other
// tables' (vnet_route's to_route_group names a route_ecmp key): the order
// the reconciler inserts them in, so that no route is in before what it
// resolves through.
func TestCompileRouteOrder(t *testing.T) {
	s := schema(t)
	got, _ := compile(t, s, routeView())
	kind := func(l string) int {
		switch {
		case strings.HasPrefix(l, "member "):
			return 0
		case strings.HasPrefix(l, "group "):
			return 1
		case strings.HasPrefix(l, "route_ecmp "), strings.HasPrefix(l, "lb_backend "):
			return 2
		}
		return 3
	}
	if !slices.IsSortedFunc(got, func(a, b string) int { return kind(a) - kind(b) }) {
		t.Errorf("entities are not members, groups, selector entries, other entries: %q", got)
	}
}

func TestCompileRouteLeftOut(t *testing.T) {
	s := schema(t)
	for _, tc := range []struct {
		name   string
		change func(v *ohc.View)
		// warn is part of every warning expected (one per route it
		// touches); gone the prefix whose route must be absent, kept an
		// entry that must still be there.
		warn, gone, kept string
	}{
		{"attachment without a router MAC", func(v *ohc.View) {
			v.Local[len(v.Local)-1].RouterMAC = nil
		}, "no router MAC", "172.20.0.0", "vnet_route vni=100 dst_ip=172.40.0.0/16 -> encap_to_host(dst_vni=100, host_ip=192.168.0.2"},
		{"an unknown next hop of two: the other alone, no group", func(v *ohc.View) {
			v.Routes[3].NextHopIPs[1] = ip("10.1.0.99")
			v.Routes = v.Routes[:4]
		}, "10.1.0.99", "to_route_group", "vnet_route vni=100 dst_ip=172.30.0.0/16 -> encap_to_host(dst_vni=100, host_ip=192.168.0.2, dmac=" + vpnBMAC + ")"},
		{"a next hop that is no address", func(v *ohc.View) {
			v.Routes[3].NextHopIPs = append(v.Routes[3].NextHopIPs, netip.Addr{})
		}, "no address", "", "vnet_route vni=100 dst_ip=172.30.0.0/16 -> to_route_group"},
		{"a next hop on this host the controller has not given us yet", func(v *ohc.View) {
			v.Remote["red"] = append(v.Remote["red"], ohc.RemoteEndpoint{IP: ip("10.1.0.60"), MAC: mac(vpnMAC), HostIP: ip(hostA)})
			v.Routes = append(v.Routes, ohc.Route{VPC: "red", Prefix: pfx("172.60.0.0/16"), NextHopIP: ip("10.1.0.60")})
		}, "not a local endpoint", "172.60.0.0", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := routeView()
			tc.change(v)
			got, warnings := compile(t, s, v)
			if len(warnings) == 0 || slices.ContainsFunc(warnings, func(w string) bool { return !strings.Contains(w, tc.warn) }) {
				t.Errorf("warnings = %q, want only ones about %q", warnings, tc.warn)
			}
			for _, l := range got {
				if tc.gone != "" && strings.Contains(l, tc.gone) {
					t.Errorf("left-out route programmed: %q", l)
				}
			}
			if tc.kept != "" && !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, tc.kept) }) {
				t.Errorf("missing %q; vnet_route is %q", tc.kept, withPrefix(got, "vnet_route"))
			}
		})
	}
}

// TestRouteGroupIDsStable: a group's id depends on the group alone, not on
// the other groups or the order they are given in, so neither an OHC
// restart nor a route elsewhere renumbers it.
func TestRouteGroupIDsStable(t *testing.T) {
	a := ohc.RouteGroupKey{VPC: "red", NextHops: "10.1.0.51,10.1.0.52"}
	b := ohc.RouteGroupKey{VPC: "red", NextHops: "10.1.0.50,10.1.0.51"}
	c := ohc.RouteGroupKey{VPC: "blue", NextHops: "10.1.0.51,10.1.0.52"}
	alone := ohc.RouteGroupIDs([]ohc.RouteGroupKey{a})[a]
	all := ohc.RouteGroupIDs([]ohc.RouteGroupKey{c, b, a})
	if all[a] != alone {
		t.Errorf("id of %v moved from %d to %d when other groups came", a, alone, all[a])
	}
	if all[a] == all[c] || all[a] == all[b] || all[b] == all[c] || all[a] == 0 {
		t.Errorf("ids not distinct and non-zero: %v", all)
	}
	if again := ohc.RouteGroupIDs([]ohc.RouteGroupKey{a, b, c}); again[a] != all[a] || again[b] != all[b] || again[c] != all[c] {
		t.Errorf("ids depend on order: %v vs %v", again, all)
	}
	hops := []netip.Addr{ip("10.1.0.51"), ip("10.1.0.52")}
	m1 := ohc.RouteMemberIDs(alone, hops)
	m2 := ohc.RouteMemberIDs(alone, append(hops, ip("10.1.0.53")))
	if m1[hops[0]] != m2[hops[0]] || m1[hops[1]] != m2[hops[1]] {
		t.Errorf("member ids moved when a next hop came: %v vs %v", m1, m2)
	}
	if m1[hops[0]]>>16 != uint32(alone) {
		t.Errorf("member id %#x does not carry group %d in its high half", m1[hops[0]], alone)
	}
}
