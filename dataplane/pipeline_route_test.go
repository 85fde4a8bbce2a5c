package dataplane

import (
	"fmt"
	"net/netip"
	"testing"
)

// The routing stage (see pipeline_ingress_test.go for the admission
// stage): lb_frontend, vnet_destination, vnet_route, the selectors, TTL
// and the encapsulation with underlay_nexthop.

// TestPipelineVnetDestination: vnet_destination delivers to a VM here or
// encapsulates to the destination's host with the destination VPC's VNI;
// a miss goes on to vnet_route (TestPipelineVnetRoute), which here has
// nothing either.
func TestPipelineVnetDestination(t *testing.T) {
	ps := newWorld(t)
	transit := udpFrame(macA, gwMAC, redRemote, blueC, 9)
	ps.run(t, []step{
		{"local VM", portA, fromA(redB), portB, forwarded(fromA(redB), macB, 1)},
		{"itself", portA, fromA(redA), portA, forwarded(fromA(redA), macA, 1)},
		{"peer on another host", portA, fromA(blueC), uplink,
			tunnelOut(forwarded(fromA(blueC), macC, 1), uplinkMAC, nexthopMAC, hostC, vniBlue)},
		{"TCP to a peer", portA, tcpFrame(macA, gwMAC, redA, blueC, 4321, 22), uplink,
			tunnelOut(forwarded(tcpFrame(macA, gwMAC, redA, blueC, 4321, 22), macC, 1), uplinkMAC, nexthopMAC, hostC, vniBlue)},
		{"unknown destination", portA, fromA("10.7.0.1"), 0, nil},
		{"tunnel to a local VM", uplink, tunnelIn(hostC, wHostIP, vniRed, udpFrame(macC, gwMAC, blueC, redB, 9)), portB,
			forwarded(udpFrame(macC, gwMAC, blueC, redB, 9), macB, 0)},
		// Decapsulated, then routed again (a gateway's work): one hop.
		{"tunnel in transit", uplink, tunnelIn("192.168.0.20", wHostIP, vniRed, transit), uplink,
			tunnelOut(forwarded(transit, macC, 1), uplinkMAC, nexthopMAC, hostC, vniBlue)},
		{"tunnel to an unknown destination", uplink, tunnelIn(hostC, wHostIP, vniRed, udpFrame(macC, gwMAC, blueC, "10.1.7.7", 9)), 0, nil},
	})
}

// TestPipelineVnetRoute: on a vnet_destination miss, vnet_route's longest
// prefix in the packet's VNI decides: a host, a gateway pool, or drop.
func TestPipelineVnetRoute(t *testing.T) {
	ps := newWorld(t)
	via := func(dst, host string) step {
		in := fromA(dst)
		return step{dst + " via " + host, portA, in, uplink,
			tunnelOut(forwarded(in, "00:00:00:00:00:00", 1), uplinkMAC, nexthopMAC, host, vniBlue)}
	}
	green := udpFrame("02:99:00:00:00:01", gwMAC, "10.3.0.4", "10.2.0.99", 9)
	ps.run(t, []step{
		via("10.2.0.99", "192.168.0.3"), // /16
		via("10.2.1.9", "192.168.0.4"),  // /24 over /16
		via("10.2.3.1", "192.168.0.3"),  // /16 again
		{"exact before route", portA, fromA(blueC), uplink,
			tunnelOut(forwarded(fromA(blueC), macC, 1), uplinkMAC, nexthopMAC, hostC, vniBlue)},
		{"drop route", portA, fromA("10.2.2.9"), 0, nil},
		{"no route", portA, fromA("10.7.0.1"), 0, nil},
		// Red's routes are not green's.
		{"other VNI", uplink, tunnelIn(hostC, wHostIP, vniGreen, green), 0, nil},
	})
}

// TestPipelineGatewayPool: a route to a gateway pool encapsulates to the
// pool's gateway and sends the gateway digest; a pool with no entry drops
// and sends nothing.
func TestPipelineGatewayPool(t *testing.T) {
	ps := newWorld(t)
	var digests []string
	ps.pipe.Digest = func(id, vni, dst uint32) {
		digests = append(digests, fmt.Sprintf("%#x %v", vni, netip.AddrFrom4([4]byte{byte(dst >> 24), byte(dst >> 16), byte(dst >> 8), byte(dst)})))
	}
	for _, tc := range []struct {
		step
		digest string
	}{
		{step{"pool 7", portA, fromA("10.9.0.1"), uplink,
			tunnelOut(forwarded(fromA("10.9.0.1"), "00:00:00:00:00:00", 1), uplinkMAC, nexthopMAC, "192.168.0.9", vniRed)}, "0x100 10.9.0.1"},
		{step{"pool without entry", portA, fromA("10.8.0.1"), 0, nil}, ""},
		{step{"TTL expired", portA, withTTL(fromA("10.9.0.2"), 1), 0, nil}, ""},
	} {
		digests = nil
		ps.run(t, []step{tc.step})
		var want []string
		if tc.digest != "" {
			want = []string{tc.digest}
		}
		if fmt.Sprint(digests) != fmt.Sprint(want) {
			t.Errorf("%s: digests %q; want %q", tc.name, digests, want)
		}
	}
}

// TestPipelineLoadBalancer: lb_frontend takes (VIP, protocol, port) to a
// load balancer before vnet_destination is looked at; lb_backend picks the
// backend by the 5-tuple's crc16, member (hash % 3) of the group in BMv2
// member handle order. The VIP stays the destination.
func TestPipelineLoadBalancer(t *testing.T) {
	ps := newWorld(t)
	var steps []step
	picked := map[int]int{}
	for sport := uint16(1000); sport < 1012; sport++ {
		in := tcpFrame(macA, gwMAC, redA, vip, sport, 80)
		s := step{fmt.Sprintf("flow from port %d", sport), portA, in, 0, nil}
		slot := int(crc16(selectorKey(in)) % 3)
		switch slot {
		case 0: // member 1: blue C on its host
			s.wantPort, s.want = uplink, tunnelOut(forwarded(in, macC, 1), uplinkMAC, nexthopMAC, hostC, vniBlue)
		case 1: // member 2: VM B here
			s.wantPort, s.want = portB, forwarded(in, macB, 1)
		case 2: // member 3
			s.wantPort, s.want = uplink, tunnelOut(forwarded(in, lbMAC3, 1), uplinkMAC, nexthopMAC, lbHost3, vniBlue)
		}
		picked[slot]++
		steps = append(steps, s)
	}
	if len(picked) != 3 {
		t.Fatalf("flows pick slots %v: choose source ports that reach every member", picked)
	}
	off := func(name string, in *frame) step {
		return step{name, portA, in, uplink, tunnelOut(forwarded(in, "02:aa:00:00:00:06", 1), uplinkMAC, nexthopMAC, "192.168.0.6", vniRed)}
	}
	udp80 := udpFrame(macA, gwMAC, redA, vip, 64)
	udp80.IP.DstPort = 80
	steps = append(steps,
		off("VIP on another port", tcpFrame(macA, gwMAC, redA, vip, 1000, 8080)),
		off("VIP over UDP", udp80),
		step{"no backend", portA, tcpFrame(macA, gwMAC, redA, vipNoBackend, 1000, 80), 0, nil},
	)
	ps.run(t, steps)
}

// TestPipelineUnderlayNexthop: the outer destination's longest prefix in
// underlay_nexthop gives the uplink and the outer MACs; with none the
// packet is dropped.
func TestPipelineUnderlayNexthop(t *testing.T) {
	ps := newWorld(t)
	to7 := fromA("10.2.0.7")
	ps.run(t, []step{
		{"/16", portA, fromA(blueC), uplink, tunnelOut(forwarded(fromA(blueC), macC, 1), uplinkMAC, nexthopMAC, hostC, vniBlue)},
		{"/24 over /16", portA, to7, uplink9, tunnelOut(forwarded(to7, "02:bb:00:00:00:07", 1), uplink9MAC, nexthop9, "192.168.9.7", vniBlue)},
		{"no underlay route", portA, fromA("10.2.0.8"), 0, nil},
	})
}

// TestPipelineTTL: every routing pass decrements the inner TTL and drops
// at TTL <= 1, except the delivery of a tunnelled packet to a VM here.
func TestPipelineTTL(t *testing.T) {
	ps := newWorld(t)
	local := func(ttl uint8) *frame { return withTTL(fromA(redB), ttl) }
	remote := func(ttl uint8) *frame { return withTTL(fromA(blueC), ttl) }
	arriving := func(ttl uint8) *frame { return udpFrame(macC, gwMAC, blueC, redA, ttl) }
	transit := func(ttl uint8) *frame { return udpFrame(macA, gwMAC, redRemote, blueC, ttl) }
	ps.run(t, []step{
		{"VM to VM, 64", portA, local(64), portB, forwarded(local(64), macB, 1)},
		{"VM to VM, 2", portA, local(2), portB, forwarded(local(2), macB, 1)},
		{"VM to VM, 1", portA, local(1), 0, nil},
		{"VM to VM, 0", portA, local(0), 0, nil},
		{"VM to tunnel, 2", portA, remote(2), uplink, tunnelOut(forwarded(remote(2), macC, 1), uplinkMAC, nexthopMAC, hostC, vniBlue)},
		{"VM to tunnel, 1", portA, remote(1), 0, nil},
		{"tunnel to VM, 1", uplink, tunnelIn(hostC, wHostIP, vniRed, arriving(1)), portA, forwarded(arriving(1), macA, 0)},
		{"tunnel to VM, 0", uplink, tunnelIn(hostC, wHostIP, vniRed, arriving(0)), portA, forwarded(arriving(0), macA, 0)},
		{"transit, 2", uplink, tunnelIn("192.168.0.20", wHostIP, vniRed, transit(2)), uplink,
			tunnelOut(forwarded(transit(2), macC, 1), uplinkMAC, nexthopMAC, hostC, vniBlue)},
		{"transit, 1", uplink, tunnelIn("192.168.0.20", wHostIP, vniRed, transit(1)), 0, nil},
	})
}
