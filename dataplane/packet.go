package dataplane

import "encoding/binary"

// The headers of vpc_peering.p4, each kept as its wire bytes. Fields are
// read and written in place, an assignment between two headers of one type
// is an array copy, and the deparser only copies valid headers out: nothing
// on the packet path allocates.
const (
	lenPacketIO = 2
	lenEth      = 14
	lenARP      = 28
	lenIPv4     = 20
	lenUDP      = 8
	lenTCPPorts = 4
	lenVXLAN    = 8
)

const (
	etherTypeIPv4 = 0x0800
	etherTypeARP  = 0x0806
	protoTCP      = 6
	protoUDP      = 17
	vxlanPort     = 4789
)

// parserError mirrors v1model's parser_error for what this parser can hit.
type parserError uint8

const (
	errNone parserError = iota
	errPacketTooShort
)

// headers is headers_t of vpc_peering.p4 plus the parser's results.
type headers struct {
	packetOut, packetIn   [lenPacketIO]byte
	eth, innerEth         [lenEth]byte
	arp                   [lenARP]byte
	ipv4, innerIPv4       [lenIPv4]byte
	udp, innerUDP         [lenUDP]byte
	tcp, innerTCP         [lenTCPPorts]byte
	vxlan                 [lenVXLAN]byte
	vPacketOut, vPacketIn bool
	vEth, vInnerEth       bool
	vARP                  bool
	vIPv4, vInnerIPv4     bool
	vUDP, vInnerUDP       bool
	vTCP, vInnerTCP       bool
	vVXLAN                bool
	err                   parserError
	payload               int // offset of the first byte no state extracted
}

// extract copies the next len(h) bytes of pkt into h, as packet.extract.
func extract(pkt []byte, off *int, h []byte, err *parserError) bool {
	if len(pkt)-*off < len(h) {
		*err = errPacketTooShort
		return false
	}
	copy(h, pkt[*off:])
	*off += len(h)
	return true
}

// parse is VpcParser. On a parser error the headers extracted so far stay
// valid and err is set, as in BMv2; ingress drops such packets.
func (h *headers) parse(pkt []byte, inPort uint16) {
	off := 0
	defer func() { h.payload = off }()
	if inPort == cpuPort {
		h.vPacketOut = extract(pkt, &off, h.packetOut[:], &h.err)
		return
	}
	if h.vEth = extract(pkt, &off, h.eth[:], &h.err); !h.vEth {
		return
	}
	switch ethType(&h.eth) {
	case etherTypeARP:
		h.vARP = extract(pkt, &off, h.arp[:], &h.err)
		return
	case etherTypeIPv4:
	default:
		return
	}
	if h.vIPv4 = extract(pkt, &off, h.ipv4[:], &h.err); !h.vIPv4 {
		return
	}
	if !l4Parsable(&h.ipv4) {
		return
	}
	switch h.ipv4[9] {
	case protoTCP:
		h.vTCP = extract(pkt, &off, h.tcp[:], &h.err)
		return
	case protoUDP:
	default:
		return
	}
	if h.vUDP = extract(pkt, &off, h.udp[:], &h.err); !h.vUDP || port16(h.udp[2:]) != vxlanPort {
		return
	}
	if h.vVXLAN = extract(pkt, &off, h.vxlan[:], &h.err); !h.vVXLAN {
		return
	}
	if h.vInnerEth = extract(pkt, &off, h.innerEth[:], &h.err); !h.vInnerEth || ethType(&h.innerEth) != etherTypeIPv4 {
		return
	}
	if h.vInnerIPv4 = extract(pkt, &off, h.innerIPv4[:], &h.err); !h.vInnerIPv4 || !l4Parsable(&h.innerIPv4) {
		return
	}
	switch h.innerIPv4[9] {
	case protoTCP:
		h.vInnerTCP = extract(pkt, &off, h.innerTCP[:], &h.err)
	case protoUDP:
		h.vInnerUDP = extract(pkt, &off, h.innerUDP[:], &h.err)
	}
}

// l4Parsable is the parser's select on (ihl, frag_offset): ports are read
// only from a first fragment without options.
func l4Parsable(ip *[lenIPv4]byte) bool {
	return ip[0]&0x0f == 5 && binary.BigEndian.Uint16(ip[6:])&0x1fff == 0
}

// deparse is VpcDeparser: the valid headers in emit order, then the bytes
// of pkt no parser state extracted. It returns the bytes written to out,
// which must have room for len(pkt) plus the encapsulation overhead.
func (h *headers) deparse(pkt, out []byte) int {
	n := 0
	put := func(valid bool, b []byte) {
		if valid {
			n += copy(out[n:], b)
		}
	}
	put(h.vPacketIn, h.packetIn[:])
	put(h.vEth, h.eth[:])
	put(h.vARP, h.arp[:])
	put(h.vIPv4, h.ipv4[:])
	put(h.vUDP, h.udp[:])
	put(h.vTCP, h.tcp[:])
	put(h.vVXLAN, h.vxlan[:])
	put(h.vInnerEth, h.innerEth[:])
	put(h.vInnerIPv4, h.innerIPv4[:])
	put(h.vInnerUDP, h.innerUDP[:])
	put(h.vInnerTCP, h.innerTCP[:])
	n += copy(out[n:], pkt[h.payload:])
	return n
}

func ethType(e *[lenEth]byte) uint16 { return binary.BigEndian.Uint16(e[12:]) }
func port16(b []byte) uint16         { return binary.BigEndian.Uint16(b) }

// mac48 reads a 48-bit field.
func mac48(b []byte) uint64 {
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// putMAC48 writes a 48-bit field.
func putMAC48(b []byte, v uint64) {
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

// ipv4Checksum is update_checksum(..., HashAlgorithm.csum16) over every
// field of the header but the checksum itself.
func ipv4Checksum(ip *[lenIPv4]byte) {
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], csum16(ip[:]))
}
