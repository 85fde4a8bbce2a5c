package main

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// A small frame builder for the vectors. It is the test oracle's own: it
// shares no code with the pipeline under test, so a vector can catch the
// pipeline building a header wrong.

func mac(s string) []byte {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func ip4(s string) []byte {
	a := netip.MustParseAddr(s).As4()
	return a[:]
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func eth(dst, src string, typ uint16) []byte { return cat(mac(dst), mac(src), be16(typ)) }

// ipHdr is an IPv4 header without options; its checksum is computed.
type ipHdr struct {
	tos      byte
	totalLen uint16
	id       uint16
	ttl      byte
	proto    byte
	src, dst string
}

func (h ipHdr) bytes() []byte {
	b := cat([]byte{0x45, h.tos}, be16(h.totalLen), be16(h.id), []byte{0x40, 0x00, h.ttl, h.proto, 0, 0}, ip4(h.src), ip4(h.dst))
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	return b
}

func udp(sport, dport uint16, payloadLen int) []byte {
	return cat(be16(sport), be16(dport), be16(uint16(8+payloadLen)), be16(0))
}

// tcp is a minimal 20-byte TCP header (SYN); the pipeline reads only ports.
func tcp(sport, dport uint16) []byte {
	return cat(be16(sport), be16(dport), []byte{0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0x12, 0x34, 0, 0})
}

func vxlan(vni uint32) []byte {
	return []byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}
}

// flow is a tenant IPv4 packet: its L4 part and the inner IP header fields.
type flow struct {
	src, dst     string
	proto        byte
	sport, dport uint16
	tos          byte
	payload      []byte
}

func (f flow) l4() []byte {
	switch f.proto {
	case 17:
		return cat(udp(f.sport, f.dport, len(f.payload)), f.payload)
	case 6:
		return cat(tcp(f.sport, f.dport), f.payload)
	}
	return f.payload // ICMP or other: bytes as given
}

// ip is the inner IPv4 packet with the given TTL.
func (f flow) ip(ttl byte) []byte {
	l4 := f.l4()
	return cat(ipHdr{tos: f.tos, totalLen: uint16(20 + len(l4)), id: 0x1234, ttl: ttl, proto: f.proto, src: f.src, dst: f.dst}.bytes(), l4)
}

// frame is the tenant packet in an Ethernet frame.
func (f flow) frame(dstMAC, srcMAC string, ttl byte) []byte {
	return cat(eth(dstMAC, srcMAC, 0x0800), f.ip(ttl))
}

// crc16ARC is CRC-16/ARC computed bit by bit (poly 0x8005 reflected = 0xA001,
// init 0, no final xor): BMv2's crc16, written independently of the
// table-driven one in the pipeline.
func crc16ARC(b []byte) uint16 {
	var crc uint16
	for _, x := range b {
		crc ^= uint16(x)
		for range 8 {
			if crc&1 == 1 {
				crc = crc>>1 ^ 0xa001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// fiveTuple is the bytes both selectors and the VXLAN source port hash.
func (f flow) fiveTuple() []byte {
	sport, dport := f.sport, f.dport
	if f.proto != 6 && f.proto != 17 {
		sport, dport = 0, 0
	}
	return cat(ip4(f.src), ip4(f.dst), []byte{f.proto}, be16(sport), be16(dport))
}

// encap is f as encap_to_host sends it: outer Ethernet (MACs from
// underlay_nexthop), IPv4 (TTL 64, DSCP copied, checksum), UDP (source port
// from the flow hash, checksum 0), VXLAN with vni, inner frame with TTL ttl.
func (f flow) encap(outerDst, outerSrc, hostIP, remoteIP string, vni uint32, innerDst, innerSrc string, ttl byte) []byte {
	inner := f.frame(innerDst, innerSrc, ttl)
	sport := 49152 + crc16ARC(f.fiveTuple())%16384
	return cat(
		eth(outerDst, outerSrc, 0x0800),
		ipHdr{tos: f.tos, totalLen: uint16(20 + 8 + 8 + len(inner)), id: 0, ttl: 64, proto: 17, src: hostIP, dst: remoteIP}.bytesNoDF(),
		udp(sport, 4789, 8+len(inner)),
		vxlan(vni),
		inner,
	)
}

// bytesNoDF is the header with flags 0, as the pipeline builds outer headers.
func (h ipHdr) bytesNoDF() []byte {
	b := h.bytes()
	b[6] = 0
	b[10], b[11] = 0, 0
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	return b
}

// arp is an ARP packet for IPv4 over Ethernet.
func arp(oper uint16, sha, spa, tha, tpa string) []byte {
	return cat(be16(1), be16(0x0800), []byte{6, 4}, be16(oper), mac(sha), ip4(spa), mac(tha), ip4(tpa))
}
