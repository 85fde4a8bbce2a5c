package bgp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// The speaker reads learned routes from BGP's wire form: the UPDATE
// messages GoBGP's BMP client passes on as received (bmp.go), and the
// binary paths ListPath lists (learn.go). Only what a Route carries is
// read; GoBGP has already validated the messages (it sends on only what
// it accepted).

// Path attribute type codes (RFC 4271, 4760, 6793).
const (
	attrASPath    = 2
	attrNextHop   = 3
	attrMED       = 4
	attrLocalPref = 5
	attrMPReach   = 14
	attrMPUnreach = 15
	attrAS4Path   = 17

	flagExtLen = 0x10
)

// wireAttrs is what the speaker keeps of one UPDATE's (or one listed
// path's) attributes.
type wireAttrs struct {
	nextHop   netip.Addr
	asPath    []uint32
	med       uint32
	localPref uint32
	// mpReach and mpUnreach are the IPv4 unicast NLRI carried in
	// MP_REACH_NLRI and MP_UNREACH_NLRI, if any (RFC 4760 allows IPv4
	// unicast there too).
	mpReach, mpUnreach []byte
}

// parseAttrs reads the path attributes in b. twoByteAS says the AS_PATH
// has 2-octet AS numbers (a session without the 4-octet AS capability;
// AS4_PATH then carries the 4-octet path, RFC 6793).
func parseAttrs(b []byte, twoByteAS bool) (wireAttrs, error) {
	var a wireAttrs
	var as4 []uint32
	for len(b) > 0 {
		if len(b) < 3 {
			return a, errors.New("truncated path attribute header")
		}
		flags, typ := b[0], b[1]
		var n, hl int
		if flags&flagExtLen != 0 {
			if len(b) < 4 {
				return a, errors.New("truncated path attribute header")
			}
			n, hl = int(binary.BigEndian.Uint16(b[2:4])), 4
		} else {
			n, hl = int(b[2]), 3
		}
		if len(b) < hl+n {
			return a, fmt.Errorf("path attribute %d: %d bytes announced, %d left", typ, n, len(b)-hl)
		}
		v := b[hl : hl+n]
		b = b[hl+n:]
		var err error
		switch typ {
		case attrASPath:
			size := 4
			if twoByteAS {
				size = 2
			}
			a.asPath, err = parseASPath(v, size)
		case attrAS4Path:
			as4, err = parseASPath(v, 4)
		case attrNextHop:
			if len(v) != 4 {
				return a, fmt.Errorf("NEXT_HOP of %d bytes", len(v))
			}
			a.nextHop = netip.AddrFrom4([4]byte(v))
		case attrMED:
			if len(v) != 4 {
				return a, fmt.Errorf("MULTI_EXIT_DISC of %d bytes", len(v))
			}
			a.med = binary.BigEndian.Uint32(v)
		case attrLocalPref:
			if len(v) != 4 {
				return a, fmt.Errorf("LOCAL_PREF of %d bytes", len(v))
			}
			a.localPref = binary.BigEndian.Uint32(v)
		case attrMPReach:
			err = a.parseMPReach(v)
		case attrMPUnreach:
			if len(v) < 3 {
				return a, errors.New("truncated MP_UNREACH_NLRI")
			}
			if binary.BigEndian.Uint16(v) == 1 && v[2] == 1 {
				a.mpUnreach = v[3:]
			}
		}
		if err != nil {
			return a, err
		}
	}
	if twoByteAS && len(as4) > 0 && len(as4) <= len(a.asPath) {
		// RFC 6793 4.2.3: the leading ASes of AS_PATH (added by 2-octet
		// speakers) followed by AS4_PATH. Sets count as ASes here, as
		// the AS path is flattened anyway.
		a.asPath = append(a.asPath[:len(a.asPath)-len(as4):len(a.asPath)-len(as4)], as4...)
	}
	return a, nil
}

// parseASPath flattens the segments of an AS_PATH (sets in order).
func parseASPath(b []byte, size int) ([]uint32, error) {
	// Counted first, so the path is one allocation.
	count := 0
	for r := b; len(r) > 0; {
		if len(r) < 2 || len(r) < 2+int(r[1])*size {
			return nil, errors.New("truncated AS_PATH segment")
		}
		count += int(r[1])
		r = r[2+int(r[1])*size:]
	}
	out := make([]uint32, 0, count)
	for len(b) > 0 {
		n := int(b[1])
		b = b[2:]
		for range n {
			if size == 2 {
				out = append(out, uint32(binary.BigEndian.Uint16(b)))
			} else {
				out = append(out, binary.BigEndian.Uint32(b))
			}
			b = b[size:]
		}
	}
	return out, nil
}

func (a *wireAttrs) parseMPReach(v []byte) error {
	if len(v) < 5 {
		return errors.New("truncated MP_REACH_NLRI")
	}
	afi, safi, nhl := binary.BigEndian.Uint16(v), v[2], int(v[3])
	if afi != 1 || safi != 1 {
		return nil // another family: GoBGP is configured for IPv4 unicast only
	}
	if len(v) < 4+nhl+1 {
		return errors.New("truncated MP_REACH_NLRI next hop")
	}
	if nhl >= 4 {
		a.nextHop = netip.AddrFrom4([4]byte(v[4:8]))
	}
	// A reserved octet follows the next hop.
	a.mpReach = v[4+nhl+1:]
	return nil
}

// nextPrefix reads the first IPv4 prefix of an NLRI field (RFC 4271 4.3:
// a length in bits, then as many octets as it needs) and returns the
// rest.
func nextPrefix(b []byte) (netip.Prefix, []byte, error) {
	bits := int(b[0])
	n := (bits + 7) / 8
	if bits > 32 || len(b) < 1+n {
		return netip.Prefix{}, nil, fmt.Errorf("bad IPv4 prefix of %d bits", bits)
	}
	var a [4]byte
	copy(a[:], b[1:1+n])
	p, _ := netip.AddrFrom4(a).Prefix(bits) // masked, as GoBGP keeps it
	return p, b[1+n:], nil
}

// wireUpdate is one UPDATE message's IPv4 unicast content.
type wireUpdate struct {
	withdrawn, nlri []byte // NLRI fields, unparsed (nextPrefix)
	attrs           wireAttrs
	attrErr         error
}

// parseUpdate reads the BGP message m (with its 19-byte header). ok is
// false for a message that is not an UPDATE; an error in the attributes
// is kept in attrErr (its NLRI are then treated as withdrawn, RFC 7606).
func parseUpdate(m []byte, twoByteAS bool) (u wireUpdate, ok bool, err error) {
	if len(m) < 19+4 {
		return u, false, fmt.Errorf("BGP message of %d bytes", len(m))
	}
	if m[18] != 2 {
		return u, false, nil
	}
	b := m[19:]
	wl := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+wl+2 {
		return u, false, errors.New("UPDATE: withdrawn routes overrun the message")
	}
	u.withdrawn = b[2 : 2+wl]
	b = b[2+wl:]
	al := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+al {
		return u, false, errors.New("UPDATE: path attributes overrun the message")
	}
	u.nlri = b[2+al:]
	u.attrs, u.attrErr = parseAttrs(b[2:2+al], twoByteAS)
	return u, true, nil
}

// route fills rt's attributes from a.
func (a *wireAttrs) route(rt *Route) {
	rt.NextHop, rt.ASPath, rt.MED, rt.LocalPref = a.nextHop, a.asPath, a.med, a.localPref
}

// merge takes the attributes x read (ListPath lists a path's attributes
// one by one).
func (a *wireAttrs) merge(x *wireAttrs) {
	if x.nextHop.IsValid() {
		a.nextHop = x.nextHop
	}
	if x.asPath != nil {
		a.asPath = x.asPath
	}
	if x.med != 0 {
		a.med = x.med
	}
	if x.localPref != 0 {
		a.localPref = x.localPref
	}
}
