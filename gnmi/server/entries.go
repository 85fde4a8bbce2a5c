package server

import (
	"cmp"
	"net/netip"
	"slices"

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
	copyItem func(dst, src *controller.Config, i int)
	put      func(ch *controller.Change, c *controller.Config, i int)
	del      func(ch *controller.Change, c *controller.Config, i int)
}

func listOf[T, K any](elems, keys []string, items func(*controller.Config) *[]T, key func(T) entryKey,
	puts func(*controller.Change) *[]T, dels func(*controller.Change) *[]K, itemKey func(T) K) list {
	return list{
		elems: elems, keys: keys,
		n:     func(c *controller.Config) int { return len(*items(c)) },
		keyAt: func(c *controller.Config, i int) entryKey { return key((*items(c))[i]) },
		copyItem: func(dst, src *controller.Config, i int) {
			*items(dst) = append(*items(dst), (*items(src))[i])
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

// lists are the lists setEntries changes entry by entry. The key strings
// are FromConfig's: a route's prefix as netip formats it, a drop route's
// next hop "-".
var lists = []list{
	listOf([]string{"p4mesh", "directory", "controllers", "controller"}, []string{"name"},
		func(c *controller.Config) *[]controller.ControllerEntry { return &c.Directory },
		func(e controller.ControllerEntry) entryKey { return one(e.Name) },
		func(ch *controller.Change) *[]controller.ControllerEntry { return &ch.Directory },
		func(ch *controller.Change) *[]string { return &ch.DeleteDirectory },
		func(e controller.ControllerEntry) string { return e.Name }),
	listOf([]string{"p4mesh", "vpcs", "vpc"}, []string{"name"},
		func(c *controller.Config) *[]controller.VPC { return &c.VPCs },
		func(v controller.VPC) entryKey { return one(v.Name) },
		func(ch *controller.Change) *[]controller.VPC { return &ch.VPCs },
		func(ch *controller.Change) *[]string { return &ch.DeleteVPCs },
		func(v controller.VPC) string { return v.Name }),
	listOf([]string{"p4mesh", "hosts", "host"}, []string{"id"},
		func(c *controller.Config) *[]controller.Host { return &c.Hosts },
		func(h controller.Host) entryKey { return one(h.ID) },
		func(ch *controller.Change) *[]controller.Host { return &ch.Hosts },
		func(ch *controller.Change) *[]string { return &ch.DeleteHosts },
		func(h controller.Host) string { return h.ID }),
	listOf([]string{"p4mesh", "endpoints", "endpoint"}, []string{"id"},
		func(c *controller.Config) *[]controller.Endpoint { return &c.Endpoints },
		func(e controller.Endpoint) entryKey { return one(e.ID) },
		func(ch *controller.Change) *[]controller.Endpoint { return &ch.Endpoints },
		func(ch *controller.Change) *[]string { return &ch.DeleteEndpoints },
		func(e controller.Endpoint) string { return e.ID }),
	listOf([]string{"p4mesh", "load-balancers", "load-balancer"}, []string{"name"},
		func(c *controller.Config) *[]controller.LoadBalancer { return &c.LoadBalancers },
		func(lb controller.LoadBalancer) entryKey { return one(lb.Name) },
		func(ch *controller.Change) *[]controller.LoadBalancer { return &ch.LoadBalancers },
		func(ch *controller.Change) *[]string { return &ch.DeleteLoadBalancers },
		func(lb controller.LoadBalancer) string { return lb.Name }),
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
		controller.Route.Key),
	listOf([]string{"p4mesh", "export-policies", "export-policy"}, []string{"name"},
		func(c *controller.Config) *[]controller.ExportPolicy { return &c.ExportPolicies },
		func(p controller.ExportPolicy) entryKey { return one(p.Name) },
		func(ch *controller.Change) *[]controller.ExportPolicy { return &ch.ExportPolicies },
		func(ch *controller.Change) *[]string { return &ch.DeleteExportPolicies },
		func(p controller.ExportPolicy) string { return p.Name }),
	listOf([]string{"p4mesh", "peerings", "peering"}, []string{"vpc", "peer-vpc"},
		func(c *controller.Config) *[]controller.Peering { return &c.Peerings },
		func(p controller.Peering) entryKey { return entryKey{p.VPC, p.PeerVPC} },
		func(ch *controller.Change) *[]controller.Peering { return &ch.Peerings },
		func(ch *controller.Change) *[]controller.PeeringKey { return &ch.DeletePeerings },
		controller.Peering.Key),
	listOf([]string{"p4mesh", "gateway-pools", "gateway-pool"}, []string{"name"},
		func(c *controller.Config) *[]controller.GatewayPool { return &c.GatewayPools },
		func(p controller.GatewayPool) entryKey { return one(p.Name) },
		func(ch *controller.Change) *[]controller.GatewayPool { return &ch.GatewayPools },
		func(ch *controller.Change) *[]string { return &ch.DeleteGatewayPools },
		func(p controller.GatewayPool) string { return p.Name }),
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

// listIndex finds the items of one list of the running configuration by
// key, and is kept up across the Changes setEntries makes without a scan.
// Each item has a coordinate, fixed while it stays in the list and rising
// in list order: its position when the index was built, or past every
// other for an item appended since. An item's position is its coordinate
// less the deleted coordinates below it.
//
// A list keyed by one leaf (endpoints, hosts: the ones with a million
// items) is indexed by that string alone: a map slot of 24 bytes rather
// than the 56 of the three-string key, the index of a million endpoints
// 60 MB smaller.
type listIndex struct {
	single bool               // the list has one key leaf: one is the index
	one    map[string]int32   // coordinate of each item, by its key's first string
	at     map[entryKey]int32 // coordinate of each item, for lists of more keys
	gone   []int              // coordinates deleted since the build, sorted
	next   int                // the coordinate of the next item appended
}

// gcGone bounds gone: past it the index is built again, which costs the
// list's length once per that many deletes.
const gcGone = 1024

// build indexes l in c; it reports false if a key is there twice.
func (x *listIndex) build(l *list, c *controller.Config) bool {
	n := l.n(c)
	x.single = len(l.keys) == 1
	x.one, x.at = nil, nil
	if x.single {
		x.one = make(map[string]int32, n)
	} else {
		x.at = make(map[entryKey]int32, n)
	}
	for i := range n {
		x.set(l.keyAt(c, i), i)
	}
	x.gone, x.next = nil, n
	return x.len() == n
}

func (x *listIndex) len() int {
	if x.single {
		return len(x.one)
	}
	return len(x.at)
}

func (x *listIndex) get(k entryKey) (int, bool) {
	var c int32
	var ok bool
	if x.single {
		c, ok = x.one[k[0]]
	} else {
		c, ok = x.at[k]
	}
	return int(c), ok
}

func (x *listIndex) set(k entryKey, coord int) {
	if x.single {
		x.one[k[0]] = int32(coord)
	} else {
		x.at[k] = int32(coord)
	}
}

// pos returns the position and coordinate of the item with key k.
func (x *listIndex) pos(k entryKey) (pos, coord int, ok bool) {
	coord, ok = x.get(k)
	if !ok {
		return 0, 0, false
	}
	shift, _ := slices.BinarySearch(x.gone, coord)
	return coord - shift, coord, true
}

func (x *listIndex) del(k entryKey) {
	c, ok := x.get(k)
	if !ok {
		return
	}
	if x.single {
		delete(x.one, k[0])
	} else {
		delete(x.at, k)
	}
	i, _ := slices.BinarySearch(x.gone, c)
	x.gone = slices.Insert(x.gone, i, c)
}

func (x *listIndex) add(k entryKey) {
	if _, ok := x.get(k); ok {
		return
	}
	x.set(k, x.next)
	x.next++
}

// entryState is what setEntries knows of the running configuration.
type entryState struct {
	cfg   *controller.Config // the configuration idx describes; nil: none
	clean bool               // cfg's whole tree passes the YANG schema
	idx   []listIndex        // one per lists
}

// syncEntries makes s.ent describe cur. Unless cur is the configuration
// the last setEntries left, that costs cur's size, once.
func (s *Server) syncEntries(cur *controller.Config) {
	e := &s.ent
	if e.cfg == cur {
		return
	}
	e.cfg, e.clean = cur, true
	e.idx = make([]listIndex, len(lists))
	for i := range lists {
		if !e.idx[i].build(&lists[i], cur) {
			e.clean = false
		}
	}
	if e.clean {
		d, err := p4gnmi.FromConfig(cur)
		e.clean = err == nil && p4gnmi.CheckSchema(d) == nil
	}
}

// setEntries is a Set on the entries its paths name (see the top of this
// file). It reports ok false, having changed nothing, for a Set it cannot
// take: setWhole takes it.
func (s *Server) setEntries(req *gnmi.SetRequest) (_ *gnmi.SetResponse, ok bool, _ error) {
	p, ok, err := s.planEntries(req)
	if !ok || err != nil {
		return nil, ok, err
	}
	if err := s.o.Controller.ApplyChange(p.ch); err != nil {
		// Explaining a refusal takes the whole configuration the Change
		// would make: controller errors name items by position, and
		// setWhole's name them in that configuration.
		if verr := p4gnmi.ValidateConfig(p.ch.ApplyTo(p.cur)); verr != nil {
			return nil, true, invalidSet(verr)
		}
		return nil, true, status.Errorf(codes.InvalidArgument, "nothing changed: %v", err)
	}
	s.advanceEntries(p.gone, p.after)
	return p.resp, true, nil
}

// entryPlan is what setEntries makes of a Set before the controller sees
// it.
type entryPlan struct {
	resp  *gnmi.SetResponse
	ch    *controller.Change
	cur   *controller.Config // the configuration ch applies to
	gone  []touch            // the entries ch deletes
	after *controller.Config // the entries ch puts
}

// planEntries is setEntries up to the Change; it changes nothing but
// s.ent's index, which it may build.
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
	cur := s.o.Controller.Config()
	if len(touched) == 0 || cur == nil {
		return nil, false, nil
	}
	s.syncEntries(cur)
	if !s.ent.clean {
		return nil, false, nil
	}

	// The touched entries there are now, in the order of their lists.
	type found struct {
		touch
		pos, coord int
	}
	var have []found
	for _, t := range touched {
		pos, coord, ok := s.ent.idx[t.list].pos(t.key)
		if !ok {
			continue
		}
		if pos >= lists[t.list].n(cur) || lists[t.list].keyAt(cur, pos) != t.key {
			// The index has lost track: build it again next time.
			s.ent.cfg = nil
			return nil, false, nil
		}
		have = append(have, found{t, pos, coord})
	}
	slices.SortFunc(have, func(a, b found) int { return cmp.Or(cmp.Compare(a.list, b.list), cmp.Compare(a.coord, b.coord)) })
	part := &controller.Config{}
	for _, h := range have {
		lists[h.list].copyItem(part, cur, h.pos)
	}
	dev, err := p4gnmi.FromConfig(part)
	if err != nil {
		return nil, true, status.Errorf(codes.Internal, "build the tree: %v", err)
	}
	resp, err := s.applyOps(dev, req)
	if err != nil {
		return nil, true, err
	}
	if err := p4gnmi.CheckSchema(dev); err != nil {
		return nil, true, invalidSet(err)
	}
	after, err := p4gnmi.ToConfig(dev)
	if err != nil {
		return nil, true, invalidSet(err)
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
	var gone []touch
	for _, h := range have {
		if !left[h.touch] || moved[h.touch] {
			lists[h.list].del(ch, cur, h.pos)
			gone = append(gone, h.touch)
		}
	}
	for _, l := range lists {
		for i := range l.n(after) {
			l.put(ch, after, i)
		}
	}
	return &entryPlan{resp: resp, ch: ch, cur: cur, gone: gone, after: after}, true, nil
}

// advanceEntries moves s.ent past a Change that deleted gone and put the
// items of after, as controller.Change.ApplyTo does: deletes first, then
// puts in place or at the end. Should the configuration the controller now
// serves not be that (another writer got in between), the next Set builds
// the index again.
func (s *Server) advanceEntries(gone []touch, after *controller.Config) {
	e := &s.ent
	for _, t := range gone {
		e.idx[t.list].del(t.key)
	}
	for li, l := range lists {
		for i := range l.n(after) {
			e.idx[li].add(l.keyAt(after, i))
		}
	}
	now := s.o.Controller.Config()
	e.cfg = nil
	if now == nil {
		return
	}
	for li, l := range lists {
		if e.idx[li].len() != l.n(now) {
			return
		}
		for i := range l.n(after) {
			k := l.keyAt(after, i)
			if pos, _, ok := e.idx[li].pos(k); !ok || pos >= l.n(now) || l.keyAt(now, pos) != k {
				return
			}
		}
	}
	// The entries put are now part of what must pass the schema; they
	// passed as the Set left them, and again here as the controller
	// holds them (a conversion may respell an address).
	if e.clean {
		d, err := p4gnmi.FromConfig(after)
		e.clean = err == nil && p4gnmi.CheckSchema(d) == nil
	}
	for li := range lists {
		if len(e.idx[li].gone) > gcGone {
			e.idx[li].build(&lists[li], now)
		}
	}
	e.cfg = now
}
