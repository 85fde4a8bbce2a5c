package controller

import (
	"fmt"
	"iter"
	"net/netip"
	"slices"
)

// The Server's configuration, indexed. A *Config is a set of lists, and
// every question a change asks of one (who else has this IP, which hosts
// hold this VPC, which load balancers have this backend) is a scan of a
// list: fine once per configuration, not once per change of a
// configuration of a million endpoints. The model holds the same
// configuration as items by key plus the indexes those questions need,
// so that a change costs what it touches (change.go), and materialises a
// *Config only when one is asked for (Server.Config).

// ordered is a list of items by key that keeps the order items were first
// added in, as Config's lists do (Change.ApplyTo appends new items and
// replaces existing ones in place), with lookup, put and delete in O(1).
// Deleted items leave a hole until holes are the majority, when the list
// is compacted: positions compare in list order, but change then.
//
// S is how an item is stored: V itself for most lists (newOrdered), a
// smaller record for endpoints (epRec), with pack and unpack between them.
type ordered[K comparable, V, S any] struct {
	slots  []slot[S]
	at     posIndex[K]
	dead   int
	pack   func(V) S
	unpack func(S) V
}

type slot[S any] struct {
	v    S
	live bool
}

func same[V any](v V) V { return v }

func newOrdered[K comparable, V any](n int) ordered[K, V, V] {
	return newPacked(n, same[V], same[V], posIndex[K](make(mapIndex[K], n)))
}

// newPacked is an ordered list that stores its items as pack makes them,
// with at its index by key.
func newPacked[K comparable, V, S any](n int, pack func(V) S, unpack func(S) V, at posIndex[K]) ordered[K, V, S] {
	return ordered[K, V, S]{slots: make([]slot[S], 0, n), at: at, pack: pack, unpack: unpack}
}

func (o *ordered[K, V, S]) get(k K) (V, bool) {
	if i, ok := o.at.get(k); ok {
		return o.unpack(o.slots[i].v), true
	}
	var zero V
	return zero, false
}

// pos is k's position: positions order items as the list does.
func (o *ordered[K, V, S]) pos(k K) (int, bool) {
	i, ok := o.at.get(k)
	return int(i), ok
}

// end is the position the next new item gets.
func (o *ordered[K, V, S]) end() int { return len(o.slots) }

func (o *ordered[K, V, S]) put(k K, v V) {
	if i, ok := o.at.get(k); ok {
		o.slots[i].v = o.pack(v)
		return
	}
	// The item first: a keyIndex reads keys from the list.
	o.slots = append(o.slots, slot[S]{v: o.pack(v), live: true})
	o.at.set(k, int32(len(o.slots)-1))
}

// del deletes k. If that compacted the list, moving positions, moved
// is where each position went (-1: a hole), for indexes by position to
// follow; nil otherwise.
func (o *ordered[K, V, S]) del(k K) (moved []int32) {
	i, ok := o.at.get(k)
	if !ok {
		return nil
	}
	o.at.del(k) // while the item is there to read its key from
	var zero S
	o.slots[i] = slot[S]{v: zero}
	o.dead++
	if o.dead > 64 && o.dead > len(o.slots)/2 {
		return o.compact()
	}
	return nil
}

// compact drops the holes. It is O(n), once per n/2 deletes.
func (o *ordered[K, V, S]) compact() (moved []int32) {
	moved = make([]int32, len(o.slots))
	live := o.slots[:0]
	for i, s := range o.slots {
		moved[i] = -1
		if s.live {
			moved[i] = int32(len(live))
			live = append(live, s)
		}
	}
	clear(o.slots[len(live):])
	o.slots = live
	o.dead = 0
	o.at.move(moved)
	return moved
}

func (o *ordered[K, V, S]) len() int { return o.at.len() }

// rank is the index in the list of the item at position p. It is O(n):
// only error messages about items without a name need it.
func (o *ordered[K, V, S]) rank(p int) int {
	n := 0
	for _, s := range o.slots[:min(p, len(o.slots))] {
		if s.live {
			n++
		}
	}
	return n + max(0, p-len(o.slots))
}

// values is the list, nil if empty.
func (o *ordered[K, V, S]) values() []V {
	if o.len() == 0 {
		return nil
	}
	out := make([]V, 0, o.len())
	for _, s := range o.slots {
		if s.live {
			out = append(out, o.unpack(s.v))
		}
	}
	return out
}

// epRec is an endpoint as the model stores it: 48 bytes a slot, where
// an Endpoint is 112 (a million of them at 1M endpoints, issue 14). The
// VPC, host and kind are numbered names (names), the address is IPv4
// (validate.go); an address that is not, which no accepted endpoint
// has, is kept aside (model.epOddIP) so that a record loses nothing.
type epRec struct {
	id              string
	vpc, host, kind uint32
	ip              [4]byte
	mac, routerMAC  MAC
	port            uint16
	ipForm          uint8 // ipNone, ip4 or ipOdd
}

const (
	ipNone = iota // the zero netip.Addr
	ip4
	ipOdd // in model.epOddIP
)

func (m *model) packEndpoint(e Endpoint) epRec {
	r := epRec{
		id: e.ID, vpc: m.names.add(e.VPC), host: m.names.add(e.Host), kind: m.names.add(string(e.Kind)),
		mac: e.MAC, routerMAC: e.RouterMAC, port: e.Port,
	}
	delete(m.epOddIP, e.ID)
	switch {
	case e.IP.Is4():
		r.ip, r.ipForm = e.IP.As4(), ip4
	case e.IP.IsValid():
		r.ipForm = ipOdd
		if m.epOddIP == nil {
			m.epOddIP = map[string]netip.Addr{}
		}
		m.epOddIP[e.ID] = e.IP
	}
	return r
}

func (m *model) unpackEndpoint(r epRec) Endpoint {
	e := Endpoint{
		ID: r.id, VPC: m.names.name(r.vpc), Host: m.names.name(r.host), Kind: EndpointKind(m.names.name(r.kind)),
		MAC: r.mac, RouterMAC: r.routerMAC, Port: r.port,
	}
	switch r.ipForm {
	case ip4:
		e.IP = netip.AddrFrom4(r.ip)
	case ipOdd:
		e.IP = m.epOddIP[r.id]
	}
	return e
}

type vpcMAC struct {
	vpc string
	mac MAC
}

type hostPort struct {
	host string
	port uint16
}

type frontend struct {
	vpc   string
	vip   netip.Addr
	proto string
	port  uint16
}

func frontendOf(lb LoadBalancer) (frontend, bool) {
	if (lb.Protocol != "tcp" && lb.Protocol != "udp") || lb.Port == 0 || !lb.VIP.IsValid() {
		return frontend{}, false
	}
	return frontend{lb.VPC, lb.VIP, lb.Protocol, lb.Port}, true
}

// routeGroup is the routes that compete for one prefix of a VPC.
type routeGroup struct {
	vpc    string
	prefix netip.Prefix
}

func groupOf(r Route) routeGroup { return routeGroup{r.VPC, r.Prefix} }

type set[K comparable] map[K]struct{}

func addTo[A, B comparable](m map[A]set[B], a A, b B) {
	s := m[a]
	if s == nil {
		s = set[B]{}
		m[a] = s
	}
	s[b] = struct{}{}
}

func delFrom[A, B comparable](m map[A]set[B], a A, b B) {
	if s := m[a]; s != nil {
		delete(s, b)
		if len(s) == 0 {
			delete(m, a)
		}
	}
}

func count[A, B comparable](m map[A]map[B]int32, a A, b B, d int32) {
	n := m[a]
	if n == nil {
		n = map[B]int32{}
		m[a] = n
	}
	n[b] += d
	if n[b] == 0 {
		delete(n, b)
		if len(n) == 0 {
			delete(m, a)
		}
	}
}

// model is an accepted (valid) configuration, indexed. Endpoints, load
// balancers and routes, the kinds that come by the hundred thousand and
// change one at a time, are items by key with indexes; the other kinds
// stay in base, a *Config with those three lists nil, replaced whole when
// they change (Server.Apply).
type model struct {
	base     *Config
	owner    map[string]string // directory: VPC → controller
	vpcs     map[string]*VPC
	hosts    map[string]*Host
	hostIPs  map[string]string // hosts' underlay addresses, formatted (hostIP)
	policies map[string]*ExportPolicy
	peerings map[[2]string]Peering // (VPC, peer VPC) → this side

	eps    ordered[string, Endpoint, epRec]
	lbs    ordered[string, LoadBalancer, LoadBalancer]
	routes ordered[RouteKey, Route, Route]
	// epOddIP holds the addresses of endpoints whose address is valid and
	// not IPv4 (epRec): none that validated.
	epOddIP map[string]netip.Addr

	// Endpoints by what makes one unique (validate.go), and where they
	// are: positions in eps, in tables that read the keys (ipKey, macKey,
	// portKey) from the records (keyIndex: about 8 bytes an endpoint;
	// as maps of id strings these three were an eighth of a controller's
	// heap at a million endpoints). Not every endpoint is in them: within
	// one change two endpoints may swap an address, the second put taking
	// the entry before the first moves. So when eps is compacted the
	// positions move (moveEndpoints) rather than being indexed again from
	// the records.
	epIP   *keyIndex[ipKey]
	epMAC  *keyIndex[macKey]
	epPort *keyIndex[portKey]
	names  names
	// Endpoints by host and by VPC, as sorted lists of positions in eps
	// (4 bytes a position, not the 16 of an id nor the ~20 of a set's
	// slot: a million of each at 1M endpoints). A new endpoint's position
	// is the last, so a put appends; positions move when eps is
	// compacted, and delEndpoint then builds these again (moveEndpoints).
	onHost map[string][]int32 // host → endpoint positions
	inVPC  map[string][]int32 // VPC → endpoint positions
	// Endpoints per (host, VPC), by numbered names (names): a pair per
	// endpoint, near enough, and 8 bytes a map slot rather than 24. The
	// hosts of a VPC are read from inVPC (hostsOf).
	hostVPCs map[string]map[uint32]int32  // host → VPC → endpoints
	lbVIP    map[vpcIP]set[string]        // load balancers by VIP
	lbFront  map[frontend]string          // load balancers by frontend
	lbOf     map[string]set[string]       // backend endpoint → load balancers
	lbInVPC  map[string]set[string]       // VPC → load balancers
	rtHop    map[string]set[RouteKey]     // next hop endpoint → routes
	rtGroup  map[routeGroup]set[RouteKey] // (VPC, prefix) → routes
	rtInVPC  map[string]set[netip.Prefix] // VPC → prefixes routed

	// hostLists are hostsOf's answers, by VPC, kept as hosts come and go
	// (hostsMoved): each side of a VPC's peerings lists its hosts
	// (peerSideLocked), and they share one list rather than one each
	// (~950 hosts a VPC at 1M endpoints).
	hostLists map[string][]string
}

func newModel(c *Config) *model {
	base := *c
	base.Endpoints, base.LoadBalancers, base.Routes = nil, nil, nil
	m := &model{
		base:     &base,
		owner:    map[string]string{},
		vpcs:     map[string]*VPC{},
		hosts:    map[string]*Host{},
		policies: map[string]*ExportPolicy{},
		peerings: make(map[[2]string]Peering, len(c.Peerings)),
		lbs:      newOrdered[string, LoadBalancer](len(c.LoadBalancers)),
		routes:   newOrdered[RouteKey, Route](len(c.Routes)),
		names:    names{num: map[string]uint32{}},
		onHost:   map[string][]int32{},
		inVPC:    map[string][]int32{},
		hostVPCs: map[string]map[uint32]int32{},
		lbVIP:    map[vpcIP]set[string]{},
		lbFront:  map[frontend]string{},
		lbOf:     map[string]set[string]{},
		lbInVPC:  map[string]set[string]{},
		rtHop:    map[string]set[RouteKey]{},
		rtGroup:  map[routeGroup]set[RouteKey]{},
		rtInVPC:  map[string]set[netip.Prefix]{},
	}
	// The indexes of endpoints read their keys from the records.
	n := len(c.Endpoints)
	rec := func(p int32) *epRec { return &m.eps.slots[p].v }
	m.eps = newPacked(n, m.packEndpoint, m.unpackEndpoint, posIndex[string](newKeyIndex(n, func(p int32) string { return rec(p).id })))
	m.epIP = newKeyIndex(n, func(p int32) ipKey { return ipKey{rec(p).vpc, rec(p).ip} })
	m.epMAC = newKeyIndex(n, func(p int32) macKey { return macKey{rec(p).vpc, rec(p).mac} })
	m.epPort = newKeyIndex(n, func(p int32) portKey { return portKey{rec(p).host, rec(p).port} })
	for _, e := range c.Directory {
		for _, v := range e.VPCs {
			if _, dup := m.owner[v]; !dup {
				m.owner[v] = e.Name
			}
		}
	}
	for i := range base.VPCs {
		m.vpcs[base.VPCs[i].Name] = &base.VPCs[i]
	}
	m.hostIPs = make(map[string]string, len(base.Hosts))
	for i := range base.Hosts {
		m.hosts[base.Hosts[i].ID] = &base.Hosts[i]
		m.hostIPs[base.Hosts[i].ID] = base.Hosts[i].UnderlayIP.String()
	}
	for i := range base.ExportPolicies {
		m.policies[base.ExportPolicies[i].Name] = &base.ExportPolicies[i]
	}
	for _, p := range base.Peerings {
		m.peerings[[2]string{p.VPC, p.PeerVPC}] = p
	}
	for _, e := range c.Endpoints {
		m.putEndpoint(e)
	}
	for _, lb := range c.LoadBalancers {
		m.putLB(lb)
	}
	for _, r := range c.Routes {
		m.putRoute(r)
	}
	return m
}

// ownerOf is Config.Owner without the scan of every directory entry's
// VPCs: it runs per peering on every look at the peerings.
func (m *model) ownerOf(vpc string) (ControllerEntry, bool) {
	name, ok := m.owner[vpc]
	if !ok {
		return ControllerEntry{}, false
	}
	for _, e := range m.base.Directory {
		if e.Name == name {
			return e, true
		}
	}
	return ControllerEntry{}, false
}

// config materialises the configuration. It shares base's lists, which
// are never modified.
func (m *model) config() *Config {
	c := *m.base
	c.Endpoints = m.eps.values()
	c.LoadBalancers = m.lbs.values()
	c.Routes = m.routes.values()
	return &c
}

func (m *model) putEndpoint(e Endpoint) {
	if old, ok := m.eps.get(e.ID); ok {
		m.unindexEndpoint(old)
	}
	m.eps.put(e.ID, e)
	vpc, host := m.names.add(e.VPC), m.names.add(e.Host)
	i, _ := m.eps.pos(e.ID)
	p := int32(i)
	if e.IP.Is4() {
		m.epIP.set(ipKey{vpc, e.IP.As4()}, p)
	}
	m.epMAC.set(macKey{vpc, e.MAC}, p)
	m.epPort.set(portKey{host, e.Port}, p)
	insertPos(m.onHost, e.Host, p)
	insertPos(m.inVPC, e.VPC, p)
	if m.hostVPCs[e.Host][vpc] == 0 {
		m.hostsMoved(e.VPC, host, true)
	}
	count(m.hostVPCs, e.Host, vpc, 1)
}

func (m *model) delEndpoint(id string) {
	if old, ok := m.eps.get(id); ok {
		m.unindexEndpoint(old)
		if moved := m.eps.del(id); moved != nil {
			m.moveEndpoints(moved)
		}
		delete(m.epOddIP, id)
	}
}

func (m *model) unindexEndpoint(e Endpoint) {
	// Within one change two endpoints may swap an address: the entry may
	// already be the other one's.
	vpc, host := m.names.num[e.VPC], m.names.num[e.Host]
	i, _ := m.eps.pos(e.ID)
	p := int32(i)
	if e.IP.Is4() {
		deleteAt(m.epIP, ipKey{vpc, e.IP.As4()}, p)
	}
	deleteAt(m.epMAC, macKey{vpc, e.MAC}, p)
	deleteAt(m.epPort, portKey{host, e.Port}, p)
	removePos(m.onHost, e.Host, p)
	removePos(m.inVPC, e.VPC, p)
	if m.hostVPCs[e.Host][vpc] == 1 {
		m.hostsMoved(e.VPC, host, false)
	}
	count(m.hostVPCs, e.Host, vpc, -1)
}

// insertPos adds position p to the sorted list of k in by.
func insertPos(by map[string][]int32, k string, p int32) {
	l := by[k]
	if i, found := slices.BinarySearch(l, p); !found {
		by[k] = slices.Insert(l, i, p)
	}
}

// removePos removes position p from the sorted list of k in by.
func removePos(by map[string][]int32, k string, p int32) {
	l := by[k]
	i, found := slices.BinarySearch(l, p)
	switch {
	case !found:
	case len(l) == 1:
		delete(by, k)
	default:
		by[k] = slices.Delete(l, i, i+1)
	}
}

// moveEndpoints makes the indexes by position follow eps's compaction,
// which moved position p to moved[p]: O(n), as the compaction is, once
// per n/2 deletes. The uniqueness indexes' positions move; onHost and
// inVPC, which hold every endpoint, are built again.
func (m *model) moveEndpoints(moved []int32) {
	m.epIP.move(moved)
	m.epMAC.move(moved)
	m.epPort.move(moved)
	clear(m.onHost)
	clear(m.inVPC)
	for p, sl := range m.eps.slots {
		if sl.live {
			h, v := m.names.name(sl.v.host), m.names.name(sl.v.vpc)
			m.onHost[h] = append(m.onHost[h], int32(p))
			m.inVPC[v] = append(m.inVPC[v], int32(p))
		}
	}
}

// endpointsAt are the endpoints at positions ps of eps, in eps's order.
func (m *model) endpointsAt(ps []int32) iter.Seq[Endpoint] {
	return func(yield func(Endpoint) bool) {
		for _, p := range ps {
			if !yield(m.eps.unpack(m.eps.slots[p].v)) {
				return
			}
		}
	}
}

// names numbers the VPC names and host ids the endpoint indexes are
// keyed by. A number is never given back: there is one per VPC and host
// an accepted endpoint ever named, thousands, not one per endpoint.
type names struct {
	num map[string]uint32 // from 1: 0 is no name numbered
	str []string          // str[i-1] is numbered i
}

func (n *names) add(s string) uint32 {
	i, ok := n.num[s]
	if !ok {
		n.str = append(n.str, s)
		i = uint32(len(n.str))
		n.num[s] = i
	}
	return i
}

func (n *names) name(i uint32) string { return n.str[i-1] }

// has reports whether host has an endpoint in vpc.
func (m *model) has(host, vpc string) bool {
	n, ok := m.names.num[vpc]
	return ok && m.hostVPCs[host][n] > 0
}

// ipKey is an endpoint address in a VPC: accepted endpoints' addresses
// are IPv4 (validate.go), so an address that is not is no endpoint's.
type ipKey struct {
	vpc uint32
	ip  [4]byte
}

type macKey struct {
	vpc uint32
	mac MAC
}

type portKey struct {
	host uint32
	port uint16
}

// epByIP is the endpoint with address ip in vpc, "" if none.
func (m *model) epByIP(vpc string, ip netip.Addr) string {
	n, ok := m.names.num[vpc]
	if !ok || !ip.Is4() {
		return ""
	}
	return epAt(m, m.epIP, ipKey{n, ip.As4()})
}

// epByMAC is the endpoint with MAC mac in vpc, "" if none.
func (m *model) epByMAC(vpc string, mac MAC) string {
	n, ok := m.names.num[vpc]
	if !ok {
		return ""
	}
	return epAt(m, m.epMAC, macKey{n, mac})
}

// epByPort is the endpoint on port of host, "" if none.
func (m *model) epByPort(host string, port uint16) string {
	n, ok := m.names.num[host]
	if !ok {
		return ""
	}
	return epAt(m, m.epPort, portKey{n, port})
}

// epAt is the id of the endpoint at the position by maps k to, "" if
// none.
func epAt[K comparable](m *model, by posIndex[K], k K) string {
	p, ok := by.get(k)
	if !ok {
		return ""
	}
	return m.eps.slots[p].v.id
}

// deleteIf deletes k from m if it maps to v.
func deleteIf[K, V comparable](m map[K]V, k K, v V) {
	if m[k] == v {
		delete(m, k)
	}
}

func (m *model) putLB(lb LoadBalancer) {
	if old, ok := m.lbs.get(lb.Name); ok {
		m.unindexLB(old)
	}
	m.lbs.put(lb.Name, lb)
	addTo(m.lbVIP, vpcIP{lb.VPC, lb.VIP}, lb.Name)
	if f, ok := frontendOf(lb); ok {
		m.lbFront[f] = lb.Name
	}
	for _, b := range lb.Backends {
		addTo(m.lbOf, b.Endpoint, lb.Name)
	}
	addTo(m.lbInVPC, lb.VPC, lb.Name)
}

func (m *model) delLB(name string) {
	if old, ok := m.lbs.get(name); ok {
		m.unindexLB(old)
		m.lbs.del(name)
	}
}

func (m *model) unindexLB(lb LoadBalancer) {
	delFrom(m.lbVIP, vpcIP{lb.VPC, lb.VIP}, lb.Name)
	if f, ok := frontendOf(lb); ok {
		deleteIf(m.lbFront, f, lb.Name)
	}
	for _, b := range lb.Backends {
		delFrom(m.lbOf, b.Endpoint, lb.Name)
	}
	delFrom(m.lbInVPC, lb.VPC, lb.Name)
}

func (m *model) putRoute(r Route) {
	k := r.Key()
	if old, ok := m.routes.get(k); ok {
		m.unindexRoute(old)
	}
	m.routes.put(k, r)
	if r.NextHop != "" {
		addTo(m.rtHop, r.NextHop, k)
	}
	addTo(m.rtGroup, groupOf(r), k)
	addTo(m.rtInVPC, r.VPC, r.Prefix)
}

func (m *model) delRoute(k RouteKey) {
	if old, ok := m.routes.get(k); ok {
		m.unindexRoute(old)
		m.routes.del(k)
	}
}

func (m *model) unindexRoute(r Route) {
	k := r.Key()
	if r.NextHop != "" {
		delFrom(m.rtHop, r.NextHop, k)
	}
	g := groupOf(r)
	delFrom(m.rtGroup, g, k)
	if m.rtGroup[g] == nil {
		delFrom(m.rtInVPC, r.VPC, r.Prefix)
	}
}

// chooseRoute is ChooseRoutes for the routes of one (VPC, prefix): the
// winner and why, false if there are none.
func (m *model) chooseRoute(g routeGroup) (Route, string, bool) {
	keys := m.rtGroup[g]
	if len(keys) == 0 {
		return Route{}, "", false
	}
	var best RouteKey
	bestPos := -1
	var bestPrio uint32
	for k := range keys {
		r, _ := m.routes.get(k)
		p, _ := m.routes.pos(k)
		if bestPos < 0 || r.Priority < bestPrio || (r.Priority == bestPrio && p < bestPos) {
			best, bestPos, bestPrio = k, p, r.Priority
		}
	}
	r, _ := m.routes.get(best)
	return r, chosenReason(r, len(keys)), true
}

// chooseRoutes is Config.ChooseRoutes from the indexes, in time linear in
// the routes rather than in the whole configuration: metrics and gNMI
// state ask for it after every change.
func (m *model) chooseRoutes() []RouteStatus {
	rs := m.routes.values()
	if len(rs) == 0 {
		return nil
	}
	type choice struct {
		best Route
		n    int
	}
	chosen := map[routeGroup]choice{}
	out := make([]RouteStatus, len(rs))
	for i, r := range rs {
		g := groupOf(r)
		c, ok := chosen[g]
		if !ok {
			c.best, _, _ = m.chooseRoute(g)
			c.n = len(m.rtGroup[g])
			chosen[g] = c
		}
		w := c.best
		st := RouteStatus{Route: r, Chosen: w.Key() == r.Key()}
		switch {
		case st.Chosen:
			st.Reason = chosenReason(r, c.n)
		case w.Priority == r.Priority:
			st.Reason = fmt.Sprintf("same priority as the route via %s, configured first", nextHopName(w))
		default:
			st.Reason = fmt.Sprintf("priority %d loses to %d (via %s)", r.Priority, w.Priority, nextHopName(w))
		}
		out[i] = st
	}
	return out
}

// hostsMoved keeps vpc's list of hosts, if hostsOf made one, as host
// (numbered) comes to it or leaves it: in a copy, since the list is
// shared, in time linear in the VPC's hosts, as making the sides that
// list them is; a list made again would be linear in its endpoints.
func (m *model) hostsMoved(vpc string, host uint32, came bool) {
	l, ok := m.hostLists[vpc]
	if !ok {
		return
	}
	h := m.names.name(host)
	i, found := slices.BinarySearch(l, h)
	switch {
	case came && !found:
		n := make([]string, len(l)+1)
		copy(n, l[:i])
		n[i] = h
		copy(n[i+1:], l[i:])
		m.hostLists[vpc] = n
	case !came && found && len(l) == 1:
		m.hostLists[vpc] = nil
	case !came && found:
		n := make([]string, 0, len(l)-1)
		m.hostLists[vpc] = append(append(n, l[:i]...), l[i+1:]...)
	}
}

// hostsOf returns, sorted, the hosts with an endpoint in vpc. The list
// is shared (hostLists): callers must not write into it, and it is
// clipped, so that one appending to it gets a copy.
func (m *model) hostsOf(vpc string) []string {
	if l, ok := m.hostLists[vpc]; ok {
		return l
	}
	var nums []uint32
	for _, p := range m.inVPC[vpc] {
		nums = append(nums, m.eps.slots[p].v.host)
	}
	slices.Sort(nums)
	nums = slices.Compact(nums)
	var l []string
	if len(nums) > 0 {
		l = make([]string, len(nums))
		for i, n := range nums {
			l[i] = m.names.name(n)
		}
		slices.Sort(l)
	}
	if m.hostLists == nil {
		m.hostLists = map[string][]string{}
	}
	m.hostLists[vpc] = l
	return l
}

// vpcsOfHost returns, sorted, the VPCs host has endpoints in.
func (m *model) vpcsOfHost(host string) []string {
	return m.sortedNames(m.hostVPCs[host])
}

func (m *model) sortedNames(c map[uint32]int32) []string {
	if len(c) == 0 {
		return nil
	}
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, m.names.name(k))
	}
	slices.Sort(out)
	return out
}

// exportedPrefixes is Config.ExportedPrefixes from the indexes.
func (m *model) exportedPrefixes(vpc, policy string) []netip.Prefix {
	v := m.vpcs[vpc]
	if v == nil {
		return nil
	}
	out := slices.Clone(v.Subnets)
	if policy == "" {
		return normalize(out)
	}
	pol := m.policies[policy]
	if pol == nil {
		return nil
	}
	if len(pol.Prefixes) > 0 {
		out = intersect(out, pol.Prefixes)
	}
	if pol.PrivateOnly {
		out = intersect(out, privateRanges)
	}
	return normalize(out)
}
