package controller

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// ribConfig is one controller owning red, blue and green (red peered
// with both, blue and green with red only) and orange, peered with no
// one. Each VPC has attachments; red has two, for ECMP.
func ribConfig() *Config {
	pfx := netip.MustParsePrefix
	ip := netip.MustParseAddr
	mac := func(b byte) MAC { return MAC{2, 0, 0, 0, 0, b} }
	c := &Config{
		Controller: "c1",
		Directory:  []ControllerEntry{{Name: "c1", Address: "127.0.0.1:1", VPCs: []string{"red", "blue", "green", "orange"}}},
		VPCs: []VPC{
			{Name: "red", VNI: 100, Subnets: []netip.Prefix{pfx("10.1.0.0/16")}},
			{Name: "blue", VNI: 200, Subnets: []netip.Prefix{pfx("10.2.0.0/16")}},
			{Name: "green", VNI: 300, Subnets: []netip.Prefix{pfx("10.3.0.0/16")}},
			{Name: "orange", VNI: 400, Subnets: []netip.Prefix{pfx("10.4.0.0/16")}},
		},
		Hosts: []Host{
			{ID: "h1", UnderlayIP: ip("192.168.0.1"), MAC: mac(0xa1), UplinkPort: 1},
			{ID: "h2", UnderlayIP: ip("192.168.0.2"), MAC: mac(0xa2), UplinkPort: 1},
		},
		Endpoints: []Endpoint{
			{ID: "red-vm", VPC: "red", Kind: KindVM, IP: ip("10.1.0.10"), MAC: mac(0x10), Host: "h1", Port: 2},
			{ID: "red-vpn1", VPC: "red", Kind: KindVPN, IP: ip("10.1.0.5"), MAC: mac(0x15), Host: "h1", Port: 3, RouterMAC: mac(0xf1)},
			{ID: "red-vpn2", VPC: "red", Kind: KindInterconnect, IP: ip("10.1.0.6"), MAC: mac(0x16), Host: "h2", Port: 3, RouterMAC: mac(0xf2)},
			{ID: "blue-vm", VPC: "blue", Kind: KindVM, IP: ip("10.2.0.10"), MAC: mac(0x20), Host: "h2", Port: 4},
			{ID: "blue-vpn", VPC: "blue", Kind: KindVPN, IP: ip("10.2.0.5"), MAC: mac(0x25), Host: "h2", Port: 5, RouterMAC: mac(0xf3)},
			{ID: "green-vpn", VPC: "green", Kind: KindVPN, IP: ip("10.3.0.5"), MAC: mac(0x35), Host: "h2", Port: 6, RouterMAC: mac(0xf4)},
			{ID: "orange-vpn", VPC: "orange", Kind: KindVPN, IP: ip("10.4.0.5"), MAC: mac(0x45), Host: "h2", Port: 7, RouterMAC: mac(0xf5)},
		},
		ExportPolicies: []ExportPolicy{{Name: "all"}},
		Peerings: []Peering{
			{VPC: "red", PeerVPC: "blue", ExportPolicy: "all", Preference: 20},
			{VPC: "red", PeerVPC: "green", ExportPolicy: "all", Preference: 10},
			{VPC: "blue", PeerVPC: "red", ExportPolicy: "all", ExportCustomRoutes: true},
			{VPC: "green", PeerVPC: "red", ExportPolicy: "all", ExportCustomRoutes: true},
		},
	}
	return c
}

func ribServer(t testing.TB, edit func(*Config)) *Server {
	t.Helper()
	c := ribConfig()
	if edit != nil {
		edit(c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("test configuration: %v", err)
	}
	s, err := NewServer(ServerOptions{Store: NoPersistence{Start: c}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func learn(t *testing.T, s *Server, vpc string, rs ...LearnedRoute) {
	t.Helper()
	if err := s.UpdateLearnedRoutes(vpc, rs, nil); err != nil {
		t.Fatalf("UpdateLearnedRoutes(%s): %v", vpc, err)
	}
}

func bgp(neighbor, prefix string, localPref, med uint32, asPath ...uint32) LearnedRoute {
	return LearnedRoute{Neighbor: neighbor, Prefix: netip.MustParsePrefix(prefix), ASPath: asPath, MED: med, LocalPref: localPref}
}

// candidatesOf are vpc's candidates for prefix, best first.
func candidatesOf(s *Server, vpc, prefix string) []Candidate {
	p := netip.MustParsePrefix(prefix)
	var out []Candidate
	for _, c := range s.RIB(vpc) {
		if c.Prefix == p {
			out = append(out, c)
		}
	}
	return out
}

// hostRoute is the route vpc's own hosts are sent for prefix, nil if none.
func hostRoute(s *Server, vpc, prefix string) *p4meshv1.Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	items, _ := s.services[PublishedService{VPC: vpc}].routes.Snapshot()
	if it := items[prefix]; it != nil {
		return routeOf(it)
	}
	return nil
}

// want is one candidate expected: origin and source, chosen, and words
// its reason must contain.
type want struct {
	origin Origin
	source string
	chosen bool
	reason string
}

func checkCandidates(t *testing.T, s *Server, vpc, prefix string, ws ...want) {
	t.Helper()
	got := candidatesOf(s, vpc, prefix)
	if len(got) != len(ws) {
		t.Fatalf("%s %s: %d candidates, want %d: %+v", vpc, prefix, len(got), len(ws), got)
	}
	for i, w := range ws {
		g := got[i]
		if g.Origin != w.origin || g.Source != w.source || g.Chosen != w.chosen || !strings.Contains(g.Reason, w.reason) {
			t.Errorf("%s %s candidate %d: %v from %s chosen %v %q; want %v from %s chosen %v, reason containing %q",
				vpc, prefix, i, g.Origin, g.Source, g.Chosen, g.Reason, w.origin, w.source, w.chosen, w.reason)
		}
	}
}

func TestRIBRule1OwnSubnetsWin(t *testing.T) {
	s := ribServer(t, nil)
	// red's own router announces red's subnet and a part of it; blue's
	// router a part of it, which blue exports to red.
	learn(t, s, "red", bgp("red-vpn1", "10.1.0.0/16", 100, 0, 65001), bgp("red-vpn1", "10.1.7.0/24", 100, 0, 65001))
	learn(t, s, "blue", bgp("blue-vpn", "10.1.5.0/24", 100, 0, 65002))
	checkCandidates(t, s, "red", "10.1.0.0/16",
		want{OriginSubnet, "red", true, "own subnet: always wins"},
		want{OriginBGP, "red-vpn1", false, "refused: equal to local subnet 10.1.0.0/16"})
	checkCandidates(t, s, "red", "10.1.7.0/24",
		want{OriginBGP, "red-vpn1", false, "refused: inside local subnet 10.1.0.0/16"})
	checkCandidates(t, s, "red", "10.1.5.0/24",
		want{OriginPeer, "blue", false, "refused: inside local subnet 10.1.0.0/16"})
	// blue itself routes it: it is no subnet of blue's.
	checkCandidates(t, s, "blue", "10.1.5.0/24", want{OriginBGP, "blue-vpn", true, "the only route"})
	for _, p := range []string{"10.1.0.0/16", "10.1.7.0/24", "10.1.5.0/24"} {
		if r := hostRoute(s, "red", p); r != nil {
			t.Errorf("red's hosts are sent %v, a refused route or a subnet", r)
		}
	}
}

func TestRIBRule2LocalBeforePeer(t *testing.T) {
	s := ribServer(t, func(c *Config) {
		c.Routes = append(c.Routes, Route{VPC: "red", Prefix: netip.MustParsePrefix("172.17.0.0/16"), NextHop: "red-vm", Priority: 100})
	})
	learn(t, s, "blue", bgp("blue-vpn", "172.16.0.0/16", 100, 0, 65002))
	// Only the peer's route: it wins, and red's hosts go to blue's
	// attachment.
	checkCandidates(t, s, "red", "172.16.0.0/16", want{OriginPeer, "blue", true, "the only route"})
	if r := hostRoute(s, "red", "172.16.0.0/16"); r.GetNextHopIp() != "10.2.0.5" || r.GetOrigin() != "peer" {
		t.Errorf("red's hosts are sent %v, want the peer route via blue's attachment 10.2.0.5", r)
	}
	learn(t, s, "red", bgp("red-vpn1", "172.16.0.0/16", 100, 0, 65001, 65009, 65010))
	checkCandidates(t, s, "red", "172.16.0.0/16",
		want{OriginBGP, "red-vpn1", true, "local BGP route from red-vpn1 beats peer route from blue"},
		want{OriginPeer, "blue", false, "(local before peer)"})
	if r := hostRoute(s, "red", "172.16.0.0/16"); r.GetNextHopIp() != "10.1.0.5" || r.GetOrigin() != "bgp" {
		t.Errorf("red's hosts are sent %v, want the local BGP route via 10.1.0.5", r)
	}
	// Static before BGP.
	learn(t, s, "red", bgp("red-vpn1", "172.17.0.0/16", 500, 0))
	checkCandidates(t, s, "red", "172.17.0.0/16",
		want{OriginStatic, "red-vm", true, "local static route via red-vm beats local BGP route from red-vpn1"},
		want{OriginBGP, "red-vpn1", false, "(static before BGP)"})
	// The local route withdrawn, the peer's takes over.
	if err := s.UpdateLearnedRoutes("red", nil, []LearnedRouteKey{{Neighbor: "red-vpn1", Prefix: netip.MustParsePrefix("172.16.0.0/16")}}); err != nil {
		t.Fatal(err)
	}
	if r := hostRoute(s, "red", "172.16.0.0/16"); r.GetNextHopIp() != "10.2.0.5" {
		t.Errorf("after the withdrawal red's hosts are sent %v, want blue's route back", r)
	}
}

func TestRIBRule3PeeringPreference(t *testing.T) {
	s := ribServer(t, nil)
	learn(t, s, "blue", bgp("blue-vpn", "192.0.2.0/24", 100, 0, 65002))
	learn(t, s, "green", bgp("green-vpn", "192.0.2.0/24", 100, 0, 65003))
	// red prefers green (10) to blue (20): lower wins.
	checkCandidates(t, s, "red", "192.0.2.0/24",
		want{OriginPeer, "green", true, "peering preference 10 of green beats 20 of blue; lower wins"},
		want{OriginPeer, "blue", false, "loses: peering preference 10 of green beats 20 of blue"})
	if r := hostRoute(s, "red", "192.0.2.0/24"); r.GetNextHopIp() != "10.3.0.5" {
		t.Errorf("red's hosts are sent %v, want green's attachment 10.3.0.5", r)
	}
}

func TestRIBRule4BestPath(t *testing.T) {
	for _, tc := range []struct {
		name   string
		a, b   LearnedRoute // a wins
		reason string
	}{
		{"local preference", bgp("red-vpn2", "198.51.100.0/24", 200, 50, 1, 2, 3), bgp("red-vpn1", "198.51.100.0/24", 100, 0, 1), "local preference 200 beats 100 from red-vpn1; higher wins"},
		{"AS path", bgp("red-vpn2", "198.51.100.0/24", 100, 50, 1), bgp("red-vpn1", "198.51.100.0/24", 100, 0, 1, 2), "AS path length 1 beats 2 from red-vpn1; shorter wins"},
		{"MED", bgp("red-vpn2", "198.51.100.0/24", 100, 5, 1), bgp("red-vpn1", "198.51.100.0/24", 100, 10, 2), "MED 5 beats 10 from red-vpn1; lower wins"},
		{"tie-break", bgp("red-vpn1", "198.51.100.0/24", 100, 5, 1), bgp("red-vpn2", "198.51.100.0/24", 100, 5, 2), "BGP attributes tie but AS paths differ; neighbor red-vpn1 beats red-vpn2 (lowest id)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ribServer(t, nil)
			learn(t, s, "red", tc.b, tc.a)
			checkCandidates(t, s, "red", "198.51.100.0/24",
				want{OriginBGP, tc.a.Neighbor, true, tc.reason},
				want{OriginBGP, tc.b.Neighbor, false, "loses: " + tc.reason})
			hop := map[string]string{"red-vpn1": "10.1.0.5", "red-vpn2": "10.1.0.6"}[tc.a.Neighbor]
			if r := hostRoute(s, "red", "198.51.100.0/24"); r.GetNextHopIp() != hop || len(r.GetNextHopIps()) != 0 {
				t.Errorf("red's hosts are sent %v, want one next hop %s", r, hop)
			}
		})
	}
	t.Run("static priority", func(t *testing.T) {
		p := netip.MustParsePrefix("172.20.0.0/16")
		s := ribServer(t, func(c *Config) {
			c.Routes = append(c.Routes, Route{VPC: "red", Prefix: p, NextHop: "red-vpn1", Priority: 200}, Route{VPC: "red", Prefix: p, NextHop: "red-vm", Priority: 100})
		})
		checkCandidates(t, s, "red", p.String(),
			want{OriginStatic, "red-vm", true, "lowest priority value (100) of 2"},
			want{OriginStatic, "red-vpn1", false, "priority 200 loses to 100 (via red-vm)"})
	})
}

// Rules 4 and 5 among peers, and the order of the rules, directly: peers'
// routes of one prefix cannot come from two peered VPCs' static routes
// (their subnets never overlap), only from BGP, whose exported priority
// is 0.
func TestResolvePeerPriorityAndVNI(t *testing.T) {
	p := netip.MustParsePrefix("203.0.113.0/24")
	peer := func(name string, pref int, prio, vni uint32) Candidate {
		return Candidate{Prefix: p, Origin: OriginPeer, Source: name, Preference: pref, Priority: prio, PeerVNI: vni}
	}
	cs := []Candidate{peer("a", 1, 9, 5), peer("b", 1, 3, 50), peer("c", 1, 3, 40), peer("d", 0, 99, 99)}
	if n := resolve(cs, nil); n != 1 {
		t.Fatalf("%d winners, want 1", n)
	}
	var order []string
	for _, c := range cs {
		order = append(order, c.Source)
	}
	if !slices.Equal(order, []string{"d", "c", "b", "a"}) {
		t.Errorf("order %v, want d (preference), c (priority, then VNI), b, a", order)
	}
	if !strings.Contains(cs[0].Reason, "peering preference 0 of d beats 1 of c") {
		t.Errorf("winner's reason %q", cs[0].Reason)
	}
	if !strings.Contains(cs[2].Reason, "loses: peering preference 0 of d") {
		t.Errorf("b's reason %q", cs[2].Reason)
	}
	cs = []Candidate{peer("b", 1, 3, 50), peer("c", 1, 3, 40)}
	resolve(cs, nil)
	if cs[0].Source != "c" || !strings.Contains(cs[0].Reason, "peer VNI 40 of c beats 50 of b; lowest wins") {
		t.Errorf("rule 5: %s won, %q", cs[0].Source, cs[0].Reason)
	}
	cs = []Candidate{peer("b", 1, 7, 50), peer("c", 1, 3, 60)}
	resolve(cs, nil)
	if cs[0].Source != "c" || !strings.Contains(cs[0].Reason, "priority 3 of the route from c beats 7 from b") {
		t.Errorf("rule 4 among peers: %s won, %q", cs[0].Source, cs[0].Reason)
	}
}

func TestRIBECMP(t *testing.T) {
	s := ribServer(t, nil)
	learn(t, s, "red", bgp("red-vpn1", "198.51.100.0/24", 100, 10, 65001), bgp("red-vpn2", "198.51.100.0/24", 100, 10, 65001))
	checkCandidates(t, s, "red", "198.51.100.0/24",
		want{OriginBGP, "red-vpn1", true, "ECMP: equal-cost BGP route with red-vpn2"},
		want{OriginBGP, "red-vpn2", true, "ECMP: equal-cost BGP route with red-vpn1"})
	r := hostRoute(s, "red", "198.51.100.0/24")
	if r.GetNextHopIp() != "10.1.0.5" || !slices.Equal(r.GetNextHopIps(), []string{"10.1.0.5", "10.1.0.6"}) {
		t.Errorf("red's hosts are sent %v, want both attachments, sorted, the first as next_hop_ip", r)
	}
	// One attribute apart, no ECMP.
	learn(t, s, "red", bgp("red-vpn2", "198.51.100.0/24", 100, 11, 65001))
	if r := hostRoute(s, "red", "198.51.100.0/24"); r.GetNextHopIp() != "10.1.0.5" || len(r.GetNextHopIps()) != 0 {
		t.Errorf("after MED 11 on red-vpn2 red's hosts are sent %v, want red-vpn1 alone", r)
	}
}

func TestRIBExportCustomRoutes(t *testing.T) {
	for _, custom := range []bool{false, true} {
		s := ribServer(t, func(c *Config) {
			c.Peerings[2].ExportCustomRoutes = custom // blue → red
			c.Routes = append(c.Routes, Route{VPC: "blue", Prefix: netip.MustParsePrefix("10.2.128.0/17"), NextHop: "blue-vm"})
		})
		learn(t, s, "blue", bgp("blue-vpn", "172.16.0.0/16", 100, 0))
		got := len(candidatesOf(s, "red", "172.16.0.0/16")) == 1
		if got != custom {
			t.Errorf("export_custom_routes %v: red has blue's BGP route: %v", custom, got)
		}
		if r := hostRoute(s, "red", "172.16.0.0/16"); (r != nil) != custom {
			t.Errorf("export_custom_routes %v: red's hosts are sent %v", custom, r)
		}
		// Static routes inside the exported subnets go either way.
		checkCandidates(t, s, "red", "10.2.128.0/17", want{OriginPeer, "blue", true, "the only route"})
	}
}

func TestRIBExportPolicyFiltersCustomRoutes(t *testing.T) {
	s := ribServer(t, func(c *Config) {
		c.ExportPolicies = append(c.ExportPolicies, ExportPolicy{Name: "private", PrivateOnly: true})
		c.Peerings[2].ExportPolicy = "private" // blue → red
	})
	learn(t, s, "blue", bgp("blue-vpn", "172.16.0.0/16", 100, 0), bgp("blue-vpn", "198.51.100.0/24", 100, 0))
	if len(candidatesOf(s, "red", "172.16.0.0/16")) != 1 {
		t.Error("a private prefix did not reach red under a private-only policy")
	}
	if len(candidatesOf(s, "red", "198.51.100.0/24")) != 0 {
		t.Error("a public prefix reached red under a private-only policy")
	}
}

func TestRIBIsolation(t *testing.T) {
	s := ribServer(t, func(c *Config) {
		c.Peerings[0].ExportCustomRoutes = true // red → blue
	})
	learn(t, s, "red", bgp("red-vpn1", "172.16.0.0/16", 100, 0))
	learn(t, s, "orange", bgp("orange-vpn", "172.31.0.0/16", 100, 0))
	// red exports to blue, which imports it; green has no peering with
	// red that red exports custom routes over (red → green is off), and
	// orange peers with no one.
	if len(candidatesOf(s, "blue", "172.16.0.0/16")) != 1 {
		t.Error("blue, to which red exports custom routes, does not have red's route")
	}
	for _, vpc := range []string{"green", "orange"} {
		if cs := candidatesOf(s, vpc, "172.16.0.0/16"); len(cs) != 0 {
			t.Errorf("red's route appears in %s: %+v", vpc, cs)
		}
	}
	for _, vpc := range []string{"red", "blue", "green"} {
		if cs := candidatesOf(s, vpc, "172.31.0.0/16"); len(cs) != 0 {
			t.Errorf("orange's route appears in %s: %+v", vpc, cs)
		}
		if r := hostRoute(s, vpc, "172.31.0.0/16"); r != nil {
			t.Errorf("%s's hosts are sent orange's route %v", vpc, r)
		}
	}
}

func TestRIBUnknownAttachment(t *testing.T) {
	s := ribServer(t, nil)
	learn(t, s, "red", bgp("nosuch", "172.16.0.0/16", 100, 0), bgp("red-vm", "172.17.0.0/16", 100, 0), bgp("blue-vpn", "172.18.0.0/16", 100, 0))
	checkCandidates(t, s, "red", "172.16.0.0/16", want{OriginBGP, "nosuch", false, "refused: neighbor nosuch is no endpoint of VPC red"})
	checkCandidates(t, s, "red", "172.17.0.0/16", want{OriginBGP, "red-vm", false, "refused: neighbor red-vm is a vm endpoint, not a vpn or interconnect attachment"})
	checkCandidates(t, s, "red", "172.18.0.0/16", want{OriginBGP, "blue-vpn", false, "refused: neighbor blue-vpn is an endpoint of VPC blue, not red"})
	for _, p := range []string{"172.16.0.0/16", "172.17.0.0/16", "172.18.0.0/16"} {
		if r := hostRoute(s, "red", p); r != nil {
			t.Errorf("red's hosts are sent %v, a refused route", r)
		}
	}
	// The attachment configured later: the route it carries wins then.
	ch := &Change{Endpoints: []Endpoint{{ID: "nosuch", VPC: "red", Kind: KindVPN, IP: netip.MustParseAddr("10.1.0.7"), MAC: MAC{2, 0, 0, 0, 0, 0x17}, Host: "h1", Port: 9, RouterMAC: MAC{2, 0, 0, 0, 0, 0xf9}}}}
	if err := s.ApplyChange(ch); err != nil {
		t.Fatal(err)
	}
	if r := hostRoute(s, "red", "172.16.0.0/16"); r.GetNextHopIp() != "10.1.0.7" {
		t.Errorf("after the attachment is configured red's hosts are sent %v, want via 10.1.0.7", r)
	}
}

func TestUpdateLearnedRoutesRefusesBadInput(t *testing.T) {
	s := ribServer(t, nil)
	learn(t, s, "red", bgp("red-vpn1", "172.16.0.0/16", 100, 0))
	before := s.RIB("red")
	good := bgp("red-vpn1", "172.17.0.0/16", 100, 0)
	for _, tc := range []struct {
		name  string
		vpc   string
		adds  []LearnedRoute
		wdr   []LearnedRouteKey
		code  codes.Code
		words string
	}{
		{"unknown VPC", "purple", []LearnedRoute{good}, nil, codes.NotFound, `VPC "purple" is not owned`},
		{"host bits", "red", []LearnedRoute{good, bgp("red-vpn1", "172.18.0.1/16", 100, 0)}, nil, codes.InvalidArgument, "route 1 from red-vpn1: prefix 172.18.0.1/16 has host bits set"},
		{"no neighbor", "red", []LearnedRoute{good, {Prefix: netip.MustParsePrefix("172.19.0.0/16")}}, nil, codes.InvalidArgument, "route 1 (172.19.0.0/16) has no neighbor"},
		{"IPv6", "red", []LearnedRoute{bgp("red-vpn1", "2001:db8::/32", 100, 0)}, nil, codes.InvalidArgument, "is not IPv4"},
		{"bad withdrawal", "red", []LearnedRoute{good}, []LearnedRouteKey{{Neighbor: "red-vpn1"}}, codes.InvalidArgument, "withdrawal 0 from red-vpn1 has no valid prefix"},
	} {
		err := s.UpdateLearnedRoutes(tc.vpc, tc.adds, tc.wdr)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.words) {
			t.Errorf("%s: %v, want %v containing %q", tc.name, err, tc.code, tc.words)
		}
	}
	if after := s.RIB("red"); !slices.EqualFunc(before, after, func(a, b Candidate) bool {
		return a.Prefix == b.Prefix && a.Source == b.Source && a.Reason == b.Reason
	}) {
		t.Errorf("a refused update changed the RIB:\n%+v\n%+v", before, after)
	}
}

func TestHostProgrammingSendsRouterMAC(t *testing.T) {
	s := ribServer(t, nil)
	s.mu.Lock()
	items, _ := s.hostTableLocked("h1").Snapshot()
	s.mu.Unlock()
	want := &p4meshv1.LocalEndpoint{Id: "red-vpn1", Vpc: "red", Vni: 100, Ip: "10.1.0.5", Mac: "02:00:00:00:00:15", Port: 3, Kind: "vpn", RouterMac: "02:00:00:00:00:f1"}
	if got := items["endpoint/red-vpn1"]; !proto.Equal(got, want) {
		t.Errorf("h1 is sent %v, want %v", got, want)
	}
	if got := message(items["endpoint/red-vm"]).(*p4meshv1.LocalEndpoint).GetRouterMac(); got != "" {
		t.Errorf("a VM is sent router MAC %q", got)
	}
}

// TestPeerRoutesAcrossControllers: c2's blue exports to c1's red over
// the peer controllers' WatchRoutes; the custom routes only while the
// peering exports them.
func TestPeerRoutesAcrossControllers(t *testing.T) {
	c1, c2, cfg2 := peeredWith(t, func(c *Config) {
		c.Peerings[0].ExportCustomRoutes = true
		// The policy filters custom routes by its prefixes as it does
		// subnets: blue-web lets 172.16.0.0/12 through too.
		c.ExportPolicies[0].Prefixes = append(c.ExportPolicies[0].Prefixes, pfx("172.16.0.0/12"))
		c.Endpoints = append(c.Endpoints, Endpoint{ID: "blue-vpn", VPC: "blue", Kind: KindVPN, IP: ip("10.2.1.7"),
			MAC: mustMAC("02:02:00:00:01:07"), Host: "h2", Port: 7, RouterMAC: mustMAC("02:fe:00:00:00:07")})
		c.Routes = append(c.Routes, blueRoute("10.2.1.128/25"))
	})
	learn(t, c2.srv, "blue", bgp("blue-vpn", "172.16.0.0/16", 100, 0, 65002))
	has := func(prefix string, origin string, hop string) func() bool {
		return func() bool {
			r := hostRoute(c1.srv, "red", prefix)
			return r.GetOrigin() == origin && r.GetNextHopIp() == hop
		}
	}
	eventually(t, "red's hosts route 172.16.0.0/16 to blue's attachment", has("172.16.0.0/16", "peer", "10.2.1.7"))
	eventually(t, "red's hosts route blue's static route", has("10.2.1.128/25", "peer", "10.2.1.5"))
	checkCandidates(t, c1.srv, "red", "172.16.0.0/16", want{OriginPeer, "blue", true, "the only route"})
	if cs := candidatesOf(c1.srv, "red", "172.16.0.0/16"); cs[0].PeerOrigin != "bgp" || cs[0].PeerVNI != 200 || cs[0].Preference != 100 {
		t.Errorf("red's candidate from blue: %+v, want peer origin bgp, VNI 200, preference 100", cs[0])
	}

	// A withdrawal at blue reaches red.
	if err := c2.srv.UpdateLearnedRoutes("blue", nil, []LearnedRouteKey{{Neighbor: "blue-vpn", Prefix: pfx("172.16.0.0/16")}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "blue's withdrawn route gone from red", func() bool { return len(candidatesOf(c1.srv, "red", "172.16.0.0/16")) == 0 })

	// Custom routes off: the stream is ended and followed again on the
	// plain table, which has the static route and no BGP route.
	learn(t, c2.srv, "blue", bgp("blue-vpn", "172.16.0.0/16", 100, 0, 65002))
	eventually(t, "red has blue's route again", has("172.16.0.0/16", "peer", "10.2.1.7"))
	cfg2.Peerings[0].ExportCustomRoutes = false
	if err := c2.srv.Apply(cfg2); err != nil {
		t.Fatal(err)
	}
	eventually(t, "blue's custom route gone from red", func() bool { return len(candidatesOf(c1.srv, "red", "172.16.0.0/16")) == 0 })
	if !has("10.2.1.128/25", "peer", "10.2.1.5")() {
		t.Error("blue's static route left red with the custom routes")
	}
}

// TestPeerRoutesWatchAuthorization: only the controller that owns the
// peer VPC may watch what a VPC exports to it.
func TestPeerRoutesWatchAuthorization(t *testing.T) {
	c1, _ := twoControllers(t, true)
	conn := dial(t, c1.addr)
	for _, tc := range []struct {
		req  *p4meshv1.WatchRequest
		code codes.Code
		want string
	}{
		{&p4meshv1.WatchRequest{Controller: "c1", Vpc: "red", ExportPolicy: "all", PeerVpc: "blue"}, codes.PermissionDenied, `controller "c1" does not own VPC "blue"`},
		{&p4meshv1.WatchRequest{Controller: "c2", Vpc: "red", ExportPolicy: "other", PeerVpc: "blue"}, codes.PermissionDenied, `VPC red exports nothing under policy "other" to blue`},
		{&p4meshv1.WatchRequest{Controller: "c2", Vpc: "blue", ExportPolicy: "all", PeerVpc: "red"}, codes.NotFound, `VPC "blue" is not owned by controller c1`},
	} {
		ev := watchRaw(t, conn, routeWatch, tc.req)
		if code, msg := ev.ended(t); code != tc.code || !strings.Contains(msg, tc.want) {
			t.Errorf("%v: %v %q, want %v containing %q", tc.req, code, msg, tc.code, tc.want)
		}
	}
}
