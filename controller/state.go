package controller

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// Lookups and derived views of a Config: pure functions of an accepted
// (validated) configuration, which the watch services publish as tables.
// They scan the configuration; a caller that looks up in a loop over a
// large configuration should index once.

// VPC returns the VPC named name owned by this controller.
func (c *Config) VPC(name string) (VPC, bool) {
	for _, v := range c.VPCs {
		if v.Name == name {
			return v, true
		}
	}
	return VPC{}, false
}

// Host returns the host with id.
func (c *Config) Host(id string) (Host, bool) {
	for _, h := range c.Hosts {
		if h.ID == id {
			return h, true
		}
	}
	return Host{}, false
}

// Endpoint returns the endpoint with id.
func (c *Config) Endpoint(id string) (Endpoint, bool) {
	for _, e := range c.Endpoints {
		if e.ID == id {
			return e, true
		}
	}
	return Endpoint{}, false
}

// LoadBalancer returns the load balancer named name.
func (c *Config) LoadBalancer(name string) (LoadBalancer, bool) {
	for _, lb := range c.LoadBalancers {
		if lb.Name == name {
			return lb, true
		}
	}
	return LoadBalancer{}, false
}

// ExportPolicy returns the export policy named name.
func (c *Config) ExportPolicy(name string) (ExportPolicy, bool) {
	for _, p := range c.ExportPolicies {
		if p.Name == name {
			return p, true
		}
	}
	return ExportPolicy{}, false
}

// Peering returns this controller's side of the peering of vpc with peer.
func (c *Config) Peering(vpc, peer string) (Peering, bool) {
	for _, p := range c.Peerings {
		if p.VPC == vpc && p.PeerVPC == peer {
			return p, true
		}
	}
	return Peering{}, false
}

// PeeringsOf returns the peerings of vpc configured here, in configuration
// order.
func (c *Config) PeeringsOf(vpc string) []Peering {
	var out []Peering
	for _, p := range c.Peerings {
		if p.VPC == vpc {
			out = append(out, p)
		}
	}
	return out
}

// Owner returns the directory entry of the controller that owns vpc: where
// an OHC pulls vpc's connectivity from.
func (c *Config) Owner(vpc string) (ControllerEntry, bool) {
	for _, e := range c.Directory {
		if slices.Contains(e.VPCs, vpc) {
			return e, true
		}
	}
	return ControllerEntry{}, false
}

// HostsWithEndpointsIn returns, sorted, the hosts that have an endpoint in
// vpc: the hosts whose OHCs need vpc's programming.
func (c *Config) HostsWithEndpointsIn(vpc string) []string {
	var out []string
	for _, e := range c.Endpoints {
		if e.VPC == vpc {
			out = append(out, e.Host)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// VPCsOfHost returns, sorted, the VPCs (owned here) that host has
// endpoints in. For a host of this controller it is the trusted input of
// Authorized.
func (c *Config) VPCsOfHost(host string) []string {
	var out []string
	for _, e := range c.Endpoints {
		if e.Host == host {
			out = append(out, e.VPC)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// EndpointsOnHost returns the endpoints on host, sorted by id.
func (c *Config) EndpointsOnHost(host string) []Endpoint {
	var out []Endpoint
	for _, e := range c.Endpoints {
		if e.Host == host {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Endpoint) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// privateRanges are the RFC 1918 ranges a PrivateOnly policy exports
// within (the IPv4 part of netip.Addr.IsPrivate).
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
}

// ExportedPrefixes returns, sorted and without prefixes covered by others,
// what vpc exports under policy: its subnets intersected with the policy's
// prefixes (all subnets if it has none), and with the private ranges if
// the policy is PrivateOnly. Policy "" is the VPC's own view (all its
// subnets). It is nil if vpc or policy is unknown. These are the sources
// a peer's data plane admits from vpc, and the destinations it may reach.
func (c *Config) ExportedPrefixes(vpc, policy string) []netip.Prefix {
	v, ok := c.VPC(vpc)
	if !ok {
		return nil
	}
	out := slices.Clone(v.Subnets)
	if policy == "" {
		return normalize(out)
	}
	pol, ok := c.ExportPolicy(policy)
	if !ok {
		return nil
	}
	if len(pol.Prefixes) > 0 {
		out = intersect(out, pol.Prefixes)
	}
	if pol.PrivateOnly {
		out = intersect(out, privateRanges)
	}
	return normalize(out)
}

// Exports reports whether vpc exports ip under policy (policy "" being
// the VPC's own view).
func (c *Config) Exports(vpc, policy string, ip netip.Addr) bool {
	for _, p := range c.ExportedPrefixes(vpc, policy) {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ExportsProtocol reports whether policy lets peers reach IP protocol
// proto; it decides which load balancers a policy exports. Policy "" (the
// VPC's own view) and a policy with no protocols let everything through;
// an unknown policy nothing.
func (c *Config) ExportsProtocol(policy string, proto uint8) bool {
	if policy == "" {
		return true
	}
	pol, ok := c.ExportPolicy(policy)
	return ok && pol.exportsProtocol(proto)
}

// exportsProtocol reports whether p lets peers reach IP protocol proto:
// a policy with no protocols lets everything through.
func (p *ExportPolicy) exportsProtocol(proto uint8) bool {
	if len(p.Protocols) == 0 {
		return true
	}
	for _, name := range p.Protocols {
		if n, ok := IPProtocol(name); ok && n == proto {
			return true
		}
	}
	return false
}

// intersect returns the pairwise intersections of a and b: of two
// overlapping prefixes, the longer one is their intersection.
func intersect(a, b []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range a {
		for _, y := range b {
			if !x.Overlaps(y) {
				continue
			}
			if x.Bits() >= y.Bits() {
				out = append(out, x)
			} else {
				out = append(out, y)
			}
		}
	}
	return out
}

// normalize sorts prefixes (by address, then length) and drops those
// covered by another, so equal sets compare equal.
func normalize(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	out := ps[:0]
	for _, p := range ps {
		// Sorted this way a covering prefix comes before what it covers.
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// PublishedService is one connectivity service this controller publishes:
// VPC's destinations, forwarding, load balancers and routes as exported
// under Policy, or, with Policy "", the VPC's own view for its own hosts.
// It is the unit the Connectivity watches are keyed by.
type PublishedService struct {
	VPC    string
	Policy string
}

// PublishedServices returns, sorted, the services this controller
// publishes: (VPC, "") for each VPC it owns, and one per unique (VPC,
// export policy) its peerings use. This is the peering multiplexer: any
// number of peers of a VPC under one policy share one service, so the work
// of publishing grows with policies, never with VPC pairs.
func (c *Config) PublishedServices() []PublishedService {
	var out []PublishedService
	for _, v := range c.VPCs {
		out = append(out, PublishedService{VPC: v.Name})
	}
	for _, p := range c.Peerings {
		out = append(out, PublishedService{VPC: p.VPC, Policy: p.ExportPolicy})
	}
	slices.SortFunc(out, func(a, b PublishedService) int {
		return cmp.Or(cmp.Compare(a.VPC, b.VPC), cmp.Compare(a.Policy, b.Policy))
	})
	return slices.Compact(out)
}

// Authorized decides whether a host whose endpoints are in hostVPCs may
// watch the service (servedVPC, policy) of this controller c, and says why
// not when it may not:
//   - (servedVPC, ""), the VPC's own view, only if the host has an
//     endpoint in servedVPC;
//   - (servedVPC, policy) only if the host has an endpoint in some VPC P
//     such that c has a peering servedVPC → P whose export policy is
//     policy: what servedVPC exports to P is exactly what P's hosts see.
//
// Trust: with mutual TLS the host is its certificate's identity, and its
// VPCs are what this controller's configuration places it in plus what
// the owners of other VPCs vouch for in their peer sides (PeerSide.hosts):
// nothing the request says. Only under --insecure does the caller pass the
// VPC the asking OHC claims (WatchRequest.peer_vpc); even then the claim
// can only reveal what servedVPC already exports to the claimed VPC.
func Authorized(hostVPCs []string, servedVPC, policy string, c *Config) (bool, string) {
	if _, ok := c.VPC(servedVPC); !ok {
		return false, fmt.Sprintf("VPC %q is not owned by controller %s", servedVPC, c.Controller)
	}
	if policy == "" {
		if slices.Contains(hostVPCs, servedVPC) {
			return true, ""
		}
		return false, fmt.Sprintf("the host has no endpoint in VPC %s", servedVPC)
	}
	for _, p := range c.Peerings {
		if p.VPC == servedVPC && p.ExportPolicy == policy && slices.Contains(hostVPCs, p.PeerVPC) {
			return true, ""
		}
	}
	if len(hostVPCs) == 0 {
		return false, fmt.Sprintf("the host names no VPC peered with %s", servedVPC)
	}
	return false, fmt.Sprintf("VPC %s exports nothing under policy %q to %v", servedVPC, policy, hostVPCs)
}

// HostsOfVPC returns the hosts holding an endpoint of vpc, sorted.
func (c *Config) HostsOfVPC(vpc string) []string {
	var out []string
	for _, e := range c.Endpoints {
		if e.VPC == vpc {
			out = append(out, e.Host)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
