package controller

import (
	"encoding/binary"
	"iter"
	"net/netip"
	"slices"
)

// learnedStore holds one VPC's BGP-learned routes compactly, as a full
// table from one router is a million of them: a route is 8 bytes (its
// neighbor and its attributes as small integers) under an 8-byte prefix
// key, in maps without pointers, which the collector does not scan. The
// attributes (next hop, AS path, MED, local preference) are interned: a
// router sends a few distinct sets for a whole table, hundreds of
// prefixes to an UPDATE.
type learnedStore struct {
	// one holds the prefixes learned from one neighbor (nearly all of
	// them); more those learned from several. A prefix is in one map or
	// the other, never both.
	one  map[uint64]lroute
	more map[uint64][]lroute

	// Neighbors by index; few, and kept for the store's life.
	nbs   []string
	nbIdx map[string]uint32

	// Interned attributes by index, counted by the routes using them: an
	// index whose count falls to 0 is free for reuse.
	attrs   []lattrs
	attrIdx map[string]uint32
	free    []uint32
	// keyBuf is reused to build attrIdx's lookup keys.
	keyBuf []byte
}

// lroute is one learned route of a prefix: its neighbor and attributes.
type lroute struct{ nb, attr uint32 }

type lattrs struct {
	nextHop        netip.Addr
	asPath         []uint32
	med, localPref uint32
	refs           int
	key            string
}

func newLearnedStore() *learnedStore {
	return &learnedStore{one: map[uint64]lroute{}, more: map[uint64][]lroute{}, nbIdx: map[string]uint32{}, attrIdx: map[string]uint32{}}
}

// packPrefix is an IPv4 prefix as a key (UpdateLearnedRoutes takes IPv4
// only).
func packPrefix(p netip.Prefix) uint64 {
	a := p.Addr().As4()
	return uint64(binary.BigEndian.Uint32(a[:]))<<8 | uint64(p.Bits())
}

func unpackPrefix(k uint64) netip.Prefix {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], uint32(k>>8))
	return netip.PrefixFrom(netip.AddrFrom4(a), int(k&0xff))
}

func (s *learnedStore) len() int { return len(s.one) + len(s.more) }

// routes are the routes of prefix k, in buf if there is one.
func (s *learnedStore) routes(k uint64, buf *[1]lroute) []lroute {
	if r, ok := s.one[k]; ok {
		buf[0] = r
		return buf[:]
	}
	return s.more[k]
}

// prefixes are every prefix with a learned route, in no order.
func (s *learnedStore) prefixes() iter.Seq[netip.Prefix] {
	return func(yield func(netip.Prefix) bool) {
		for k := range s.one {
			if !yield(unpackPrefix(k)) {
				return
			}
		}
		for k := range s.more {
			if !yield(unpackPrefix(k)) {
				return
			}
		}
	}
}

// neighbor is neighbor's index, made on first use.
func (s *learnedStore) neighbor(name string) uint32 {
	if i, ok := s.nbIdx[name]; ok {
		return i
	}
	i := uint32(len(s.nbs))
	s.nbs = append(s.nbs, name)
	s.nbIdx[name] = i
	return i
}

// intern is the index of r's attributes, counted once more.
func (s *learnedStore) intern(r *LearnedRoute) uint32 {
	// The address's length varies (none, IPv4, IPv6): it leads, so that
	// keys of different lengths cannot be read alike.
	b := append(s.keyBuf[:0], 0)
	b, _ = r.NextHop.AppendBinary(b) // never fails
	b[0] = byte(len(b) - 1)
	b = binary.BigEndian.AppendUint32(b, r.MED)
	b = binary.BigEndian.AppendUint32(b, r.LocalPref)
	for _, as := range r.ASPath {
		b = binary.BigEndian.AppendUint32(b, as)
	}
	s.keyBuf = b
	if i, ok := s.attrIdx[string(b)]; ok {
		s.attrs[i].refs++
		return i
	}
	a := lattrs{nextHop: r.NextHop, asPath: slices.Clone(r.ASPath), med: r.MED, localPref: r.LocalPref, refs: 1, key: string(b)}
	var i uint32
	if n := len(s.free); n > 0 {
		i = s.free[n-1]
		s.free = s.free[:n-1]
		s.attrs[i] = a
	} else {
		i = uint32(len(s.attrs))
		s.attrs = append(s.attrs, a)
	}
	s.attrIdx[a.key] = i
	return i
}

// release counts attributes i once less, freeing them at 0.
func (s *learnedStore) release(i uint32) {
	a := &s.attrs[i]
	if a.refs--; a.refs > 0 {
		return
	}
	delete(s.attrIdx, a.key)
	*a = lattrs{}
	s.free = append(s.free, i)
}

// set adds r, or replaces the route of its neighbor and prefix.
func (s *learnedStore) set(r *LearnedRoute) {
	k := packPrefix(r.Prefix)
	nr := lroute{nb: s.neighbor(r.Neighbor), attr: s.intern(r)}
	if cur, ok := s.one[k]; ok {
		if cur.nb == nr.nb {
			s.one[k] = nr
			s.release(cur.attr)
			return
		}
		delete(s.one, k)
		s.more[k] = []lroute{cur, nr}
		return
	}
	rs, ok := s.more[k]
	if !ok {
		s.one[k] = nr
		return
	}
	if i := slices.IndexFunc(rs, func(x lroute) bool { return x.nb == nr.nb }); i >= 0 {
		s.release(rs[i].attr)
		rs[i] = nr
		return
	}
	s.more[k] = append(rs, nr)
}

// del removes neighbor's route of p, and reports whether there was one.
func (s *learnedStore) del(neighbor string, p netip.Prefix) bool {
	nb, ok := s.nbIdx[neighbor]
	if !ok {
		return false
	}
	k := packPrefix(p)
	if cur, ok := s.one[k]; ok {
		if cur.nb != nb {
			return false
		}
		delete(s.one, k)
		s.release(cur.attr)
		return true
	}
	rs := s.more[k]
	i := slices.IndexFunc(rs, func(x lroute) bool { return x.nb == nb })
	if i < 0 {
		return false
	}
	s.release(rs[i].attr)
	rs = slices.Delete(rs, i, i+1)
	if len(rs) == 1 {
		delete(s.more, k)
		s.one[k] = rs[0]
	} else {
		s.more[k] = rs
	}
	return true
}

// of calls f with every prefix neighbor has a route for.
func (s *learnedStore) of(neighbor string, f func(netip.Prefix)) {
	nb, ok := s.nbIdx[neighbor]
	if !ok {
		return
	}
	for k, r := range s.one {
		if r.nb == nb {
			f(unpackPrefix(k))
		}
	}
	for k, rs := range s.more {
		if slices.ContainsFunc(rs, func(x lroute) bool { return x.nb == nb }) {
			f(unpackPrefix(k))
		}
	}
}
