package ohc

import (
	"cmp"
	"net"
	"net/netip"
	"slices"

	"github.com/p4mesh/p4mesh/p4rt"
)

// The incremental compile of routes. A host of a VPC with an on-prem
// router holds as many routes as the router announces (100k, a million),
// and they change one at a time: a prefix learned, withdrawn, its next
// hops moved. A route's entries are its own: its vnet_route entry, its
// vnet_source_check entry and, through a local attachment, its
// attachment_source_check entries, all keyed by its prefix; an ECMP route
// points at its next hops' group in route_selector, which every route
// with those next hops shares. So a change of routes recompiles only the
// routes named (ViewChange.Routes), before and after, and patches their
// entries as compileRemote does endpoints'.
//
// It takes the whole compile instead whenever the result could differ
// from Compile's: the view's routes are not sorted by compareRoutes (the
// agent's order) or name a prefix twice; a route warns, now or at the
// last whole compile (warnings are made in the whole compile's order); an
// ECMP group would come or go (groups are numbered all together, see
// RouteGroupIDs); a gateway pool's route shares the prefix (it gives way
// to a route of the VPC, poolRoutes); another route or a VPC's own
// entries share an entry; or something besides routes changed with them.
// TestCompileChangeMatchesCompile holds it to Compile on random edits of
// routes, ECMP routes, pool routes and routes through local endpoints.

// routeEnt is one entry a route files: its cached entry and its origin.
type routeEnt struct {
	ce   *cachedEntry
	k    endpointEntry
	what origin
}

// cmpRouteKey orders a route against a key as compareRoutes orders
// routes, by VPC and prefix.
func cmpRouteKey(r Route, k RouteKey) int {
	return cmp.Or(cmp.Compare(r.VPC, k.VPC), r.Prefix.Addr().Compare(k.Prefix.Addr()), cmp.Compare(r.Prefix.Bits(), k.Prefix.Bits()))
}

// routeChunkOf is the index of the chunk (of routes sorted by
// compareRoutes, a key's routes never split between two) that holds k's
// routes, or would: the first whose last route is not before k, else the
// last chunk. The one empty chunk a view with no routes is patched from
// takes any key.
func routeChunkOf(chunks [][]Route, k RouteKey) int {
	i, _ := slices.BinarySearchFunc(chunks, k, func(c []Route, k RouteKey) int {
		if len(c) > 0 && cmpRouteKey(c[len(c)-1], k) < 0 {
			return -1
		}
		return 1
	})
	return min(i, len(chunks)-1)
}

// findRoute returns the view's route for k, and whether there is one;
// dup says there are several. The routes are sorted by compareRoutes.
func (v *View) findRoute(k RouteKey) (r Route, ok, dup bool) {
	if v.routeChunks == nil {
		return findRoute(v.Routes, k)
	}
	if len(v.routeChunks) == 0 {
		return Route{}, false, false
	}
	return findRoute(v.routeChunks[routeChunkOf(v.routeChunks, k)], k)
}

// findRoute returns the route of rs (sorted by compareRoutes) for k, and
// whether there is one; dup says there are several.
func findRoute(rs []Route, k RouteKey) (r Route, ok, dup bool) {
	cmpKey := cmpRouteKey
	i, found := slices.BinarySearchFunc(rs, k, cmpKey)
	if !found {
		return Route{}, false, false
	}
	return rs[i], true, i+1 < len(rs) && cmpKey(rs[i+1], k) == 0
}

// routeEntries are the entries route r files (nil for none), resolved
// against the last compile c, its remote next hops found by binary search
// in c.v (sorted: st.sorted). after builds entries the cache lacks, else
// a missing one is a bug (ok false). ok is false too when r warns, its
// ECMP group is not one of c's, or an entry's MAC is malformed.
func (cc *Compiler) routeEntries(c *compiler, r Route, after bool) (ents []routeEnt, x resolvedRoute, ok bool) {
	c.lookup = func(vpc string, ip netip.Addr) (RemoteEndpoint, bool) {
		for _, e := range lookupRemote(c.v.Remote[vpc], ip) {
			if e.HostIP.Is4() {
				return e, true
			}
		}
		return RemoteEndpoint{}, false
	}
	defer func() { c.lookup = nil }()
	warned := len(c.warnings)
	ok = true
	file := func(k endpointEntry, p netip.Prefix, mac net.HardwareAddr, what origin, build func() (string, []p4rt.Match, p4rt.ActionCall)) error {
		k.ip, k.plen = p.Addr(), p.Bits()
		if mac == nil {
			mac = noMAC
		}
		if len(mac) != len(k.mac) {
			ok = false
			return nil
		}
		copy(k.mac[:], mac)
		var ce *cachedEntry
		if after {
			var err error
			if ce, err = cc.cache.endpoint(cc.s, k, build); err != nil {
				ok = false
				return nil
			}
		} else if ce = cc.cache.endpoints[k]; ce == nil {
			ok = false
			return nil
		}
		ents = append(ents, routeEnt{ce: ce, k: k, what: what})
		return nil
	}
	x, filed, err := c.resolveRoute(r, file)
	if len(c.warnings) > warned {
		c.warnings = c.warnings[:warned]
		return nil, x, false
	}
	if err != nil || !ok {
		return nil, x, false
	}
	if !filed {
		return nil, x, true
	}
	if x.group != (RouteGroupKey{}) {
		if _, known := c.groupIDs[x.group]; !known {
			return nil, x, false
		}
	}
	k, mac, build := x.vnetRoute(c.groupIDs)
	if file(k, x.prefix, mac, x.what, build); !ok {
		return nil, x, false
	}
	return ents, x, true
}

// compileRoutes is CompileChange for a change of the routes at keys only.
// It reports false, having changed nothing the whole compile relies on,
// when the change needs the whole compile (see the comment at the top).
func (cc *Compiler) compileRoutes(v *View, keys []RouteKey) bool {
	st := &cc.inc
	c := st.last
	old := c.v
	if v.Host.IP != old.Host.IP {
		return false
	}
	// The entries, by match, before and after.
	type side struct {
		before, after *routeEnt
	}
	ents := map[tableMatch]*side{}
	var order []tableMatch
	groups := map[RouteGroupKey]int{}
	hops := map[netip.Addr]int{}
	routed := map[vniPrefix]bool{}
	seen := map[RouteKey]bool{}
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		if k.Prefix != k.Prefix.Masked() || c.routeWarned[k] {
			return false
		}
		for _, p := range c.peers[k.VPC] {
			if p.Pool != nil && slices.ContainsFunc(p.PeerPrefixes, func(pf netip.Prefix) bool { return pf.Masked() == k.Prefix }) {
				return false // a pool route gives way to the route, or takes over
			}
		}
		for i, view := range [2]*View{old, v} {
			r, ok, dup := view.findRoute(k)
			if dup {
				return false
			}
			if !ok {
				continue
			}
			n := 2*i - 1 // -1 before, +1 after
			for _, nh := range r.NextHops() {
				hops[nh] += n
			}
			es, x, ok := cc.routeEntries(c, r, i == 1)
			if !ok {
				return false
			}
			if len(es) == 0 {
				continue
			}
			if x.group != (RouteGroupKey{}) {
				groups[x.group] += n
			}
			routed[vniPrefix{x.vni, x.prefix}] = i == 1
			for j := range es {
				e := &es[j]
				if e.k.table == tAttSourceCheck && c.sharesPrefix(old, v, k) {
					return false // another VPC's route through the same attachment
				}
				tm := tableMatch{e.ce.ent.GetTableEntry().GetTableId(), e.ce.key}
				sd := ents[tm]
				if sd == nil {
					sd = &side{}
					ents[tm] = sd
					order = append(order, tm)
				}
				at := &sd.before
				if i == 1 {
					at = &sd.after
				}
				if *at != nil {
					return false // one entry twice: not a route's own
				}
				*at = e
			}
		}
	}
	for g, n := range groups {
		if c.groupUse[g]+n <= 0 {
			return false // the group goes with its last route
		}
	}
	plans := make([]keyPlan, 0, len(order))
	for _, tm := range order {
		sd := ents[tm]
		p := keyPlan{tm: tm, idx: -1}
		if sd.after != nil {
			p.next, p.what = sd.after.ce, sd.after.what
		}
		i, filed := c.byMatch[tm]
		switch {
		case filed && c.filed[i].ent != nil:
			w := c.filed[i].what
			if sd.before == nil || c.filed[i].ent != sd.before.ce.ent || w.route != sd.before.what.route || w.vpc != sd.before.what.vpc || w.name != sd.before.what.name {
				return false // filed by something else: not the route's to patch
			}
			p.idx = i
		case sd.before != nil:
			return false // not where the last compile filed it: a bug
		case filed:
			p.idx = i // a slot an earlier change emptied
		}
		if sd.before != nil && (sd.after == nil || sd.after.k != sd.before.k) {
			p.drop = append(p.drop, sd.before.k)
		}
		plans = append(plans, p)
	}
	gone, came := cc.applyPlans(c, plans)
	for g, n := range groups {
		c.groupUse[g] += n
	}
	for a, n := range hops {
		if st.hops[a] += n; st.hops[a] <= 0 {
			delete(st.hops, a)
		}
	}
	for vp, on := range routed {
		if on {
			c.routed[vp] = true
		} else {
			delete(c.routed, vp)
		}
	}
	c.v = v
	cc.finishChange(c, gone, came)
	return true
}

// sharesPrefix reports whether a local VPC other than k's has a route for
// k's prefix, before or after: its attachment_source_check entries may be
// the same as k's route's.
func (c *compiler) sharesPrefix(old, v *View, k RouteKey) bool {
	for _, name := range c.localVPCs {
		if name == k.VPC {
			continue
		}
		for _, view := range [2]*View{old, v} {
			if _, ok, _ := view.findRoute(RouteKey{name, k.Prefix}); ok {
				return true
			}
		}
	}
	return false
}
