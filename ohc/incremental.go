package ohc

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/p4rt"
)

// The incremental compile. Almost every change an OHC sees is an endpoint
// added, removed or moved somewhere in the peering group: one address in
// View.Remote. Compiling the whole view for it costs the view's size
// (tens of thousands of entries on a host of a large group); the entries
// that depend on one address are a handful. So a Compiler told which
// addresses changed (ViewChange) recompiles only those: for each local VPC
// that sees the address (its own VPC if that is local, and each local VPC
// with an active peering to it), the ARP answer and the destination of the
// address, with every record that claims them (the gateway, a local
// endpoint, each remote record, each peer's) in the whole compile's order,
// so the same one wins. It patches the last whole compile's entries by
// match and reports the entities that changed (Delta), which is all the
// programmer writes.
//
// A local endpoint that came, went or changed (ViewChange.Local) is
// compiled the same way: its port_vnet and vm_source_guard entries, and
// its address as above, in its VPC and in each local VPC with an active
// peering to it (a peer's endpoint on this host is delivered to its port).
// See planLocal for when that takes the whole compile.
//
// It takes the whole compile instead whenever the change could reach
// beyond those entries or the result could differ from Compile's in any
// way: anything but endpoints changed, the last compile failed, an
// address is a route's next hop (route groups depend on it), is not IPv4,
// a changed record is malformed (the whole compile names the error), or
// the address's entries warn now or warned before (a conflict):
// warnings are then recomputed in the whole compile's order. (A peer
// endpoint on this host that is not local yet warns too, but its
// warnings are kept apart and replaced per address: notLocalWarning.) TestCompileChangeMatchesCompile holds it to
// Compile on random edit sequences.

// RemoteKey names the records of one address in one VPC: those of
// View.Remote[VPC] whose IP is IP.
type RemoteKey struct {
	VPC string
	IP  netip.Addr
}

// RouteKey names a route of a view: its VPC and prefix (masked).
type RouteKey struct {
	VPC    string
	Prefix netip.Prefix
}

// ViewChange says how a view differs from the one compiled before it.
type ViewChange struct {
	// Remote are the addresses whose remote endpoint records may have
	// changed (been added, removed or modified). A key listed that did not
	// change costs a little work and nothing else.
	Remote []RemoteKey
	// Local are the (VPC, address) pairs of the local endpoints that may
	// have come, gone or changed (port, MAC, ID): an endpoint that moved
	// to another address or VPC is listed under both, the old and the
	// new. As for Remote, a key listed that did not change costs a little
	// work and nothing else.
	Local []RemoteKey
	// Routes are the routes (View.Routes, by VPC and prefix) that may
	// have come, gone or changed; as for Remote, a key listed that did
	// not change costs a little work and nothing else. A change of
	// routes alone is compiled a route at a time (compileRoutes).
	Routes []RouteKey
	// Other says that something else may have changed too: the host, a
	// VPC, a peering (its gateway pool included), a gateway duty, a load
	// balancer or a route. The view is then compiled whole.
	Other bool
}

// Merge adds o to ch: ch then describes both changes, one after the other.
func (ch *ViewChange) Merge(o ViewChange) {
	ch.Other = ch.Other || o.Other
	if ch.Other {
		ch.Remote, ch.Local, ch.Routes = nil, nil, nil
		return
	}
	ch.Remote = append(ch.Remote, o.Remote...)
	ch.Local = append(ch.Local, o.Local...)
	ch.Routes = append(ch.Routes, o.Routes...)
}

// Delta is what a compile changed in the desired entities: the entities of
// the previous compile it no longer has (Gone) and those it has that the
// previous one did not (Came). An entity in both, by key, is one whose
// content may have changed. Came is in entities' order (members, groups,
// the selector tables' entries, then the others), Gone in the reverse, the
// orders a reconcile writes inserts and deletes in.
type Delta struct {
	Gone, Came []*p4v1.Entity
}

// incState is what a Compiler's last successful compile leaves for the
// next.
type incState struct {
	// last is the last successful whole compile, its entries (filed,
	// byMatch) patched by the incremental compiles since: a nil entry in
	// filed is one they took away, whose slot byMatch keeps for the
	// entry's return (an endpoint that goes and comes back, as in a
	// move or a restart, takes its old slot). nil before the first
	// success.
	last *compiler
	// ok is false after a failed compile: the view it failed on is not
	// the one last describes, so a change relative to it means nothing.
	ok bool
	// sorted says the last view's Remote lists are sorted by
	// compareRemote, so an address's records are found by binary search.
	sorted   bool
	warnings []string
	// hops counts the routes of the last view whose next hops include
	// an address, in any VPC.
	hops map[netip.Addr]int
	// routesSorted says the last view's routes are sorted by
	// compareRoutes, with masked prefixes, so a route is found by binary
	// search.
	routesSorted bool
	// peersOf lists, for a VPC, the local VPCs with an active peering to
	// it: those that see its endpoints.
	peersOf map[string][]string
	// selectors are the members and groups of the last whole compile,
	// which incremental compiles never change.
	selectors []*p4v1.Entity
	// desired is the output in entities' order; nil when it must be
	// made again (Desired).
	desired []*p4v1.Entity
	delta   Delta
	// removed counts the nil entries in last.filed.
	removed int
	// incremental counts the compiles that took the incremental path.
	incremental uint64
}

// CompileChange compiles v, given that it differs from the view of the
// previous call as ch says, and returns v's warnings. The result is what
// Compile would give for v: Desired returns it, and Delta what changed.
// When the previous call failed, or ch says something besides remote
// and local endpoints changed, it compiles v whole; otherwise only the entries of
// the addresses in ch. For that, v's Remote lists must be sorted by
// address, then host and MAC (as the agent makes them), and ch must name
// every address whose records differ: what it does not name is taken to
// be as before. On error, nothing changes: Desired is still the last
// successful compile's.
func (cc *Compiler) CompileChange(v *View, ch ViewChange) ([]string, error) {
	st := &cc.inc
	st.delta = Delta{}
	if !ch.Other && st.ok && st.sorted && v != nil {
		incremental := false
		if len(ch.Routes) == 0 {
			incremental = cc.compileRemote(v, ch.Remote, ch.Local)
		} else if len(ch.Remote)+len(ch.Local) == 0 && st.routesSorted {
			incremental = cc.compileRoutes(v, ch.Routes)
		}
		if incremental {
			st.incremental++
			return st.warnings, nil
		}
	}
	c, desired, err := cc.compileWhole(v)
	if err != nil {
		st.ok = false
		return nil, err
	}
	nsel := len(c.members) + len(c.groups)
	sel := desired[:nsel:nsel]
	st.delta = wholeDelta(cc.s, st.last, st.selectors, c, sel)
	c.remote = nil // the routes' index: stale after the next change, and large
	st.last, st.ok, st.selectors, st.desired, st.warnings, st.removed = c, true, sel, desired, joinWarnings(c.warnings, c.notLocal), 0
	st.sorted = true
	for _, es := range v.Remote {
		if !slices.IsSortedFunc(es, compareRemote) {
			st.sorted = false
			break
		}
	}
	st.hops = map[netip.Addr]int{}
	routes := v.routeList()
	for _, r := range routes {
		for _, nh := range r.NextHops() {
			st.hops[nh]++
		}
	}
	st.routesSorted = slices.IsSortedFunc(routes, compareRoutes) && !slices.ContainsFunc(routes, func(r Route) bool { return r.Prefix != r.Prefix.Masked() })
	st.peersOf = map[string][]string{}
	for _, name := range c.localVPCs {
		for _, p := range c.peers[name] {
			st.peersOf[p.PeerVPC] = append(st.peersOf[p.PeerVPC], name)
		}
	}
	return st.warnings, nil
}

// Desired returns the entities of the last successful compile, in
// Compile's order; nil before the first. After an incremental compile it
// sorts them again: a full reconcile needs them, a change does not.
func (cc *Compiler) Desired() []*p4v1.Entity {
	st := &cc.inc
	if st.desired == nil && st.last != nil {
		out := make([]*p4v1.Entity, 0, len(st.selectors)+len(st.last.filed)-st.removed)
		out = append(out, st.selectors...)
		st.desired = appendFiled(out, cc.s, st.last.filed)
	}
	return st.desired
}

// Delta returns what the last compile changed in Desired (nothing when it
// failed).
func (cc *Compiler) Delta() Delta { return cc.inc.delta }

// wholeDelta compares a whole compile c with the previous state old (nil:
// none), entries by match and pointer: the cache makes an unchanged entry
// the same pointer. Members and groups are built anew by every whole
// compile; they are few, and a reconcile finds them unchanged by content.
func wholeDelta(s *p4rt.Schema, old *compiler, oldSel []*p4v1.Entity, c *compiler, sel []*p4v1.Entity) Delta {
	var gone, came []built
	if old != nil {
		for _, b := range old.filed {
			if b.ent == nil {
				continue
			}
			if i, ok := c.byMatch[b.tableMatch]; !ok || c.filed[i].ent != b.ent {
				gone = append(gone, b)
			}
		}
	}
	for _, b := range c.filed {
		if old != nil {
			if i, ok := old.byMatch[b.tableMatch]; ok && old.filed[i].ent == b.ent {
				continue
			}
		}
		came = append(came, b)
	}
	return orderDelta(s, oldSel, gone, sel, came)
}

// orderDelta puts a delta in the orders a reconcile writes in: inserts as
// entities orders them, deletes the other way round.
func orderDelta(s *p4rt.Schema, goneSel []*p4v1.Entity, gone []built, cameSel []*p4v1.Entity, came []built) Delta {
	pos := tablePositions(s)
	sortBuilt := func(bs []built) {
		slices.SortFunc(bs, func(a, b built) int {
			return cmp.Or(cmp.Compare(pos[a.table], pos[b.table]), strings.Compare(a.key, b.key))
		})
	}
	sortBuilt(gone)
	sortBuilt(came)
	var d Delta
	if n := len(cameSel) + len(came); n > 0 {
		d.Came = make([]*p4v1.Entity, 0, n)
		d.Came = append(d.Came, cameSel...)
		for _, b := range came {
			d.Came = append(d.Came, b.ent)
		}
	}
	if n := len(goneSel) + len(gone); n > 0 {
		d.Gone = make([]*p4v1.Entity, 0, n)
		for i := len(gone) - 1; i >= 0; i-- {
			d.Gone = append(d.Gone, gone[i].ent)
		}
		for i := len(goneSel) - 1; i >= 0; i-- {
			d.Gone = append(d.Gone, goneSel[i])
		}
	}
	return d
}

// claim is one record's bid for an address's entry: its endpointEntry
// (MAC filled in) and how to build the entry.
type claim struct {
	k     endpointEntry
	build func() (string, []p4rt.Match, p4rt.ActionCall)
}

// addrUnit is one local VPC's entries for one address.
type addrUnit struct {
	vpc string
	ip  netip.Addr
}

// keyPlan is the change of one entry: what last.filed holds for it (at
// idx; -1 for nothing), what it becomes (nil for nothing), and the cache
// entries only the old claims used.
type keyPlan struct {
	tm   tableMatch
	idx  int
	next *cachedEntry
	drop []endpointEntry
	what origin
}

// finishChange makes gone and came, the entries an incremental change
// took out of c and put in, the change's delta, and compacts c once
// enough of its entries have gone.
func (cc *Compiler) finishChange(c *compiler, gone, came []built) {
	st := &cc.inc
	st.delta = orderDelta(cc.s, nil, gone, nil, came)
	if len(gone)+len(came) > 0 {
		st.desired = nil
	}
	if st.removed > 0 && (compactAfter < 0 || st.removed > compactAfter && st.removed > len(c.filed)/2) {
		c.compact()
		st.removed = 0
	}
}

// compileRemote is CompileChange for a change of remote and local
// endpoints only. It reports false, having changed nothing the whole
// compile relies on, when the change needs the whole compile (see the
// comment at the top).
func (cc *Compiler) compileRemote(v *View, keys, locals []RemoteKey) bool {
	st := &cc.inc
	c := st.last
	old := c.v
	if v.Host.IP != old.Host.IP {
		return false // not a change of remote endpoints only
	}
	var units []addrUnit
	seen := map[addrUnit]bool{}
	add := func(u addrUnit) {
		if !seen[u] {
			seen[u] = true
			units = append(units, u)
		}
	}
	for _, k := range keys {
		if !k.IP.Is4() || st.hops[k.IP] > 0 {
			return false
		}
		for _, e := range lookupRemote(v.Remote[k.VPC], k.IP) {
			if checkRemote(v, k.VPC, e) != nil {
				return false
			}
		}
		if c.local[k.VPC] != nil {
			add(addrUnit{k.VPC, k.IP})
		}
		for _, name := range st.peersOf[k.VPC] {
			add(addrUnit{name, k.IP})
		}
	}
	// Plan every entry first: a reason to compile whole found half way
	// must leave the last compile as it was.
	plans := make([]keyPlan, 0, 2*len(units)+4*len(locals))
	local := c.local
	if len(locals) > 0 {
		var ok bool
		if local, plans, ok = cc.planLocal(v, locals, plans); !ok {
			return false
		}
		for _, k := range locals {
			if c.local[k.VPC] != nil {
				add(addrUnit{k.VPC, k.IP})
			}
			for _, name := range st.peersOf[k.VPC] {
				add(addrUnit{name, k.IP})
			}
		}
	}
	var notLocal []notLocalWarning
	for _, u := range units {
		oldARP, oldDest, ok := c.claims(old, c.local, u, nil)
		if !ok {
			return false
		}
		newARP, newDest, ok := c.claims(v, local, u, &notLocal)
		if !ok {
			return false
		}
		for _, pair := range [2][2][]claim{{oldARP, newARP}, {oldDest, newDest}} {
			p, ok := cc.plan(c, u, pair[0], pair[1])
			if !ok {
				return false
			}
			plans = append(plans, p)
		}
	}
	gone, came := cc.applyPlans(c, plans)
	c.v, c.local = v, local
	if len(notLocal) > 0 || len(c.notLocal) > 0 {
		// The units' not-local warnings are replaced by what their
		// claims found now.
		c.notLocal = slices.DeleteFunc(c.notLocal, func(w notLocalWarning) bool { return seen[w.unit] })
		c.notLocal = append(c.notLocal, notLocal...)
		slices.SortStableFunc(c.notLocal, compareNotLocal)
		st.warnings = joinWarnings(c.warnings, c.notLocal)
	}
	cc.finishChange(c, gone, came)
	return true
}

// applyPlans patches c's filed entries as plans say, evicts what only
// the old claims used from the cache, and returns the entries taken out
// and put in. A patched slot takes its plan's origin.
func (cc *Compiler) applyPlans(c *compiler, plans []keyPlan) (gone, came []built) {
	st := &cc.inc
	for _, p := range plans {
		var was *p4v1.Entity // nil for nothing, or an emptied slot
		if p.idx >= 0 {
			was = c.filed[p.idx].ent
		}
		switch {
		case p.next == nil && was == nil:
		case p.next == nil:
			gone = append(gone, c.filed[p.idx])
			c.filed[p.idx].ent = nil
			st.removed++
		case was == nil && p.idx >= 0: // back in its slot
			c.filed[p.idx].ent, c.filed[p.idx].what = p.next.ent, p.what
			st.removed--
			came = append(came, c.filed[p.idx])
		case was == nil:
			b := built{tableMatch: p.tm, ent: p.next.ent, what: p.what}
			c.byMatch[p.tm] = len(c.filed)
			c.filed = append(c.filed, b)
			came = append(came, b)
		case was != p.next.ent:
			gone = append(gone, c.filed[p.idx])
			c.filed[p.idx].ent, c.filed[p.idx].what = p.next.ent, p.what
			came = append(came, c.filed[p.idx])
		default:
			c.filed[p.idx].what = p.what
		}
		for _, k := range p.drop {
			cc.cache.evict(k)
		}
	}
	return gone, came
}

// plan works out the change of one entry from the claims on it before and
// after. It reports false when the entry's old winner is not where the
// last compile filed it, which would be a bug: the whole compile then
// puts things right.
func (cc *Compiler) plan(c *compiler, u addrUnit, before, after []claim) (keyPlan, bool) {
	p := keyPlan{idx: -1, what: origin{ip: u.ip, vpc: u.vpc}}
	if len(before) > 0 {
		e := cc.cache.endpoints[before[0].k]
		if e == nil {
			return p, false
		}
		p.tm = tableMatch{e.ent.GetTableEntry().GetTableId(), e.key}
		i, ok := c.byMatch[p.tm]
		if !ok || c.filed[i].ent == nil {
			return p, false
		}
		p.idx = i
	}
	if len(after) > 0 {
		e, err := cc.cache.endpoint(cc.s, after[0].k, after[0].build)
		if err != nil {
			return p, false
		}
		tm := tableMatch{e.ent.GetTableEntry().GetTableId(), e.key}
		if p.idx < 0 {
			if i, ok := c.byMatch[tm]; ok {
				if c.filed[i].ent != nil {
					return p, false // filed by something else: not ours to patch
				}
				p.idx = i // a slot an earlier change emptied
			}
		} else if tm != p.tm {
			return p, false
		}
		p.tm, p.next = tm, e
	}
	for _, b := range before {
		if !slices.ContainsFunc(after, func(a claim) bool { return a.k == b.k }) && !slices.ContainsFunc(p.drop, func(k endpointEntry) bool { return k == b.k }) {
			p.drop = append(p.drop, b.k)
		}
	}
	return p, true
}

// claims returns the claims on the ARP answer and on the destination of
// address u.ip in local VPC u.vpc, under view v, in the order the whole
// compile files them (vpc and peerDestinations): the first is the entry.
// ok is false when the whole compile would warn or fail on them: a
// conflict (claims with different actions), a peer record with the wrong
// VNI. A peer endpoint on this host that is not local yet has no claim,
// as in the whole compile, and its warning is added to nl if nl is not
// nil. Only v's Remote lists and locals (the local endpoints by VPC and
// address) are read: the rest is as last compiled.
func (c *compiler) claims(v *View, locals map[string]map[netip.Addr]LocalEndpoint, u addrUnit, nl *[]notLocalWarning) (arp, dest []claim, ok bool) {
	x := c.v.VPCs[u.vpc]
	vni := p4rt.Uint(x.VNI)
	host := c.v.Host.IP
	put := func(to *[]claim, k endpointEntry, mac []byte, build func() (string, []p4rt.Match, p4rt.ActionCall)) bool {
		if len(mac) != len(k.mac) {
			return false
		}
		copy(k.mac[:], mac)
		if len(*to) > 0 && (*to)[0].k != k {
			return false // a conflict: the whole compile warns
		}
		*to = append(*to, claim{k, build})
		return true
	}
	own := lookupRemote(v.Remote[u.vpc], u.ip)
	le, local := locals[u.vpc][u.ip]
	// A VPC present only by a gateway duty has no ARP answers and no
	// peer destinations (see vpc); dutyOnly is as last compiled, and
	// planLocal compiles whole when it would change.
	dutyOnly := c.dutyOnly[u.vpc]
	if x.GatewayIP == u.ip && !dutyOnly {
		if k, b := arpEntry(vni, u.ip, x.GatewayMAC); !put(&arp, k, x.GatewayMAC, b) {
			return nil, nil, false
		}
	}
	if local {
		if k, b := arpEntry(vni, u.ip, le.MAC); !put(&arp, k, le.MAC, b) {
			return nil, nil, false
		}
	}
	for _, e := range own {
		if dutyOnly {
			if len(e.MAC) != 6 {
				return nil, nil, false
			}
			continue
		}
		if k, b := arpEntry(vni, u.ip, e.MAC); !put(&arp, k, e.MAC, b) {
			return nil, nil, false
		}
	}
	if local {
		if k, b := toLocalEntry(vni, le); !put(&dest, k, le.MAC, b) {
			return nil, nil, false
		}
	}
	for _, e := range own {
		if e.HostIP == host {
			continue // ours: Local is authoritative
		}
		if !e.HostIP.Is4() {
			return nil, nil, false
		}
		if k, b := encapEntry(vni, x.VNI, e); !put(&dest, k, e.MAC, b) {
			return nil, nil, false
		}
	}
	if dutyOnly {
		return arp, dest, true
	}
	for _, p := range c.peers[u.vpc] {
		recs := lookupRemote(v.Remote[p.PeerVPC], u.ip)
		if len(recs) == 0 || !inAny(u.ip, p.PeerPrefixes) {
			continue
		}
		for _, e := range recs {
			if e.VNI != 0 && e.VNI != p.PeerVNI {
				return nil, nil, false
			}
			if e.HostIP == host {
				pl, ok := locals[p.PeerVPC][u.ip]
				if !ok {
					if nl != nil {
						*nl = append(*nl, notLocalWarning{u, p.PeerVPC, notLocalText(u.vpc, p, u.ip)})
					}
					continue
				}
				if k, b := toLocalEntry(vni, pl); !put(&dest, k, pl.MAC, b) {
					return nil, nil, false
				}
				continue
			}
			if !e.HostIP.Is4() {
				return nil, nil, false
			}
			if k, b := encapEntry(vni, p.PeerVNI, e); !put(&dest, k, e.MAC, b) {
				return nil, nil, false
			}
		}
	}
	return arp, dest, true
}

// lookupRemote returns the records of ip in es, a list sorted by
// compareRemote.
func lookupRemote(es []RemoteEndpoint, ip netip.Addr) []RemoteEndpoint {
	i, _ := slices.BinarySearchFunc(es, ip, func(e RemoteEndpoint, ip netip.Addr) int { return e.IP.Compare(ip) })
	j := i
	for j < len(es) && es[j].IP == ip {
		j++
	}
	return es[i:j]
}

// compactAfter is how many emptied slots filed may hold before more than
// half of it being empty has compact run: the slots cost little, and most
// are taken again as endpoints come back. A variable for tests, where a
// negative value compacts after every change that leaves a slot empty.
var compactAfter = 1024

// compact drops the slots incremental compiles emptied from filed and
// byMatch.
func (c *compiler) compact() {
	filed := make([]built, 0, len(c.filed))
	for _, b := range c.filed {
		if b.ent != nil {
			c.byMatch[b.tableMatch] = len(filed)
			filed = append(filed, b)
		} else {
			delete(c.byMatch, b.tableMatch)
		}
	}
	c.filed = filed
}

// planLocal plans the change of the local endpoints at keys: their
// port_vnet and vm_source_guard entries. It returns the local endpoints of
// v by VPC and address, for the claims on their addresses, and plans with
// the entries' plans appended. ok is false when the change needs the whole
// compile: v's local endpoints are malformed (the whole compile names the
// error), a VPC gets its first local endpoint or loses its last (the VPC's
// entries come or go), or an endpoint listed, before or after, is not
// IPv4, is an attachment, is a route's next hop or a load balancer's
// backend (routes and load balancers read local endpoints too).
func (cc *Compiler) planLocal(v *View, keys []RemoteKey, plans []keyPlan) (map[string]map[netip.Addr]LocalEndpoint, []keyPlan, bool) {
	st := &cc.inc
	c := st.last
	if validateLocal(v) != nil {
		return nil, nil, false
	}
	if (&compiler{s: cc.s, v: v}).checkPorts() != nil {
		return nil, nil, false
	}
	local := make(map[string]map[netip.Addr]LocalEndpoint, len(c.local))
	for _, e := range v.Local {
		if local[e.VPC] == nil {
			if c.local[e.VPC] == nil || c.dutyOnly[e.VPC] {
				return nil, nil, false // the VPC's first local endpoint
			}
			local[e.VPC] = make(map[netip.Addr]LocalEndpoint, len(c.local[e.VPC]))
		}
		local[e.VPC][e.IP] = e
	}
	for name := range c.local {
		if local[name] == nil {
			if !c.dutyOnly[name] {
				return nil, nil, false // the VPC's last local endpoint went
			}
			local[name] = map[netip.Addr]LocalEndpoint{} // present by its duty
		}
	}
	if len(local) != len(c.local) {
		return nil, nil, false
	}
	backend := func(ip netip.Addr) bool {
		for _, lb := range v.LBs {
			for _, b := range lb.Backends {
				if b.IP == ip {
					return true
				}
			}
		}
		return false
	}
	// The entries, by match, before and after.
	type side struct {
		before, after *cachedEntry
		what          origin
	}
	ents := map[tableMatch]*side{}
	var order []tableMatch
	entries := func(e LocalEndpoint, after bool) bool {
		vni := p4rt.Uint(c.v.VPCs[e.VPC].VNI) // VPCs are as last compiled
		what := named("local endpoint " + e.ID)
		for _, x := range [2]struct {
			table string
			match []p4rt.Match
			a     p4rt.ActionCall
		}{
			{tPortVnet, []p4rt.Match{p4rt.Exact("ingress_port", p4rt.Uint(e.Port))},
				p4rt.Call(aSetVnet, p4rt.P("vni", vni), p4rt.P("vm_mac", p4rt.MAC(e.MAC)))},
			{tVMSourceGuard, []p4rt.Match{
				p4rt.Exact("vni", vni), p4rt.Exact("ingress_port", p4rt.Uint(e.Port)),
				p4rt.Exact("src_ip", p4rt.IP(e.IP)), p4rt.Exact("src_mac", p4rt.MAC(e.MAC)),
			}, p4rt.Call(aPermit)},
		} {
			ce, err := cc.cache.get(cc.s, x.table, x.match, &x.a)
			if err != nil {
				return false
			}
			tm := tableMatch{ce.ent.GetTableEntry().GetTableId(), ce.key}
			sd := ents[tm]
			if sd == nil {
				sd = &side{}
				ents[tm] = sd
				order = append(order, tm)
			}
			if after {
				if sd.after != nil {
					return false // two endpoints on one entry: validate stops this
				}
				sd.after, sd.what = ce, what
			} else {
				if sd.before != nil {
					return false
				}
				sd.before = ce
			}
		}
		return true
	}
	seen := map[RemoteKey]bool{}
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		if !k.IP.Is4() || st.hops[k.IP] > 0 || backend(k.IP) {
			return nil, nil, false
		}
		for i, m := range []map[string]map[netip.Addr]LocalEndpoint{c.local, local} {
			e, ok := m[k.VPC][k.IP]
			if !ok {
				continue
			}
			if e.IsAttachment() || !entries(e, i == 1) {
				return nil, nil, false
			}
		}
	}
	for _, tm := range order {
		sd := ents[tm]
		p := keyPlan{tm: tm, idx: -1, next: sd.after, what: sd.what}
		i, filed := c.byMatch[tm]
		if filed && c.filed[i].ent != nil {
			if sd.before == nil {
				return nil, nil, false // filed by something else: not ours to patch
			}
			p.idx = i
		} else if sd.before != nil {
			return nil, nil, false // not where the last compile filed it: a bug
		} else if filed {
			p.idx = i // a slot an earlier change emptied
		}
		plans = append(plans, p)
	}
	return local, plans, true
}
