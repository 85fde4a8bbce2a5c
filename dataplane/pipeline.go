package dataplane

import (
	"encoding/binary"
	"fmt"
)

// cpuPort is CPU_PORT of vpc_peering.p4 (simple_switch_grpc --cpu-port 255).
const cpuPort = 255

// dropPort is the egress_spec mark_to_drop sets on BMv2.
const dropPort = 511

// Encapsulation constants of vpc_peering.p4.
const (
	vxlanOuterIPv4Overhead = 50 // outer IPv4 + UDP + VXLAN + inner Ethernet
	vxlanOuterUDPOverhead  = 30 // UDP + VXLAN + inner Ethernet
	vxlanSrcPortBase       = 49152
	vxlanSrcPortRange      = 16384
	// Overhead is the most a packet grows in the pipeline: a VXLAN
	// encapsulation, or the packet_in header.
	Overhead = lenEth + lenIPv4 + lenUDP + lenVXLAN
)

const (
	fwdNone = iota
	fwdLocal
	fwdEncap
)

// Pipeline is the Go implementation of vpc_peering.p4 on one Store: parser,
// ingress, egress, checksums and deparser, with the same bytes out as BMv2
// for the same entries and packets in. Tables, actions and profiles are
// resolved by name once, when the pipeline is built; the packet path then
// does map lookups on fixed-layout keys and never allocates.
type Pipeline struct {
	store *Store

	portVnet, vmSourceGuard, arpProxy, tunnelTerm, vnetSourceCheck *Table
	lbFrontend, vnetDestination, vnetRoute, gatewayPool, lbBackend *Table
	underlayNexthop, localHost, routeECMP, attachmentSourceCheck   *Table

	aDrop, aSetVnet, aPermit, aARPReply, aSendToCPU, aDecap, aLBMiss, aToLB                 uint32
	aDestinationMiss, aToLocalVM, aEncapToHost, aToGatewayPool, aSetUnderlay, aSetLocalHost uint32
	aToRouteGroup, aSetAttachment                                                           uint32

	digestID uint32
	// Controller metadata ids of packet_in.ingress_port, packet_in._pad and
	// packet_out.egress_port.
	pinPort, pinPad, poutPort uint32

	// Digest, if set, receives the gateway digest (vni, dst IP) of a packet
	// that took the gateway path. It runs on the packet path: it must not
	// block.
	Digest func(digestID, vni, dstIP uint32)
}

// NewPipeline resolves vpc_peering.p4's tables, actions, selectors and
// digest in st's schema. It fails when the store's P4Info is not this
// program's, naming what is missing.
func NewPipeline(st *Store) (*Pipeline, error) {
	s := st.Schema()
	p := &Pipeline{store: st}
	var errs []error
	table := func(name string) *Table {
		t, err := s.Table("VpcIngress." + name)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		return st.Table(t.ID())
	}
	action := func(name string) uint32 {
		a, err := s.Action("VpcIngress." + name)
		if err != nil {
			errs = append(errs, err)
			return 0
		}
		return a.ID()
	}
	profile := func(name string) uint32 {
		a, err := s.ActionProfile("VpcIngress." + name)
		if err != nil {
			errs = append(errs, err)
			return 0
		}
		return a.ID()
	}
	p.portVnet, p.vmSourceGuard, p.arpProxy = table("port_vnet"), table("vm_source_guard"), table("arp_proxy")
	p.tunnelTerm, p.vnetSourceCheck, p.lbFrontend = table("tunnel_term"), table("vnet_source_check"), table("lb_frontend")
	p.vnetDestination, p.vnetRoute, p.gatewayPool = table("vnet_destination"), table("vnet_route"), table("gateway_pool")
	p.lbBackend, p.underlayNexthop, p.localHost = table("lb_backend"), table("underlay_nexthop"), table("local_host")
	p.routeECMP, p.attachmentSourceCheck = table("route_ecmp"), table("attachment_source_check")
	// The selectors are reached through each entry's member or group, so
	// their ids are not kept; resolving them checks the program has them.
	profile("gateway_selector")
	profile("lb_selector")
	profile("route_selector")
	p.aDrop, p.aSetVnet, p.aPermit, p.aARPReply = action("drop"), action("set_vnet"), action("permit"), action("arp_reply")
	p.aSendToCPU, p.aDecap, p.aLBMiss, p.aToLB = action("send_to_cpu"), action("decap"), action("lb_miss"), action("to_lb")
	p.aDestinationMiss, p.aToLocalVM, p.aEncapToHost = action("destination_miss"), action("to_local_vm"), action("encap_to_host")
	p.aToGatewayPool, p.aSetUnderlay, p.aSetLocalHost = action("to_gateway_pool"), action("set_underlay"), action("set_local_host")
	p.aToRouteGroup, p.aSetAttachment = action("to_route_group"), action("set_attachment")
	if d, err := s.Digest("gateway_digest_t"); err != nil {
		errs = append(errs, err)
	} else {
		p.digestID = d.GetPreamble().GetId()
	}
	metaField := func(kind, name string) uint32 {
		m, err := s.PacketMetadata(kind)
		if err == nil {
			var f interface{ GetId() uint32 }
			if f, err = m.Field(name); err == nil {
				return f.GetId()
			}
		}
		errs = append(errs, err)
		return 0
	}
	p.pinPort, p.pinPad = metaField("packet_in", "ingress_port"), metaField("packet_in", "_pad")
	p.poutPort = metaField("packet_out", "egress_port")
	if len(errs) > 0 {
		return nil, fmt.Errorf("pipeline is not vpc_peering.p4: %v", errs)
	}
	return p, nil
}

// Store is the store the pipeline reads.
func (p *Pipeline) Store() *Store { return p.store }

// meta is metadata_t plus the standard metadata the program uses.
type meta struct {
	vni        uint32
	vmMAC      uint64
	fromVM     bool
	fromAtt    bool // from_attachment
	doRoute    bool
	l4Src      uint16
	l4Dst      uint16
	fwd        uint8
	toLB       bool
	lbID       uint16
	toGateway  bool
	poolID     uint16
	toRoute    bool // to_route_group
	routeGroup uint16
	tunnelVNI  uint32
	tunnelDst  uint32
	hostIP     uint32
	hostMAC    uint64
	inPort     uint16
	egressSpec uint16
	pktLen     int
}

func (m *meta) markToDrop() { m.egressSpec = dropPort }

// Process runs one packet that arrived on inPort through the pipeline. It
// writes the packet that leaves into out (which needs room for len(pkt) +
// Overhead bytes) and returns its egress port and length; ok is false when
// the packet is dropped. A packet for the CPU port leaves with its packet_in
// header in front, as on BMv2.
func (p *Pipeline) Process(inPort uint16, pkt, out []byte) (egress uint16, n int, ok bool) {
	p.store.RLock()
	defer p.store.RUnlock()
	return p.processLocked(inPort, pkt, out)
}

// processLocked is Process with the store read-locked by the caller, who
// may hold the lock across a batch of packets: two atomic operations per
// packet fewer, on a word every port's receive thread touches.
func (p *Pipeline) processLocked(inPort uint16, pkt, out []byte) (egress uint16, n int, ok bool) {
	var h headers
	h.parse(pkt, inPort)
	m := meta{inPort: inPort, pktLen: len(pkt)}
	p.ingress(&h, &m)
	if m.egressSpec == dropPort {
		return 0, 0, false
	}
	// Egress.
	if m.egressSpec == cpuPort {
		h.vPacketIn = true
		binary.BigEndian.PutUint16(h.packetIn[:], inPort<<7)
	}
	// VpcComputeChecksum.
	if h.vIPv4 {
		ipv4Checksum(&h.ipv4)
	}
	if h.vInnerIPv4 {
		ipv4Checksum(&h.innerIPv4)
	}
	return m.egressSpec, h.deparse(pkt, out), true
}

// lookup applies t to key: the entry that runs (nil if none) and whether it
// was a hit. Hits of a table with a direct counter are counted.
func (p *Pipeline) lookup(t *Table, key []byte, m *meta) (*Entry, bool) {
	e := t.Lookup(key)
	hit := e != nil && e != t.Default
	if hit && t.directIx {
		e.Count(m.pktLen)
	}
	return e, hit
}

func (p *Pipeline) ingress(h *headers, m *meta) {
	if h.vPacketOut {
		m.egressSpec = binary.BigEndian.Uint16(h.packetOut[:]) >> 7
		h.vPacketOut = false
		return
	}
	if h.err != errNone {
		m.markToDrop()
		return
	}
	p.applyDirect(p.localHost, nil, h, m)

	var key [16]byte
	binary.BigEndian.PutUint16(key[:], m.inPort)
	if p.applyDirect(p.portVnet, key[:2], h, m) {
		if m.fromVM {
			p.fromVM(h, m)
		}
	} else if h.vVXLAN {
		p.fromUplink(h, m)
	}
	if m.doRoute {
		p.route(h, m)
	}
}

// fromVM is the VM-port branch of ingress.
func (p *Pipeline) fromVM(h *headers, m *meta) {
	var key [16]byte
	switch {
	case h.vVXLAN:
		m.markToDrop()
	case h.vARP:
		a := &h.arp
		if port16(a[6:]) == 1 && port16(a[0:]) == 1 && port16(a[2:]) == etherTypeIPv4 && a[4] == 6 && a[5] == 4 {
			put24(key[0:], m.vni)
			copy(key[3:7], a[24:28])
			p.applyDirect(p.arpProxy, key[:7], h, m)
		} else {
			m.markToDrop()
		}
	case h.vIPv4:
		h.innerEth, h.innerIPv4 = h.eth, h.ipv4
		h.vInnerEth, h.vInnerIPv4 = h.vEth, h.vIPv4
		h.vEth, h.vIPv4 = false, false
		if h.vUDP {
			h.innerUDP, h.vInnerUDP, h.vUDP = h.udp, true, false
		}
		if h.vTCP {
			h.innerTCP, h.vInnerTCP, h.vTCP = h.tcp, true, false
		}
		if h.innerIPv4[0] != 0x45 {
			m.markToDrop()
			return
		}
		if m.fromAtt {
			// An on-prem router's traffic: admitted by source prefix.
			binary.BigEndian.PutUint16(key[0:], m.inPort)
			copy(key[2:6], h.innerIPv4[12:16])
			if p.applyDirect(p.attachmentSourceCheck, key[:6], h, m) {
				m.doRoute = true
			}
			return
		}
		put24(key[0:], m.vni)
		binary.BigEndian.PutUint16(key[3:], m.inPort)
		copy(key[5:9], h.innerIPv4[12:16])
		copy(key[9:15], h.innerEth[6:12])
		if p.applyDirect(p.vmSourceGuard, key[:15], h, m) {
			m.doRoute = true
		}
	default:
		m.markToDrop()
	}
}

// fromUplink is the tunnel branch of ingress: VXLAN to this host.
func (p *Pipeline) fromUplink(h *headers, m *meta) {
	if !h.vInnerIPv4 || h.innerIPv4[0] != 0x45 {
		m.markToDrop()
		return
	}
	var key [16]byte
	copy(key[0:4], h.ipv4[16:20])
	copy(key[4:7], h.vxlan[4:7])
	if !p.applyDirect(p.tunnelTerm, key[:7], h, m) {
		return
	}
	put24(key[0:], m.vni)
	copy(key[3:7], h.innerIPv4[12:16])
	if p.applyDirect(p.vnetSourceCheck, key[:7], h, m) {
		m.doRoute = true
	}
}

// route is the routing stage: load balancers, destinations, routes, the
// selectors, TTL and encapsulation. A tunnelled packet takes it after decap
// as a VM's packet does, so a route out of a local port (an attachment)
// serves both.
func (p *Pipeline) route(h *headers, m *meta) {
	switch {
	case h.vInnerTCP:
		m.l4Src, m.l4Dst = port16(h.innerTCP[0:]), port16(h.innerTCP[2:])
	case h.vInnerUDP:
		m.l4Src, m.l4Dst = port16(h.innerUDP[0:]), port16(h.innerUDP[2:])
	default:
		m.l4Src, m.l4Dst = 0, 0
	}
	var key [16]byte
	put24(key[0:], m.vni)
	copy(key[3:7], h.innerIPv4[16:20])
	key[7] = h.innerIPv4[9]
	binary.BigEndian.PutUint16(key[8:], m.l4Dst)
	if !p.applyDirect(p.lbFrontend, key[:10], h, m) {
		e, hit := p.lookup(p.vnetDestination, key[:7], m)
		p.run(e, h, m)
		if !hit {
			// vnet_destination's only default action is destination_miss.
			e, _ = p.lookup(p.vnetRoute, key[:7], m)
			p.run(e, h, m)
		}
	}
	var sel [13]byte
	if m.toLB || m.toGateway || m.toRoute {
		copy(sel[0:8], h.innerIPv4[12:20])
		sel[8] = h.innerIPv4[9]
		binary.BigEndian.PutUint16(sel[9:], m.l4Src)
		binary.BigEndian.PutUint16(sel[11:], m.l4Dst)
	}
	if m.toLB {
		binary.BigEndian.PutUint16(key[:], m.lbID)
		p.applySelector(p.lbBackend, key[:2], sel[:], h, m)
	}
	if m.toGateway {
		binary.BigEndian.PutUint16(key[:], m.poolID)
		p.applySelector(p.gatewayPool, key[:2], sel[:], h, m)
	}
	if m.toRoute {
		binary.BigEndian.PutUint16(key[:], m.routeGroup)
		p.applySelector(p.routeECMP, key[:2], sel[:], h, m)
	}

	switch {
	case m.fwd == fwdNone:
		m.markToDrop()
		return
	case !m.fromVM && m.fwd == fwdLocal:
		// Last hop of a tunnelled packet: the sender routed it.
		return
	case h.innerIPv4[8] <= 1:
		m.markToDrop()
		return
	}
	h.innerIPv4[8]--
	if m.toGateway && p.Digest != nil {
		p.Digest(p.digestID, m.vni, binary.BigEndian.Uint32(h.innerIPv4[16:20]))
	}
	if m.fwd != fwdEncap {
		return
	}
	p.encap(h, m)
	binary.BigEndian.PutUint32(key[:], m.tunnelDst)
	p.applyDirect(p.underlayNexthop, key[:4], h, m)
}

// encap builds the outer Ethernet / IPv4 / UDP / VXLAN headers of
// encap_to_host, field for field as the P4 program sets them.
func (p *Pipeline) encap(h *headers, m *meta) {
	innerLen := binary.BigEndian.Uint16(h.innerIPv4[2:])

	h.vEth = true
	putMAC48(h.eth[0:], 0)
	putMAC48(h.eth[6:], m.hostMAC)
	binary.BigEndian.PutUint16(h.eth[12:], etherTypeIPv4)

	h.vIPv4 = true
	ip := &h.ipv4
	ip[0] = 0x45
	ip[1] = h.innerIPv4[1]
	binary.BigEndian.PutUint16(ip[2:], innerLen+vxlanOuterIPv4Overhead)
	ip[4], ip[5], ip[6], ip[7] = 0, 0, 0, 0
	ip[8] = 64
	ip[9] = protoUDP
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint32(ip[12:], m.hostIP)
	binary.BigEndian.PutUint32(ip[16:], m.tunnelDst)

	var flow [13]byte
	copy(flow[0:8], h.innerIPv4[12:20])
	flow[8] = h.innerIPv4[9]
	binary.BigEndian.PutUint16(flow[9:], m.l4Src)
	binary.BigEndian.PutUint16(flow[11:], m.l4Dst)
	h.vUDP = true
	binary.BigEndian.PutUint16(h.udp[0:], vxlanSrcPortBase+uint16(uint32(crc16(flow[:]))%vxlanSrcPortRange))
	binary.BigEndian.PutUint16(h.udp[2:], vxlanPort)
	binary.BigEndian.PutUint16(h.udp[4:], innerLen+vxlanOuterUDPOverhead)
	h.udp[6], h.udp[7] = 0, 0

	h.vVXLAN = true
	h.vxlan = [lenVXLAN]byte{0x08}
	put24(h.vxlan[4:], m.tunnelVNI)
}

// applyDirect applies a table with direct actions and runs the action of
// the entry it finds. It reports a hit.
func (p *Pipeline) applyDirect(t *Table, key []byte, h *headers, m *meta) bool {
	e, hit := p.lookup(t, key, m)
	p.run(e, h, m)
	return hit
}

// applySelector applies an action-selector table: the entry names a member
// or a group (or carries a one-shot action set, a hidden group), and a group's member is picked by the crc16 of the selector
// fields, as BMv2 does. A miss, or an empty group, runs nothing: p4c leaves
// a selector table's default action out of the BMv2 program.
func (p *Pipeline) applySelector(t *Table, key, sel []byte, h *headers, m *meta) {
	e, hit := p.lookup(t, key, m)
	if !hit {
		return
	}
	// The entry's own pointers, not its ids: a one-shot entry's group is
	// hidden (it has no id), and a named member or group cannot go while an
	// entry holds it.
	var mem *Member
	switch {
	case e.group != nil:
		mem = e.group.Select(uint64(crc16(sel)))
	case e.member != nil:
		mem = e.member
	}
	if mem != nil {
		p.runAction(mem.ActionID, mem.Args, h, m)
	}
}

func (p *Pipeline) run(e *Entry, h *headers, m *meta) {
	if e != nil {
		p.runAction(e.ActionID, e.Args, h, m)
	}
}

// runAction runs one action of vpc_peering.p4 with its arguments.
func (p *Pipeline) runAction(id uint32, args []uint64, h *headers, m *meta) {
	switch id {
	case p.aDrop:
		m.markToDrop()
	case p.aSetVnet:
		m.vni, m.vmMAC, m.fromVM = uint32(args[0]), args[1], true
	case p.aSetAttachment:
		m.vni, m.vmMAC, m.fromVM, m.fromAtt = uint32(args[0]), args[1], true, true
	case p.aPermit, p.aLBMiss, p.aDestinationMiss:
	case p.aARPReply:
		a := &h.arp
		mac := args[0]
		var target [4]byte
		copy(target[:], a[24:28])
		putMAC48(h.eth[0:], m.vmMAC)
		putMAC48(h.eth[6:], mac)
		binary.BigEndian.PutUint16(a[6:], 2)
		putMAC48(a[18:], m.vmMAC)
		copy(a[24:28], a[14:18])
		putMAC48(a[8:], mac)
		copy(a[14:18], target[:])
		m.egressSpec = m.inPort
	case p.aSendToCPU:
		m.egressSpec = cpuPort
	case p.aDecap:
		m.vni = get24(h.vxlan[4:])
		h.vEth, h.vIPv4, h.vUDP, h.vVXLAN = false, false, false, false
	case p.aToLB:
		m.toLB, m.lbID = true, uint16(args[0])
	case p.aToLocalVM:
		m.fwd = fwdLocal
		m.egressSpec = uint16(args[0])
		putMAC48(h.innerEth[0:], args[1])
	case p.aEncapToHost:
		m.fwd = fwdEncap
		m.tunnelVNI, m.tunnelDst = uint32(args[0]), uint32(args[1])
		putMAC48(h.innerEth[0:], args[2])
	case p.aToGatewayPool:
		m.toGateway, m.poolID = true, uint16(args[0])
	case p.aToRouteGroup:
		m.toRoute, m.routeGroup = true, uint16(args[0])
	case p.aSetUnderlay:
		m.egressSpec = uint16(args[0])
		putMAC48(h.eth[6:], args[1])
		putMAC48(h.eth[0:], args[2])
	case p.aSetLocalHost:
		m.hostIP, m.hostMAC = uint32(args[0]), args[1]
	}
}

func put24(b []byte, v uint32) { b[0], b[1], b[2] = byte(v>>16), byte(v>>8), byte(v) }
func get24(b []byte) uint32    { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }
