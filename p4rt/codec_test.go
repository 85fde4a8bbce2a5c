package p4rt

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

func TestEncodeUint(t *testing.T) {
	tests := []struct {
		name  string
		v     uint64
		width int
		want  []byte
		bad   bool
	}{
		{"zero is one byte", 0, 9, []byte{0}, false},
		{"9-bit port 1", 1, 9, []byte{1}, false},
		{"9-bit port 255 (CPU)", 255, 9, []byte{0xff}, false},
		{"9-bit port 511 max", 511, 9, []byte{0x01, 0xff}, false},
		{"9-bit port 512 too big", 512, 9, nil, true},
		{"24-bit VNI max", 0xffffff, 24, []byte{0xff, 0xff, 0xff}, false},
		{"24-bit VNI overflow", 0x1000000, 24, nil, true},
		{"24-bit VNI small is short", 7, 24, []byte{7}, false},
		{"48-bit", 0xffffffffffff, 48, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, false},
		{"48-bit overflow", 1 << 48, 48, nil, true},
		{"1-bit", 1, 1, []byte{1}, false},
		{"1-bit overflow", 2, 1, nil, true},
		{"64-bit max", ^uint64(0), 64, bytes.Repeat([]byte{0xff}, 8), false},
		{"zero width", 0, 0, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EncodeUint(tc.v, tc.width)
			if tc.bad {
				if !errors.Is(err, ErrValue) {
					t.Fatalf("EncodeUint(%d, %d) = %x, %v; want ErrValue", tc.v, tc.width, got, err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("EncodeUint(%d, %d) = %x, %v; want %x", tc.v, tc.width, got, err, tc.want)
			}
			back, err := DecodeUint(got, tc.width)
			if err != nil || back != tc.v {
				t.Fatalf("DecodeUint(%x) = %d, %v; want %d", got, back, err, tc.v)
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct {
		in    []byte
		width int
		want  []byte
		bad   bool
	}{
		{[]byte{0, 0, 1}, 24, []byte{1}, false},
		{[]byte{0, 0, 0}, 24, []byte{0}, false},
		{[]byte{0x01, 0xff}, 9, []byte{0x01, 0xff}, false},
		{[]byte{0x02, 0x00}, 9, nil, true},
		{[]byte{0, 0x02, 0x00}, 9, nil, true},
		{[]byte{}, 8, nil, true},
	}
	for _, tc := range tests {
		got, err := Canonical(tc.in, tc.width)
		if tc.bad != (err != nil) || !bytes.Equal(got, tc.want) {
			t.Errorf("Canonical(%x, %d) = %x, %v; want %x (bad=%v)", tc.in, tc.width, got, err, tc.want, tc.bad)
		}
		if err == nil && !IsCanonical(got, tc.width) {
			t.Errorf("IsCanonical(%x, %d) = false after Canonical", got, tc.width)
		}
	}
	if IsCanonical([]byte{0, 1}, 16) {
		t.Error("IsCanonical(0001) = true; a leading zero byte is not canonical")
	}
	in := []byte{0, 5}
	out, _ := Canonical(in, 16)
	out[0] = 9
	if in[1] != 5 {
		t.Error("Canonical returned a slice aliasing its input")
	}
}

func TestAddrAndMAC(t *testing.T) {
	tests := []struct {
		name  string
		v     Value
		width int
		want  []byte
		bad   bool
	}{
		{"IPv4", Addr("10.1.2.3"), 32, []byte{10, 1, 2, 3}, false},
		{"IPv4 leading zero dropped", Addr("0.0.1.2"), 32, []byte{1, 2}, false},
		{"IPv4 zero", Addr("0.0.0.0"), 32, []byte{0}, false},
		{"IPv4 in 128-bit field", Addr("10.0.0.1"), 128, nil, true},
		{"IPv6", Addr("2001:db8::1"), 128, append([]byte{0x20, 0x01, 0x0d, 0xb8}, append(make([]byte, 11), 1)...), false},
		{"IPv6 in 32-bit field", Addr("2001:db8::1"), 32, nil, true},
		{"invalid address", IP(netip.Addr{}), 32, nil, true},
		{"MAC", HW("00:11:22:33:44:55"), 48, []byte{0x11, 0x22, 0x33, 0x44, 0x55}, false},
		{"MAC broadcast", HW("ff:ff:ff:ff:ff:ff"), 48, bytes.Repeat([]byte{0xff}, 6), false},
		{"MAC in 32-bit field", HW("00:11:22:33:44:55"), 32, nil, true},
		{"Bytes padded", Bytes{0, 0, 0x12, 0x34}, 24, []byte{0x12, 0x34}, false},
		{"Bytes too wide", Bytes{0x01, 0, 0, 0}, 24, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.v.Encode(tc.width)
			if tc.bad != (err != nil) || !bytes.Equal(got, tc.want) {
				t.Fatalf("Encode(%d) = %x, %v; want %x (bad=%v)", tc.width, got, err, tc.want, tc.bad)
			}
		})
	}
	a, err := DecodeAddr([]byte{1, 2}, 32)
	if err != nil || a != netip.MustParseAddr("0.0.1.2") {
		t.Errorf("DecodeAddr(0102) = %v, %v", a, err)
	}
	m, err := DecodeMAC([]byte{0x11, 0x22, 0x33, 0x44, 0x55})
	if err != nil || m.String() != "00:11:22:33:44:55" {
		t.Errorf("DecodeMAC = %v, %v", m, err)
	}
	if _, err := DecodeMAC(bytes.Repeat([]byte{1}, 7)); err == nil {
		t.Error("DecodeMAC of 7 bytes succeeded")
	}
}

func TestMaskPrefix(t *testing.T) {
	tests := []struct {
		in     []byte
		width  int
		prefix int
		want   []byte
		bad    bool
	}{
		{[]byte{10, 1, 2, 3}, 32, 24, []byte{10, 1, 2, 0}, false},
		{[]byte{10, 1, 2, 3}, 32, 8, []byte{10, 0, 0, 0}, false},
		{[]byte{10, 1, 2, 3}, 32, 32, []byte{10, 1, 2, 3}, false},
		{[]byte{10, 1, 2, 3}, 32, 0, []byte{0}, false},
		{[]byte{10, 255, 2, 3}, 32, 12, []byte{10, 0xf0, 0, 0}, false},
		// 9-bit field: prefix bits count from the field's top bit, not the
		// byte's; 0x1ff/3 keeps the top three of nine bits.
		{[]byte{0x01, 0xff}, 9, 3, []byte{0x01, 0xc0}, false},
		{[]byte{0x01, 0xff}, 9, 1, []byte{0x01, 0x00}, false},
		{[]byte{0xff, 0xff, 0xff}, 24, 20, []byte{0xff, 0xff, 0xf0}, false},
		{[]byte{10, 1, 2, 3}, 32, 33, nil, true},
		{[]byte{1, 10, 1, 2, 3}, 32, 8, nil, true},
	}
	for _, tc := range tests {
		got, err := MaskPrefix(tc.in, tc.width, tc.prefix)
		if tc.bad != (err != nil) || !bytes.Equal(got, tc.want) {
			t.Errorf("MaskPrefix(%x, %d, %d) = %x, %v; want %x (bad=%v)", tc.in, tc.width, tc.prefix, got, err, tc.want, tc.bad)
		}
	}
}

func TestCheckTernary(t *testing.T) {
	tests := []struct {
		value, mask []byte
		width       int
		bad         bool
	}{
		{[]byte{0x0a}, []byte{0xff}, 8, false},
		{[]byte{0x0a}, []byte{0x0f}, 8, false},
		{[]byte{0x1a}, []byte{0x0f}, 8, true}, // value bit outside mask
		{[]byte{0x00}, []byte{0x00}, 8, true}, // zero mask: omit the field instead
		{[]byte{0x01, 0x00}, []byte{0x01, 0x00}, 9, false},
		{[]byte{0x02, 0x00}, []byte{0x03, 0x00}, 9, true}, // too wide
	}
	for _, tc := range tests {
		err := CheckTernary(tc.value, tc.mask, tc.width)
		if tc.bad != (err != nil) {
			t.Errorf("CheckTernary(%x, %x, %d) = %v; want bad=%v", tc.value, tc.mask, tc.width, err, tc.bad)
		}
	}
}
