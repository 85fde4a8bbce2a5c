package ohc

import (
	"net"
	"net/netip"
	"slices"
	"time"
)

// View is everything the OHC knows that matters to its switch, assembled from
// its own controller's host programming and the peer controllers'
// connectivity streams. It is the whole intended state, not a delta: the
// programmer diffs it against the switch, so a View can be rebuilt from
// scratch after any reconnect without harm.
//
// A View handed to Compile or Programmer.Update must not be modified
// afterwards: build a new one for the next change.
type View struct {
	Host Host
	// VPCs are the VPCs the host has endpoints in, and may include their
	// peers, by name.
	VPCs map[string]VPC
	// Local are the endpoints attached to this host's switch.
	Local []LocalEndpoint
	// Peerings are the peerings of the VPCs in VPCs, active or not.
	Peerings []Peering
	// Remote are the endpoint addresses learnt from the destination and
	// forwarding streams, keyed by the VPC the endpoint belongs to: the
	// host's own VPCs (all their endpoints) and its peers (what they export
	// to us). Endpoints on this host may appear here too; Local is what the
	// compiler trusts for them.
	Remote map[string][]RemoteEndpoint
	// LBs are the internal load balancers of the host's VPCs and those the
	// peers export.
	LBs []LoadBalancer
	// Routes are the winning routes of the host's VPCs.
	Routes []Route
	// Duties are the gateway pools this host serves as a gateway.
	Duties []GatewayDuty

	// routeChunks, when not nil, are the view's routes in place of Routes
	// (then nil): sorted by compareRoutes across the chunks, the routes
	// of one VPC and prefix never split between two. The agent makes
	// them so that a change of one route copies its chunk and the list of
	// chunks, not every route: views are not modified once made, a host
	// may hold 100k routes, and the compiler reads the last view's routes
	// to know what a change replaced. Read through routeList and
	// findRoute.
	routeChunks [][]Route
}

// routeList is the view's routes: Routes, or its chunks' routes joined
// (a new slice).
func (v *View) routeList() []Route {
	if v.routeChunks == nil {
		return v.Routes
	}
	n := 0
	for _, c := range v.routeChunks {
		n += len(c)
	}
	out := make([]Route, 0, n)
	for _, c := range v.routeChunks {
		out = append(out, c...)
	}
	return out
}

// Host is this host's underlay identity: the outer source of every tunnel it
// builds, and the uplinks tunnels leave by.
type Host struct {
	ID  string
	IP  netip.Addr
	MAC net.HardwareAddr
	// UnderlayRoutes say which switch port and MACs reach an underlay
	// prefix (the outer destination of a tunnel).
	UnderlayRoutes []UnderlayRoute
}

// UnderlayRoute is one underlay next hop: tunnels to Prefix leave by Port with
// SrcMAC and DstMAC as the outer Ethernet addresses.
type UnderlayRoute struct {
	Prefix netip.Prefix
	Port   uint16
	SrcMAC net.HardwareAddr
	DstMAC net.HardwareAddr
}

// VPC is one VPC's identity as the data plane needs it.
type VPC struct {
	Name    string
	VNI     uint32 // 24 bits, never 0
	Subnets []netip.Prefix
	// GatewayIP and GatewayMAC are the VPC's virtual gateway: the next hop
	// the VMs use for every off-link destination (peer addresses included),
	// answered by the ARP proxy. Both or neither.
	GatewayIP  netip.Addr
	GatewayMAC net.HardwareAddr
}

// LocalEndpoint is an endpoint attached to a port of this host's switch.
type LocalEndpoint struct {
	ID   string
	VPC  string
	IP   netip.Addr
	MAC  net.HardwareAddr
	Port uint16
	// Kind is the endpoint's kind as the controller names it: "vm", "ilb",
	// "router", or an attachment's "vpn" or "interconnect". Empty is a VM.
	Kind string
	// RouterMAC is, for an attachment, the MAC of the on-prem router behind
	// it: the destination MAC of traffic a route sends out of its port. An
	// attachment without one cannot be a route's next hop.
	RouterMAC net.HardwareAddr
}

// Kinds of LocalEndpoint that are attachments: their port leads to an
// on-prem router, not to the endpoint itself.
const (
	KindVPN          = "vpn"
	KindInterconnect = "interconnect"
)

// IsAttachment reports whether e is a VPN or interconnect attachment.
func (e LocalEndpoint) IsAttachment() bool {
	return e.Kind == KindVPN || e.Kind == KindInterconnect
}

// Peering is one peering of a VPC the host has endpoints in.
type Peering struct {
	VPC     string
	PeerVPC string
	PeerVNI uint32
	// Active is true when both sides configured the peering; an inactive
	// peering contributes nothing.
	Active bool
	// PeerPrefixes are what the peer exports to VPC under its policy: the
	// sources the data plane admits from the peer, and the only peer
	// destinations VPC's endpoints are given entries for.
	PeerPrefixes []netip.Prefix
	// Mode is how VPC's endpoints reach PeerVPC: ModeDirect (every exported
	// destination programmed) or ModePool (through Pool, with destinations
	// in use promoted to direct entries on demand). Empty reads as direct.
	Mode string
	// Pool is the gateway pool serving PeerVPC, with its live members; nil
	// when none does.
	Pool *GatewayPool
}

// Peering modes (Peering.Mode).
const (
	ModeDirect = "direct"
	ModePool   = "pool"
)

// GatewayPool is a pool of gateways serving one VPC (see p4meshv1.GatewayPool).
type GatewayPool struct {
	Name string
	// VPC and VNI are the VPC served: a host encapsulates towards a member
	// with VNI.
	VPC string
	VNI uint32
	// Members are the live gateways, sorted by host.
	Members []GatewayMember
	// Promotion and demotion on the sending host; zero means the OHC's
	// default.
	PromotePackets uint32
	PromoteWindow  time.Duration
	IdleTimeout    time.Duration
}

// GatewayMember is one gateway of a pool.
type GatewayMember struct {
	Host string
	IP   netip.Addr // underlay IP
}

// GatewayDuty says this host runs in gateway role for Pool, serving VPC.
type GatewayDuty struct {
	Pool      string
	VPC       string
	VNI       uint32
	Heartbeat time.Duration
}

// RemoteEndpoint is an endpoint address and the host it lives on.
type RemoteEndpoint struct {
	IP     netip.Addr
	MAC    net.HardwareAddr
	HostIP netip.Addr // underlay IP of the endpoint's host
	// VPC and VNI are the endpoint's VPC. Both may be left empty: the key
	// of View.Remote names the VPC, and its VNI is known from VPCs or the
	// peering. When set they must agree with those.
	VPC string
	VNI uint32
}

// LoadBalancer is an internal pass-through load balancer: traffic to (VIP,
// Protocol, Port) is spread over Backends by a hash of the flow, and the VIP
// stays the inner destination.
type LoadBalancer struct {
	// Name and VPC identify the load balancer; the switch-side id is
	// derived from them (see LBID), so it survives OHC restarts.
	Name     string
	VPC      string
	VIP      netip.Addr
	Protocol uint8
	Port     uint16
	Backends []Backend
}

// Backend is one backend of a load balancer, an endpoint of the LB's VPC.
type Backend struct {
	IP     netip.Addr
	MAC    net.HardwareAddr
	HostIP netip.Addr
	// Weight is the backend's share of flows; 0 means 1 (proto3's unset).
	Weight uint32
}

// Route is a winning route of a VPC: traffic to Prefix goes to the endpoint
// NextHopIP (of the VPC or of a peer), or is dropped when it has no next
// hop at all.
type Route struct {
	VPC       string
	Prefix    netip.Prefix
	NextHopIP netip.Addr
	// NextHopIPs are every next hop of an equal-cost winner (attachments of
	// one VPC whose routes tie), sorted, NextHopIP first. Flows are spread
	// over them by the inner 5-tuple hash. Empty, or NextHopIP alone, is a
	// route with one next hop.
	NextHopIPs []netip.Addr
}

// NextHops returns the route's next hops: NextHopIP and NextHopIPs, sorted
// and without duplicates or zero Addrs. It is empty for a drop route.
func (r Route) NextHops() []netip.Addr {
	out := make([]netip.Addr, 0, 1+len(r.NextHopIPs))
	if r.NextHopIP.IsValid() {
		out = append(out, r.NextHopIP)
	}
	for _, a := range r.NextHopIPs {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}
