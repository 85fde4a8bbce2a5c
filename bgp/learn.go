package bgp

import (
	"context"
	"encoding/binary"
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
// The speaker watches GoBGP's pre-policy adj-RIB-in (one event per UPDATE
// message: GoBGP's post-policy watch copies the neighbor's whole
// configuration for every path) and applies the import filter itself.
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
	// which GoBGP drops before the watch), counted for NeighborState
	// without asking GoBGP, whose count walks the whole adj-RIB-in.
	rejected map[uint64]bool
	// up is whether the last state event said established; state is
	// that event's state (lower case), since when it was entered.
	up    bool
	state string
	since time.Time
	// deletedAt is when the neighbor's last session was deleted: paths
	// GoBGP received before it belong to that session, and may still be
	// queued in the watch after the speaker withdrew them all.
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
// adj-RIB-in for it now. Delivered routes GoBGP no longer has are
// withdrawn; with markStale the others are marked stale (the session just
// went down and GoBGP kept them for a graceful restart); with addNew the
// routes GoBGP has and the speaker has not delivered are delivered (after
// a filter change; otherwise their UPDATE events are still on the way).
// Events queued in the watch from before the read are applied after it;
// each sets or removes one route, so they bring the same end state.
// v.mu is held throughout, so the watch callback waits.
func (s *Speaker) resync(ctx context.Context, v *vpcServer, addr netip.Addr, markStale, addNew bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := v.nbrs[addr]
	if n == nil {
		return
	}
	have := make(map[uint64]Route)
	rejected := make(map[uint64]bool)
	var dec pathDecoder
	err := v.srv.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_ADJ_IN, Name: addr.String(), Family: ipv4Unicast}, func(d *api.Destination) {
		for _, p := range d.Paths {
			rt, _, err := dec.decode(p)
			if err != nil {
				continue
			}
			k := pkey(rt.Prefix)
			if !n.accepts(&rt) {
				// AS loops never reach the watch: counted there, they
				// would count here only after a read-back.
				if !slices.Contains(rt.ASPath, n.localAS) {
					rejected[k] = markStale || n.rejected[k]
				}
				continue
			}
			have[k] = rt
		}
	})
	// Order the reads of the listed paths before GoBGP's next writes
	// (see fence).
	v.srv.GetBgp(ctx, &api.GetBgpRequest{})
	if err != nil {
		// No such neighbor any more (deleted meanwhile): SetNeighbors
		// withdrew its routes.
		return
	}
	n.rejected = rejected
	var us []Update
	for _, k := range sortedKeys(n.routes) {
		if _, ok := have[k]; !ok {
			us = n.withdraw(v.vpc, k, us)
		} else if markStale && !n.routes[k] {
			n.routes[k] = true
			n.stale++
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
			rt := have[k]
			rt.VPC, rt.Neighbor = v.vpc, n.name
			n.learn(k)
			us = append(us, Update{Route: rt})
		}
	}
	s.queue(us)
}

// onPeer follows a neighbor's session state: leaving established, GoBGP
// has dropped its routes or, for a graceful restart, kept them stale;
// back to established after a graceful restart, GoBGP may have dropped
// the stale routes if the new session did not negotiate it.
func (s *Speaker) onPeer(v *vpcServer, pe *api.WatchEventResponse_PeerEvent) {
	if pe.GetType() != api.WatchEventResponse_PeerEvent_STATE {
		return
	}
	addr, err := netip.ParseAddr(pe.GetPeer().GetState().GetNeighborAddress())
	if err != nil {
		return
	}
	state := pe.GetPeer().GetState().GetSessionState()
	est := state == api.PeerState_ESTABLISHED
	v.mu.Lock()
	n := v.nbrs[addr]
	if n == nil {
		v.mu.Unlock()
		return
	}
	if st := strings.ToLower(state.String()); st != n.state {
		n.state, n.since = st, time.Now()
	}
	if n.up == est {
		v.mu.Unlock()
		return
	}
	n.up = est
	stale := n.stale > 0
	v.mu.Unlock()
	switch {
	case !est:
		s.resync(context.Background(), v, addr, true, false)
	case stale:
		s.resync(context.Background(), v, addr, false, false)
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
				if !n.up && n.stale > 0 {
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
