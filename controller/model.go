// Package controller is p4mesh's SDN controller. A controller owns some
// VPCs (the directory says which controller owns which VPC, so controllers
// are shards of one network) and publishes their connectivity: to its own
// on-host controllers (OHCs) the endpoints, VPCs and peerings they host,
// and to OHCs of peered VPCs, wherever those run, the destinations,
// forwarding, load balancers and routes that each peering's export policy
// lets through — one published service per unique (VPC, export policy),
// never one per VPC pair.
//
// This file is the resource model: the desired configuration as an
// operator writes it (YAML with --config, gNMI later). validate.go says
// what a configuration may be, config.go reads, writes and persists it,
// and state.go derives from it the views the watch services publish.
//
// A *Config that has been accepted (Store.Apply) is an immutable snapshot:
// readers share it and must not modify it; a change is a new Config.
package controller

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// Config is the whole desired configuration of one controller.
type Config struct {
	// Controller is this controller's name; it must have an entry in
	// Directory.
	Controller string
	// Directory lists every controller with its address and the VPCs it
	// owns. It is the sharding directory, identical on all controllers,
	// and how an OHC learns where to pull a peer VPC's connectivity from.
	Directory []ControllerEntry
	// VPCs are the VPCs this controller owns (and only those).
	VPCs []VPC
	// Hosts are the hosts whose OHCs this controller programs.
	Hosts []Host
	// Endpoints are the endpoints of the VPCs owned here. In a real cloud
	// they come from the VM controller's endpoint service; here they are
	// configured.
	Endpoints []Endpoint
	// LoadBalancers are the internal load balancers of the VPCs owned here.
	LoadBalancers []LoadBalancer
	// Routes are the static routes of the VPCs owned here.
	Routes []Route
	// ExportPolicies are named filters on what a VPC exports to a peer.
	// They are shared by all VPCs of this controller: one policy can serve
	// many peerings, which is what lets one published service serve them.
	ExportPolicies []ExportPolicy
	// Peerings are this controller's side of each peering of a VPC it owns.
	Peerings []Peering
	// BGP configures the BGP speaker and its sessions with on-prem
	// routers; nil runs none.
	BGP *BGP
	// GatewayPools are the pools of gateway hosts serving VPCs owned
	// here (gatewaypool.go).
	GatewayPools []GatewayPool
}

// ControllerEntry is one controller of the directory.
type ControllerEntry struct {
	Name string
	// Address is the controller's gRPC address, "host:port". A controller
	// that runs as a replica set lists its replicas in Replicas instead
	// (Address may stay set, to one of them).
	Address string
	// Replicas are the addresses of every replica of a controller that
	// runs as a replica set: one shard, one elected leader serving at a
	// time. OHCs and peer controllers dial them all and follow whichever
	// serves (internal/replicaset). Empty means the one replica Address.
	Replicas []string
	// VPCs are the names of the VPCs the controller owns.
	VPCs []string
}

// Addresses are where the controller is reached: its Replicas, or its
// one Address. Clients dial them as one replica set.
func (e ControllerEntry) Addresses() []string {
	if len(e.Replicas) > 0 {
		return e.Replicas
	}
	return []string{e.Address}
}

// VPC is a virtual network: one VNI on the wire and a set of subnets.
type VPC struct {
	Name string
	// VNI is the VXLAN network identifier (24 bits, 1..16777215) that
	// packets destined to the VPC carry.
	VNI uint32
	// Subnets are the VPC's IPv4 prefixes; they must not overlap.
	Subnets []netip.Prefix
	// GatewayIP is the virtual gateway's address, answered by ARP proxy.
	// Zero means the first host address of the first subnet; use
	// Gateway for the effective value.
	GatewayIP netip.Addr
	// GatewayMAC is the virtual gateway's MAC. Zero means one derived from
	// the VNI (02:00:00 followed by the VNI's three bytes), so that every
	// controller and OHC agrees on it without configuration.
	GatewayMAC MAC
}

// Gateway returns the VPC's effective virtual gateway address and MAC,
// with the defaults applied. The address is invalid if none is configured
// and the first subnet has no host address (Validate refuses that).
func (v VPC) Gateway() (netip.Addr, MAC) {
	ip, mac := v.GatewayIP, v.GatewayMAC
	if !ip.IsValid() && len(v.Subnets) > 0 {
		ip = firstHost(v.Subnets[0])
	}
	if mac.IsZero() {
		mac = DefaultGatewayMAC(v.VNI)
	}
	return ip, mac
}

// DefaultGatewayMAC is the gateway MAC of a VPC with no configured one: a
// locally administered unicast address carrying the VNI, unique per VPC.
func DefaultGatewayMAC(vni uint32) MAC {
	return MAC{0x02, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni)}
}

// firstHost returns the first host address of p: the address after the
// network address, or the invalid Addr if p has no room for one besides
// the network and broadcast addresses (longer than /30).
func firstHost(p netip.Prefix) netip.Addr {
	if !p.IsValid() || p.Addr().BitLen()-p.Bits() < 2 {
		return netip.Addr{}
	}
	return p.Masked().Addr().Next()
}

// Host is a physical host with a programmable switch and an OHC.
type Host struct {
	ID string
	// UnderlayIP is the host's physical address: the outer destination of
	// VXLAN packets for endpoints on it.
	UnderlayIP netip.Addr
	// MAC is the host's underlay MAC.
	MAC MAC
	// UplinkPort is the switch port towards the physical network.
	UplinkPort uint16
	// UnderlayRoutes say which switch port and MACs reach underlay prefixes.
	UnderlayRoutes []UnderlayRoute
}

// UnderlayRoute is an underlay next hop: packets to Prefix leave on Port
// with SrcMAC and DstMAC.
type UnderlayRoute struct {
	Prefix netip.Prefix
	Port   uint16
	SrcMAC MAC
	DstMAC MAC
}

// EndpointKind is what an endpoint is. The data plane treats all kinds
// alike; the kind tells operators and the route manager what sits there.
type EndpointKind string

// The endpoint kinds.
const (
	KindVM           EndpointKind = "vm"
	KindILB          EndpointKind = "ilb"
	KindVPN          EndpointKind = "vpn"
	KindInterconnect EndpointKind = "interconnect"
	KindRouter       EndpointKind = "router"
)

// Valid reports whether k is one of the endpoint kinds.
func (k EndpointKind) Valid() bool {
	switch k {
	case KindVM, KindILB, KindVPN, KindInterconnect, KindRouter:
		return true
	}
	return false
}

// Endpoint is an address of a VPC attached to a switch port of a host.
type Endpoint struct {
	ID   string
	VPC  string
	Kind EndpointKind
	IP   netip.Addr
	MAC  MAC
	Host string
	// Port is the switch port on Host the endpoint is attached to.
	Port uint16
	// RouterMAC is, for an attachment (IsAttachment), the MAC of the
	// on-prem router behind Port: the destination MAC of what the switch
	// routes out of it. IP and MAC are then the attachment's VPC side,
	// which the ARP proxy answers and BGP advertises as next hop. Only
	// attachments have one.
	RouterMAC MAC
}

// IsAttachment reports whether the endpoint is a VPN or interconnect
// attachment: a switch port towards an on-prem router, the next hop of the
// routes learned from it.
func (e Endpoint) IsAttachment() bool { return e.Kind.IsAttachment() }

// IsAttachment reports whether endpoints of kind k are attachments.
func (k EndpointKind) IsAttachment() bool { return k == KindVPN || k == KindInterconnect }

// LoadBalancer is an internal load balancer: connections to VIP, Protocol,
// Port are spread over Backends by weight. It is pass-through: the VIP
// stays the inner destination.
type LoadBalancer struct {
	Name string
	VPC  string
	VIP  netip.Addr
	// Protocol is "tcp" or "udp"; IPProtocol gives its number.
	Protocol string
	Port     uint16
	Backends []LBBackend
}

// LBBackend is one backend of a load balancer: an endpoint of its VPC.
type LBBackend struct {
	Endpoint string
	// Weight is the backend's share, at least 1.
	Weight uint32
}

// Route is a static route of a VPC.
type Route struct {
	VPC    string
	Prefix netip.Prefix
	// NextHop is the id of an endpoint of the VPC (a router or appliance),
	// or "" to drop what matches.
	NextHop string
	// Priority orders routes for the same prefix: lower wins.
	Priority uint32
}

// ExportPolicy filters what a VPC exports to a peer.
type ExportPolicy struct {
	Name string
	// Prefixes limit what is exported to the VPC's subnets inside them;
	// empty means all subnets of the VPC.
	Prefixes []netip.Prefix
	// PrivateOnly exports only private (RFC 1918) address space, so that
	// privately used public ranges of a VPC stay invisible to its peers.
	PrivateOnly bool
	// Protocols are the IP protocols peers may reach (load balancers of
	// other protocols are not exported): "tcp", "udp", "icmp" or a
	// protocol number; empty means all.
	Protocols []string
}

// Peering is this controller's side of a peering: VPC (owned here) exports
// to PeerVPC (owned here or by any controller of the directory) what
// ExportPolicy lets through. The peering is active when the peer's side
// configures it back; a one-sided peering is inactive, not an error.
type Peering struct {
	VPC     string
	PeerVPC string
	// ExportPolicy names the policy VPC applies to what it exports to
	// PeerVPC: the id the peer's OHCs watch VPC's connectivity with.
	ExportPolicy string
	// Preference ranks this peer's routes in conflicts: lower wins (rule 3
	// of the peer route manager, rib.go), as a route's priority does.
	Preference int
	// ExportCustomRoutes exports VPC's BGP-learned (custom) routes to
	// PeerVPC, filtered by ExportPolicy like everything else. Off by
	// default, as in the clouds: an on-prem network reachable from one VPC
	// is not made reachable from its peers by accident.
	ExportCustomRoutes bool
}

// MAC is an EUI-48 MAC address. It is an array, so it is comparable and a
// map key; the zero MAC means "not set".
type MAC [6]byte

// ParseMAC parses a 6-byte MAC in any form net.ParseMAC accepts
// ("02:00:00:00:00:01", "02-00-…", "0200.0000.0001").
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return MAC{}, err
	}
	if len(hw) != 6 {
		return MAC{}, fmt.Errorf("MAC %q is not 6 bytes", s)
	}
	return MAC(hw), nil
}

// String formats m as "02:00:00:00:00:01".
func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// IsZero reports whether m is unset.
func (m MAC) IsZero() bool { return m == MAC{} }

// IsMulticast reports whether m is a group address (broadcast included),
// which can never be an interface's own MAC.
func (m MAC) IsMulticast() bool { return m[0]&1 == 1 }

// MarshalText makes a MAC a string in JSON and text formats; the zero MAC
// is the empty string.
func (m MAC) MarshalText() ([]byte, error) {
	if m.IsZero() {
		return []byte{}, nil
	}
	return []byte(m.String()), nil
}

// UnmarshalText parses what MarshalText produces.
func (m *MAC) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*m = MAC{}
		return nil
	}
	v, err := ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// IPProtocol returns the IP protocol number of a protocol as configured:
// "tcp", "udp", "icmp" or a decimal number 0..255.
func IPProtocol(name string) (uint8, bool) {
	switch name {
	case "tcp":
		return 6, true
	case "udp":
		return 17, true
	case "icmp":
		return 1, true
	}
	n, err := strconv.ParseUint(name, 10, 8)
	if err != nil {
		return 0, false
	}
	return uint8(n), true
}

// Clone returns a deep copy of c, so that a caller can keep changing its
// own copy after handing one to the Store.
func (c *Config) Clone() *Config {
	if c == nil {
		return nil
	}
	n := &Config{Controller: c.Controller}
	n.Directory = cloneEach(c.Directory, func(e ControllerEntry) ControllerEntry {
		e.Replicas = cloneSlice(e.Replicas)
		e.VPCs = cloneSlice(e.VPCs)
		return e
	})
	n.VPCs = cloneEach(c.VPCs, func(v VPC) VPC {
		v.Subnets = cloneSlice(v.Subnets)
		return v
	})
	n.Hosts = cloneEach(c.Hosts, func(h Host) Host {
		h.UnderlayRoutes = cloneSlice(h.UnderlayRoutes)
		return h
	})
	n.Endpoints = cloneSlice(c.Endpoints)
	n.LoadBalancers = cloneEach(c.LoadBalancers, func(lb LoadBalancer) LoadBalancer {
		lb.Backends = cloneSlice(lb.Backends)
		return lb
	})
	n.Routes = cloneSlice(c.Routes)
	n.ExportPolicies = cloneEach(c.ExportPolicies, func(p ExportPolicy) ExportPolicy {
		p.Prefixes = cloneSlice(p.Prefixes)
		p.Protocols = cloneSlice(p.Protocols)
		return p
	})
	n.Peerings = cloneSlice(c.Peerings)
	n.BGP = c.BGP.Clone()
	n.GatewayPools = cloneEach(c.GatewayPools, clonePool)
	return n
}

// cloneSlice copies s, keeping nil as nil so that a clone compares equal
// with reflect.DeepEqual.
func cloneSlice[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}

func cloneEach[T any](s []T, f func(T) T) []T {
	if s == nil {
		return nil
	}
	out := make([]T, len(s))
	for i, v := range s {
		out[i] = f(v)
	}
	return out
}
