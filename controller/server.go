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

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/watch"
)

// ServerOptions configure a Server.
type ServerOptions struct {
	// Store holds the accepted configuration; its Current config is served.
	Store  *Store
	Logger *slog.Logger
	// DialOptions reach the other controllers of the directory; nil means
	// plaintext.
	DialOptions []grpc.DialOption
	// Watch tunes every watch table.
	Watch watch.Options
}

// Server is one SDN controller: it serves host programming to the OHCs of
// its hosts, the connectivity of the VPCs it owns to authorised OHCs (one
// published service per unique (VPC, export policy), never per VPC pair),
// and its side of each peering to the other controllers, whose sides it
// follows to know which peerings are active.
type Server struct {
	opts ServerOptions
	log  *slog.Logger

	// mu guards the fields below. Derived tables are recomputed whole from
	// cfg and remote under it; watch tables turn equal items into no-ops,
	// so a recompute wakes only the subscribers whose view changed.
	mu       sync.Mutex
	cfg      *Config
	remote   map[string]map[string]*p4meshv1.PeerSide // controller -> "vpc/peer_vpc" -> side
	hosts    map[string]*watch.Table                  // host programming, by host id
	services map[PublishedService]*service
	peers    *watch.Table // this controller's sides of its peerings
	changed  chan struct{}
}

// service is the published connectivity of one (VPC, export policy).
type service struct {
	dest, fwd, lbs, routes *watch.Table
}

// NewServer makes a controller serving store's current configuration.
func NewServer(o ServerOptions) (*Server, error) {
	if o.Store == nil || o.Store.Current() == nil {
		return nil, errors.New("controller: no configuration applied")
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
		cfg:      o.Store.Current(),
		remote:   map[string]map[string]*p4meshv1.PeerSide{},
		hosts:    map[string]*watch.Table{},
		services: map[PublishedService]*service{},
		peers:    watch.NewTable("peers", o.Watch),
		changed:  make(chan struct{}, 1),
	}
	s.mu.Lock()
	s.recomputeLocked()
	s.mu.Unlock()
	return s, nil
}

// Register adds the controller's services to g.
func (s *Server) Register(g *grpc.Server) {
	p4meshv1.RegisterHostProgrammingServer(g, hostProgramming{s: s})
	p4meshv1.RegisterConnectivityServer(g, connectivity{s: s})
	p4meshv1.RegisterPeersServer(g, peers{s: s})
}

// Config is the configuration being served. Callers must not modify it.
func (s *Server) Config() *Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Apply validates, persists and serves a new configuration; on error
// nothing changes.
func (s *Server) Apply(c *Config) error {
	if err := s.opts.Store.Apply(c); err != nil {
		return err
	}
	s.mu.Lock()
	s.cfg = s.opts.Store.Current()
	s.recomputeLocked()
	s.mu.Unlock()
	s.notify()
	return nil
}

func (s *Server) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Run follows the peer sides of every other controller that owns a peer
// VPC of this one, until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	following := map[string]context.CancelFunc{}
	var wg sync.WaitGroup
	defer func() {
		for _, cancel := range following {
			cancel()
		}
		wg.Wait()
	}()
	for {
		want := s.peerControllers()
		for name, addr := range want {
			if _, ok := following[name]; ok {
				continue
			}
			fctx, cancel := context.WithCancel(ctx)
			following[name] = cancel
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.followPeer(fctx, name, addr)
			}()
		}
		for name, cancel := range following {
			if _, ok := want[name]; !ok {
				cancel()
				delete(following, name)
				s.setRemote(name, nil)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
		}
	}
}

// peerControllers are the other controllers that own a peer VPC of ours.
func (s *Server) peerControllers() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for _, p := range s.cfg.Peerings {
		if o, ok := s.cfg.Owner(p.PeerVPC); ok && o.Name != s.cfg.Controller {
			out[o.Name] = o.Address
		}
	}
	return out
}

func (s *Server) followPeer(ctx context.Context, name, addr string) {
	conn, err := grpc.NewClient(addr, s.opts.DialOptions...)
	if err != nil {
		s.log.Error("peer controller address", "controller", name, "addr", addr, "err", err)
		return
	}
	defer conn.Close()
	client := p4meshv1.NewPeersClient(conn)
	view := map[string]*p4meshv1.PeerSide{}
	watch.Follow(ctx, "peers/"+name, s.log, func(ctx context.Context, rev uint64) (watch.Stream, error) {
		return client.WatchPeerSides(ctx, &p4meshv1.WatchRequest{Controller: s.Config().Controller, ResumeRevision: rev})
	}, watch.Handler{
		Put: func(key string, ev *p4meshv1.Event) {
			if ps := ev.GetPeerSide(); ps != nil {
				view[key] = ps
			}
		},
		Delete: func(key string, _ uint64) { delete(view, key) },
		Reset:  func() { clear(view) },
		Synced: func(uint64) {
			s.setRemote(name, maps(view))
			s.log.Info("peer controller synced", "controller", name, "sides", len(view))
		},
	})
}

func maps(m map[string]*p4meshv1.PeerSide) map[string]*p4meshv1.PeerSide {
	out := make(map[string]*p4meshv1.PeerSide, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (s *Server) setRemote(controller string, sides map[string]*p4meshv1.PeerSide) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sides == nil {
		delete(s.remote, controller)
	} else {
		s.remote[controller] = sides
	}
	s.recomputeLocked()
}

// Stats reports what the controller publishes, for metrics.
type Stats struct {
	PublishedServices int
	Hosts             int
	Subscribers       int
	ActivePeerings    int
	Peerings          int
}

// Stats counts published services, hosts and watch subscribers.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{PublishedServices: len(s.services), Hosts: len(s.hosts), Subscribers: s.peers.Subscribers()}
	for _, t := range s.hosts {
		st.Subscribers += t.Subscribers()
	}
	for _, svc := range s.services {
		st.Subscribers += svc.dest.Subscribers() + svc.fwd.Subscribers() + svc.lbs.Subscribers() + svc.routes.Subscribers()
	}
	for _, p := range s.cfg.Peerings {
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
}

// Peerings reports every peering of this controller's VPCs.
func (s *Server) Peerings() []PeeringStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []PeeringStatus
	for _, p := range s.cfg.Peerings {
		_, active, reason := s.peerStateLocked(p)
		out = append(out, PeeringStatus{VPC: p.VPC, PeerVPC: p.PeerVPC, Active: active, Reason: reason})
	}
	return out
}

// peerSideOf is how this controller describes its side of peering p.
func (c *Config) peerSideOf(p Peering) *p4meshv1.PeerSide {
	v, _ := c.VPC(p.VPC)
	return &p4meshv1.PeerSide{
		Vpc: p.VPC, PeerVpc: p.PeerVPC, Configured: true, ExportPolicy: p.ExportPolicy,
		Vni: v.VNI, Subnets: prefixStrings(v.Subnets), ExportedPrefixes: prefixStrings(c.ExportedPrefixes(p.VPC, p.ExportPolicy)),
	}
}

// peerStateLocked finds the other side of peering p: from this
// configuration when this controller owns the peer VPC too, else from the
// peer controller's stream. The peering is active when the other side is
// configured back and nothing conflicts.
func (s *Server) peerStateLocked(p Peering) (*p4meshv1.PeerSide, bool, string) {
	owner, ok := s.cfg.Owner(p.PeerVPC)
	if !ok {
		return nil, false, fmt.Sprintf("peer VPC %s is in no controller's directory entry", p.PeerVPC)
	}
	var other *p4meshv1.PeerSide
	if owner.Name == s.cfg.Controller {
		if back, ok := s.cfg.Peering(p.PeerVPC, p.VPC); ok {
			other = s.cfg.peerSideOf(back)
		}
	} else {
		sides, synced := s.remote[owner.Name]
		if !synced {
			return nil, false, fmt.Sprintf("waiting for controller %s (%s), which owns %s", owner.Name, owner.Address, p.PeerVPC)
		}
		other = sides[p.PeerVPC+"/"+p.VPC]
	}
	if other == nil || !other.GetConfigured() {
		return nil, false, fmt.Sprintf("%s has not configured a peering with %s", p.PeerVPC, p.VPC)
	}
	local, _ := s.cfg.VPC(p.VPC)
	if reason := PeeringConflict(local, parsePrefixes(other.GetSubnets()), other.GetVni()); reason != "" {
		return other, false, reason
	}
	return other, true, ""
}

// recomputeLocked derives every watch table from cfg and the remote sides.
func (s *Server) recomputeLocked() {
	c := s.cfg
	sides := map[string]proto.Message{}
	for _, p := range c.Peerings {
		sides[p.VPC+"/"+p.PeerVPC] = c.peerSideOf(p)
	}
	s.peers.Replace(sides)

	// Connectivity, one set of tables per published service.
	want := map[PublishedService]bool{}
	for _, ps := range c.PublishedServices() {
		want[ps] = true
		svc := s.services[ps]
		if svc == nil {
			name := ps.VPC + "/" + ps.Policy
			svc = &service{
				dest:   watch.NewTable("destinations/"+name, s.opts.Watch),
				fwd:    watch.NewTable("forwarding/"+name, s.opts.Watch),
				lbs:    watch.NewTable("load-balancers/"+name, s.opts.Watch),
				routes: watch.NewTable("routes/"+name, s.opts.Watch),
			}
			s.services[ps] = svc
		}
		dest, fwd, lbs, routes := c.connectivity(ps)
		svc.dest.Replace(dest)
		svc.fwd.Replace(fwd)
		svc.lbs.Replace(lbs)
		svc.routes.Replace(routes)
	}
	for ps, svc := range s.services {
		if !want[ps] {
			// Streams still open on it see everything deleted.
			for _, t := range []*watch.Table{svc.dest, svc.fwd, svc.lbs, svc.routes} {
				t.Replace(nil)
			}
			delete(s.services, ps)
		}
	}

	// Host programming, per host with endpoints here (and every host a
	// stream asked for, which then sees an empty view).
	hostIDs := map[string]bool{}
	for _, e := range c.Endpoints {
		hostIDs[e.Host] = true
	}
	for id := range s.hosts {
		hostIDs[id] = true
	}
	for id := range hostIDs {
		t := s.hostTableLocked(id)
		t.Replace(s.hostItemsLocked(id))
	}
}

func (s *Server) hostTableLocked(id string) *watch.Table {
	t := s.hosts[id]
	if t == nil {
		t = watch.NewTable("host/"+id, s.opts.Watch)
		s.hosts[id] = t
	}
	return t
}

// hostItemsLocked is what host id needs from this controller: the host, its
// endpoints in VPCs owned here, those VPCs, and their peerings with where
// to pull each peer's connectivity from.
func (s *Server) hostItemsLocked(id string) map[string]proto.Message {
	c := s.cfg
	items := map[string]proto.Message{}
	eps := c.EndpointsOnHost(id)
	if len(eps) == 0 {
		return items
	}
	if h, ok := c.Host(id); ok {
		items["host"] = hostInfo(h)
	}
	vpcs := map[string]bool{}
	for _, e := range eps {
		v, _ := c.VPC(e.VPC)
		items["endpoint/"+e.ID] = &p4meshv1.LocalEndpoint{
			Id: e.ID, Vpc: e.VPC, Vni: v.VNI, Ip: e.IP.String(), Mac: e.MAC.String(), Port: uint32(e.Port), Kind: string(e.Kind),
		}
		vpcs[e.VPC] = true
	}
	for name := range vpcs {
		v, _ := c.VPC(name)
		gw, gwMAC := v.Gateway()
		items["vpc/"+name] = &p4meshv1.VPC{Name: name, Vni: v.VNI, Subnets: prefixStrings(v.Subnets), GatewayIp: gw.String(), GatewayMac: gwMAC.String()}
		for _, p := range c.PeeringsOf(name) {
			other, active, reason := s.peerStateLocked(p)
			owner, _ := c.Owner(p.PeerVPC)
			items["peering/"+name+"/"+p.PeerVPC] = &p4meshv1.Peering{
				Vpc: name, PeerVpc: p.PeerVPC, PeerVni: other.GetVni(), PeerExportPolicy: other.GetExportPolicy(),
				PeerController: owner.Address, Active: active, Reason: reason, PeerPrefixes: other.GetExportedPrefixes(),
			}
		}
	}
	return items
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

// connectivity is what service ps publishes: the VPC's endpoints, where
// they are, its load balancers and routes, all limited to what the export
// policy exports (everything for the VPC's own hosts, policy "").
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
			e, ok := c.Endpoint(b.Endpoint)
			if !ok {
				continue
			}
			m.Backends = append(m.Backends, &p4meshv1.Backend{Endpoint: e.ID, Ip: e.IP.String(), Mac: e.MAC.String(), HostIp: hostIP(e.Host), Weight: max(b.Weight, 1)})
		}
		lbs[lb.Name] = m
	}
	for _, r := range c.Routes {
		if r.VPC != ps.VPC || (ps.Policy != "" && !prefixExported(c.ExportedPrefixes(ps.VPC, ps.Policy), r.Prefix)) {
			continue
		}
		m := &p4meshv1.Route{Vpc: r.VPC, Prefix: r.Prefix.String(), Origin: "static", Priority: r.Priority}
		if e, ok := c.Endpoint(r.NextHop); ok {
			m.NextHopIp = e.IP.String()
		}
		routes[r.Prefix.String()] = m
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

// wrap sets an event's value from a watch item.
func wrap(_ string, v proto.Message, ev *p4meshv1.Event) {
	switch m := v.(type) {
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
	}
}

// serve streams a table to a gRPC client; cancellation is not an error.
func serve(ctx context.Context, t *watch.Table, rev uint64, send func(*p4meshv1.Event) error) error {
	if err := t.Serve(ctx, rev, send, wrap); err != nil && ctx.Err() == nil {
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
	if req.GetHost() == "" {
		return status.Error(codes.InvalidArgument, "watch request names no host")
	}
	h.s.mu.Lock()
	t := h.s.hostTableLocked(req.GetHost())
	t.Replace(h.s.hostItemsLocked(req.GetHost()))
	h.s.mu.Unlock()
	h.s.log.Info("host programming watch", "host", req.GetHost(), "resume", req.GetResumeRevision())
	return serve(st.Context(), t, req.GetResumeRevision(), st.Send)
}

type connectivity struct {
	p4meshv1.UnimplementedConnectivityServer
	s *Server
}

// service finds the published service a watch asks for and checks that
// the asking host may see it.
func (c connectivity) service(req *p4meshv1.WatchRequest) (*service, error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := s.cfg
	vpc, policy := req.GetVpc(), req.GetExportPolicy()
	if owner, ok := cfg.Owner(vpc); !ok {
		return nil, status.Errorf(codes.NotFound, "VPC %q is in no controller's directory entry", vpc)
	} else if owner.Name != cfg.Controller {
		return nil, status.Errorf(codes.NotFound, "VPC %s is owned by controller %s at %s, not %s", vpc, owner.Name, owner.Address, cfg.Controller)
	}
	hostVPCs := cfg.VPCsOfHost(req.GetHost())
	if policy != "" {
		hostVPCs = []string{req.GetPeerVpc()}
	}
	if ok, why := Authorized(hostVPCs, vpc, policy, cfg); !ok {
		return nil, status.Errorf(codes.PermissionDenied, "host %s may not watch %s under policy %q: %s", req.GetHost(), vpc, policy, why)
	}
	svc := s.services[PublishedService{VPC: vpc, Policy: policy}]
	if svc == nil {
		return nil, status.Errorf(codes.NotFound, "%s publishes nothing under policy %q", vpc, policy)
	}
	return svc, nil
}

func (c connectivity) watch(req *p4meshv1.WatchRequest, st grpc.ServerStreamingServer[p4meshv1.Event], pick func(*service) *watch.Table) error {
	svc, err := c.service(req)
	if err != nil {
		c.s.log.Warn("connectivity watch refused", "host", req.GetHost(), "vpc", req.GetVpc(), "policy", req.GetExportPolicy(), "err", err)
		return err
	}
	return serve(st.Context(), pick(svc), req.GetResumeRevision(), st.Send)
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

// WatchRoutes streams the exported routes.
func (c connectivity) WatchRoutes(req *p4meshv1.WatchRequest, st grpc.ServerStreamingServer[p4meshv1.Event]) error {
	return c.watch(req, st, func(s *service) *watch.Table { return s.routes })
}

type peers struct {
	p4meshv1.UnimplementedPeersServer
	s *Server
}

// WatchPeerSides streams this controller's side of each of its peerings to
// the controllers of the directory.
func (p peers) WatchPeerSides(req *p4meshv1.WatchRequest, st grpc.ServerStreamingServer[p4meshv1.Event]) error {
	cfg := p.s.Config()
	if !slices.ContainsFunc(cfg.Directory, func(e ControllerEntry) bool { return e.Name == req.GetController() }) {
		return status.Errorf(codes.PermissionDenied, "controller %q is not in the directory", req.GetController())
	}
	return serve(st.Context(), p.s.peers, req.GetResumeRevision(), st.Send)
}

// describe is a one-line summary for logs.
func (ps PublishedService) String() string {
	return strings.TrimSuffix(ps.VPC+"/"+ps.Policy, "/")
}
