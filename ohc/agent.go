package ohc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/internal/replicaset"
	"github.com/p4mesh/p4mesh/watch"
)

// coalesce is how long the agent lets a burst of events land before it
// assembles a view: long enough for the events of one controller change,
// short against convergence targets.
const coalesce = 2 * time.Millisecond

// DefaultSourceGrace is AgentOptions.SourceGrace's default: longer than a
// controller restart with a snapshot to resend, short enough that an
// operator hears of a controller that stays away.
const DefaultSourceGrace = 30 * time.Second

// AgentOptions configure an Agent.
type AgentOptions struct {
	// Host is this host's id, as the controllers know it.
	Host string
	// Controllers are the addresses of every controller of the directory:
	// each streams the host's programming for the VPCs it owns. A
	// controller that runs as a replica set is its replicas' addresses
	// joined by commas (replicaset.Join): the agent follows whichever
	// replica serves.
	Controllers []string
	// DialOptions reach the controllers; nil means plaintext.
	DialOptions []grpc.DialOption
	// Programmer receives every view the agent assembles.
	Programmer *Programmer
	Logger     *slog.Logger
	// SourceGrace is how long a source (a controller's host programming,
	// a pulled connectivity service) may stay unsynced before the agent
	// reports it down: a warning naming it, and the
	// p4mesh_ohc_sources_unsynced_past_grace metric. Zero means
	// DefaultSourceGrace.
	//
	// Programming never waits for a source: the view is programmed per
	// source (see Run), and what the switch holds for an unsynced one is
	// kept as last programmed. After the grace it is still kept, until
	// the source syncs or is no longer wanted. Deleting it would turn a
	// control-plane outage into a data-plane one, and only on the hosts
	// whose OHC happened to restart during it: an OHC that keeps running
	// keeps a silent controller's last state for as long as it is silent
	// (its streams stay whole), and a restart must not make the data
	// plane behave otherwise. The price is stale state after a restart:
	// what a live controller deleted while this OHC was itself down stays
	// on the switch until the silent source syncs (deletions seen while
	// the OHC runs go at once). So the grace ends in an alarm, not a
	// deletion, and the operator decides: once nothing calls for the
	// silent source (its peering deleted, its controller taken out of
	// --controller), the view is whole again and the rest is pruned.
	SourceGrace time.Duration
	// ReportInterval paces Report (default 2s): what the switch holds is
	// operational state, so seconds are fine. A change of mastership is
	// reported at once regardless.
	ReportInterval time.Duration
}

// Agent is the OHC's subscriber layer. It follows host programming from
// every controller; for each VPC of the host it pulls that VPC's
// connectivity from its owner, and for each active peering the peer's
// connectivity under the peer's export policy from the controller that owns
// the peer — only what this host needs. It joins the streams into one View
// and hands it to the Programmer.
type Agent struct {
	o   AgentOptions
	log *slog.Logger

	// mu guards the fields below; stream handlers run on their own
	// goroutines.
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	hosts map[string]*hostProgramming // by controller address
	subs  map[subKey]*subscription
	// want is the union of the hosts' wants (wantedLocked), kept while
	// none of them changes: at a host of 100 VPCs with their peers it has
	// hundreds of keys, and Run asks for it twice per wake-up, on every
	// endpoint change anywhere it pulls from. subOrder is subs' keys in
	// the order assemble merges them, nil when subs changed since.
	want     map[subKey]bool
	subOrder []subKey

	kick chan struct{}

	// handedView is the last view handed to the programmer, and
	// handedParts the parts it was made of, in order: the base the next
	// view is patched from when only remote endpoints changed. Only
	// assemble's caller (Run) sets them.
	handedView  *View
	handedParts []*part

	// heartbeat is how often Report must report while the host has a
	// gateway duty (the shortest duty's), in nanoseconds; 0 without one.
	// Run sets it with each view it hands over and kicks reportKick when
	// it changes.
	heartbeat  atomic.Int64
	reportKick chan struct{}

	events  [6]atomic.Uint64 // by p4meshv1.Event_Type, up to PROGRESS
	streams atomic.Int64     // streams followed now
	// unsynced and pastGrace count the sources not synced now, and those
	// of them unsynced for longer than the grace.
	unsynced, pastGrace atomic.Int64
}

// AgentStats counts what the agent receives.
type AgentStats struct {
	// Events by type: PUT, DELETE, SYNCED, RESET, PROGRESS.
	Puts, Deletes, Synced, Resets, Progress uint64
	// Streams is the number of watch streams followed.
	Streams int64
	// Pulled is the number of connectivity services pulled.
	Pulled int
	// Unsynced is the number of sources (host programming streams and
	// pulled services) the agent wants but has no whole snapshot of now;
	// PastGrace those of them unsynced for longer than SourceGrace.
	Unsynced, PastGrace int64
}

// Stats reports the agent's counters.
func (a *Agent) Stats() AgentStats {
	a.mu.Lock()
	pulled := len(a.subs)
	a.mu.Unlock()
	return AgentStats{
		Puts: a.events[p4meshv1.Event_PUT].Load(), Deletes: a.events[p4meshv1.Event_DELETE].Load(),
		Synced: a.events[p4meshv1.Event_SYNCED].Load(), Resets: a.events[p4meshv1.Event_RESET].Load(),
		Progress: a.events[p4meshv1.Event_PROGRESS].Load(), Streams: a.streams.Load(), Pulled: pulled,
		Unsynced: a.unsynced.Load(), PastGrace: a.pastGrace.Load(),
	}
}

// handler is v's handler with the agent's counters. Every change to v
// while it is whole is counted in p before Run is woken.
func (a *Agent) handler(v *watch.View, p *part) watch.Handler {
	h := v.Handler(func() {
		p.changes.Add(1)
		a.changed()
	})
	h.OnEvent = func(ev *p4meshv1.Event) {
		if t := ev.GetType(); int(t) < len(a.events) {
			a.events[t].Add(1)
		}
	}
	return h
}

// follow runs one watch stream, counted.
func (a *Agent) follow(ctx context.Context, name string, v *watch.View, p *part, open func(ctx context.Context, rev uint64) (watch.Stream, error)) {
	a.streams.Add(1)
	defer a.streams.Add(-1)
	watch.Follow(ctx, name, a.log, open, a.handler(v, p))
}

// subKey is one pulled connectivity service: the VPC, the policy it is
// exported under ("" for the host's own VPC) and where from.
type subKey struct {
	addr, vpc, policy, peerVPC string
}

// subscription is the four streams of one connectivity service. Its
// routes are a part of their own (rpart), kept route by route: a VPC with
// an on-prem router may hold 100k routes, and one of them changing must
// not cost reading the others again (see routeIndex).
type subscription struct {
	part
	rpart                  part
	name                   string // subKey.String, for the log and the missing and stale lists
	cancel                 context.CancelFunc
	dest, fwd, lbs, routes *watch.View
}

// hostProgramming is the host programming stream of one controller.
type hostProgramming struct {
	part
	view *watch.View
	// wants is the connectivity the stream's last whole snapshot called
	// for (see wantedLocked), as of the stream's change count wantsAt;
	// a.mu guards both.
	wants   map[subKey]bool
	wantsAt uint64
}

// part is one source of view items: a controller's host programming or a
// pulled connectivity service. It keeps the items it last contributed, so
// that a change rebuilds only the part it came in, and says whether they
// changed.
type part struct {
	// changes counts the changes to the part's streams while they are
	// whole; their handlers count each before they wake Run.
	changes atomic.Uint64

	// Only Run's goroutine uses the fields below: the part's view items
	// (a partial View), the count of changes they were built at, a
	// revision that moves whenever they change, and the items by the
	// events they were parsed from.
	frag    *View
	hasHost bool
	built   uint64
	rev     uint64
	items   parsed
	// pending is what changed in the part's items since the agent last
	// handed the programmer a view made with them.
	pending ViewChange
	// routes is the routes of a part made of a routes stream, nil for
	// other parts.
	routes *routeIndex
}

// update rebuilds the part's items with add when its streams changed
// since they were built.
func (p *part) update(add func(f *View)) {
	n := p.changes.Load() // before the streams are read: a later change is seen next time
	if p.frag != nil && n == p.built {
		return
	}
	first := p.frag == nil
	p.frag = &View{VPCs: map[string]VPC{}, Remote: map[string][]RemoteEndpoint{}}
	p.hasHost = false
	if p.items.last == nil {
		p.items = parsed{last: map[itemKey]any{}, cur: map[itemKey]any{}}
	}
	add(p.frag)
	for _, es := range p.frag.Remote {
		// In the compiler's order, so it need not sort them each time,
		// and can find an address's records by binary search.
		slices.SortFunc(es, compareRemote)
	}
	p.built = n
	var ch ViewChange
	if !p.items.end(func(item any) {
		switch it := item.(type) {
		case nil:
		case RemoteEndpoint:
			ch.Remote = append(ch.Remote, RemoteKey{VPC: it.VPC, IP: it.IP})
		case LocalEndpoint: // the one that went and the one that came
			ch.Local = append(ch.Local, RemoteKey{VPC: it.VPC, IP: it.IP})
		default:
			ch.Other = true
		}
	}) {
		p.rev++
		ch.Other = ch.Other || first
		p.pending.Merge(ch)
	}
}

// routeIndex keeps a routes stream's routes by event key and by VPC and
// prefix, updated from the keys of the events applied since (dirty) so
// that a change costs the routes it names. The stream's handler
// (routesHandler) records a key after applying its event to the view and
// before counting the change, so an update that saw the count also sees
// the key, and a key taken early is harmless (its event is applied again,
// and found the same).
type routeIndex struct {
	mu    sync.Mutex // guards dirty and all, which the handler writes
	dirty map[string]*p4meshv1.Event
	all   bool // read the whole stream: the first build, or after a RESET

	// Only Run's goroutine uses the fields below.
	own   bool // the host's own VPC's service: a peer's routes are not ours
	byEv  map[string]Route
	byKey map[RouteKey][]string // event keys, by VPC and prefix as received
	// listed says frag.Routes is byEv's routes (see part.mergeInto).
	listed bool
}

// mark records that the event of key changed (ev nil: deleted).
func (x *routeIndex) mark(key string, ev *p4meshv1.Event) {
	x.mu.Lock()
	if !x.all {
		if x.dirty == nil {
			x.dirty = map[string]*p4meshv1.Event{}
		}
		x.dirty[key] = ev
	}
	x.mu.Unlock()
}

// markAll says the whole stream is to be read again.
func (x *routeIndex) markAll() {
	x.mu.Lock()
	x.all, x.dirty = true, nil
	x.mu.Unlock()
}

// routeKeyOf is the key a route is filed under: its VPC and prefix as
// received. The compiler masks nothing: a key with an unmasked prefix
// makes it compile the view whole.
func routeKeyOf(r Route) RouteKey { return RouteKey{VPC: r.VPC, Prefix: r.Prefix} }

func routeEqual(a, b Route) bool {
	return a.VPC == b.VPC && a.Prefix == b.Prefix && a.NextHopIP == b.NextHopIP && slices.Equal(a.NextHopIPs, b.NextHopIPs)
}

func (x *routeIndex) add(key string, r Route) {
	x.byEv[key] = r
	k := routeKeyOf(r)
	x.byKey[k] = append(x.byKey[k], key)
}

func (x *routeIndex) remove(key string) {
	r, ok := x.byEv[key]
	if !ok {
		return
	}
	delete(x.byEv, key)
	k := routeKeyOf(r)
	ks := slices.DeleteFunc(x.byKey[k], func(s string) bool { return s == key })
	if len(ks) == 0 {
		delete(x.byKey, k)
	} else {
		x.byKey[k] = ks
	}
}

// updateRoutes brings p's routes (p.routes) up to date with the stream v:
// only the events changed since the last update, unless the whole stream
// is to be read again. It records in p.pending the routes that came, went
// or changed, by VPC and prefix.
func (p *part) updateRoutes(v *watch.View) {
	n := p.changes.Load() // before the changes are taken: a later one is seen next time
	x := p.routes
	if p.frag != nil && n == p.built {
		return
	}
	p.built = n
	x.mu.Lock()
	dirty, all := x.dirty, x.all || p.frag == nil
	x.dirty, x.all = nil, false
	x.mu.Unlock()
	var keys []RouteKey
	if all {
		first := p.frag == nil
		old := x.byEv
		x.byEv, x.byKey = map[string]Route{}, map[RouteKey][]string{}
		if x.own {
			for key, ev := range v.Items() {
				if r, ok := parseRoute(ev).(Route); ok {
					x.add(key, r)
				}
			}
		}
		p.frag, x.listed = &View{}, false
		if first {
			p.rev++
			p.pending.Merge(ViewChange{Other: true})
			return
		}
		for key, r := range old {
			if cur, ok := x.byEv[key]; !ok || !routeEqual(cur, r) {
				keys = append(keys, routeKeyOf(r))
			}
		}
		for key, r := range x.byEv {
			if o, ok := old[key]; !ok || !routeEqual(o, r) {
				keys = append(keys, routeKeyOf(r))
			}
		}
	} else {
		for key, ev := range dirty {
			old, had := x.byEv[key]
			var r Route
			ok := false
			if ev != nil && x.own {
				r, ok = parseRoute(ev).(Route)
			}
			if had == ok && (!had || routeEqual(old, r)) {
				continue // nothing came or went
			}
			if had {
				x.remove(key)
				keys = append(keys, routeKeyOf(old))
			}
			if ok {
				x.add(key, r)
				keys = append(keys, routeKeyOf(r))
			}
		}
	}
	if len(keys) > 0 {
		p.rev++
		x.listed = false
		p.pending.Merge(ViewChange{Routes: keys})
	}
}

// routesHandler is v.Handler for a routes stream kept in p.routes: as
// a.handler, and it records each key changed after applying it.
func (a *Agent) routesHandler(v *watch.View, p *part) watch.Handler {
	x := p.routes
	notify := func() {
		p.changes.Add(1)
		a.changed()
	}
	return watch.Handler{
		Put: func(key string, ev *p4meshv1.Event) {
			v.Put(key, ev)
			x.mark(key, ev)
			if v.Synced() {
				notify()
			}
		},
		Delete: func(key string, rev uint64) {
			v.Delete(key, rev)
			x.mark(key, nil)
			if v.Synced() {
				notify()
			}
		},
		Reset: func() {
			v.Reset()
			x.markAll()
		},
		Synced: func(rev uint64) {
			v.MarkSynced(rev)
			notify()
		},
		Progress: v.Progress,
		OnEvent: func(ev *p4meshv1.Event) {
			if t := ev.GetType(); int(t) < len(a.events) {
				a.events[t].Add(1)
			}
		},
	}
}

// mergeInto adds the part's items to v. Its endpoint lists are shared,
// not copied, when v has none of the VPC yet: views are not modified once
// made, and a list another part adds to is copied by the append.
func (p *part) mergeInto(v *View) {
	f := p.frag
	if x := p.routes; x != nil && !x.listed {
		f.Routes = slices.Collect(maps.Values(x.byEv))
		x.listed = true
	}
	if p.hasHost {
		v.Host = f.Host
	}
	for name, x := range f.VPCs {
		v.VPCs[name] = x
	}
	v.Local = append(v.Local, f.Local...)
	v.Peerings = append(v.Peerings, f.Peerings...)
	for name, es := range f.Remote {
		if cur, ok := v.Remote[name]; ok {
			v.Remote[name] = mergeRemote(cur, es)
		} else {
			v.Remote[name] = slices.Clip(es)
		}
	}
	v.LBs = append(v.LBs, f.LBs...)
	v.Routes = append(v.Routes, f.Routes...)
	v.Duties = append(v.Duties, f.Duties...)
}

// mergeRemote merges two lists sorted by compareRemote into a new one,
// sorted too: the compiler finds an address's records by binary search.
func mergeRemote(a, b []RemoteEndpoint) []RemoteEndpoint {
	out := make([]RemoteEndpoint, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if compareRemote(b[0], a[0]) < 0 {
			out, b = append(out, b[0]), b[1:]
		} else {
			out, a = append(out, a[0]), a[1:]
		}
	}
	return append(append(out, a...), b...)
}

func (s *subscription) synced() bool {
	return s.dest.Synced() && s.fwd.Synced() && s.lbs.Synced() && s.routes.Synced()
}

// NewAgent checks the options.
func NewAgent(o AgentOptions) (*Agent, error) {
	if o.Host == "" || len(o.Controllers) == 0 || o.Programmer == nil {
		return nil, errors.New("ohc: an agent needs a host id, at least one controller and a programmer")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DialOptions == nil {
		o.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	if o.SourceGrace <= 0 {
		o.SourceGrace = DefaultSourceGrace
	}
	if o.ReportInterval <= 0 {
		o.ReportInterval = defaultReportInterval
	}
	return &Agent{
		o: o, log: o.Logger.With("host", o.Host),
		conns: map[string]*grpc.ClientConn{}, hosts: map[string]*hostProgramming{}, subs: map[subKey]*subscription{},
		kick: make(chan struct{}, 1), reportKick: make(chan struct{}, 1),
	}, nil
}

func (a *Agent) changed() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// conn returns the shared connection to a controller, addr being its
// replica set joined by commas (one address for most): one connection
// follows whichever replica leads.
func (a *Agent) conn(addr string) (*grpc.ClientConn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.conns[addr]; c != nil {
		return c, nil
	}
	c, err := replicaset.Dial(strings.Split(addr, ","), a.o.DialOptions...)
	if err != nil {
		return nil, fmt.Errorf("controller %s: %w", addr, err)
	}
	a.conns[addr] = c
	return c, nil
}

// Run follows the streams and programs the switch until ctx ends. It
// programs per source, waiting for none: once some controller's host
// programming is whole, every change goes to the programmer as a view of
// each source as it stands now when synced, as its last whole snapshot when
// it was synced before and is not now (its controller restarting or gone),
// and not at all when it has not been heard from since the start. A view
// without the last is partial: the programmer keeps the switch's entries no
// synced source explains, since they may be that source's.
func (a *Agent) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer func() {
		a.mu.Lock()
		for _, s := range a.subs {
			s.cancel()
		}
		a.mu.Unlock()
		wg.Wait()
		a.mu.Lock()
		for _, c := range a.conns {
			c.Close()
		}
		a.mu.Unlock()
	}()
	for _, addr := range a.o.Controllers {
		conn, err := a.conn(addr)
		if err != nil {
			return err
		}
		hp := &hostProgramming{view: &watch.View{}}
		a.mu.Lock()
		a.hosts[addr] = hp
		a.mu.Unlock()
		client := p4meshv1.NewHostProgrammingClient(conn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.follow(ctx, "host-programming@"+addr, hp.view, &hp.part, func(ctx context.Context, rev uint64) (watch.Stream, error) {
				return client.Watch(ctx, &p4meshv1.WatchRequest{Host: a.o.Host, ResumeRevision: rev})
			})
		}()
	}
	var (
		handed        map[*part]uint64 // what the last view handed over was made of
		handedMissing []string         // and the sources it lacked
		partialSince  time.Time        // when the views handed over began to lack sources
		sources       = sourceClock{since: map[string]time.Time{}, warned: map[string]bool{}}
	)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.kick:
			// One change at a controller arrives as events on several
			// streams (a destination and where it lives): let the burst
			// land so the view is assembled once, whole.
			time.Sleep(coalesce)
		case <-tick.C:
		}
		a.subscribe(ctx, &wg)
		as := a.assemble()
		a.clock(&sources, as)
		if !as.hasHost {
			// No controller's host programming has come whole yet:
			// there is nothing to program with, and the switch keeps
			// what it has.
			continue
		}
		if handed != nil && maps.Equal(as.madeOf, handed) && slices.Equal(as.missing, handedMissing) {
			// Nothing the view is made of changed (a destination whose
			// forwarding has not come yet, a tick): the programmer has
			// this view already.
			continue
		}
		change := as.change
		for _, p := range as.parts {
			p.pending = ViewChange{}
		}
		a.handedView, a.handedParts = as.view, as.parts
		a.setHeartbeat(as.view.Duties)
		switch {
		case len(as.missing) == 0:
			a.o.Programmer.UpdateChange(as.view, nil, change)
			if !partialSince.IsZero() {
				a.log.Info("every source synced; programming whole views again", "after", time.Since(partialSince).Round(time.Millisecond))
				partialSince = time.Time{}
			}
		default:
			// Program what the synced sources say now rather than wait
			// for the others: one unreachable controller must not stop
			// the programming of every VPC on the host. The programmer
			// keeps the switch's entries that no synced source explains.
			a.o.Programmer.UpdateChange(as.view, as.missing, change)
			if partialSince.IsZero() {
				partialSince = time.Now()
				a.log.Info("programming the switch without some sources until they sync; entries no synced source explains are kept", "waiting_for", as.missing)
			} else if !slices.Equal(as.missing, handedMissing) {
				a.log.Debug("still programming without some sources", "waiting_for", as.missing)
			}
		}
		handed, handedMissing = as.madeOf, as.missing
	}
}

// sourceClock is when each unsynced source stopped being synced (or was
// first wanted), and which of them have been reported past the grace.
type sourceClock struct {
	since  map[string]time.Time
	warned map[string]bool
}

// clock follows how long sources have been unsynced, warns once of each
// that passes the grace, and says when such a source is back.
func (a *Agent) clock(c *sourceClock, as assembly) {
	now := time.Now()
	unsynced := make(map[string]bool, len(as.missing)+len(as.stale))
	for _, n := range as.missing {
		unsynced[n] = true
	}
	for _, n := range as.stale {
		unsynced[n] = true
	}
	for n := range unsynced {
		if _, ok := c.since[n]; !ok {
			c.since[n] = now
		}
	}
	for n, t := range c.since {
		switch {
		case !unsynced[n]:
			if c.warned[n] {
				a.log.Info("source synced again", "source", n, "after", now.Sub(t).Round(time.Second))
			}
			delete(c.since, n)
			delete(c.warned, n)
		case !c.warned[n] && now.Sub(t) >= a.o.SourceGrace:
			c.warned[n] = true
			if slices.Contains(as.stale, n) {
				a.log.Warn("source unsynced past the grace; the switch keeps its entries as last programmed",
					"source", n, "for", now.Sub(t).Round(time.Second))
			} else {
				a.log.Warn("no snapshot from source past the grace; the switch keeps the entries no synced source explains",
					"source", n, "for", now.Sub(t).Round(time.Second))
			}
		}
	}
	a.unsynced.Store(int64(len(c.since)))
	a.pastGrace.Store(int64(len(c.warned)))
}

// subscribe starts the connectivity streams the host programming now calls
// for and stops the ones it no longer does.
func (a *Agent) subscribe(ctx context.Context, wg *sync.WaitGroup) {
	a.mu.Lock()
	want := a.wantedLocked()
	var start []subKey
	for k := range want {
		if a.subs[k] == nil {
			start = append(start, k)
		}
	}
	for k, s := range a.subs {
		if !want[k] {
			s.cancel()
			delete(a.subs, k)
			a.subOrder = nil
			a.log.Info("stopped pulling", "vpc", k.vpc, "policy", k.policy, "from", k.addr)
		}
	}
	a.mu.Unlock()
	for _, k := range start {
		a.startSub(ctx, wg, k)
	}
}

// newSubscription is the empty subscription of k, its routes kept by
// route.
func newSubscription(k subKey) *subscription {
	s := &subscription{name: k.String(), dest: &watch.View{}, fwd: &watch.View{}, lbs: &watch.View{}, routes: &watch.View{}}
	// A peer's routes are its own business: the peering gives us its
	// exported destinations, not its next hops.
	s.rpart.routes = &routeIndex{own: k.policy == ""}
	return s
}

func (a *Agent) startSub(ctx context.Context, wg *sync.WaitGroup, k subKey) {
	conn, err := a.conn(k.addr)
	if err != nil {
		a.log.Error("cannot pull connectivity", "vpc", k.vpc, "err", err)
		return
	}
	client := p4meshv1.NewConnectivityClient(conn)
	sctx, cancel := context.WithCancel(ctx)
	s := newSubscription(k)
	s.cancel = cancel
	a.mu.Lock()
	a.subs[k] = s
	a.subOrder = nil
	a.mu.Unlock()
	a.log.Info("pulling connectivity", "vpc", k.vpc, "policy", k.policy, "for", k.peerVPC, "from", k.addr)
	req := func(rev uint64) *p4meshv1.WatchRequest {
		return &p4meshv1.WatchRequest{Host: a.o.Host, Vpc: k.vpc, ExportPolicy: k.policy, PeerVpc: k.peerVPC, ResumeRevision: rev}
	}
	streams := []struct {
		name string
		view *watch.View
		open func(ctx context.Context, r *p4meshv1.WatchRequest) (watch.Stream, error)
	}{
		{"destinations", s.dest, func(ctx context.Context, r *p4meshv1.WatchRequest) (watch.Stream, error) {
			return client.WatchDestinations(ctx, r)
		}},
		{"forwarding", s.fwd, func(ctx context.Context, r *p4meshv1.WatchRequest) (watch.Stream, error) {
			return client.WatchForwarding(ctx, r)
		}},
		{"load-balancers", s.lbs, func(ctx context.Context, r *p4meshv1.WatchRequest) (watch.Stream, error) {
			return client.WatchLoadBalancers(ctx, r)
		}},
		{"routes", s.routes, func(ctx context.Context, r *p4meshv1.WatchRequest) (watch.Stream, error) {
			return client.WatchRoutes(ctx, r)
		}},
	}
	for _, st := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("%s %s/%s@%s", st.name, k.vpc, k.policy, k.addr)
			open := func(ctx context.Context, rev uint64) (watch.Stream, error) {
				return st.open(ctx, req(rev))
			}
			if st.view == s.routes {
				a.streams.Add(1)
				defer a.streams.Add(-1)
				watch.Follow(sctx, name, a.log, open, a.routesHandler(s.routes, &s.rpart))
				return
			}
			a.follow(sctx, name, st.view, &s.part, open)
		}()
	}
}

// wantedLocked is the connectivity the host programming calls for: each
// VPC of the host from the controller that sent it, and each active
// peering's peer under the peer's export policy from the peer's owner. A
// controller's host programming that is not whole now (being re-sent after
// a RESET, or its controller down) counts with its last whole snapshot:
// dropping what that pulled would take its entries off the switch for lack
// of news.
//
// The map is the agent's: callers read it and do not keep it.
func (a *Agent) wantedLocked() map[subKey]bool {
	changed := a.want == nil
	for addr, hp := range a.hosts {
		// Read before the items: a change counted later is seen next
		// time. Every change to a whole stream is counted, so with the
		// count unchanged the items are too, and reading them again on
		// every wake-up (every endpoint change anywhere) would be wasted.
		n := hp.changes.Load()
		if hp.view.Synced() && (hp.wants == nil || n != hp.wantsAt) {
			items := hp.view.Items()
			// A RESET between the two reads would leave items half a
			// snapshot: keep the last whole one then.
			if hp.view.Synced() {
				w := wantsOf(addr, items)
				changed = changed || !maps.Equal(w, hp.wants)
				hp.wants, hp.wantsAt = w, n
			}
		}
	}
	if !changed {
		return a.want
	}
	want := map[subKey]bool{}
	for _, hp := range a.hosts {
		for k := range hp.wants {
			want[k] = true
		}
	}
	a.want = want
	return want
}

// wantsOf is the connectivity a controller's host programming calls for.
// A gateway duty for a VPC calls for the VPC's own connectivity, as an
// endpoint of it does; but while the host has no endpoint in it, not for
// its peers': nothing here sends in the VPC, and a gateway of a VPC peered
// with many would otherwise hold every peer's exports for nothing.
func wantsOf(addr string, items map[string]*p4meshv1.Event) map[subKey]bool {
	want := map[subKey]bool{}
	local, duty := map[string]bool{}, map[string]bool{}
	for _, ev := range items {
		if e := ev.GetLocalEndpoint(); e != nil {
			local[e.GetVpc()] = true
		}
		if d := ev.GetGatewayDuty(); d != nil {
			duty[d.GetVpc()] = true
		}
	}
	for _, ev := range items {
		switch {
		case ev.GetVpc() != nil:
			want[subKey{addr: addr, vpc: ev.GetVpc().GetName()}] = true
		case ev.GetGatewayDuty() != nil:
			want[subKey{addr: addr, vpc: ev.GetGatewayDuty().GetVpc()}] = true
		case ev.GetPeering() != nil && ev.GetPeering().GetActive():
			p := ev.GetPeering()
			if duty[p.GetVpc()] && !local[p.GetVpc()] {
				continue
			}
			want[subKey{addr: peerController(p), vpc: p.GetPeerVpc(), policy: p.GetPeerExportPolicy(), peerVPC: p.GetVpc()}] = true
		}
	}
	return want
}

// peerController is where to pull a peering's peer from: every replica of
// the controller that owns it, or, from a controller that predates
// replica sets, its one address.
func peerController(p *p4meshv1.Peering) string {
	if addrs := p.GetPeerControllers(); len(addrs) > 0 {
		return replicaset.Join(addrs)
	}
	return p.GetPeerController()
}

// assembly is one view the agent assembled, and which sources it lacks.
type assembly struct {
	view *View
	// madeOf identifies what the view is made of: each part and the
	// revision of its items. A view made of the same is the same view.
	madeOf map[*part]uint64
	// missing are the sources wanted but never synced since the agent
	// started: the view lacks them. stale are those not synced now whose
	// last whole snapshot the view holds instead. Both sorted.
	missing, stale []string
	// hasHost says whether the view has the host: whether some
	// controller's host programming has been whole.
	hasHost bool
	// parts are the parts the view is made of, in the order merged, and
	// change what changed since the view handed over last (handedView):
	// the parts' changes, or everything when they are not the same parts.
	parts  []*part
	change ViewChange
}

// assemble joins the streams into one View, source by source: a synced
// source with what it holds now, an unsynced one with its last whole
// snapshot, and one never synced not at all (it is missing).
func (a *Agent) assemble() assembly {
	a.mu.Lock()
	defer a.mu.Unlock()
	as := assembly{
		view:   &View{VPCs: map[string]VPC{}, Remote: map[string][]RemoteEndpoint{}},
		madeOf: make(map[*part]uint64, len(a.hosts)+len(a.subs)),
	}
	// take adds p to the view's parts, rebuilt first if its streams are
	// whole now.
	take := func(p *part, name string, whole bool, build func(f *View)) {
		switch {
		case whole:
			p.update(build)
		case p.frag == nil:
			as.missing = append(as.missing, name)
			return
		default:
			as.stale = append(as.stale, name)
		}
		as.parts = append(as.parts, p)
		as.hasHost = as.hasHost || p.hasHost
		as.madeOf[p] = p.rev
	}
	// A subscription the host programming calls for but that could not be
	// started is missing from the view too.
	for k := range a.wantedLocked() {
		if a.subs[k] == nil {
			as.missing = append(as.missing, k.String()+" (not pulled)")
		}
	}
	for _, addr := range sortedKeys(a.hosts) {
		hp := a.hosts[addr]
		take(&hp.part, "host-programming@"+addr, hp.view.Synced(), func(f *View) {
			for _, ev := range hp.view.Items() {
				hp.addHostItem(f, ev)
			}
		})
	}
	// Own VPCs' connectivity first, so that when a host sees a load
	// balancer both as its own VPC's and through a peering, the own copy
	// is the one kept.
	if a.subOrder == nil {
		a.subOrder = slices.SortedFunc(maps.Keys(a.subs), func(x, y subKey) int {
			return cmp.Or(cmp.Compare(x.policy, y.policy), cmp.Compare(x.addr, y.addr), cmp.Compare(x.vpc, y.vpc), cmp.Compare(x.peerVPC, y.peerVPC))
		})
	}
	for _, k := range a.subOrder {
		s := a.subs[k]
		whole := s.synced()
		take(&s.part, s.name, whole, func(f *View) { s.addConnectivity(f, k) })
		// The service's routes: missing or stale with it, named once.
		switch {
		case whole:
			s.rpart.updateRoutes(s.routes)
		case s.rpart.frag == nil:
			continue
		}
		as.parts = append(as.parts, &s.rpart)
		as.madeOf[&s.rpart] = s.rpart.rev
	}
	as.change = ViewChange{Other: !slices.Equal(as.parts, a.handedParts)}
	for _, p := range as.parts {
		as.change.Merge(p.pending)
	}
	if a.handedView != nil && !as.change.Other {
		as.view = patchRemote(a.handedView, as.parts, as.change.Remote, len(as.change.Local) > 0)
		if len(as.change.Routes) > 0 {
			as.view.routeChunks = patchRoutes(a.handedView.routeChunks, as.parts, as.change.Routes)
		}
	} else {
		for _, p := range as.parts {
			p.mergeInto(as.view)
		}
		as.view.LBs = dedupeLBs(as.view.LBs)
		// In the incremental compile's order (compareRoutes), in chunks
		// that a change of routes then patches (patchRoutes).
		slices.SortFunc(as.view.Routes, compareRoutes)
		as.view.routeChunks, as.view.Routes = chunkRoutes(as.view.Routes), nil
	}
	slices.Sort(as.missing)
	slices.Sort(as.stale)
	return as
}

// patchRemote is the view the parts make, given that it is base but for
// the remote endpoints of the VPCs in keys and, if local, the local
// endpoints: it shares everything else with base (views are not modified
// once made) and merges again only those VPCs' lists (and the host's few
// local endpoints), from the parts in the same order as mergeInto, so the
// result is what merging every part would give. A change of one endpoint
// then costs the size of its VPC's list and the number of VPCs, not the
// whole view.
func patchRemote(base *View, parts []*part, keys []RemoteKey, local bool) *View {
	v := *base
	if local {
		v.Local = nil
		for _, p := range parts {
			v.Local = append(v.Local, p.frag.Local...)
		}
	}
	v.Remote = maps.Clone(base.Remote)
	done := map[string]bool{}
	for _, k := range keys {
		if done[k.VPC] {
			continue
		}
		done[k.VPC] = true
		delete(v.Remote, k.VPC)
		for _, p := range parts {
			es, ok := p.frag.Remote[k.VPC]
			if !ok {
				continue
			}
			if cur, ok := v.Remote[k.VPC]; ok {
				v.Remote[k.VPC] = mergeRemote(cur, es)
			} else {
				v.Remote[k.VPC] = slices.Clip(es)
			}
		}
	}
	return &v
}

// routeChunk is how many routes a chunk of a view's routes holds (see
// View.routeChunks) when made; a change copies one, so it is small
// against 100k routes and large against the list of chunks. (A variable
// for the tests, which cut small chunks to split and empty them.)
var routeChunk = 256

// chunkRoutes cuts rs (sorted by compareRoutes) into chunks of about
// routeChunk routes, never between two routes of one VPC and prefix. The
// chunks share rs's array, capped so an append cannot overwrite the next.
func chunkRoutes(rs []Route) [][]Route {
	out := make([][]Route, 0, len(rs)/routeChunk+1)
	for len(rs) > 0 {
		n := min(routeChunk, len(rs))
		for n < len(rs) && cmpRouteKey(rs[n], routeKeyOf(rs[n-1])) == 0 {
			n++
		}
		out = append(out, rs[:n:n])
		rs = rs[n:]
	}
	return out
}

// patchRoutes is the view's routes the parts make, as chunks, given that
// they are base's but for the routes under keys: each key's routes come
// from the parts' indexes (in compareRoutes order, as the whole merge
// sorts them) into its chunk, and the other chunks are shared with base.
// A change of one route then copies one chunk and the list of chunks.
func patchRoutes(base [][]Route, parts []*part, keys []RouteKey) [][]Route {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(x, y RouteKey) int {
		return cmp.Or(cmp.Compare(x.VPC, y.VPC), x.Prefix.Addr().Compare(y.Prefix.Addr()), cmp.Compare(x.Prefix.Bits(), y.Prefix.Bits()))
	})
	keys = slices.Compact(keys)
	out := slices.Clone(base)
	if len(out) == 0 {
		out = [][]Route{nil}
	}
	// Keys of one chunk together, the chunks from the last so that
	// splitting or dropping one leaves the others' indexes as found.
	var rs []Route
	for len(keys) > 0 {
		last := keys[len(keys)-1]
		i := routeChunkOf(out, last)
		j := len(keys) - 1
		for j > 0 && routeChunkOf(out, keys[j-1]) == i {
			j--
		}
		group := keys[j:]
		keys = keys[:j]
		old := out[i]
		chunk := make([]Route, 0, len(old)+len(group))
		for _, k := range group {
			lo, _ := slices.BinarySearchFunc(old, k, cmpRouteKey)
			hi := lo
			for hi < len(old) && cmpRouteKey(old[hi], k) == 0 {
				hi++
			}
			chunk = append(chunk, old[:lo]...)
			old = old[hi:]
			rs = rs[:0]
			for _, p := range parts {
				if x := p.routes; x != nil {
					for _, key := range x.byKey[k] {
						rs = append(rs, x.byEv[key])
					}
				}
			}
			slices.SortFunc(rs, compareRoutes)
			chunk = append(chunk, rs...)
		}
		chunk = append(chunk, old...)
		switch {
		case len(chunk) == 0:
			out = slices.Delete(out, i, i+1)
		case len(chunk) > 2*routeChunk:
			out = slices.Replace(out, i, i+1, chunkRoutes(chunk)...)
		default:
			out[i] = slices.Clip(chunk)
		}
	}
	if len(out) == 1 && len(out[0]) == 0 {
		return [][]Route{}
	}
	return out
}

// String names the service for the log: VPC/policy@controller.
func (k subKey) String() string { return fmt.Sprintf("%s/%s@%s", k.vpc, k.policy, k.addr) }

// dedupeLBs keeps the first of each load balancer (VPC, name): one pulled
// both as the host's own VPC's and through a peering, or through two
// peerings, is one load balancer.
func dedupeLBs(lbs []LoadBalancer) []LoadBalancer {
	seen := make(map[[2]string]bool, len(lbs))
	out := lbs[:0:0]
	for _, lb := range lbs {
		k := [2]string{lb.VPC, lb.Name}
		if !seen[k] {
			seen[k] = true
			out = append(out, lb)
		}
	}
	return out
}

// itemKey is what a view item is parsed from: one event, or a destination
// and the forwarding event that says where it lives.
type itemKey struct{ ev, fwd *p4meshv1.Event }

// parsed keeps the view items of a part parsed from events from one build
// to the next. An event is immutable once received, and from one change to
// the next almost every event is the same one, so parsing its addresses
// again would be wasted; and items made of the same events are the same.
type parsed struct {
	last, cur map[itemKey]any // the items of the last build, of this one
	fresh     []any           // items of this build not in last
}

// get returns the item parsed from k, parsing it when the last build did
// not have it. parse returns nil for an event that gives no item.
func (p *parsed) get(k itemKey, parse func() any) any {
	v, ok := p.last[k]
	if !ok {
		v = parse()
		p.fresh = append(p.fresh, v)
	}
	p.cur[k] = v
	return v
}

// end ends a build and reports whether it had exactly the items of the
// last one. If not, it calls changed (if not nil) with each item that
// came or went: an item that changed is a new item made of new events.
func (p *parsed) end(changed func(item any)) (same bool) {
	same = len(p.fresh) == 0 && len(p.cur) == len(p.last)
	if !same && changed != nil {
		for k, v := range p.last {
			if _, ok := p.cur[k]; !ok {
				changed(v)
			}
		}
		for _, v := range p.fresh {
			changed(v)
		}
	}
	p.last, p.cur = p.cur, p.last
	clear(p.cur)
	p.fresh = p.fresh[:0]
	return same
}

func (p *part) addHostItem(v *View, ev *p4meshv1.Event) {
	switch it := p.items.get(itemKey{ev: ev}, func() any { return parseHostItem(ev) }).(type) {
	case Host:
		v.Host, p.hasHost = it, true
	case VPC:
		v.VPCs[it.Name] = it
	case LocalEndpoint:
		v.Local = append(v.Local, it)
	case Peering:
		v.Peerings = append(v.Peerings, it)
	case GatewayDuty:
		v.Duties = append(v.Duties, it)
	}
}

// parseHostItem is the view item of a host programming event.
func parseHostItem(ev *p4meshv1.Event) any {
	switch {
	case ev.GetHost() != nil:
		h := ev.GetHost()
		host := Host{ID: h.GetId(), IP: addr(h.GetUnderlayIp()), MAC: hw(h.GetMac())}
		for _, r := range h.GetUnderlayRoutes() {
			p, _ := netip.ParsePrefix(r.GetPrefix())
			host.UnderlayRoutes = append(host.UnderlayRoutes, UnderlayRoute{Prefix: p, Port: uint16(r.GetPort()), SrcMAC: hw(r.GetSrcMac()), DstMAC: hw(r.GetDstMac())})
		}
		return host
	case ev.GetVpc() != nil:
		x := ev.GetVpc()
		vpc := VPC{Name: x.GetName(), VNI: x.GetVni(), GatewayIP: addr(x.GetGatewayIp()), GatewayMAC: hw(x.GetGatewayMac())}
		for _, s := range x.GetSubnets() {
			if p, err := netip.ParsePrefix(s); err == nil {
				vpc.Subnets = append(vpc.Subnets, p)
			}
		}
		return vpc
	case ev.GetLocalEndpoint() != nil:
		e := ev.GetLocalEndpoint()
		return LocalEndpoint{ID: e.GetId(), VPC: e.GetVpc(), IP: addr(e.GetIp()), MAC: hw(e.GetMac()), Port: uint16(e.GetPort()),
			Kind: e.GetKind(), RouterMAC: hw(e.GetRouterMac())}
	case ev.GetPeering() != nil:
		p := ev.GetPeering()
		peering := Peering{VPC: p.GetVpc(), PeerVPC: p.GetPeerVpc(), PeerVNI: p.GetPeerVni(), Active: p.GetActive(), Mode: p.GetMode()}
		for _, s := range p.GetPeerPrefixes() {
			if pr, err := netip.ParsePrefix(s); err == nil {
				peering.PeerPrefixes = append(peering.PeerPrefixes, pr)
			}
		}
		if gp := p.GetGatewayPool(); gp != nil {
			peering.Pool = parseGatewayPool(gp)
		}
		return peering
	case ev.GetGatewayDuty() != nil:
		d := ev.GetGatewayDuty()
		return GatewayDuty{Pool: d.GetPool(), VPC: d.GetVpc(), VNI: d.GetVni(), Heartbeat: time.Duration(d.GetHeartbeatMs()) * time.Millisecond}
	}
	return nil
}

// parseGatewayPool is the pool of a peering event.
func parseGatewayPool(gp *p4meshv1.GatewayPool) *GatewayPool {
	pool := &GatewayPool{Name: gp.GetName(), VPC: gp.GetVpc(), VNI: gp.GetVni(), PromotePackets: gp.GetPromotePackets(),
		PromoteWindow: time.Duration(gp.GetPromoteWindowMs()) * time.Millisecond,
		IdleTimeout:   time.Duration(gp.GetIdleTimeoutMs()) * time.Millisecond}
	for _, m := range gp.GetMembers() {
		pool.Members = append(pool.Members, GatewayMember{Host: m.GetHost(), IP: addr(m.GetUnderlayIp())})
	}
	return pool
}

// addConnectivity joins a service's destinations with where they live, and
// adds its load balancers (its routes are rpart's).
func (s *subscription) addConnectivity(v *View, k subKey) {
	fwd := s.fwd.Items()
	for key, ev := range s.dest.Items() {
		fev := fwd[key]
		if ev.GetDestination() == nil || fev.GetForwarding() == nil {
			continue // not yet known where it lives: no entry rather than a wrong one
		}
		e := s.items.get(itemKey{ev, fev}, func() any {
			d, f := ev.GetDestination(), fev.GetForwarding()
			return RemoteEndpoint{IP: addr(d.GetIp()), MAC: hw(f.GetMac()), HostIP: addr(f.GetHostIp()), VPC: d.GetVpc()}
		}).(RemoteEndpoint)
		v.Remote[e.VPC] = append(v.Remote[e.VPC], e)
	}
	for _, ev := range s.lbs.Items() {
		if lb, ok := s.items.get(itemKey{ev: ev}, func() any { return parseLB(ev) }).(LoadBalancer); ok {
			v.LBs = append(v.LBs, lb)
		}
	}
}

// parseLB is the load balancer of an event, or nil.
func parseLB(ev *p4meshv1.Event) any {
	lb := ev.GetLoadBalancer()
	if lb == nil {
		return nil
	}
	m := LoadBalancer{Name: lb.GetName(), VPC: lb.GetVpc(), VIP: addr(lb.GetVip()), Protocol: uint8(lb.GetProtocol()), Port: uint16(lb.GetPort())}
	for _, b := range lb.GetBackends() {
		m.Backends = append(m.Backends, Backend{IP: addr(b.GetIp()), MAC: hw(b.GetMac()), HostIP: addr(b.GetHostIp()), Weight: b.GetWeight()})
	}
	return m
}

// parseRoute is the route of an event, or nil.
func parseRoute(ev *p4meshv1.Event) any {
	r := ev.GetRoute()
	if r == nil {
		return nil
	}
	p, err := netip.ParsePrefix(r.GetPrefix())
	if err != nil {
		return nil
	}
	route := Route{VPC: r.GetVpc(), Prefix: p, NextHopIP: addr(r.GetNextHopIp())}
	for _, s := range r.GetNextHopIps() {
		// A next hop that does not parse is kept as the zero Addr, which
		// NextHops drops: the others still carry the route.
		route.NextHopIPs = append(route.NextHopIPs, addr(s))
	}
	return route
}

// addr parses an address, the zero Addr for a bad or empty one: the
// compiler refuses or skips zero addresses with a message.
func addr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}

func hw(s string) net.HardwareAddr {
	m, _ := net.ParseMAC(s)
	return m
}
