package controller

import (
	"cmp"
	"errors"
	"slices"
)

// A change to endpoints, load balancers and routes is checked against
// the model without validating the whole configuration again, and must
// say exactly what Validate of the whole result would (the gNMI fast path
// promises clients the same errors either way). That is possible because
// the model is valid: every problem of the result involves an item the
// change puts, or an item it leaves alone that now collides with one it
// puts, or that refers to one it deletes or moves. Those items, and only
// those, are checked again in list order, with the same per-item checks
// Validate runs (validate.go), so the messages and their order are
// Validate's. The other kinds (directory, VPCs, hosts, policies,
// peerings) can invalidate anything, so a change of them is applied as a
// whole configuration (Server.ApplyChange).

// edits are the puts and deletes of one kind, resolved as ApplyTo would
// resolve them: deletes first, a put replacing the item of its key where
// it is and appending a new one, the last put of a key winning at the
// place of the first.
type edits[K comparable, V, S any] struct {
	list  *ordered[K, V, S]
	key   func(V) K
	put   map[K]V
	order []K // keys put, in the order ApplyTo places new ones
	gone  set[K]
	at    map[K]int // positions of the keys put, after the change
}

func newEdits[K comparable, V, S any](list *ordered[K, V, S], del []K, put []V, key func(V) K) *edits[K, V, S] {
	ed := &edits[K, V, S]{list: list, key: key, put: make(map[K]V, len(put)), gone: make(set[K], len(del)), at: make(map[K]int, len(put))}
	for _, k := range del {
		ed.gone[k] = struct{}{}
	}
	next := list.end()
	for _, v := range put {
		k := key(v)
		if _, again := ed.put[k]; !again {
			ed.order = append(ed.order, k)
			if p, ok := list.pos(k); ok && !ed.deleted(k) {
				ed.at[k] = p
			} else {
				ed.at[k] = next
				next++
			}
		}
		ed.put[k] = v
	}
	return ed
}

func (ed *edits[K, V, S]) deleted(k K) bool {
	_, ok := ed.gone[k]
	return ok
}

// touched reports whether the change puts or deletes k.
func (ed *edits[K, V, S]) touched(k K) bool {
	_, ok := ed.put[k]
	return ok || ed.deleted(k)
}

// pos is k's position after the change, for an item that is there then.
func (ed *edits[K, V, S]) pos(k K) int {
	if p, ok := ed.at[k]; ok {
		return p
	}
	p, _ := ed.list.pos(k)
	return p
}

// after is k's item once the change is applied.
func (ed *edits[K, V, S]) after(k K) (V, bool) {
	if v, ok := ed.put[k]; ok {
		return v, true
	}
	if ed.deleted(k) {
		var zero V
		return zero, false
	}
	return ed.list.get(k)
}

// index is the index in the list, after the change, of the item at
// position p. It is O(n), for messages about items without a name only.
func (ed *edits[K, V, S]) index(p int) int {
	n := 0
	for _, s := range ed.list.slots[:min(p, len(ed.list.slots))] {
		if s.live && !ed.deleted(ed.key(ed.list.unpack(s.v))) {
			n++
		}
	}
	for _, k := range ed.order {
		if q := ed.at[k]; q >= ed.list.end() && q < p {
			n++
		}
	}
	return n
}

// noop reports whether applying the change would leave the list as it is.
func (ed *edits[K, V, S]) noop(equal func(a, b V) bool) bool {
	for k := range ed.gone {
		if _, ok := ed.list.get(k); ok {
			return false
		}
	}
	for k, v := range ed.put {
		if old, ok := ed.list.get(k); !ok || !equal(old, v) {
			return false
		}
	}
	return true
}

// sorted returns keys in list order after the change.
func (ed *edits[K, V, S]) sorted(keys set[K]) []K {
	out := make([]K, 0, len(keys))
	for k := range keys {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b K) int { return cmp.Compare(ed.pos(a), ed.pos(b)) })
	return out
}

// pending is a Change of endpoints, load balancers and routes resolved
// against the model it is to be applied to.
type pending struct {
	m      *model
	eps    *edits[string, Endpoint, epRec]
	lbs    *edits[string, LoadBalancer, LoadBalancer]
	routes *edits[RouteKey, Route, Route]
}

// incremental reports whether ch changes only endpoints, load balancers
// and routes: what pending knows how to check and apply.
func (ch *Change) incremental() bool {
	return ch.Controller == "" &&
		len(ch.Directory)+len(ch.DeleteDirectory)+len(ch.VPCs)+len(ch.DeleteVPCs)+
			len(ch.Hosts)+len(ch.DeleteHosts)+len(ch.ExportPolicies)+len(ch.DeleteExportPolicies)+
			len(ch.Peerings)+len(ch.DeletePeerings)+len(ch.GatewayPools)+len(ch.DeleteGatewayPools) == 0
}

func newPending(m *model, ch *Change) *pending {
	lbs := make([]LoadBalancer, len(ch.LoadBalancers))
	for i, lb := range ch.LoadBalancers {
		// The change's items are the caller's; the model keeps its own.
		lb.Backends = cloneSlice(lb.Backends)
		lbs[i] = lb
	}
	return &pending{
		m:      m,
		eps:    newEdits(&m.eps, ch.DeleteEndpoints, ch.Endpoints, func(e Endpoint) string { return e.ID }),
		lbs:    newEdits(&m.lbs, ch.DeleteLoadBalancers, lbs, func(lb LoadBalancer) string { return lb.Name }),
		routes: newEdits(&m.routes, ch.DeleteRoutes, ch.Routes, Route.Key),
	}
}

// noop reports whether the change would leave the configuration as it is.
func (pd *pending) noop() bool {
	return pd.eps.noop(func(a, b Endpoint) bool { return a == b }) &&
		pd.lbs.noop(func(a, b LoadBalancer) bool {
			return a.Name == b.Name && a.VPC == b.VPC && a.VIP == b.VIP && a.Protocol == b.Protocol && a.Port == b.Port && slices.Equal(a.Backends, b.Backends)
		}) &&
		pd.routes.noop(func(a, b Route) bool { return a == b })
}

func (pd *pending) untouchedEndpoint(id string) *Endpoint {
	if pd.eps.touched(id) {
		return nil
	}
	e, ok := pd.m.eps.get(id)
	if !ok {
		return nil
	}
	return &e
}

func (pd *pending) untouchedIPOwner(k vpcIP) (string, bool) {
	id := pd.m.epByIP(k.vpc, k.ip)
	if id == "" || pd.eps.touched(id) {
		return "", false
	}
	return id, true
}

// check returns what Validate would say of the configuration with the
// change applied, nil if it is valid.
func (pd *pending) check() error {
	m := pd.m
	v := newValidator(m.base)
	v.owner, v.vpcs, v.hosts, v.policies = m.owner, m.vpcs, m.hosts, m.policies
	v.inc = pd

	// Endpoints: those put, and those left alone that share an IP, a MAC
	// or a switch port with one put.
	eps := set[string]{}
	for id, e := range pd.eps.put {
		eps[id] = struct{}{}
		for _, o := range []string{m.epByIP(e.VPC, e.IP), m.epByMAC(e.VPC, e.MAC), m.epByPort(e.Host, e.Port)} {
			if _, ok := m.eps.get(o); ok && !pd.eps.touched(o) {
				eps[o] = struct{}{}
			}
		}
	}
	for _, id := range pd.eps.sorted(eps) {
		e, _ := pd.eps.after(id)
		v.checkEndpoint(pd.path("endpoints", id, pd.eps), &e)
	}

	// Load balancers: those put, and those left alone whose VIP an
	// endpoint put now has, whose backend the change deletes or moves,
	// or whose frontend one put shares.
	lbs := set[string]{}
	also := func(names set[string]) {
		for n := range names {
			if !pd.lbs.touched(n) {
				lbs[n] = struct{}{}
			}
		}
	}
	for name, lb := range pd.lbs.put {
		lbs[name] = struct{}{}
		if f, ok := frontendOf(lb); ok {
			if o, ok := m.lbFront[f]; ok && !pd.lbs.touched(o) {
				lbs[o] = struct{}{}
			}
		}
	}
	for _, e := range pd.eps.put {
		also(m.lbVIP[vpcIP{e.VPC, e.IP}])
	}
	for id := range pd.eps.put {
		also(m.lbOf[id])
	}
	for id := range pd.eps.gone {
		also(m.lbOf[id])
	}
	for _, name := range pd.lbs.sorted(lbs) {
		lb, _ := pd.lbs.after(name)
		v.checkLoadBalancer(pd.path("load_balancers", name, pd.lbs), &lb)
	}

	// Routes: those put, and those left alone whose next hop the change
	// deletes or moves.
	routes := set[RouteKey]{}
	for k := range pd.routes.put {
		routes[k] = struct{}{}
	}
	hops := func(id string) {
		for k := range m.rtHop[id] {
			if !pd.routes.touched(k) {
				routes[k] = struct{}{}
			}
		}
	}
	for id := range pd.eps.put {
		hops(id)
	}
	for id := range pd.eps.gone {
		hops(id)
	}
	for _, k := range pd.routes.sorted(routes) {
		r, _ := pd.routes.after(k)
		p := routePath(0, r)
		if r.VPC == "" || !r.Prefix.IsValid() {
			p = routePath(pd.routes.index(pd.routes.pos(k)), r)
		}
		v.checkRoute(p, r)
	}
	return errors.Join(v.errs...)
}

// path is item(list, i, name) for the item named name after the change;
// i is only computed when name is "", the one case item uses it.
func (pd *pending) path(list, name string, ed interface {
	pos(string) int
	index(int) int
}) string {
	if name != "" {
		return item(list, 0, name)
	}
	return item(list, ed.index(ed.pos(name)), name)
}

// apply makes the change in the model.
func (pd *pending) apply() {
	m := pd.m
	for id := range pd.eps.gone {
		m.delEndpoint(id)
	}
	for _, id := range pd.eps.order {
		m.putEndpoint(pd.eps.put[id])
	}
	for name := range pd.lbs.gone {
		m.delLB(name)
	}
	for _, name := range pd.lbs.order {
		m.putLB(pd.lbs.put[name])
	}
	for k := range pd.routes.gone {
		m.delRoute(k)
	}
	for _, k := range pd.routes.order {
		m.putRoute(pd.routes.put[k])
	}
}
