package server

import (
	"errors"
	"net/netip"

	"github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/controller"
	p4gnmi "github.com/p4mesh/p4mesh/gnmi"
)

// This file is the Set that costs what it touches. Most Sets change a few
// entries of the model's top-level lists (an endpoint, a VPC's VNI, a
// route); building, validating and converting a tree of the whole
// configuration for them costs seconds at 100k endpoints. setEntries builds
// a tree of only the entries the Set's paths name, applies the Set to it
// exactly as setWhole applies it to the whole tree, checks those entries
// against the schema, and hands the controller a Change of just them.
//
// What makes that the same Set as setWhole's:
//   - An operation on a path at or below one list entry changes that
//     entry's subtree and nothing else, whatever else the tree holds: the
//     same operations on the same entries fail or succeed alike, in the
//     same order.
//   - The schema check looks at each entry by itself (leafrefs are the
//     controller's), so it reports on the touched entries what it would in
//     the whole tree, and the untouched ones report nothing: setEntries
//     runs only while the whole running configuration passes the schema
//     (ent.clean), which is checked once per configuration it did not make
//     itself and kept up, entry by entry, across the ones it did.
//   - Entries keep their order: the partial tree holds them in the order
//     of their lists, an entry deleted and created again in one Set moves
//     to the end of its list in both trees, and the Change says so (a
//     delete and a put; controller.Change appends what it puts anew).
//   - The controller's refusal is explained from the whole configuration
//     the Change would make, as setWhole's is: only a refused Set pays for
//     that.

// entryKey is the key of a list entry as the model spells it: its key
// leaves' values, in the order of the list's key statement.
type entryKey [3]string

// list is one top-level list of the model whose entries are items of a
// controller.Config list.
type list struct {
	elems []string // the path from the root to the list
	keys  []string // its key leaves, in the order of its key statement
	// n is the length of the list in c, keyAt the key of its i-th item as
	// FromConfig writes it.
	n     func(c *controller.Config) int
	keyAt func(c *controller.Config, i int) entryKey
	// copyItem appends src's i-th item to dst's list; put puts c's i-th
	// item into ch; del deletes c's i-th item's key in ch.
	// ask names the item with key k among ch's deletes, so that
	// controller.ConfigItems returns it; false: no item has k as its key
	// (a route's prefix not as netip spells it).
	ask func(ch *controller.Change, k entryKey) bool
	put func(ch *controller.Change, c *controller.Config, i int)
	del func(ch *controller.Change, c *controller.Config, i int)
}

func listOf[T, K any](elems, keys []string, items func(*controller.Config) *[]T, key func(T) entryKey,
	puts func(*controller.Change) *[]T, dels func(*controller.Change) *[]K, itemKey func(T) K, keyOf func(entryKey) (K, bool)) list {
	return list{
		elems: elems, keys: keys,
		n:     func(c *controller.Config) int { return len(*items(c)) },
		keyAt: func(c *controller.Config, i int) entryKey { return key((*items(c))[i]) },
		ask: func(ch *controller.Change, k entryKey) bool {
			x, ok := keyOf(k)
			if ok {
				*dels(ch) = append(*dels(ch), x)
			}
			return ok
		},
		put: func(ch *controller.Change, c *controller.Config, i int) {
			*puts(ch) = append(*puts(ch), (*items(c))[i])
		},
		del: func(ch *controller.Change, c *controller.Config, i int) {
			*dels(ch) = append(*dels(ch), itemKey((*items(c))[i]))
		},
	}
}

func one(s string) entryKey { return entryKey{s} }

// first is the key of a list keyed by one leaf.
func first(k entryKey) (string, bool) { return k[0], true }

// routeKey is the route whose key FromConfig spells k.
func routeKey(k entryKey) (controller.RouteKey, bool) {
	p, err := netip.ParsePrefix(k[1])
	if err != nil || prefixText(p) != k[1] {
		return controller.RouteKey{}, false
	}
	nh := k[2]
	if nh == "-" {
		nh = ""
	}
	return controller.RouteKey{VPC: k[0], Prefix: p, NextHop: nh}, true
}

// lists are the lists setEntries changes entry by entry. The key strings
// are FromConfig's: a route's prefix as netip formats it, a drop route's
// next hop "-".
var lists = []list{
	listOf([]string{"p4mesh", "directory", "controllers", "controller"}, []string{"name"},
		func(c *controller.Config) *[]controller.ControllerEntry { return &c.Directory },
		func(e controller.ControllerEntry) entryKey { return one(e.Name) },
		func(ch *controller.Change) *[]controller.ControllerEntry { return &ch.Directory },
		func(ch *controller.Change) *[]string { return &ch.DeleteDirectory },
		func(e controller.ControllerEntry) string { return e.Name }, first),
	listOf([]string{"p4mesh", "vpcs", "vpc"}, []string{"name"},
		func(c *controller.Config) *[]controller.VPC { return &c.VPCs },
		func(v controller.VPC) entryKey { return one(v.Name) },
		func(ch *controller.Change) *[]controller.VPC { return &ch.VPCs },
		func(ch *controller.Change) *[]string { return &ch.DeleteVPCs },
		func(v controller.VPC) string { return v.Name }, first),
	listOf([]string{"p4mesh", "hosts", "host"}, []string{"id"},
		func(c *controller.Config) *[]controller.Host { return &c.Hosts },
		func(h controller.Host) entryKey { return one(h.ID) },
		func(ch *controller.Change) *[]controller.Host { return &ch.Hosts },
		func(ch *controller.Change) *[]string { return &ch.DeleteHosts },
		func(h controller.Host) string { return h.ID }, first),
	listOf([]string{"p4mesh", "endpoints", "endpoint"}, []string{"id"},
		func(c *controller.Config) *[]controller.Endpoint { return &c.Endpoints },
		func(e controller.Endpoint) entryKey { return one(e.ID) },
		func(ch *controller.Change) *[]controller.Endpoint { return &ch.Endpoints },
		func(ch *controller.Change) *[]string { return &ch.DeleteEndpoints },
		func(e controller.Endpoint) string { return e.ID }, first),
	listOf([]string{"p4mesh", "load-balancers", "load-balancer"}, []string{"name"},
		func(c *controller.Config) *[]controller.LoadBalancer { return &c.LoadBalancers },
		func(lb controller.LoadBalancer) entryKey { return one(lb.Name) },
		func(ch *controller.Change) *[]controller.LoadBalancer { return &ch.LoadBalancers },
		func(ch *controller.Change) *[]string { return &ch.DeleteLoadBalancers },
		func(lb controller.LoadBalancer) string { return lb.Name }, first),
	listOf([]string{"p4mesh", "routes", "route"}, []string{"vpc", "prefix", "next-hop"},
		func(c *controller.Config) *[]controller.Route { return &c.Routes },
		func(r controller.Route) entryKey {
			nh := r.NextHop
			if nh == "" {
				nh = "-"
			}
			return entryKey{r.VPC, prefixText(r.Prefix), nh}
		},
		func(ch *controller.Change) *[]controller.Route { return &ch.Routes },
		func(ch *controller.Change) *[]controller.RouteKey { return &ch.DeleteRoutes },
		controller.Route.Key, routeKey),
	listOf([]string{"p4mesh", "export-policies", "export-policy"}, []string{"name"},
		func(c *controller.Config) *[]controller.ExportPolicy { return &c.ExportPolicies },
		func(p controller.ExportPolicy) entryKey { return one(p.Name) },
		func(ch *controller.Change) *[]controller.ExportPolicy { return &ch.ExportPolicies },
		func(ch *controller.Change) *[]string { return &ch.DeleteExportPolicies },
		func(p controller.ExportPolicy) string { return p.Name }, first),
	listOf([]string{"p4mesh", "peerings", "peering"}, []string{"vpc", "peer-vpc"},
		func(c *controller.Config) *[]controller.Peering { return &c.Peerings },
		func(p controller.Peering) entryKey { return entryKey{p.VPC, p.PeerVPC} },
		func(ch *controller.Change) *[]controller.Peering { return &ch.Peerings },
		func(ch *controller.Change) *[]controller.PeeringKey { return &ch.DeletePeerings },
		controller.Peering.Key, func(k entryKey) (controller.PeeringKey, bool) {
			return controller.PeeringKey{VPC: k[0], PeerVPC: k[1]}, true
		}),
	listOf([]string{"p4mesh", "gateway-pools", "gateway-pool"}, []string{"name"},
		func(c *controller.Config) *[]controller.GatewayPool { return &c.GatewayPools },
		func(p controller.GatewayPool) entryKey { return one(p.Name) },
		func(ch *controller.Change) *[]controller.GatewayPool { return &ch.GatewayPools },
		func(ch *controller.Change) *[]string { return &ch.DeleteGatewayPools },
		func(p controller.GatewayPool) string { return p.Name }, first),
}

func prefixText(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

// touch is one entry of one of lists.
type touch struct {
	list int
	key  entryKey
}

// entryOf returns the list entry that p lies at or below, and whether p
// names the entry itself. It refuses (ok false) paths outside the lists,
// above an entry, and any with a wildcard.
func entryOf(p *gnmi.Path) (t touch, exact, ok bool) {
	el := p.GetElem()
	for _, e := range el {
		if e.GetName() == "*" || e.GetName() == "..." {
			return touch{}, false, false
		}
		for _, v := range e.GetKey() {
			if v == "*" {
				return touch{}, false, false
			}
		}
	}
next:
	for li, l := range lists {
		if len(el) < len(l.elems) {
			continue
		}
		for i, name := range l.elems {
			if el[i].GetName() != name {
				continue next
			}
			if i < len(l.elems)-1 && len(el[i].GetKey()) != 0 {
				return touch{}, false, false
			}
		}
		kv := el[len(l.elems)-1].GetKey()
		if len(kv) != len(l.keys) {
			return touch{}, false, false
		}
		t := touch{list: li}
		for i, k := range l.keys {
			v, ok := kv[k]
			if !ok {
				return touch{}, false, false
			}
			t.key[i] = v
		}
		return t, len(el) == len(l.elems), true
	}
	return touch{}, false, false
}

// entryState is what setEntries knows of the running configuration: no
// index of its own, since the controller finds items by key
// (controller.ConfigItems), but whether it passes the schema.
type entryState struct {
	seq   uint64 // the controller's seq of the configuration clean is about; 0: none
	clean bool   // that configuration's whole tree passes the YANG schema
}

// syncEntries makes s.ent describe the configuration being served. Unless
// that is the one the last setEntries left, it costs the configuration's
// size, once.
func (s *Server) syncEntries() {
	e := &s.ent
	if seq := s.o.Controller.ConfigSeq(); seq == e.seq {
		return
	}
	cur, seq := s.o.Controller.ConfigAt()
	d, err := p4gnmi.FromConfig(cur)
	e.seq, e.clean = seq, err == nil && p4gnmi.CheckSchema(d) == nil
}

// setEntries is a Set on the entries its paths name (see the top of this
// file). It reports ok false, having changed nothing, for a Set it cannot
// take: setWhole takes it. part is the entries as they were, once looked
// up (nil before): all of the running configuration a refusal of the Set
// is explained from (explainAbsent).
func (s *Server) setEntries(req *gnmi.SetRequest) (_ *gnmi.SetResponse, part *controller.Config, ok bool, _ error) {
	p, ok, err := s.planEntries(req)
	if p != nil {
		part = p.part
	}
	if !ok || err != nil {
		return nil, part, ok, err
	}
	seq, err := s.o.Controller.ApplyChangeSeq(p.ch)
	if err != nil {
		return nil, part, true, s.refused(p.ch, err)
	}
	s.advanceEntries(p.seq, seq, p.after)
	return p.resp, part, true, nil
}

// refused words the controller's refusal of ch as setWhole's refusal of
// the same Set: its errors name YANG paths, as translated on the whole
// configuration ch would make (p4gnmi.ValidateConfig). The translation
// reads little of that configuration (p4gnmi.TranslateErrors): the
// short lists, the load balancers ch puts, and the routes the errors
// name by VPC and prefix, so a refusal costs what the Set touches. The
// rest it reads is which items have no name, which errors name by index
// in the whole configuration; the schema refuses those (a key of length
// 0) before the controller sees them.
func (s *Server) refused(ch *controller.Change, err error) error {
	var inv *controller.InvalidConfigError
	if !errors.As(err, &inv) {
		return status.Errorf(codes.InvalidArgument, "nothing changed: %v", err)
	}
	view := s.o.Controller.ConfigRest()
	for _, g := range p4gnmi.RoutesNamed(inv.Errs) {
		if p, err := netip.ParsePrefix(g.Prefix); err == nil {
			view.Routes = append(view.Routes, s.o.Controller.RoutesOf(g.VPC, p)...)
		}
	}
	return invalidSet(p4gnmi.TranslateErrors(ch.ApplyTo(view), inv.Errs))
}

// entryPlan is what setEntries makes of a Set before the controller sees
// it.
type entryPlan struct {
	resp  *gnmi.SetResponse
	ch    *controller.Change
	seq   uint64             // the configuration ch applies to
	after *controller.Config // the entries ch puts
	part  *controller.Config // the entries as they are (ConfigItems)
}

// planEntries is setEntries up to the Change; it changes nothing but
// s.ent, which it may bring up to date.
func (s *Server) planEntries(req *gnmi.SetRequest) (_ *entryPlan, ok bool, _ error) {
	if s.wholeOnly {
		return nil, false, nil
	}
	var touched []touch
	seen := map[touch]bool{}
	moved := map[touch]bool{} // deleted whole at some point: to the end of its list if it is back
	note := func(p *gnmi.Path, removes bool) bool {
		t, exact, ok := entryOf(fullPath(req.GetPrefix(), p))
		if !ok {
			return false
		}
		if !seen[t] {
			seen[t] = true
			touched = append(touched, t)
		}
		if exact && removes {
			moved[t] = true
		}
		return true
	}
	for _, p := range req.GetDelete() {
		if !note(p, true) {
			return nil, false, nil
		}
	}
	for _, u := range req.GetReplace() {
		if !note(u.GetPath(), true) {
			return nil, false, nil
		}
	}
	for _, u := range req.GetUpdate() {
		if !note(u.GetPath(), false) {
			return nil, false, nil
		}
	}
	if len(touched) == 0 {
		return nil, false, nil
	}
	s.syncEntries()
	if !s.ent.clean {
		return nil, false, nil
	}

	// The touched entries there are now, in the order of their lists.
	keys := &controller.Change{}
	for _, t := range touched {
		lists[t.list].ask(keys, t.key)
	}
	part, seq := s.o.Controller.ConfigItems(keys)
	if seq != s.ent.seq {
		// Another writer got in between: what it made has not been
		// checked against the schema. The next Set checks it.
		return nil, false, nil
	}
	for li, l := range lists {
		for i := range l.n(part) {
			if !seen[touch{li, l.keyAt(part, i)}] {
				return nil, false, nil
			}
		}
	}
	dev, err := p4gnmi.FromConfig(part)
	if err != nil {
		return &entryPlan{part: part}, true, status.Errorf(codes.Internal, "build the tree: %v", err)
	}
	resp, err := s.applyOps(dev, req)
	if err != nil {
		return &entryPlan{part: part}, true, err
	}
	if err := p4gnmi.CheckSchema(dev); err != nil {
		return &entryPlan{part: part}, true, invalidSet(err)
	}
	after, err := p4gnmi.ToConfig(dev)
	if err != nil {
		return &entryPlan{part: part}, true, invalidSet(err)
	}
	// Every item the tree converts to must be an entry the paths named,
	// once: an entry whose key leaf the Set changed, or a route prefix
	// spelled otherwise than netip does, would be another item in the
	// whole tree. Let setWhole say what that makes.
	left := map[touch]bool{}
	for li, l := range lists {
		for i := range l.n(after) {
			t := touch{li, l.keyAt(after, i)}
			if !seen[t] || left[t] {
				return nil, false, nil
			}
			left[t] = true
		}
	}

	ch := &controller.Change{}
	for li, l := range lists {
		for i := range l.n(part) {
			if t := (touch{li, l.keyAt(part, i)}); !left[t] || moved[t] {
				l.del(ch, part, i)
			}
		}
	}
	for _, l := range lists {
		for i := range l.n(after) {
			l.put(ch, after, i)
		}
	}
	return &entryPlan{resp: resp, ch: ch, seq: seq, after: after, part: part}, true, nil
}

// advanceEntries moves s.ent past a Change planned on the configuration
// numbered from, which made the one numbered to, and put the items of
// after. Should to not be from's next (another writer got in between),
// the next Set checks the whole configuration again.
func (s *Server) advanceEntries(from, to uint64, after *controller.Config) {
	e := &s.ent
	switch {
	case e.seq != from:
		e.seq = 0
	case to == from: // the Change changed nothing
	case to == from+1:
		// The entries put are now part of what must pass the schema;
		// they passed as the Set left them, and pass again here as
		// converted (a conversion may respell an address).
		d, err := p4gnmi.FromConfig(after)
		e.clean = e.clean && err == nil && p4gnmi.CheckSchema(d) == nil
		e.seq = to
	default:
		e.seq = 0
	}
}
