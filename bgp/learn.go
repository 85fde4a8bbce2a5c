package bgp

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// nbrRoutes is what the speaker has delivered from one neighbor address in
// one VPC's server, and what it needs to decide on that neighbor's next
// events. Guarded by the server's mu.
//
// The speaker reads every UPDATE GoBGP accepted from the neighbor, as
// received, from the BMP stream (bmp.go) and applies the import filter
// itself.
// What GoBGP's RIB decides without an UPDATE (routes dropped when a
// session ends, kept stale through a graceful restart and dropped at its
// end, re-filtered after a filter change) the speaker reads back from
// GoBGP's adj-RIB-in at those moments (resync), so GoBGP stays the
// authority on what a neighbor's routes are.
type nbrRoutes struct {
	name    string
	filter  []PrefixFilter
	localAS uint32
	// routes are the prefixes delivered and not withdrawn, each with
	// whether it is stale (kept through a graceful restart and not
	// announced again since).
	routes map[uint64]bool
	stale  int
	// rejected are the prefixes the neighbor announced that the import
	// filter kept out, stale or not as routes: with routes, what GoBGP's
	// adj-RIB-in holds (but routes with the speaker's AS in their path,
	// which GoBGP drops as loops), counted for NeighborState
	// without asking GoBGP, whose count walks the whole adj-RIB-in.
	rejected map[uint64]bool
	// bmpUp is whether the BMP stream is inside one of the neighbor's
	// sessions (after its Peer Up, before its Peer Down): routes are taken
	// only then.
	bmpUp bool
	// state is the last state GoBGP's watch reported (lower case), since
	// when it was entered: what Neighbors shows.
	state string
	since time.Time
	// deletedAt is when the neighbor's last session was deleted: a Peer
	// Up sent before it belongs to that session, whose routes were
	// withdrawn, and may still be in the BMP stream.
	deletedAt time.Time
}

// pkey is p (IPv4) as a map key.
func pkey(p netip.Prefix) uint64 {
	a := p.Addr().As4()
	return uint64(binary.BigEndian.Uint32(a[:]))<<8 | uint64(p.Bits())
}

func keyPrefix(k uint64) netip.Prefix {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], uint32(k>>8))
	return netip.PrefixFrom(netip.AddrFrom4(a), int(k&0xff))
}

// loops reports whether an AS path has the speaker's AS in it: GoBGP
// drops such a route (an AS loop) before its import policy.
func (n *nbrRoutes) loops(asPath []uint32) bool {
	return slices.Contains(asPath, n.localAS)
}

// accepts reports whether the neighbor's import filter lets rt through,
// and GoBGP would not have rejected it as an AS loop.
func (n *nbrRoutes) accepts(rt *Route) bool {
	if slices.Contains(rt.ASPath, n.localAS) {
		return false
	}
	if len(n.filter) == 0 {
		return true
	}
	bits := rt.Prefix.Bits()
	for _, f := range n.filter {
		ge, le := f.bounds()
		if bits >= ge && bits <= le && f.Prefix.Contains(rt.Prefix.Addr()) {
			return true
		}
	}
	return false
}

// withdraw removes k, appending its withdrawal to us if it was delivered.
func (n *nbrRoutes) withdraw(vpc string, k uint64, us []Update) []Update {
	stale, ok := n.routes[k]
	if !ok {
		return us
	}
	if stale {
		n.stale--
	}
	delete(n.routes, k)
	return append(us, Update{Route: Route{VPC: vpc, Neighbor: n.name, Prefix: keyPrefix(k)}, Withdraw: true})
}

// learn records rt (accepted) as delivered and not stale.
func (n *nbrRoutes) learn(k uint64) {
	if stale, ok := n.routes[k]; ok && stale {
		n.stale--
	}
	n.routes[k] = false
	delete(n.rejected, k)
}

// reject records that the neighbor announced k and the filter kept it
// out.
func (n *nbrRoutes) reject(k uint64) {
	if n.rejected == nil {
		n.rejected = make(map[uint64]bool)
	}
	n.rejected[k] = false
}

// dropStaleRejected forgets the rejected prefixes kept stale, which GoBGP
// has dropped.
func (n *nbrRoutes) dropStaleRejected() {
	maps.DeleteFunc(n.rejected, func(_ uint64, stale bool) bool { return stale })
}

// withdrawAll withdraws every route of n (only the stale ones if
// onlyStale).
func (n *nbrRoutes) withdrawAll(vpc string, onlyStale bool, us []Update) []Update {
	for _, k := range sortedKeys(n.routes) {
		if !onlyStale || n.routes[k] {
			us = n.withdraw(vpc, k, us)
		}
	}
	return us
}

func sortedKeys(m map[uint64]bool) []uint64 {
	ks := make([]uint64, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// queue hands us to the delivery goroutine.
func (s *Speaker) queue(us []Update) {
	if len(us) == 0 {
		return
	}
	s.pmu.Lock()
	s.pending = append(s.pending, us)
	s.pmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// resync brings what the speaker delivered from addr in line with GoBGP's
// adj-RIB-in for it now: delivered routes GoBGP no longer has are
// withdrawn, the others are stale exactly when GoBGP holds them stale
// (kept through a graceful restart and not announced again); with addNew
// the routes GoBGP has and the speaker has not delivered are delivered
// (after a filter change; otherwise their UPDATEs are still on the way in
// the BMP stream). The messages still in that stream from before the read
// are applied after it; each sets or removes whole routes, so they bring
// the same end state. v.mu is held throughout, so the stream's reader
// waits.
func (s *Speaker) resync(ctx context.Context, v *vpcServer, addr netip.Addr, addNew bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := v.nbrs[addr]
	if n == nil {
		return
	}
	type held struct {
		rt    Route
		stale bool
	}
	have := make(map[uint64]held)
	rejected := make(map[uint64]bool)
	err, bad := listAdjIn(ctx, v, addr, func(rt Route, stale bool) {
		k := pkey(rt.Prefix)
		if n.loops(rt.ASPath) {
			return // GoBGP keeps AS loops out; they are not counted
		}
		if !n.accepts(&rt) {
			rejected[k] = stale
			return
		}
		have[k] = held{rt, stale}
	})
	if err != nil {
		// No such neighbor any more (deleted meanwhile): SetNeighbors
		// withdrew its routes.
		return
	}
	if bad != nil {
		s.log.Warn("bgp: cannot read a path of GoBGP's adj-RIB-in; left out", "vpc", v.vpc, "neighbor", n.name, "err", bad)
	}
	n.rejected = rejected
	var us []Update
	for _, k := range sortedKeys(n.routes) {
		h, ok := have[k]
		if !ok {
			us = n.withdraw(v.vpc, k, us)
			continue
		}
		if was := n.routes[k]; was != h.stale {
			n.routes[k] = h.stale
			if h.stale {
				n.stale++
			} else {
				n.stale--
			}
		}
	}
	if addNew {
		ks := make([]uint64, 0, len(have))
		for k := range have {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		for _, k := range ks {
			if _, ok := n.routes[k]; ok {
				continue
			}
			h := have[k]
			h.rt.VPC, h.rt.Neighbor = v.vpc, n.name
			n.routes[k] = h.stale
			if h.stale {
				n.stale++
			}
			delete(n.rejected, k)
			us = append(us, Update{Route: h.rt})
		}
	}
	s.queue(us)
}

// listAdjIn calls fn with every path in addr's adj-RIB-in in v's server,
// read from GoBGP's binary form, and whether GoBGP holds it stale. err is
// ListPath's; bad the last path that could not be read (left out).
func listAdjIn(ctx context.Context, v *vpcServer, addr netip.Addr, fn func(rt Route, stale bool)) (err, bad error) {
	err = v.srv.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_ADJ_IN, Name: addr.String(), Family: ipv4Unicast, EnableOnlyBinary: true}, func(d *api.Destination) {
		for _, p := range d.Paths {
			if len(p.NlriBinary) == 0 {
				continue
			}
			var rt Route
			var perr error
			if rt.Prefix, _, perr = nextPrefix(p.NlriBinary); perr != nil {
				bad = perr
				continue
			}
			var a wireAttrs
			for _, b := range p.PattrsBinary {
				var x wireAttrs
				if x, perr = parseAttrs(b, false); perr != nil {
					bad = fmt.Errorf("path %v: %w", rt.Prefix, perr)
					break
				}
				a.merge(&x)
			}
			if perr == nil {
				a.route(&rt)
				fn(rt, p.Stale)
			}
		}
	})
	// Order the reads of the listed paths (converted on this goroutine)
	// before GoBGP's next writes to them: nothing else does, and the race
	// detector would rightly report the stale mark.
	v.srv.GetBgp(ctx, &api.GetBgpRequest{})
	return err, bad
}

// onBMPPeer follows a neighbor's session in the BMP stream, in order with
// its routes: a Peer Down ends the session (GoBGP has dropped its routes,
// or kept them stale for a graceful restart: read back), and routes are
// taken only between a Peer Up and its Peer Down.
func (s *Speaker) onBMPPeer(v *vpcServer, gen uint64, h peerHeader, up bool) bool {
	v.mu.Lock()
	if v.gen != gen || v.closed {
		v.mu.Unlock()
		return false
	}
	n := v.nbrs[h.addr]
	if n == nil || n.bmpUp == up {
		v.mu.Unlock()
		return true
	}
	if up && !n.deletedAt.IsZero() && h.time.Unix() <= n.deletedAt.Unix() {
		// A removed session's Peer Up still in the stream: its routes
		// are withdrawn and stay so. A session of the neighbor added
		// again is up in a later second (SetNeighbors waits for it).
		v.mu.Unlock()
		return true
	}
	n.bmpUp = up
	stale := n.stale > 0
	v.mu.Unlock()
	if !up || stale {
		// Back up after a graceful restart: GoBGP dropped the stale
		// routes if the new session did not negotiate it again.
		s.resync(context.Background(), v, h.addr, false)
	}
	return true
}

// onPeer follows a neighbor's session state for Neighbors (from GoBGP's
// watch; the routes follow the BMP stream's Peer Up and Down).
func (s *Speaker) onPeer(v *vpcServer, pe *api.WatchEventResponse_PeerEvent) {
	if pe.GetType() != api.WatchEventResponse_PeerEvent_STATE {
		return
	}
	addr, err := netip.ParseAddr(pe.GetPeer().GetState().GetNeighborAddress())
	if err != nil {
		return
	}
	state := strings.ToLower(pe.GetPeer().GetState().GetSessionState().String())
	v.mu.Lock()
	defer v.mu.Unlock()
	if n := v.nbrs[addr]; n != nil && n.state != state {
		n.state, n.since = state, time.Now()
	}
}

// onEOR handles a neighbor's End-of-RIB (from GoBGP's watch: it never
// comes through BMP). After a graceful restart GoBGP has just dropped the
// stale routes the neighbor did not announce again; the routes it did are
// in its adj-RIB-in, whether or not their UPDATEs have come through the
// BMP stream yet, so the read-back withdraws only what GoBGP dropped.
func (s *Speaker) onEOR(v *vpcServer, addr netip.Addr) {
	v.mu.Lock()
	n := v.nbrs[addr]
	stale := n != nil && n.stale > 0
	if n != nil && !stale {
		for _, st := range n.rejected {
			if st {
				stale = true
				break
			}
		}
	}
	v.mu.Unlock()
	if stale {
		s.resync(context.Background(), v, addr, false)
	}
}

// staleLoop withdraws the stale routes of neighbors that did not come back
// within their graceful-restart time: GoBGP then drops them from its
// adj-RIB-in without an event the speaker could watch, so every second it
// asks GoBGP how many routes each such neighbor still has.
func (s *Speaker) staleLoop() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.done:
			return
		}
		s.smu.Lock()
		vs := slices.Clone(s.all)
		s.smu.Unlock()
		for _, v := range vs {
			var addrs []netip.Addr
			v.mu.Lock()
			for a, n := range v.nbrs {
				if !n.bmpUp && n.stale > 0 {
					addrs = append(addrs, a)
				}
			}
			v.mu.Unlock()
			for _, a := range addrs {
				var received uint64
				found := false
				v.srv.ListPeer(context.Background(), &api.ListPeerRequest{Address: a.String()}, func(p *api.Peer) {
					found = true
					for _, af := range p.GetAfiSafis() {
						received += af.GetState().GetReceived()
					}
				})
				if !found || received > 0 {
					continue
				}
				v.mu.Lock()
				var us []Update
				if n := v.nbrs[a]; n != nil {
					us = n.withdrawAll(v.vpc, true, nil)
					n.dropStaleRejected()
				}
				s.queue(us)
				v.mu.Unlock()
			}
		}
	}
}
