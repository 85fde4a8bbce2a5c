package main

import (
	"github.com/p4mesh/p4mesh/p4rt"
	"github.com/p4mesh/p4mesh/test/vectors"
)

// The VLAN case lives in a file of its own, appended to cases, so vectors
// added elsewhere merge cleanly.
func init() {
	cases = append(cases, struct {
		name, desc string
		fn         caseFn
	}{"20-vlan-tagged", "802.1Q-tagged frames are dropped: vpc_peering.p4 parses no VLAN tag, so a tagged IPv4 or ARP frame has no IPv4 or ARP header (BMv2 drops them too); the same frames untagged are forwarded and answered", vlanTagged})
}

// tagged inserts an 802.1Q tag (TPID 0x8100, TCI tci) after the MACs of f.
func tagged(f []byte, tci uint16) []byte {
	return cat(f[:12], be16(0x8100), be16(tci), f[12:])
}

func vlanTagged(g *gen) {
	g.entry("vnet_destination", toLocal(portA2, a2MAC), p4rt.Exact("vni", U(red)), p4rt.Exact("dst_ip", IP(a2IP)))
	g.entry("arp_proxy", p4rt.Call("arp_reply", p4rt.P("mac", MAC(a2MAC))), p4rt.Exact("vni", U(red)), p4rt.Exact("target_ip", IP(a2IP)))
	f := udpFlow(a1IP, a2IP, 40000, 53)
	g.step(vectors.Step{
		Comment: "untagged: a1 to a2 is delivered",
		In:      in(portA1, f.frame(hostAMAC, a1MAC, 64)),
		Out:     out(portA2, f.frame(a2MAC, a1MAC, 63)),
	})
	g.step(vectors.Step{
		Comment: "the same frame tagged VLAN 100: dropped, not forwarded with the tag removed",
		In:      in(portA1, tagged(f.frame(hostAMAC, a1MAC, 64), 100)),
	})
	g.step(vectors.Step{
		Comment: "priority-tagged (VLAN 0, PCP 5): still a tag, dropped",
		In:      in(portA1, tagged(f.frame(hostAMAC, a1MAC, 64), 5<<13)),
	})
	g.step(vectors.Step{
		Comment: "a tagged ARP request for a2: not answered",
		In:      in(portA1, tagged(cat(eth(bcast, a1MAC, 0x0806), arp(1, a1MAC, a1IP, zeroMAC, a2IP)), 100)),
	})
	g.step(vectors.Step{
		Comment: "untagged, the same ARP request is answered",
		In:      in(portA1, cat(eth(bcast, a1MAC, 0x0806), arp(1, a1MAC, a1IP, zeroMAC, a2IP))),
		Out:     out(portA1, cat(eth(a1MAC, a2MAC, 0x0806), arp(2, a2MAC, a2IP, a1MAC, a1IP))),
	})
}
