package ohc

import (
	"net"
	"net/netip"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

func demandSchema(t testing.TB) *p4rt.Schema {
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

func tableEntity(t testing.TB, s *p4rt.Schema, e p4rt.Entry) *p4v1.Entity {
	t.Helper()
	te, err := s.TableEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	return &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: te}}
}

func destEntity(t testing.TB, s *p4rt.Schema, vni, dstVNI uint32, dst string) *p4v1.Entity {
	call := encapCall(dstVNI, netip.MustParseAddr("192.168.0.2"), net.HardwareAddr{2, 0, 0, 0, 0, 9})
	return tableEntity(t, s, p4rt.Entry{Table: tVnetDestination, Match: []p4rt.Match{
		p4rt.Exact("vni", p4rt.Uint(vni)), p4rt.Exact("dst_ip", p4rt.IP(netip.MustParseAddr(dst)))}, Action: &call})
}

func poolRouteEntity(t testing.TB, s *p4rt.Schema, vni uint32, p string) *p4v1.Entity {
	call := p4rt.Call(demandPoolAction, p4rt.P("pool_id", p4rt.Uint(7)))
	return tableEntity(t, s, p4rt.Entry{Table: tVnetRoute, Match: []p4rt.Match{
		p4rt.Exact("vni", p4rt.Uint(vni)), p4rt.Prefix("dst_ip", netip.MustParsePrefix(p))}, Action: &call})
}

func pooledView(mode string) *View {
	return &View{
		VPCs: map[string]VPC{"red": {Name: "red", VNI: 100}},
		Peerings: []Peering{{VPC: "red", PeerVPC: "blue", PeerVNI: 200, Active: true, Mode: mode,
			PeerPrefixes: []netip.Prefix{netip.MustParsePrefix("10.2.1.0/24")},
			Pool: &GatewayPool{Name: "p", VPC: "blue", VNI: 200, PromotePackets: 3, PromoteWindow: time.Second,
				Members: []GatewayMember{{Host: "gw1", IP: netip.MustParseAddr("192.168.0.50")}}}}},
	}
}

// peer_packets is the pool routes' and promoted entries' counters, counted
// from the OHC's first poll, monotonic across demotions and counter resets.
func TestDemandPeerPackets(t *testing.T) {
	s := demandSchema(t)
	d, err := newDemand(s, 0)
	if err != nil {
		t.Fatal(err)
	}
	route := poolRouteEntity(t, s, 100, "10.2.1.0/24")
	dest := destEntity(t, s, 100, 200, "10.2.1.5")
	all := func() []*p4v1.Entity { return []*p4v1.Entity{route, dest} }
	out := d.filter(pooledView(ModePool), Delta{Came: all()}, all, true)
	if len(out.Came) != 1 || out.Came[0] != route {
		t.Fatalf("filter passed %d entities; want the route alone (the destination withheld)", len(out.Came))
	}
	rk := routeKey{100, netip.MustParsePrefix("10.2.1.0/24")}
	if r := d.routes[rk]; r == nil || r.name != "red/blue" {
		t.Fatalf("pool route not named red/blue: %+v", d.routes)
	}
	k := keyOf(100, "10.2.1.5")
	now := time.Now()

	// First poll: the route's 40 packets were there before the OHC
	// started: not counted.
	d.account(nil, map[routeKey]int64{rk: 40}, now)
	if got := d.totals["red/blue"]; got != 0 {
		t.Fatalf("after the first poll: %d, want 0", got)
	}
	d.promoteLocal(k, d.cands[k], now, 0)
	d.account(map[destKey]int64{k: 5}, map[routeKey]int64{rk: 43}, now)
	if got := d.totals["red/blue"]; got != 8 {
		t.Fatalf("3 through the pool and 5 direct: %d, want 8", got)
	}
	// The route was written anew (its counter reset to 2), the promoted
	// entry is demoted: the sum never goes back.
	d.unpromote(k)
	d.account(nil, map[routeKey]int64{rk: 2}, now)
	if got := d.totals["red/blue"]; got != 10 {
		t.Fatalf("after a reset and a demotion: %d, want 10", got)
	}
	// Direct mode: the destination is required, and its counter counts:
	// the controller sees the pair's rate in direct mode too.
	if out := d.filter(pooledView(ModeDirect), Delta{}, all, true); len(out.Came) != 1 || d.direct[k] == nil {
		t.Fatalf("pool -> direct: %d entries written, direct %v", len(out.Came), d.direct)
	}
	d.account(map[destKey]int64{k: 7}, map[routeKey]int64{rk: 2}, now)
	d.account(map[destKey]int64{k: 9}, map[routeKey]int64{rk: 2}, now)
	if got := d.totals["red/blue"]; got != 19 {
		t.Fatalf("direct mode: %d, want 10 + 9", got)
	}
	if d.filter(pooledView(ModePool), Delta{}, all, true); len(d.direct) != 0 {
		t.Fatalf("back to pool mode, still counted as direct: %v", d.direct)
	}
	// A pool with no live member carries nothing: its pairs are direct.
	dead := pooledView(ModePool)
	dead.Peerings[0].Pool.Members = nil
	if out := d.filter(dead, Delta{}, all, true); len(out.Came) != 1 || d.direct[k] == nil {
		t.Fatalf("pool without members: %d entries written, direct %v", len(out.Came), d.direct)
	}
	d.filter(pooledView(ModePool), Delta{}, all, true)
	// A route of a VNI with no pool peering is nobody's.
	other := poolRouteEntity(t, s, 300, "10.9.0.0/16")
	d.filter(pooledView(ModePool), Delta{Came: []*p4v1.Entity{other}}, all, true)
	if r := d.routes[routeKey{300, netip.MustParsePrefix("10.9.0.0/16")}]; r == nil || r.name != "" {
		t.Fatalf("route of VNI 300: %+v", r)
	}
}

// Digests promote only pulled pool-mode destinations of the digest's VNI,
// and only PromotePackets of them within PromoteWindow.
func TestDemandCountsDigests(t *testing.T) {
	s := demandSchema(t)
	d, err := newDemand(s, 0)
	if err != nil {
		t.Fatal(err)
	}
	one := func() []*p4v1.Entity { return []*p4v1.Entity{destEntity(t, s, 100, 200, "10.2.1.5")} }
	d.filter(pooledView(ModePool), Delta{Came: one()}, one, true)
	k := keyOf(100, "10.2.1.5")
	t0 := time.Now()
	ev := func(k destKey, after time.Duration) digestEvent { return digestEvent{k: k, at: t0.Add(after)} }
	// Not candidates: an address the peer does not export to red, the
	// right address under another VNI.
	if got := d.count([]digestEvent{ev(keyOf(100, "10.2.1.6"), 0), ev(destKey{101, k.ip}, 0)}); len(got) != 0 || d.st.Ignored != 2 {
		t.Fatalf("promoted %v, ignored %d", got, d.st.Ignored)
	}
	// Three digests over 1.5 s: the first is out of the window by the third; a fourth at 1.7 s makes three within a second (0.8, 1.5, 1.7).
	if got := d.count([]digestEvent{ev(k, 0), ev(k, 800*time.Millisecond), ev(k, 1500*time.Millisecond)}); len(got) != 0 {
		t.Fatalf("promoted %v from digests spread over 1.5 s", got)
	}
	if got := d.count([]digestEvent{ev(k, 1700*time.Millisecond)}); len(got) != 1 || got[0].k != k {
		t.Fatalf("three digests within a second: promoted %v", got)
	}
	// Direct mode: nothing is withheld, so nothing to promote.
	if out := d.filter(pooledView(ModeDirect), Delta{}, one, true); len(out.Came) != 1 {
		t.Fatalf("pool -> direct wrote %d entries, want the destination", len(out.Came))
	}
	if got := d.count([]digestEvent{ev(k, 0), ev(k, 1), ev(k, 2)}); len(got) != 0 {
		t.Fatalf("direct mode promoted %v", got)
	}
}

func keyOf(vni uint32, a string) destKey {
	b := netip.MustParseAddr(a).As4()
	return destKey{vni, uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])}
}
