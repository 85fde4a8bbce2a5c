package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
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

// label names the neighbor a learned route came from, at the time GoBGP
// reported it. It is keyed by address and VNI, and labels are never
// deleted: GoBGP reports the withdrawals of a deleted session after the
// deletion, and they must still reach the consumer under the neighbor and
// VPC they were learned for.
type label struct {
	addr netip.Addr
	vni  uint32
}

// Speaker is the controller's BGP speaker: a GoBGP server with one VRF per
// VPC and one session per attachment neighbor.
type Speaker struct {
	cfg Config
	log *slog.Logger
	srv *server.BgpServer
	gl  *gobgpLogger

	// op serializes the methods that change configuration, so each
	// reconciles from a state no other call is changing.
	op sync.Mutex
	// The following are guarded by op.
	started, stopped bool
	neighbors        map[netip.Addr]Neighbor          // configured sessions
	vrfs             map[string]uint32                // VPC -> VNI of its VRF in GoBGP
	desired          map[string]map[netip.Prefix]bool // VPC -> what Advertise asked for
	applied          map[string]map[netip.Prefix]bool // VPC -> what is in its VRF
	stopWatch        context.CancelFunc

	// mu guards the lookups the watch callback makes.
	mu     sync.RWMutex
	labels map[label]string // neighbor name
	vpcs   map[uint32]string

	// pmu guards pending: updates decoded but not yet handed to Deliver.
	pmu     sync.Mutex
	pending []Update
	wake    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
}

// New returns a speaker for cfg that logs to log; Start runs it.
func New(cfg Config, log *slog.Logger) (*Speaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gl := newGoBGPLogger(log)
	return &Speaker{
		cfg:       cfg,
		log:       log,
		gl:        gl,
		srv:       server.NewBgpServer(server.LoggerOption(gl)),
		neighbors: make(map[netip.Addr]Neighbor),
		vrfs:      make(map[string]uint32),
		desired:   make(map[string]map[netip.Prefix]bool),
		applied:   make(map[string]map[netip.Prefix]bool),
		labels:    make(map[label]string),
		vpcs:      make(map[uint32]string),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
	}, nil
}

// Start starts the BGP server: it listens (unless ListenPort < 0) and
// begins delivering learned routes. Neighbors come with SetNeighbors.
func (s *Speaker) Start(ctx context.Context) error {
	s.op.Lock()
	defer s.op.Unlock()
	if s.started {
		return errors.New("bgp: speaker already started; GoBGP cannot start twice")
	}
	s.started = true
	go s.srv.Serve()
	g := &api.Global{
		Asn:      s.cfg.LocalAS,
		RouterId: s.cfg.RouterID.String(),
		// No Families: GoBGP then keeps a table for every family. The
		// speaker needs IPv4 VPN (every VPC's routes, under its RD) and
		// GoBGP's VRF code needs the route-target table too.
		ListenPort: s.cfg.ListenPort,
	}
	if s.cfg.ListenAddress != "" {
		g.ListenAddresses = []string{s.cfg.ListenAddress}
	}
	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: g}); err != nil {
		s.stopped = true
		return fmt.Errorf("bgp: start GoBGP on port %d: %w", s.cfg.ListenPort, err)
	}
	if err := s.setPolicies(ctx); err != nil {
		return err
	}
	for _, a := range []*api.PolicyAssignment{
		// Learned routes are accepted unless a neighbor's filter says no.
		{Name: "global", Direction: api.PolicyDirection_IMPORT, Policies: []*api.Policy{{Name: importPolicy}}, DefaultAction: api.RouteAction_ACCEPT},
		// Only what Advertise put in a VPC goes out, and only to that
		// VPC's neighbors; a route learned from one on-prem router is
		// never passed on to another.
		{Name: "global", Direction: api.PolicyDirection_EXPORT, Policies: []*api.Policy{{Name: exportPolicy}}, DefaultAction: api.RouteAction_REJECT},
	} {
		if err := s.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: a}); err != nil {
			return fmt.Errorf("bgp: assign policy %s: %w", a.Policies[0].Name, err)
		}
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.stopWatch = cancel
	// POST_POLICY: each neighbor's routes after its import filter, with
	// withdrawals for session loss, hold-timer expiry, NOTIFICATION and
	// the end of a graceful restart, all decided by GoBGP's own RIB.
	err := s.srv.WatchEvent(wctx, &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_POST_POLICY, Init: true}},
	}}, s.onEvent)
	if err != nil {
		cancel()
		return fmt.Errorf("bgp: watch learned routes: %w", err)
	}
	s.wg.Add(1)
	go s.deliverLoop()
	return nil
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
	// The watch must end before StopBgp, or StopBgp waits on it forever
	// (osrg/gobgp#3366).
	if s.stopWatch != nil {
		s.stopWatch()
	}
	s.srv.Stop()
	close(s.done)
	s.wg.Wait()
	// GoBGP's Serve goroutine has no way to end; it stays parked.
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
	for _, n := range ns {
		n.Import = slices.Clone(n.Import)
		want[n.Address] = n
		if old, ok := s.neighbors[n.Address]; ok && old.VPC == n.VPC && old.Name != n.Name {
			return fmt.Errorf("bgp: neighbor %v of VPC %s is configured as %s; renaming it to %s in place is not supported: remove it, then add it in a later call", n.Address, n.VPC, old.Name, n.Name)
		}
	}

	// Sessions that go, or change in a way that needs a new session.
	for _, addr := range sortedAddrs(s.neighbors) {
		old := s.neighbors[addr]
		if n, ok := want[addr]; ok && sessionEqual(old, n) {
			continue
		}
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
			return fmt.Errorf("bgp: remove neighbor %s (%v): %w", old.Name, addr, err)
		}
		delete(s.neighbors, addr)
		s.gl.forget(addr)
	}
	// VRFs of VPCs that have no neighbor left, or whose VNI changed.
	vnis := make(map[string]uint32)
	for _, n := range want {
		vnis[n.VPC] = n.VNI
	}
	for _, vpc := range slices.Sorted(maps.Keys(s.vrfs)) {
		if v, ok := vnis[vpc]; ok && v == s.vrfs[vpc] {
			continue
		}
		if err := s.srv.DeleteVrf(ctx, &api.DeleteVrfRequest{Name: vpc}); err != nil {
			return fmt.Errorf("bgp: remove VRF of VPC %s: %w", vpc, err)
		}
		delete(s.vrfs, vpc)
		delete(s.applied, vpc)
	}

	s.mu.Lock()
	for _, n := range want {
		s.labels[label{n.Address, n.VNI}] = n.Name
		s.vpcs[n.VNI] = n.VPC
	}
	s.mu.Unlock()

	// Policies first, so that a new session's first routes already meet
	// its filters and its first advertisements carry its next hop.
	if err := s.setPoliciesFor(ctx, want); err != nil {
		return err
	}
	for _, vpc := range slices.Sorted(maps.Keys(vnis)) {
		if _, ok := s.vrfs[vpc]; ok {
			continue
		}
		if err := s.addVrf(ctx, vpc, vnis[vpc]); err != nil {
			return err
		}
		s.vrfs[vpc] = vnis[vpc]
		if err := s.reconcileVPC(ctx, vpc); err != nil {
			return err
		}
	}
	for _, addr := range sortedAddrs(want) {
		n := want[addr]
		old, ok := s.neighbors[addr]
		if !ok {
			if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.peer(n)}); err != nil {
				return fmt.Errorf("bgp: add neighbor %s (%v): %w", n.Name, addr, err)
			}
			s.neighbors[addr] = n
			continue
		}
		dir := api.ResetPeerRequest_BOTH
		switch {
		case old.NextHop == n.NextHop && !slices.Equal(old.Import, n.Import):
			dir = api.ResetPeerRequest_IN
		case old.NextHop != n.NextHop && slices.Equal(old.Import, n.Import):
			dir = api.ResetPeerRequest_OUT
		}
		if !policyEqual(old, n) {
			if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: addr.String(), Soft: true, Direction: dir}); err != nil {
				return fmt.Errorf("bgp: apply new filters or next hop to neighbor %s: %w", n.Name, err)
			}
		}
		s.neighbors[addr] = n
	}
	return nil
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
			Vrf:             n.VPC,
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

// rd is the route distinguisher (and route target) of the VPC with VNI
// vni. It never leaves the speaker: neighbors get plain IPv4 unicast, so
// the administrator field is 0 and only the VNI matters.
func rd(vni uint32) bgp.RouteDistinguisherInterface {
	return bgp.NewRouteDistinguisherTwoOctetAS(0, vni)
}

func (s *Speaker) addVrf(ctx context.Context, vpc string, vni uint32) error {
	r, err := apiutil.MarshalRD(rd(vni))
	if err != nil {
		return fmt.Errorf("bgp: VRF of VPC %s: %w", vpc, err)
	}
	rt, err := apiutil.MarshalRT(bgp.NewTwoOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET, 0, vni, true))
	if err != nil {
		return fmt.Errorf("bgp: VRF of VPC %s: %w", vpc, err)
	}
	// Import and export the VPC's own target only: a route can reach
	// another VPC's VRF only through a target that VRF imports, and no
	// two VPCs share one.
	err = s.srv.AddVrf(ctx, &api.AddVrfRequest{Vrf: &api.Vrf{
		// Id 0: GoBGP uses VRF ids only for zebra, and for every learned
		// path it matches each VRF with an id against the path's targets,
		// compiling a regexp each time (pkg/server setPathVrfIdMap).
		Name: vpc, Rd: r, ImportRt: []*anypb.Any{rt}, ExportRt: []*anypb.Any{rt}, Id: 0,
	}})
	if err != nil {
		return fmt.Errorf("bgp: add VRF for VPC %s (VNI %d): %w", vpc, vni, err)
	}
	return nil
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
	if _, ok := s.vrfs[vpc]; !ok {
		return nil
	}
	return s.reconcileVPC(ctx, vpc)
}

// reconcileVPC brings the VRF of vpc to the prefixes Advertise asked for,
// adding and deleting only the difference.
func (s *Speaker) reconcileVPC(ctx context.Context, vpc string) error {
	want, have := s.desired[vpc], s.applied[vpc]
	if have == nil {
		have = make(map[netip.Prefix]bool)
		s.applied[vpc] = have
	}
	for _, p := range sortedPrefixes(have) {
		if want[p] {
			continue
		}
		err := s.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_VRF, VrfId: vpc, Family: ipv4Unicast, Path: localPath(p)})
		if err != nil {
			return fmt.Errorf("bgp: withdraw %v from VPC %s: %w", p, vpc, err)
		}
		delete(have, p)
	}
	for _, p := range sortedPrefixes(want) {
		if have[p] {
			continue
		}
		_, err := s.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_VRF, VrfId: vpc, Path: localPath(p)})
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

func (s *Speaker) setPolicies(ctx context.Context) error {
	return s.setPoliciesFor(ctx, s.neighbors)
}

// setPoliciesFor replaces the import and export policies with the
// statements ns need. GoBGP applies them to routes that arrive or leave
// from now on; SetNeighbors soft-resets the sessions whose statements
// changed.
func (s *Speaker) setPoliciesFor(ctx context.Context, ns map[netip.Addr]Neighbor) error {
	var sets []*api.DefinedSet
	in := &api.Policy{Name: importPolicy}
	out := &api.Policy{Name: exportPolicy}
	for i, addr := range sortedAddrs(ns) {
		n := ns[addr]
		nset := fmt.Sprintf("n%d", i)
		sets = append(sets, &api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: nset, List: []string{addr.String() + "/32"}})
		match := &api.MatchSet{Type: api.MatchSet_ANY, Name: nset}
		if len(n.Import) > 0 {
			pset := fmt.Sprintf("p%d", i)
			ps := &api.DefinedSet{DefinedType: api.DefinedType_PREFIX, Name: pset}
			for _, f := range n.Import {
				ge, le := f.bounds()
				ps.Prefixes = append(ps.Prefixes, &api.Prefix{IpPrefix: f.Prefix.String(), MaskLengthMin: uint32(ge), MaskLengthMax: uint32(le)})
			}
			sets = append(sets, ps)
			in.Statements = append(in.Statements,
				&api.Statement{
					Name:       fmt.Sprintf("%s-accept-%d", importPolicy, i),
					Conditions: &api.Conditions{NeighborSet: match, PrefixSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: pset}},
					Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT},
				},
				&api.Statement{
					Name:       fmt.Sprintf("%s-reject-%d", importPolicy, i),
					Conditions: &api.Conditions{NeighborSet: match},
					Actions:    &api.Actions{RouteAction: api.RouteAction_REJECT},
				})
		}
		// In the export direction the neighbor set matches the neighbor
		// the route is sent to.
		out.Statements = append(out.Statements, &api.Statement{
			Name:       fmt.Sprintf("%s-%d", exportPolicy, i),
			Conditions: &api.Conditions{NeighborSet: match, RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
			Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT, Nexthop: &api.NexthopAction{Address: n.NextHop.String()}},
		})
	}
	err := s.srv.SetPolicies(ctx, &api.SetPoliciesRequest{DefinedSets: sets, Policies: []*api.Policy{in, out}})
	if err != nil {
		return fmt.Errorf("bgp: set import filters and next hops: %w", err)
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
