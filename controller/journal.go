package controller

import "slices"

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
