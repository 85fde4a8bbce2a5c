package ohc_test

import (
	"context"
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4rt"
)

// hub is an underlay that floods every frame one switch sends on its
// uplink to the other switches' uplinks (a switch takes only the tunnels
// addressed to it), and records the outer destination of each, by the
// switch that sent it.
type hub struct {
	mu   sync.Mutex
	sent map[string][]netip.Addr // outer destinations, by sender
}

func startHub(t *testing.T, sws map[string]*testSwitch) *hub {
	h := &hub{sent: map[string][]netip.Addr{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for name, ts := range sws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case f := <-ts.uplink.Output():
					if len(f) >= 34 {
						h.mu.Lock()
						h.sent[name] = append(h.sent[name], netip.AddrFrom4([4]byte(f[30:34])))
						h.mu.Unlock()
					}
					for other, o := range sws {
						if other != name {
							o.uplink.Inject(append([]byte(nil), f...))
						}
					}
				}
			}
		}()
	}
	return h
}

// take returns and forgets what name sent.
func (h *hub) take(name string) []netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.sent[name]
	delete(h.sent, name)
	return out
}

// The world of the gateway test: red's VM on host A, blue's on host B,
// blue served by a pool of gateways G1 and G2. Red and blue export their
// subnets to each other.
const (
	gwRedVM, gwBlueVM = "10.1.0.2", "10.2.0.5"
	gwBlueMAC         = "02:00:00:02:00:05"
)

func gwHost(id, addr, hostMAC string) ohc.Host {
	return ohc.Host{ID: id, IP: ip(addr), MAC: mac(hostMAC), UnderlayRoutes: []ohc.UnderlayRoute{
		{Prefix: pfx("192.168.0.0/16"), Port: 10, SrcMAC: mac(hostMAC), DstMAC: mac(uplinkMAC)},
	}}
}

var (
	gwRed  = ohc.VPC{Name: "red", VNI: 100, Subnets: []netip.Prefix{pfx("10.1.0.0/16")}, GatewayIP: ip("10.1.0.1"), GatewayMAC: mac("02:00:00:01:00:01")}
	gwBlue = ohc.VPC{Name: "blue", VNI: 200, Subnets: []netip.Prefix{pfx("10.2.0.0/16")}, GatewayIP: ip("10.2.0.1"), GatewayMAC: mac("02:00:00:02:00:01")}
)

// hostAView is host A with the pool path to blue through members and no
// direct entry for blue's VM: what an on-demand host holds before
// promotion.
func hostAView(members ...string) *ohc.View {
	return &ohc.View{
		Host:  gwHost("a", hostA, hostAMAC),
		VPCs:  map[string]ohc.VPC{"red": gwRed},
		Local: []ohc.LocalEndpoint{{ID: "red-vm", VPC: "red", IP: ip(gwRedVM), MAC: mac(redVM1MAC), Port: 1}},
		Peerings: []ohc.Peering{{VPC: "red", PeerVPC: "blue", PeerVNI: 200, Active: true, PeerPrefixes: []netip.Prefix{pfx("10.2.0.0/16")},
			Mode: ohc.ModePool, Pool: bluePool(members...)}},
		Remote: map[string][]ohc.RemoteEndpoint{"red": {{IP: ip(gwRedVM), MAC: mac(redVM1MAC), HostIP: ip(hostA)}}},
	}
}

func hostBView() *ohc.View {
	return &ohc.View{
		Host:     gwHost("b", hostB, "02:aa:00:00:00:02"),
		VPCs:     map[string]ohc.VPC{"blue": gwBlue},
		Local:    []ohc.LocalEndpoint{{ID: "blue-vm", VPC: "blue", IP: ip(gwBlueVM), MAC: mac(gwBlueMAC), Port: 1}},
		Peerings: []ohc.Peering{{VPC: "blue", PeerVPC: "red", PeerVNI: 100, Active: true, PeerPrefixes: []netip.Prefix{pfx("10.1.0.0/16")}}},
		Remote: map[string][]ohc.RemoteEndpoint{
			"blue": {{IP: ip(gwBlueVM), MAC: mac(gwBlueMAC), HostIP: ip(hostB)}},
			"red":  {{IP: ip(gwRedVM), MAC: mac(redVM1MAC), HostIP: ip(hostA)}},
		},
	}
}

// gatewayHostView is a gateway of blue's pool: no endpoint, a duty for
// blue, blue's peering (for the sources it admits) and blue's endpoints.
func gatewayHostView(id, addr, hostMAC string) *ohc.View {
	return &ohc.View{
		Host:     gwHost(id, addr, hostMAC),
		VPCs:     map[string]ohc.VPC{"blue": gwBlue},
		Peerings: []ohc.Peering{{VPC: "blue", PeerVPC: "red", PeerVNI: 100, Active: true, PeerPrefixes: []netip.Prefix{pfx("10.1.0.0/16")}}},
		Remote:   map[string][]ohc.RemoteEndpoint{"blue": {{IP: ip(gwBlueVM), MAC: mac(gwBlueMAC), HostIP: ip(hostB)}}},
		Duties:   []ohc.GatewayDuty{{Pool: "blue-gw", VPC: "blue", VNI: 200}},
	}
}

// withSport is f (from udpFrameFrom) with UDP source port sport: another
// flow. The UDP checksum is 0, so nothing else changes.
func withSport(f []byte, sport uint16) []byte {
	f = append([]byte(nil), f...)
	binary.BigEndian.PutUint16(f[34:36], sport)
	return f
}

// TestGatewayPoolEndToEnd runs four real p4mesh-switches, each programmed
// by its own programmer from a hand-built view, on one in-memory underlay:
// red's VM on host A sends to blue's VM on host B, for which A has no
// direct entry. Each flow goes A -> a gateway of blue's pool (chosen by the
// flow hash; both are used) -> B, and arrives with the TTL decremented
// twice (A and the gateway are a hop each). Blue's reply goes straight
// back. A new endpoint of blue reaches the gateways as an incremental
// compile and is reachable through them at once. With G1 taken out of A's
// pool, every flow goes through G2 and still arrives; with no member left,
// nothing does.
func TestGatewayPoolEndToEnd(t *testing.T) {
	sws := map[string]*testSwitch{}
	for _, n := range []string{"a", "b", "g1", "g2"} {
		sws[n] = startSwitch(t, "127.0.0.1:0")
	}
	views := map[string]*ohc.View{
		"a":  hostAView(gw1, gw2),
		"b":  hostBView(),
		"g1": gatewayHostView("g1", gw1, "02:aa:00:00:01:01"),
		"g2": gatewayHostView("g2", gw2, "02:aa:00:00:01:02"),
	}
	s := schema(t)
	ohcs := map[string]*testOHC{}
	for n, ts := range sws {
		ohcs[n] = startOHC(t, ts.addr, 1)
		ohcs[n].converge(t, views[n])
		waitLines(t, s, ohcs[n].c, wantLines(t, s, views[n]))
	}
	h := startHub(t, sws)

	recv := func(what string) []byte {
		t.Helper()
		select {
		case f := <-sws["b"].vm1.Output():
			return f
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: nothing reached blue's VM (dropped: a %d, g1 %d, g2 %d, b %d)", what,
				sws["a"].sw.Dropped.Load(), sws["g1"].sw.Dropped.Load(), sws["g2"].sw.Dropped.Load(), sws["b"].sw.Dropped.Load())
			return nil
		}
	}
	// send sends flow sport from red's VM and returns the gateway it went
	// through.
	send := func(sport uint16) netip.Addr {
		t.Helper()
		in := withSport(udpFrameFrom(redVM1MAC, gwRedVM, gwBlueVM), sport)
		sws["a"].vm1.Inject(in)
		out := recv("flow")
		if got := out[:6]; string(got) != string(mac(gwBlueMAC)) {
			t.Errorf("flow %d reached blue's VM with destination MAC %x", sport, got)
		}
		if out[14+8] != 62 {
			t.Errorf("flow %d arrived with TTL %d, want 62 (host A and the gateway)", sport, out[14+8])
		}
		if string(out[14+12:]) != string(in[14+12:]) {
			t.Errorf("flow %d: addresses or payload changed:\n got %x\nsent %x", sport, out[14+12:], in[14+12:])
		}
		a := h.take("a")
		if len(a) != 1 || (a[0] != ip(gw1) && a[0] != ip(gw2)) {
			t.Fatalf("flow %d: host A sent to %v, want one gateway", sport, a)
		}
		if g := h.take(map[netip.Addr]string{ip(gw1): "g1", ip(gw2): "g2"}[a[0]]); len(g) != 1 || g[0] != ip(hostB) {
			t.Errorf("flow %d: gateway %v sent to %v, want host B", sport, a[0], g)
		}
		return a[0]
	}

	used := map[netip.Addr]int{}
	for i := range 16 {
		used[send(uint16(41000+i))]++
	}
	if len(used) != 2 {
		t.Errorf("16 flows went through %v: want both gateways used", used)
	}

	// The reply needs no gateway: B has red's VM.
	sws["b"].vm1.Inject(udpFrameFrom(gwBlueMAC, gwBlueVM, gwRedVM))
	select {
	case f := <-sws["a"].vm1.Output():
		if f[14+8] != 63 {
			t.Errorf("reply TTL %d, want 63", f[14+8])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blue's reply did not reach red's VM")
	}
	if g := h.take("b"); len(g) != 1 || g[0] != ip(hostA) {
		t.Errorf("reply went to %v, want straight to host A", g)
	}

	// A second VM of blue comes up on host B (port 5). The gateways learn
	// it as a change of one remote endpoint, compiled incrementally, and
	// A's flows to it need nothing new on A.
	const blue2, blue2MAC = "10.2.0.6", "02:00:00:02:00:06"
	vb := hostBView()
	vb.Local = append(vb.Local, ohc.LocalEndpoint{ID: "blue-vm2", VPC: "blue", IP: ip(blue2), MAC: mac(blue2MAC), Port: 5})
	vb.Remote["blue"] = append(vb.Remote["blue"], ohc.RemoteEndpoint{IP: ip(blue2), MAC: mac(blue2MAC), HostIP: ip(hostB)})
	ohcs["b"].converge(t, sortView(vb))
	for _, g := range []string{"g1", "g2"} {
		v := gatewayHostView(g, map[string]string{"g1": gw1, "g2": gw2}[g], map[string]string{"g1": "02:aa:00:00:01:01", "g2": "02:aa:00:00:01:02"}[g])
		v.Remote["blue"] = append(v.Remote["blue"], ohc.RemoteEndpoint{IP: ip(blue2), MAC: mac(blue2MAC), HostIP: ip(hostB)})
		before := ohcs[g].p.Stats().IncrementalCompiles
		ohcs[g].p.UpdateChange(sortView(v), nil, ohc.ViewChange{Remote: []ohc.RemoteKey{{VPC: "blue", IP: ip(blue2)}}})
		ohcs[g].wait(t)
		waitLines(t, s, ohcs[g].c, wantLines(t, s, v))
		if st := ohcs[g].p.Stats(); st.IncrementalCompiles != before+1 {
			t.Errorf("%s: the new endpoint took %d incremental compiles (%d whole in all), want 1", g, st.IncrementalCompiles-before, st.Compiles)
		}
	}
	for i := range 8 {
		in := withSport(udpFrameFrom(redVM1MAC, gwRedVM, blue2), uint16(42000+i))
		sws["a"].vm1.Inject(in)
		select {
		case f := <-sws["b"].att.Output():
			if string(f[:6]) != string(mac(blue2MAC)) || f[14+8] != 62 {
				t.Errorf("flow %d to blue's new VM: MAC %x TTL %d, want %s and 62", i, f[:6], f[14+8], blue2MAC)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("flow %d did not reach blue's new VM", i)
		}
		h.take("a")
		h.take("g1")
		h.take("g2")
	}

	// G1 leaves the pool: every flow moves to G2, and only the group and
	// G1's member are written.
	ohcs["a"].converge(t, hostAView(gw2))
	waitLines(t, s, ohcs["a"].c, wantLines(t, s, hostAView(gw2)))
	c := ohcs["a"].p.Stats().LastChanges
	if c["gateway_selector"].Deleted != 1 || c["gateway_selector"].Modified != 1 || c["vnet_route"] != (p4rt.Change{}) || c["gateway_pool"] != (p4rt.Change{}) {
		t.Errorf("G1 leaving wrote %+v: want G1's member deleted and the group modified, no route touched", c)
	}
	for i := range 16 {
		if g := send(uint16(41000 + i)); g != ip(gw2) {
			t.Errorf("flow %d went through %v after G1 left the pool", 41000+i, g)
		}
	}

	// No live member: no pool path, and a destination without a direct
	// entry is dropped, as without a pool.
	ohcs["a"].converge(t, hostAView())
	sws["a"].vm1.Inject(udpFrameFrom(redVM1MAC, gwRedVM, gwBlueVM))
	select {
	case f := <-sws["b"].vm1.Output():
		t.Errorf("a flow arrived with an empty pool: %x", f)
	case <-time.After(200 * time.Millisecond):
	}
}
