// Package bgplink wires the BGP speaker (package bgp) to the controller:
// it runs the speaker the configuration's bgp section describes, keeps its
// neighbors and advertisements in step with every applied configuration,
// hands the routes it learns to the route manager
// (controller.Server.UpdateLearnedRoutes), and reports its sessions as
// gNMI state (controller.Server.SetBGPNeighbors). p4mesh-controller runs
// one Link; it is a package of its own so that it can be tested against a
// real second BGP speaker without the daemon around it.
package bgplink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/p4mesh/p4mesh/bgp"
	"github.com/p4mesh/p4mesh/controller"
)

// Options tune a Link. The zero value is valid.
type Options struct {
	// Logger gets what happens: the speaker started, sessions up and
	// down with the reason, errors. Nil discards.
	Logger *slog.Logger
	// ListenAddress, if not "", overrides the configuration's
	// bgp.listen_address; ListenPort, if not 0, its bgp.listen_port (-1:
	// do not listen).
	ListenAddress string
	ListenPort    int32
	// Interval is how often the sessions' state is read (and a failed
	// reconciliation retried); 0 means 1 s.
	Interval time.Duration
	// ConnectRetry is the speaker's wait between attempts to reach a
	// neighbor; 0 means the speaker's default (5 s).
	ConnectRetry time.Duration
}

// Link runs the BGP speaker of one controller.
type Link struct {
	srv *controller.Server
	o   Options
	log *slog.Logger

	// q carries the speaker's deliveries to the applier goroutine.
	q queue

	// The fields below belong to Run's goroutine.
	sp        *bgp.Speaker
	ident     ident
	neighbors []bgp.Neighbor
	adv       map[string][]netip.Prefix
	sessions  map[string]string // neighbor name → last state logged
	// spare holds, per VPC, the applier's last batch of adds emptied for
	// reuse (the route manager copies what it keeps): a table arriving
	// 100k routes at a time then costs one batch's memory, not a new,
	// grown-by-doubling one per flush. Dropped when the queue runs dry.
	// It belongs to the applier goroutine.
	spare map[string][]controller.LearnedRoute
	// failed is the identity a speaker last failed to start with, and
	// when: it is tried again only after startRetry (or with another
	// identity), as every failed GoBGP server leaves a goroutine behind.
	failed   ident
	failedAt time.Time
}

// startRetry is how long a speaker that failed to start (its listen port
// taken, say) waits before it is tried again with the same identity.
const startRetry = 30 * time.Second

// ident is what a speaker is made with: changing it takes a new speaker.
type ident struct {
	as            uint32
	routerID      netip.Addr
	listenAddress string
	listenPort    int32
}

// New makes a Link for srv; Run runs it.
func New(srv *controller.Server, o Options) *Link {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	l := &Link{srv: srv, o: o, log: o.Logger, adv: map[string][]netip.Prefix{}, sessions: map[string]string{}}
	l.q.wake = make(chan struct{}, 1)
	return l
}

// Run follows the configuration until ctx ends, then stops the speaker
// and withdraws every route it learned. It returns nil on cancellation.
func (l *Link) Run(ctx context.Context) error {
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		l.applyLoop()
	}()
	tick := time.NewTicker(l.o.Interval)
	defer tick.Stop()
	for {
		changed := l.srv.Changed()
		if err := l.reconcile(ctx, l.srv.ConfigBGP()); err != nil && ctx.Err() == nil {
			l.log.Error("BGP: configuration not applied to the speaker; retrying", "err", err)
		}
		l.report(ctx)
		select {
		case <-ctx.Done():
			l.stopSpeaker()
			// The applier drains what the speaker delivered, then the
			// withdrawal of everything learned, before it returns.
			l.q.close()
			<-applied
			l.srv.SetBGPNeighbors(nil)
			return nil
		case <-changed:
		case <-tick.C:
		}
	}
}

// reconcile makes the speaker what c says: started, restarted when its
// identity changed, stopped when c has no bgp section; its neighbors and
// each VPC's advertisements as c and the peerings make them.
func (l *Link) reconcile(ctx context.Context, c *controller.Config) error {
	if c == nil || c.BGP == nil {
		if l.sp != nil {
			l.log.Info("BGP: the configuration has no bgp section; speaker stopped")
			l.stopSpeaker()
		}
		return nil
	}
	id := ident{as: c.BGP.LocalAS, routerID: c.BGP.RouterID, listenPort: c.BGP.ListenPort}
	if c.BGP.ListenAddress.IsValid() {
		id.listenAddress = c.BGP.ListenAddress.String()
	}
	if l.o.ListenAddress != "" {
		id.listenAddress = l.o.ListenAddress
	}
	if l.o.ListenPort != 0 {
		id.listenPort = l.o.ListenPort
	}
	if l.sp != nil && id != l.ident {
		l.log.Info("BGP: the speaker's AS, router id or listen address changed; restarting it", "local_as", id.as, "router_id", id.routerID)
		l.stopSpeaker()
	}
	if l.sp == nil {
		if id == l.failed && time.Since(l.failedAt) < startRetry {
			return nil // said when it failed
		}
		if err := l.startSpeaker(ctx, id); err != nil {
			l.failed, l.failedAt = id, time.Now()
			return fmt.Errorf("%w (tried again in %v, or at once with another AS, router id or listen address)", err, startRetry)
		}
		l.failed = ident{}
	}
	want := Neighbors(c, l.o.ConnectRetry)
	if err := l.setNeighbors(ctx, want); err != nil {
		return err
	}
	vpcs := map[string]bool{}
	for _, n := range want {
		vpcs[n.VPC] = true
	}
	for vpc := range l.adv {
		vpcs[vpc] = true
	}
	var errs []error
	for _, vpc := range slices.Sorted(maps.Keys(vpcs)) {
		var ps []netip.Prefix
		if slices.ContainsFunc(want, func(n bgp.Neighbor) bool { return n.VPC == vpc }) {
			ps = l.srv.AdvertisedPrefixes(vpc)
		}
		old, had := l.adv[vpc]
		if had && slices.Equal(old, ps) {
			continue
		}
		if err := l.sp.Advertise(ctx, vpc, ps); err != nil {
			errs = append(errs, fmt.Errorf("advertise to %s: %w", vpc, err))
			continue
		}
		l.log.Info("BGP: advertising", "vpc", vpc, "prefixes", fmt.Sprint(ps))
		if len(ps) == 0 {
			delete(l.adv, vpc)
		} else {
			l.adv[vpc] = ps
		}
	}
	return errors.Join(errs...)
}

// setNeighbors hands the speaker want. A neighbor whose name (its
// attachment) changed at the same address is first removed, as the
// speaker requires.
func (l *Link) setNeighbors(ctx context.Context, want []bgp.Neighbor) error {
	if slices.EqualFunc(want, l.neighbors, neighborEqual) {
		return nil
	}
	named := map[netip.Addr]string{}
	for _, n := range l.neighbors {
		named[n.Address] = n.Name
	}
	renamed := slices.DeleteFunc(slices.Clone(want), func(n bgp.Neighbor) bool {
		old, ok := named[n.Address]
		return ok && old != n.Name
	})
	if len(renamed) != len(want) {
		if err := l.sp.SetNeighbors(ctx, renamed); err != nil {
			return err
		}
		l.neighbors = renamed
	}
	if err := l.sp.SetNeighbors(ctx, want); err != nil {
		return err
	}
	for _, n := range want {
		if !slices.ContainsFunc(l.neighbors, func(o bgp.Neighbor) bool { return o.Name == n.Name }) {
			l.log.Info("BGP: neighbor configured", "neighbor", n.Name, "vpc", n.VPC, "address", n.Address, "peer_as", n.PeerAS)
		}
	}
	for _, o := range l.neighbors {
		if !slices.ContainsFunc(want, func(n bgp.Neighbor) bool { return o.Name == n.Name }) {
			l.log.Info("BGP: neighbor removed", "neighbor", o.Name, "vpc", o.VPC, "address", o.Address)
			delete(l.sessions, o.Name)
		}
	}
	l.neighbors = want
	return nil
}

func neighborEqual(a, b bgp.Neighbor) bool {
	return a.Name == b.Name && a.VPC == b.VPC && a.VNI == b.VNI && a.Address == b.Address && a.Port == b.Port &&
		a.PeerAS == b.PeerAS && a.LocalAS == b.LocalAS && a.HoldTime == b.HoldTime &&
		a.KeepaliveInterval == b.KeepaliveInterval && a.ConnectRetry == b.ConnectRetry &&
		a.Password == b.Password && a.MaxPrefixes == b.MaxPrefixes && slices.Equal(a.Import, b.Import) &&
		a.GracefulRestart == b.GracefulRestart && a.NextHop == b.NextHop && a.RouterID == b.RouterID
}

// Neighbors is the speaker's neighbors as c configures them, in
// configuration order: each named by its attachment, advertising with the
// attachment's VPC-side IP as next hop.
func Neighbors(c *controller.Config, connectRetry time.Duration) []bgp.Neighbor {
	if c == nil || c.BGP == nil {
		return nil
	}
	var out []bgp.Neighbor
	for _, n := range c.BGP.Neighbors {
		v, _ := c.VPC(n.VPC)
		var nextHop netip.Addr
		if e, ok := c.Endpoint(n.Attachment); ok {
			nextHop = e.IP
		}
		x := bgp.Neighbor{
			Name: n.Attachment, VPC: n.VPC, VNI: v.VNI, Address: n.Address, Port: n.Port,
			PeerAS: n.PeerAS, HoldTime: time.Duration(n.HoldTime) * time.Second,
			KeepaliveInterval: time.Duration(n.Keepalive) * time.Second, ConnectRetry: connectRetry,
			Password: n.Password, MaxPrefixes: n.MaxPrefixes, GracefulRestart: n.GracefulRestart, NextHop: nextHop,
		}
		if as := c.BGP.LocalASOf(n); as != c.BGP.LocalAS {
			x.LocalAS = as
		}
		if id := c.BGP.RouterIDOf(n.VPC); id != c.BGP.RouterID {
			x.RouterID = id
		}
		for _, f := range n.Import {
			x.Import = append(x.Import, bgp.PrefixFilter{Prefix: f.Prefix, GE: int(f.GE), LE: int(f.LE)})
		}
		out = append(out, x)
	}
	return out
}

func (l *Link) startSpeaker(ctx context.Context, id ident) error {
	sp, err := bgp.New(bgp.Config{
		RouterID: id.routerID, LocalAS: id.as, ListenAddress: id.listenAddress, ListenPort: id.listenPort,
		Deliver: l.q.deliver,
	}, l.log.With("component", "bgp"))
	if err != nil {
		return err
	}
	if err := sp.Start(ctx); err != nil {
		sp.Stop()
		return err
	}
	l.sp, l.ident = sp, id
	l.neighbors = nil
	clear(l.adv)
	// The speaker runs one GoBGP server per VPC, which cannot share a
	// listening socket, so it dials every neighbor and accepts nothing: a
	// configured listen port would mislead the operator into expecting
	// routers to connect in. Say so once, where they look.
	from := cmp.Or(id.listenAddress, "the kernel's choice")
	l.log.Info("BGP: speaker started; it dials every neighbor (routers must accept the connection, as FRR does by default)",
		"local_as", id.as, "router_id", id.routerID, "source_address", from)
	if id.listenPort > 0 {
		l.log.Warn("BGP: bgp.listen_port (or --bgp-listen's port) is ignored: the speaker does not listen, it dials every neighbor from its source address", "listen_port", id.listenPort)
	}
	return nil
}

// stopSpeaker stops the speaker, if any, and queues the withdrawal of
// everything it learned: after Stop returns it delivers nothing more, so
// the withdrawal comes after all it delivered.
func (l *Link) stopSpeaker() {
	if l.sp == nil {
		return
	}
	l.sp.Stop()
	l.sp = nil
	l.neighbors = nil
	clear(l.adv)
	clear(l.sessions)
	l.q.dropAll()
	l.log.Info("BGP: speaker stopped; its learned routes withdrawn")
}

// report reads the sessions' state, logs each session going up or down
// (with the reason), and hands it to the controller for gNMI state.
func (l *Link) report(ctx context.Context) {
	if l.sp == nil {
		l.srv.SetBGPNeighbors(nil)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ns, err := l.sp.Neighbors(ctx)
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("BGP: cannot read the sessions' state", "err", err)
		}
		return
	}
	byName := map[string]bgp.Neighbor{}
	for _, n := range l.neighbors {
		byName[n.Name] = n
	}
	out := make([]controller.BGPNeighborStatus, 0, len(ns))
	now := time.Now()
	for _, n := range ns {
		st := controller.BGPNeighborStatus{
			VPC: n.VPC, Address: n.Address, Attachment: n.Name, State: n.State,
			Received: n.Received, Accepted: n.Accepted, LastError: n.LastError,
		}
		if n.State == "established" {
			st.Since = now.Add(-n.Uptime)
		}
		out = append(out, st)
		was := l.sessions[n.Name]
		up, wasUp := n.State == "established", was == "established"
		switch {
		case up && !wasUp:
			l.log.Info("BGP: session up", "neighbor", n.Name, "vpc", n.VPC, "address", n.Address, "peer_as", byName[n.Name].PeerAS)
		case !up && wasUp:
			l.log.Warn("BGP: session down", "neighbor", n.Name, "vpc", n.VPC, "address", n.Address, "state", n.State, "reason", cmp.Or(n.LastError, "unknown"))
		}
		l.sessions[n.Name] = n.State
	}
	l.srv.SetBGPNeighbors(out)
}

// queue carries the speaker's deliveries to the applier. deliver never
// blocks on the controller: it appends and wakes the applier.
type queue struct {
	mu      sync.Mutex
	pending []entry
	closed  bool
	wake    chan struct{}
}

// entry is one delivery, or a marker that every route learned so far is
// to be withdrawn (the speaker stopped).
type entry struct {
	us      []bgp.Update
	dropAll bool
}

func (q *queue) push(e entry) {
	q.mu.Lock()
	q.pending = append(q.pending, e)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *queue) deliver(us []bgp.Update) { q.push(entry{us: us}) }
func (q *queue) dropAll()                { q.push(entry{dropAll: true}) }

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *queue) empty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending) == 0
}

func (q *queue) take() ([]entry, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	es := q.pending
	q.pending = nil
	return es, q.closed
}

// flushSize is how many routes apply gathers before it hands them to the
// route manager; a var for tests.
var flushSize = 100_000

// applyLoop hands what the speaker delivered to the route manager, all
// that queued up while the last call ran in one call per VPC.
func (l *Link) applyLoop() {
	for {
		<-l.q.wake
		es, closed := l.q.take()
		l.apply(es)
		if l.q.empty() {
			l.spare = nil
		}
		if closed {
			es, _ := l.q.take()
			l.apply(es)
			l.apply([]entry{{dropAll: true}})
			return
		}
	}
}

// apply applies es in order. Within a run of deliveries the last update
// of a route wins; a dropAll marker withdraws what was learned before it.
//
// Adds are kept per VPC in arrival order, with no map of them: the route
// manager takes a later add of a route as replacing an earlier one. A
// withdrawal remembers how many of its VPC's adds came before it, so that
// those of its route are dropped at the flush (the route manager applies
// withdrawals first); an add after it cancels it.
func (l *Link) apply(es []entry) {
	type batch struct {
		adds []controller.LearnedRoute
		// gone: withdrawn route → how many adds preceded the withdrawal.
		gone map[controller.LearnedRouteKey]int
	}
	// n bounds what a batch is handed before its flush.
	n := 0
	for _, e := range es {
		n += len(e.us)
	}
	n = min(n, flushSize)
	per := map[string]*batch{}
	get := func(vpc string) *batch {
		b := per[vpc]
		if b == nil {
			b = &batch{adds: l.spare[vpc], gone: map[controller.LearnedRouteKey]int{}}
			if cap(b.adds) < n {
				b.adds = make([]controller.LearnedRoute, 0, n)
			}
			per[vpc] = b
		}
		return b
	}
	flush := func() {
		for _, vpc := range slices.Sorted(maps.Keys(per)) {
			b := per[vpc]
			adds := b.adds
			var wd []controller.LearnedRouteKey
			if len(b.gone) > 0 {
				adds = adds[:0:0]
				for i, r := range b.adds {
					if before, ok := b.gone[r.Key()]; !ok || i >= before {
						adds = append(adds, r)
					}
				}
				wd = slices.Collect(maps.Keys(b.gone))
			}
			if err := l.srv.UpdateLearnedRoutes(vpc, adds, wd); err != nil {
				l.log.Error("BGP: learned routes not taken by the route manager", "vpc", vpc, "adds", len(adds), "withdrawals", len(wd), "err", err)
			}
			if l.spare == nil {
				l.spare = map[string][]controller.LearnedRoute{}
			}
			l.spare[vpc] = b.adds[:0]
		}
		clear(per)
	}
	pending := 0 // adds and withdrawals in per
	for i, e := range es {
		// The speaker's deliveries are dropped once taken, and the
		// batches go to the route manager every flushSize routes, so
		// that a burst of a million is not held three times over (the
		// speaker's updates, the batches and the route manager's work).
		es[i].us = nil
		if e.dropAll {
			flush()
			pending = 0
			// The route manager holds what it was handed: it withdraws
			// all of it, and the Link keeps no record of its own.
			if err := l.srv.WithdrawAllLearned(); err != nil {
				l.log.Error("BGP: learned routes not withdrawn by the route manager", "err", err)
			}
			continue
		}
		for _, u := range e.us {
			if pending >= flushSize {
				flush()
				pending = 0
			}
			r := u.Route
			b := get(r.VPC)
			k := controller.LearnedRouteKey{Neighbor: r.Neighbor, Prefix: r.Prefix}
			if u.Withdraw {
				b.gone[k] = len(b.adds)
				pending++
				continue
			}
			delete(b.gone, k)
			pending++
			b.adds = append(b.adds, controller.LearnedRoute{
				Neighbor: r.Neighbor, Prefix: r.Prefix, NextHop: r.NextHop, ASPath: r.ASPath, MED: r.MED, LocalPref: r.LocalPref,
			})
		}
	}
	flush()
}
