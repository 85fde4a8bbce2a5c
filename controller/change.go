package controller

import (
	"net/netip"
	"slices"
)

// Change is an edit of some items of a configuration: what one gNMI Set,
// one API call or one import does. Items are whole: a put replaces the
// item with the same key (or adds it, at the end of its list), a delete
// names a key (deleting an absent key does nothing). Deletes apply before
// puts, so a Change can move an item by deleting and putting it.
//
// A Change is how the controller is meant to be edited at scale: its cost
// is what it touches, where Apply of a whole Config costs the size of the
// configuration.
type Change struct {
	// Controller, if not "", renames this controller.
	Controller string

	Directory       []ControllerEntry
	DeleteDirectory []string // controller names

	VPCs       []VPC
	DeleteVPCs []string // names

	Hosts       []Host
	DeleteHosts []string // ids

	Endpoints       []Endpoint
	DeleteEndpoints []string // ids

	LoadBalancers       []LoadBalancer
	DeleteLoadBalancers []string // names

	Routes       []Route
	DeleteRoutes []RouteKey

	ExportPolicies       []ExportPolicy
	DeleteExportPolicies []string // names

	Peerings       []Peering
	DeletePeerings []PeeringKey

	GatewayPools       []GatewayPool
	DeleteGatewayPools []string // names
}

// RouteKey identifies a static route: a VPC may route one prefix to
// several next hops, ranked by priority.
type RouteKey struct {
	VPC     string
	Prefix  netip.Prefix
	NextHop string
}

// Key is r's key.
func (r Route) Key() RouteKey { return RouteKey{VPC: r.VPC, Prefix: r.Prefix, NextHop: r.NextHop} }

// PeeringKey identifies this controller's side of a peering.
type PeeringKey struct{ VPC, PeerVPC string }

// Key is p's key.
func (p Peering) Key() PeeringKey { return PeeringKey{VPC: p.VPC, PeerVPC: p.PeerVPC} }

// Empty reports whether ch changes nothing.
func (ch *Change) Empty() bool {
	return ch.Controller == "" &&
		len(ch.Directory)+len(ch.DeleteDirectory)+len(ch.VPCs)+len(ch.DeleteVPCs)+
			len(ch.Hosts)+len(ch.DeleteHosts)+len(ch.Endpoints)+len(ch.DeleteEndpoints)+
			len(ch.LoadBalancers)+len(ch.DeleteLoadBalancers)+len(ch.Routes)+len(ch.DeleteRoutes)+
			len(ch.ExportPolicies)+len(ch.DeleteExportPolicies)+len(ch.Peerings)+len(ch.DeletePeerings)+
			len(ch.GatewayPools)+len(ch.DeleteGatewayPools) == 0
}

// ApplyTo returns c with ch applied, sharing nothing with c that ch
// changes; c is not modified. It does not validate.
func (ch *Change) ApplyTo(c *Config) *Config {
	n := c.Clone()
	if n == nil {
		n = &Config{}
	}
	if ch.Controller != "" {
		n.Controller = ch.Controller
	}
	n.Directory = edit(n.Directory, ch.DeleteDirectory, ch.Directory, func(e ControllerEntry) string { return e.Name })
	n.VPCs = edit(n.VPCs, ch.DeleteVPCs, ch.VPCs, func(v VPC) string { return v.Name })
	n.Hosts = edit(n.Hosts, ch.DeleteHosts, ch.Hosts, func(h Host) string { return h.ID })
	n.Endpoints = edit(n.Endpoints, ch.DeleteEndpoints, ch.Endpoints, func(e Endpoint) string { return e.ID })
	n.LoadBalancers = edit(n.LoadBalancers, ch.DeleteLoadBalancers, ch.LoadBalancers, func(lb LoadBalancer) string { return lb.Name })
	n.Routes = edit(n.Routes, ch.DeleteRoutes, ch.Routes, Route.Key)
	n.ExportPolicies = edit(n.ExportPolicies, ch.DeleteExportPolicies, ch.ExportPolicies, func(p ExportPolicy) string { return p.Name })
	n.Peerings = edit(n.Peerings, ch.DeletePeerings, ch.Peerings, Peering.Key)
	n.GatewayPools = edit(n.GatewayPools, ch.DeleteGatewayPools, ch.GatewayPools, func(p GatewayPool) string { return p.Name })
	// The change's items are the caller's: the result must not share
	// their slices.
	return n.Clone()
}

// edit deletes the keys del from list, then puts each of put: in place
// where its key is present, at the end where it is not.
func edit[T any, K comparable](list []T, del []K, put []T, key func(T) K) []T {
	if len(del) == 0 && len(put) == 0 {
		return list
	}
	if len(del) > 0 {
		gone := make(map[K]bool, len(del))
		for _, k := range del {
			gone[k] = true
		}
		list = slices.DeleteFunc(list, func(v T) bool { return gone[key(v)] })
	}
	at := make(map[K]int, len(list))
	for i, v := range list {
		at[key(v)] = i
	}
	for _, v := range put {
		if i, ok := at[key(v)]; ok {
			list[i] = v
			continue
		}
		at[key(v)] = len(list)
		list = append(list, v)
	}
	return list
}

// InvalidConfigError is Apply's and ApplyChange's refusal of a
// configuration that does not validate: Errs are Validate's errors of the
// configuration refused (the one a change would make), in Validate's
// order, each naming its item by a path ("endpoints[e1].ip: ..."), which
// a reader can word its own way (gNMI's YANG paths) without building
// that configuration again.
type InvalidConfigError struct {
	Errs error
}

func (e *InvalidConfigError) Error() string { return "invalid configuration:\n" + e.Errs.Error() }

func (e *InvalidConfigError) Unwrap() error { return e.Errs }

// ApplyChange validates, persists and serves the current configuration
// with ch applied; on error nothing changes. The result must be a valid
// configuration as a whole, with the same errors Apply gives.
//
// A change of endpoints, load balancers and routes only costs what it
// touches: it is checked against the indexes (pending.check) and updates
// the watch tables by deltas (Server.applyLocked). A change of anything
// else (the directory, VPCs, hosts, export policies, peerings, the
// controller's name) can affect any item, and is applied as the whole
// configuration it makes, with every table recomputed; so is a change of
// an endpoint a BGP neighbor names as its attachment. A Change cannot
// edit the bgp section: that goes through Apply.
func (s *Server) ApplyChange(ch *Change) error {
	_, err := s.ApplyChangeSeq(ch)
	return err
}

// ApplyChangeSeq is ApplyChange, and also tells the seq (ConfigDelta's)
// of the configuration served once ch is applied, or refused: a reader
// that knew the configuration at seq n, and gets n+1, knows it is that
// one with ch applied and nothing else.
func (s *Server) ApplyChangeSeq(ch *Change) (uint64, error) {
	// Two changes computed from the same configuration must not lose one
	// another.
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	err := s.applyChangeLocked(ch)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.journal.seq + 1, err
}

func (s *Server) applyChangeLocked(ch *Change) error {
	if ch.Empty() {
		return nil
	}
	// The bgp section is in the model's base (s.m only changes under
	// changeMu): asking Config for it would materialise every endpoint,
	// once per change.
	if !ch.incremental() || ch.touchesBGP(s.m.base) {
		return s.counted(s.applyWhole(ch.ApplyTo(s.Config())))
	}
	return s.counted(s.applyChange(ch))
}

// snapshot is a materialised configuration (Server.Config) with, if it
// can be extended, its tail.
type snapshot struct {
	c    Config
	tail *snapTail
}

// snapTail is a snapshot's endpoints, load balancers and routes with
// their spare capacity. The snapshot handed out has them capped (s[:n:n]),
// so that a caller appending to one gets a copy; the next snapshot appends
// to these, past what any earlier snapshot reads.
type snapTail struct {
	eps    []Endpoint
	lbs    []LoadBalancer
	routes []Route
}

func tailOf(c *Config) *snapTail {
	return &snapTail{eps: c.Endpoints, lbs: c.LoadBalancers, routes: c.Routes}
}

// onlyAdds reports whether ch, checked against m and not yet applied,
// only adds endpoints, load balancers and routes that m does not have,
// each once: the configuration after it is the one before with those
// appended, in ch's order.
func onlyAdds(m *model, ch *Change) bool {
	if !ch.incremental() || len(ch.DeleteEndpoints)+len(ch.DeleteLoadBalancers)+len(ch.DeleteRoutes) > 0 {
		return false
	}
	eps := make(set[string], len(ch.Endpoints))
	for _, e := range ch.Endpoints {
		if _, ok := m.eps.get(e.ID); ok {
			return false
		}
		if _, dup := eps[e.ID]; dup {
			return false
		}
		eps[e.ID] = struct{}{}
	}
	lbs := make(set[string], len(ch.LoadBalancers))
	for _, lb := range ch.LoadBalancers {
		if _, ok := m.lbs.get(lb.Name); ok {
			return false
		}
		if _, dup := lbs[lb.Name]; dup {
			return false
		}
		lbs[lb.Name] = struct{}{}
	}
	routes := make(set[RouteKey], len(ch.Routes))
	for _, r := range ch.Routes {
		if _, ok := m.routes.get(r.Key()); ok {
			return false
		}
		if _, dup := routes[r.Key()]; dup {
			return false
		}
		routes[r.Key()] = struct{}{}
	}
	return true
}

// nextSnap is prev with what ch adds (onlyAdds) appended: the cost of
// ch, not of the configuration, which Config would otherwise materialise
// again after every change for a reader that follows them. The items are
// copied: the model keeps its own, and ch's are the caller's.
func nextSnap(prev *snapshot, ch *Change) *snapshot {
	n, t := prev.c, prev.tail
	nt := &snapTail{eps: t.eps, lbs: t.lbs, routes: t.routes}
	nt.eps = append(nt.eps, ch.Endpoints...)
	for _, lb := range ch.LoadBalancers {
		lb.Backends = cloneSlice(lb.Backends)
		nt.lbs = append(nt.lbs, lb)
	}
	nt.routes = append(nt.routes, ch.Routes...)
	n.Endpoints = nt.eps[:len(nt.eps):len(nt.eps)]
	n.LoadBalancers = nt.lbs[:len(nt.lbs):len(nt.lbs)]
	n.Routes = nt.routes[:len(nt.routes):len(nt.routes)]
	return &snapshot{c: n, tail: nt}
}
