package bgp

import (
	"context"
	"fmt"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
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

// onEvent runs on GoBGP's watch goroutine of v's server, for a session
// state change or an End-of-RIB (the routes come through BMP).
func (s *Speaker) onEvent(v *vpcServer, r *api.WatchEventResponse) {
	if pe := r.GetPeer(); pe != nil {
		s.onPeer(v, pe)
		return
	}
	for _, p := range r.GetTable().GetPaths() {
		if p.Nlri == nil { // End-of-RIB
			if a, err := netip.ParseAddr(p.NeighborIp); err == nil {
				s.onEOR(v, a)
			}
		}
	}
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
	for _, addr := range addrs {
		v.mu.Lock()
		n := v.nbrs[addr]
		v.mu.Unlock()
		if n == nil {
			continue
		}
		err, bad := listAdjIn(ctx, v, addr, func(rt Route, _ bool) {
			v.mu.Lock()
			ok := n.accepts(&rt)
			rt.VPC, rt.Neighbor = vpc, n.name
			v.mu.Unlock()
			if ok {
				out = append(out, rt)
			}
		})
		if err != nil && ctx.Err() != nil {
			return nil, fmt.Errorf("bgp: list routes of VPC %s: %w", vpc, err)
		}
		// Otherwise the neighbor was removed meanwhile: it has no routes.
		if bad != nil {
			derr = bad
		}
	}
	if derr != nil {
		return out, fmt.Errorf("bgp: list routes of VPC %s: %w", vpc, derr)
	}
	return out, nil
}
