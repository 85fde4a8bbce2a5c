package bgp

import (
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

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"
)

// ErrNotStarted is returned by the methods that need a running speaker.
var ErrNotStarted = errors.New("bgp: speaker not started (or already stopped)")

var ipv4Unicast = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}

// Names of the two global policies that carry every neighbor's import
// filters and next hop. GoBGP applies import and export policies per
// neighbor only to route-server clients; for ordinary peers they are
// global, so each neighbor gets statements matched on its address.
const (
	importPolicy = "p4mesh-import"
	exportPolicy = "p4mesh-export"
)

// Speaker is the controller's BGP speaker: one GoBGP server per VPC, whose
// global table is that VPC's routing table, with one session per
// attachment neighbor of the VPC.
type Speaker struct {
	cfg Config
	log *slog.Logger
	gl  *gobgpLogger

	// op serializes the methods that change configuration, so each
	// reconciles from a state no other call is changing.
	op sync.Mutex
	// The following are guarded by op.
	started, stopped bool
	neighbors        map[netip.Addr]Neighbor          // configured sessions, all VPCs
	servers          map[string]*vpcServer            // VPC -> its GoBGP server
	desired          map[string]map[netip.Prefix]bool // VPC -> what Advertise asked for

	// pmu guards pending: updates decoded but not yet handed to Deliver,
	// as queued (one slice per watch event, about an UPDATE's worth):
	// kept apart rather than appended into one, which copied every
	// update of a burst again as the slice grew.
	pmu     sync.Mutex
	pending [][]Update
	wake    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup

	// bmp is where the VPC servers' BMP clients connect (bmp.go); cwg
	// counts the connections' readers.
	bmp *bmpStation
	cwg sync.WaitGroup

	// testHookStartVPC, when set, runs before each new GoBGP server
	// starts (see fenceAll).
	testHookStartVPC func()
	// testHookBMP, when set, runs before each BMP message is applied
	// (tests hold the stream back with it).
	testHookBMP atomic.Pointer[func()]

	// smu guards all, every VPC server, for staleLoop, and byID, the
	// running ones by the id their BMP connection names (bmp.go).
	smu    sync.Mutex
	all    []*vpcServer
	byID   map[uint64]*vpcServer
	lastID uint64
}

// vpcServer is the GoBGP server of one VPC. It is created when the VPC
// gets its first neighbor and runs until the speaker stops, also while the
// VPC has no neighbors (see doc.go, Limits).
type vpcServer struct {
	vpc       string
	routerID  netip.Addr // what srv was started with; fixed for its life
	srv       *server.BgpServer
	stopWatch context.CancelFunc
	id        uint64        // names its BMP connection
	bmpReady  chan struct{} // closed when its first BMP connection is up

	// Guarded by Speaker.op.
	neighbors map[netip.Addr]Neighbor
	applied   map[netip.Prefix]bool // what is in its table (Advertise)

	// mu guards nbrs: what was delivered from each neighbor address,
	// with its name and filter (learn.go). Entries stay when a neighbor
	// is removed, so that its session's late events are recognized.
	// And the BMP connection: conn, its generation gen (counting the
	// connections so far; a reader of an older one stops), and closed
	// (the server is stopping: no connection is taken any more).
	mu     sync.Mutex
	nbrs   map[netip.Addr]*nbrRoutes
	conn   net.Conn
	gen    uint64
	closed bool
}

// New returns a speaker for cfg that logs to log; Start runs it.
func New(cfg Config, log *slog.Logger) (*Speaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Speaker{
		cfg:       cfg,
		log:       log,
		gl:        newGoBGPLogger(log),
		neighbors: make(map[netip.Addr]Neighbor),
		servers:   make(map[string]*vpcServer),
		desired:   make(map[string]map[netip.Prefix]bool),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		byID:      make(map[uint64]*vpcServer),
	}, nil
}

// Start starts delivering learned routes. GoBGP servers start with the
// first neighbor of each VPC (SetNeighbors). The speaker dials every
// neighbor and does not listen: see Config.ListenPort.
func (s *Speaker) Start(ctx context.Context) error {
	s.op.Lock()
	defer s.op.Unlock()
	if s.started {
		return errors.New("bgp: speaker already started; GoBGP cannot start twice")
	}
	st, err := newBMPStation()
	if err != nil {
		return err
	}
	s.bmp = st
	s.started = true
	s.wg.Add(3)
	go s.deliverLoop()
	go s.acceptLoop()
	go s.staleLoop()
	return nil
}

// startVPC starts the GoBGP server of vpc, with its policies (no
// neighbors yet) and its watch of learned routes.
func (s *Speaker) startVPC(ctx context.Context, vpc string, routerID netip.Addr) (*vpcServer, error) {
	v := &vpcServer{
		vpc:       vpc,
		routerID:  routerID,
		srv:       server.NewBgpServer(server.LoggerOption(s.gl)),
		neighbors: make(map[netip.Addr]Neighbor),
		applied:   make(map[netip.Prefix]bool),
		nbrs:      make(map[netip.Addr]*nbrRoutes),
		bmpReady:  make(chan struct{}),
	}
	go v.srv.Serve()
	// Every GoBGP server start in the process, of any speaker, is
	// serialized and fenced (fenceAll).
	started.Lock()
	defer started.Unlock()
	s.fenceAll(ctx)
	g := &api.Global{
		Asn:      s.cfg.LocalAS,
		RouterId: routerID.String(),
		// IPv4 unicast only: the server's global table is the VPC's
		// table; no VPN or route-target tables.
		Families: []uint32{0}, // oc.IntToAfiSafiTypeMap: 0 is IPv4 unicast
		// GoBGP cannot share a listener between servers; every session
		// is dialed (Config.ListenPort).
		ListenPort: -1,
	}
	if err := v.srv.StartBgp(ctx, &api.StartBgpRequest{Global: g}); err != nil {
		return nil, fmt.Errorf("bgp: start GoBGP for VPC %s: %w", vpc, err)
	}
	if err := v.setPolicies(ctx, nil); err != nil {
		v.srv.Stop()
		return nil, err
	}
	for _, a := range []*api.PolicyAssignment{
		// Only what Advertise adds enters the global table: learned
		// paths stay in their neighbor's adj-RIB-in, where the watch saw
		// them (doc.go, "Learned paths stay out of GoBGP's table").
		{Name: "global", Direction: api.PolicyDirection_IMPORT, Policies: []*api.Policy{{Name: importPolicy}}, DefaultAction: api.RouteAction_REJECT},
		// Only what Advertise put in the VPC goes out; a route learned
		// from one on-prem router is never passed on to another.
		{Name: "global", Direction: api.PolicyDirection_EXPORT, Policies: []*api.Policy{{Name: exportPolicy}}, DefaultAction: api.RouteAction_REJECT},
	} {
		if err := v.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: a}); err != nil {
			v.srv.Stop()
			return nil, fmt.Errorf("bgp: VPC %s: assign policy %s: %w", vpc, a.Policies[0].Name, err)
		}
	}
	wctx, cancel := context.WithCancel(context.Background())
	v.stopWatch = cancel
	// Session states for Neighbors, and End-of-RIB (which never comes
	// through BMP). No paths: their UPDATEs come through BMP.
	err := v.srv.WatchEvent(wctx, &api.WatchEventRequest{
		Peer: &api.WatchEventRequest_Peer{},
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_EOR},
		}},
	}, func(r *api.WatchEventResponse) { s.onEvent(v, r) })
	if err != nil {
		cancel()
		v.srv.Stop()
		return nil, fmt.Errorf("bgp: VPC %s: watch sessions: %w", vpc, err)
	}
	s.smu.Lock()
	s.lastID++
	v.id = s.lastID
	s.byID[v.id] = v
	s.smu.Unlock()
	if err := s.addBMP(ctx, v); err != nil {
		s.smu.Lock()
		delete(s.byID, v.id)
		s.smu.Unlock()
		cancel()
		v.srv.Stop()
		return nil, err
	}
	started.servers[v.srv] = struct{}{}
	return v, nil
}

// started holds every GoBGP server the process's speakers started: a
// process may run several speakers (the demo's and the end-to-end tests'
// controllers share one), and GoBGP's package variables are the
// process's, not a speaker's (see fenceAll). Its lock serializes starts.
var started = struct {
	sync.Mutex
	servers map[*server.BgpServer]struct{}
}{servers: map[*server.BgpServer]struct{}{}}

// forget drops a stopped server from started.
func forget(srv *server.BgpServer) {
	started.Lock()
	delete(started.servers, srv)
	started.Unlock()
}

// fenceAll works around GoBGP v3.37 keeping route-selection options in
// package variables (table.SelectionOptions, table.UseMultiplePaths) that
// every StartBgp writes (with the same values, for every speaker's
// servers) and every server goroutine reads while it selects routes.
// Starts are serialized (started's lock, held by the caller), and a round
// trip to each running server of the process orders what it read so far
// before the StartBgp that follows; a read in the microseconds between the
// two is still unordered (and harmless: same values), which only the race
// detector could notice. testHookStartVPC lets tests do the same for the
// GoBGP routers they run in the process.
func (s *Speaker) fenceAll(ctx context.Context) {
	for srv := range started.servers {
		srv.GetBgp(ctx, &api.GetBgpRequest{})
	}
	if s.testHookStartVPC != nil {
		s.testHookStartVPC()
	}
}

// Stop ends every session and stops delivering updates. The routes the
// speaker had learned are not withdrawn through Deliver: the consumer
// that stops the speaker drops them itself. A stopped speaker cannot be
// started again (GoBGP cannot restart a server).
func (s *Speaker) Stop() {
	s.op.Lock()
	defer s.op.Unlock()
	if !s.started || s.stopped {
		s.stopped = true
		return
	}
	s.stopped = true
	for _, vpc := range slices.Sorted(maps.Keys(s.servers)) {
		s.stopVPC(s.servers[vpc])
	}
	s.bmp.ln.Close()
	s.cwg.Wait()
	close(s.done)
	s.wg.Wait()
	// GoBGP's Serve goroutines have no way to end; they stay parked.
}

// stopVPC stops v's server, its BMP client and its watch.
func (s *Speaker) stopVPC(v *vpcServer) {
	s.stopBMP(v)
	// The watch must end before StopBgp, or StopBgp waits on it forever
	// (osrg/gobgp#3366).
	v.stopWatch()
	v.srv.Stop()
	forget(v.srv)
	s.smu.Lock()
	delete(s.byID, v.id)
	s.all = slices.DeleteFunc(s.all, func(x *vpcServer) bool { return x == v })
	s.smu.Unlock()
}

func (s *Speaker) running() error {
	if !s.started || s.stopped {
		return ErrNotStarted
	}
	return nil
}

// SetNeighbors makes ns the speaker's whole set of neighbors: it adds the
// new ones, removes the ones not in ns, and changes the others in place.
// A change of session parameters (AS, address, port, password, timers,
// graceful restart, max-prefixes, VPC) restarts that one session; a change
// of import filters or next hop does not (a soft reset applies them).
// Unchanged sessions are never touched.
//
// A neighbor keeps its name while it keeps its address and VPC: renaming
// one in place is refused, because the withdrawals GoBGP still has in
// flight for the old session would reach the consumer under the new name.
// Remove it, then add it under its new name in a later call.
func (s *Speaker) SetNeighbors(ctx context.Context, ns []Neighbor) error {
	s.op.Lock()
	defer s.op.Unlock()
	if err := s.running(); err != nil {
		return err
	}
	if err := validateSet(ns, s.cfg.RouterID); err != nil {
		return err
	}
	want := make(map[netip.Addr]Neighbor, len(ns))
	byVPC := make(map[string]map[netip.Addr]Neighbor)
	rids := make(map[string]netip.Addr) // validateSet: one per VPC
	for _, n := range ns {
		rids[n.VPC] = n.routerID(s.cfg.RouterID)
		n.Import = slices.Clone(n.Import)
		want[n.Address] = n
		if byVPC[n.VPC] == nil {
			byVPC[n.VPC] = make(map[netip.Addr]Neighbor)
		}
		byVPC[n.VPC][n.Address] = n
		if old, ok := s.neighbors[n.Address]; ok && old.VPC == n.VPC && old.Name != n.Name {
			return fmt.Errorf("bgp: neighbor %v of VPC %s is configured as %s; renaming it to %s in place is not supported: remove it, then add it in a later call", n.Address, n.VPC, old.Name, n.Name)
		}
	}

	// A VPC whose router id changes gets a new server: GoBGP cannot
	// change a running server's. Its sessions go with the old one.
	for _, vpc := range slices.Sorted(maps.Keys(s.servers)) {
		v := s.servers[vpc]
		if id, ok := rids[vpc]; !ok || id == v.routerID {
			continue
		}
		for _, addr := range sortedAddrs(v.neighbors) {
			if err := s.removeNeighbor(ctx, v, addr); err != nil {
				return err
			}
		}
		s.stopVPC(v)
		delete(s.servers, vpc)
		s.log.Info("bgp: router id of the VPC changed; its GoBGP server is replaced and its sessions restart", "vpc", vpc, "old", v.routerID, "new", rids[vpc])
	}

	// Sessions that go, or change in a way that needs a new session.
	for _, addr := range sortedAddrs(s.neighbors) {
		old := s.neighbors[addr]
		if n, ok := want[addr]; ok && sessionEqual(old, n) {
			continue
		}
		if err := s.removeNeighbor(ctx, s.servers[old.VPC], addr); err != nil {
			return err
		}
	}
	// A VPC left without neighbors keeps its idle server (doc.go,
	// Limits), and its policy statements, which name no neighbor it has:
	// they are replaced when it has neighbors again.

	for _, vpc := range slices.Sorted(maps.Keys(byVPC)) {
		vns := byVPC[vpc]
		v, ok := s.servers[vpc]
		if !ok {
			var err error
			if v, err = s.startVPC(ctx, vpc, rids[vpc]); err != nil {
				return err
			}
			s.servers[vpc] = v
			s.smu.Lock()
			s.all = append(s.all, v)
			s.smu.Unlock()
			if err := s.reconcileVPC(ctx, vpc); err != nil {
				return err
			}
		}
		v.mu.Lock()
		for _, n := range vns {
			nr := v.nbrs[n.Address]
			if nr == nil {
				nr = &nbrRoutes{routes: make(map[uint64]bool)}
				v.nbrs[n.Address] = nr
			}
			nr.name, nr.filter = n.Name, n.Import
			nr.localAS = n.LocalAS
			if nr.localAS == 0 {
				nr.localAS = s.cfg.LocalAS
			}
		}
		v.mu.Unlock()
		// Policies first, so that a new session's first routes already
		// meet its filters and its first advertisements carry its next
		// hop.
		if v.policiesChange(vns) {
			if err := v.setPolicies(ctx, vns); err != nil {
				return err
			}
		}
		for _, addr := range sortedAddrs(vns) {
			n := vns[addr]
			old, ok := v.neighbors[addr]
			if !ok {
				v.waitDeleted(addr)
				if err := v.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.peer(n)}); err != nil {
					return fmt.Errorf("bgp: add neighbor %s (%v): %w", n.Name, addr, err)
				}
				s.neighbors[addr] = n
				v.neighbors[addr] = n
				continue
			}
			if old.NextHop != n.NextHop {
				if err := v.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: addr.String(), Soft: true, Direction: api.ResetPeerRequest_OUT}); err != nil {
					return fmt.Errorf("bgp: apply a new next hop to neighbor %s: %w", n.Name, err)
				}
			}
			if !slices.Equal(old.Import, n.Import) {
				// The filter is the speaker's (nr.filter, set above):
				// what the neighbor sent is filtered again from its
				// adj-RIB-in.
				s.resync(ctx, v, addr, true)
			}
			s.neighbors[addr] = n
			v.neighbors[addr] = n
		}
	}
	return nil
}

// removeNeighbor ends the session with addr, a neighbor of v, and
// withdraws its routes.
func (s *Speaker) removeNeighbor(ctx context.Context, v *vpcServer, addr netip.Addr) error {
	old := s.neighbors[addr]
	if err := v.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
		return fmt.Errorf("bgp: remove neighbor %s (%v): %w", old.Name, addr, err)
	}
	delete(s.neighbors, addr)
	delete(v.neighbors, addr)
	s.gl.forget(addr)
	// GoBGP drops the session's routes without a watched event: withdraw
	// them here, and ignore what its session still has queued in the
	// watch.
	v.mu.Lock()
	if nr := v.nbrs[addr]; nr != nil {
		nr.deletedAt = time.Now()
		nr.bmpUp, nr.state = false, ""
		clear(nr.rejected)
		s.queue(nr.withdrawAll(v.vpc, false, nil))
	}
	v.mu.Unlock()
	return nil
}

// waitDeleted waits, before addr is added to v again, until the second in
// which its last session was deleted has passed: the BMP stream's Peer Up
// of a new session must be told apart from one of the deleted session
// still in the stream, and BMP's timestamps are whole seconds here
// (onBMPPeer).
func (v *vpcServer) waitDeleted(addr netip.Addr) {
	v.mu.Lock()
	var at time.Time
	if n := v.nbrs[addr]; n != nil {
		at = n.deletedAt
	}
	v.mu.Unlock()
	if at.IsZero() {
		return
	}
	if next := time.Unix(at.Unix()+1, 0); time.Now().Before(next) {
		time.Sleep(time.Until(next))
	}
}

// policiesChange reports whether the VPC's policies must change for it to
// have the neighbors ns (its neighbors now are v.neighbors).
func (v *vpcServer) policiesChange(ns map[netip.Addr]Neighbor) bool {
	if len(ns) != len(v.neighbors) {
		return true
	}
	for addr, n := range ns {
		if old, ok := v.neighbors[addr]; !ok || !policyEqual(old, n) {
			return true
		}
	}
	return false
}

// peer is n as GoBGP's peer configuration.
func (s *Speaker) peer(n Neighbor) *api.Peer {
	secs := func(d, def time.Duration) uint64 {
		if d == 0 {
			d = def
		}
		return uint64(d / time.Second)
	}
	hold := secs(n.HoldTime, 90*time.Second)
	retry := secs(n.ConnectRetry, 5*time.Second)
	p := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: n.Address.String(),
			PeerAsn:         n.PeerAS,
			LocalAsn:        n.LocalAS,
			AuthPassword:    n.Password,
			Description:     n.Name,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          hold,
			KeepaliveInterval: secs(n.KeepaliveInterval, time.Duration(hold/3)*time.Second),
			ConnectRetry:      retry,
			// GoBGP idles 30 s after a session drops before it accepts or
			// dials again; an attachment should come back as soon as the
			// router does.
			IdleHoldTimeAfterReset: retry,
		}},
		Transport: &api.Transport{RemotePort: uint32(n.Port)},
		AfiSafis: []*api.AfiSafi{{
			Config:       &api.AfiSafiConfig{Family: ipv4Unicast, Enabled: true},
			PrefixLimits: &api.PrefixLimit{Family: ipv4Unicast, MaxPrefixes: n.MaxPrefixes},
		}},
	}
	if s.cfg.ListenAddress != "" {
		p.Transport.LocalAddress = s.cfg.ListenAddress
	}
	if n.GracefulRestart {
		p.GracefulRestart = &api.GracefulRestart{Enabled: true, HelperOnly: true}
		p.AfiSafis[0].MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
	}
	return p
}

// Advertise makes prefixes what the speaker advertises to the neighbors of
// vpc, each with that neighbor's NextHop, and to no one else. It may be
// called before the VPC has neighbors; the prefixes go out when it has.
func (s *Speaker) Advertise(ctx context.Context, vpc string, prefixes []netip.Prefix) error {
	set := make(map[netip.Prefix]bool, len(prefixes))
	for _, p := range prefixes {
		if !p.IsValid() || !p.Addr().Is4() {
			return fmt.Errorf("bgp: advertise %v in VPC %s: only IPv4 prefixes are supported", p, vpc)
		}
		if p != p.Masked() {
			return fmt.Errorf("bgp: advertise %v in VPC %s: host bits set (did you mean %v?)", p, vpc, p.Masked())
		}
		set[p] = true
	}
	s.op.Lock()
	defer s.op.Unlock()
	if err := s.running(); err != nil {
		return err
	}
	if len(set) == 0 {
		delete(s.desired, vpc)
	} else {
		s.desired[vpc] = set
	}
	if _, ok := s.servers[vpc]; !ok {
		return nil
	}
	return s.reconcileVPC(ctx, vpc)
}

// reconcileVPC brings the table of vpc's server to the prefixes Advertise
// asked for, adding and deleting only the difference.
func (s *Speaker) reconcileVPC(ctx context.Context, vpc string) error {
	v := s.servers[vpc]
	want, have := s.desired[vpc], v.applied
	for _, p := range sortedPrefixes(have) {
		if want[p] {
			continue
		}
		err := v.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: ipv4Unicast, Path: localPath(p)})
		if err != nil {
			return fmt.Errorf("bgp: withdraw %v from VPC %s: %w", p, vpc, err)
		}
		delete(have, p)
	}
	for _, p := range sortedPrefixes(want) {
		if have[p] {
			continue
		}
		_, err := v.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: localPath(p)})
		if err != nil {
			return fmt.Errorf("bgp: advertise %v in VPC %s: %w", p, vpc, err)
		}
		have[p] = true
	}
	return nil
}

// localPath is p as a locally originated path. Its next hop is a
// placeholder: the export policy sets each neighbor's own.
func localPath(p netip.Prefix) *api.Path {
	nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	origin, _ := anypb.New(&api.OriginAttribute{Origin: 0})
	nh, _ := anypb.New(&api.NextHopAttribute{NextHop: "0.0.0.0"})
	return &api.Path{Family: ipv4Unicast, Nlri: nlri, Pattrs: []*anypb.Any{origin, nh}}
}

// setPolicies replaces the policies of the VPC's server with the
// statements its neighbors ns need. The import policy is the same for
// every VPC: it lets in only the paths Advertise adds (route type local),
// and every learned path is rejected after the pre-policy watch has seen
// it; the speaker applies each neighbor's import filter itself. The
// export policy sends only those local paths, each with its neighbor's
// next hop. GoBGP applies them to routes that leave from now on;
// SetNeighbors soft-resets the sessions whose next hop changed.
func (v *vpcServer) setPolicies(ctx context.Context, ns map[netip.Addr]Neighbor) error {
	var sets []*api.DefinedSet
	in := &api.Policy{Name: importPolicy, Statements: []*api.Statement{{
		Name:       importPolicy + "-local",
		Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT},
	}}}
	out := &api.Policy{Name: exportPolicy}
	for i, addr := range sortedAddrs(ns) {
		n := ns[addr]
		nset := fmt.Sprintf("n%d", i)
		sets = append(sets, &api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: nset, List: []string{addr.String() + "/32"}})
		// In the export direction the neighbor set matches the neighbor
		// the route is sent to.
		out.Statements = append(out.Statements, &api.Statement{
			Name:       fmt.Sprintf("%s-%d", exportPolicy, i),
			Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: nset}, RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
			Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT, Nexthop: &api.NexthopAction{Address: n.NextHop.String()}},
		})
	}
	err := v.srv.SetPolicies(ctx, &api.SetPoliciesRequest{DefinedSets: sets, Policies: []*api.Policy{in, out}})
	if err != nil {
		return fmt.Errorf("bgp: VPC %s: set next hops: %w", v.vpc, err)
	}
	return nil
}

func sortedAddrs(m map[netip.Addr]Neighbor) []netip.Addr {
	return slices.SortedFunc(maps.Keys(m), netip.Addr.Compare)
}

func sortedPrefixes(m map[netip.Prefix]bool) []netip.Prefix {
	return slices.SortedFunc(maps.Keys(m), func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
}
