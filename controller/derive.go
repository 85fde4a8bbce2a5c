package controller

import (
	"net/netip"

	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/watch"
)

// Derivation of the watch tables from the model: whole (recomputeLocked,
// after an Apply of a whole configuration) or by deltas (applyLocked,
// after a Change of endpoints, load balancers and routes;
// remoteChangedLocked, after a change of a peer controller's sides). Both build every item with the same functions, so they
// agree item by item; Config.connectivity is the reference both are
// tested against (incr_test.go).

// exports reports whether svc exports ip.
func (svc *service) exports(ip netip.Addr) bool {
	for _, p := range svc.exported {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// exportsProtocol is Config.ExportsProtocol from the model.
func (m *model) exportsProtocol(policy string, proto uint8) bool {
	if policy == "" {
		return true
	}
	pol := m.policies[policy]
	return pol != nil && pol.exportsProtocol(proto)
}

// hostIP is host id's underlay address as the items carry it, "" if no
// such host. One string per host (hostIPs), not one per item naming it:
// a million forwarding items would otherwise hold a million copies.
func (m *model) hostIP(id string) string {
	return m.hostIPs[id]
}

// lbItem is load balancer lb in svc, nil if svc does not export it.
func (m *model) lbItem(svc *service, lb LoadBalancer) *p4meshv1.LoadBalancer {
	ps := svc.ps
	proto, _ := IPProtocol(lb.Protocol)
	if lb.VPC != ps.VPC || !svc.exports(lb.VIP) || (ps.Policy != "" && !m.exportsProtocol(ps.Policy, proto)) {
		return nil
	}
	out := &p4meshv1.LoadBalancer{Name: lb.Name, Vpc: lb.VPC, Vip: lb.VIP.String(), Protocol: uint32(proto), Port: uint32(lb.Port)}
	for _, b := range lb.Backends {
		// As in Config.connectivity: a backend the policy does not
		// export stays hidden.
		e, ok := m.eps.get(b.Endpoint)
		if !ok || !svc.exports(e.IP) {
			continue
		}
		out.Backends = append(out.Backends, &p4meshv1.Backend{Endpoint: e.ID, Ip: e.IP.String(), Mac: e.MAC.String(), HostIp: m.hostIP(e.Host), Weight: max(b.Weight, 1)})
	}
	if len(out.Backends) == 0 {
		return nil
	}
	return out
}

// publishedFwdLocked is e's forwarding item as its VPC's services publish
// it now, nil if none does.
func (s *Server) publishedFwdLocked(e Endpoint) proto.Message {
	for _, svc := range s.svcByVPC[e.VPC] {
		if svc.fwd == nil || !svc.exports(e.IP) {
			continue
		}
		return svc.fwd.Get(e.IP.String())
	}
	return nil
}

// peerSideLocked is how this controller describes its side of peering p.
func (s *Server) peerSideLocked(p Peering) *p4meshv1.PeerSide {
	m := s.m
	var v VPC
	if vp := m.vpcs[p.VPC]; vp != nil {
		v = *vp
	}
	return &p4meshv1.PeerSide{
		Vpc: p.VPC, PeerVpc: p.PeerVPC, Configured: true, ExportPolicy: p.ExportPolicy,
		Vni: v.VNI, Subnets: prefixStrings(v.Subnets), ExportedPrefixes: prefixStrings(m.exportedPrefixes(p.VPC, p.ExportPolicy)),
		Hosts: m.hostsOf(p.VPC), ExportCustomRoutes: p.ExportCustomRoutes,
		GatewayPool: s.localPoolLocked(p.VPC),
	}
}

// vpcItemsLocked are the host-programming items VPC name brings to every
// host it has an endpoint on: the VPC and its peerings, with where to
// pull each peer's connectivity from. They are the same on every host.
func (s *Server) vpcItemsLocked(name string) map[string]proto.Message {
	m := s.m
	items := map[string]proto.Message{}
	v := m.vpcs[name]
	if v == nil {
		return items
	}
	gw, gwMAC := v.Gateway()
	items["vpc/"+name] = &p4meshv1.VPC{Name: name, Vni: v.VNI, Subnets: prefixStrings(v.Subnets), GatewayIp: gw.String(), GatewayMac: gwMAC.String()}
	for _, p := range m.base.Peerings {
		if p.VPC != name {
			continue
		}
		items["peering/"+name+"/"+p.PeerVPC] = s.peeringItemLocked(p)
	}
	return items
}

// peeringItemLocked is peering p as the hosts of its VPC are told it.
func (s *Server) peeringItemLocked(p Peering) *p4meshv1.Peering {
	other, active, reason := s.peerStateLocked(p)
	owner, _ := s.m.ownerOf(p.PeerVPC)
	it := &p4meshv1.Peering{
		Vpc: p.VPC, PeerVpc: p.PeerVPC, PeerVni: other.GetVni(), PeerExportPolicy: other.GetExportPolicy(),
		// peer_controller is for OHCs that predate peer_controllers.
		PeerController: owner.Addresses()[0], PeerControllers: owner.Addresses(),
		Active: active, Reason: reason, PeerPrefixes: other.GetExportedPrefixes(),
	}
	s.setPoolLocked(p, other, it)
	return it
}

// hostItemsLocked is what host id needs from this controller: the host, its
// endpoints in VPCs owned here, those VPCs, and their peerings.
func (s *Server) hostItemsLocked(id string) map[string]proto.Message {
	m := s.m
	items := map[string]proto.Message{}
	// The host goes out whenever it is configured, endpoints or not: a
	// host whose last endpoint left must still get a view, one that
	// removes that endpoint's entries.
	if h := m.hosts[id]; h != nil {
		items["host"] = hostInfo(*h)
	}
	for e := range m.endpointsAt(m.onHost[id]) {
		// The forwarding item's record, if e is still what it says: one
		// record for the endpoint's three items.
		_, _, items["endpoint/"+e.ID] = s.endpointForms(e, s.publishedFwdLocked(e))
	}
	for vpc := range m.hostVPCs[id] {
		for k, v := range s.vpcItems[m.names.name(vpc)] {
			items[k] = v
		}
	}
	s.gatewayItemsLocked(id, items)
	return items
}

// connectivityLocked is what svc publishes, from the model and the RIB:
// its routes and custom tables too (routeItemsLocked).
//
// sibling, if not nil, is another service of the same VPC whose
// destinations and forwarding (sibItems) were just made: an endpoint's
// items are the same in every service that exports it, and the tables
// share them (they never modify an item), keys included, rather than hold
// a copy per export policy.
func (s *Server) connectivityLocked(svc, sibling *service, sibItems [2]map[string]proto.Message) (dest, fwd, lbs, routes, custom map[string]proto.Message) {
	m, vpc := s.m, svc.ps.VPC
	dest, fwd, lbs = map[string]proto.Message{}, map[string]proto.Message{}, map[string]proto.Message{}
	routes, custom = s.routeItemsLocked(svc)
	if sibling != nil {
		// What both export, from the sibling: its keys are had only by
		// going over its map.
		for key, d := range sibItems[0] {
			if svc.exports(itemAddr(d)) {
				dest[key], fwd[key] = d, sibItems[1][key]
			}
		}
	}
	for e := range m.endpointsAt(m.inVPC[vpc]) {
		if e.VPC != vpc || !svc.exports(e.IP) || sibling != nil && sibling.exports(e.IP) {
			continue
		}
		key := e.IP.String()
		dest[key], fwd[key], _ = s.endpointForms(e, nil)
	}
	for name := range m.lbInVPC[vpc] {
		lb, _ := m.lbs.get(name)
		if it := m.lbItem(svc, lb); it != nil {
			lbs[name] = it
		}
	}
	return dest, fwd, lbs, routes, custom
}

// batches are the table changes of one Change, gathered so that each
// table takes them in one Commit at the change's revision: a client then
// sees one revision per change, as the store has it. Each key keeps the
// last thing done to it (nil: deleted), so a delete then a put of a key is
// a put.
type batches map[*watch.Table]map[string]proto.Message

// reserve makes room in t's batch for n more keys, so that a large change
// does not grow its map by rehashing.
func (b batches) reserve(t *watch.Table, n int) {
	if b[t] == nil {
		b[t] = make(map[string]proto.Message, n)
	}
}

func (b batches) put(t *watch.Table, key string, v proto.Message) {
	if b[t] == nil {
		b[t] = map[string]proto.Message{}
	}
	b[t][key] = v
}

func (b batches) del(t *watch.Table, key string) { b.put(t, key, nil) }

func putOrDelete[M proto.Message](b batches, t *watch.Table, key string, v M, ok bool) {
	if ok {
		b.put(t, key, v)
	} else {
		b.del(t, key)
	}
}

// commitLocked moves every table to s.rev: each of b its batch, then the
// clock, which moves the others, so that their streams are told the
// revision (PROGRESS) and a client of any table resumes at the store's
// revision after a restart. The clock comes last: a stream told s.rev has
// then been sent all of it. A table made during the change is at s.rev
// already, with what the batch would have given it.
//
// The tables the change left alone cost nothing here: at a million
// endpoints a controller has over ten thousand, and an empty commit each
// was a tenth of a change's CPU (issue 14).
func (s *Server) commitLocked(b batches) {
	for t, puts := range b {
		if t.Revision() >= s.rev {
			continue
		}
		// The batch is ours: its deletes leave it, and what stays is
		// the puts, with no copy (a batch can hold a million routes).
		var dels []string
		for k, v := range puts {
			if v == nil {
				dels = append(dels, k)
				delete(puts, k)
			}
		}
		t.Commit(s.rev, puts, dels)
	}
	s.clock.Advance(s.rev)
}

type hostVPC struct{ host, vpc string }

// applyLocked applies a checked change to the model and the watch tables,
// touching only what the change affects: the services of the VPCs of the
// endpoints, load balancers and routes it changes, the host tables of the
// hosts those endpoints leave and join, and the peer sides of VPCs whose
// hosts change. Every table moves to s.rev, in one Commit each.
func (s *Server) applyLocked(pd *pending) {
	m := s.m
	b := batches{}
	defer s.commitLocked(b)
	// What was there before, for what the change moves away from.
	oldEps := map[string]Endpoint{}
	pairs := map[hostVPC]bool{} // (host, VPC) pairs the change may add or remove → present before
	note := func(e Endpoint) {
		p := hostVPC{e.Host, e.VPC}
		if _, seen := pairs[p]; !seen {
			pairs[p] = m.has(e.Host, e.VPC)
		}
	}
	for _, ids := range []map[string]struct{}{pd.eps.gone, keysOf(pd.eps.put)} {
		for id := range ids {
			if e, ok := m.eps.get(id); ok {
				oldEps[id] = e
				note(e)
			}
		}
	}
	for _, e := range pd.eps.put {
		note(e)
	}
	oldLBs := map[string]LoadBalancer{}
	for _, names := range []map[string]struct{}{pd.lbs.gone, keysOf(pd.lbs.put)} {
		for name := range names {
			if lb, ok := m.lbs.get(name); ok {
				oldLBs[name] = lb
			}
		}
	}
	pd.apply()

	// Authorization first, so that a stream the change no longer
	// authorises is sent nothing of it: a host that lost its last
	// endpoint in a VPC may have lost the right to streams.
	var lost []hostVPC
	vpcHostsChanged := set[string]{}
	for p, before := range pairs {
		if now := m.has(p.host, p.vpc); now != before {
			vpcHostsChanged[p.vpc] = struct{}{}
			if before {
				lost = append(lost, p)
			}
		}
	}
	s.revokeHostsLocked(lost)

	// Endpoints: every old key goes before any new one is put, so that
	// two endpoints swapping addresses end up with both.
	touched := keysOf(pd.eps.put)
	for id := range pd.eps.gone {
		touched[id] = struct{}{}
	}
	for id := range touched {
		old, had := oldEps[id]
		if !had {
			continue
		}
		now, has := m.eps.get(id)
		if !has || now.Host != old.Host {
			b.del(s.hostTableLocked(old.Host), "endpoint/"+id)
		}
		if has && now.VPC == old.VPC && now.IP == old.IP {
			continue
		}
		for _, svc := range s.svcByVPC[old.VPC] {
			if svc.exports(old.IP) {
				b.del(svc.dest, old.IP.String())
				b.del(svc.fwd, old.IP.String())
			}
		}
	}
	for id := range touched {
		e, ok := m.eps.get(id)
		if !ok {
			continue
		}
		// One record for every service that exports e and its host (see
		// connectivityLocked), and one key.
		d, f, l := s.endpointForms(e, nil)
		var key string
		for _, svc := range s.svcByVPC[e.VPC] {
			if e.VPC != svc.ps.VPC || !svc.exports(e.IP) {
				continue
			}
			if key == "" {
				key = e.IP.String()
			}
			b.put(svc.dest, key, d)
			b.put(svc.fwd, key, f)
		}
		b.put(s.hostTableLocked(e.Host), "endpoint/"+id, l)
	}
	// A VPC arriving on a host brings its items there; leaving, takes them.
	for p, before := range pairs {
		if now := m.has(p.host, p.vpc); now != before && !m.gatewayOf(p.host, p.vpc) {
			// (A gateway of the VPC holds its items either way.)
			t := s.hostTableLocked(p.host)
			for k, v := range s.vpcItems[p.vpc] {
				putOrDelete(b, t, k, v, now)
			}
		}
	}
	for vpc := range vpcHostsChanged {
		for _, p := range m.base.Peerings {
			if p.VPC == vpc {
				b.put(s.peers, p.VPC+"/"+p.PeerVPC, s.peerSideLocked(p))
			}
		}
	}

	// Load balancers: those changed, and those whose backends did.
	lbs := keysOf(pd.lbs.put)
	for name := range pd.lbs.gone {
		lbs[name] = struct{}{}
	}
	for id := range touched {
		for name := range m.lbOf[id] {
			lbs[name] = struct{}{}
		}
	}
	for name := range lbs {
		old, had := oldLBs[name]
		now, has := m.lbs.get(name)
		if had && (!has || now.VPC != old.VPC) {
			for _, svc := range s.svcByVPC[old.VPC] {
				b.del(svc.lbs, name)
			}
		}
		if has {
			for _, svc := range s.svcByVPC[now.VPC] {
				it := m.lbItem(svc, now)
				putOrDelete(b, svc.lbs, name, it, it != nil)
			}
		}
	}

	// Routes: each prefix a changed route competes for, or whose routes'
	// next hop changed, or that an attachment whose identity changed
	// carries, is resolved again.
	groups := set[routeGroup]{}
	for k := range pd.routes.put {
		groups[routeGroup{k.VPC, k.Prefix}] = struct{}{}
	}
	for k := range pd.routes.gone {
		groups[routeGroup{k.VPC, k.Prefix}] = struct{}{}
	}
	for id := range touched {
		for k := range m.rtHop[id] {
			groups[routeGroup{k.VPC, k.Prefix}] = struct{}{}
		}
		old, had := oldEps[id]
		now, has := m.eps.get(id)
		if had && has && old.VPC == now.VPC && old.IP == now.IP && old.Kind == now.Kind {
			continue
		}
		if had {
			s.learnedOfLocked(old.VPC, id, groups)
		}
		if has {
			s.learnedOfLocked(now.VPC, id, groups)
		}
	}
	work := make([]routeGroup, 0, len(groups))
	for g := range groups {
		work = append(work, g)
	}
	s.publishRoutesLocked(b, work)
}

func keysOf[K comparable, V any](m map[K]V) set[K] {
	out := make(set[K], len(m))
	for k := range m {
		out[k] = struct{}{}
	}
	return out
}
