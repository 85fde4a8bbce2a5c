package dataplane

import (
	"fmt"
	"testing"
)

// Unit tests of the pipeline's decisions, table by table, in the world of
// world_test.go: for each table what it forwards (where, with which
// headers) and what it drops. The packet vectors (test/vectors) hold the
// pipeline to BMv2; these hold each decision of vpc_peering.p4 on their
// own, so that turning one off fails in ./dataplane. docs/testing.md lists
// the mutations they kill.
//
// This file: the admission stage, from the ingress port to do_route.

// TestPipelinePortVnet: port_vnet makes a port a VM's (set_vnet) or keeps
// it shut (drop); what comes in on a VM port must be IPv4 or ARP.
func TestPipelinePortVnet(t *testing.T) {
	ps := newWorld(t)
	toB := fromA(redB)
	opts := fromA(redB)
	opts.IP.IHL = 6
	tunnel := tunnelIn(hostC, wHostIP, vniRed, udpFrame(macC, macA, blueC, redA, 9))
	// VXLAN a VM sends as itself to a VM here: UDP/4789 is not supported
	// from VMs, however well addressed.
	vmVXLAN := &frame{Dst: gwMAC, Src: macA, IP: &ipHdr{Src: addr(redA), Dst: addr(redB), TTL: 64, Proto: protoUDP,
		SrcPort: 50000, VNI: vniRed, Inner: udpFrame(macA, macB, redA, redB, 64)}}
	ps.run(t, []step{
		{"VM port", portA, toB, portB, forwarded(toB, macB, 1)},
		{"unknown port", portUnknown, toB, 0, nil},
		{"uplink without VXLAN", uplink, toB, 0, nil},
		{"disabled VM port", portDisabled, toB, 0, nil},
		// A drop entry is a hit: a tunnel on the port is not terminated.
		{"disabled VM port with VXLAN", portDisabled, tunnel, 0, nil},
		{"VXLAN from a VM", portA, vmVXLAN, 0, nil},
		{"IPv6 from a VM", portA, &frame{Dst: gwMAC, Src: macA, EtherType: 0x86dd}, 0, nil},
		{"IPv4 options from a VM", portA, opts, 0, nil},
	})
}

// TestPipelineSourceGuard: vm_source_guard lets a VM send only as itself,
// (VNI, port, source IP, source MAC) all matching.
func TestPipelineSourceGuard(t *testing.T) {
	ps := newWorld(t)
	spoof := func(port uint16, ip, mac string) step {
		return step{fmt.Sprintf("port %d as %s %s", port, ip, mac), port, udpFrame(mac, gwMAC, ip, redB, 64), 0, nil}
	}
	fromB := udpFrame(macB, gwMAC, redB, redA, 64)
	ps.run(t, []step{
		{"A as itself", portA, fromA(redB), portB, forwarded(fromA(redB), macB, 1)},
		{"B as itself", portB, fromB, portA, forwarded(fromB, macA, 1)},
		spoof(portA, "10.1.0.77", macA), // another source IP
		spoof(portA, redB, macA),        // B's IP
		spoof(portA, redA, macB),        // B's MAC
		spoof(portA, redA, "02:66:00:00:00:01"),
		spoof(portA, redB, macB), // all of B, on A's port
		spoof(portB, redA, macA), // all of A, on B's port
	})
}

// TestPipelineARPProxy: arp_proxy answers a request for a known address in
// the data plane, back out of the port it came in on, addressed to the
// VM that owns the port; it drops one for an unknown address, and hands
// the addresses the controller chose to it.
func TestPipelineARPProxy(t *testing.T) {
	ps := newWorld(t)
	reply := func(mac, ip string) *frame {
		return &frame{Dst: macA, Src: mac, ARP: &arpHdr{Op: 2, SHA: mac, SPA: addr(ip), THA: macA, TPA: addr(redA)}}
	}
	// The reply goes to the port's VM, whatever the request claims.
	liar := arpRequest(redB)
	liar.Src, liar.ARP.SHA, liar.ARP.SPA = "02:66:00:00:00:01", "02:66:00:00:00:01", addr("10.1.0.66")
	liarReply := reply(macB, redB)
	liarReply.ARP.TPA = addr("10.1.0.66")
	notRequest := arpRequest(redB)
	notRequest.ARP.Op = 2
	badHLen := arpRequest(redB)
	badHLen.ARP.HLen = 8
	ps.run(t, []step{
		{"VM on this host", portA, arpRequest(redB), portA, reply(macB, redB)},
		{"VM of a peer VPC", portA, arpRequest(blueC), portA, reply(macC, blueC)},
		{"from B", portB, &frame{Dst: "ff:ff:ff:ff:ff:ff", Src: macB, ARP: &arpHdr{Op: 1, SHA: macB, SPA: addr(redB), THA: "00:00:00:00:00:00", TPA: addr(blueC)}},
			portB, &frame{Dst: macB, Src: macC, ARP: &arpHdr{Op: 2, SHA: macC, SPA: addr(blueC), THA: macB, TPA: addr(redB)}}},
		{"claimed sender", portA, liar, portA, liarReply},
		{"unknown address", portA, arpRequest("10.1.0.50"), 0, nil},
		{"address in another VPC only", portA, arpRequest("10.3.0.8"), 0, nil},
		{"to the controller", portA, arpRequest("10.1.0.99"), cpuPort, arpRequest("10.1.0.99")},
		{"reply from a VM", portA, notRequest, 0, nil},
		{"hardware length 8", portA, badHLen, 0, nil},
		{"on an uplink", uplink, arpRequest(redB), 0, nil},
	})
}

// TestPipelineTunnelTermination: tunnel_term decapsulates VXLAN to this
// host's underlay IP with a VNI that ends here, and drops the rest.
func TestPipelineTunnelTermination(t *testing.T) {
	ps := newWorld(t)
	cToA := udpFrame(macC, macA, blueC, redA, 9)
	// Blue has a source check and a destination here, but no tunnel ends
	// here for it.
	redToBlue := udpFrame(macA, macC, redRemote, blueC, 9)
	notIPv4 := &frame{Dst: macA, Src: macC, EtherType: 0x86dd}
	opts := cloneFrame(cToA)
	opts.IP.IHL = 6
	ps.run(t, []step{
		{"to this host, red", uplink, tunnelIn(hostC, wHostIP, vniRed, cToA), portA, forwarded(cToA, macA, 0)},
		{"other uplink", uplink9, tunnelIn(hostC, wHostIP, vniRed, cToA), portA, forwarded(cToA, macA, 0)},
		{"unknown VNI", uplink, tunnelIn(hostC, wHostIP, 0x400, cToA), 0, nil},
		{"VNI with no tunnel here", uplink, tunnelIn(hostC, wHostIP, vniBlue, redToBlue), 0, nil},
		{"another host's IP", uplink, tunnelIn(hostC, "192.168.0.77", vniRed, cToA), 0, nil},
		{"inner not IPv4", uplink, tunnelIn(hostC, wHostIP, vniRed, notIPv4), 0, nil},
		{"inner IPv4 options", uplink, tunnelIn(hostC, wHostIP, vniRed, opts), 0, nil},
	})
}

// TestPipelinePeerSourceCheck: vnet_source_check admits into a VPC's VNI
// only sources of that VPC and of the VPCs peered with it.
func TestPipelinePeerSourceCheck(t *testing.T) {
	ps := newWorld(t)
	to := func(vni uint32, src, dst, dmac string) *frame {
		return tunnelIn(hostC, wHostIP, vni, udpFrame("02:99:00:00:00:01", dmac, src, dst, 9))
	}
	in := func(src string) *frame { return udpFrame("02:99:00:00:00:01", macA, src, redA, 9) }
	green := udpFrame("02:99:00:00:00:01", "02:cc:00:00:00:08", "10.3.0.4", "10.3.0.8", 9)
	ps.run(t, []step{
		{"peer VPC", uplink, to(vniRed, blueC, redA, macA), portA, forwarded(in(blueC), macA, 0)},
		{"own VPC", uplink, to(vniRed, redRemote, redA, macA), portA, forwarded(in(redRemote), macA, 0)},
		{"green into red", uplink, to(vniRed, "10.3.0.4", redA, macA), 0, nil},
		{"outside every prefix", uplink, to(vniRed, "10.20.0.1", redA, macA), 0, nil},
		{"green into green", uplink, tunnelIn(hostC, wHostIP, vniGreen, green), uplink,
			tunnelOut(forwarded(green, "02:cc:00:00:00:08", 1), uplinkMAC, nexthopMAC, "192.168.0.8", vniGreen)},
		{"red into green", uplink, to(vniGreen, redRemote, "10.3.0.8", "02:cc:00:00:00:08"), 0, nil},
		{"blue into green", uplink, to(vniGreen, blueC, "10.3.0.8", "02:cc:00:00:00:08"), 0, nil},
	})
}
