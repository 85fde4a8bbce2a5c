package dataplane

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/p4"
	"github.com/p4mesh/p4mesh/p4rt"
)

// The world the pipeline table tests run in, seen from this host
// (192.168.0.1). Red (VNI 0x100, 10.1.0.0/16) is peered with blue (0x200,
// 10.2.0.0/16); green (0x300, 10.3.0.0/16) is peered with nobody.
const (
	wHostIP  = "192.168.0.1"
	wHostMAC = "02:00:00:00:00:01"

	vniRed, vniBlue, vniGreen = 0x100, 0x200, 0x300

	// Red VMs on this host: A on port 1, B on port 2.
	redA, macA = "10.1.0.1", "02:aa:00:00:00:01"
	redB, macB = "10.1.0.2", "02:aa:00:00:00:02"
	portA      = 1
	portB      = 2
	// A blue VM on host 192.168.0.2.
	blueC, macC, hostC = "10.2.0.5", "02:bb:00:00:00:05", "192.168.0.2"
	// A red VM on another host, as a tunnel source.
	redRemote = "10.1.0.9"

	// Uplinks: 192.168.0.0/16 through port 3, 192.168.9.0/24 through port 4.
	uplink, uplinkMAC, nexthopMAC = 3, wHostMAC, "02:00:00:00:ff:ff"
	uplink9, uplink9MAC, nexthop9 = 4, "02:00:00:00:00:04", "02:00:00:00:ff:04"
	// A VM port with an explicit drop entry (a disabled VM), and a port
	// port_vnet knows nothing about.
	portDisabled, portUnknown = 5, 6

	// Load balancer VIPs in red: lb 1 has backends, lb 2 none.
	vip, vipNoBackend = "10.1.100.1", "10.1.100.2"
	// lb 1's backends: blue C, red B, and this one.
	lbHost3, lbMAC3 = "192.168.0.10", "02:bb:00:00:00:0a"
	// A MAC no table writes, as the dst of a VM's frame: the pipeline
	// must replace it.
	gwMAC = "02:00:00:00:00:fe"
)

// world programs the pipeline with one entry or more for each decision of
// every table, through the P4Runtime server.
func (ps *pipelineSwitch) world() {
	ps.t.Helper()
	U, IP, MAC := func(v uint64) p4rt.Uint { return p4rt.Uint(v) }, p4rt.Addr, p4rt.HW
	pfx := netip.MustParsePrefix
	encapTo := func(vni uint64, host, dmac string) p4rt.ActionCall {
		return p4rt.Call("encap_to_host", p4rt.P("dst_vni", U(vni)), p4rt.P("host_ip", IP(host)), p4rt.P("dmac", MAC(dmac)))
	}
	toVM := func(port uint64, dmac string) p4rt.ActionCall {
		return p4rt.Call("to_local_vm", p4rt.P("port", U(port)), p4rt.P("dmac", MAC(dmac)))
	}
	vni := func(v uint64) p4rt.Match { return p4rt.Exact("vni", U(v)) }

	def, err := ps.s.DefaultEntry("local_host", p4rt.Call("set_local_host", p4rt.P("host_ip", IP(wHostIP)), p4rt.P("host_mac", MAC(wHostMAC))))
	ps.write(p4v1.Update_MODIFY, def, err)

	ps.entry("port_vnet", p4rt.Call("set_vnet", p4rt.P("vni", U(vniRed)), p4rt.P("vm_mac", MAC(macA))), p4rt.Exact("ingress_port", U(portA)))
	ps.entry("port_vnet", p4rt.Call("set_vnet", p4rt.P("vni", U(vniRed)), p4rt.P("vm_mac", MAC(macB))), p4rt.Exact("ingress_port", U(portB)))
	ps.entry("port_vnet", p4rt.Call("drop"), p4rt.Exact("ingress_port", U(portDisabled)))

	for _, vm := range []struct {
		port    uint64
		ip, mac string
		vni     uint64
	}{{portA, redA, macA, vniRed}, {portB, redB, macB, vniRed}} {
		ps.entry("vm_source_guard", p4rt.Call("permit"), vni(vm.vni), p4rt.Exact("ingress_port", U(vm.port)),
			p4rt.Exact("src_ip", IP(vm.ip)), p4rt.Exact("src_mac", MAC(vm.mac)))
	}

	ps.entry("arp_proxy", p4rt.Call("arp_reply", p4rt.P("mac", MAC(macB))), vni(vniRed), p4rt.Exact("target_ip", IP(redB)))
	ps.entry("arp_proxy", p4rt.Call("arp_reply", p4rt.P("mac", MAC(macC))), vni(vniRed), p4rt.Exact("target_ip", IP(blueC)))
	ps.entry("arp_proxy", p4rt.Call("send_to_cpu"), vni(vniRed), p4rt.Exact("target_ip", IP("10.1.0.99")))

	// Red and green have VMs here; blue has none, so no tunnel ends here
	// for it, although its source check and a destination are installed
	// (as on a gateway): only tunnel_term keeps blue's VNI out.
	ps.entry("tunnel_term", p4rt.Call("decap"), p4rt.Exact("dst_ip", IP(wHostIP)), vni(vniRed))
	ps.entry("tunnel_term", p4rt.Call("decap"), p4rt.Exact("dst_ip", IP(wHostIP)), vni(vniGreen))
	ps.entry("vnet_source_check", p4rt.Call("permit"), vni(vniRed), p4rt.Prefix("src_ip", pfx("10.1.0.0/16")))
	ps.entry("vnet_source_check", p4rt.Call("permit"), vni(vniRed), p4rt.Prefix("src_ip", pfx("10.2.0.0/16")))
	ps.entry("vnet_source_check", p4rt.Call("permit"), vni(vniGreen), p4rt.Prefix("src_ip", pfx("10.3.0.0/16")))
	ps.entry("vnet_source_check", p4rt.Call("permit"), vni(vniBlue), p4rt.Prefix("src_ip", pfx("10.1.0.0/16")))
	ps.entry("vnet_source_check", p4rt.Call("permit"), vni(vniBlue), p4rt.Prefix("src_ip", pfx("10.2.0.0/16")))

	dst := func(v uint64, ip string, a p4rt.ActionCall) {
		ps.entry("vnet_destination", a, vni(v), p4rt.Exact("dst_ip", IP(ip)))
	}
	dst(vniRed, redA, toVM(portA, macA))
	dst(vniRed, redB, toVM(portB, macB))
	dst(vniRed, blueC, encapTo(vniBlue, hostC, macC))
	dst(vniRed, "10.2.0.7", encapTo(vniBlue, "192.168.9.7", "02:bb:00:00:00:07"))
	dst(vniRed, "10.2.0.8", encapTo(vniBlue, "172.16.0.1", "02:bb:00:00:00:08")) // no underlay route
	dst(vniRed, vip, encapTo(vniRed, "192.168.0.6", "02:aa:00:00:00:06"))        // the VIP off its LB port
	dst(vniBlue, blueC, encapTo(vniBlue, hostC, macC))
	dst(vniGreen, "10.3.0.8", encapTo(vniGreen, "192.168.0.8", "02:cc:00:00:00:08"))

	route := func(p string, a p4rt.ActionCall) {
		ps.entry("vnet_route", a, vni(vniRed), p4rt.Prefix("dst_ip", pfx(p)))
	}
	route("10.2.0.0/16", encapTo(vniBlue, "192.168.0.3", "00:00:00:00:00:00"))
	route("10.2.1.0/24", encapTo(vniBlue, "192.168.0.4", "00:00:00:00:00:00"))
	route("10.2.2.0/24", p4rt.Call("drop"))
	route("10.9.0.0/16", p4rt.Call("to_gateway_pool", p4rt.P("pool_id", U(7))))
	route("10.8.0.0/16", p4rt.Call("to_gateway_pool", p4rt.P("pool_id", U(8)))) // no pool 8

	ps.member("gateway_selector", 1, encapTo(vniRed, "192.168.0.9", "00:00:00:00:00:00"))
	ps.indirect(p4rt.Entry{Table: "gateway_pool", Member: 1, Match: []p4rt.Match{p4rt.Exact("pool_id", U(7))}})

	lb := func(ip string, id uint64) {
		ps.entry("lb_frontend", p4rt.Call("to_lb", p4rt.P("lb_id", U(id))), vni(vniRed), p4rt.Exact("vip", IP(ip)),
			p4rt.Exact("protocol", U(protoTCP)), p4rt.Exact("l4_port", U(80)))
	}
	lb(vip, 1)
	lb(vipNoBackend, 2)
	// Member n takes BMv2 member handle n-1: slot hash%3. Three, not two:
	// crc16 is linear, so with a power-of-two group a change of the
	// selector fields (a swap of source and destination) can keep every
	// flow on its member.
	ps.member("lb_selector", 1, encapTo(vniBlue, hostC, macC))
	ps.member("lb_selector", 2, toVM(portB, macB))
	ps.member("lb_selector", 3, encapTo(vniBlue, lbHost3, lbMAC3))
	g, err := ps.s.ActionProfileGroup("lb_selector", 1, []p4rt.GroupMember{{ID: 1, Weight: 1}, {ID: 2, Weight: 1}, {ID: 3, Weight: 1}}, 0)
	ps.write(p4v1.Update_INSERT, g, err)
	ps.indirect(p4rt.Entry{Table: "lb_backend", Group: 1, Match: []p4rt.Match{p4rt.Exact("lb_id", U(1))}})

	nh := func(p string, port uint64, smac, dmac string) {
		ps.entry("underlay_nexthop", p4rt.Call("set_underlay", p4rt.P("port", U(port)), p4rt.P("smac", MAC(smac)), p4rt.P("dmac", MAC(dmac))),
			p4rt.Prefix("dst_ip", pfx(p)))
	}
	nh("192.168.0.0/16", uplink, uplinkMAC, nexthopMAC)
	nh("192.168.9.0/24", uplink9, uplink9MAC, nexthop9)
}

func newWorld(t *testing.T) *pipelineSwitch {
	t.Helper()
	ps := newPipelineSwitch(t)
	ps.world()
	return ps
}

// newWorldSwitch is a Switch on in-memory ports (A, B and both uplinks)
// with the world programmed, for what the switch counts around the
// pipeline.
func newWorldSwitch(t *testing.T) (*Switch, map[uint16]*MemPort) {
	t.Helper()
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	ports, pp := map[uint16]*MemPort{}, map[uint16]Port{}
	for _, n := range []uint16{portA, portB, uplink, uplink9} {
		ports[n] = NewMemPort(8)
		pp[n] = ports[n]
	}
	sw, err := NewSwitch(SwitchOptions{Server: Options{P4Info: info}, Ports: pp})
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.Server().Commit(&p4v1.ForwardingPipelineConfig{P4Info: info}); err != nil {
		t.Fatal(err)
	}
	s, err := p4rt.NewSchema(info)
	if err != nil {
		t.Fatal(err)
	}
	ps := &pipelineSwitch{srv: sw.Server(), pipe: sw.Pipeline(), s: s, t: t}
	ps.world()
	return sw, ports
}

func (ps *pipelineSwitch) member(profile string, id uint32, a p4rt.ActionCall) {
	ps.t.Helper()
	m, err := ps.s.ActionProfileMember(profile, id, a)
	ps.write(p4v1.Update_INSERT, m, err)
}

// indirect inserts an entry of a selector table, naming a member or group.
func (ps *pipelineSwitch) indirect(e p4rt.Entry) {
	ps.t.Helper()
	te, err := ps.s.TableEntry(e)
	ps.write(p4v1.Update_INSERT, te, err)
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// udpFrame is a UDP packet from src to dst, sent by smac to dmac.
func udpFrame(smac, dmac, src, dst string, ttl uint8) *frame {
	return &frame{Dst: dmac, Src: smac, IP: &ipHdr{Src: addr(src), Dst: addr(dst), TOS: 0x28, TTL: ttl, ID: 7,
		Proto: protoUDP, SrcPort: 4000, DstPort: 53, Payload: "p4mesh udp"}}
}

// tcpFrame is a TCP segment from src:sport to dst:dport.
func tcpFrame(smac, dmac, src, dst string, sport, dport uint16) *frame {
	return &frame{Dst: dmac, Src: smac, IP: &ipHdr{Src: addr(src), Dst: addr(dst), TTL: 64, ID: 9,
		Proto: protoTCP, SrcPort: sport, DstPort: dport, Payload: "p4mesh tcp"}}
}

// fromA is VM A's UDP packet to dst.
func fromA(dst string) *frame { return udpFrame(macA, gwMAC, redA, dst, 64) }

// withTTL is f with the IPv4 TTL set.
func withTTL(f *frame, ttl uint8) *frame { f.IP.TTL = ttl; return f }

// arpRequest is VM A asking who has tpa.
func arpRequest(tpa string) *frame {
	return &frame{Dst: "ff:ff:ff:ff:ff:ff", Src: macA, ARP: &arpHdr{Op: 1, SHA: macA, SPA: addr(redA), THA: "00:00:00:00:00:00", TPA: addr(tpa)}}
}

// tunnelIn is inner in VXLAN from host src to host dst with VNI vni, as it
// arrives on an uplink.
func tunnelIn(src, dst string, vni uint32, inner *frame) *frame {
	return &frame{Dst: wHostMAC, Src: nexthopMAC, IP: &ipHdr{Src: addr(src), Dst: addr(dst), TTL: 62, Proto: protoUDP,
		SrcPort: 50000, VNI: vni, Inner: inner}}
}

// forwarded is f as the pipeline delivers it: the destination MAC the table
// gave, and hops fewer TTL.
func forwarded(f *frame, dmac string, hops uint8) *frame {
	c := cloneFrame(f)
	c.Dst = dmac
	c.IP.TTL -= hops
	return c
}

// tunnelOut is inner encapsulated by this host to host with VNI vni, the
// outer MACs set_underlay gave: what encap_to_host and underlay_nexthop
// build.
func tunnelOut(inner *frame, smac, dmac, host string, vni uint32) *frame {
	return &frame{Dst: dmac, Src: smac, IP: &ipHdr{Src: addr(wHostIP), Dst: addr(host), TOS: inner.IP.TOS, TTL: 64,
		Proto: protoUDP, SrcPort: tunnelSrcPort(inner), VNI: vni, Inner: inner}}
}

// selectorKey is the inner 5-tuple in the order the P4 program hashes it:
// src IP, dst IP, protocol, src port, dst port (13 bytes).
func selectorKey(f *frame) []byte {
	ip := f.IP
	k := append(ip.Src.AsSlice(), ip.Dst.AsSlice()...)
	k = append(k, ip.Proto)
	var sp, dp uint16
	if ip.Proto == protoTCP || ip.Proto == protoUDP {
		sp, dp = ip.SrcPort, ip.DstPort
	}
	k = binary.BigEndian.AppendUint16(k, sp)
	return binary.BigEndian.AppendUint16(k, dp)
}

// tunnelSrcPort is the outer UDP source port for inner: RFC 7348's flow
// hash, crc16 of the 5-tuple into 49152..65535. (crc16 is checked against
// CRC-16/ARC's check value in TestCRC16IsBMv2s.)
func tunnelSrcPort(inner *frame) uint16 {
	return 49152 + crc16(selectorKey(inner))%16384
}

// step is one packet in on a port and what must come out: wantPort and
// want, or, with want nil, nothing (dropped).
type step struct {
	name     string
	port     uint16
	in       *frame
	wantPort uint16
	want     *frame
}

// run sends each step's packet through the pipeline and checks the
// decision and the frame that leaves, each step as a subtest.
func (ps *pipelineSwitch) run(t *testing.T, steps []step) {
	t.Helper()
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			t.Helper()
			in := buildFrame(s.in)
			out := make([]byte, len(in)+Overhead)
			egress, n, ok := ps.pipe.Process(s.port, in, out)
			var got *frame
			if ok {
				b := out[:n]
				if egress == cpuPort {
					if len(b) < 2 || binary.BigEndian.Uint16(b)>>7 != s.port {
						t.Fatalf("packet_in header % x; want ingress port %d", b[:min(2, len(b))], s.port)
					}
					b = b[2:]
				}
				got = dissectFrame(b)
			}
			switch {
			case !ok && s.want == nil:
			case !ok:
				t.Errorf("dropped\nwant port %d: %v", s.wantPort, s.want)
			case s.want == nil:
				t.Errorf("forwarded to port %d: %v\nwant dropped", egress, got)
			case egress != s.wantPort || !reflect.DeepEqual(got, s.want):
				t.Errorf("port %d: %v\nwant port %d: %v", egress, got, s.wantPort, s.want)
			}
		})
	}
}
