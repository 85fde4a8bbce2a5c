package controller

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/p4mesh/p4mesh/internal/replicaset"
)

// Switch port limits of vpc_peering.p4 on v1model: ports are 9 bits, 511
// is the drop port and 255 the CPU port (CPU_PORT in the program), so
// endpoints and uplinks use 1..510 without 255.
const (
	maxSwitchPort = 510
	cpuPort       = 255
	maxVNI        = 1<<24 - 1
)

// Validate reports everything that is wrong with c, each problem prefixed
// with the path of what is wrong, as the YAML file spells it
// ("vpcs[red].subnets[1]: …", "peerings[red->blue]: …"), all of them
// joined with errors.Join. It changes nothing, c included: defaults stay
// implicit (VPC.Gateway applies them).
//
// What it cannot know is left to run time: a peer VPC owned by another
// controller is only checked against this side's VPC when its identity
// arrives (PeeringConflict), and an unconfigured peer side leaves a
// peering inactive rather than invalid.
func (c *Config) Validate() error {
	v := newValidator(c)
	v.owner = map[string]string{}
	v.vpcs = map[string]*VPC{}
	v.hosts = map[string]*Host{}
	v.policies = map[string]*ExportPolicy{}
	v.directory()
	v.checkVPCs()
	v.checkHosts()
	v.checkEndpoints()
	v.checkLoadBalancers()
	v.checkRoutes()
	v.checkExportPolicies()
	v.checkPeerings()
	v.checkBGP()
	v.checkGatewayPools()
	return errors.Join(v.errs...)
}

// PeeringConflict says why a peering of local with a VPC owned by another
// controller must stay inactive, or "" if nothing does: the peer's VNI is
// local's, or one of its subnets overlaps one of local's. Validate can only
// check this for peers owned here; for the others the peering manager
// calls it when the peer side's identity (Peers.WatchPeerSides) arrives,
// and holds the peering inactive with the reason rather than programming
// hosts with ambiguous destinations.
func PeeringConflict(local VPC, peerSubnets []netip.Prefix, peerVNI uint32) string {
	if peerVNI == local.VNI {
		return fmt.Sprintf("peer VNI %d is also the VNI of %s", peerVNI, local.Name)
	}
	for _, p := range peerSubnets {
		for _, s := range local.Subnets {
			if p.Overlaps(s) {
				return fmt.Sprintf("peer subnet %s overlaps %s subnet %s", p, local.Name, s)
			}
		}
	}
	return ""
}

// validator gathers problems of one Validate call and the indexes later
// checks resolve references with. Indexes hold the first definition of a
// name, so a duplicate is reported once and references still resolve.
type validator struct {
	c        *Config
	errs     []error
	owner    map[string]string // directory: VPC → controller
	mine     map[string]bool   // VPCs of this controller's directory entry
	vpcs     map[string]*VPC
	hosts    map[string]*Host
	eps      map[string]*Endpoint
	policies map[string]*ExportPolicy
	ips      map[vpcIP]string // endpoint addresses → endpoint id
	macs     map[vpcMAC]string
	ports    map[hostPort]string
	lbNames  map[string]bool
	fronts   map[frontend]string
	routes   map[RouteKey]bool
	// inc, when checking a change (pending.check), answers for the
	// endpoints the change leaves alone, which are not checked again.
	inc *pending
}

// newValidator makes a validator of c with the per-item indexes empty.
func newValidator(c *Config) *validator {
	return &validator{
		c:       c,
		eps:     map[string]*Endpoint{},
		ips:     map[vpcIP]string{},
		macs:    map[vpcMAC]string{},
		ports:   map[hostPort]string{},
		lbNames: map[string]bool{},
		fronts:  map[frontend]string{},
		routes:  map[RouteKey]bool{},
	}
}

// endpoint resolves a reference to an endpoint.
func (v *validator) endpoint(id string) *Endpoint {
	if e := v.eps[id]; e != nil || v.inc == nil {
		return e
	}
	return v.inc.untouchedEndpoint(id)
}

// ipOwner is the endpoint whose IP an address of a VPC is.
func (v *validator) ipOwner(k vpcIP) (string, bool) {
	if id, ok := v.ips[k]; ok || v.inc == nil {
		return id, ok
	}
	return v.inc.untouchedIPOwner(k)
}

type vpcIP struct {
	vpc string
	ip  netip.Addr
}

func (v *validator) addf(path, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

// item names the i-th element of a list in a path: by its name when it has
// one, so that messages survive reordering, by index otherwise.
func item(list string, i int, name string) string {
	if name == "" {
		return fmt.Sprintf("%s[%d]", list, i)
	}
	return fmt.Sprintf("%s[%s]", list, name)
}

// name checks a name or id: required, and limited to characters that
// cannot be mistaken for the separators of paths and watch keys ('/', ':',
// '->', spaces).
func (v *validator) name(path, field, s string) {
	if s == "" {
		v.addf(path, "%s is required", field)
		return
	}
	if len(s) > 63 {
		v.addf(path, "%s %q is longer than 63 characters", field, s)
		return
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			i > 0 && (r == '-' || r == '_' || r == '.')
		if !ok {
			v.addf(path, "%s %q must start with a letter or digit and contain only letters, digits, '-', '_' and '.'", field, s)
			return
		}
	}
}

// port checks a switch port.
func (v *validator) port(path string, p uint16) bool {
	switch {
	case p == 0:
		v.addf(path, "switch port is required (1..%d)", maxSwitchPort)
	case p == cpuPort:
		v.addf(path, "switch port %d is the CPU port", p)
	case p > maxSwitchPort:
		v.addf(path, "switch port %d is out of range 1..%d", p, maxSwitchPort)
	default:
		return true
	}
	return false
}

// prefix checks an IPv4 prefix with no host bits set.
func (v *validator) prefix(path string, p netip.Prefix) bool {
	switch {
	case !p.IsValid():
		v.addf(path, "prefix is required")
	case !p.Addr().Is4():
		v.addf(path, "%s is not IPv4 (IPv6 is not supported yet)", p)
	case p != p.Masked():
		v.addf(path, "%s has host bits set; did you mean %s?", p, p.Masked())
	default:
		return true
	}
	return false
}

// addr4 checks a required IPv4 address.
func (v *validator) addr4(path, field string, a netip.Addr) bool {
	switch {
	case !a.IsValid():
		v.addf(path, "%s is required", field)
	case !a.Is4():
		v.addf(path, "%s %s is not IPv4 (IPv6 is not supported yet)", field, a)
	case a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		v.addf(path, "%s %s is not a unicast address", field, a)
	default:
		return true
	}
	return false
}

// mac checks a required unicast MAC.
func (v *validator) mac(path, field string, m MAC) bool {
	switch {
	case m.IsZero():
		v.addf(path, "%s is required", field)
	case m.IsMulticast():
		v.addf(path, "%s %s is a multicast address", field, m)
	default:
		return true
	}
	return false
}

func (v *validator) directory() {
	c := v.c
	seen := map[string]int{}
	addrs := map[string]string{} // address → the controller reached there
	for i, e := range c.Directory {
		p := item("directory", i, e.Name)
		v.name(p, "name", e.Name)
		if j, dup := seen[e.Name]; dup && e.Name != "" {
			v.addf(p, "controller defined twice (entries %d and %d)", j, i)
			continue
		}
		seen[e.Name] = i
		v.addresses(p, e, addrs)
		for k, name := range e.VPCs {
			vp := fmt.Sprintf("%s.vpcs[%d]", p, k)
			if name == "" {
				v.addf(vp, "VPC name is required")
				continue
			}
			if other, dup := v.owner[name]; dup {
				if other == e.Name {
					v.addf(vp, "VPC %q listed twice", name)
				} else {
					v.addf(vp, "VPC %q is also owned by %s: every VPC has exactly one owner", name, other)
				}
				continue
			}
			v.owner[name] = e.Name
		}
	}
	if c.Controller == "" {
		v.addf("controller", "this controller's name is required")
		return
	}
	i, ok := seen[c.Controller]
	if !ok {
		v.addf("controller", "%q has no entry in directory", c.Controller)
		return
	}
	v.mine = map[string]bool{}
	for _, name := range c.Directory[i].VPCs {
		v.mine[name] = true
	}
}

// addresses checks where directory entry e (at path p) is reached: its
// address, or its replicas, every one host:port and none shared with
// another replica or controller (addrs, by address), for a client
// dialing it would reach another controller, or one replica twice.
func (v *validator) addresses(p string, e ControllerEntry, addrs map[string]string) {
	check := func(path, a string) {
		if err := replicaset.CheckAddr(a); err != nil {
			v.addf(path, "%v", err)
			return
		}
		switch other, dup := addrs[a]; {
		case dup && other == e.Name:
			v.addf(path, "%s is listed twice", a)
		case dup:
			v.addf(path, "%s is also an address of controller %s", a, other)
		default:
			addrs[a] = e.Name
		}
	}
	if len(e.Replicas) == 0 {
		check(p+".address", e.Address)
		return
	}
	for k, a := range e.Replicas {
		check(fmt.Sprintf("%s.replicas[%d]", p, k), a)
	}
	if e.Address != "" && !slices.Contains(e.Replicas, e.Address) {
		v.addf(p+".address", "%q is not one of replicas: list every replica's address in replicas (address may be left out)", e.Address)
	}
}

func (v *validator) checkVPCs() {
	c := v.c
	vnis := map[uint32]string{}
	for i := range c.VPCs {
		vpc := &c.VPCs[i]
		p := item("vpcs", i, vpc.Name)
		v.name(p, "name", vpc.Name)
		if _, dup := v.vpcs[vpc.Name]; dup && vpc.Name != "" {
			v.addf(p, "VPC defined twice")
			continue
		}
		if vpc.Name != "" {
			v.vpcs[vpc.Name] = vpc
		}
		if v.mine != nil && vpc.Name != "" && !v.mine[vpc.Name] {
			if o, ok := v.owner[vpc.Name]; ok {
				v.addf(p, "owned by %s in the directory, not by %s", o, c.Controller)
			} else {
				v.addf(p, "not in %s's directory entry", c.Controller)
			}
		}
		switch {
		case vpc.VNI == 0 || vpc.VNI > maxVNI:
			v.addf(p+".vni", "%d is out of range 1..%d", vpc.VNI, maxVNI)
		case vnis[vpc.VNI] != "":
			v.addf(p+".vni", "%d is also the VNI of %s", vpc.VNI, vnis[vpc.VNI])
		default:
			vnis[vpc.VNI] = vpc.Name
		}
		if len(vpc.Subnets) == 0 {
			v.addf(p+".subnets", "a VPC needs at least one subnet")
		}
		for k, s := range vpc.Subnets {
			sp := fmt.Sprintf("%s.subnets[%d]", p, k)
			if !v.prefix(sp, s) {
				continue
			}
			for j, o := range vpc.Subnets[:k] {
				if o.IsValid() && s.Overlaps(o) {
					v.addf(sp, "%s overlaps %s (subnets[%d])", s, o, j)
					break
				}
			}
		}
		if vpc.GatewayIP.IsValid() {
			if v.addr4(p+".gateway_ip", "gateway", vpc.GatewayIP) {
				v.hostAddr(p+".gateway_ip", vpc, vpc.GatewayIP)
			}
		} else if len(vpc.Subnets) > 0 && vpc.Subnets[0].IsValid() && !firstHost(vpc.Subnets[0]).IsValid() {
			v.addf(p+".gateway_ip", "required: the first subnet %s has no host address for the default gateway", vpc.Subnets[0])
		}
		if !vpc.GatewayMAC.IsZero() {
			v.mac(p+".gateway_mac", "gateway MAC", vpc.GatewayMAC)
		}
	}
	// A VPC this controller owns by the directory but does not define
	// would be advertised to peers and serve them nothing.
	if v.mine != nil {
		for i, e := range c.Directory {
			if e.Name != c.Controller {
				continue
			}
			for k, name := range e.VPCs {
				if name != "" && v.vpcs[name] == nil {
					v.addf(fmt.Sprintf("%s.vpcs[%d]", item("directory", i, e.Name), k), "VPC %q is owned here but not defined in vpcs", name)
				}
			}
			break
		}
	}
}

// hostAddr checks that a is a host address of one of vpc's subnets: inside
// one, and neither its network nor its broadcast address (which /31 and
// /32 subnets do not reserve). It is what endpoints, VIPs and the gateway
// are allowed to use.
func (v *validator) hostAddr(path string, vpc *VPC, a netip.Addr) bool {
	for _, s := range vpc.Subnets {
		if !s.IsValid() || !s.Contains(a) {
			continue
		}
		if s.Bits() <= 30 && (a == s.Masked().Addr() || a == lastAddr(s)) {
			v.addf(path, "%s is the network or broadcast address of %s", a, s)
			return false
		}
		return true
	}
	v.addf(path, "%s is not inside any subnet of VPC %s", a, vpc.Name)
	return false
}

// lastAddr returns the last address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// ownedVPC resolves a reference to a VPC owned here.
func (v *validator) ownedVPC(path, name string) *VPC {
	if name == "" {
		v.addf(path, "vpc is required")
		return nil
	}
	vpc := v.vpcs[name]
	if vpc == nil {
		if o, ok := v.owner[name]; ok && o != v.c.Controller {
			v.addf(path, "VPC %q is owned by %s, not by this controller", name, o)
		} else {
			v.addf(path, "VPC %q is not defined", name)
		}
	}
	return vpc
}

func (v *validator) checkHosts() {
	underlay := map[netip.Addr]string{}
	for i := range v.c.Hosts {
		h := &v.c.Hosts[i]
		p := item("hosts", i, h.ID)
		v.name(p, "id", h.ID)
		if _, dup := v.hosts[h.ID]; dup && h.ID != "" {
			v.addf(p, "host defined twice")
			continue
		}
		if h.ID != "" {
			v.hosts[h.ID] = h
		}
		if v.addr4(p+".underlay_ip", "underlay IP", h.UnderlayIP) {
			if o, dup := underlay[h.UnderlayIP]; dup {
				v.addf(p+".underlay_ip", "%s is also the underlay IP of host %s", h.UnderlayIP, o)
			} else {
				underlay[h.UnderlayIP] = h.ID
			}
		}
		v.mac(p+".mac", "MAC", h.MAC)
		v.port(p+".uplink_port", h.UplinkPort)
		for k, r := range h.UnderlayRoutes {
			rp := fmt.Sprintf("%s.underlay_routes[%d]", p, k)
			v.prefix(rp+".prefix", r.Prefix)
			v.port(rp+".port", r.Port)
			v.mac(rp+".src_mac", "source MAC", r.SrcMAC)
			v.mac(rp+".dst_mac", "destination MAC", r.DstMAC)
		}
	}
}

func (v *validator) checkEndpoints() {
	for i := range v.c.Endpoints {
		e := &v.c.Endpoints[i]
		v.checkEndpoint(item("endpoints", i, e.ID), e)
	}
}

// checkEndpoint checks endpoint e, at path p, against those checked before
// it: in list order, so that a duplicate is reported on the later one.
func (v *validator) checkEndpoint(p string, e *Endpoint) {
	v.name(p, "id", e.ID)
	if _, dup := v.eps[e.ID]; dup && e.ID != "" {
		v.addf(p, "endpoint defined twice")
		return
	}
	if e.ID != "" {
		v.eps[e.ID] = e
	}
	if !e.Kind.Valid() {
		v.addf(p+".kind", "%q is not one of vm, ilb, vpn, interconnect, router", e.Kind)
	}
	vpc := v.ownedVPC(p+".vpc", e.VPC)
	if v.addr4(p+".ip", "IP", e.IP) && vpc != nil && v.hostAddr(p+".ip", vpc, e.IP) {
		if gw, _ := vpc.Gateway(); e.IP == gw {
			v.addf(p+".ip", "%s is the gateway address of VPC %s", e.IP, vpc.Name)
		} else if o, dup := v.ips[vpcIP{e.VPC, e.IP}]; dup {
			v.addf(p+".ip", "%s is also the IP of endpoint %s in VPC %s", e.IP, o, e.VPC)
		} else {
			v.ips[vpcIP{e.VPC, e.IP}] = e.ID
		}
	}
	if v.mac(p+".mac", "MAC", e.MAC) && vpc != nil {
		if _, gw := vpc.Gateway(); e.MAC == gw {
			v.addf(p+".mac", "%s is the gateway MAC of VPC %s", e.MAC, vpc.Name)
		} else if o, dup := v.macs[vpcMAC{e.VPC, e.MAC}]; dup {
			v.addf(p+".mac", "%s is also the MAC of endpoint %s in VPC %s", e.MAC, o, e.VPC)
		} else {
			v.macs[vpcMAC{e.VPC, e.MAC}] = e.ID
		}
	}
	switch {
	case e.IsAttachment():
		// The switch rewrites what it routes out of the attachment's port
		// to this MAC: without one the on-prem router would drop it all.
		v.mac(p+".router_mac", "router MAC (of the on-prem router behind the "+string(e.Kind)+" attachment)", e.RouterMAC)
	case !e.RouterMAC.IsZero():
		v.addf(p+".router_mac", "only vpn and interconnect attachments have a router MAC, not a %s endpoint", e.Kind)
	}
	if e.Host == "" {
		v.addf(p+".host", "host is required")
		return
	}
	h := v.hosts[e.Host]
	if h == nil {
		v.addf(p+".host", "host %q is not defined", e.Host)
		return
	}
	if !v.port(p+".port", e.Port) {
		return
	}
	switch o, dup := v.ports[hostPort{e.Host, e.Port}]; {
	case dup:
		v.addf(p+".port", "port %d of host %s is also endpoint %s's", e.Port, e.Host, o)
	case e.Port == h.UplinkPort:
		v.addf(p+".port", "port %d is host %s's uplink port", e.Port, e.Host)
	case underlayPort(h, e.Port):
		v.addf(p+".port", "port %d of host %s carries underlay routes", e.Port, e.Host)
	default:
		v.ports[hostPort{e.Host, e.Port}] = e.ID
	}
}

func underlayPort(h *Host, port uint16) bool {
	for _, r := range h.UnderlayRoutes {
		if r.Port == port {
			return true
		}
	}
	return false
}

func (v *validator) checkLoadBalancers() {
	for i := range v.c.LoadBalancers {
		lb := &v.c.LoadBalancers[i]
		v.checkLoadBalancer(item("load_balancers", i, lb.Name), lb)
	}
}

// checkLoadBalancer checks load balancer lb, at path p, against the
// endpoints and the load balancers checked before it.
func (v *validator) checkLoadBalancer(p string, lb *LoadBalancer) {
	v.name(p, "name", lb.Name)
	if v.lbNames[lb.Name] && lb.Name != "" {
		v.addf(p, "load balancer defined twice")
		return
	}
	v.lbNames[lb.Name] = true
	vpc := v.ownedVPC(p+".vpc", lb.VPC)
	if v.addr4(p+".vip", "VIP", lb.VIP) && vpc != nil && v.hostAddr(p+".vip", vpc, lb.VIP) {
		if gw, _ := vpc.Gateway(); lb.VIP == gw {
			v.addf(p+".vip", "%s is the gateway address of VPC %s", lb.VIP, vpc.Name)
		}
		if e, ok := v.ipOwner(vpcIP{lb.VPC, lb.VIP}); ok {
			v.addf(p+".vip", "%s is the IP of endpoint %s", lb.VIP, e)
		}
	}
	protoOK := lb.Protocol == "tcp" || lb.Protocol == "udp"
	if !protoOK {
		v.addf(p+".protocol", "%q is not tcp or udp", lb.Protocol)
	}
	if lb.Port == 0 {
		v.addf(p+".port", "port is required")
	}
	if protoOK && lb.Port != 0 && lb.VIP.IsValid() {
		f := frontend{lb.VPC, lb.VIP, lb.Protocol, lb.Port}
		if o, dup := v.fronts[f]; dup {
			v.addf(p, "%s %s:%d is also load balancer %s's frontend", lb.Protocol, lb.VIP, lb.Port, o)
		} else {
			v.fronts[f] = lb.Name
		}
	}
	// An action selector group with no members behaves differently on
	// every target, so a load balancer always has a backend.
	if len(lb.Backends) == 0 {
		v.addf(p+".backends", "a load balancer needs at least one backend")
	}
	seen := map[string]bool{}
	for k, b := range lb.Backends {
		bp := item(p+".backends", k, b.Endpoint)
		if b.Weight == 0 {
			v.addf(bp+".weight", "weight must be at least 1")
		}
		if b.Endpoint == "" {
			v.addf(bp, "endpoint is required")
			continue
		}
		if seen[b.Endpoint] {
			v.addf(bp, "backend listed twice")
			continue
		}
		seen[b.Endpoint] = true
		switch e := v.endpoint(b.Endpoint); {
		case e == nil:
			v.addf(bp, "endpoint %q is not defined", b.Endpoint)
		case e.VPC != lb.VPC:
			v.addf(bp, "endpoint %q is in VPC %s, not %s", b.Endpoint, e.VPC, lb.VPC)
		}
	}
}

func (v *validator) checkRoutes() {
	for i, r := range v.c.Routes {
		v.checkRoute(routePath(i, r), r)
	}
}

// routePath names the i-th route: by VPC and prefix when it has both.
func routePath(i int, r Route) string {
	if r.VPC != "" && r.Prefix.IsValid() {
		return fmt.Sprintf("routes[%s %s]", r.VPC, r.Prefix)
	}
	return fmt.Sprintf("routes[%d]", i)
}

// checkRoute checks route r, at path p, against the endpoints and the
// routes checked before it.
func (v *validator) checkRoute(p string, r Route) {
	v.ownedVPC(p+".vpc", r.VPC)
	v.prefix(p+".prefix", r.Prefix)
	if r.NextHop != "" {
		switch e := v.endpoint(r.NextHop); {
		case e == nil:
			v.addf(p+".next_hop", "endpoint %q is not defined", r.NextHop)
		case e.VPC != r.VPC:
			v.addf(p+".next_hop", "endpoint %q is in VPC %s, not %s", r.NextHop, e.VPC, r.VPC)
		}
	}
	k := r.Key()
	if v.routes[k] {
		v.addf(p, "route defined twice (same VPC, prefix and next hop)")
	}
	v.routes[k] = true
}

func (v *validator) checkExportPolicies() {
	for i := range v.c.ExportPolicies {
		pol := &v.c.ExportPolicies[i]
		p := item("export_policies", i, pol.Name)
		v.name(p, "name", pol.Name)
		if _, dup := v.policies[pol.Name]; dup && pol.Name != "" {
			v.addf(p, "export policy defined twice")
			continue
		}
		if pol.Name != "" {
			v.policies[pol.Name] = pol
		}
		for k, pf := range pol.Prefixes {
			v.prefix(fmt.Sprintf("%s.prefixes[%d]", p, k), pf)
		}
		protos := map[uint8]bool{}
		for k, name := range pol.Protocols {
			pp := fmt.Sprintf("%s.protocols[%d]", p, k)
			n, ok := IPProtocol(name)
			switch {
			case !ok:
				v.addf(pp, "%q is not tcp, udp, icmp or a protocol number 0..255", name)
			case protos[n]:
				v.addf(pp, "protocol %q listed twice", name)
			}
			protos[n] = true
		}
	}
}

func (v *validator) checkPeerings() {
	type pair struct{ vpc, peer string }
	seen := map[pair]bool{}
	peersOf := map[string][]string{} // local VPC → locally owned peers checked so far
	for _, pr := range v.c.Peerings {
		p := fmt.Sprintf("peerings[%s->%s]", pr.VPC, pr.PeerVPC)
		vpc := v.ownedVPC(p+".vpc", pr.VPC)
		if pr.PeerVPC == "" {
			v.addf(p+".peer_vpc", "peer VPC is required")
		} else if _, known := v.owner[pr.PeerVPC]; !known {
			v.addf(p+".peer_vpc", "VPC %q is not in the directory", pr.PeerVPC)
		} else if pr.PeerVPC == pr.VPC {
			v.addf(p+".peer_vpc", "a VPC cannot peer with itself")
		}
		if pr.ExportPolicy == "" {
			v.addf(p+".export_policy", "export policy is required")
		} else if v.policies[pr.ExportPolicy] == nil {
			v.addf(p+".export_policy", "export policy %q is not defined", pr.ExportPolicy)
		}
		k := pair{pr.VPC, pr.PeerVPC}
		if seen[k] {
			v.addf(p, "peering defined twice: at most one peering per VPC and peer VPC")
			continue
		}
		seen[k] = true
		// A peer owned here is known now: its subnets must not overlap the
		// VPC's, nor those of the VPC's other peers, or a host would have two
		// destinations for one address.
		peer := v.vpcs[pr.PeerVPC]
		if vpc == nil || peer == nil || peer == vpc {
			continue
		}
		if a, b, ok := overlap(vpc.Subnets, peer.Subnets); ok {
			v.addf(p, "%s subnet %s overlaps %s subnet %s", vpc.Name, a, peer.Name, b)
		}
		for _, other := range peersOf[vpc.Name] {
			o := v.vpcs[other]
			if a, b, ok := overlap(peer.Subnets, o.Subnets); ok {
				v.addf(p, "%s subnet %s overlaps %s subnet %s, and %s peers with both", peer.Name, a, o.Name, b, vpc.Name)
			}
		}
		peersOf[vpc.Name] = append(peersOf[vpc.Name], peer.Name)
	}
}

// overlap returns the first pair of valid prefixes of a and b that overlap.
func overlap(a, b []netip.Prefix) (netip.Prefix, netip.Prefix, bool) {
	for _, x := range a {
		for _, y := range b {
			if x.IsValid() && y.IsValid() && x.Overlaps(y) {
				return x, y, true
			}
		}
	}
	return netip.Prefix{}, netip.Prefix{}, false
}
