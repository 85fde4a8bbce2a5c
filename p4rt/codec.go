package p4rt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
)

// ErrValue is wrapped by every codec error, so callers can tell a bad value
// from a bad name or a transport failure.
var ErrValue = errors.New("bad value")

// A Value is a typed value for a match field, action parameter or packet
// metadata field. Its encoding depends on the width the P4Info gives the
// field, so values are only turned into bytes by the builders, which know it.
type Value interface {
	// Encode returns the canonical bytestring of the value for a field of
	// width bits, or an error wrapping ErrValue when it does not fit.
	Encode(width int) ([]byte, error)
}

// Uint is an unsigned integer value.
type Uint uint64

// Encode implements Value.
func (u Uint) Encode(width int) ([]byte, error) { return EncodeUint(uint64(u), width) }

// IP is an IPv4 or IPv6 address value; its width must be 32 or 128.
type IP netip.Addr

// Encode implements Value.
func (a IP) Encode(width int) ([]byte, error) { return EncodeAddr(netip.Addr(a), width) }

// MAC is a 48-bit Ethernet address value.
type MAC net.HardwareAddr

// Encode implements Value.
func (m MAC) Encode(width int) ([]byte, error) { return EncodeMAC(net.HardwareAddr(m), width) }

// Bytes is a big-endian value of any length; leading zero bytes are
// dropped to make it canonical.
type Bytes []byte

// Encode implements Value.
func (b Bytes) Encode(width int) ([]byte, error) { return Canonical(b, width) }

// Addr is a convenience for IP(netip.MustParseAddr(s)) in tests and tables.
func Addr(s string) IP { return IP(netip.MustParseAddr(s)) }

// HW is a convenience for MAC parsed from "aa:bb:cc:dd:ee:ff"; it panics on a
// malformed string, so use it only with constants.
func HW(s string) MAC {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return MAC(m)
}

// EncodeUint returns the canonical bytestring of v for a field of width bits:
// the shortest big-endian form, a single zero byte for zero.
func EncodeUint(v uint64, width int) ([]byte, error) {
	if err := checkWidth(width); err != nil {
		return nil, err
	}
	n := bits.Len64(v)
	if n > width {
		return nil, fmt.Errorf("%w: %d does not fit in %d bits", ErrValue, v, width)
	}
	size := max((n+7)/8, 1)
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	out := make([]byte, size)
	copy(out, buf[8-size:])
	return out, nil
}

// EncodeAddr returns the canonical bytestring of an IPv4 address for a 32-bit
// field or an IPv6 address for a 128-bit field.
func EncodeAddr(a netip.Addr, width int) ([]byte, error) {
	switch {
	case !a.IsValid():
		return nil, fmt.Errorf("%w: invalid IP address", ErrValue)
	case a.Is4() && width == 32:
		b := a.As4()
		return Canonical(b[:], width)
	case a.Is6() && !a.Is4In6() && width == 128:
		b := a.As16()
		return Canonical(b[:], width)
	}
	return nil, fmt.Errorf("%w: address %s does not fit a %d-bit field", ErrValue, a, width)
}

// EncodeMAC returns the canonical bytestring of a MAC address for a 48-bit field.
func EncodeMAC(m net.HardwareAddr, width int) ([]byte, error) {
	if len(m) != 6 || width != 48 {
		return nil, fmt.Errorf("%w: MAC %q does not fit a %d-bit field", ErrValue, m.String(), width)
	}
	return Canonical(m, width)
}

// Canonical strips leading zero bytes from a big-endian value (keeping one
// byte for zero) and checks that it fits in width bits. P4Runtime servers
// return canonical values, so only canonical values make what a client
// writes compare equal to what it reads back.
func Canonical(b []byte, width int) ([]byte, error) {
	if err := checkWidth(width); err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty bytestring", ErrValue)
	}
	i := 0
	for i < len(b)-1 && b[i] == 0 {
		i++
	}
	b = b[i:]
	if bitLen(b) > width {
		return nil, fmt.Errorf("%w: 0x%x does not fit in %d bits", ErrValue, b, width)
	}
	out := make([]byte, len(b))
	copy(out, b)
	return out, nil
}

// IsCanonical reports whether b is the canonical form of a value that fits
// in width bits.
func IsCanonical(b []byte, width int) bool {
	if len(b) == 0 || (len(b) > 1 && b[0] == 0) {
		return false
	}
	return bitLen(b) <= width
}

// Fits reports whether the big-endian value b, padded or not, fits in width bits.
func Fits(b []byte, width int) bool {
	return len(b) > 0 && bitLen(b) <= width
}

// DecodeUint decodes a bytestring of a field of width bits (at most 64).
func DecodeUint(b []byte, width int) (uint64, error) {
	if width > 64 {
		return 0, fmt.Errorf("%w: %d-bit field does not fit uint64", ErrValue, width)
	}
	if !Fits(b, width) {
		return 0, fmt.Errorf("%w: 0x%x is not a %d-bit value", ErrValue, b, width)
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

// DecodeAddr decodes a 32-bit field as IPv4 or a 128-bit field as IPv6.
func DecodeAddr(b []byte, width int) (netip.Addr, error) {
	if (width != 32 && width != 128) || !Fits(b, width) {
		return netip.Addr{}, fmt.Errorf("%w: 0x%x is not a %d-bit address", ErrValue, b, width)
	}
	full := padTo(b, width/8)
	if width == 32 {
		return netip.AddrFrom4([4]byte(full)), nil
	}
	return netip.AddrFrom16([16]byte(full)), nil
}

// DecodeMAC decodes a 48-bit field.
func DecodeMAC(b []byte) (net.HardwareAddr, error) {
	if !Fits(b, 48) {
		return nil, fmt.Errorf("%w: 0x%x is not a 48-bit MAC", ErrValue, b)
	}
	return net.HardwareAddr(padTo(b, 6)), nil
}

// MaskPrefix returns the canonical value of an LPM match: value with every
// bit past prefixLen cleared. The spec requires servers to refuse LPM values
// with bits set beyond the prefix, so the builders mask instead of erring.
func MaskPrefix(value []byte, width, prefixLen int) ([]byte, error) {
	if prefixLen < 0 || prefixLen > width {
		return nil, fmt.Errorf("%w: prefix length %d out of range for %d bits", ErrValue, prefixLen, width)
	}
	if !Fits(value, width) {
		return nil, fmt.Errorf("%w: 0x%x does not fit in %d bits", ErrValue, value, width)
	}
	full := padTo(value, (width+7)/8)
	// Bit 0 of the field is the most significant of its width bits; the
	// padded buffer carries (8 - width%8)%8 unused leading bits.
	lead := len(full)*8 - width
	keep := lead + prefixLen
	for i := range full {
		switch {
		case (i+1)*8 <= keep:
		case i*8 >= keep:
			full[i] = 0
		default:
			full[i] &= byte(0xff << (8 - (keep - i*8)))
		}
	}
	return Canonical(full, width)
}

// CheckTernary checks the rule of spec §9.1.1: a non-zero mask, and no value
// bit set outside the mask.
func CheckTernary(value, mask []byte, width int) error {
	if !Fits(value, width) || !Fits(mask, width) {
		return fmt.Errorf("%w: ternary value 0x%x / mask 0x%x do not fit in %d bits", ErrValue, value, mask, width)
	}
	n := (width + 7) / 8
	v, m := padTo(value, n), padTo(mask, n)
	zero := true
	for i := range v {
		if v[i]&^m[i] != 0 {
			return fmt.Errorf("%w: ternary value 0x%x has bits outside mask 0x%x", ErrValue, value, mask)
		}
		if m[i] != 0 {
			zero = false
		}
	}
	if zero {
		return fmt.Errorf("%w: ternary mask is zero; omit the field to match anything", ErrValue)
	}
	return nil
}

func checkWidth(width int) error {
	if width <= 0 {
		return fmt.Errorf("%w: field width %d", ErrValue, width)
	}
	return nil
}

// bitLen is the number of significant bits of a big-endian value.
func bitLen(b []byte) int {
	for i, c := range b {
		if c != 0 {
			return (len(b)-i-1)*8 + bits.Len8(c)
		}
	}
	return 0
}

// padTo returns a fresh n-byte big-endian copy of b (b must fit in n bytes
// once its leading zeros are dropped).
func padTo(b []byte, n int) []byte {
	out := make([]byte, n)
	i := 0
	for i < len(b)-n && b[i] == 0 {
		i++
	}
	copy(out[n-(len(b)-i):], b[i:])
	return out
}
