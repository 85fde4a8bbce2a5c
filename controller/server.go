package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/identity"
	"github.com/p4mesh/p4mesh/internal/replicaset"
	"github.com/p4mesh/p4mesh/watch"
)

// ServerOptions configure a Server.
type ServerOptions struct {
	// Store keeps the accepted configuration durable; the Server starts
	// from its Current one. *Store, the YAML file of a data directory,
	// is one.
	Store  Persistence
	Logger *slog.Logger
	// DialOptions reach the other controllers of the directory; nil means
	// plaintext.
	DialOptions []grpc.DialOption
	// Watch tunes every watch table.
	Watch watch.Options
	// Auth decides who calls: with mutual TLS every caller is the
	// identity of its certificate; Insecure trusts what requests claim.
	Auth identity.Auth
	// PeerGrace bounds how long host programming waits, after a start, to
	// hear from the controllers that own peer VPCs (0 means 10s). Until
	// then their peerings' state is unknown, and serving them as inactive
	// would make every OHC remove the peers' entries.
	PeerGrace time.Duration
	// Gate, if set, gives each watch stream (its context tells whose it
	// is) the gate its bursts of sends go through: what bounds the
	// events gRPC queues for clients that stopped reading (see
	// internal/sendgate). Nil: streams send ungated.
	Gate func(ctx context.Context) watch.Gate
	// GatewayLoadPeriod is how often the gateway pools' load trigger
	// decides the peerings' modes from the rates reported (0 means 1s).
	GatewayLoadPeriod time.Duration
	// GatewayLoadWarmup is how long after the start the load trigger
	// only moves peerings to direct, never back to their pool (0 means
	// 5s): until each host has reported twice a rate window apart (OHCs
	// report every 2s by default), a load of nothing is a load not yet
	// measured, and the modes restored from the store must not flap.
	GatewayLoadWarmup time.Duration
}

// Server is one SDN controller: it serves host programming to the OHCs of
// its hosts, the connectivity of the VPCs it owns to authorised OHCs (one
// published service per unique (VPC, export policy), never per VPC pair),
// and its side of each peering to the other controllers, whose sides it
// follows to know which peerings are active.
type Server struct {
	opts ServerOptions
	log  *slog.Logger

	// applies and applyErrors count Apply calls, for metrics.
	applies, applyErrors atomic.Uint64
	// changeMu serialises Apply and ApplyChange: each reads the
	// configuration it edits, which another must not replace meanwhile.
	// The model is written only with both changeMu and mu held, so a
	// holder of changeMu reads it without mu.
	changeMu sync.Mutex

	// mu guards the fields below. A change of endpoints, load balancers
	// or routes updates m and the items of the tables it affects, and a
	// change of a peer controller's sides the items that read them; any
	// other change rebuilds m and recomputes the tables whole from it and
	// remote, and watch tables turn equal items into no-ops, so a
	// recompute wakes only the subscribers whose view changed.
	mu sync.Mutex
	m  *model // the configuration being served
	// snap is m materialised, built when Config asks for it and held
	// weakly: readers share it while one holds it, and the Server holds
	// none of its own (a million endpoints materialised are ~100 MB a
	// controller, issue 14, on top of the model that has them all).
	snap weak.Pointer[snapshot]
	// builds counts the snapshots materialised whole (ConfigBuilds).
	builds uint64
	// rev is the revision every watch table is at: the store's revision
	// of the last commit (ItemStore), or, for a store without revisions,
	// one the Server numbers from the wall clock at its start.
	rev uint64
	// clock is the revision of the tables a change leaves alone: every
	// table reads it, and commitLocked moves it to rev once the tables
	// the change touched are there (watch.Clock).
	clock *watch.Clock
	// gen counts whole configurations applied, for revokeLocked.
	gen uint64
	// journal is what the configuration changes since the last whole
	// Apply touched, for readers that follow it (ConfigSince).
	journal  journal
	remote   map[string]map[string]*p4meshv1.PeerSide // controller -> "vpc/peer_vpc" -> side
	hosts    map[string]*watch.Table                  // host programming, by host id
	services map[PublishedService]*service
	svcByVPC map[string][]*service
	// vpcItems are, per VPC, the items it brings to the table of every
	// host it has an endpoint on (vpcItemsLocked).
	vpcItems map[string]map[string]proto.Message
	// hostRefs are the hosts as the endpoint records name them
	// (pubrec.go), made again at each whole recompute.
	hostRefs map[string]*hostRef
	peers    *watch.Table // this controller's sides of its peerings
	// rib holds the runtime candidates of the VPCs' RIBs (ribserve.go);
	// importers are, per export, the local VPCs importing it.
	rib       *rib
	importers map[PublishedService][]importer
	changed   chan struct{}
	// served is closed, and forgotten, when what the Server serves
	// changes (Changed): readers that follow it, such as gNMI's ON_CHANGE
	// subscriptions, wait on it instead of polling. nil: nobody waits.
	served chan struct{}
	// ready is closed once host programming may be served: every peer
	// controller heard from, or PeerGrace passed.
	ready     chan struct{}
	readyOnce sync.Once
	// reports is what the OHCs report of their switches; it has its own
	// lock, as reports come at any time.
	reports hostReports
	// bgp is what the BGP speaker last reported of its neighbors.
	bgp bgpStatus
	// pools is what is published of the gateway pools (gatewayserve.go).
	pools poolState
	// authGen is the whole configuration (gen) the open connectivity
	// streams were last all authorised against: only a new one makes
	// revokeLocked check them all; the changes that can revoke otherwise
	// check the streams they can affect (revokeHostsLocked,
	// revokeVouchedLocked).
	authGen uint64

	// peerHosts are the host lists remote's sides share (internHosts).
	peerHosts peerHostLists
}

// service is the published connectivity of one (VPC, export policy).
type service struct {
	ps PublishedService
	// exported is what the service exports of its VPC's subnets.
	exported               []netip.Prefix
	dest, fwd, lbs, routes *watch.Table
	// custom is routes with the BGP-learned winners the policy lets
	// through: what peer controllers of peerings that export custom
	// routes are served (ribserve.go). Empty for policy "".
	custom *watch.Table
	// streams are the connectivity streams being served from the tables,
	// so that a configuration change can end those it no longer
	// authorises: authorization holds for the life of a stream.
	streams map[*connStream]struct{}
}

// connStream is one connectivity stream being served.
type connStream struct {
	req    *p4meshv1.WatchRequest
	caller caller
	cancel context.CancelCauseFunc
	// controller is the peer controller of a peer routes stream
	// (watchPeerRoutes), "" for a host's; custom is the table it is
	// served.
	controller string
	custom     bool
}

// reauthorizeLocked checks an open stream against the current
// configuration, as its kind of caller is authorised.
func (s *Server) reauthorizeLocked(cs *connStream) error {
	if cs.controller == "" {
		_, err := s.authorizeLocked(cs.req, cs.caller)
		return err
	}
	_, custom, err := s.authorizePeerRoutesLocked(cs.req, cs.controller)
	if err == nil && custom != cs.custom {
		err = status.Errorf(codes.Unavailable, "%s's export of custom routes to %s changed", cs.req.GetVpc(), cs.req.GetPeerVpc())
	}
	return err
}

// caller is who makes a request: an authenticated identity, or (Insecure)
// nobody known, whose request's claims stand.
type caller struct {
	id     identity.ID
	authed bool
}

// callerOf authenticates ctx's peer and checks it is one of kinds.
func (s *Server) callerOf(ctx context.Context, kinds ...identity.Kind) (caller, error) {
	id, ok, err := s.opts.Auth.Caller(ctx)
	if err != nil {
		return caller{}, err
	}
	if ok && !slices.Contains(kinds, id.Kind) {
		return caller{}, status.Errorf(codes.PermissionDenied, "%s may not call this: it is for %v identities", id, kinds)
	}
	return caller{id: id, authed: ok}, nil
}

// String names the caller for errors and logs.
func (c caller) String() string {
	if c.authed {
		return c.id.String()
	}
	return "an unauthenticated client (--insecure)"
}

// NewServer makes a controller serving store's current configuration.
func NewServer(o ServerOptions) (*Server, error) {
	// Asked once: an ItemStore hands its configuration over rather than
	// keep it (Persistence.Current), and the model is all that stays of
	// it once built.
	var start *Config
	if o.Store != nil {
		start = o.Store.Current()
	}
	if start == nil {
		return nil, errors.New("controller: no configuration applied")
	}
	// A Persistence stores, it does not validate: what it starts from
	// must be valid for the model's invariants to hold.
	if err := start.Validate(); err != nil {
		return nil, fmt.Errorf("controller: invalid configuration:\n%w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DialOptions == nil {
		o.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	s := &Server{
		opts:     o,
		log:      o.Logger,
		m:        newModel(start),
		remote:   map[string]map[string]*p4meshv1.PeerSide{},
		hosts:    map[string]*watch.Table{},
		services: map[PublishedService]*service{},
		changed:  make(chan struct{}, 1),
		ready:    make(chan struct{}),
		rib:      newRIB(),
		pools:    newPoolState(start, time.Now()),
	}
	if s.opts.PeerGrace <= 0 {
		s.opts.PeerGrace = 10 * time.Second
	}
	if s.opts.GatewayLoadPeriod <= 0 {
		s.opts.GatewayLoadPeriod = defaultLoadPeriod
	}
	if s.opts.GatewayLoadWarmup <= 0 {
		s.opts.GatewayLoadWarmup = defaultLoadWarmup
	}
	if ms, ok := o.Store.(modeStore); ok {
		for k, m := range ms.PoolModes() {
			s.pools.modes[k] = pairMode{direct: m.Direct, switched: true, reason: m.Reason}
		}
		if n := len(s.pools.modes); n > 0 {
			s.log.Info("peering modes restored from the store", "peerings", n)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	saved, legacy, err := o.Store.PeerSides()
	if err != nil {
		s.log.Warn("saved peer sides unusable, ignored; waiting to hear from the peer controllers", "err", err)
	}
	// The store keeps exactly the sides in remote, so that a side heard
	// again unchanged needs no commit (setRemote): those of controllers
	// that are no longer peers go, those of an older p4mesh are saved
	// again with a checksum.
	peers := s.peerControllersLocked()
	for ctl, sides := range saved {
		_, keep := peers[ctl]
		if keep {
			s.remote[ctl] = sides
		}
		if !keep || legacy {
			if !keep {
				sides = nil
			}
			if _, _, err := o.Store.CommitPeerSides(ctl, sides); err != nil {
				s.log.Error("saved peer sides not updated", "controller", ctl, "err", err)
			}
		}
	}
	if legacy {
		s.log.Warn("saved peer sides had no checksum (an older p4mesh wrote them): accepted and saved again with one")
	}
	// The tables are built at the store's revision, so that a client the
	// process before a restart told that revision resumes with no RESET.
	s.rev = o.Store.Revision()
	if s.rev == 0 {
		s.rev = uint64(time.Now().UnixNano())
	}
	s.clock = watch.NewClock(s.rev)
	s.pools.live = s.liveMembersLocked(nil, s.pools.started)
	s.recomputeLocked()
	s.checkReadyLocked()
	return s, nil
}

// checkReadyLocked opens host programming once the side of every
// controller owning a peer VPC is known: heard from since the start, or
// saved by the previous run.
func (s *Server) checkReadyLocked() {
	for name := range s.peerControllersLocked() {
		if _, ok := s.remote[name]; !ok {
			return
		}
	}
	s.readyOnce.Do(func() { close(s.ready) })
}

// Ready reports whether host programming is served: every controller
// owning a peer VPC heard from (or its side saved by the previous run), or
// PeerGrace passed since Run started. It stays true.
func (s *Server) Ready() bool {
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

// Register adds the controller's services to g.
func (s *Server) Register(g *grpc.Server) {
	p4meshv1.RegisterHostProgrammingServer(g, hostProgramming{s: s})
	p4meshv1.RegisterConnectivityServer(g, connectivity{s: s})
	p4meshv1.RegisterPeersServer(g, peers{s: s})
}

// Config is the configuration being served, an immutable snapshot:
// callers must not modify it. It is built when asked for after a change
// (in time linear in the configuration's size) and shared, until the
// next change, by the readers that hold it; the Server keeps none of its
// own, so one asked for again after every holder dropped it (and a GC
// ran) is built again. Readers of the short lists only use ConfigRest.
func (s *Server) Config() *Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.configLocked()
}

func (s *Server) configLocked() *Config {
	if sn := s.snap.Value(); sn != nil {
		return &sn.c
	}
	c := s.m.config()
	sn := &snapshot{c: *c, tail: tailOf(c)}
	s.snap = weak.Make(sn)
	s.builds++
	// An interior pointer: a reader holding it holds sn, tail included.
	return &sn.c
}

// ConfigBGP is what the BGP speaker reads of the configuration being
// served: ConfigRest with the endpoints the bgp section's neighbors attach
// to (their VPC-side addresses are the next hops). It costs the
// neighbors, not the configuration: the daemon's BGP link reads it after
// every change and every second.
func (s *Server) ConfigBGP() *Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *s.m.base
	if c.BGP != nil {
		ids := make([]string, 0, len(c.BGP.Neighbors))
		for _, n := range c.BGP.Neighbors {
			ids = append(ids, n.Attachment)
		}
		c.Endpoints = lookup(&s.m.eps, ids)
	}
	return &c
}

// ConfigRest is the configuration being served without its endpoints,
// load balancers and routes (nil): the short lists and the bgp section,
// shared and immutable, at no cost.
func (s *Server) ConfigRest() *Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	rest := *s.m.base
	return &rest
}

// Apply validates, persists and serves a new configuration; on error
// nothing changes. The configuration being served again is a no-op.
func (s *Server) Apply(c *Config) error {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	return s.counted(s.applyWhole(c))
}

func (s *Server) counted(err error) error {
	if err != nil {
		s.applyErrors.Add(1)
	} else {
		s.applies.Add(1)
	}
	return err
}

// applyWhole is Apply, with changeMu held. It recomputes every table.
func (s *Server) applyWhole(c *Config) error {
	if err := c.Validate(); err != nil {
		return &InvalidConfigError{Errs: err}
	}
	if c.Equal(s.Config()) {
		return nil
	}
	c = c.Clone()
	rev, err := s.opts.Store.CommitAll(c)
	if err != nil {
		return err
	}
	m := newModel(c)
	s.mu.Lock()
	s.m, s.snap = m, weak.Make(&snapshot{c: *c})
	s.gen++
	s.journal.whole()
	if s.advanceLocked(rev) {
		s.recomputeLocked()
	}
	s.mu.Unlock()
	s.notify()
	return nil
}

// applyChange is ApplyChange of a change of endpoints, load balancers and
// routes only, with changeMu held: checked against the model, persisted,
// then applied to the model and the tables it affects.
func (s *Server) applyChange(ch *Change) error {
	pd := newPending(s.m, ch)
	if err := pd.check(); err != nil {
		return &InvalidConfigError{Errs: err}
	}
	if pd.noop() {
		return nil
	}
	adds := onlyAdds(s.m, ch)
	var whole *Config
	rev, err := s.opts.Store.Commit(ch, func() *Config {
		if whole == nil {
			whole = ch.ApplyTo(s.Config())
		}
		return whole
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.advanceLocked(rev) {
		s.applyLocked(pd)
	} else {
		pd.apply()
	}
	// Readers of what the Server serves learn of it; Run does not need
	// to look again: endpoints, load balancers and routes change no
	// peering or peer controller.
	s.changedLocked()
	// If the store built the new configuration, it is the snapshot; else
	// one that only adds extends the last, if a reader still holds it.
	prev := s.snap.Value()
	s.snap = weak.Pointer[snapshot]{}
	switch {
	case whole != nil:
		s.snap = weak.Make(&snapshot{c: *whole})
	case adds && prev != nil && prev.tail != nil:
		s.snap = weak.Make(nextSnap(prev, ch))
	}
	s.journal.add(ch)
	s.mu.Unlock()
	return nil
}

// advanceLocked moves s.rev to rev, the revision a commit got (0: the
// store has none, and the next one is numbered here), and reports whether
// the tables are to follow. A revision not above s.rev is a commit that
// wrote nothing, which changed no table either.
func (s *Server) advanceLocked(rev uint64) bool {
	if rev == 0 {
		rev = s.rev + 1
	}
	if rev <= s.rev {
		return false
	}
	s.rev = rev
	return true
}

// Changed returns a channel closed at the next change of what the Server
// serves: its configuration (Apply, ApplyChange) or a peer controller's
// sides, and so the peerings' state. A reader takes the channel before it
// reads what it follows, so that a change in between is not missed, and
// reads again once the channel is closed. What the OHCs report (Stats'
// HostEntries, HostSwitchPrimary) does not close it: a reader that shows
// those looks at them on its own schedule.
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.served == nil {
		s.served = make(chan struct{})
	}
	return s.served
}

// changedLocked wakes the readers waiting on Changed.
func (s *Server) changedLocked() {
	if s.served != nil {
		close(s.served)
		s.served = nil
	}
}

func (s *Server) notify() {
	s.mu.Lock()
	s.changedLocked()
	s.mu.Unlock()
	s.wakeRun()
}

// wakeRun tells Run to look at the peerings again, without waiting.
func (s *Server) wakeRun() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Run follows the peer sides of every other controller that owns a peer
// VPC of this one, until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	type follower struct {
		addr   string
		cancel context.CancelFunc
	}
	following := map[string]follower{}
	type routeFollower struct {
		src    routeSource
		cancel context.CancelFunc
	}
	routes := map[string]routeFollower{} // "vpc/peer vpc" → follower of the peer's routes
	var wg sync.WaitGroup
	grace := time.AfterFunc(s.opts.PeerGrace, func() {
		s.readyOnce.Do(func() {
			s.log.Warn("not heard from every peer controller; serving host programming with their peerings inactive", "grace", s.opts.PeerGrace)
			close(s.ready)
		})
	})
	defer grace.Stop()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.runPools(ctx)
	}()
	defer func() {
		for _, f := range following {
			f.cancel()
		}
		for _, f := range routes {
			f.cancel()
		}
		wg.Wait()
	}()
	for {
		want := s.peerControllers()
		// A controller no longer wanted, or moved to other addresses (a
		// directory change, replicas added or removed), stops being
		// followed; what it said is forgotten, so its peerings wait for
		// the new stream.
		for name, f := range following {
			if addr, ok := want[name]; !ok || addr != f.addr {
				f.cancel()
				delete(following, name)
				s.forgetRemote(name)
			}
		}
		for name, addr := range want {
			if _, ok := following[name]; ok {
				continue
			}
			fctx, cancel := context.WithCancel(ctx)
			following[name] = follower{addr: addr, cancel: cancel}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.followPeer(fctx, name, addr)
			}()
		}
		// The routes of every active peering with a remote peer, for
		// its VPC's RIB. A source that changed (policy, addresses, VNI,
		// custom routes) is followed afresh: the new follower's first
		// snapshot replaces what the old one gave, in one change, so
		// routes that stay never leave the hosts meanwhile. What a
		// peering no longer followed gave is dropped.
		s.mu.Lock()
		sources := s.peerRouteSourcesLocked()
		s.mu.Unlock()
		for key, f := range routes {
			if src, ok := sources[key]; !ok || src != f.src {
				f.cancel()
				delete(routes, key)
				if !ok {
					s.dropPeerRoutes(f.src)
				}
			}
		}
		for key, src := range sources {
			if _, ok := routes[key]; ok {
				continue
			}
			fctx, cancel := context.WithCancel(ctx)
			routes[key] = routeFollower{src: src, cancel: cancel}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.followPeerRoutes(fctx, src)
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
		}
	}
}

// peerControllers are the other controllers that own a peer VPC of ours,
// each with its replica set's addresses (replicaset.Join).
func (s *Server) peerControllers() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peerControllersLocked()
}

func (s *Server) peerControllersLocked() map[string]string {
	out := map[string]string{}
	c := s.m.base
	for _, p := range c.Peerings {
		if o, ok := s.m.ownerOf(p.PeerVPC); ok && o.Name != c.Controller {
			out[o.Name] = replicaset.Join(o.Addresses())
		}
	}
	return out
}

// followPeer follows the peer sides of controller name, a replica set
// at addrs: whichever of its replicas leads serves them, and the stream
// resumes at the next leader by revision.
func (s *Server) followPeer(ctx context.Context, name, addrs string) {
	conn, err := replicaset.Dial(strings.Split(addrs, ","), s.opts.DialOptions...)
	if err != nil {
		s.log.Error("peer controller address", "controller", name, "addr", addrs, "err", err)
		return
	}
	defer conn.Close()
	client := p4meshv1.NewPeersClient(conn)
	view := map[string]*p4meshv1.PeerSide{}
	// synced: view is whole, so each delta is published as it arrives (a
	// peer configuring its side back after the snapshot is what activates
	// a peering). Before SYNCED the view is partial and kept to itself.
	synced := false
	watch.Follow(ctx, "peers/"+name, s.log, func(ctx context.Context, rev uint64) (watch.Stream, error) {
		return client.WatchPeerSides(ctx, &p4meshv1.WatchRequest{Controller: s.name(), ResumeRevision: rev})
	}, watch.Handler{
		Put: func(key string, ev *p4meshv1.Event) {
			if ps := ev.GetPeerSide(); ps != nil {
				s.internHosts(ps)
				view[key] = ps
			} else {
				delete(view, key)
			}
			if synced {
				s.setRemote(ctx, name, maps(view))
			}
		},
		Delete: func(key string, _ uint64) {
			delete(view, key)
			if synced {
				s.setRemote(ctx, name, maps(view))
			}
		},
		Reset: func() {
			clear(view)
			synced = false
		},
		Synced: func(uint64) {
			synced = true
			s.setRemote(ctx, name, maps(view))
			s.log.Info("peer controller synced", "controller", name, "sides", len(view))
		},
	})
}

// internHosts makes the host list of a peer side just received the one
// its VPC's other sides share, its ids the model's strings where it has
// them: a side lists every host of its VPC, and a controller keeps the
// sides of all its VPCs' peers, a million host ids at a million
// endpoints, most of them hosts of its own endpoints too (peerHostLists).
func (s *Server) internHosts(ps *p4meshv1.PeerSide) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.peerHosts == nil {
		s.peerHosts = peerHostLists{}
	}
	ps.Hosts = s.peerHosts.share(ps.GetVpc(), ps.Hosts, &s.m.names)
}

// name is this controller's name.
func (s *Server) name() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.base.Controller
}

func maps(m map[string]*p4meshv1.PeerSide) map[string]*p4meshv1.PeerSide {
	out := make(map[string]*p4meshv1.PeerSide, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// setRemote records what a peer controller says about its peer sides, as
// the follower of that controller whose context is follower, and updates
// what reads them (remoteChangedLocked). Once Run has cancelled the follower (and forgotten the
// controller), a last update racing in from it is dropped instead of
// resurrecting stale sides.
//
// The sides are committed first: the tables move to the revision that
// commit got. changeMu keeps the commits of sides and of configuration
// changes in the order their tables follow them. If the commit fails the
// update is dropped (logged): the tables cannot take a revision the store
// did not give, and a store that cannot commit refuses configuration
// changes as well.
func (s *Server) setRemote(follower context.Context, controller string, sides map[string]*p4meshv1.PeerSide) {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	if follower.Err() != nil {
		return
	}
	rev, changed, err := s.opts.Store.CommitPeerSides(controller, sides)
	if err != nil {
		s.log.Error("peer sides not saved: update dropped", "controller", controller, "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	before, known := s.remote[controller]
	s.remote[controller] = sides
	// Unchanged sides are the ones remote held already (the store keeps
	// exactly remote's), so no table changes.
	if (changed || !known) && s.advanceLocked(rev) {
		s.remoteChangedLocked(controller, before, known)
		s.changedLocked()
		// A peering may have become active or inactive: Run follows
		// the routes of the active ones.
		s.wakeRun()
	}
	s.checkReadyLocked()
}

// forgetRemote drops what controller said: it is no longer followed.
func (s *Server) forgetRemote(controller string) {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	rev, _, err := s.opts.Store.CommitPeerSides(controller, nil)
	if err != nil {
		s.log.Error("peer sides not forgotten: still served", "controller", controller, "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	before, known := s.remote[controller]
	delete(s.remote, controller)
	if s.advanceLocked(rev) {
		s.remoteChangedLocked(controller, before, known)
		s.changedLocked()
		s.wakeRun()
	}
}

// remoteChangedLocked follows controller's sides from before (wasKnown:
// it had been heard from) to what remote now holds, at s.rev, paying for
// what changed rather than for the configuration: a peer side changes
// with the hosts of its VPC, as often as endpoints land on new hosts.
//
// The sides reach two things. The peering items of the local VPCs peered
// with controller's (active, reason, the peer's VNI and prefixes), held
// by the tables of the hosts with endpoints in those VPCs; and the
// authorisation of the connectivity streams of the hosts the sides
// vouch for. Nothing else reads remote: published services, their
// tables and this controller's own sides come from the model alone.
func (s *Server) remoteChangedLocked(controller string, before map[string]*p4meshv1.PeerSide, wasKnown bool) {
	after, known := s.remote[controller]
	keys, hosts := set[string]{}, set[string]{}
	diff := func(a, b map[string]*p4meshv1.PeerSide) {
		for k, v := range a {
			if w, ok := b[k]; ok && proto.Equal(v, w) {
				continue
			}
			keys[k] = struct{}{}
			for _, h := range v.GetHosts() {
				hosts[h] = struct{}{}
			}
		}
	}
	diff(before, after)
	diff(after, before)

	// Authorisation first, so that a stream the change no longer
	// authorises is sent nothing of it.
	s.revokeVouchedLocked(hosts)

	b := batches{}
	defer s.commitLocked(b)
	m := s.m
	for _, p := range m.base.Peerings {
		if m.owner[p.PeerVPC] != controller {
			continue
		}
		// A controller heard from for the first time, or forgotten,
		// changes every peering it owns the peer of: "waiting for" comes
		// or goes even where no side does.
		if _, ok := keys[p.PeerVPC+"/"+p.VPC]; !ok && known == wasKnown {
			continue
		}
		items := s.vpcItems[p.VPC]
		if items == nil {
			continue
		}
		key := "peering/" + p.VPC + "/" + p.PeerVPC
		it := s.peeringItemLocked(p)
		if proto.Equal(items[key], it) {
			continue
		}
		items[key] = it
		for _, h := range s.tableHostsLocked(p.VPC) {
			b.put(s.hostTableLocked(h), key, it)
		}
	}
}

// revokeVouchedLocked is revokeLocked after a change of peer sides that
// vouched for hosts before or after it: only their streams can have lost
// their authorisation, and only those an authenticated host opened, as
// the VPCs of an unauthenticated one are its own claim or this
// controller's configuration, never a peer side (authorizeLocked).
func (s *Server) revokeVouchedLocked(hosts set[string]) {
	if len(hosts) == 0 {
		return
	}
	for _, svc := range s.services {
		for cs := range svc.streams {
			if !cs.caller.authed || cs.controller != "" {
				continue
			}
			if _, ok := hosts[cs.caller.id.Name]; !ok {
				continue
			}
			if _, err := s.authorizeLocked(cs.req, cs.caller); err != nil {
				cs.cancel(err)
				delete(svc.streams, cs)
			}
		}
	}
}

// Stats reports what the controller publishes, for metrics.
type Stats struct {
	PublishedServices int
	Hosts             int
	Subscribers       int
	ActivePeerings    int
	Peerings          int
	// Applies and ApplyErrors count Apply calls that were accepted and
	// refused since the Server was made.
	Applies, ApplyErrors uint64
	// HostEntries are the entries each host's OHC last reported it has
	// programmed on its switch.
	HostEntries map[string]uint64
	// HostSwitchPrimary is whether each host's OHC last reported being the
	// primary controller of its switch; hosts whose OHC did not say are
	// absent.
	HostSwitchPrimary map[string]bool
	// Routes are the configured routes with whether each won its prefix.
	Routes []RouteStatus
	// RIBRevision moves whenever a candidate of a VPC's RIB may have
	// changed, so that a reader rebuilds what it shows of them only then;
	// RIBs returns every RIB resolved, by VPC (Server.RIBs), costing the
	// size of the RIBs. Nil in Stats not from a Server.
	RIBRevision uint64
	RIBs        func() map[string][]Candidate
	// BGPNeighbors is what the BGP speaker last reported of its
	// neighbors (SetBGPNeighbors).
	BGPNeighbors []BGPNeighborStatus
	// GatewayPools are the configured pools with their live members.
	GatewayPools []GatewayPoolStatus
}

// Stats counts published services, hosts and watch subscribers.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		PublishedServices: len(s.services), Hosts: len(s.hosts), Subscribers: s.peers.Subscribers(),
		Applies: s.applies.Load(), ApplyErrors: s.applyErrors.Load(),
		HostEntries: s.reports.totals(), HostSwitchPrimary: s.reports.primaries(),
		Routes:      s.m.chooseRoutes(),
		RIBRevision: s.rib.rev, RIBs: s.RIBs,
		BGPNeighbors: s.bgp.get(),
		GatewayPools: s.poolStatusLocked(),
	}
	for _, t := range s.hosts {
		st.Subscribers += t.Subscribers()
	}
	for _, svc := range s.services {
		st.Subscribers += svc.dest.Subscribers() + svc.fwd.Subscribers() + svc.lbs.Subscribers() + svc.routes.Subscribers()
	}
	for _, p := range s.m.base.Peerings {
		st.Peerings++
		if _, active, _ := s.peerStateLocked(p); active {
			st.ActivePeerings++
		}
	}
	return st
}

// PeeringStatus is one peering's state as this controller sees it.
type PeeringStatus struct {
	VPC, PeerVPC string
	Active       bool
	Reason       string
	// Mode is how the VPC's hosts reach the peer's destinations,
	// "direct" or "pool", and ModeReason why. GatewayPool is the pool
	// serving the peer ("" if none), with its load trigger's thresholds;
	// PPS is the load last measured from the VPC to the peer.
	Mode, ModeReason             string
	GatewayPool                  string
	PPS                          uint64
	DirectAbovePPS, PoolBelowPPS uint64
}

// Peerings reports every peering of this controller's VPCs.
func (s *Server) Peerings() []PeeringStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []PeeringStatus
	for _, p := range s.m.base.Peerings {
		other, active, reason := s.peerStateLocked(p)
		ps := PeeringStatus{VPC: p.VPC, PeerVPC: p.PeerVPC, Active: active, Reason: reason}
		s.peeringPoolStatusLocked(p, other, &ps)
		out = append(out, ps)
	}
	return out
}

// peerStateLocked finds the other side of peering p: from this
// configuration when this controller owns the peer VPC too, else from the
// peer controller's stream. The peering is active when the other side is
// configured back and nothing conflicts.
func (s *Server) peerStateLocked(p Peering) (*p4meshv1.PeerSide, bool, string) {
	c := s.m.base
	owner, ok := s.m.ownerOf(p.PeerVPC)
	if !ok {
		return nil, false, fmt.Sprintf("peer VPC %s is in no controller's directory entry", p.PeerVPC)
	}
	var other *p4meshv1.PeerSide
	if owner.Name == c.Controller {
		if back, ok := c.Peering(p.PeerVPC, p.VPC); ok {
			other = s.peerSideLocked(back)
		}
	} else {
		sides, synced := s.remote[owner.Name]
		if !synced {
			return nil, false, fmt.Sprintf("waiting for controller %s (%s), which owns %s", owner.Name, replicaset.Join(owner.Addresses()), p.PeerVPC)
		}
		other = sides[p.PeerVPC+"/"+p.VPC]
	}
	if other == nil || !other.GetConfigured() {
		return nil, false, fmt.Sprintf("%s has not configured a peering with %s", p.PeerVPC, p.VPC)
	}
	local, _ := c.VPC(p.VPC)
	if reason := PeeringConflict(local, parsePrefixes(other.GetSubnets()), other.GetVni()); reason != "" {
		return other, false, reason
	}
	return other, true, ""
}

// tableLocked makes a table holding items at s.rev: what the owner's
// store holds at that revision, with nothing before it to resume from.
func (s *Server) tableLocked(name string, items map[string]proto.Message) *watch.Table {
	o := s.opts.Watch
	o.Epoch = s.rev
	o.Clock = s.clock
	// Every item the Server commits is a message made for it and never
	// modified after: the tables keep them rather than clones, which at
	// a million routes is a tenth of a commit's cost.
	o.Owned = true
	return watch.NewTableFrom(name, items, o)
}

// replaceLocked moves t to s.rev with exactly items; a table made at
// s.rev already holds them.
func (s *Server) replaceLocked(t *watch.Table, items map[string]proto.Message) {
	if t.Revision() < s.rev {
		t.ReplaceAt(s.rev, items)
	}
}

// recomputeLocked derives every watch table from the model and the remote
// sides, at s.rev.
func (s *Server) recomputeLocked() {
	// Once every table is at s.rev (they all are: ReplaceAt).
	defer s.clock.Advance(s.rev)
	m := s.m
	c := m.base
	s.hostRefs = nil // hosts the configuration no longer has go
	s.rebuildImportsLocked()
	sides := map[string]proto.Message{}
	for _, p := range c.Peerings {
		sides[p.VPC+"/"+p.PeerVPC] = s.peerSideLocked(p)
	}
	if s.peers == nil {
		s.peers = s.tableLocked("peers", sides)
	}
	s.replaceLocked(s.peers, sides)

	// Connectivity, one set of tables per published service.
	published := c.PublishedServices()
	want := map[PublishedService]bool{}
	for _, ps := range published {
		want[ps] = true
	}
	// Before any table changes, so that a stream the new configuration
	// no longer authorises is sent nothing of it.
	s.revokeLocked(want)
	s.svcByVPC = map[string][]*service{}
	var last *service // the service before, and its destinations and forwarding
	var lastItems [2]map[string]proto.Message
	for _, ps := range published {
		svc := s.services[ps]
		isNew := svc == nil
		if isNew {
			svc = &service{ps: ps, streams: map[*connStream]struct{}{}}
			s.services[ps] = svc
		}
		svc.exported = m.exportedPrefixes(ps.VPC, ps.Policy)
		s.svcByVPC[ps.VPC] = append(s.svcByVPC[ps.VPC], svc)
		var sibling *service
		if last != nil && last.ps.VPC == ps.VPC {
			sibling = last
		}
		dest, fwd, lbs, routes, custom := s.connectivityLocked(svc, sibling, lastItems)
		last, lastItems = svc, [2]map[string]proto.Message{dest, fwd}
		if isNew {
			name := ps.VPC + "/" + ps.Policy
			svc.dest = s.tableLocked("destinations/"+name, dest)
			svc.fwd = s.tableLocked("forwarding/"+name, fwd)
			svc.lbs = s.tableLocked("load-balancers/"+name, lbs)
			svc.routes = s.tableLocked("routes/"+name, routes)
			svc.custom = s.tableLocked("custom-routes/"+name, custom)
			continue
		}
		s.replaceLocked(svc.dest, dest)
		s.replaceLocked(svc.fwd, fwd)
		s.replaceLocked(svc.lbs, lbs)
		s.replaceLocked(svc.routes, routes)
		s.replaceLocked(svc.custom, custom)
	}
	for ps, svc := range s.services {
		if !want[ps] {
			// Streams still open on it see everything deleted.
			for _, t := range svc.tables() {
				s.replaceLocked(t, nil)
			}
			delete(s.services, ps)
		}
	}

	// Host programming, per host with endpoints here (and every host a
	// stream asked for, which then sees an empty view).
	s.vpcItems = map[string]map[string]proto.Message{}
	for _, v := range c.VPCs {
		s.vpcItems[v.Name] = s.vpcItemsLocked(v.Name)
	}
	hostIDs := map[string]bool{}
	for id := range m.onHost {
		hostIDs[id] = true
	}
	for id := range s.hosts {
		hostIDs[id] = true
	}
	for _, h := range c.Hosts {
		hostIDs[h.ID] = true
	}
	for id := range hostIDs {
		if m.hosts[id] == nil && len(m.onHost[id]) == 0 {
			// A host no configuration names: keep its table only while
			// someone watches it, so stray watches cannot grow memory.
			if t := s.hosts[id]; t != nil && t.Subscribers() == 0 {
				delete(s.hosts, id)
				continue
			}
		}
		if t := s.hosts[id]; t != nil {
			s.replaceLocked(t, s.hostItemsLocked(id))
		} else {
			s.hostTableLocked(id)
		}
	}
}

// revokeLocked ends the connectivity streams that the current
// configuration no longer authorises (a host's last endpoint in the VPC
// moved, a peering or its policy went) or whose service it no longer
// publishes. Their clients reconnect and are told why; without this a
// stream opened once would be served for as long as it stays open.
func (s *Server) revokeLocked(want map[PublishedService]bool) {
	if s.authGen == s.gen {
		return
	}
	s.authGen = s.gen
	for ps, svc := range s.services {
		for cs := range svc.streams {
			err := s.reauthorizeLocked(cs)
			if err == nil && !want[ps] {
				err = status.Errorf(codes.Unavailable, "%s is no longer published", ps)
			}
			if err != nil {
				cs.cancel(err)
				delete(svc.streams, cs)
			}
		}
	}
}

// revokeHostsLocked is revokeLocked after a change that took hosts' last
// endpoints in VPCs away (lost), the one way a change of endpoints can
// revoke: only those hosts' streams of the services those VPCs let them
// watch (their own view, and what VPCs peered with them export to them)
// are authorised again.
func (s *Server) revokeHostsLocked(lost []hostVPC) {
	if len(lost) == 0 {
		return
	}
	hosts, vpcs := set[string]{}, set[string]{}
	for _, p := range lost {
		hosts[p.host] = struct{}{}
		vpcs[p.vpc] = struct{}{}
	}
	affected := set[PublishedService]{}
	for v := range vpcs {
		affected[PublishedService{VPC: v}] = struct{}{}
	}
	for _, p := range s.m.base.Peerings {
		if _, ok := vpcs[p.PeerVPC]; ok {
			affected[PublishedService{VPC: p.VPC, Policy: p.ExportPolicy}] = struct{}{}
		}
	}
	for ps := range affected {
		svc := s.services[ps]
		if svc == nil {
			continue
		}
		for cs := range svc.streams {
			if cs.controller != "" {
				continue
			}
			host := cs.req.GetHost()
			if cs.caller.authed {
				host = cs.caller.id.Name
			}
			if _, ok := hosts[host]; !ok {
				continue
			}
			if _, err := s.authorizeLocked(cs.req, cs.caller); err != nil {
				cs.cancel(err)
				delete(svc.streams, cs)
			}
		}
	}
}

// hostTableLocked returns host id's table, making it, with what the model
// says of the host, if there is none.
func (s *Server) hostTableLocked(id string) *watch.Table {
	t := s.hosts[id]
	if t == nil {
		t = s.tableLocked("host/"+id, s.hostItemsLocked(id))
		s.hosts[id] = t
	}
	return t
}

func (svc *service) tables() [5]*watch.Table {
	return [5]*watch.Table{svc.dest, svc.fwd, svc.lbs, svc.routes, svc.custom}
}

func hostInfo(h Host) *p4meshv1.HostInfo {
	hi := &p4meshv1.HostInfo{Id: h.ID, UnderlayIp: h.UnderlayIP.String(), Mac: h.MAC.String()}
	for _, r := range h.UnderlayRoutes {
		hi.UnderlayRoutes = append(hi.UnderlayRoutes, &p4meshv1.UnderlayRoute{
			Prefix: r.Prefix.String(), Port: uint32(r.Port), SrcMac: r.SrcMAC.String(), DstMac: r.DstMAC.String(),
		})
	}
	return hi
}

// connectivity is what service ps publishes, derived from the whole
// configuration: the reference the Server's derivation from its model
// (derive.go) is tested against. It is the VPC's endpoints, where
// they are, its load balancers and routes, all limited to what the export
// policy exports, a load balancer's backends included (everything for the
// VPC's own hosts, policy "").
func (c *Config) connectivity(ps PublishedService) (dest, fwd, lbs, routes map[string]proto.Message) {
	dest, fwd, lbs, routes = map[string]proto.Message{}, map[string]proto.Message{}, map[string]proto.Message{}, map[string]proto.Message{}
	exports := func(ip netip.Addr) bool { return c.Exports(ps.VPC, ps.Policy, ip) }
	hostIP := func(id string) string {
		if h, ok := c.Host(id); ok {
			return h.UnderlayIP.String()
		}
		return ""
	}
	for _, e := range c.Endpoints {
		if e.VPC != ps.VPC || !exports(e.IP) {
			continue
		}
		key := e.IP.String()
		dest[key] = &p4meshv1.Destination{Vpc: e.VPC, Ip: key, Endpoint: e.ID}
		fwd[key] = &p4meshv1.Forwarding{Vpc: e.VPC, Ip: key, Mac: e.MAC.String(), Host: e.Host, HostIp: hostIP(e.Host)}
	}
	for _, lb := range c.LoadBalancers {
		proto, _ := IPProtocol(lb.Protocol)
		if lb.VPC != ps.VPC || !exports(lb.VIP) || (ps.Policy != "" && !c.ExportsProtocol(ps.Policy, proto)) {
			continue
		}
		m := &p4meshv1.LoadBalancer{Name: lb.Name, Vpc: lb.VPC, Vip: lb.VIP.String(), Protocol: uint32(proto), Port: uint32(lb.Port)}
		for _, b := range lb.Backends {
			// A backend is an endpoint the peer's hosts send flows to, and
			// it carries the endpoint's IP, MAC and host: one the policy
			// does not export stays as hidden here as in destinations.
			e, ok := c.Endpoint(b.Endpoint)
			if !ok || !exports(e.IP) {
				continue
			}
			m.Backends = append(m.Backends, &p4meshv1.Backend{Endpoint: e.ID, Ip: e.IP.String(), Mac: e.MAC.String(), HostIp: hostIP(e.Host), Weight: max(b.Weight, 1)})
		}
		if len(m.Backends) == 0 {
			// Nothing behind the VIP the peer may reach; a load balancer
			// without backends is one the configuration never allows.
			continue
		}
		lbs[lb.Name] = m
	}
	// Each prefix's winners among the VPC's subnets and static routes
	// (the RIB without its runtime candidates), by the RIB's own rules
	// and items (ribserve.go).
	v, _ := c.VPC(ps.VPC)
	groups := map[netip.Prefix][]Candidate{}
	for i, r := range c.Routes {
		if r.VPC != ps.VPC {
			continue
		}
		cand := Candidate{VPC: r.VPC, Prefix: r.Prefix, Origin: OriginStatic, Source: r.NextHop, Priority: r.Priority, pos: i}
		if e, ok := c.Endpoint(r.NextHop); ok && r.NextHop != "" {
			cand.NextHops = []netip.Addr{e.IP}
		}
		if groups[r.Prefix] == nil && slices.Contains(v.Subnets, r.Prefix) {
			groups[r.Prefix] = []Candidate{{VPC: r.VPC, Prefix: r.Prefix, Origin: OriginSubnet, Source: r.VPC}}
		}
		groups[r.Prefix] = append(groups[r.Prefix], cand)
	}
	if ps.Policy == "" {
		// What the VPC's active peers owned here export to it, each
		// resolved as the peer's own export.
		for _, p := range c.PeeringsOf(ps.VPC) {
			back, ok := c.Peering(p.PeerVPC, p.VPC)
			peer, owned := c.VPC(p.PeerVPC)
			if !ok || !owned || PeeringConflict(v, peer.Subnets, peer.VNI) != "" {
				continue
			}
			_, _, _, exported := c.connectivity(PublishedService{VPC: p.PeerVPC, Policy: back.ExportPolicy})
			for key, it := range exported {
				prio, origin := routeFields(it)
				prefix := netip.MustParsePrefix(key)
				if groups[prefix] == nil && slices.Contains(v.Subnets, prefix) {
					groups[prefix] = []Candidate{{VPC: ps.VPC, Prefix: prefix, Origin: OriginSubnet, Source: ps.VPC}}
				}
				groups[prefix] = append(groups[prefix], Candidate{VPC: ps.VPC, Prefix: prefix, Origin: OriginPeer, Source: p.PeerVPC,
					PeerVNI: peer.VNI, Priority: prio, PeerOrigin: origin, Preference: p.Preference, NextHops: routeNextHops(it)})
			}
		}
	}
	svc := &service{ps: ps, exported: c.ExportedPrefixes(ps.VPC, ps.Policy)}
	var pol *ExportPolicy
	if p, ok := c.ExportPolicy(ps.Policy); ok {
		pol = &p
	}
	for prefix, cs := range groups {
		n := resolve(cs, v.Subnets)
		key := prefix.String()
		it := ownRouteItem(cs, n, key, nil)
		if ps.Policy != "" {
			it = exportRouteItem(svc, pol, cs, n, key, false, nil)
		}
		if it != nil {
			routes[key] = it
		}
	}
	return dest, fwd, lbs, routes
}

func prefixExported(exported []netip.Prefix, p netip.Prefix) bool {
	return slices.ContainsFunc(exported, func(e netip.Prefix) bool { return e.Bits() <= p.Bits() && e.Contains(p.Addr()) })
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func parsePrefixes(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// wrap sets an event's value from a watch item. A record (pubrec.go) is
// sent as the message it stands for, made for the event.
func wrap(_ string, v proto.Message, ev *p4meshv1.Event) {
	switch m := message(v).(type) {
	case *p4meshv1.LocalEndpoint:
		ev.Value = &p4meshv1.Event_LocalEndpoint{LocalEndpoint: m}
	case *p4meshv1.VPC:
		ev.Value = &p4meshv1.Event_Vpc{Vpc: m}
	case *p4meshv1.Peering:
		ev.Value = &p4meshv1.Event_Peering{Peering: m}
	case *p4meshv1.Destination:
		ev.Value = &p4meshv1.Event_Destination{Destination: m}
	case *p4meshv1.Forwarding:
		ev.Value = &p4meshv1.Event_Forwarding{Forwarding: m}
	case *p4meshv1.LoadBalancer:
		ev.Value = &p4meshv1.Event_LoadBalancer{LoadBalancer: m}
	case *p4meshv1.Route:
		ev.Value = &p4meshv1.Event_Route{Route: m}
	case *p4meshv1.HostInfo:
		ev.Value = &p4meshv1.Event_Host{Host: m}
	case *p4meshv1.PeerSide:
		ev.Value = &p4meshv1.Event_PeerSide{PeerSide: m}
	case *p4meshv1.GatewayDuty:
		ev.Value = &p4meshv1.Event_GatewayDuty{GatewayDuty: m}
	}
}

// serve streams a table to a gRPC client, through the gate if there is
// one; cancellation is not an error.
func (s *Server) serve(ctx context.Context, t *watch.Table, rev uint64, send func(*p4meshv1.Event) error) error {
	var g watch.Gate
	if s.opts.Gate != nil {
		g = s.opts.Gate(ctx)
	}
	if err := t.ServeGated(ctx, rev, g, send, wrap); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

type hostProgramming struct {
	p4meshv1.UnimplementedHostProgrammingServer
	s *Server
}

// Watch streams host programming to the OHC of req.host.
func (h hostProgramming) Watch(req *p4meshv1.WatchRequest, st grpc.ServerStreamingServer[p4meshv1.Event]) error {
	host, err := h.s.hostOf(st.Context(), req.GetHost())
	if err != nil {
		h.s.log.Warn("host programming watch refused", "host", req.GetHost(), "caller", identity.Peer(st.Context()), "err", err)
		return err
	}
	select {
	case <-h.s.ready:
	case <-st.Context().Done():
		return nil
	}
	// Every change moves every host table, so one that exists is
	// current; a new one is made from the model.
	h.s.mu.Lock()
	t := h.s.hostTableLocked(host)
	h.s.mu.Unlock()
	h.s.log.Info("host programming watch", "host", host, "resume", req.GetResumeRevision())
	return h.s.serve(st.Context(), t, req.GetResumeRevision(), st.Send)
}

// hostOf is the host a host-programming call is about: the caller's own
// (a host's certificate names it; a request may repeat it, not change it),
// and only a host this controller's configuration knows, so that invented
// host ids cannot make it hold state.
func (s *Server) hostOf(ctx context.Context, asked string) (string, error) {
	c, err := s.callerOf(ctx, identity.Host)
	if err != nil {
		return "", err
	}
	host := asked
	if c.authed {
		if asked != "" && asked != c.id.Name {
			return "", status.Errorf(codes.PermissionDenied, "%s may act only for host %s, not %q", c, c.id.Name, asked)
		}
		host = c.id.Name
	}
	if host == "" {
		return "", status.Error(codes.InvalidArgument, "the request names no host")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m.hosts[host] == nil && len(s.m.onHost[host]) == 0 {
		return "", status.Errorf(codes.NotFound, "host %q is not in controller %s's configuration", host, s.m.base.Controller)
	}
	return host, nil
}

type connectivity struct {
	p4meshv1.UnimplementedConnectivityServer
	s *Server
}

// authorizeLocked checks that the host asking req may watch the service it
// names under the current configuration and peer sides.
func (s *Server) authorizeLocked(req *p4meshv1.WatchRequest, c caller) (PublishedService, error) {
	cfg := s.m.base
	vpc, policy := req.GetVpc(), req.GetExportPolicy()
	if owner, ok := cfg.Owner(vpc); !ok {
		return PublishedService{}, status.Errorf(codes.NotFound, "VPC %q is in no controller's directory entry", vpc)
	} else if owner.Name != cfg.Controller {
		return PublishedService{}, status.Errorf(codes.NotFound, "VPC %s is owned by controller %s at %s, not %s", vpc, owner.Name, replicaset.Join(owner.Addresses()), cfg.Controller)
	}
	host := req.GetHost()
	var hostVPCs []string
	switch {
	case c.authed:
		// The host's endpoints decide its VPCs: this controller's own
		// configuration, and for other controllers' VPCs what their
		// owners vouch for in their peer sides. Nothing the request says.
		host = c.id.Name
		hostVPCs = s.vpcsOfHostLocked(host)
	case policy == "":
		hostVPCs = s.m.vpcsOfHost(host)
	case req.GetPeerVpc() != "":
		// --insecure: the asker's claim (see Authorized).
		hostVPCs = []string{req.GetPeerVpc()}
	}
	if policy == "" && s.m.gatewayOf(host, vpc) {
		// A gateway of vpc holds its whole connectivity, as a host with
		// an endpoint there does.
		hostVPCs = append(hostVPCs, vpc)
	}
	if ok, why := Authorized(hostVPCs, vpc, policy, cfg); !ok {
		return PublishedService{}, status.Errorf(codes.PermissionDenied, "host %s (%s) may not watch %s under policy %q: %s", host, c, vpc, policy, why)
	}
	return PublishedService{VPC: vpc, Policy: policy}, nil
}

// subscribe finds the published service a watch asks for, checks that the
// asking host may see it, and records the stream (cancel ends it) so that
// a later configuration can revoke it.
func (c connectivity) subscribe(ctx context.Context, req *p4meshv1.WatchRequest, cancel context.CancelCauseFunc) (*service, *connStream, error) {
	s := c.s
	who, err := s.callerOf(ctx, identity.Host)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, err := s.authorizeLocked(req, who)
	if err != nil {
		return nil, nil, err
	}
	svc := s.services[ps]
	if svc == nil {
		return nil, nil, status.Errorf(codes.NotFound, "%s publishes nothing under policy %q", ps.VPC, ps.Policy)
	}
	cs := &connStream{req: req, caller: who, cancel: cancel}
	svc.streams[cs] = struct{}{}
	return svc, cs, nil
}

func (c connectivity) unsubscribe(svc *service, cs *connStream) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	delete(svc.streams, cs)
}

func (c connectivity) watch(req *p4meshv1.WatchRequest, st grpc.ServerStreamingServer[p4meshv1.Event], pick func(*service) *watch.Table) error {
	ctx, cancel := context.WithCancelCause(st.Context())
	defer cancel(nil)
	svc, cs, err := c.subscribe(st.Context(), req, cancel)
	if err != nil {
		c.s.log.Warn("connectivity watch refused", "host", req.GetHost(), "caller", identity.Peer(st.Context()), "vpc", req.GetVpc(), "policy", req.GetExportPolicy(), "err", err)
		return err
	}
	defer c.unsubscribe(svc, cs)
	// Revocation cancels ctx before the tables change; checking it before
	// each send keeps even a change already queued for this stream from
	// reaching a client that may no longer see it.
	send := func(ev *p4meshv1.Event) error {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return st.Send(ev)
	}
	err = c.s.serve(ctx, pick(svc), req.GetResumeRevision(), send)
	if ctx.Err() != nil && st.Context().Err() == nil {
		// Revoked, not the client leaving: tell it why.
		err = context.Cause(ctx)
		c.s.log.Info("connectivity watch revoked", "host", req.GetHost(), "vpc", req.GetVpc(), "policy", req.GetExportPolicy(), "err", err)
	}
	return err
}

// WatchDestinations streams the endpoint addresses the service exports.
func (c connectivity) WatchDestinations(req *p4meshv1.WatchRequest, st grpc.ServerStreamingServer[p4meshv1.Event]) error {
	return c.watch(req, st, func(s *service) *watch.Table { return s.dest })
}

// WatchForwarding streams where each exported address lives.
func (c connectivity) WatchForwarding(req *p4meshv1.WatchRequest, st grpc.ServerStreamingServer[p4meshv1.Event]) error {
	return c.watch(req, st, func(s *service) *watch.Table { return s.fwd })
}

// WatchLoadBalancers streams the exported load balancers.
func (c connectivity) WatchLoadBalancers(req *p4meshv1.WatchRequest, st grpc.ServerStreamingServer[p4meshv1.Event]) error {
	return c.watch(req, st, func(s *service) *watch.Table { return s.lbs })
}

// WatchRoutes streams the exported routes: to hosts, and to the peer
// controllers that import them into their VPCs' RIBs (watchPeerRoutes).
func (c connectivity) WatchRoutes(req *p4meshv1.WatchRequest, st grpc.ServerStreamingServer[p4meshv1.Event]) error {
	id, authed, err := c.s.opts.Auth.Caller(st.Context())
	if err != nil {
		return err
	}
	if (authed && id.Kind == identity.Controller) || (!authed && req.GetController() != "") {
		return c.watchPeerRoutes(req, st)
	}
	return c.watch(req, st, func(s *service) *watch.Table { return s.routes })
}

type peers struct {
	p4meshv1.UnimplementedPeersServer
	s *Server
}

// WatchPeerSides streams this controller's side of each of its peerings to
// the controllers of the directory.
func (p peers) WatchPeerSides(req *p4meshv1.WatchRequest, st grpc.ServerStreamingServer[p4meshv1.Event]) error {
	who, err := p.s.callerOf(st.Context(), identity.Controller)
	if err != nil {
		return err
	}
	name := req.GetController()
	if who.authed {
		name = who.id.Name
	}
	p.s.mu.Lock()
	dir := p.s.m.base.Directory
	p.s.mu.Unlock()
	if !slices.ContainsFunc(dir, func(e ControllerEntry) bool { return e.Name == name }) {
		return status.Errorf(codes.PermissionDenied, "controller %q (%s) is not in the directory", name, who)
	}
	return p.s.serve(st.Context(), p.s.peers, req.GetResumeRevision(), st.Send)
}

// vpcsOfHostLocked are the VPCs host has endpoints in, as far as this
// controller knows: its own configuration, and the peer sides other
// controllers sent, in which each owner lists its VPC's hosts.
func (s *Server) vpcsOfHostLocked(host string) []string {
	out := s.m.vpcsOfHost(host)
	for _, sides := range s.remote {
		for _, side := range sides {
			if slices.Contains(side.GetHosts(), host) && !slices.Contains(out, side.GetVpc()) {
				out = append(out, side.GetVpc())
			}
		}
	}
	slices.Sort(out)
	return out
}

// describe is a one-line summary for logs.
func (ps PublishedService) String() string {
	return strings.TrimSuffix(ps.VPC+"/"+ps.Policy, "/")
}
