package ohc_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4rt"
)

// BenchmarkPromotionLatency: from the first packet a VM sends to a
// pool-mode destination (through the pool route, raising the gateway
// digest) to the destination's direct entry applied by the switch (its
// OnWrite hook), against the in-process p4mesh-switch over P4Runtime on
// loopback. Each iteration promotes a new destination of 4096. packets=1
// promotes on the first digest: the mechanism's latency. packets=3 sends a
// flow of one packet per millisecond until the entry is there: the
// default threshold's latency for a busy flow (three digests, each after
// the OHC acknowledged the one before). Reports p50 and p99.
func BenchmarkPromotionLatency(b *testing.B) {
	for _, packets := range []uint32{1, 3} {
		b.Run(fmt.Sprintf("packets=%d", packets), func(b *testing.B) {
			benchPromotion(b, packets)
		})
	}
}

func benchPromotion(b *testing.B, packets uint32) {
	const n = 4096
	s := schema(b)
	dt, _ := s.Table("vnet_destination")
	var mu sync.Mutex
	written := map[string]chan time.Time{}
	key := func(a netip.Addr) string { return a.String() }
	onWrite := func(u *p4v1.Update) {
		te := u.GetEntity().GetTableEntry()
		if u.GetType() != p4v1.Update_INSERT || te.GetTableId() != dt.ID() {
			return
		}
		now := time.Now()
		for _, m := range te.GetMatch() {
			if v := m.GetExact().GetValue(); len(v) == 4 {
				mu.Lock()
				if ch := written[key(netip.AddrFrom4([4]byte(v)))]; ch != nil {
					select {
					case ch <- now:
					default:
					}
				}
				mu.Unlock()
			}
		}
	}
	ts := startSwitchLogged(b, "127.0.0.1:0", onWrite)
	o := startOHCWith(b, ts.addr, 1, func(po *ohc.ProgrammerOptions) { po.ResyncInterval = -1 })
	v := demandView(ohc.ModePool, time.Hour)
	v.Peerings[0].Pool.PromotePackets = packets
	v.Peerings[0].Pool.PromoteWindow = time.Second
	v.Remote["blue"] = nil
	dst := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 2, 1 + byte(i>>8), byte(i)}) }
	for i := range n {
		v.Remote["blue"] = append(v.Remote["blue"], ohc.RemoteEndpoint{IP: dst(i), MAC: net.HardwareAddr{2, 0, 0, 2, byte(i >> 8), byte(i)}, HostIP: ip(hostB)})
	}
	v.Peerings[0].PeerPrefixes = []netip.Prefix{pfx("10.2.0.0/16")}
	o.converge(b, v)
	r := &demandRig{s: s, ts: ts, o: o}
	r.poolPathFor(b, 1, "10.2.0.0/16")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // the uplink's frames: not looked at
		for {
			select {
			case <-ctx.Done():
				return
			case <-ts.uplink.Output():
			}
		}
	}()
	var lat []time.Duration
	i := 0
	for b.Loop() {
		if i == n {
			b.Fatalf("more than %d iterations: give -benchtime=%dx or less", n, n)
		}
		a := dst(i)
		i++
		ch := make(chan time.Time, 1)
		mu.Lock()
		written[key(a)] = ch
		mu.Unlock()
		frame := udpFrame(a.String())
		first := time.Now()
		ts.vm1.Inject(frame)
		tick := time.NewTicker(time.Millisecond)
	wait:
		for {
			select {
			case at := <-ch:
				lat = append(lat, at.Sub(first))
				break wait
			case <-tick.C:
				if packets > 1 {
					ts.vm1.Inject(frame)
				}
			case <-time.After(5 * time.Second):
				b.Fatalf("%v not promoted; demand %+v", a, o.p.Stats().Demand)
			}
		}
		tick.Stop()
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

// poolPathFor is poolPath for route prefix p. It writes nothing when the
// switch has a pool route of red already: the compile's, once it makes
// them (gw-ohc's part of issue 13).
func (r *demandRig) poolPathFor(t testing.TB, election uint64, p string) {
	t.Helper()
	s := r.s
	vr, err := s.Table("vnet_route")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := s.Action("to_gateway_pool")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	routes, err := r.o.c.ReadAll(ctx, []*p4v1.Entity{{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: vr.ID()}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range routes {
		if e.GetTableEntry().GetAction().GetAction().GetActionId() == pool.ID() {
			return
		}
	}
	m, err := s.ActionProfileMember("gateway_selector", 1, p4rt.Call("encap_to_host",
		p4rt.P("dst_vni", p4rt.Uint(200)), p4rt.P("host_ip", p4rt.IP(ip(gatewayIP))), p4rt.P("dmac", p4rt.MAC(mac(gatewayMAC)))))
	if err != nil {
		t.Fatal(err)
	}
	g, err := s.ActionProfileGroup("gateway_selector", 1, []p4rt.GroupMember{{ID: 1, Weight: 1}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := s.TableEntry(p4rt.Entry{Table: "gateway_pool", Match: []p4rt.Match{p4rt.Exact("pool_id", p4rt.Uint(7))}, Group: 1})
	if err != nil {
		t.Fatal(err)
	}
	call := p4rt.Call("to_gateway_pool", p4rt.P("pool_id", p4rt.Uint(7)))
	route, err := s.TableEntry(p4rt.Entry{Table: "vnet_route", Match: []p4rt.Match{p4rt.Exact("vni", p4rt.Uint(100)), p4rt.Prefix("dst_ip", pfx(p))}, Action: &call})
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []any{m, g, sel, route} {
		u, err := p4rt.Update(p4v1.Update_INSERT, msg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.ts.sw.Server().Write(context.Background(), &p4v1.WriteRequest{DeviceId: 1, ElectionId: &p4v1.Uint128{Low: election},
			Updates: []*p4v1.Update{u}, Atomicity: p4v1.WriteRequest_CONTINUE_ON_ERROR})
		if err != nil {
			t.Fatalf("writing the pool path: %v", err)
		}
	}
}
