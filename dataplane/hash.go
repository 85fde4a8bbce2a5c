package dataplane

// crc16Table is BMv2's crc16: CRC-16/ARC (polynomial 0x8005, input and
// output reflected, initial value 0, no final xor), the algorithm behind
// v1model's HashAlgorithm.crc16. Selectors and the VXLAN source port must
// hash exactly as BMv2 does, or the two targets pick different members for
// the same packet.
var crc16Table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xa001 // 0x8005 reflected
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// crc16 hashes b as BMv2's crc16 does.
func crc16(b []byte) uint16 {
	var c uint16
	for _, x := range b {
		c = c>>8 ^ crc16Table[byte(c)^x]
	}
	return c
}

// csum16 is the Internet checksum (RFC 1071) of b, v1model's
// HashAlgorithm.csum16: the ones' complement of the ones' complement sum of
// the 16-bit words.
func csum16(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
