package dataplane

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// Frames for the pipeline tests, built and read by code of their own: the
// pipeline's parser and deparser are what is under test, so nothing here
// calls them. The packet vectors' builder (test/vectors/gen) is a main
// package, so it cannot be imported, and it is an oracle that must stay
// independent of this package; the two builders share nothing on purpose.
//
// A frame is described by value; buildFrame lays it out with correct
// lengths and checksums, and dissectFrame reads bytes back into the same
// description, noting in Bad anything a correct pipeline never emits (a
// wrong checksum or length, VXLAN flags other than "VNI valid"). A test
// compares the dissected output with the frame it expects.

// frame is an Ethernet frame carrying ARP, IPv4 or nothing known.
type frame struct {
	Dst, Src  string // MAC addresses, "02:aa:00:00:00:01"
	EtherType uint16 // only when ARP and IP are both nil
	ARP       *arpHdr
	IP        *ipHdr
	Bad       string // dissectFrame: what is malformed in this frame
}

// arpHdr is an ARP packet for IPv4 over Ethernet.
type arpHdr struct {
	Op       uint16 // 1 request, 2 reply
	SHA, THA string
	SPA, TPA netip.Addr
	HLen     uint8 // hardware address length; 0 means 6
}

// ipHdr is an IPv4 packet. With Inner set it is VXLAN: UDP from SrcPort to
// 4789, then the VXLAN header with VNI, then the inner frame. Otherwise
// Proto 17 is UDP and 6 TCP between the ports, followed by Payload; any
// other protocol carries only Payload.
type ipHdr struct {
	Src, Dst         netip.Addr
	TOS, TTL, Proto  uint8
	ID               uint16
	IHL              uint8 // header length in words; 0 means 5 (no options)
	SrcPort, DstPort uint16
	VNI              uint32
	Inner            *frame
	Payload          string
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil || len(m) != 6 {
		panic(fmt.Sprintf("bad MAC %q", s))
	}
	return m
}

// inetSum is the Internet checksum (RFC 1071) of b.
func inetSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// buildFrame lays f out on the wire.
func buildFrame(f *frame) []byte {
	b := append(append([]byte{}, mustMAC(f.Dst)...), mustMAC(f.Src)...)
	switch {
	case f.ARP != nil:
		a := f.ARP
		hlen := a.HLen
		if hlen == 0 {
			hlen = 6
		}
		b = binary.BigEndian.AppendUint16(b, etherTypeARP)
		b = append(b, 0, 1, 0x08, 0x00, hlen, 4)
		b = binary.BigEndian.AppendUint16(b, a.Op)
		b = append(b, mustMAC(a.SHA)...)
		b = append(b, a.SPA.AsSlice()...)
		b = append(b, mustMAC(a.THA)...)
		b = append(b, a.TPA.AsSlice()...)
	case f.IP != nil:
		b = binary.BigEndian.AppendUint16(b, etherTypeIPv4)
		b = append(b, buildIPv4(f.IP)...)
	default:
		b = binary.BigEndian.AppendUint16(b, f.EtherType)
	}
	return b
}

func buildIPv4(ip *ipHdr) []byte {
	var l4 []byte
	proto := ip.Proto
	switch {
	case ip.Inner != nil:
		proto = protoUDP
		inner := buildFrame(ip.Inner)
		l4 = binary.BigEndian.AppendUint16(l4, ip.SrcPort)
		l4 = binary.BigEndian.AppendUint16(l4, vxlanPort)
		l4 = binary.BigEndian.AppendUint16(l4, uint16(8+8+len(inner)))
		l4 = append(l4, 0, 0)
		l4 = append(l4, 0x08, 0, 0, 0, byte(ip.VNI>>16), byte(ip.VNI>>8), byte(ip.VNI), 0)
		l4 = append(l4, inner...)
	case proto == protoUDP:
		l4 = binary.BigEndian.AppendUint16(l4, ip.SrcPort)
		l4 = binary.BigEndian.AppendUint16(l4, ip.DstPort)
		l4 = binary.BigEndian.AppendUint16(l4, uint16(8+len(ip.Payload)))
		l4 = append(l4, 0, 0)
		l4 = append(l4, ip.Payload...)
	case proto == protoTCP:
		l4 = binary.BigEndian.AppendUint16(l4, ip.SrcPort)
		l4 = binary.BigEndian.AppendUint16(l4, ip.DstPort)
		l4 = append(l4, make([]byte, 8)...) // seq, ack
		l4 = append(l4, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0)
		l4 = append(l4, ip.Payload...)
	default:
		l4 = append(l4, ip.Payload...)
	}
	ihl := ip.IHL
	if ihl == 0 {
		ihl = 5
	}
	h := make([]byte, int(ihl)*4)
	h[0] = 0x40 | ihl
	h[1] = ip.TOS
	binary.BigEndian.PutUint16(h[2:], uint16(len(h)+len(l4)))
	binary.BigEndian.PutUint16(h[4:], ip.ID)
	h[8], h[9] = ip.TTL, proto
	copy(h[12:16], ip.Src.AsSlice())
	copy(h[16:20], ip.Dst.AsSlice())
	binary.BigEndian.PutUint16(h[10:], inetSum(h))
	return append(h, l4...)
}

// dissectFrame reads b back into a frame.
func dissectFrame(b []byte) *frame {
	f := &frame{}
	var bad []string
	defer func() { f.Bad = strings.Join(bad, "; ") }()
	if len(b) < 14 {
		bad = append(bad, fmt.Sprintf("%d-byte frame", len(b)))
		return f
	}
	f.Dst, f.Src = net.HardwareAddr(b[0:6]).String(), net.HardwareAddr(b[6:12]).String()
	et, b := binary.BigEndian.Uint16(b[12:]), b[14:]
	switch et {
	case etherTypeARP:
		if len(b) != lenARP {
			bad = append(bad, fmt.Sprintf("%d bytes of ARP", len(b)))
			return f
		}
		if binary.BigEndian.Uint32(b[0:]) != 0x00010800 || b[5] != 4 {
			bad = append(bad, fmt.Sprintf("ARP htype/ptype/plen % x", b[0:6]))
		}
		a := &arpHdr{Op: binary.BigEndian.Uint16(b[6:])}
		if b[4] != 6 {
			a.HLen = b[4]
		}
		a.SHA, a.SPA = net.HardwareAddr(b[8:14]).String(), netip.AddrFrom4([4]byte(b[14:18]))
		a.THA, a.TPA = net.HardwareAddr(b[18:24]).String(), netip.AddrFrom4([4]byte(b[24:28]))
		f.ARP = a
	case etherTypeIPv4:
		f.IP = dissectIPv4(b, &bad)
	default:
		f.EtherType = et
	}
	return f
}

func dissectIPv4(b []byte, bad *[]string) *ipHdr {
	if len(b) < 20 || b[0]>>4 != 4 || int(b[0]&0xf)*4 > len(b) || b[0]&0xf < 5 {
		*bad = append(*bad, fmt.Sprintf("not an IPv4 packet: % x", b[:min(len(b), 20)]))
		return nil
	}
	hl := int(b[0]&0xf) * 4
	ip := &ipHdr{TOS: b[1], ID: binary.BigEndian.Uint16(b[4:]), TTL: b[8], Proto: b[9]}
	ip.Src, ip.Dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
	if hl != 20 {
		ip.IHL = uint8(hl / 4)
	}
	if n := int(binary.BigEndian.Uint16(b[2:])); n != len(b) {
		*bad = append(*bad, fmt.Sprintf("IPv4 total length %d, %d bytes follow", n, len(b)))
	}
	if inetSum(b[:hl]) != 0 {
		*bad = append(*bad, "IPv4 header checksum")
	}
	if binary.BigEndian.Uint16(b[6:]) != 0 {
		*bad = append(*bad, "IPv4 flags or fragment offset")
	}
	l4 := b[hl:]
	switch ip.Proto {
	case protoUDP:
		if len(l4) < 8 {
			*bad = append(*bad, "short UDP header")
			return ip
		}
		ip.SrcPort, ip.DstPort = binary.BigEndian.Uint16(l4[0:]), binary.BigEndian.Uint16(l4[2:])
		if n := int(binary.BigEndian.Uint16(l4[4:])); n != len(l4) {
			*bad = append(*bad, fmt.Sprintf("UDP length %d, %d bytes follow", n, len(l4)))
		}
		if ip.DstPort != vxlanPort {
			ip.Payload = string(l4[8:])
			return ip
		}
		ip.DstPort = 0 // implied by Inner
		if binary.BigEndian.Uint16(l4[6:]) != 0 {
			*bad = append(*bad, "VXLAN outer UDP checksum not 0")
		}
		v := l4[8:]
		if len(v) < 8 {
			*bad = append(*bad, "short VXLAN header")
			return ip
		}
		if v[0] != 0x08 || v[1]|v[2]|v[3]|v[7] != 0 {
			*bad = append(*bad, fmt.Sprintf("VXLAN flags/reserved % x", v[:8]))
		}
		ip.VNI = uint32(v[4])<<16 | uint32(v[5])<<8 | uint32(v[6])
		ip.Inner = dissectFrame(v[8:])
	case protoTCP:
		if len(l4) < 20 {
			*bad = append(*bad, "short TCP header")
			return ip
		}
		ip.SrcPort, ip.DstPort = binary.BigEndian.Uint16(l4[0:]), binary.BigEndian.Uint16(l4[2:])
		ip.Payload = string(l4[20:])
	default:
		ip.Payload = string(l4)
	}
	return ip
}

// cloneFrame is a deep copy of f, for expectations derived from an input.
func cloneFrame(f *frame) *frame {
	if f == nil {
		return nil
	}
	c := *f
	if f.ARP != nil {
		a := *f.ARP
		c.ARP = &a
	}
	if f.IP != nil {
		ip := *f.IP
		ip.Inner = cloneFrame(f.IP.Inner)
		c.IP = &ip
	}
	return &c
}

// String is a one-line summary with every field, for failure messages.
func (f *frame) String() string {
	if f == nil {
		return "<none>"
	}
	var s strings.Builder
	fmt.Fprintf(&s, "%s>%s", f.Src, f.Dst)
	switch {
	case f.ARP != nil:
		a := f.ARP
		fmt.Fprintf(&s, " arp op %d sha %s spa %s tha %s tpa %s", a.Op, a.SHA, a.SPA, a.THA, a.TPA)
		if a.HLen != 0 {
			fmt.Fprintf(&s, " hlen %d", a.HLen)
		}
	case f.IP != nil:
		ip := f.IP
		fmt.Fprintf(&s, " ipv4 %s>%s tos %d ttl %d id %d proto %d", ip.Src, ip.Dst, ip.TOS, ip.TTL, ip.ID, ip.Proto)
		if ip.IHL != 0 {
			fmt.Fprintf(&s, " ihl %d", ip.IHL)
		}
		switch {
		case ip.Inner != nil:
			fmt.Fprintf(&s, " ports %d>%d vxlan vni %#x [%v]", ip.SrcPort, vxlanPort, ip.VNI, ip.Inner)
		case ip.SrcPort != 0 || ip.DstPort != 0:
			fmt.Fprintf(&s, " ports %d>%d", ip.SrcPort, ip.DstPort)
		}
		if ip.Payload != "" {
			fmt.Fprintf(&s, " payload %q", ip.Payload)
		}
	default:
		fmt.Fprintf(&s, " type %#04x", f.EtherType)
	}
	if f.Bad != "" {
		fmt.Fprintf(&s, " BAD(%s)", f.Bad)
	}
	return s.String()
}

func TestFrameBuilderRoundTrip(t *testing.T) {
	// RFC 1071's example header, checksum field zeroed: 0xb861.
	hdr := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if got := inetSum(hdr); got != 0xb861 {
		t.Errorf("inetSum = %#04x; want 0xb861", got)
	}
	opts := fromA(redB)
	opts.IP.IHL = 6
	for _, f := range []*frame{
		fromA(blueC),
		tcpFrame(macA, gwMAC, redA, vip, 1234, 80),
		arpRequest(redB),
		{Dst: macA, Src: macB, EtherType: 0x86dd},
		opts,
		tunnelIn(hostC, wHostIP, vniRed, udpFrame(macC, macA, blueC, redA, 9)),
	} {
		if got := dissectFrame(buildFrame(f)); !reflect.DeepEqual(got, f) {
			t.Errorf("round trip:\n got %v\nwant %v", got, f)
		}
	}
}
