package bgp

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"slices"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// Route is a route learned from an on-prem neighbor.
type Route struct {
	VPC      string
	Neighbor string // the neighbor's Name
	Prefix   netip.Prefix
	NextHop  netip.Addr
	// ASPath has the sets flattened in order, as for AS-path length. The
	// routes of one UPDATE share it: read only.
	ASPath []uint32
	MED    uint32
	// LocalPref is what the neighbor sent; eBGP neighbors send none (0).
	LocalPref uint32
}

// Update is one change to the learned routes. A route is identified by
// (VPC, Neighbor, Prefix): an update that is not a withdrawal adds or
// replaces it, a withdrawal removes it. A withdrawal of a route the
// consumer does not have (one that an import filter dropped) is a no-op.
type Update struct {
	Route    Route
	Withdraw bool
}

// onEvent runs on GoBGP's watch goroutine of v's server, once per UPDATE
// message (pre-policy), End-of-RIB or session state change; it only
// decodes, filters and queues, so GoBGP never waits on the consumer.
func (s *Speaker) onEvent(v *vpcServer, r *api.WatchEventResponse) {
	defer s.fence(v)
	if pe := r.GetPeer(); pe != nil {
		s.onPeer(v, pe)
		return
	}
	t := r.GetTable()
	if t == nil || len(t.Paths) == 0 {
		return
	}
	us := make([]Update, 0, len(t.Paths))
	var d pathDecoder
	// The paths of an event are one UPDATE's, from one neighbor.
	var lastSrc string
	var n *nbrRoutes
	v.mu.Lock()
	for _, p := range t.Paths {
		if p.NeighborIp != lastSrc || n == nil {
			lastSrc, n = p.NeighborIp, v.nbrs[sourceOf(p)]
		}
		if n == nil {
			continue
		}
		if p.Nlri == nil {
			// End-of-RIB: after a graceful restart, GoBGP drops the
			// routes the neighbor did not announce again.
			if n.stale > 0 {
				us = n.withdrawAll(v.vpc, true, us)
			}
			n.dropStaleRejected()
			continue
		}
		if !n.deletedAt.IsZero() && !p.GetAge().AsTime().After(n.deletedAt) {
			continue // from a deleted session, whose routes are withdrawn
		}
		rt, _, err := d.decode(p)
		if err != nil {
			s.log.Warn("bgp: cannot decode a learned path; dropped", "vpc", v.vpc, "neighbor", n.name, "err", err)
			continue
		}
		k := pkey(rt.Prefix)
		if p.IsWithdraw || !n.accepts(&rt) {
			us = n.withdraw(v.vpc, k, us)
			if p.IsWithdraw {
				delete(n.rejected, k)
			} else {
				n.reject(k)
			}
			continue
		}
		n.learn(k)
		rt.VPC, rt.Neighbor = v.vpc, n.name
		us = append(us, Update{Route: rt})
	}
	s.queue(us)
	v.mu.Unlock()
}

// fence works around a data race in GoBGP v3.37: the paths its watch
// converts share their origin with the adj-RIB-in's, and when a neighbor
// that negotiated graceful restart goes down, GoBGP's server goroutine
// marks them stale (Path.MarkStale) while nothing orders the watch
// goroutine's earlier reads (toPathAPI reads IsStale) before that write.
// (With VRFs the watched paths were VRF copies with an origin of their
// own, which is also why the stale mark never reached Route.) The race is
// benign (a bool, set while nothing reads it) but the race detector is
// right to report it; fence orders the watch's reads before the server's
// next operations: the watch goroutine marks v dirty under fmu, and
// fenceLoop takes the dirty set under fmu and makes one management call
// to each dirty server (which its server goroutine receives before it
// handles anything else). One call per burst of events, not per path.
func (s *Speaker) fence(v *vpcServer) {
	s.fmu.Lock()
	s.dirty[v] = true
	s.fmu.Unlock()
	select {
	case s.fenceWake <- struct{}{}:
	default:
	}
}

func (s *Speaker) fenceLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.fenceWake:
		case <-s.done:
			return
		}
		s.fmu.Lock()
		dirty := s.dirty
		s.dirty = make(map[*vpcServer]bool)
		s.fmu.Unlock()
		for v := range dirty {
			v.srv.GetBgp(context.Background(), &api.GetBgpRequest{})
		}
	}
}

// sourceOf is the address of the neighbor p was learned from; invalid for
// a path the speaker originated.
func sourceOf(p *api.Path) netip.Addr {
	a, _ := netip.ParseAddr(p.NeighborIp)
	return a
}

// deliverLoop hands queued updates to Deliver, a whole queue at a time,
// one call per queued slice: under a burst the consumer gets them in a
// run of calls with nothing between them (internal/bgplink gathers them
// into one batch), and pays per batch, not per route.
func (s *Speaker) deliverLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
		s.pmu.Lock()
		batch := s.pending
		s.pending = nil
		s.pmu.Unlock()
		if s.cfg.Deliver != nil {
			for _, us := range batch {
				s.cfg.Deliver(us)
			}
		}
	}
}

// Learned returns the routes learned in vpc now, from every neighbor of
// the VPC (not only the best per prefix), including those kept while a
// neighbor restarts gracefully: what each neighbor's adj-RIB-in holds and
// its import filter lets through (learned paths never enter GoBGP's
// global table, see doc.go).
func (s *Speaker) Learned(ctx context.Context, vpc string) ([]Route, error) {
	s.op.Lock()
	if err := s.running(); err != nil {
		s.op.Unlock()
		return nil, err
	}
	v, ok := s.servers[vpc]
	var addrs []netip.Addr
	if ok {
		addrs = sortedAddrs(v.neighbors)
	}
	s.op.Unlock()
	var out []Route
	var derr error
	var dec pathDecoder
	for _, addr := range addrs {
		v.mu.Lock()
		n := v.nbrs[addr]
		v.mu.Unlock()
		if n == nil {
			continue
		}
		err := v.srv.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_ADJ_IN, Name: addr.String(), Family: ipv4Unicast}, func(d *api.Destination) {
			for _, p := range d.Paths {
				rt, _, err := dec.decode(p)
				if err != nil {
					derr = err
					continue
				}
				v.mu.Lock()
				ok := n.accepts(&rt)
				rt.VPC, rt.Neighbor = vpc, n.name
				v.mu.Unlock()
				if ok {
					out = append(out, rt)
				}
			}
		})
		// Order the reads of the listed paths before GoBGP's next writes
		// (see fence).
		v.srv.GetBgp(ctx, &api.GetBgpRequest{})
		if err != nil && ctx.Err() != nil {
			return nil, fmt.Errorf("bgp: list routes of VPC %s: %w", vpc, err)
		}
		// Otherwise the neighbor was removed meanwhile: it has no routes.
	}
	if derr != nil {
		return out, fmt.Errorf("bgp: list routes of VPC %s: %w", vpc, derr)
	}
	return out, nil
}

// decodePath reads the route in p, and the VNI of the VRF it belongs to
// when p is a VPNv4 path (0 for plain IPv4).
func decodePath(p *api.Path) (Route, uint32, error) {
	var d pathDecoder
	return d.decode(p)
}

// pathDecoder decodes the paths of one watch event, which are one UPDATE's
// and so share their attributes: those it decodes once, for the first path
// that has them, and the routes share the result (their AS path too).
// GoBGP marshals every path's attributes anew, so they are compared as
// bytes.
type pathDecoder struct {
	attrs []*anypb.Any // the attributes decoded last
	rt    Route        // what they decoded to
	err   error
}

func sameAttrs(a, b []*anypb.Any) bool {
	return len(a) == len(b) && len(a) > 0 && slices.EqualFunc(a, b, func(x, y *anypb.Any) bool {
		return x.GetTypeUrl() == y.GetTypeUrl() && bytes.Equal(x.GetValue(), y.GetValue())
	})
}

func (d *pathDecoder) decode(p *api.Path) (Route, uint32, error) {
	rt, vni, err := decodeNLRI(p.Nlri)
	if err != nil || p.IsWithdraw {
		return rt, vni, err
	}
	if !sameAttrs(d.attrs, p.Pattrs) {
		d.attrs, d.rt, d.err = p.Pattrs, Route{}, nil
		for _, a := range p.Pattrs {
			if err := decodeAttr(a, &d.rt); err != nil {
				d.err = err
				break
			}
		}
	}
	if d.err != nil {
		return rt, 0, fmt.Errorf("path %v: %w", rt.Prefix, d.err)
	}
	rt.NextHop, rt.ASPath, rt.MED, rt.LocalPref = d.rt.NextHop, d.rt.ASPath, d.rt.MED, d.rt.LocalPref
	return rt, vni, nil
}

// decodeNLRI reads the prefix of a path (and the VNI of a VPNv4 one). An
// IPv4 prefix, every path of a large table, is read from the wire form
// directly: unmarshalling a message for it cost more than the rest of
// the speaker's work on the path.
func decodeNLRI(nlri *anypb.Any) (Route, uint32, error) {
	var rt Route
	var vni uint32
	var pfx string
	var bits uint32
	switch {
	case nlri.MessageIs((*api.IPAddressPrefix)(nil)):
		if p, ok := wirePrefix(nlri.GetValue()); ok {
			rt.Prefix = p
			return rt, 0, nil
		}
		var n api.IPAddressPrefix
		if err := nlri.UnmarshalTo(&n); err != nil {
			return rt, 0, err
		}
		pfx, bits = n.Prefix, n.PrefixLen
	case nlri.MessageIs((*api.LabeledVPNIPAddressPrefix)(nil)):
		var n api.LabeledVPNIPAddressPrefix
		if err := nlri.UnmarshalTo(&n); err != nil {
			return rt, 0, err
		}
		var d api.RouteDistinguisherTwoOctetASN
		if n.Rd == nil || n.Rd.UnmarshalTo(&d) != nil {
			return rt, 0, fmt.Errorf("path %s: route distinguisher is not one of ours", n.Prefix)
		}
		vni, pfx, bits = d.Assigned, n.Prefix, n.PrefixLen
	default:
		return rt, 0, fmt.Errorf("unexpected NLRI type %s", nlri.GetTypeUrl())
	}
	a, err := netip.ParseAddr(pfx)
	if err != nil {
		return rt, 0, fmt.Errorf("prefix %q: %w", pfx, err)
	}
	rt.Prefix, err = a.Prefix(int(bits))
	if err != nil {
		return rt, 0, fmt.Errorf("prefix %s/%d: %w", pfx, bits, err)
	}
	return rt, vni, nil
}

// wirePrefix reads an IPAddressPrefix message (prefix_len = 1, prefix =
// 2) holding an IPv4 prefix, without allocating; ok is false for anything
// else, which the caller unmarshals the ordinary way.
func wirePrefix(b []byte) (netip.Prefix, bool) {
	var bits uint64
	var addr []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return netip.Prefix{}, false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			bits, n = protowire.ConsumeVarint(b)
		case num == 2 && typ == protowire.BytesType:
			addr, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return netip.Prefix{}, false
		}
		b = b[n:]
	}
	a, ok := parseIPv4(addr)
	if !ok || bits > 32 {
		return netip.Prefix{}, false
	}
	p, err := a.Prefix(int(bits)) // masked, as for any other prefix
	return p, err == nil
}

// parseIPv4 reads a dotted quad (no leading zeros, as GoBGP writes it).
func parseIPv4(b []byte) (netip.Addr, bool) {
	var a [4]byte
	i := 0
	for k := range 4 {
		if k > 0 {
			if i >= len(b) || b[i] != '.' {
				return netip.Addr{}, false
			}
			i++
		}
		start, v := i, 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' && i-start < 3 {
			v = v*10 + int(b[i]-'0')
			i++
		}
		if i == start || v > 255 || (i-start > 1 && b[start] == '0') {
			return netip.Addr{}, false
		}
		a[k] = byte(v)
	}
	if i != len(b) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(a), true
}

func decodeAttr(a *anypb.Any, rt *Route) error {
	switch {
	case a.MessageIs((*api.AsPathAttribute)(nil)):
		var v api.AsPathAttribute
		if err := a.UnmarshalTo(&v); err != nil {
			return err
		}
		for _, seg := range v.Segments {
			rt.ASPath = append(rt.ASPath, seg.Numbers...)
		}
	case a.MessageIs((*api.MultiExitDiscAttribute)(nil)):
		var v api.MultiExitDiscAttribute
		if err := a.UnmarshalTo(&v); err != nil {
			return err
		}
		rt.MED = v.Med
	case a.MessageIs((*api.LocalPrefAttribute)(nil)):
		var v api.LocalPrefAttribute
		if err := a.UnmarshalTo(&v); err != nil {
			return err
		}
		rt.LocalPref = v.LocalPref
	case a.MessageIs((*api.NextHopAttribute)(nil)):
		var v api.NextHopAttribute
		if err := a.UnmarshalTo(&v); err != nil {
			return err
		}
		nh, err := netip.ParseAddr(v.NextHop)
		if err != nil {
			return fmt.Errorf("next hop %q: %w", v.NextHop, err)
		}
		rt.NextHop = nh
	case a.MessageIs((*api.MpReachNLRIAttribute)(nil)):
		var v api.MpReachNLRIAttribute
		if err := a.UnmarshalTo(&v); err != nil {
			return err
		}
		if len(v.NextHops) > 0 {
			nh, err := netip.ParseAddr(v.NextHops[0])
			if err != nil {
				return fmt.Errorf("next hop %q: %w", v.NextHops[0], err)
			}
			rt.NextHop = nh
		}
	}
	return nil
}
