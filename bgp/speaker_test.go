package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

var ctx = context.Background()

func TestLearnAndWithdraw(t *testing.T) {
	s, got := startSpeaker(t)
	red := newTestPeer(t, "127.0.0.2", 65001)
	if err := s.SetNeighbors(ctx, []Neighbor{red.neighbor("red-vpn", "red", 100, "10.1.0.254")}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "red-vpn")
	red.announce(t, route{prefix: "192.168.10.0/24", asPath: []uint32{65100, 65101}, med: 50}, route{prefix: "192.168.11.0/24"})

	eventually(t, 10*time.Second, "both prefixes learned in red", func() (bool, string) {
		r := got.inVPC("red")
		return len(r) == 2, fmt.Sprint(r)
	})
	r := got.inVPC("red")["192.168.10.0/24"]
	want := Route{VPC: "red", Neighbor: "red-vpn", Prefix: netip.MustParsePrefix("192.168.10.0/24"),
		NextHop: netip.MustParseAddr("127.0.0.2"), ASPath: []uint32{65001, 65100, 65101}, MED: 50}
	if !routeEqual(r, want) {
		t.Errorf("learned %+v, want %+v", r, want)
	}
	snap, err := s.Learned(ctx, "red")
	if err != nil {
		t.Fatal(err)
	}
	if len(snap) != 2 {
		t.Errorf("Learned(red) = %+v, want the 2 announced routes", snap)
	}
	if st := state(t, s, "red-vpn"); st.Received != 2 || st.Accepted != 2 || st.Uptime <= 0 {
		t.Errorf("neighbor state %+v: want 2 received and accepted, uptime > 0", st)
	}

	red.withdraw(t, "192.168.10.0/24")
	eventually(t, 10*time.Second, "withdrawn prefix gone, the other kept", func() (bool, string) {
		r := got.inVPC("red")
		_, gone := r["192.168.10.0/24"]
		return !gone && len(r) == 1, fmt.Sprint(r)
	})
}

func TestLocalPrefOverIBGP(t *testing.T) {
	s, got := startSpeaker(t)
	red := newTestPeer(t, "127.0.0.2", speakerAS)
	if err := s.SetNeighbors(ctx, []Neighbor{red.neighbor("red-ic", "red", 100, "10.1.0.254")}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "red-ic")
	red.announce(t, route{prefix: "192.168.20.0/24", localPref: 200, med: 7})
	eventually(t, 10*time.Second, "route with local preference 200 and MED 7", func() (bool, string) {
		r, ok := got.inVPC("red")["192.168.20.0/24"]
		return ok && r.LocalPref == 200 && r.MED == 7 && len(r.ASPath) == 0, fmt.Sprintf("%+v", r)
	})
}

// Two VPCs, each with its router; both routers announce the same prefix
// and the speaker advertises the same prefix in both VPCs with different
// next hops. Nothing crosses.
func TestVPCIsolation(t *testing.T) {
	s, got := startSpeaker(t)
	red := newTestPeer(t, "127.0.0.2", 65001)
	blue := newTestPeer(t, "127.0.0.3", 65002)
	err := s.SetNeighbors(ctx, []Neighbor{
		red.neighbor("red-vpn", "red", 100, "10.1.0.254"),
		blue.neighbor("blue-vpn", "blue", 200, "10.2.0.254"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Advertise(ctx, "red", prefixes("10.1.0.0/16", "172.16.0.0/16")); err != nil {
		t.Fatal(err)
	}
	if err := s.Advertise(ctx, "blue", prefixes("10.2.0.0/16", "172.16.0.0/16")); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "red-vpn", "blue-vpn")
	red.announce(t, route{prefix: "192.168.0.0/16", med: 1}, route{prefix: "192.168.1.0/24"})
	blue.announce(t, route{prefix: "192.168.0.0/16", med: 2}, route{prefix: "192.168.2.0/24"})

	eventually(t, 10*time.Second, "each VPC learned its own two routes", func() (bool, string) {
		return len(got.inVPC("red")) == 2 && len(got.inVPC("blue")) == 2, fmt.Sprint(got.inVPC("red"), got.inVPC("blue"))
	})
	for vpc, want := range map[string]struct {
		neighbor string
		only     string
		med      uint32
	}{"red": {"red-vpn", "192.168.1.0/24", 1}, "blue": {"blue-vpn", "192.168.2.0/24", 2}} {
		rs := got.inVPC(vpc)
		if _, ok := rs[want.only]; !ok {
			t.Errorf("%s: missing its own %s: %v", vpc, want.only, rs)
		}
		for p, r := range rs {
			if r.Neighbor != want.neighbor {
				t.Errorf("%s learned %s from %s", vpc, p, r.Neighbor)
			}
		}
		if r := rs["192.168.0.0/16"]; r.MED != want.med {
			t.Errorf("%s: overlapping 192.168.0.0/16 has MED %d, want its own router's %d", vpc, r.MED, want.med)
		}
		snap, err := s.Learned(ctx, vpc)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range snap {
			if r.Neighbor != want.neighbor || r.VPC != vpc {
				t.Errorf("Learned(%s) has %+v", vpc, r)
			}
		}
	}

	wantRed := map[netip.Prefix]netip.Addr{
		netip.MustParsePrefix("10.1.0.0/16"):   netip.MustParseAddr("10.1.0.254"),
		netip.MustParsePrefix("172.16.0.0/16"): netip.MustParseAddr("10.1.0.254"),
	}
	wantBlue := map[netip.Prefix]netip.Addr{
		netip.MustParsePrefix("10.2.0.0/16"):   netip.MustParseAddr("10.2.0.254"),
		netip.MustParsePrefix("172.16.0.0/16"): netip.MustParseAddr("10.2.0.254"),
	}
	eventually(t, 10*time.Second, "each router receives only its VPC's prefixes, with its attachment as next hop", func() (bool, string) {
		r, b := red.received(t), blue.received(t)
		return mapsEqual(r, wantRed) && mapsEqual(b, wantBlue), fmt.Sprintf("red %v blue %v", r, b)
	})
	// Learned routes are never passed on: give the speaker a moment to
	// (wrongly) do so, then look again.
	time.Sleep(500 * time.Millisecond)
	if r := red.received(t); !mapsEqual(r, wantRed) {
		t.Errorf("red router received %v, want only %v", r, wantRed)
	}
}

func TestImportFilter(t *testing.T) {
	s, got := startSpeaker(t)
	red := newTestPeer(t, "127.0.0.2", 65001)
	n := red.neighbor("red-vpn", "red", 100, "10.1.0.254")
	n.Import = []PrefixFilter{{Prefix: netip.MustParsePrefix("192.168.0.0/16"), GE: 20, LE: 24}}
	if err := s.SetNeighbors(ctx, []Neighbor{n}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "red-vpn")
	red.announce(t,
		route{prefix: "192.168.16.0/20"},  // in
		route{prefix: "192.168.1.0/24"},   // in
		route{prefix: "192.168.0.0/16"},   // too short
		route{prefix: "192.168.1.128/25"}, // too long
		route{prefix: "10.99.0.0/16"},     // outside
	)
	eventually(t, 10*time.Second, "only the two prefixes the filter allows", func() (bool, string) {
		r := got.inVPC("red")
		_, a := r["192.168.16.0/20"]
		_, b := r["192.168.1.0/24"]
		return len(r) == 2 && a && b && state(t, s, "red-vpn").Received == 5, fmt.Sprint(r)
	})
	up := state(t, s, "red-vpn").Uptime
	// Learned reads the neighbor's adj-RIB-in, where the rejected
	// prefixes are too: it must filter them as the deliveries were.
	snap, err := s.Learned(ctx, "red")
	if err != nil {
		t.Fatal(err)
	}
	if len(snap) != 2 {
		t.Errorf("Learned(red) = %+v, want the 2 routes the filter lets through", snap)
	}
	// Learned paths never enter GoBGP's global table (doc.go): the
	// route manager chooses among them, and GoBGP's table would only
	// cost a destination, best-path selection and export checks each.
	s.op.Lock()
	srv := s.servers["red"].srv
	s.op.Unlock()
	var global []string
	srv.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: ipv4Unicast}, func(d *api.Destination) {
		for _, p := range d.Paths {
			if a, err := netip.ParseAddr(p.NeighborIp); err == nil && a.IsValid() {
				global = append(global, d.Prefix)
			}
		}
	})
	if len(global) != 0 {
		t.Errorf("GoBGP's global table of red holds learned paths for %v, want none", global)
	}

	// A new filter applies to what the router already sent, without a
	// new session.
	n.Import = []PrefixFilter{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), LE: 16}}
	if err := s.SetNeighbors(ctx, []Neighbor{n}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "only 10.99.0.0/16 under the new filter", func() (bool, string) {
		r := got.inVPC("red")
		_, ok := r["10.99.0.0/16"]
		return len(r) == 1 && ok, fmt.Sprint(r)
	})
	if st := state(t, s, "red-vpn"); st.State != "established" || st.Uptime < up {
		t.Errorf("changing the filter restarted the session: %+v (uptime before %v)", st, up)
	}
}

func TestMaxPrefixes(t *testing.T) {
	s, got := startSpeaker(t)
	red := newTestPeer(t, "127.0.0.2", 65001)
	n := red.neighbor("red-vpn", "red", 100, "10.1.0.254")
	n.MaxPrefixes = 3
	if err := s.SetNeighbors(ctx, []Neighbor{n}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "red-vpn")
	red.announce(t, route{prefix: "192.168.1.0/24"}, route{prefix: "192.168.2.0/24"}, route{prefix: "192.168.3.0/24"})
	eventually(t, 10*time.Second, "3 routes, at the limit", func() (bool, string) {
		return len(got.inVPC("red")) == 3, fmt.Sprint(got.inVPC("red"))
	})
	red.announce(t, route{prefix: "192.168.4.0/24"})
	eventually(t, 10*time.Second, "session down with a max-prefix error, routes gone", func() (bool, string) {
		st := state(t, s, "red-vpn")
		return st.State != "established" && strings.Contains(st.LastError, "max-prefixes") && len(got.inVPC("red")) == 0,
			fmt.Sprintf("%+v, routes %v", st, got.inVPC("red"))
	})
	time.Sleep(2 * time.Second)
	if st := state(t, s, "red-vpn"); st.State == "established" {
		t.Fatalf("session came back on its own after a max-prefix shutdown: %+v", st)
	}
	n.MaxPrefixes = 10
	if err := s.SetNeighbors(ctx, []Neighbor{n}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "a higher limit starts a new session with all 4 routes", func() (bool, string) {
		return len(got.inVPC("red")) == 4, fmt.Sprint(got.inVPC("red"))
	})
}

func TestSetNeighborsChangesOnlyWhatChanged(t *testing.T) {
	s, got := startSpeaker(t)
	red := newTestPeer(t, "127.0.0.2", 65001)
	blue := newTestPeer(t, "127.0.0.3", 65002)
	green := newTestPeer(t, "127.0.0.4", 65003)
	rn := red.neighbor("red-vpn", "red", 100, "10.1.0.254")
	bn := blue.neighbor("blue-vpn", "blue", 200, "10.2.0.254")
	if err := s.SetNeighbors(ctx, []Neighbor{rn, bn}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "red-vpn", "blue-vpn")
	red.announce(t, route{prefix: "192.168.1.0/24"})
	eventually(t, 10*time.Second, "red's route", func() (bool, string) { return len(got.inVPC("red")) == 1, "" })
	time.Sleep(1100 * time.Millisecond) // so a restarted session shows a smaller uptime
	redUp := state(t, s, "red-vpn").Uptime

	// blue's hold time changes (a new session), green arrives; red is
	// the same and must not notice.
	bn.HoldTime = 6 * time.Second
	gn := green.neighbor("green-vpn", "green", 300, "10.3.0.254")
	if err := s.SetNeighbors(ctx, []Neighbor{rn, bn, gn}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "blue-vpn", "green-vpn")
	if st := state(t, s, "red-vpn"); st.State != "established" || st.Uptime < redUp {
		t.Errorf("red's session was restarted by a change to others: %+v (uptime before %v)", st, redUp)
	}
	eventually(t, 10*time.Second, "blue's session uses the new hold time", func() (bool, string) {
		var hold uint64
		blue.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) { hold = p.GetTimers().GetState().GetNegotiatedHoldTime() })
		return hold == 6, fmt.Sprint(hold)
	})

	// Removing red withdraws what it taught, and ends its session.
	if err := s.SetNeighbors(ctx, []Neighbor{bn, gn}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "red's routes withdrawn after red is removed", func() (bool, string) {
		return len(got.inVPC("red")) == 0, fmt.Sprint(got.inVPC("red"))
	})
	if ns, _ := s.Neighbors(ctx); len(ns) != 2 {
		t.Errorf("Neighbors() = %+v, want blue and green", ns)
	}

	// Renaming in place is refused and changes nothing.
	gn.Name = "green-vpn-2"
	if err := s.SetNeighbors(ctx, []Neighbor{bn, gn}); err == nil || !strings.Contains(err.Error(), "renaming") {
		t.Errorf("rename in place: err = %v, want a refusal", err)
	}
}

func TestAdvertiseReconciles(t *testing.T) {
	s, _ := startSpeaker(t)
	red := newTestPeer(t, "127.0.0.2", 65001)
	rn := red.neighbor("red-vpn", "red", 100, "10.1.0.254")
	// Before the VPC has a neighbor: kept, and sent when it has.
	if err := s.Advertise(ctx, "red", prefixes("10.1.0.0/24", "10.1.1.0/24")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetNeighbors(ctx, []Neighbor{rn}); err != nil {
		t.Fatal(err)
	}
	nh := netip.MustParseAddr("10.1.0.254")
	expect := func(what string, nh netip.Addr, ps ...string) {
		t.Helper()
		want := make(map[netip.Prefix]netip.Addr)
		for _, p := range ps {
			want[netip.MustParsePrefix(p)] = nh
		}
		eventually(t, 10*time.Second, what, func() (bool, string) {
			r := red.received(t)
			return mapsEqual(r, want), fmt.Sprint(r)
		})
	}
	expect("router receives both prefixes with the attachment as next hop", nh, "10.1.0.0/24", "10.1.1.0/24")

	if err := s.Advertise(ctx, "red", prefixes("10.1.1.0/24", "10.1.2.0/24")); err != nil {
		t.Fatal(err)
	}
	expect("router sees 10.1.0.0/24 withdrawn and 10.1.2.0/24 added", nh, "10.1.1.0/24", "10.1.2.0/24")

	up := state(t, s, "red-vpn").Uptime
	rn.NextHop = netip.MustParseAddr("10.1.0.253")
	if err := s.SetNeighbors(ctx, []Neighbor{rn}); err != nil {
		t.Fatal(err)
	}
	expect("a new next hop is re-advertised", rn.NextHop, "10.1.1.0/24", "10.1.2.0/24")
	if st := state(t, s, "red-vpn"); st.Uptime < up {
		t.Errorf("a new next hop restarted the session: %+v", st)
	}

	if err := s.Advertise(ctx, "red", nil); err != nil {
		t.Fatal(err)
	}
	expect("everything withdrawn", rn.NextHop)

	if err := s.Advertise(ctx, "red", prefixes("10.1.0.1/24")); err == nil || !strings.Contains(err.Error(), "host bits") {
		t.Errorf("Advertise 10.1.0.1/24: err = %v, want host bits refused", err)
	}
}

func TestSessionLossWithdraws(t *testing.T) {
	s, got := startSpeaker(t)
	red := newTestPeer(t, "127.0.0.2", 65001)
	if err := s.SetNeighbors(ctx, []Neighbor{red.neighbor("red-vpn", "red", 100, "10.1.0.254")}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "red-vpn")
	red.announce(t, route{prefix: "192.168.1.0/24"}, route{prefix: "192.168.2.0/24"})
	eventually(t, 10*time.Second, "2 routes", func() (bool, string) { return len(got.inVPC("red")) == 2, "" })
	red.srv.Stop() // sends a NOTIFICATION (cease) and closes
	eventually(t, 10*time.Second, "routes gone and the reason recorded", func() (bool, string) {
		st := state(t, s, "red-vpn")
		return len(got.inVPC("red")) == 0 && st.State != "established" && st.LastError != "", fmt.Sprintf("%+v %v", st, got.inVPC("red"))
	})
}

func TestValidate(t *testing.T) {
	good := Neighbor{Name: "a", VPC: "red", VNI: 1, Address: netip.MustParseAddr("10.0.0.2"), PeerAS: 65001, NextHop: netip.MustParseAddr("10.1.0.1")}
	rid := netip.MustParseAddr("10.255.0.1")
	if err := validateSet([]Neighbor{good}, rid); err != nil {
		t.Fatalf("valid neighbor refused: %v", err)
	}
	other := good
	other.Name, other.VPC, other.VNI, other.Address, other.RouterID = "b", "blue", 2, netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.9.9.9")
	if err := validateSet([]Neighbor{good, other}, rid); err != nil {
		t.Fatalf("a router id of another VPC's own refused: %v", err)
	}
	mod := func(f func(*Neighbor)) Neighbor { n := good; f(&n); return n }
	for _, c := range []struct {
		name string
		ns   []Neighbor
		want string
	}{
		{"AS 0", []Neighbor{mod(func(n *Neighbor) { n.PeerAS = 0 })}, "peer AS 0"},
		{"IPv6 neighbor", []Neighbor{mod(func(n *Neighbor) { n.Address = netip.MustParseAddr("2001:db8::1") })}, "only IPv4 neighbors"},
		{"no next hop", []Neighbor{mod(func(n *Neighbor) { n.NextHop = netip.Addr{} })}, "next hop"},
		{"LE < GE", []Neighbor{mod(func(n *Neighbor) {
			n.Import = []PrefixFilter{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), GE: 24, LE: 16}}
		})}, "ge 24 le 16"},
		{"filter host bits", []Neighbor{mod(func(n *Neighbor) {
			n.Import = []PrefixFilter{{Prefix: netip.MustParsePrefix("10.0.0.1/8")}}
		})}, "host bits"},
		{"duplicate name", []Neighbor{good, mod(func(n *Neighbor) { n.Address = netip.MustParseAddr("10.0.0.3") })}, "appears twice"},
		{"duplicate address", []Neighbor{good, mod(func(n *Neighbor) { n.Name = "b" })}, "same address"},
		{"VNI disagrees", []Neighbor{good, mod(func(n *Neighbor) { n.Name, n.Address, n.VNI = "b", netip.MustParseAddr("10.0.0.3"), 2 })}, "VNI"},
		{"hold time", []Neighbor{mod(func(n *Neighbor) { n.HoldTime = 2 * time.Second })}, "hold time"},
		{"keepalive >= hold", []Neighbor{mod(func(n *Neighbor) { n.HoldTime, n.KeepaliveInterval = 9*time.Second, 9*time.Second })}, "keepalive"},
		{"router id 0.0.0.0", []Neighbor{mod(func(n *Neighbor) { n.RouterID = netip.IPv4Unspecified() })}, "router id 0.0.0.0: must be an IPv4 address other than 0.0.0.0"},
		{"router id IPv6", []Neighbor{mod(func(n *Neighbor) { n.RouterID = netip.MustParseAddr("2001:db8::1") })}, "must be an IPv4 address"},
		{"router ids of a VPC disagree", []Neighbor{mod(func(n *Neighbor) { n.RouterID = netip.MustParseAddr("10.9.9.9") }),
			mod(func(n *Neighbor) { n.Name, n.Address = "b", netip.MustParseAddr("10.0.0.3") })},
			"neighbor b: router id 10.255.0.1, but neighbor a of the same VPC red has 10.9.9.9"},
		{"VNI 0", []Neighbor{mod(func(n *Neighbor) { n.VNI = 0 })}, "VNI 0"},
	} {
		err := validateSet(c.ns, rid)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	if _, err := New(Config{RouterID: rid, LocalAS: 0}, nil); err == nil || !strings.Contains(err.Error(), "local AS 0") {
		t.Errorf("New with AS 0: err = %v", err)
	}
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func mapsEqual[K, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func routeEqual(a, b Route) bool {
	return a.VPC == b.VPC && a.Neighbor == b.Neighbor && a.Prefix == b.Prefix && a.NextHop == b.NextHop &&
		slices.Equal(a.ASPath, b.ASPath) && a.MED == b.MED && a.LocalPref == b.LocalPref
}

// A router that moves to another VPC (same address): its routes leave the
// old VPC, under the old neighbor's name, and arrive in the new one.
func TestNeighborMovesVPC(t *testing.T) {
	s, got := startSpeaker(t)
	p := newTestPeer(t, "127.0.0.2", 65001)
	if err := s.SetNeighbors(ctx, []Neighbor{p.neighbor("red-vpn", "red", 100, "10.1.0.254")}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "red-vpn")
	p.announce(t, route{prefix: "192.168.1.0/24"})
	eventually(t, 10*time.Second, "route in red", func() (bool, string) { return len(got.inVPC("red")) == 1, "" })

	if err := s.SetNeighbors(ctx, []Neighbor{p.neighbor("blue-vpn", "blue", 200, "10.2.0.254")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "route gone from red, learned in blue from blue-vpn", func() (bool, string) {
		r, b := got.inVPC("red"), got.inVPC("blue")
		return len(r) == 0 && len(b) == 1 && b["192.168.1.0/24"].Neighbor == "blue-vpn", fmt.Sprint(r, b)
	})
	if n := got.withdrawals("192.168.1.0/24"); n != 1 {
		t.Errorf("%d withdrawals of red's route, want 1", n)
	}
}

func TestLifecycle(t *testing.T) {
	s, err := New(Config{RouterID: netip.MustParseAddr("10.255.0.1"), LocalAS: speakerAS, ListenPort: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Advertise(ctx, "red", nil); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Advertise before Start: err = %v, want ErrNotStarted", err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err == nil {
		t.Error("second Start succeeded; GoBGP cannot start twice")
	}
	s.Stop()
	s.Stop()
	if err := s.SetNeighbors(ctx, nil); !errors.Is(err, ErrNotStarted) {
		t.Errorf("SetNeighbors after Stop: err = %v, want ErrNotStarted", err)
	}
}
