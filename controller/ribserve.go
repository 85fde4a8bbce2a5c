package controller

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/internal/replicaset"
	"github.com/p4mesh/p4mesh/watch"
)

// The Server's side of the RIB (rib.go): the runtime candidates (learned
// and peer routes), how a prefix's winners become the items of the
// routes tables, and the updates that change them.
//
// What each routes table holds:
//   - the VPC's own service (VPC, ""), watched by its hosts' OHCs: every
//     prefix's winners but subnets (which the hosts reach by destination),
//     static, BGP and peer alike, with all next hops of an ECMP set;
//   - an export (VPC, policy), watched by peer controllers: the prefixes
//     whose winner is a local static route inside what the policy
//     exports (winners learned from peers are never passed on: peering
//     is not transitive);
//   - its custom table, served to the peer controllers of peerings that
//     export custom routes: the same, plus BGP winners inside the
//     policy's prefixes (private ranges only if it is private-only) with
//     the next hops it exports.
//
// A prefix's items change only when its candidates do, so every update
// resolves only the prefixes it names and commits deltas.

// rib is the runtime part of the RIBs of the VPCs owned here. Server.mu
// guards it. It is never persisted: learned routes come back from the BGP
// sessions after a restart, peer routes from the peers' controllers.
type rib struct {
	// learned are the BGP routes, by VPC (riblearned.go).
	learned map[string]*learnedStore
	// peer are the routes peers export to a VPC, by VPC, prefix, then one
	// per peer VPC.
	peer map[string]map[netip.Prefix][]peerRoute
	// rev counts changes of candidates, for gNMI state.
	rev uint64
}

type peerRoute struct {
	peer string
	vni  uint32
	// r is the route as the peer's export publishes it: a record of a
	// local export, or the message a peer controller sent.
	r proto.Message
}

func newRIB() *rib {
	return &rib{learned: map[string]*learnedStore{}, peer: map[string]map[netip.Prefix][]peerRoute{}}
}

// importer is a local VPC that imports what an export of another local
// VPC publishes: the other side of an active peering within this
// controller.
type importer struct {
	vpc    string // the importing VPC
	peer   string // the exporting VPC
	custom bool   // the export's custom table, not its routes table
}

// scratch is reused across the prefixes of one pass (publishRoutesLocked),
// so that resolving a prefix of a large batch allocates only what it
// publishes: the candidates and their next hops live in it until the next
// prefix.
type scratch struct {
	cs   []Candidate
	hops []netip.Addr
	// single and lastSet are the next hop sets published in the pass
	// (nextHopsOf): one per next hop, and the last ECMP set; lastHead
	// the last route head (headOf).
	single   map[netip.Addr]*nextHops
	lastSet  *nextHops
	lastHead *routeHead
}

// prefixKey is p's text, the key of its routes in the tables, in one
// allocation.
func prefixKey(p netip.Prefix) string {
	var buf [len("255.255.255.255/32")]byte
	return string(p.AppendTo(buf[:0]))
}

// candidatesLocked are the candidates of prefix p of vpc, unresolved, in
// sc if it is not nil (valid until its next use), else newly allocated.
func (s *Server) candidatesLocked(vpc string, p netip.Prefix, sc *scratch) []Candidate {
	m := s.m
	var cs []Candidate
	var hops []netip.Addr
	if sc != nil {
		cs, hops = sc.cs[:0], sc.hops[:0]
		defer func() { sc.cs, sc.hops = cs, hops }()
	}
	// one is a next hop list of a: in sc's arena, or allocated.
	one := func(a netip.Addr) []netip.Addr {
		if sc == nil {
			return []netip.Addr{a}
		}
		hops = append(hops, a)
		n := len(hops)
		return hops[n-1 : n : n]
	}
	if v := m.vpcs[vpc]; v != nil && slices.Contains(v.Subnets, p) {
		cs = append(cs, Candidate{VPC: vpc, Prefix: p, Origin: OriginSubnet, Source: vpc})
	}
	for k := range m.rtGroup[routeGroup{vpc, p}] {
		r, _ := m.routes.get(k)
		pos, _ := m.routes.pos(k)
		c := Candidate{VPC: vpc, Prefix: p, Origin: OriginStatic, Source: r.NextHop, Priority: r.Priority, pos: pos}
		if e, ok := m.eps.get(r.NextHop); ok && r.NextHop != "" {
			c.NextHops = one(e.IP)
		}
		cs = append(cs, c)
	}
	if ls := s.rib.learned[vpc]; ls != nil {
		var buf [1]lroute
		for _, r := range ls.routes(packPrefix(p), &buf) {
			nb, a := ls.nbs[r.nb], &ls.attrs[r.attr]
			c := Candidate{VPC: vpc, Prefix: p, Origin: OriginBGP, Source: nb,
				ASPath: a.asPath, MED: a.med, LocalPref: a.localPref, BGPNextHop: a.nextHop}
			e, ok := m.eps.get(nb)
			switch {
			case !ok:
				c.invalid = fmt.Sprintf("neighbor %s is no endpoint of VPC %s", nb, vpc)
			case e.VPC != vpc:
				c.invalid = fmt.Sprintf("neighbor %s is an endpoint of VPC %s, not %s", nb, e.VPC, vpc)
			case !e.IsAttachment():
				c.invalid = fmt.Sprintf("neighbor %s is a %s endpoint, not a vpn or interconnect attachment", nb, e.Kind)
			default:
				c.NextHops = one(e.IP)
			}
			cs = append(cs, c)
		}
	}
	for _, pr := range s.rib.peer[vpc][p] {
		prio, origin := routeFields(pr.r)
		c := Candidate{VPC: vpc, Prefix: p, Origin: OriginPeer, Source: pr.peer, PeerVNI: pr.vni,
			Priority: prio, PeerOrigin: origin}
		if q, ok := s.peeringLocked(vpc, pr.peer); ok {
			c.Preference = q.Preference
		} else {
			c.invalid = fmt.Sprintf("no peering of %s with %s", vpc, pr.peer)
		}
		c.NextHops = routeNextHops(pr.r)
		cs = append(cs, c)
	}
	return cs
}

// peeringLocked is Config.Peering from the model's index.
func (s *Server) peeringLocked(vpc, peer string) (Peering, bool) {
	p, ok := s.m.peerings[[2]string{vpc, peer}]
	return p, ok
}

// winnerHops are the next hops of the n winners of cs, sorted, each once.
func winnerHops(cs []Candidate, n int) []netip.Addr {
	if n == 1 {
		return cs[0].NextHops
	}
	var out []netip.Addr
	for _, c := range cs[:n] {
		out = append(out, c.NextHops...)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// ownRouteItem is what the VPC's own hosts are sent for a prefix whose
// resolved candidates are cs with n winners: nil for none, or a subnet.
func ownRouteItem(cs []Candidate, n int, prefix string, sc *scratch) *routeRec {
	if n == 0 || cs[0].Origin == OriginSubnet {
		return nil
	}
	return routeRecord(&cs[0], prefix, winnerHops(cs, n), sc)
}

// exportRouteItem is what the export svc publishes for the prefix, in its
// routes table (custom false) or its custom table: nil if the winner is
// not local, or not exported.
func exportRouteItem(svc *service, pol *ExportPolicy, cs []Candidate, n int, prefix string, custom bool, sc *scratch) *routeRec {
	if n == 0 {
		return nil
	}
	w := &cs[0]
	switch w.Origin {
	case OriginStatic:
		if !prefixExported(svc.exported, w.Prefix) {
			return nil
		}
		// A next hop the policy does not export is an endpoint the peer
		// may not learn of: the route goes without it, as it always has.
		var hops []netip.Addr
		if len(w.NextHops) > 0 && svc.exports(w.NextHops[0]) {
			hops = w.NextHops
		}
		return routeRecord(w, prefix, hops, sc)
	case OriginBGP:
		if !custom || pol == nil || !customExported(pol, w.Prefix) {
			return nil
		}
		var hops []netip.Addr
		for _, h := range winnerHops(cs, n) {
			if svc.exports(h) {
				hops = append(hops, h)
			}
		}
		if len(hops) == 0 {
			// The peer could reach no attachment it goes through.
			return nil
		}
		return routeRecord(w, prefix, hops, sc)
	}
	return nil
}

// customExported reports whether pol lets a BGP-learned prefix p through:
// inside its prefixes if it lists any, inside private ranges if it is
// private-only.
func customExported(pol *ExportPolicy, p netip.Prefix) bool {
	inside := func(ps []netip.Prefix) bool {
		return slices.ContainsFunc(ps, func(e netip.Prefix) bool { return e.Bits() <= p.Bits() && e.Contains(p.Addr()) })
	}
	if len(pol.Prefixes) > 0 && !inside(pol.Prefixes) {
		return false
	}
	return !pol.PrivateOnly || inside(privateRanges)
}

// resolveLocked resolves prefix p of vpc, in sc (see candidatesLocked).
func (s *Server) resolveLocked(vpc string, p netip.Prefix, sc *scratch) ([]Candidate, int) {
	cs := s.candidatesLocked(vpc, p, sc)
	var subnets []netip.Prefix
	if v := s.m.vpcs[vpc]; v != nil {
		subnets = v.Subnets
	}
	return cs, resolve(cs, subnets)
}

// publishRoutesLocked resolves each prefix in work again (one named twice
// is resolved twice, to the same result) and puts what it publishes into
// b; the local VPCs importing an export that changed are resolved in turn.
// It ends: an export holds local winners only, and an import adds peer
// candidates, which never beat a local one, so an import changes no
// export.
func (s *Server) publishRoutesLocked(b batches, work []routeGroup) {
	if len(work) > 0 {
		s.rib.rev++
	}
	sc := &scratch{}
	for len(work) > 0 {
		if len(work) > 1000 {
			// A large batch is mostly of one VPC (a BGP update is).
			for _, svc := range s.svcByVPC[work[0].vpc] {
				b.reserve(svc.routes, len(work))
				if svc.ps.Policy != "" {
					b.reserve(svc.custom, len(work))
				}
			}
		}
		next := set[routeGroup]{}
		for _, g := range work {
			cs, n := s.resolveLocked(g.vpc, g.prefix, sc)
			key := prefixKey(g.prefix)
			for _, svc := range s.svcByVPC[g.vpc] {
				if svc.ps.Policy == "" {
					setRoute(b, svc.routes, key, ownRouteItem(cs, n, key, sc))
					continue
				}
				pol := s.m.policies[svc.ps.Policy]
				plain := exportRouteItem(svc, pol, cs, n, key, false, sc)
				custom := exportRouteItem(svc, pol, cs, n, key, true, sc)
				setRoute(b, svc.routes, key, plain)
				setRoute(b, svc.custom, key, custom)
				for _, im := range s.importers[svc.ps] {
					it := plain
					if im.custom {
						it = custom
					}
					if s.setPeerRouteLocked(im.vpc, im.peer, s.m.vpcs[im.peer].VNI, g.prefix, it) {
						next[routeGroup{im.vpc, g.prefix}] = struct{}{}
					}
				}
			}
		}
		work = make([]routeGroup, 0, len(next))
		for g := range next {
			work = append(work, g)
		}
	}
}

// setRoute puts r under key in t's batch, or deletes key if r is nil and
// t or the batch has it: most prefixes of a large batch are in none of a
// VPC's exports, and a million deletes of absent keys would cost the
// tables as much as the puts.
func setRoute(b batches, t *watch.Table, key string, r *routeRec) {
	if r != nil {
		b.put(t, key, r)
		return
	}
	if _, batched := b[t][key]; batched || t.Has(key) {
		b.del(t, key)
	}
}

// setPeerRouteLocked sets what peer exports to vpc for prefix p (nil:
// nothing) and reports whether that changed anything.
func (s *Server) setPeerRouteLocked(vpc, peer string, vni uint32, p netip.Prefix, r proto.Message) bool {
	// A nil record or message is nothing, not an item.
	switch x := r.(type) {
	case *routeRec:
		if x == nil {
			r = nil
		}
	case *p4meshv1.Route:
		if x == nil {
			r = nil
		}
	}
	byPrefix := s.rib.peer[vpc]
	cur := byPrefix[p]
	i := slices.IndexFunc(cur, func(pr peerRoute) bool { return pr.peer == peer })
	switch {
	case r == nil && i < 0:
		return false
	case r == nil:
		cur = slices.Delete(cur, i, i+1)
	case i >= 0 && cur[i].vni == vni && routeEqual(cur[i].r, r):
		return false
	case i >= 0:
		cur[i] = peerRoute{peer: peer, vni: vni, r: r}
	default:
		cur = append(cur, peerRoute{peer: peer, vni: vni, r: r})
	}
	if byPrefix == nil {
		byPrefix = map[netip.Prefix][]peerRoute{}
		s.rib.peer[vpc] = byPrefix
	}
	if len(cur) == 0 {
		delete(byPrefix, p)
	} else {
		byPrefix[p] = cur
	}
	return true
}

// prefixesLocked are every prefix with a candidate in vpc's RIB.
func (s *Server) prefixesLocked(vpc string) set[netip.Prefix] {
	out := set[netip.Prefix]{}
	if v := s.m.vpcs[vpc]; v != nil {
		for _, p := range v.Subnets {
			out[p] = struct{}{}
		}
	}
	for p := range s.m.rtInVPC[vpc] {
		out[p] = struct{}{}
	}
	if ls := s.rib.learned[vpc]; ls != nil {
		for p := range ls.prefixes() {
			out[p] = struct{}{}
		}
	}
	for p := range s.rib.peer[vpc] {
		out[p] = struct{}{}
	}
	return out
}

// rebuildImportsLocked recomputes, after a whole configuration, which
// local VPCs import which exports, and what they import from them: the
// exports hold local winners only, so they are computed before any
// import. Imports from peers owned elsewhere stay (Run drops those of
// peerings it no longer follows).
func (s *Server) rebuildImportsLocked() {
	m := s.m
	s.importers = map[PublishedService][]importer{}
	for _, p := range m.base.Peerings {
		// p is vpc → peer; the peer's side peer → vpc says what it exports.
		if m.owner[p.PeerVPC] != m.base.Controller {
			continue
		}
		back, ok := s.peeringLocked(p.PeerVPC, p.VPC)
		if !ok {
			continue
		}
		if _, active, _ := s.peerStateLocked(p); !active {
			continue
		}
		ps := PublishedService{VPC: p.PeerVPC, Policy: back.ExportPolicy}
		s.importers[ps] = append(s.importers[ps], importer{vpc: p.VPC, peer: p.PeerVPC, custom: back.ExportCustomRoutes})
	}
	// Forget what local peers exported: it is fed again below from the
	// current exports. VPCs no longer owned here take their RIBs along.
	for vpc, byPrefix := range s.rib.peer {
		if _, owned := m.vpcs[vpc]; !owned {
			delete(s.rib.peer, vpc)
			continue
		}
		for p, prs := range byPrefix {
			prs = slices.DeleteFunc(prs, func(pr peerRoute) bool { return m.owner[pr.peer] == m.base.Controller })
			if len(prs) == 0 {
				delete(byPrefix, p)
			} else {
				byPrefix[p] = prs
			}
		}
	}
	for vpc := range s.rib.learned {
		if _, owned := m.vpcs[vpc]; !owned {
			delete(s.rib.learned, vpc)
		}
	}
	for ps, ims := range s.importers {
		svc := &service{ps: ps, exported: m.exportedPrefixes(ps.VPC, ps.Policy)}
		pol := m.policies[ps.Policy]
		sc := &scratch{}
		for p := range s.prefixesLocked(ps.VPC) {
			cs, n := s.resolveLocked(ps.VPC, p, sc)
			key := prefixKey(p)
			plain := exportRouteItem(svc, pol, cs, n, key, false, sc)
			custom := exportRouteItem(svc, pol, cs, n, key, true, sc)
			for _, im := range ims {
				it := plain
				if im.custom {
					it = custom
				}
				if it != nil {
					s.setPeerRouteLocked(im.vpc, im.peer, m.vpcs[im.peer].VNI, p, it)
				}
			}
		}
	}
	s.rib.rev++
}

// routeItemsLocked are the items of svc's routes and custom tables, whole.
func (s *Server) routeItemsLocked(svc *service) (routes, custom map[string]proto.Message) {
	routes, custom = map[string]proto.Message{}, map[string]proto.Message{}
	pol := s.m.policies[svc.ps.Policy]
	sc := &scratch{}
	for p := range s.prefixesLocked(svc.ps.VPC) {
		cs, n := s.resolveLocked(svc.ps.VPC, p, sc)
		key := prefixKey(p)
		if svc.ps.Policy == "" {
			if it := ownRouteItem(cs, n, key, sc); it != nil {
				routes[key] = it
			}
			continue
		}
		if it := exportRouteItem(svc, pol, cs, n, key, false, sc); it != nil {
			routes[key] = it
		}
		if it := exportRouteItem(svc, pol, cs, n, key, true, sc); it != nil {
			custom[key] = it
		}
	}
	return routes, custom
}

// learnedOfLocked are the prefixes vpc learned from neighbor: a scan of
// the VPC's learned routes, paid only when an attachment itself changes
// (configured, removed, moved or readdressed), which is rare beside the
// routes it carries.
func (s *Server) learnedOfLocked(vpc, neighbor string, into set[routeGroup]) {
	if ls := s.rib.learned[vpc]; ls != nil {
		ls.of(neighbor, func(p netip.Prefix) { into[routeGroup{vpc, p}] = struct{}{} })
	}
}

// UpdateLearnedRoutes is the bgp package's way in: what the BGP sessions
// of vpc's attachments learned (adds, a later one replacing an earlier
// one of the same neighbor and prefix, as a BGP update does) and
// withdrew, applied withdrawals first, in one change of the RIB. Only the
// prefixes named are resolved again, and only what their winners change
// is sent to hosts and peers.
//
// A route whose neighbor is not an attachment of vpc is kept but
// refused, with the reason in its state, until such an attachment is
// configured: the configuration and the sessions change independently.
// Malformed input (an unknown VPC, an invalid or non-IPv4 prefix, one
// with host bits set, an empty neighbor) refuses the whole update with a
// gRPC status error naming the first offence, and changes nothing.
func (s *Server) UpdateLearnedRoutes(vpc string, adds []LearnedRoute, withdrawals []LearnedRouteKey) error {
	check := func(what string, i int, neighbor string, p netip.Prefix) error {
		switch {
		case neighbor == "":
			return status.Errorf(codes.InvalidArgument, "learned route update of VPC %s: %s %d (%v) has no neighbor", vpc, what, i, p)
		case !p.IsValid():
			return status.Errorf(codes.InvalidArgument, "learned route update of VPC %s: %s %d from %s has no valid prefix", vpc, what, i, neighbor)
		case !p.Addr().Is4():
			return status.Errorf(codes.InvalidArgument, "learned route update of VPC %s: %s %d from %s: %v is not IPv4, which p4mesh routes only", vpc, what, i, neighbor, p)
		case p.Masked() != p:
			return status.Errorf(codes.InvalidArgument, "learned route update of VPC %s: %s %d from %s: prefix %v has host bits set (%v)", vpc, what, i, neighbor, p, p.Masked())
		}
		return nil
	}
	for i, w := range withdrawals {
		if err := check("withdrawal", i, w.Neighbor, w.Prefix); err != nil {
			return err
		}
	}
	for i, a := range adds {
		if err := check("route", i, a.Neighbor, a.Prefix); err != nil {
			return err
		}
	}
	return s.runtimeChange(len(adds)+len(withdrawals), func() error {
		if _, ok := s.m.vpcs[vpc]; !ok {
			return status.Errorf(codes.NotFound, "learned route update: VPC %q is not owned by controller %s", vpc, s.m.base.Controller)
		}
		return nil
	}, func(work *[]routeGroup) {
		ls := s.rib.learned[vpc]
		if ls == nil {
			ls = newLearnedStore()
			s.rib.learned[vpc] = ls
		}
		for _, w := range withdrawals {
			if ls.del(w.Neighbor, w.Prefix) {
				*work = append(*work, routeGroup{vpc, w.Prefix})
			}
		}
		for i := range adds {
			ls.set(&adds[i])
			*work = append(*work, routeGroup{vpc, adds[i].Prefix})
		}
	})
}

// WithdrawAllLearned withdraws every BGP-learned route of every VPC: the
// BGP speaker stopped, and what it learned goes with it. The RIB knows
// what it was handed, so the caller need not keep its own record.
func (s *Server) WithdrawAllLearned() error {
	s.mu.Lock()
	n := 0
	for _, ls := range s.rib.learned {
		n += ls.len()
	}
	s.mu.Unlock()
	// n may be out of date by the time the change runs; runtimeChange
	// then publishes the rest with its last revision.
	return s.runtimeChange(n, func() error { return nil }, func(work *[]routeGroup) {
		for vpc, ls := range s.rib.learned {
			for p := range ls.prefixes() {
				*work = append(*work, routeGroup{vpc, p})
			}
			delete(s.rib.learned, vpc)
		}
	})
}

// publishChunk is how many prefixes one revision of a runtime change
// publishes at most. A larger change (a router's full table) is
// published as several revisions, so that a host starts programming the
// first routes while the next are resolved, and the tables' batches and
// change logs hold a chunk at a time rather than the whole table.
var publishChunk = 100_000

// runtimeChange applies a change of runtime candidates (learned or peer
// routes): check, with the model read-locked, may refuse it; then the
// change gets its revisions (runtimeRevision; one per publishChunk
// prefixes it may name, size), edit changes the candidates and names the
// prefixes it touched, and they are resolved and published, a chunk per
// revision, each one commit of every table.
func (s *Server) runtimeChange(size int, check func() error, edit func(work *[]routeGroup)) error {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	// changeMu alone keeps the model from changing (see Server.changeMu).
	if err := check(); err != nil {
		return err
	}
	// Every revision first: once the candidates are changed, every chunk
	// must be published.
	revs := make([]uint64, max(1, (size+publishChunk-1)/publishChunk))
	for i := range revs {
		rev, err := s.runtimeRevision()
		if err != nil {
			return status.Errorf(codes.Unavailable, "no revision for a route update: %v", err)
		}
		revs[i] = rev
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	work := make([]routeGroup, 0, size) // size: how many prefixes the change names, at most
	edit(&work)
	for i, rev := range revs {
		// Even a change (or a last chunk) that names nothing moves the
		// tables to the revision the store gave it (commitLocked sends
		// streams PROGRESS): a client left below the store's revision
		// would be RESET by the next leader, whose tables start at it.
		if !s.advanceLocked(rev) {
			// The store gave no newer revision: tables cannot move. It
			// does not happen with a store that numbers every commit;
			// say so rather than publish under a revision clients
			// already have.
			return status.Errorf(codes.Internal, "route update: the store's revision %d is not above %d", rev, s.rev)
		}
		chunk := work
		if i < len(revs)-1 {
			chunk = work[:min(len(work), publishChunk)]
		}
		work = work[len(chunk):]
		b := batches{}
		s.publishRoutesLocked(b, chunk)
		s.commitLocked(b)
	}
	// The RIB is in gNMI state: its ON_CHANGE subscribers look again.
	s.changedLocked()
	return nil
}

// runtimeReviser is a Persistence whose revisions number its commits, so
// that a change that is not persisted (routes learned or imported) still
// needs one for the watch tables to move to: CommitRuntime commits a
// marker and returns the revision it got.
type runtimeReviser interface {
	CommitRuntime() (uint64, error)
}

// runtimeRevision is the revision of a runtime change: the store's next
// one, or 0 for a store without revisions (advanceLocked numbers it).
func (s *Server) runtimeRevision() (uint64, error) {
	if r, ok := s.opts.Store.(runtimeReviser); ok {
		return r.CommitRuntime()
	}
	return 0, nil
}

// RIB returns every candidate of vpc's RIB resolved, by prefix then best
// first; nil if vpc is not owned here. It costs the size of the RIB.
func (s *Server) RIB(vpc string) []Candidate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ribLocked(vpc)
}

func (s *Server) ribLocked(vpc string) []Candidate {
	if s.m.vpcs[vpc] == nil {
		return nil
	}
	var out []Candidate
	for _, p := range sortedPrefixes(s.prefixesLocked(vpc)) {
		cs, _ := s.resolveLocked(vpc, p, nil)
		out = append(out, cs...)
	}
	return out
}

// RIBPrefix returns the candidates of prefix p in vpc's RIB resolved,
// best first; nil if p has none or vpc is not owned here. It costs p's
// candidates, not the size of the RIB: what a gNMI read of one prefix
// pays.
func (s *Server) RIBPrefix(vpc string, p netip.Prefix) []Candidate {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m.vpcs[vpc] == nil || !p.IsValid() {
		return nil
	}
	cs, _ := s.resolveLocked(vpc, p, nil)
	return cs
}

// RIBPrefixes returns the prefixes of vpc's RIB in the order RIB lists
// them (by address, then length); nil if vpc is not owned here. With
// RIBRange it reads a large RIB a part at a time, so that a reader of a
// million routes neither holds the controller for the whole read nor
// holds every candidate at once.
func (s *Server) RIBPrefixes(vpc string) []netip.Prefix {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m.vpcs[vpc] == nil {
		return nil
	}
	return sortedPrefixes(s.prefixesLocked(vpc))
}

// RIBRange returns the candidates of prefixes ps of vpc resolved, in the
// order of ps, each prefix's best first; prefixes without candidates (any
// more) are skipped. Each call is consistent in itself; two calls may
// see the RIB at different moments.
func (s *Server) RIBRange(vpc string, ps []netip.Prefix) []Candidate {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m.vpcs[vpc] == nil {
		return nil
	}
	// Most prefixes of a large RIB have one candidate.
	out := make([]Candidate, 0, len(ps)+len(ps)/8)
	for _, p := range ps {
		cs, _ := s.resolveLocked(vpc, p, nil)
		out = append(out, cs...)
	}
	return out
}

// RIBRevision moves whenever a candidate of a RIB may have changed (as
// Stats().RIBRevision), for a reader that looks again only then, without
// the rest of Stats.
func (s *Server) RIBRevision() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rib.rev
}

func sortedPrefixes(ps set[netip.Prefix]) []netip.Prefix {
	sorted := make([]netip.Prefix, 0, len(ps))
	for p := range ps {
		sorted = append(sorted, p)
	}
	slices.SortFunc(sorted, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return sorted
}

// RIBs returns the RIB of every VPC owned here, by VPC.
func (s *Server) RIBs() map[string][]Candidate {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]Candidate{}
	for name := range s.m.vpcs {
		out[name] = s.ribLocked(name)
	}
	return out
}

// The peer route manager's exchange with other controllers: a
// controller that owns a VPC peered with one owned here follows, per
// active peering, the routes the peer exports to it (the WatchRoutes of
// the peer's export, served to controllers as well as hosts), and this
// controller serves its exports to them.

// routeSource is a peer export this controller follows: what peer, owned
// by the controller at addrs, exports to vpc under policy.
type routeSource struct {
	vpc, peer, policy, addrs string
	vni                      uint32
	// custom: the peer exports its custom routes to vpc, and serves the
	// export's custom table.
	custom bool
}

// peerRouteSourcesLocked are the exports of remote peers to follow: one
// per active peering with a VPC another controller owns.
func (s *Server) peerRouteSourcesLocked() map[string]routeSource {
	out := map[string]routeSource{}
	m := s.m
	for _, p := range m.base.Peerings {
		owner, ok := m.base.Owner(p.PeerVPC)
		if !ok || owner.Name == m.base.Controller {
			continue
		}
		other, active, _ := s.peerStateLocked(p)
		if !active {
			continue
		}
		out[p.VPC+"/"+p.PeerVPC] = routeSource{vpc: p.VPC, peer: p.PeerVPC, policy: other.GetExportPolicy(),
			addrs: replicaset.Join(owner.Addresses()), vni: other.GetVni(), custom: other.GetExportCustomRoutes()}
	}
	return out
}

// followPeerRoutes keeps src's routes in the RIB of src.vpc until ctx
// ends. A revision is applied once whole (the last of its events, or the
// snapshot at SYNCED), so that a stream of a million routes is a few
// RIB updates, not a million.
func (s *Server) followPeerRoutes(ctx context.Context, src routeSource) {
	conn, err := replicaset.Dial(strings.Split(src.addrs, ","), s.opts.DialOptions...)
	if err != nil {
		s.log.Error("peer controller address", "vpc", src.peer, "addr", src.addrs, "err", err)
		return
	}
	defer conn.Close()
	s.log.Info("following peer routes", "vpc", src.vpc, "peer", src.peer, "policy", src.policy, "from", src.addrs)
	client := p4meshv1.NewConnectivityClient(conn)
	pending := map[string]*p4meshv1.Route{} // nil: deleted
	// replace: the next flush is a whole snapshot, which replaces what
	// was imported from src before (first, or after a RESET).
	replace, synced, more := true, false, false
	flush := func() {
		if len(pending) == 0 && !replace {
			return
		}
		s.setPeerRoutes(ctx, src, pending, replace)
		pending, replace = map[string]*p4meshv1.Route{}, false
	}
	// A follower serves one table of the peer's export for its life: the
	// peer's side says which (routeSource.custom), and Run follows afresh
	// when that changes, so that a stream resumes by revision within one
	// table only.
	watch.Follow(ctx, "routes/"+src.peer+"->"+src.vpc, s.log, func(ctx context.Context, rev uint64) (watch.Stream, error) {
		return client.WatchRoutes(ctx, &p4meshv1.WatchRequest{Controller: s.name(), Vpc: src.peer, ExportPolicy: src.policy, PeerVpc: src.vpc, ResumeRevision: rev})
	}, watch.Handler{
		OnEvent: func(ev *p4meshv1.Event) { more = ev.GetMore() },
		Put: func(key string, ev *p4meshv1.Event) {
			pending[key] = ev.GetRoute()
			if synced && !more {
				flush()
			}
		},
		Delete: func(key string, _ uint64) {
			pending[key] = nil
			if synced && !more {
				flush()
			}
		},
		Reset: func() {
			clear(pending)
			replace, synced = true, false
		},
		Synced: func(uint64) {
			synced = true
			flush()
		},
	})
}

// setPeerRoutes applies what the follower of src (whose context is
// follower) received: changes by prefix, replacing everything imported
// from src before if replace. Once Run has cancelled the follower, a
// last update racing in is dropped, as setRemote does.
func (s *Server) setPeerRoutes(follower context.Context, src routeSource, changes map[string]*p4meshv1.Route, replace bool) {
	err := s.runtimeChange(len(changes), func() error {
		if follower.Err() != nil {
			return follower.Err()
		}
		return nil
	}, func(work *[]routeGroup) {
		byPrefix := s.rib.peer[src.vpc]
		if replace {
			for p, prs := range byPrefix {
				if _, kept := changes[p.String()]; !kept && slices.ContainsFunc(prs, func(pr peerRoute) bool { return pr.peer == src.peer }) {
					s.setPeerRouteLocked(src.vpc, src.peer, src.vni, p, nil)
					*work = append(*work, routeGroup{src.vpc, p})
				}
			}
		}
		for key, r := range changes {
			p, err := netip.ParsePrefix(key)
			if err != nil || p.Masked() != p || (r != nil && r.GetPrefix() != key) {
				s.log.Warn("peer route ignored: its key is no prefix of its own", "vpc", src.vpc, "peer", src.peer, "key", key)
				continue
			}
			if s.setPeerRouteLocked(src.vpc, src.peer, src.vni, p, r) {
				*work = append(*work, routeGroup{src.vpc, p})
			}
		}
	})
	if err != nil && follower.Err() == nil {
		s.log.Error("peer routes not applied", "vpc", src.vpc, "peer", src.peer, "err", err)
	}
}

// dropPeerRoutes forgets what src exported: its peering is no longer
// followed (gone, inactive, or its peer moved).
func (s *Server) dropPeerRoutes(src routeSource) {
	s.setPeerRoutes(context.Background(), src, nil, true)
}

// authorizePeerRoutesLocked checks that controller name may watch the
// routes req names: it owns req.peer_vpc (the directory says so, not the
// request), and req.vpc, owned here, has a peering with it whose export
// policy is req.export_policy. custom says which table it is served.
func (s *Server) authorizePeerRoutesLocked(req *p4meshv1.WatchRequest, name string) (svc *service, custom bool, err error) {
	cfg := s.m.base
	vpc, peer, policy := req.GetVpc(), req.GetPeerVpc(), req.GetExportPolicy()
	if owner, ok := cfg.Owner(vpc); !ok || owner.Name != cfg.Controller {
		return nil, false, status.Errorf(codes.NotFound, "VPC %q is not owned by controller %s", vpc, cfg.Controller)
	}
	if owner, ok := cfg.Owner(peer); !ok || owner.Name != name {
		return nil, false, status.Errorf(codes.PermissionDenied, "controller %q does not own VPC %q (the directory says so), so may not watch what %s exports to it", name, peer, vpc)
	}
	p, ok := s.peeringLocked(vpc, peer)
	if !ok || p.ExportPolicy != policy {
		return nil, false, status.Errorf(codes.PermissionDenied, "VPC %s exports nothing under policy %q to %s", vpc, policy, peer)
	}
	svc = s.services[PublishedService{VPC: vpc, Policy: policy}]
	if svc == nil {
		return nil, false, status.Errorf(codes.NotFound, "%s publishes nothing under policy %q", vpc, policy)
	}
	return svc, p.ExportCustomRoutes, nil
}

// watchPeerRoutes serves a peer controller the routes a VPC exports to
// its peer VPC: the custom table if the peering exports custom routes.
// The stream is recorded with the service's, so that a configuration
// that no longer allows it (or flips export_custom_routes) ends it.
func (c connectivity) watchPeerRoutes(req *p4meshv1.WatchRequest, st grpc.ServerStreamingServer[p4meshv1.Event]) error {
	s := c.s
	who, err := s.callerOf(st.Context(), identity.Controller)
	if err != nil {
		return err
	}
	name := req.GetController()
	if who.authed {
		name = who.id.Name
	}
	ctx, cancel := context.WithCancelCause(st.Context())
	defer cancel(nil)
	s.mu.Lock()
	svc, custom, err := s.authorizePeerRoutesLocked(req, name)
	if err != nil {
		s.mu.Unlock()
		s.log.Warn("peer routes watch refused", "controller", name, "caller", identity.Peer(st.Context()), "vpc", req.GetVpc(), "peer_vpc", req.GetPeerVpc(), "err", err)
		return err
	}
	cs := &connStream{req: req, caller: who, cancel: cancel, controller: name, custom: custom}
	svc.streams[cs] = struct{}{}
	s.mu.Unlock()
	defer c.unsubscribe(svc, cs)
	t := svc.routes
	if custom {
		t = svc.custom
	}
	send := func(ev *p4meshv1.Event) error {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return st.Send(ev)
	}
	err = s.serve(ctx, t, req.GetResumeRevision(), send)
	if ctx.Err() != nil && st.Context().Err() == nil {
		err = context.Cause(ctx)
	}
	return err
}

// PublishedRoutes is how many routes vpc's hosts are served (its routes
// table: every prefix resolved, with its winner), read in constant time:
// what a benchmark or a metric polls, where RIB would resolve every
// prefix again. 0 for a VPC not owned here.
func (s *Server) PublishedRoutes(vpc string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc := s.services[PublishedService{VPC: vpc}]
	if svc == nil {
		return 0
	}
	return svc.routes.Len()
}
