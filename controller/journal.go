package controller

import (
	gomaps "maps"
	"net/netip"
	"slices"
)

// A reader that shows the configuration item by item (gNMI's Subscribe)
// would otherwise rebuild all of it after every change: a second at 100k
// endpoints, for one endpoint. The journal says which endpoints and load
// balancers the changes since a revision touched, so that it rebuilds
// those and the rest, which is small (directory, VPCs, hosts, policies,
// peerings, routes).

// journalMax bounds the journal: a reader further behind rebuilds whole.
const journalMax = 4096

type journalEntry struct {
	seq      uint64
	eps, lbs []string
	// rest: the change touched the configuration beyond endpoints and
	// load balancers (routes).
	rest bool
}

// journal numbers the configurations served (seq) and remembers what
// the incremental changes since the last whole one touched.
type journal struct {
	seq uint64
	// from is the first seq the entries describe the changes after: a
	// reader at an earlier one cannot be told item by item.
	from    uint64
	entries []journalEntry
}

// whole notes a configuration replaced whole.
func (j *journal) whole() {
	j.seq++
	j.from, j.entries = j.seq, nil
}

// add notes an incremental change.
func (j *journal) add(ch *Change) {
	j.seq++
	// Copies: appending to the change's own slices could write into the
	// caller's spare capacity, and the caller may reuse them.
	e := journalEntry{seq: j.seq, eps: slices.Clone(ch.DeleteEndpoints), lbs: slices.Clone(ch.DeleteLoadBalancers),
		rest: !ch.incremental() || len(ch.Routes)+len(ch.DeleteRoutes) > 0}
	for _, x := range ch.Endpoints {
		e.eps = append(e.eps, x.ID)
	}
	for _, x := range ch.LoadBalancers {
		e.lbs = append(e.lbs, x.Name)
	}
	if len(j.entries) >= journalMax {
		n := copy(j.entries, j.entries[journalMax/2:])
		clear(j.entries[n:])
		j.entries = j.entries[:n]
		j.from = j.entries[0].seq - 1
	}
	j.entries = append(j.entries, e)
}

// ConfigDelta is the running configuration as ConfigSince gives it.
type ConfigDelta struct {
	// Seq numbers the configuration: every change gets a higher one.
	Seq uint64
	// Known: the changes since the Seq asked about are the endpoints and
	// load balancers below, and anything in Rest. Otherwise (a whole
	// configuration applied since, or too long ago) read Config.
	Known bool
	// Rest is the configuration without its endpoints and load
	// balancers: what the reader rebuilds whole. RestChanged (Known
	// only) says whether it changed since.
	Rest        *Config
	RestChanged bool
	// Endpoints and LoadBalancers are those touched since, by key: nil
	// for one that is gone.
	Endpoints     map[string]*Endpoint
	LoadBalancers map[string]*LoadBalancer
}

// ConfigSince tells what changed in the configuration since the one
// numbered seq (a ConfigDelta's Seq; 0 for none), at a cost of what
// changed plus Rest, not of the configuration's size.
func (s *Server) ConfigSince(seq uint64) ConfigDelta {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, m := &s.journal, s.m
	// Seqs handed out are the journal's plus one, so that 0 is none.
	d := ConfigDelta{Seq: j.seq + 1}
	rest := *m.base
	rest.Routes = m.routes.values()
	d.Rest = &rest
	if seq == 0 || seq-1 < j.from || seq-1 > j.seq {
		return d
	}
	seq--
	d.Known = true
	d.Endpoints, d.LoadBalancers = map[string]*Endpoint{}, map[string]*LoadBalancer{}
	for i := len(j.entries) - 1; i >= 0 && j.entries[i].seq > seq; i-- {
		d.RestChanged = d.RestChanged || j.entries[i].rest
		for _, id := range j.entries[i].eps {
			if _, done := d.Endpoints[id]; done {
				continue
			}
			d.Endpoints[id] = nil
			if e, ok := m.eps.get(id); ok {
				d.Endpoints[id] = &e
			}
		}
		for _, name := range j.entries[i].lbs {
			if _, done := d.LoadBalancers[name]; done {
				continue
			}
			d.LoadBalancers[name] = nil
			if lb, ok := m.lbs.get(name); ok {
				lb.Backends = cloneSlice(lb.Backends)
				d.LoadBalancers[name] = &lb
			}
		}
	}
	return d
}

// ConfigSeq is the seq (ConfigDelta's) of the configuration being served.
func (s *Server) ConfigSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.journal.seq + 1
}

// ConfigAt is Config with its seq.
func (s *Server) ConfigAt() (*Config, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.configLocked(), s.journal.seq + 1
}

// ConfigBuilds counts the times Config materialised the configuration
// whole (in time linear in its size): after a start, an Apply, or a
// change other than adding items, when someone asked for it.
func (s *Server) ConfigBuilds() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.builds
}

// ConfigItems returns the items of the configuration being served whose
// keys keys deletes (its puts are ignored), each list in its order, and
// the configuration's seq. Its cost is what it names, plus the length of
// the short lists (directory, VPCs, hosts, export policies, peerings,
// gateway pools) it names anything of: gNMI's Set of one endpoint asks
// for that endpoint, where Config would materialise every other one after
// any delete or edit. The result shares nothing with the configuration.
func (s *Server) ConfigItems(keys *Change) (*Config, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, c := s.m, &Config{}
	c.Directory = pick(m.base.Directory, keys.DeleteDirectory, func(e ControllerEntry) string { return e.Name })
	c.VPCs = pick(m.base.VPCs, keys.DeleteVPCs, func(v VPC) string { return v.Name })
	c.Hosts = pick(m.base.Hosts, keys.DeleteHosts, func(h Host) string { return h.ID })
	c.ExportPolicies = pick(m.base.ExportPolicies, keys.DeleteExportPolicies, func(p ExportPolicy) string { return p.Name })
	c.Peerings = pick(m.base.Peerings, keys.DeletePeerings, Peering.Key)
	c.GatewayPools = pick(m.base.GatewayPools, keys.DeleteGatewayPools, func(p GatewayPool) string { return p.Name })
	c.Endpoints = lookup(&m.eps, keys.DeleteEndpoints)
	c.LoadBalancers = lookup(&m.lbs, keys.DeleteLoadBalancers)
	c.Routes = lookup(&m.routes, keys.DeleteRoutes)
	return c.Clone(), s.journal.seq + 1
}

// RoutesOf are the routes of vpc to prefix (every next hop), in their
// order in the configuration being served: what names a route by VPC and
// prefix in an error, at the cost of those routes.
func (s *Server) RoutesOf(vpc string, prefix netip.Prefix) []Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := slices.Collect(gomaps.Keys(s.m.rtGroup[routeGroup{vpc, prefix}]))
	return lookup(&s.m.routes, keys)
}

// pick is the items of list whose key is among keys, in list order.
func pick[T any, K comparable](list []T, keys []K, key func(T) K) []T {
	if len(keys) == 0 {
		return nil
	}
	want := make(set[K], len(keys))
	for _, k := range keys {
		want[k] = struct{}{}
	}
	var out []T
	for _, v := range list {
		if _, ok := want[key(v)]; ok {
			out = append(out, v)
		}
	}
	return out
}

// lookup is the items of o with keys among keys, in o's order.
func lookup[K comparable, V, S any](o *ordered[K, V, S], keys []K) []V {
	type at struct {
		pos int
		v   V
	}
	var found []at
	seen := make(set[K], len(keys))
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		if p, ok := o.pos(k); ok {
			v, _ := o.get(k)
			found = append(found, at{p, v})
		}
	}
	slices.SortFunc(found, func(a, b at) int { return a.pos - b.pos })
	out := make([]V, 0, len(found))
	for _, f := range found {
		out = append(out, f.v)
	}
	return out
}
