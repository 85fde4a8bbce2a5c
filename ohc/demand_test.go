package ohc_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4rt"
)

// On-demand programming against the real p4mesh-switch, in process, over
// P4Runtime: packets from red-vm1 to blue, a pool-mode peer, take the pool
// route (written by the test, see poolPath) and raise the gateway digest;
// the OHC promotes, demotes and evicts.

const (
	gatewayIP  = "192.168.0.50"
	gatewayMAC = "02:00:00:00:00:50"
	blueN      = 6 // blue's destinations exported to red: 10.2.1.1..6
)

// demandView is host A with red-vm1; red is peered with blue (mode, through
// blue's pool) and with green (direct, though green has a pool too).
func demandView(mode string, idle time.Duration) *ohc.View {
	v := &ohc.View{
		Host: ohc.Host{ID: "a", IP: ip(hostA), MAC: mac(hostAMAC), UnderlayRoutes: []ohc.UnderlayRoute{
			{Prefix: pfx("192.168.0.0/16"), Port: 10, SrcMAC: mac(hostAMAC), DstMAC: mac(uplinkMAC)},
		}},
		VPCs: map[string]ohc.VPC{
			"red":   {Name: "red", VNI: 100, Subnets: []netip.Prefix{pfx("10.1.0.0/16")}, GatewayIP: ip("10.1.0.1"), GatewayMAC: mac("02:00:00:01:00:01")},
			"blue":  {Name: "blue", VNI: 200, Subnets: []netip.Prefix{pfx("10.2.0.0/16")}},
			"green": {Name: "green", VNI: 300, Subnets: []netip.Prefix{pfx("10.3.0.0/16")}},
		},
		Local: []ohc.LocalEndpoint{{ID: "red-vm1", VPC: "red", IP: ip("10.1.0.2"), MAC: mac(redVM1MAC), Port: 1}},
		Peerings: []ohc.Peering{
			{VPC: "red", PeerVPC: "blue", PeerVNI: 200, Active: true, PeerPrefixes: []netip.Prefix{pfx("10.2.1.0/24")}, Mode: mode,
				Pool: &ohc.GatewayPool{Name: "blue-gw", VPC: "blue", VNI: 200, Members: []ohc.GatewayMember{{Host: "gw1", IP: ip(gatewayIP)}},
					PromotePackets: 2, PromoteWindow: 5 * time.Second, IdleTimeout: idle}},
			{VPC: "red", PeerVPC: "green", PeerVNI: 300, Active: true, PeerPrefixes: []netip.Prefix{pfx("10.3.0.0/16")}, Mode: ohc.ModeDirect,
				Pool: &ohc.GatewayPool{Name: "green-gw", VPC: "green", VNI: 300, Members: []ohc.GatewayMember{{Host: "gw1", IP: ip(gatewayIP)}}}},
		},
		Remote: map[string][]ohc.RemoteEndpoint{
			"red":   {{IP: ip("10.1.0.2"), MAC: mac(redVM1MAC), HostIP: ip(hostA)}},
			"green": {{IP: ip("10.3.0.5"), MAC: mac(greenMAC), HostIP: ip(hostB)}},
		},
	}
	for i := 1; i <= blueN; i++ {
		v.Remote["blue"] = append(v.Remote["blue"], ohc.RemoteEndpoint{IP: blueIP(i), MAC: mac(fmt.Sprintf("02:00:00:02:01:%02x", i)), HostIP: ip(hostB)})
	}
	return v
}

func blueIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 2, 1, byte(i)}) }

// destLog follows the switch's vnet_destination entries write by write,
// from its OnWrite hook: the most it ever held, and every delete by key.
type destLog struct {
	s       *p4rt.Schema
	mu      sync.Mutex
	n, max  int
	deleted map[string]int // "vni/ip"
}

func (l *destLog) onWrite(u *p4v1.Update) {
	te := u.GetEntity().GetTableEntry()
	t, err := l.s.Table("vnet_destination")
	if err != nil || te == nil || te.GetTableId() != t.ID() || te.GetIsDefaultAction() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch u.GetType() {
	case p4v1.Update_INSERT:
		l.n++
		l.max = max(l.max, l.n)
	case p4v1.Update_DELETE:
		l.n--
		l.deleted[l.name(te)]++
	}
}

func (l *destLog) stats() (n, max int, deleted map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := map[string]int{}
	for k, v := range l.deleted {
		d[k] = v
	}
	return l.n, l.max, d
}

// name is an entry's key, "vni/ip".
func (l *destLog) name(te *p4v1.TableEntry) string {
	t, _ := l.s.Table("vnet_destination")
	f, _ := t.Field("vni")
	var vni uint64
	var addr netip.Addr
	for _, m := range te.GetMatch() {
		b := m.GetExact().GetValue()
		if m.GetFieldId() == f.GetId() {
			for _, c := range b {
				vni = vni<<8 | uint64(c)
			}
			continue
		}
		var a [4]byte
		copy(a[4-len(b):], b)
		addr = netip.AddrFrom4(a)
	}
	return fmt.Sprintf("%d/%v", vni, addr)
}

// demandRig is a switch and an OHC with vnet_destination's budget.
type demandRig struct {
	t   *testing.T
	s   *p4rt.Schema
	ts  *testSwitch
	o   *testOHC
	log *destLog
}

func newDemandRig(t *testing.T, budget int) *demandRig {
	r := &demandRig{t: t, s: schema(t)}
	r.log = &destLog{s: r.s, deleted: map[string]int{}}
	r.ts = startSwitchLogged(t, "127.0.0.1:0", r.log.onWrite)
	r.o = r.startOHC(1, budget)
	return r
}

func (r *demandRig) startOHC(election uint64, budget int) *testOHC {
	return startOHCWith(r.t, r.ts.addr, election, func(o *ohc.ProgrammerOptions) {
		o.ResyncInterval = -1 // the pool path the test writes must stay (see poolPath)
		if budget > 0 {
			o.TableBudget = map[string]int{"vnet_destination": budget}
		}
	})
}

// poolPath writes red's route to blue's pool on the switch, as the compile
// will once it emits pool routes (gw-ohc's part of issue 13): vnet_route
// (red, 10.2.1.0/24) -> to_gateway_pool(7), group 1 of gateway_selector
// with the one gateway. It writes in process with the OHC's election id,
// a second path the programmer does not know of: only a full reconcile
// would remove it, and the rig disables the periodic one.
func (r *demandRig) poolPath(election uint64) {
	r.t.Helper()
	r.poolPathFor(r.t, election, "10.2.1.0/24")
}

// send injects a UDP packet from red-vm1 to dst and returns the outer
// destination of the tunnel it left by: the gateway (pool path) or the
// destination's host (direct entry).
func (r *demandRig) send(dst netip.Addr) netip.Addr {
	r.t.Helper()
	r.ts.vm1.Inject(udpFrame(dst.String()))
	select {
	case out := <-r.ts.uplink.Output():
		if len(out) < 34 {
			r.t.Fatalf("short uplink frame %x", out)
		}
		if vni := binary.BigEndian.Uint32(out[46:50]) >> 8; vni != 200 {
			r.t.Fatalf("tunnel VNI %d, want blue's 200", vni)
		}
		return netip.AddrFrom4([4]byte(out[30:34]))
	case <-time.After(5 * time.Second):
		r.t.Fatalf("no frame on the uplink for %v (switch dropped %d)", dst, r.ts.sw.Dropped.Load())
	}
	return netip.Addr{}
}

// waitFor polls cond until it holds or 10 seconds pass.
func (r *demandRig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s; demand %+v", what, r.o.p.Stats().Demand)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// promote sends packets to dst through the pool until it is promoted, each
// after the OHC heard of the one before, and checks they took the pool
// path. The switch drops a digest equal to one not yet acknowledged, and
// the OHC's ack may still be on its way when it has counted the digest
// (under load, -race): a packet whose digest does not come within a
// second is followed by another.
func (r *demandRig) promote(dst netip.Addr) {
	r.t.Helper()
	before := r.o.p.Stats().Demand.Promotions
	for i := 0; r.o.p.Stats().Demand.Promotions == before; i++ {
		if i == 10 {
			r.t.Fatalf("%v not promoted after 10 packets; demand %+v", dst, r.o.p.Stats().Demand)
		}
		digests := r.o.p.Stats().Demand.Digests
		if via := r.send(dst); via != ip(gatewayIP) {
			r.t.Fatalf("packet %d to %v went to %v before promotion, want the gateway %s", i, dst, via, gatewayIP)
		}
		for wait := time.Now().Add(time.Second); r.o.p.Stats().Demand.Digests == digests && time.Now().Before(wait); {
			time.Sleep(5 * time.Millisecond)
		}
	}
	r.waitFor(fmt.Sprintf("%v on the switch", dst), func() bool { return r.onSwitch()[dst] })
}

// onSwitch reads the blue destinations red has entries for.
func (r *demandRig) onSwitch() map[netip.Addr]bool {
	r.t.Helper()
	lines, ok := switchLines(r.t, r.s, r.o.c)
	if !ok {
		r.t.Fatal("reading the switch failed")
	}
	out := map[netip.Addr]bool{}
	for i := 1; i <= blueN; i++ {
		want := fmt.Sprintf("vnet_destination vni=100 dst_ip=%v ", blueIP(i))
		for _, l := range lines {
			if len(l) > len(want) && l[:len(want)] == want {
				out[blueIP(i)] = true
			}
		}
	}
	return out
}

// destinations counts the switch's vnet_destination entries.
func (r *demandRig) destinations() int {
	lines, _ := switchLines(r.t, r.s, r.o.c)
	return len(withPrefix(lines, "vnet_destination "))
}

// counter reads the direct counter of red's entry for dst.
func (r *demandRig) counter(dst netip.Addr) int64 {
	r.t.Helper()
	te, err := r.s.TableEntry(p4rt.Entry{Table: "vnet_destination", Match: []p4rt.Match{p4rt.Exact("vni", p4rt.Uint(100)), p4rt.Exact("dst_ip", p4rt.IP(dst))},
		Action: &p4rt.ActionCall{Name: "encap_to_host", Params: []p4rt.Param{p4rt.P("dst_vni", p4rt.Uint(1)), p4rt.P("host_ip", p4rt.IP(ip(hostB))), p4rt.P("dmac", p4rt.MAC(mac(blueVMMAC)))}}})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	es, err := r.o.c.ReadAll(ctx, []*p4v1.Entity{{Entity: &p4v1.Entity_DirectCounterEntry{DirectCounterEntry: &p4v1.DirectCounterEntry{
		TableEntry: &p4v1.TableEntry{TableId: te.TableId, Match: te.Match}}}}})
	if err != nil || len(es) != 1 {
		r.t.Fatalf("reading the counter of %v: %v, %d entities", dst, err, len(es))
	}
	return es[0].GetDirectCounterEntry().GetData().GetPacketCount()
}

func TestOnDemandPromotionEvictionDemotion(t *testing.T) {
	// Required: red-vm1 (local) and green's 10.3.0.5 (direct-mode peer).
	// The budget leaves room for two of blue's six destinations.
	const required, budget = 2, 4
	r := newDemandRig(t, budget)
	r.o.converge(t, demandView(ohc.ModePool, 3*time.Second))
	st := r.o.p.Stats()
	if d := st.Demand; d.Budget != budget || d.Required != required || d.Withheld != blueN || d.Promoted != 0 || !d.DigestEnabled {
		t.Fatalf("after the first view: demand %+v", d)
	}
	if n := r.destinations(); n != required || st.Desired["vnet_destination"] != required {
		t.Fatalf("switch holds %d vnet_destination entries (desired %d), want only the %d required", n, st.Desired["vnet_destination"], required)
	}
	r.poolPath(1)

	// Promotion: two digests within the window.
	r.promote(blueIP(1))
	if via := r.send(blueIP(1)); via != ip(hostB) {
		t.Fatalf("after promotion a packet to %v went to %v, want direct to host B %s", blueIP(1), via, hostB)
	}
	if c := r.counter(blueIP(1)); c != 1 {
		t.Fatalf("promoted entry's counter %d, want 1: the packet after promotion took it", c)
	}
	if lp := r.o.p.Stats().Demand.LastPromotion; lp <= 0 {
		t.Errorf("LastPromotion %v", lp)
	}

	// The budget fills; traffic on .1 (seen by a counter poll: it is
	// counted in peer_packets) makes .2 the least recently used; .3's
	// promotion evicts it, and the switch never holds more than the budget.
	r.promote(blueIP(2))
	pp := r.o.p.Stats().PeerPackets["red/blue"]
	r.send(blueIP(1))
	r.waitFor("the poll to see .1's packet", func() bool { return r.o.p.Stats().PeerPackets["red/blue"] > pp })
	r.promote(blueIP(3))
	on := r.onSwitch()
	if !on[blueIP(1)] || on[blueIP(2)] || !on[blueIP(3)] || len(on) != 2 {
		t.Fatalf("blue entries on the switch %v: want .1 (in use) and .3, .2 evicted", on)
	}
	if d := r.o.p.Stats().Demand; d.Evictions != 1 || d.Promoted != 2 || d.Promotions != 3 {
		t.Fatalf("demand %+v: want 3 promotions, 1 eviction, 2 promoted", d)
	}
	if n, most, deleted := r.log.stats(); n != budget || most > budget || deleted["100/10.3.0.5"] > 0 || deleted["100/10.1.0.2"] > 0 {
		t.Fatalf("switch held %d vnet_destination entries at most (%d now), budget %d; deletions %v (required entries must stay)", most, n, budget, deleted)
	}
	if via := r.send(blueIP(2)); via != ip(gatewayIP) {
		t.Fatalf("evicted %v reached by %v, want the pool again", blueIP(2), via)
	}

	// A required entry comes (a red endpoint on host B): the least
	// recently used promoted entry, .1 (last used before .3 came), makes
	// room, deleted before the new entry is written.
	withRed := func(v *ohc.View) *ohc.View {
		v.Remote["red"] = append(v.Remote["red"], ohc.RemoteEndpoint{IP: ip("10.1.0.9"), MAC: mac(redRemMAC), HostIP: ip(hostB)})
		return v
	}
	r.o.converge(t, withRed(demandView(ohc.ModePool, 3*time.Second)))
	if on := r.onSwitch(); len(on) != 1 || !on[blueIP(3)] {
		t.Fatalf("after a required entry came: blue entries %v, want .3 alone", on)
	}
	if n, most, _ := r.log.stats(); n != budget || most > budget || r.o.p.Stats().Demand.Evictions != 2 {
		t.Fatalf("after a required entry came: %d entries, %d at most, demand %+v", n, most, r.o.p.Stats().Demand)
	}

	// Idle demotion: the idle timeout drops to 300 ms; nothing is sent.
	pp = r.o.p.Stats().PeerPackets["red/blue"]
	r.o.converge(t, withRed(demandView(ohc.ModePool, 300*time.Millisecond)))
	r.waitFor("idle demotion", func() bool { return r.o.p.Stats().Demand.Promoted == 0 })
	if on := r.onSwitch(); len(on) != 0 {
		t.Fatalf("blue entries on the switch after idle demotion: %v", on)
	}
	st = r.o.p.Stats()
	if st.Demand.Demotions != 1 || st.Desired["vnet_destination"] != required+1 || st.PeerPackets["red/blue"] < pp {
		t.Fatalf("after demotion: demand %+v, desired %v, peer_packets %v (was %d)", st.Demand, st.Desired, st.PeerPackets, pp)
	}
	if via := r.send(blueIP(1)); via != ip(gatewayIP) {
		t.Fatalf("demoted %v reached by %v, want the pool again", blueIP(1), via)
	}
}

func TestOnDemandModeSwitch(t *testing.T) {
	r := newDemandRig(t, 0)
	r.o.converge(t, demandView(ohc.ModePool, time.Minute))
	r.poolPath(1)
	r.promote(blueIP(1))

	// pool -> direct: every destination is programmed; the promoted one
	// stays as it was, now required.
	r.o.converge(t, demandView(ohc.ModeDirect, time.Minute))
	if on := r.onSwitch(); len(on) != blueN {
		t.Fatalf("direct mode: blue entries on the switch %v, want all %d", on, blueN)
	}
	if d := r.o.p.Stats().Demand; d.Promoted != 0 || d.Withheld != 0 || d.Required != 2+blueN {
		t.Fatalf("direct mode: demand %+v", d)
	}
	if _, _, deleted := r.log.stats(); len(deleted) != 0 {
		t.Fatalf("pool -> direct deleted %v", deleted)
	}
	pp := r.o.p.Stats().PeerPackets["red/blue"]
	if via := r.send(blueIP(4)); via != ip(hostB) {
		t.Fatalf("direct mode: packet to %v went to %v", blueIP(4), via)
	}
	// peer_packets counts direct-mode traffic too (the load trigger's
	// way back to pool mode).
	r.waitFor("peer_packets to count direct traffic", func() bool { return r.o.p.Stats().PeerPackets["red/blue"] > pp })

	// direct -> pool: the destinations none promoted leave the switch;
	// the direct-mode peer green keeps its entry.
	r.o.converge(t, demandView(ohc.ModePool, time.Minute))
	if on := r.onSwitch(); len(on) != 0 {
		t.Fatalf("back to pool: blue entries on the switch %v, want none", on)
	}
	if _, _, deleted := r.log.stats(); len(deleted) != blueN || deleted["100/10.3.0.5"] != 0 {
		t.Fatalf("back to pool: deletions %v", deleted)
	}
	if d := r.o.p.Stats().Demand; d.Withheld != blueN || d.Required != 2 || r.destinations() != 2 {
		t.Fatalf("back to pool: demand %+v, %d entries", d, r.destinations())
	}
	r.promote(blueIP(5))
}

func TestOnDemandRestartAdopts(t *testing.T) {
	r := newDemandRig(t, 0)
	v := demandView(ohc.ModePool, time.Minute)
	r.o.converge(t, v)
	r.poolPath(1)
	r.promote(blueIP(1))
	n, _, _ := r.log.stats()

	// A restarted OHC finds the promoted entry and keeps it: the switch
	// is not flushed, its destinations not written. (The pool path the
	// test wrote goes: the new OHC's view has none, see poolPath.)
	r.o.stop()
	r.o = r.startOHC(2, 0)
	r.o.converge(t, v)
	if d := r.o.p.Stats().Demand; d.Adopted != 1 || d.Promoted != 1 {
		t.Fatalf("restarted OHC: demand %+v, want the promoted entry adopted", d)
	}
	if _, _, deleted := r.log.stats(); len(deleted) != 0 {
		t.Fatalf("restart deleted %v", deleted)
	}
	if now, _, _ := r.log.stats(); now != n {
		t.Fatalf("restart changed the vnet_destination entries from %d to %d", n, now)
	}
	if via := r.send(blueIP(1)); via != ip(hostB) {
		t.Fatalf("adopted entry not used: packet went to %v", via)
	}
	if st := r.o.p.Stats(); st.Desired["vnet_destination"] != 3 {
		t.Fatalf("desired %v: want the 2 required and the adopted entry", st.Desired)
	}
	want := `
# HELP p4mesh_ohc_demand_destinations vnet_destination entries by state: required (never evicted), promoted, withheld (pool-mode destinations on the pool path).
# TYPE p4mesh_ohc_demand_destinations gauge
p4mesh_ohc_demand_destinations{state="promoted"} 1
p4mesh_ohc_demand_destinations{state="required"} 2
p4mesh_ohc_demand_destinations{state="withheld"} 5
# HELP p4mesh_ohc_demand_changes_total Promotions, demotions (idle) and evictions (least recently used, to make room), and promoted entries adopted after a restart.
# TYPE p4mesh_ohc_demand_changes_total counter
p4mesh_ohc_demand_changes_total{change="adoption"} 1
p4mesh_ohc_demand_changes_total{change="demotion"} 0
p4mesh_ohc_demand_changes_total{change="eviction"} 0
p4mesh_ohc_demand_changes_total{change="promotion"} 0
`
	if err := testutil.CollectAndCompare(ohc.NewDemandCollector(r.o.p), strings.NewReader(want),
		"p4mesh_ohc_demand_destinations", "p4mesh_ohc_demand_changes_total"); err != nil {
		t.Error(err)
	}
}
