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
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/watch"
)

// coalesce is how long the agent lets a burst of events land before it
// assembles a view: long enough for the events of one controller change,
// short against convergence targets.
const coalesce = 2 * time.Millisecond

// AgentOptions configure an Agent.
type AgentOptions struct {
	// Host is this host's id, as the controllers know it.
	Host string
	// Controllers are the addresses of every controller of the directory:
	// each streams the host's programming for the VPCs it owns.
	Controllers []string
	// DialOptions reach the controllers; nil means plaintext.
	DialOptions []grpc.DialOption
	// Programmer receives every whole view the agent assembles.
	Programmer *Programmer
	Logger     *slog.Logger
	// SyncWait is how long the agent waits for every stream's first
	// snapshot before it logs which ones it still waits on. It never
	// programs a partial first view: that would delete the entries of
	// the streams not yet heard from.
	SyncWait time.Duration
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

	kick chan struct{}

	events  [5]atomic.Uint64 // by p4meshv1.Event_Type
	streams atomic.Int64     // streams followed now
}

// AgentStats counts what the agent receives.
type AgentStats struct {
	// Events by type: PUT, DELETE, SYNCED, RESET.
	Puts, Deletes, Synced, Resets uint64
	// Streams is the number of watch streams followed.
	Streams int64
	// Pulled is the number of connectivity services pulled.
	Pulled int
}

// Stats reports the agent's counters.
func (a *Agent) Stats() AgentStats {
	a.mu.Lock()
	pulled := len(a.subs)
	a.mu.Unlock()
	return AgentStats{
		Puts: a.events[p4meshv1.Event_PUT].Load(), Deletes: a.events[p4meshv1.Event_DELETE].Load(),
		Synced: a.events[p4meshv1.Event_SYNCED].Load(), Resets: a.events[p4meshv1.Event_RESET].Load(),
		Streams: a.streams.Load(), Pulled: pulled,
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

// subscription is the four streams of one connectivity service.
type subscription struct {
	part
	cancel                 context.CancelFunc
	dest, fwd, lbs, routes *watch.View
}

// hostProgramming is the host programming stream of one controller.
type hostProgramming struct {
	part
	view *watch.View
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
}

// update rebuilds the part's items with add when its streams changed
// since they were built.
func (p *part) update(add func(f *View)) {
	n := p.changes.Load() // before the streams are read: a later change is seen next time
	if p.frag != nil && n == p.built {
		return
	}
	p.frag = &View{VPCs: map[string]VPC{}, Remote: map[string][]RemoteEndpoint{}}
	p.hasHost = false
	if p.items.last == nil {
		p.items = parsed{last: map[itemKey]any{}, cur: map[itemKey]any{}}
	}
	add(p.frag)
	for _, es := range p.frag.Remote {
		// In the compiler's order, so it need not sort them each time.
		slices.SortFunc(es, compareRemote)
	}
	p.built = n
	if !p.items.end() {
		p.rev++
	}
}

// mergeInto adds the part's items to v. Its endpoint lists are shared,
// not copied, when v has none of the VPC yet: views are not modified once
// made, and a list another part adds to is copied by the append.
func (p *part) mergeInto(v *View) {
	f := p.frag
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
			v.Remote[name] = append(cur, es...)
		} else {
			v.Remote[name] = slices.Clip(es)
		}
	}
	v.LBs = append(v.LBs, f.LBs...)
	v.Routes = append(v.Routes, f.Routes...)
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
	if o.SyncWait == 0 {
		o.SyncWait = 10 * time.Second
	}
	return &Agent{
		o: o, log: o.Logger.With("host", o.Host),
		conns: map[string]*grpc.ClientConn{}, hosts: map[string]*hostProgramming{}, subs: map[subKey]*subscription{},
		kick: make(chan struct{}, 1),
	}, nil
}

func (a *Agent) changed() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// conn returns the shared connection to a controller.
func (a *Agent) conn(addr string) (*grpc.ClientConn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.conns[addr]; c != nil {
		return c, nil
	}
	c, err := grpc.NewClient(addr, a.o.DialOptions...)
	if err != nil {
		return nil, fmt.Errorf("controller %s: %w", addr, err)
	}
	a.conns[addr] = c
	return c, nil
}

// Run follows the streams and programs the switch until ctx ends.
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
	start := time.Now()
	warned := false
	var handed map[*part]uint64 // what the last view handed over was made of
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
		view, madeOf, waiting := a.assemble()
		if len(waiting) > 0 {
			if !warned && time.Since(start) > a.o.SyncWait {
				a.log.Warn("still waiting for the first snapshot of some streams; the switch keeps what it has", "streams", waiting)
				warned = true
			}
			continue
		}
		if handed != nil && maps.Equal(madeOf, handed) {
			// Nothing the view is made of changed (a destination whose
			// forwarding has not come yet, a tick): the programmer has
			// this view already.
			continue
		}
		a.o.Programmer.Update(view)
		handed = madeOf
	}
}

// subscribe starts the connectivity streams the host programming now calls
// for and stops the ones it no longer does.
func (a *Agent) subscribe(ctx context.Context, wg *sync.WaitGroup) {
	a.mu.Lock()
	want, ok := a.wantedLocked()
	if !ok {
		// A controller's host programming is being re-sent (RESET, then a
		// snapshot): what to pull is not known until it is whole again, and
		// dropping subscriptions now would take their entries off the
		// switch.
		a.mu.Unlock()
		return
	}
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
			a.log.Info("stopped pulling", "vpc", k.vpc, "policy", k.policy, "from", k.addr)
		}
	}
	a.mu.Unlock()
	for _, k := range start {
		a.startSub(ctx, wg, k)
	}
}

func (a *Agent) startSub(ctx context.Context, wg *sync.WaitGroup, k subKey) {
	conn, err := a.conn(k.addr)
	if err != nil {
		a.log.Error("cannot pull connectivity", "vpc", k.vpc, "err", err)
		return
	}
	client := p4meshv1.NewConnectivityClient(conn)
	sctx, cancel := context.WithCancel(ctx)
	s := &subscription{cancel: cancel, dest: &watch.View{}, fwd: &watch.View{}, lbs: &watch.View{}, routes: &watch.View{}}
	a.mu.Lock()
	a.subs[k] = s
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
			a.follow(sctx, name, st.view, &s.part, func(ctx context.Context, rev uint64) (watch.Stream, error) {
				return st.open(ctx, req(rev))
			})
		}()
	}
}

// assemble joins every stream into one View. It lists the streams whose
// first snapshot has not come yet; the view is only whole without them.
// madeOf identifies what the view is made of: each part and the revision
// of its items. A view made of the same is the same view.
// wantedLocked is the connectivity the host programming calls for: each
// VPC of the host from the controller that sent it, and each active
// peering's peer under the peer's export policy from the peer's owner. It
// is false while some controller's host programming is not whole.
func (a *Agent) wantedLocked() (map[subKey]bool, bool) {
	want := map[subKey]bool{}
	for addr, hp := range a.hosts {
		if !hp.view.Synced() {
			return nil, false
		}
		for _, ev := range hp.view.Items() {
			switch {
			case ev.GetVpc() != nil:
				want[subKey{addr: addr, vpc: ev.GetVpc().GetName()}] = true
			case ev.GetPeering() != nil && ev.GetPeering().GetActive():
				p := ev.GetPeering()
				want[subKey{addr: p.GetPeerController(), vpc: p.GetPeerVpc(), policy: p.GetPeerExportPolicy(), peerVPC: p.GetVpc()}] = true
			}
		}
	}
	return want, true
}

func (a *Agent) assemble() (v *View, madeOf map[*part]uint64, waiting []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// A subscription the host programming calls for but that has not been
	// started yet would be missing from the view: wait for it.
	if want, ok := a.wantedLocked(); ok {
		for k := range want {
			if a.subs[k] == nil {
				waiting = append(waiting, fmt.Sprintf("%s/%s@%s (not pulled yet)", k.vpc, k.policy, k.addr))
			}
		}
	}
	v = &View{VPCs: map[string]VPC{}, Remote: map[string][]RemoteEndpoint{}}
	madeOf = make(map[*part]uint64, len(a.hosts)+len(a.subs))
	for addr, hp := range a.hosts {
		if !hp.view.Synced() {
			waiting = append(waiting, "host-programming@"+addr)
			continue
		}
		hp.update(func(f *View) {
			for _, ev := range hp.view.Items() {
				hp.addHostItem(f, ev)
			}
		})
		hp.mergeInto(v)
		madeOf[&hp.part] = hp.rev
	}
	// Own VPCs' connectivity first, so that when a host sees a load
	// balancer both as its own VPC's and through a peering, the own copy
	// is the one kept.
	keys := slices.SortedFunc(maps.Keys(a.subs), func(x, y subKey) int {
		return cmp.Or(cmp.Compare(x.policy, y.policy), cmp.Compare(x.addr, y.addr), cmp.Compare(x.vpc, y.vpc), cmp.Compare(x.peerVPC, y.peerVPC))
	})
	for _, k := range keys {
		s := a.subs[k]
		if !s.synced() {
			waiting = append(waiting, fmt.Sprintf("%s/%s@%s", k.vpc, k.policy, k.addr))
			continue
		}
		s.update(func(f *View) { s.addConnectivity(f, k) })
		s.mergeInto(v)
		madeOf[&s.part] = s.rev
	}
	v.LBs = dedupeLBs(v.LBs)
	slices.Sort(waiting)
	return v, madeOf, waiting
}

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
	fresh     int             // items of this build not in last
}

// get returns the item parsed from k, parsing it when the last build did
// not have it. parse returns nil for an event that gives no item.
func (p *parsed) get(k itemKey, parse func() any) any {
	v, ok := p.last[k]
	if !ok {
		v = parse()
		p.fresh++
	}
	p.cur[k] = v
	return v
}

// end ends a build and reports whether it had exactly the items of the
// last one.
func (p *parsed) end() (same bool) {
	same = p.fresh == 0 && len(p.cur) == len(p.last)
	p.last, p.cur = p.cur, p.last
	clear(p.cur)
	p.fresh = 0
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
		return LocalEndpoint{ID: e.GetId(), VPC: e.GetVpc(), IP: addr(e.GetIp()), MAC: hw(e.GetMac()), Port: uint16(e.GetPort())}
	case ev.GetPeering() != nil:
		p := ev.GetPeering()
		peering := Peering{VPC: p.GetVpc(), PeerVPC: p.GetPeerVpc(), PeerVNI: p.GetPeerVni(), Active: p.GetActive()}
		for _, s := range p.GetPeerPrefixes() {
			if pr, err := netip.ParsePrefix(s); err == nil {
				peering.PeerPrefixes = append(peering.PeerPrefixes, pr)
			}
		}
		return peering
	}
	return nil
}

// addConnectivity joins a service's destinations with where they live, and
// adds its load balancers and routes.
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
	if k.policy != "" {
		// A peer's routes are its own business: the peering gives us its
		// exported destinations, not its next hops.
		return
	}
	for _, ev := range s.routes.Items() {
		if r, ok := s.items.get(itemKey{ev: ev}, func() any { return parseRoute(ev) }).(Route); ok {
			v.Routes = append(v.Routes, r)
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
	return Route{VPC: r.GetVpc(), Prefix: p, NextHopIP: addr(r.GetNextHopIp())}
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
