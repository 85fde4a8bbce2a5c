// Command gen writes the packet vectors of vpc_peering.p4 (test/vectors/testdata).
// Entities are built by name through the committed P4Info; frames in and the
// frames expected out are built by this program's own frame builder from
// what vpc_peering.p4 says each table and action does.
package main

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
	"github.com/p4mesh/p4mesh/test/vectors"
)

// The host under test (host A) and its world.
const (
	hostA    = "192.168.0.1"
	hostAMAC = "02:00:00:00:00:01"
	hostB    = "192.168.0.2"
	router   = "02:00:00:00:ff:ff" // underlay next hop
	gw1, gw2 = "192.168.1.1", "192.168.1.2"
	gw1MAC   = "02:00:00:00:01:01"
	gw2MAC   = "02:00:00:00:01:02"

	portA1, portA2, portUplink = 1, 2, 3

	red, blue, green = 0x000100, 0x000200, 0x000300

	a1IP, a1MAC = "10.1.0.1", "02:aa:00:00:00:01"  // red, port 1
	a2IP, a2MAC = "10.1.0.2", "02:aa:00:00:00:02"  // red, port 2
	b1IP, b1MAC = "10.1.0.10", "02:bb:00:00:00:10" // red, on host B
	b2IP, b2MAC = "10.2.0.5", "02:bb:00:00:00:05"  // blue (peered with red), on host B
	g1IP        = "10.3.0.7"                       // green (not peered)

	// A VPN attachment of red on host A's port 4, the on-prem router
	// behind it, and a second attachment of red on host B.
	portAtt            = 4
	attIP, attMAC      = "10.1.0.50", "02:aa:00:00:00:50"
	routerMAC          = "02:ee:00:00:00:01"
	attBIP, attBMAC    = "10.1.0.51", "02:bb:00:00:00:51"
	onPrem, onPremECMP = "172.20.0.0/16", "172.30.0.0/16"
	bcast              = "ff:ff:ff:ff:ff:ff"
	zeroMAC            = "00:00:00:00:00:00"
)

type gen struct {
	s   *p4rt.Schema
	c   *vectors.Case
	err error
}

func (g *gen) fail(err error) {
	if err != nil && g.err == nil {
		g.err = err
	}
}

func (g *gen) add(t p4v1.Update_Type, msg any, err error) {
	g.fail(err)
	if err != nil {
		return
	}
	u, err := p4rt.Update(t, msg)
	g.fail(err)
	if err != nil {
		return
	}
	b, err := protojson.Marshal(u)
	g.fail(err)
	g.c.Updates = append(g.c.Updates, b)
}

func (g *gen) entry(table string, action p4rt.ActionCall, match ...p4rt.Match) {
	te, err := g.s.TableEntry(p4rt.Entry{Table: table, Match: match, Action: &action})
	g.add(p4v1.Update_INSERT, te, err)
}

func (g *gen) member(profile string, id uint32, a p4rt.ActionCall) {
	m, err := g.s.ActionProfileMember(profile, id, a)
	g.add(p4v1.Update_INSERT, m, err)
}

func (g *gen) group(profile string, id uint32, members ...uint32) {
	var ms []p4rt.GroupMember
	for _, m := range members {
		ms = append(ms, p4rt.GroupMember{ID: m, Weight: 1})
	}
	grp, err := g.s.ActionProfileGroup(profile, id, ms, 0)
	g.add(p4v1.Update_INSERT, grp, err)
}

func (g *gen) groupEntry(table string, id uint64, group uint32, field string) {
	te, err := g.s.TableEntry(p4rt.Entry{Table: table, Match: []p4rt.Match{p4rt.Exact(field, p4rt.Uint(id))}, Group: group})
	g.add(p4v1.Update_INSERT, te, err)
}

var (
	U   = func(v uint64) p4rt.Uint { return p4rt.Uint(v) }
	IP  = p4rt.Addr
	MAC = p4rt.HW
)

func encapTo(vni uint64, host, dmac string) p4rt.ActionCall {
	return p4rt.Call("encap_to_host", p4rt.P("dst_vni", U(vni)), p4rt.P("host_ip", IP(host)), p4rt.P("dmac", MAC(dmac)))
}

func toLocal(port uint64, dmac string) p4rt.ActionCall {
	return p4rt.Call("to_local_vm", p4rt.P("port", U(port)), p4rt.P("dmac", MAC(dmac)))
}

// base programs host A: its identity, two red VMs on ports 1 and 2 with
// their source guards, and the underlay route out of port 3.
func (g *gen) base() {
	def, err := g.s.DefaultEntry("local_host", p4rt.Call("set_local_host", p4rt.P("host_ip", IP(hostA)), p4rt.P("host_mac", MAC(hostAMAC))))
	g.add(p4v1.Update_MODIFY, def, err)
	for _, vm := range []struct {
		port    uint64
		ip, mac string
	}{{portA1, a1IP, a1MAC}, {portA2, a2IP, a2MAC}} {
		g.entry("port_vnet", p4rt.Call("set_vnet", p4rt.P("vni", U(red)), p4rt.P("vm_mac", MAC(vm.mac))), p4rt.Exact("ingress_port", U(vm.port)))
		g.entry("vm_source_guard", p4rt.Call("permit"),
			p4rt.Exact("vni", U(red)), p4rt.Exact("ingress_port", U(vm.port)), p4rt.Exact("src_ip", IP(vm.ip)), p4rt.Exact("src_mac", MAC(vm.mac)))
	}
	g.entry("underlay_nexthop", p4rt.Call("set_underlay", p4rt.P("port", U(portUplink)), p4rt.P("smac", MAC(hostAMAC)), p4rt.P("dmac", MAC(router))),
		p4rt.Prefix("dst_ip", netip.MustParsePrefix("192.168.0.0/16")))
}

func (g *gen) step(s vectors.Step) { g.c.Steps = append(g.c.Steps, s) }

func in(port uint16, b []byte) *vectors.Frame {
	return &vectors.Frame{Port: port, Hex: hex.EncodeToString(b)}
}
func out(port uint16, b []byte) []vectors.Frame {
	return []vectors.Frame{{Port: port, Hex: hex.EncodeToString(b)}}
}

func udpFlow(src, dst string, sport, dport uint16) flow {
	return flow{src: src, dst: dst, proto: 17, sport: sport, dport: dport, payload: []byte("p4mesh vector payload")}
}

type caseFn func(g *gen)

var cases = []struct {
	name, desc string
	fn         caseFn
}{
	{"01-arp-proxy", "ARP requests from a VM are answered in the data plane with the target's MAC, out of the ingress port; unknown targets are dropped, never flooded", arpProxy},
	{"02-local-vm", "VM to VM in one VPC on one host: delivered to the other port with the destination MAC set and the TTL decremented once", localVM},
	{"03-encap-same-vpc", "VM to a VM of the same VPC on another host: VXLAN to that host with the VPC's VNI", encapSameVPC},
	{"04-encap-peered", "VM to a VM of a peered VPC: VXLAN straight to the peer's host with the peer VPC's VNI, no proxy", encapPeered},
	{"05-decap-source-check", "VXLAN to this host is decapsulated and delivered when its source is in the VPC or a peer; a non-peered VPC's source and an unknown VNI are dropped", decapSourceCheck},
	{"06-anti-spoofing", "a VM can only send as itself: a foreign source IP, source MAC or port is dropped", antiSpoofing},
	{"07-gateway-pool", "an LPM route to the gateway pool picks a gateway by the crc16 of the 5-tuple and sends a digest; a longer prefix wins", gatewayPool},
	{"08-load-balancer", "a VIP:port picks a backend by the crc16 of the 5-tuple, weights laid out as BMv2 under PI does; pass-through keeps the VIP as the destination", loadBalancer},
	{"09-ttl", "TTL 1 from a VM is dropped; TTL 2 leaves with TTL 1", ttl},
	{"10-table-miss", "no destination and no route, an unknown port, and no underlay route are all drops", tableMiss},
	{"11-packet-io", "packet-out leaves the named port as it is; an ARP punted by arp_proxy reaches the controller as a packet-in", packetIO},
	{"12-route-attachment", "an LPM route whose next hop is an attachment on this host leaves its port with the on-prem router's MAC, from a VM (one hop) and from a tunnel after decap (the sender routed it)", routeAttachment},
	{"13-route-ecmp", "an LPM route over two equal-cost next hops (an attachment here, one on host B) picks one by the crc16 of the 5-tuple, as BMv2 orders a group by member handle", routeECMP},
	{"14-attachment-ingress", "an attachment's port takes the on-prem router's traffic from the prefixes routed out of it (attachment_source_check), and answers its ARP for the attachment's IP", attachmentIngress},
	{"15-pool-path-peer", "the host's pool path as the OHC compiles it: a peer destination without a direct entry goes to a gateway of the peer's pool (crc16 of the 5-tuple) with the peer's VNI and a zero inner MAC, raising the digest (sender's VNI, destination); a direct entry bypasses the pool", poolPathPeer},
	{"16-gateway-role", "a gateway of blue's pool: a tunnel from a host is decapsulated, admitted by vnet_source_check, looked up and re-encapsulated to the destination's host with blue's VNI and the TTL decremented (the gateway is a hop); unadmitted sources, unknown destinations and TTL 1 are dropped", gatewayRole},
}

func main() {
	dir := flag.String("out", "testdata", "directory to write the vectors to")
	flag.Parse()
	info, err := p4.P4Info()
	if err != nil {
		log.Fatal(err)
	}
	s, err := p4rt.NewSchema(info)
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range cases {
		g := &gen{s: s, c: &vectors.Case{Name: c.name, Description: c.desc}}
		g.base()
		c.fn(g)
		if g.err != nil {
			log.Fatalf("%s: %v", c.name, g.err)
		}
		b, err := json.MarshalIndent(g.c, "", "  ")
		if err != nil {
			log.Fatal(err)
		}
		path := filepath.Join(*dir, c.name+".json")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			log.Fatal(err)
		}
		fmt.Println("wrote", path)
	}
}

func arpProxy(g *gen) {
	g.entry("arp_proxy", p4rt.Call("arp_reply", p4rt.P("mac", MAC(a2MAC))), p4rt.Exact("vni", U(red)), p4rt.Exact("target_ip", IP(a2IP)))
	g.step(vectors.Step{
		Comment: "a1 asks for a2",
		In:      in(portA1, cat(eth(bcast, a1MAC, 0x0806), arp(1, a1MAC, a1IP, zeroMAC, a2IP))),
		Out:     out(portA1, cat(eth(a1MAC, a2MAC, 0x0806), arp(2, a2MAC, a2IP, a1MAC, a1IP))),
	})
	g.step(vectors.Step{
		Comment: "a1 asks for an address nobody has: dropped",
		In:      in(portA1, cat(eth(bcast, a1MAC, 0x0806), arp(1, a1MAC, a1IP, zeroMAC, "10.1.0.200"))),
	})
	g.step(vectors.Step{
		Comment: "an ARP reply from a VM is not answered",
		In:      in(portA1, cat(eth(a2MAC, a1MAC, 0x0806), arp(2, a1MAC, a1IP, a2MAC, a2IP))),
	})
}

func localVM(g *gen) {
	g.entry("vnet_destination", toLocal(portA2, a2MAC), p4rt.Exact("vni", U(red)), p4rt.Exact("dst_ip", IP(a2IP)))
	f := udpFlow(a1IP, a2IP, 40000, 53)
	g.step(vectors.Step{
		In:  in(portA1, f.frame(hostAMAC, a1MAC, 64)),
		Out: out(portA2, f.frame(a2MAC, a1MAC, 63)),
	})
	t := flow{src: a1IP, dst: a2IP, proto: 6, sport: 33000, dport: 22, tos: 0x10}
	g.step(vectors.Step{
		Comment: "TCP, with a DSCP: only the MAC and TTL change",
		In:      in(portA1, t.frame(hostAMAC, a1MAC, 64)),
		Out:     out(portA2, t.frame(a2MAC, a1MAC, 63)),
	})
}

func encapSameVPC(g *gen) {
	g.entry("vnet_destination", encapTo(red, hostB, b1MAC), p4rt.Exact("vni", U(red)), p4rt.Exact("dst_ip", IP(b1IP)))
	for _, f := range []flow{udpFlow(a1IP, b1IP, 40000, 53), udpFlow(a1IP, b1IP, 40001, 53)} {
		g.step(vectors.Step{
			Comment: fmt.Sprintf("flow %d: the outer UDP source port follows the flow hash", f.sport),
			In:      in(portA1, f.frame(hostAMAC, a1MAC, 64)),
			Out:     out(portUplink, f.encap(router, hostAMAC, hostA, hostB, red, b1MAC, a1MAC, 63)),
		})
	}
}

func encapPeered(g *gen) {
	g.entry("vnet_destination", encapTo(blue, hostB, b2MAC), p4rt.Exact("vni", U(red)), p4rt.Exact("dst_ip", IP(b2IP)))
	f := flow{src: a1IP, dst: b2IP, proto: 6, sport: 51000, dport: 443, tos: 0x28}
	g.step(vectors.Step{
		In:  in(portA1, f.frame(hostAMAC, a1MAC, 64)),
		Out: out(portUplink, f.encap(router, hostAMAC, hostA, hostB, blue, b2MAC, a1MAC, 63)),
	})
}

func decapSourceCheck(g *gen) {
	g.entry("tunnel_term", p4rt.Call("decap"), p4rt.Exact("dst_ip", IP(hostA)), p4rt.Exact("vni", U(red)))
	g.entry("vnet_source_check", p4rt.Call("permit"), p4rt.Exact("vni", U(red)), p4rt.Prefix("src_ip", netip.MustParsePrefix("10.1.0.0/16")))
	g.entry("vnet_source_check", p4rt.Call("permit"), p4rt.Exact("vni", U(red)), p4rt.Prefix("src_ip", netip.MustParsePrefix("10.2.0.0/16")))
	g.entry("vnet_destination", toLocal(portA1, a1MAC), p4rt.Exact("vni", U(red)), p4rt.Exact("dst_ip", IP(a1IP)))

	fromBlue := udpFlow(b2IP, a1IP, 5000, 6000)
	g.step(vectors.Step{
		Comment: "from the peered VPC: decapsulated, delivered, TTL untouched (the sender's host routed it)",
		In:      in(portUplink, fromBlue.encap(hostAMAC, router, hostB, hostA, red, "02:00:00:00:00:99", b2MAC, 63)),
		Out:     out(portA1, fromBlue.frame(a1MAC, b2MAC, 63)),
	})
	fromRed := udpFlow(b1IP, a1IP, 5001, 6000)
	g.step(vectors.Step{
		Comment: "from the same VPC on host B",
		In:      in(portUplink, fromRed.encap(hostAMAC, router, hostB, hostA, red, a1MAC, b1MAC, 62)),
		Out:     out(portA1, fromRed.frame(a1MAC, b1MAC, 62)),
	})
	fromGreen := udpFlow(g1IP, a1IP, 5000, 6000)
	g.step(vectors.Step{
		Comment: "from green, not peered with red: dropped by vnet_source_check",
		In:      in(portUplink, fromGreen.encap(hostAMAC, router, hostB, hostA, red, a1MAC, "02:cc:00:00:00:07", 63)),
	})
	g.step(vectors.Step{
		Comment: "a VNI this host does not terminate: dropped by tunnel_term",
		In:      in(portUplink, fromBlue.encap(hostAMAC, router, hostB, hostA, green, a1MAC, b2MAC, 63)),
	})
	g.step(vectors.Step{
		Comment: "VXLAN addressed to another host: dropped",
		In:      in(portUplink, fromBlue.encap(hostAMAC, router, hostB, "192.168.0.77", red, a1MAC, b2MAC, 63)),
	})
}

func antiSpoofing(g *gen) {
	g.entry("vnet_destination", encapTo(red, hostB, b1MAC), p4rt.Exact("vni", U(red)), p4rt.Exact("dst_ip", IP(b1IP)))
	ok := udpFlow(a1IP, b1IP, 40000, 53)
	g.step(vectors.Step{
		Comment: "a1 as itself: forwarded",
		In:      in(portA1, ok.frame(hostAMAC, a1MAC, 64)),
		Out:     out(portUplink, ok.encap(router, hostAMAC, hostA, hostB, red, b1MAC, a1MAC, 63)),
	})
	spoofIP := udpFlow("10.1.0.99", b1IP, 40000, 53)
	g.step(vectors.Step{Comment: "a1 with a source IP it does not own", In: in(portA1, spoofIP.frame(hostAMAC, a1MAC, 64))})
	g.step(vectors.Step{Comment: "a1 with a source MAC it does not own", In: in(portA1, ok.frame(hostAMAC, "02:aa:00:00:00:66", 64))})
	asA1 := udpFlow(a1IP, b1IP, 40000, 53)
	g.step(vectors.Step{Comment: "a2 posing as a1 (IP and MAC) from its own port", In: in(portA2, asA1.frame(hostAMAC, a1MAC, 64))})
}

func gatewayPool(g *gen) {
	g.c.Digests = []string{"gateway_digest_t"}
	g.entry("vnet_route", p4rt.Call("to_gateway_pool", p4rt.P("pool_id", U(1))), p4rt.Exact("vni", U(red)), p4rt.Prefix("dst_ip", netip.MustParsePrefix("10.9.0.0/16")))
	g.entry("vnet_route", encapTo(red, hostB, b1MAC), p4rt.Exact("vni", U(red)), p4rt.Prefix("dst_ip", netip.MustParsePrefix("10.9.8.0/24")))
	// Members in ascending id order on a cleared switch: BMv2 orders a
	// group by member handle, which it allocates in insertion order.
	g.member("gateway_selector", 1, encapTo(red, gw1, gw1MAC))
	g.member("gateway_selector", 2, encapTo(red, gw2, gw2MAC))
	g.group("gateway_selector", 10, 1, 2)
	g.groupEntry("gateway_pool", 1, 10, "pool_id")
	g.entry("underlay_nexthop", p4rt.Call("set_underlay", p4rt.P("port", U(portUplink)), p4rt.P("smac", MAC(hostAMAC)), p4rt.P("dmac", MAC(router))),
		p4rt.Prefix("dst_ip", netip.MustParsePrefix("192.168.1.0/24")))

	gws := []struct{ ip, mac string }{{gw1, gw1MAC}, {gw2, gw2MAC}}
	seen := map[int]bool{}
	for i := 1; i <= 6; i++ {
		f := udpFlow(a1IP, fmt.Sprintf("10.9.%d.%d", i, 10+i), uint16(41000+i), 53)
		pick := gws[int(crc16ARC(f.fiveTuple()))%len(gws)]
		seen[int(crc16ARC(f.fiveTuple()))%len(gws)] = true
		g.step(vectors.Step{
			Comment: fmt.Sprintf("flow to %s: gateway %s by crc16 %% 2", f.dst, pick.ip),
			In:      in(portA1, f.frame(hostAMAC, a1MAC, 64)),
			Out:     out(portUplink, f.encap(router, hostAMAC, hostA, pick.ip, red, pick.mac, a1MAC, 63)),
			Digests: []vectors.Digest{{Name: "gateway_digest_t", Members: []string{hexCanon(red, 24), hex.EncodeToString(canonIP(f.dst))}}},
		})
	}
	if len(seen) != 2 {
		g.fail(fmt.Errorf("the flows all pick one gateway; choose flows that exercise both"))
	}
	f := udpFlow(a1IP, "10.9.8.1", 41000, 53)
	g.step(vectors.Step{
		Comment: "10.9.8.0/24 is longer than 10.9.0.0/16: straight to host B, no gateway, no digest",
		In:      in(portA1, f.frame(hostAMAC, a1MAC, 64)),
		Out:     out(portUplink, f.encap(router, hostAMAC, hostA, hostB, red, b1MAC, a1MAC, 63)),
	})
}

func loadBalancer(g *gen) {
	const vip = "10.1.0.100"
	g.entry("lb_frontend", p4rt.Call("to_lb", p4rt.P("lb_id", U(5))),
		p4rt.Exact("vni", U(red)), p4rt.Exact("vip", IP(vip)), p4rt.Exact("protocol", U(6)), p4rt.Exact("l4_port", U(80)))
	g.member("lb_selector", 11, encapTo(red, hostB, b1MAC))
	g.member("lb_selector", 12, toLocal(portA2, a2MAC))
	g.group("lb_selector", 20, 11, 12)
	g.groupEntry("lb_backend", 5, 20, "lb_id")

	seen := map[int]bool{}
	for i := range 6 {
		f := flow{src: a1IP, dst: vip, proto: 6, sport: uint16(50000 + 7*i), dport: 80}
		pick := int(crc16ARC(f.fiveTuple())) % 2
		seen[pick] = true
		s := vectors.Step{In: in(portA1, f.frame(hostAMAC, a1MAC, 64))}
		if pick == 0 {
			s.Comment = fmt.Sprintf("source port %d: backend b1 on host B (VIP kept)", f.sport)
			s.Out = out(portUplink, f.encap(router, hostAMAC, hostA, hostB, red, b1MAC, a1MAC, 63))
		} else {
			s.Comment = fmt.Sprintf("source port %d: backend a2 on this host (VIP kept)", f.sport)
			s.Out = out(portA2, f.frame(a2MAC, a1MAC, 63))
		}
		g.step(s)
	}
	if len(seen) != 2 {
		g.fail(fmt.Errorf("the flows all pick one backend; choose flows that exercise both"))
	}
	// A second VIP port served by a weighted group: b1 with weight 2, a2
	// with 1. PI gives b1 (handle 0) a copy, handle 2 (a2 holds 1), and
	// BMv2 indexes the group by handle: slots b1, a2, b1.
	g.entry("lb_frontend", p4rt.Call("to_lb", p4rt.P("lb_id", U(6))),
		p4rt.Exact("vni", U(red)), p4rt.Exact("vip", IP(vip)), p4rt.Exact("protocol", U(6)), p4rt.Exact("l4_port", U(443)))
	grp, err := g.s.ActionProfileGroup("lb_selector", 21, []p4rt.GroupMember{{ID: 11, Weight: 2}, {ID: 12, Weight: 1}}, 0)
	g.add(p4v1.Update_INSERT, grp, err)
	g.groupEntry("lb_backend", 6, 21, "lb_id")
	slots := []int{0, 1, 0}
	seen = map[int]bool{}
	for i := range 6 {
		f := flow{src: a1IP, dst: vip, proto: 6, sport: uint16(52000 + 11*i), dport: 443}
		pick := slots[int(crc16ARC(f.fiveTuple()))%len(slots)]
		seen[pick] = true
		s := vectors.Step{In: in(portA1, f.frame(hostAMAC, a1MAC, 64))}
		if pick == 0 {
			s.Comment = fmt.Sprintf("weighted, source port %d: b1 (slot %d of b1, a2, b1)", f.sport, int(crc16ARC(f.fiveTuple()))%3)
			s.Out = out(portUplink, f.encap(router, hostAMAC, hostA, hostB, red, b1MAC, a1MAC, 63))
		} else {
			s.Comment = fmt.Sprintf("weighted, source port %d: a2 (slot 1 of b1, a2, b1)", f.sport)
			s.Out = out(portA2, f.frame(a2MAC, a1MAC, 63))
		}
		g.step(s)
	}
	if len(seen) != 2 {
		g.fail(fmt.Errorf("the weighted flows all pick one backend; choose flows that exercise both"))
	}
	other := flow{src: a1IP, dst: vip, proto: 6, sport: 50000, dport: 8080}
	g.step(vectors.Step{Comment: "the VIP on a port it does not serve: no destination, no route, dropped", In: in(portA1, other.frame(hostAMAC, a1MAC, 64))})
}

func ttl(g *gen) {
	g.entry("vnet_destination", encapTo(red, hostB, b1MAC), p4rt.Exact("vni", U(red)), p4rt.Exact("dst_ip", IP(b1IP)))
	f := udpFlow(a1IP, b1IP, 40000, 53)
	g.step(vectors.Step{Comment: "TTL 1 expires here", In: in(portA1, f.frame(hostAMAC, a1MAC, 1))})
	g.step(vectors.Step{Comment: "TTL 0 too", In: in(portA1, f.frame(hostAMAC, a1MAC, 0))})
	g.step(vectors.Step{
		Comment: "TTL 2 leaves with 1",
		In:      in(portA1, f.frame(hostAMAC, a1MAC, 2)),
		Out:     out(portUplink, f.encap(router, hostAMAC, hostA, hostB, red, b1MAC, a1MAC, 1)),
	})
}

func tableMiss(g *gen) {
	g.entry("vnet_destination", encapTo(red, "172.16.0.1", b1MAC), p4rt.Exact("vni", U(red)), p4rt.Exact("dst_ip", IP(b1IP)))
	f := udpFlow(a1IP, "10.1.0.77", 40000, 53)
	g.step(vectors.Step{Comment: "no vnet_destination and no vnet_route entry", In: in(portA1, f.frame(hostAMAC, a1MAC, 64))})
	g.step(vectors.Step{Comment: "a port without a port_vnet entry", In: in(4, f.frame(hostAMAC, a1MAC, 64))})
	toB1 := udpFlow(a1IP, b1IP, 40000, 53)
	g.step(vectors.Step{Comment: "no underlay route to 172.16.0.1", In: in(portA1, toB1.frame(hostAMAC, a1MAC, 64))})
	g.step(vectors.Step{Comment: "IPv6 from a VM", In: in(portA1, cat(eth(hostAMAC, a1MAC, 0x86dd), make([]byte, 40)))})
	g.step(vectors.Step{Comment: "IPv4 cut short inside its header", In: in(portA1, f.frame(hostAMAC, a1MAC, 64)[:22])})
}

func packetIO(g *gen) {
	g.entry("arp_proxy", p4rt.Call("send_to_cpu"), p4rt.Exact("vni", U(red)), p4rt.Exact("target_ip", IP("10.1.0.254")))
	req := cat(eth(bcast, a1MAC, 0x0806), arp(1, a1MAC, a1IP, zeroMAC, "10.1.0.254"))
	g.step(vectors.Step{
		Comment:  "arp_proxy punts 10.1.0.254 to the controller with its ingress port",
		In:       in(portA1, req),
		PacketIn: &vectors.PacketIn{IngressPort: portA1, Hex: hex.EncodeToString(req)},
	})
	frame := cat(eth(a2MAC, hostAMAC, 0x0806), arp(2, hostAMAC, "10.1.0.254", a2MAC, a2IP))
	g.step(vectors.Step{
		Comment:   "the controller's frame leaves port 2 untouched",
		PacketOut: &vectors.PacketOut{EgressPort: portA2, Hex: hex.EncodeToString(frame)},
		Out:       out(portA2, frame),
	})
}

func canonIP(s string) []byte {
	b := ip4(s)
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

func hexCanon(v uint64, width int) string {
	b, err := p4rt.EncodeUint(v, width)
	if err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// attachment programs red's VPN attachment on port 4, as the OHC does: an
// attachment port of red whose router may send from the on-prem prefix.
func (g *gen) attachment() {
	g.entry("port_vnet", p4rt.Call("set_attachment", p4rt.P("vni", U(red)), p4rt.P("router_mac", MAC(routerMAC))), p4rt.Exact("ingress_port", U(portAtt)))
	g.entry("attachment_source_check", p4rt.Call("permit"),
		p4rt.Exact("ingress_port", U(portAtt)), p4rt.Prefix("src_ip", netip.MustParsePrefix(onPrem)))
}

func attachmentIngress(g *gen) {
	g.attachment()
	g.entry("arp_proxy", p4rt.Call("arp_reply", p4rt.P("mac", MAC(attMAC))), p4rt.Exact("vni", U(red)), p4rt.Exact("target_ip", IP(attIP)))
	g.entry("vnet_destination", toLocal(portA1, a1MAC), p4rt.Exact("vni", U(red)), p4rt.Exact("dst_ip", IP(a1IP)))
	g.entry("vnet_destination", encapTo(red, hostB, b1MAC), p4rt.Exact("vni", U(red)), p4rt.Exact("dst_ip", IP(b1IP)))
	g.step(vectors.Step{
		Comment: "the router asks for the attachment's VPC-side IP, its BGP next hop: answered to the router's MAC",
		In:      in(portAtt, cat(eth(bcast, routerMAC, 0x0806), arp(1, routerMAC, "172.20.0.1", zeroMAC, attIP))),
		Out:     out(portAtt, cat(eth(routerMAC, attMAC, 0x0806), arp(2, attMAC, attIP, routerMAC, "172.20.0.1"))),
	})
	f := udpFlow("172.20.1.5", a1IP, 53, 40000)
	g.step(vectors.Step{
		Comment: "from an on-prem host to a1: admitted by attachment_source_check, delivered, TTL decremented",
		In:      in(portAtt, f.frame(attMAC, routerMAC, 64)),
		Out:     out(portA1, f.frame(a1MAC, routerMAC, 63)),
	})
	tb := flow{src: "172.20.200.9", dst: b1IP, proto: 6, sport: 179, dport: 33000}
	g.step(vectors.Step{
		Comment: "from an on-prem host to b1 on host B: tunnelled",
		In:      in(portAtt, tb.frame(attMAC, routerMAC, 64)),
		Out:     out(portUplink, tb.encap(router, hostAMAC, hostA, hostB, red, b1MAC, routerMAC, 63)),
	})
	g.step(vectors.Step{
		Comment: "a source outside the prefixes routed out of the attachment: dropped",
		In:      in(portAtt, udpFlow("172.21.0.1", a1IP, 53, 40000).frame(attMAC, routerMAC, 64)),
	})
	g.step(vectors.Step{
		Comment: "a source that is the VPC's own: dropped too (no anti-spoofing hole)",
		In:      in(portAtt, udpFlow(a2IP, a1IP, 53, 40000).frame(attMAC, routerMAC, 64)),
	})
}

func routeAttachment(g *gen) {
	g.attachment()
	g.entry("vnet_route", toLocal(portAtt, routerMAC), p4rt.Exact("vni", U(red)), p4rt.Prefix("dst_ip", netip.MustParsePrefix(onPrem)))
	g.entry("vnet_route", encapTo(red, hostB, attBMAC), p4rt.Exact("vni", U(red)), p4rt.Prefix("dst_ip", netip.MustParsePrefix("172.20.9.0/24")))
	g.entry("tunnel_term", p4rt.Call("decap"), p4rt.Exact("dst_ip", IP(hostA)), p4rt.Exact("vni", U(red)))
	g.entry("vnet_source_check", p4rt.Call("permit"), p4rt.Exact("vni", U(red)), p4rt.Prefix("src_ip", netip.MustParsePrefix("10.1.0.0/16")))

	f := udpFlow(a1IP, "172.20.1.5", 40000, 53)
	g.step(vectors.Step{
		Comment: "a1 to an on-prem address: out of the attachment's port to the router's MAC, TTL decremented",
		In:      in(portA1, f.frame(hostAMAC, a1MAC, 64)),
		Out:     out(portAtt, f.frame(routerMAC, a1MAC, 63)),
	})
	t := flow{src: a1IP, dst: "172.20.200.1", proto: 6, sport: 33000, dport: 179, tos: 0x10}
	g.step(vectors.Step{
		Comment: "TCP: only the destination MAC and the TTL change",
		In:      in(portA1, t.frame(hostAMAC, a1MAC, 64)),
		Out:     out(portAtt, t.frame(routerMAC, a1MAC, 63)),
	})
	fromB := udpFlow(b1IP, "172.20.3.4", 5000, 6000)
	g.step(vectors.Step{
		Comment: "b1 on host B, tunnelled here by its host's route: decapsulated, then routed by vnet_route out of the attachment, TTL untouched",
		In:      in(portUplink, fromB.encap(hostAMAC, router, hostB, hostA, red, attMAC, b1MAC, 63)),
		Out:     out(portAtt, fromB.frame(routerMAC, b1MAC, 63)),
	})
	longer := udpFlow(a1IP, "172.20.9.9", 40000, 53)
	g.step(vectors.Step{
		Comment: "172.20.9.0/24 is longer than 172.20.0.0/16: to the attachment on host B instead",
		In:      in(portA1, longer.frame(hostAMAC, a1MAC, 64)),
		Out:     out(portUplink, longer.encap(router, hostAMAC, hostA, hostB, red, attBMAC, a1MAC, 63)),
	})
	g.step(vectors.Step{
		Comment: "an on-prem address outside every route: dropped",
		In:      in(portA1, udpFlow(a1IP, "172.21.0.1", 40000, 53).frame(hostAMAC, a1MAC, 64)),
	})
}

func routeECMP(g *gen) {
	g.attachment()
	g.entry("vnet_route", p4rt.Call("to_route_group", p4rt.P("group_id", U(7))),
		p4rt.Exact("vni", U(red)), p4rt.Prefix("dst_ip", netip.MustParsePrefix(onPremECMP)))
	// Members in ascending id order on a cleared switch, as for the
	// gateway pool: slot 0 is the attachment here, slot 1 the one on host B.
	g.member("route_selector", 1, toLocal(portAtt, routerMAC))
	g.member("route_selector", 2, encapTo(red, hostB, attBMAC))
	g.group("route_selector", 70, 1, 2)
	g.groupEntry("route_ecmp", 7, 70, "group_id")
	g.entry("vnet_route", p4rt.Call("to_route_group", p4rt.P("group_id", U(8))),
		p4rt.Exact("vni", U(red)), p4rt.Prefix("dst_ip", netip.MustParsePrefix("172.31.0.0/16")))

	seen := map[int]bool{}
	for i := range 6 {
		f := udpFlow(a1IP, fmt.Sprintf("172.30.%d.%d", i, 20+i), uint16(42000+13*i), 443)
		pick := int(crc16ARC(f.fiveTuple())) % 2
		seen[pick] = true
		s := vectors.Step{In: in(portA1, f.frame(hostAMAC, a1MAC, 64))}
		if pick == 0 {
			s.Comment = fmt.Sprintf("flow to %s: crc16 %% 2 = 0, the attachment on this host", f.dst)
			s.Out = out(portAtt, f.frame(routerMAC, a1MAC, 63))
		} else {
			s.Comment = fmt.Sprintf("flow to %s: crc16 %% 2 = 1, the attachment on host B", f.dst)
			s.Out = out(portUplink, f.encap(router, hostAMAC, hostA, hostB, red, attBMAC, a1MAC, 63))
		}
		g.step(s)
	}
	if len(seen) != 2 {
		g.fail(fmt.Errorf("the flows all pick one next hop; choose flows that exercise both"))
	}
	g.step(vectors.Step{
		Comment: "a group id with no route_ecmp entry: dropped",
		In:      in(portA1, udpFlow(a1IP, "172.31.0.1", 40000, 53).frame(hostAMAC, a1MAC, 64)),
	})
}

// poolPathPeer is host A's pool path to blue as the OHC writes it (see
// ohc.Compile): vnet_route(red, blue's export) -> to_gateway_pool, the
// pool's group with a member per gateway encapsulating with blue's VNI and
// a zero inner MAC (the gateway sets the real one), and a direct entry for
// one of blue's addresses, as after promotion.
func poolPathPeer(g *gen) {
	g.c.Digests = []string{"gateway_digest_t"}
	g.entry("vnet_route", p4rt.Call("to_gateway_pool", p4rt.P("pool_id", U(7))), p4rt.Exact("vni", U(red)), p4rt.Prefix("dst_ip", netip.MustParsePrefix("10.2.0.0/16")))
	g.member("gateway_selector", 1, encapTo(blue, gw1, zeroMAC))
	g.member("gateway_selector", 2, encapTo(blue, gw2, zeroMAC))
	g.group("gateway_selector", 7, 1, 2)
	g.groupEntry("gateway_pool", 7, 7, "pool_id")
	g.entry("vnet_destination", encapTo(blue, hostB, b2MAC), p4rt.Exact("vni", U(red)), p4rt.Exact("dst_ip", IP(b2IP)))

	gws := []string{gw1, gw2}
	seen := map[int]bool{}
	for i := 1; i <= 6; i++ {
		f := udpFlow(a1IP, fmt.Sprintf("10.2.%d.%d", i, 20+i), uint16(43000+i), 8080)
		pick := int(crc16ARC(f.fiveTuple())) % len(gws)
		seen[pick] = true
		g.step(vectors.Step{
			Comment: fmt.Sprintf("flow to %s, no direct entry: gateway %s by crc16 %% 2, blue's VNI, digest (red, dst)", f.dst, gws[pick]),
			In:      in(portA1, f.frame(hostAMAC, a1MAC, 64)),
			Out:     out(portUplink, f.encap(router, hostAMAC, hostA, gws[pick], blue, zeroMAC, a1MAC, 63)),
			Digests: []vectors.Digest{{Name: "gateway_digest_t", Members: []string{hexCanon(red, 24), hex.EncodeToString(canonIP(f.dst))}}},
		})
	}
	if len(seen) != 2 {
		g.fail(fmt.Errorf("the flows all pick one gateway; choose flows that exercise both"))
	}
	f := udpFlow(a1IP, b2IP, 43000, 8080)
	g.step(vectors.Step{
		Comment: "a destination with a direct entry: straight to its host, no gateway, no digest",
		In:      in(portA1, f.frame(hostAMAC, a1MAC, 64)),
		Out:     out(portUplink, f.encap(router, hostAMAC, hostA, hostB, blue, b2MAC, a1MAC, 63)),
	})
	g.step(vectors.Step{
		Comment: "green is not peered: no route, no pool, dropped without a digest",
		In:      in(portA1, udpFlow(a1IP, g1IP, 43000, 8080).frame(hostAMAC, a1MAC, 64)),
	})
}

// gatewayRole plays host A as a gateway of blue's pool (a duty, no VM of
// blue here), as the OHC programs it: tunnels with blue's VNI terminate
// here, blue admits its own subnet and red's export, and every endpoint of
// blue has a destination on its host.
func gatewayRole(g *gen) {
	const (
		hostC    = "192.168.0.3"
		redSrc   = "10.1.0.20"
		redMAC   = "02:aa:00:00:00:20"
		b3IP     = "10.2.0.6"
		b3MAC    = "02:cc:00:00:00:06"
		greenMAC = "02:cc:00:00:00:07"
	)
	// No digest is enabled: the gateway path raises none (only a
	// host's to_gateway_pool does), and a case with a digest would not
	// run on targets without one (p4/pna).
	g.entry("tunnel_term", p4rt.Call("decap"), p4rt.Exact("dst_ip", IP(hostA)), p4rt.Exact("vni", U(blue)))
	g.entry("vnet_source_check", p4rt.Call("permit"), p4rt.Exact("vni", U(blue)), p4rt.Prefix("src_ip", netip.MustParsePrefix("10.2.0.0/16")))
	g.entry("vnet_source_check", p4rt.Call("permit"), p4rt.Exact("vni", U(blue)), p4rt.Prefix("src_ip", netip.MustParsePrefix("10.1.0.0/16")))
	g.entry("vnet_destination", encapTo(blue, hostB, b2MAC), p4rt.Exact("vni", U(blue)), p4rt.Exact("dst_ip", IP(b2IP)))
	g.entry("vnet_destination", encapTo(blue, hostC, b3MAC), p4rt.Exact("vni", U(blue)), p4rt.Exact("dst_ip", IP(b3IP)))

	f := udpFlow(redSrc, b2IP, 43001, 8080)
	g.step(vectors.Step{
		Comment: "red's VM on host C through the pool: decapsulated, re-encapsulated to host B with blue's VNI and b2's MAC, TTL 63 -> 62",
		In:      in(portUplink, f.encap(hostAMAC, router, hostC, hostA, blue, zeroMAC, redMAC, 63)),
		Out:     out(portUplink, f.encap(router, hostAMAC, hostA, hostB, blue, b2MAC, redMAC, 62)),
	})
	t := flow{src: redSrc, dst: b3IP, proto: 6, sport: 33000, dport: 443, tos: 0x28}
	g.step(vectors.Step{
		Comment: "TCP with a DSCP to b3 on host C, the sender's own host: a tunnel back to it",
		In:      in(portUplink, t.encap(hostAMAC, router, hostC, hostA, blue, zeroMAC, redMAC, 60)),
		Out:     out(portUplink, t.encap(router, hostAMAC, hostA, hostC, blue, b3MAC, redMAC, 59)),
	})
	g.step(vectors.Step{
		Comment: "from green, not peered with blue: dropped by vnet_source_check",
		In:      in(portUplink, udpFlow(g1IP, b2IP, 43001, 8080).encap(hostAMAC, router, hostC, hostA, blue, zeroMAC, greenMAC, 63)),
	})
	g.step(vectors.Step{
		Comment: "a destination blue does not have: dropped (vnet_route's default)",
		In:      in(portUplink, udpFlow(redSrc, "10.2.0.77", 43001, 8080).encap(hostAMAC, router, hostC, hostA, blue, zeroMAC, redMAC, 63)),
	})
	g.step(vectors.Step{
		Comment: "TTL 1 expires at the gateway",
		In:      in(portUplink, f.encap(hostAMAC, router, hostC, hostA, blue, zeroMAC, redMAC, 1)),
	})
	g.step(vectors.Step{
		Comment: "red's VNI: this gateway serves blue only, dropped by tunnel_term",
		In:      in(portUplink, f.encap(hostAMAC, router, hostC, hostA, red, zeroMAC, redMAC, 63)),
	})
}
