// Package gnmi puts p4mesh's controller behind gNMI: the YANG model
// (yang/p4mesh.yang), its ygot-generated Go structs (package oc), and the
// conversions between those structs and the controller's own model,
// controller.Config, that the controller validates, persists and serves.
//
// The controller's model stays the one source of truth; the YANG model is
// how gNMI clients see and change it. FromConfig and ToConfig convert
// losslessly (order of lists included), Validate checks a whole candidate
// configuration the way a gNMI Set must before anything is applied, and
// WithState adds the operational state a Get or Subscribe reports.
// Errors name the YANG path of what is wrong, as gNMI clients spell it:
// /p4mesh/vpcs/vpc[name=red]/config/subnets.
package gnmi

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"time"

	"github.com/openconfig/ygot/ygot"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/gnmi/oc"
)

// DefaultMaxMsgSize is the gRPC message size limit, each way, of the
// controller's gNMI server and of p4meshctl. A whole configuration travels
// in one message (a Set replacing /, a Get of /), at about 287 bytes per
// endpoint as JSON_IETF: gRPC's default of 4 MB stops at some 14k
// endpoints; 512 MiB carries 1M with room for state and the rest.
const DefaultMaxMsgSize = 512 << 20

// dropNextHop is the next hop of a route that drops what it matches, which
// controller.Route spells "". It cannot be an endpoint's id.
const dropNextHop = "-"

// FromConfig returns c in the YANG model: configuration only, with state
// containers left empty (WithState fills them). Lists keep c's order.
//
// c need not be valid, but it must fit the model: a key defined twice, an
// endpoint kind or load-balancer protocol the model has no value for, a
// peering preference beyond int32 are errors naming the YANG path. c is not modified and the result shares
// nothing with it.
func FromConfig(c *controller.Config) (*oc.Device, error) {
	if c == nil {
		return nil, errors.New("no configuration")
	}
	var errs []error
	fail := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	d := &oc.Device{}
	m := d.GetOrCreateP4Mesh()

	if c.Controller != "" {
		m.GetOrCreateController().GetOrCreateConfig().Name = str(c.Controller)
	}
	for _, e := range c.Directory {
		x, err := m.GetOrCreateDirectory().GetOrCreateControllers().AppendNewController(e.Name)
		if err != nil {
			fail(directoryPath(e.Name), "controller defined twice")
			continue
		}
		cfg := x.GetOrCreateConfig()
		cfg.Name, cfg.Address, cfg.Replicas, cfg.Vpcs = str(e.Name), str(e.Address), cloneSlice(e.Replicas), cloneSlice(e.VPCs)
	}
	for _, v := range c.VPCs {
		x, err := m.GetOrCreateVpcs().AppendNewVpc(v.Name)
		if err != nil {
			fail(vpcPath(v.Name), "VPC defined twice")
			continue
		}
		cfg := x.GetOrCreateConfig()
		cfg.Name, cfg.Vni = str(v.Name), ygot.Uint32(v.VNI)
		cfg.Subnets = texts(v.Subnets)
		cfg.GatewayIp, cfg.GatewayMac = str(text(v.GatewayIP)), str(macText(v.GatewayMAC))
	}
	for _, h := range c.Hosts {
		x, err := m.GetOrCreateHosts().AppendNewHost(h.ID)
		if err != nil {
			fail(hostPath(h.ID), "host defined twice")
			continue
		}
		cfg := x.GetOrCreateConfig()
		cfg.Id, cfg.UnderlayIp, cfg.Mac = str(h.ID), str(text(h.UnderlayIP)), str(macText(h.MAC))
		cfg.UplinkPort = ygot.Uint16(h.UplinkPort)
		for _, r := range h.UnderlayRoutes {
			p := text(r.Prefix)
			y, err := x.GetOrCreateUnderlayRoutes().AppendNewUnderlayRoute(p)
			if err != nil {
				fail(underlayRoutePath(h.ID, p), "underlay route defined twice")
				continue
			}
			rc := y.GetOrCreateConfig()
			rc.Prefix, rc.Port = str(p), ygot.Uint16(r.Port)
			rc.SrcMac, rc.DstMac = str(macText(r.SrcMAC)), str(macText(r.DstMAC))
		}
	}
	for _, e := range c.Endpoints {
		x, err := m.GetOrCreateEndpoints().AppendNewEndpoint(e.ID)
		if err != nil {
			fail(endpointPath(e.ID), "endpoint defined twice")
			continue
		}
		cfg := x.GetOrCreateConfig()
		cfg.Id, cfg.Vpc, cfg.Host = str(e.ID), str(e.VPC), str(e.Host)
		cfg.Ip, cfg.Mac, cfg.Port = str(text(e.IP)), str(macText(e.MAC)), ygot.Uint16(e.Port)
		kind, ok := enumOf[oc.E_P4Mesh_EndpointKind](string(e.Kind))
		if !ok {
			fail(endpointPath(e.ID)+"/config/kind", "%q is not one of vm, ilb, vpn, interconnect, router", e.Kind)
		}
		cfg.Kind = kind
		if !e.RouterMAC.IsZero() {
			cfg.RouterMac = str(macText(e.RouterMAC))
		}
	}
	for _, lb := range c.LoadBalancers {
		x, err := m.GetOrCreateLoadBalancers().AppendNewLoadBalancer(lb.Name)
		if err != nil {
			fail(lbPath(lb.Name), "load balancer defined twice")
			continue
		}
		cfg := x.GetOrCreateConfig()
		cfg.Name, cfg.Vpc, cfg.Vip, cfg.Port = str(lb.Name), str(lb.VPC), str(text(lb.VIP)), ygot.Uint16(lb.Port)
		proto, ok := enumOf[oc.E_P4Mesh_TransportProtocol](lb.Protocol)
		if !ok {
			fail(lbPath(lb.Name)+"/config/protocol", "%q is not tcp or udp", lb.Protocol)
		}
		cfg.Protocol = proto
		for _, b := range lb.Backends {
			y, err := x.GetOrCreateBackends().AppendNewBackend(b.Endpoint)
			if err != nil {
				fail(backendPath(lb.Name, b.Endpoint), "backend listed twice")
				continue
			}
			// The weight is always written, 1 included: an explicit 0 must
			// reach validation rather than turn into the default.
			y.GetOrCreateConfig().Endpoint, y.GetOrCreateConfig().Weight = str(b.Endpoint), ygot.Uint32(b.Weight)
		}
	}
	for _, r := range c.Routes {
		p, nh := text(r.Prefix), r.NextHop
		switch nh {
		case "":
			nh = dropNextHop
		case dropNextHop:
			fail(routePath(r.VPC, p, nh), "next hop %q is reserved for drop routes (no next hop)", nh)
			continue
		}
		x, err := m.GetOrCreateRoutes().AppendNewRoute(r.VPC, p, nh)
		if err != nil {
			fail(routePath(r.VPC, p, nh), "route defined twice (same VPC, prefix and next hop)")
			continue
		}
		cfg := x.GetOrCreateConfig()
		cfg.Vpc, cfg.Prefix, cfg.NextHop = str(r.VPC), str(p), str(nh)
		if r.Priority != 0 {
			cfg.Priority = ygot.Uint32(r.Priority)
		}
	}
	for _, pol := range c.ExportPolicies {
		x, err := m.GetOrCreateExportPolicies().AppendNewExportPolicy(pol.Name)
		if err != nil {
			fail(policyPath(pol.Name), "export policy defined twice")
			continue
		}
		cfg := x.GetOrCreateConfig()
		cfg.Name, cfg.Prefixes, cfg.Protocols = str(pol.Name), texts(pol.Prefixes), cloneSlice(pol.Protocols)
		if pol.PrivateOnly {
			cfg.PrivateOnly = ygot.Bool(true)
		}
	}
	for _, pr := range c.Peerings {
		x, err := m.GetOrCreatePeerings().AppendNewPeering(pr.VPC, pr.PeerVPC)
		if err != nil {
			fail(peeringPath(pr.VPC, pr.PeerVPC), "peering defined twice")
			continue
		}
		cfg := x.GetOrCreateConfig()
		cfg.Vpc, cfg.PeerVpc, cfg.ExportPolicy = str(pr.VPC), str(pr.PeerVPC), str(pr.ExportPolicy)
		switch {
		case pr.Preference < math.MinInt32 || pr.Preference > math.MaxInt32:
			fail(peeringPath(pr.VPC, pr.PeerVPC)+"/config/preference", "%d is out of range %d..%d", pr.Preference, math.MinInt32, math.MaxInt32)
		case pr.Preference != 0:
			cfg.Preference = ygot.Int32(int32(pr.Preference))
		}
		if pr.ExportCustomRoutes {
			cfg.ExportCustomRoutes = ygot.Bool(true)
		}
	}
	if b := c.BGP; b != nil {
		g := m.GetOrCreateBgp()
		cfg := g.GetOrCreateConfig()
		if b.LocalAS != 0 {
			cfg.LocalAs = ygot.Uint32(b.LocalAS)
		}
		cfg.RouterId, cfg.ListenAddress = str(text(b.RouterID)), str(text(b.ListenAddress))
		if b.ListenPort != 0 {
			cfg.ListenPort = ygot.Int32(b.ListenPort)
		}
		for _, o := range b.VPCs {
			x, err := g.GetOrCreateVpcs().AppendNewVpc(o.VPC)
			if err != nil {
				fail(bgpVPCPath(o.VPC), "VPC has two entries")
				continue
			}
			vc := x.GetOrCreateConfig()
			vc.Vpc, vc.RouterId = str(o.VPC), str(text(o.RouterID))
			if o.LocalAS != 0 {
				vc.LocalAs = ygot.Uint32(o.LocalAS)
			}
		}
		for _, n := range b.Neighbors {
			x, err := g.GetOrCreateNeighbors().AppendNewNeighbor(n.VPC, text(n.Address))
			if err != nil {
				fail(neighborPath(n.VPC, text(n.Address)), "neighbor defined twice")
				continue
			}
			nc := x.GetOrCreateConfig()
			nc.Vpc, nc.Address, nc.Attachment, nc.AuthPassword = str(n.VPC), str(text(n.Address)), str(n.Attachment), str(n.Password)
			set32 := func(v uint32) *uint32 {
				if v == 0 {
					return nil
				}
				return ygot.Uint32(v)
			}
			set16 := func(v uint16) *uint16 {
				if v == 0 {
					return nil
				}
				return ygot.Uint16(v)
			}
			nc.PeerAs, nc.LocalAs, nc.MaxPrefixes = set32(n.PeerAS), set32(n.LocalAS), set32(n.MaxPrefixes)
			nc.HoldTime, nc.Keepalive, nc.Port = set16(n.HoldTime), set16(n.Keepalive), set16(n.Port)
			if n.GracefulRestart {
				nc.GracefulRestart = ygot.Bool(true)
			}
			for _, f := range n.Import {
				fx, err := x.GetOrCreateImportFilters().AppendNewImportFilter(text(f.Prefix))
				if err != nil {
					fail(neighborPath(n.VPC, text(n.Address))+"/import-filters", "import filter %s defined twice", text(f.Prefix))
					continue
				}
				fc := fx.GetOrCreateConfig()
				fc.Prefix = str(text(f.Prefix))
				if f.GE != 0 {
					fc.Ge = ygot.Uint8(f.GE)
				}
				if f.LE != 0 {
					fc.Le = ygot.Uint8(f.LE)
				}
			}
		}
	}
	for _, gp := range c.GatewayPools {
		x, err := m.GetOrCreateGatewayPools().AppendNewGatewayPool(gp.Name)
		if err != nil {
			fail(poolPath(gp.Name), "gateway pool defined twice")
			continue
		}
		cfg := x.GetOrCreateConfig()
		cfg.Name, cfg.Members, cfg.Vpcs = str(gp.Name), cloneSlice(gp.Members), cloneSlice(gp.VPCs)
		ms := func(field string, d time.Duration) *uint32 {
			switch {
			case d == 0:
				return nil
			case d < 0 || d > math.MaxUint32*time.Millisecond || d%time.Millisecond != 0:
				fail(poolPath(gp.Name)+"/config/"+field, "%s is not a whole number of milliseconds 0..%d", d, uint32(math.MaxUint32))
				return nil
			}
			return ygot.Uint32(uint32(d / time.Millisecond))
		}
		cfg.HealthTimeout, cfg.Heartbeat = ms("health-timeout", gp.HealthTimeout), ms("heartbeat", gp.Heartbeat)
		cfg.PromoteWindow, cfg.IdleTimeout = ms("promote-window", gp.PromoteWindow), ms("idle-timeout", gp.IdleTimeout)
		if gp.PromotePackets != 0 {
			cfg.PromotePackets = ygot.Uint32(gp.PromotePackets)
		}
		if gp.DirectAbovePPS != 0 {
			cfg.DirectAbovePps = ygot.Uint64(gp.DirectAbovePPS)
		}
		if gp.PoolBelowPPS != 0 {
			cfg.PoolBelowPps = ygot.Uint64(gp.PoolBelowPPS)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return d, nil
}

// ToConfig returns the controller configuration d describes. It reads
// configuration only; state is ignored, and so are list entries that have
// state but no config container (routes learned, not configured). A list
// entry's key is authoritative: a config leaf that repeats it must agree.
// Unset leaves take the model's defaults (backend weight 1, everything
// else zero, which controller.Config reads as unset).
//
// It does not validate (Validate does): it fails only on what
// controller.Config cannot hold — an address, prefix or MAC that does not
// parse, or a key its config contradicts. Every error names its YANG
// path; all of them are reported, joined.
func ToConfig(d *oc.Device) (*controller.Config, error) {
	c := &controller.Config{}
	m := d.GetP4Mesh()
	if m == nil {
		return c, nil
	}
	var cv converter
	c.Controller = m.GetController().GetConfig().GetName()

	for _, x := range directoryList(m) {
		p := directoryPath(x.GetName())
		cfg := x.GetConfig()
		cv.key(p+"/config/name", x.GetName(), cfg.GetName)
		c.Directory = append(c.Directory, controller.ControllerEntry{
			Name: x.GetName(), Address: cfg.GetAddress(), Replicas: cloneSlice(cfg.GetReplicas()), VPCs: cloneSlice(cfg.GetVpcs()),
		})
	}
	for _, x := range vpcList(m) {
		p := vpcPath(x.GetName())
		cfg := x.GetConfig()
		cv.key(p+"/config/name", x.GetName(), cfg.GetName)
		v := controller.VPC{
			Name:       x.GetName(),
			VNI:        cfg.GetVni(),
			GatewayIP:  cv.addr(p+"/config/gateway-ip", cfg.GetGatewayIp()),
			GatewayMAC: cv.mac(p+"/config/gateway-mac", cfg.GetGatewayMac()),
		}
		v.Subnets = cv.prefixes(p+"/config/subnets", cfg.GetSubnets())
		c.VPCs = append(c.VPCs, v)
	}
	for _, x := range hostList(m) {
		p := hostPath(x.GetId())
		cfg := x.GetConfig()
		cv.key(p+"/config/id", x.GetId(), cfg.GetId)
		h := controller.Host{
			ID:         x.GetId(),
			UnderlayIP: cv.addr(p+"/config/underlay-ip", cfg.GetUnderlayIp()),
			MAC:        cv.mac(p+"/config/mac", cfg.GetMac()),
			UplinkPort: cfg.GetUplinkPort(),
		}
		for _, y := range underlayRouteList(x) {
			rp := underlayRoutePath(x.GetId(), y.GetPrefix())
			rc := y.GetConfig()
			cv.key(rp+"/config/prefix", y.GetPrefix(), rc.GetPrefix)
			h.UnderlayRoutes = append(h.UnderlayRoutes, controller.UnderlayRoute{
				Prefix: cv.prefix(rp+"/prefix", y.GetPrefix()),
				Port:   rc.GetPort(),
				SrcMAC: cv.mac(rp+"/config/src-mac", rc.GetSrcMac()),
				DstMAC: cv.mac(rp+"/config/dst-mac", rc.GetDstMac()),
			})
		}
		c.Hosts = append(c.Hosts, h)
	}
	for _, x := range endpointList(m) {
		p := endpointPath(x.GetId())
		cfg := x.GetConfig()
		cv.key(p+"/config/id", x.GetId(), cfg.GetId)
		c.Endpoints = append(c.Endpoints, controller.Endpoint{
			ID:   x.GetId(),
			VPC:  cfg.GetVpc(),
			Kind: controller.EndpointKind(cv.enum(p+"/config/kind", cfg.GetKind())),
			IP:   cv.addr(p+"/config/ip", cfg.GetIp()),
			MAC:  cv.mac(p+"/config/mac", cfg.GetMac()),
			Host: cfg.GetHost(),
			Port: cfg.GetPort(),
			// Validate says which kinds must have one.
			RouterMAC: cv.mac(p+"/config/router-mac", cfg.GetRouterMac()),
		})
	}
	for _, x := range lbList(m) {
		p := lbPath(x.GetName())
		cfg := x.GetConfig()
		cv.key(p+"/config/name", x.GetName(), cfg.GetName)
		lb := controller.LoadBalancer{
			Name:     x.GetName(),
			VPC:      cfg.GetVpc(),
			VIP:      cv.addr(p+"/config/vip", cfg.GetVip()),
			Protocol: cv.enum(p+"/config/protocol", cfg.GetProtocol()),
			Port:     cfg.GetPort(),
		}
		for _, y := range backendList(x) {
			bc := y.GetConfig()
			cv.key(backendPath(x.GetName(), y.GetEndpoint())+"/config/endpoint", y.GetEndpoint(), bc.GetEndpoint)
			w := uint32(1) // the model's default
			if bc != nil && bc.Weight != nil {
				w = *bc.Weight
			}
			lb.Backends = append(lb.Backends, controller.LBBackend{Endpoint: y.GetEndpoint(), Weight: w})
		}
		c.LoadBalancers = append(c.LoadBalancers, lb)
	}
	for _, x := range routeList(m) {
		cfg := x.GetConfig()
		if cfg == nil && x.GetState() != nil {
			continue // learned, not configured
		}
		p := routePath(x.GetVpc(), x.GetPrefix(), x.GetNextHop())
		cv.key(p+"/config/vpc", x.GetVpc(), cfg.GetVpc)
		cv.key(p+"/config/prefix", x.GetPrefix(), cfg.GetPrefix)
		cv.key(p+"/config/next-hop", x.GetNextHop(), cfg.GetNextHop)
		nh := x.GetNextHop()
		switch nh {
		case dropNextHop:
			nh = ""
		case "":
			cv.addf(p+"/next-hop", "next hop is required: an endpoint id, or %q to drop", dropNextHop)
		}
		c.Routes = append(c.Routes, controller.Route{
			VPC:      x.GetVpc(),
			Prefix:   cv.prefix(p+"/prefix", x.GetPrefix()),
			NextHop:  nh,
			Priority: cfg.GetPriority(),
		})
	}
	for _, x := range policyList(m) {
		p := policyPath(x.GetName())
		cfg := x.GetConfig()
		cv.key(p+"/config/name", x.GetName(), cfg.GetName)
		c.ExportPolicies = append(c.ExportPolicies, controller.ExportPolicy{
			Name:        x.GetName(),
			Prefixes:    cv.prefixes(p+"/config/prefixes", cfg.GetPrefixes()),
			PrivateOnly: cfg.GetPrivateOnly(),
			Protocols:   cloneSlice(cfg.GetProtocols()),
		})
	}
	for _, x := range peeringList(m) {
		p := peeringPath(x.GetVpc(), x.GetPeerVpc())
		cfg := x.GetConfig()
		cv.key(p+"/config/vpc", x.GetVpc(), cfg.GetVpc)
		cv.key(p+"/config/peer-vpc", x.GetPeerVpc(), cfg.GetPeerVpc)
		c.Peerings = append(c.Peerings, controller.Peering{
			VPC: x.GetVpc(), PeerVPC: x.GetPeerVpc(), ExportPolicy: cfg.GetExportPolicy(), Preference: int(cfg.GetPreference()),
			ExportCustomRoutes: cfg.GetExportCustomRoutes(),
		})
	}

	if g := m.GetBgp(); g != nil && (g.GetConfig() != nil || len(neighborList(m)) > 0 || g.GetVpcs() != nil && g.GetVpcs().Vpc.Len() > 0) {
		cfg := g.GetConfig()
		b := &controller.BGP{
			LocalAS:       cfg.GetLocalAs(),
			RouterID:      cv.addr("/p4mesh/bgp/config/router-id", cfg.GetRouterId()),
			ListenAddress: cv.addr("/p4mesh/bgp/config/listen-address", cfg.GetListenAddress()),
			ListenPort:    cfg.GetListenPort(),
		}
		if g.GetVpcs() != nil {
			for _, x := range g.GetVpcs().Vpc.Values() {
				p := bgpVPCPath(x.GetVpc())
				vc := x.GetConfig()
				cv.key(p+"/config/vpc", x.GetVpc(), vc.GetVpc)
				b.VPCs = append(b.VPCs, controller.BGPVPC{
					VPC: x.GetVpc(), LocalAS: vc.GetLocalAs(), RouterID: cv.addr(p+"/config/router-id", vc.GetRouterId()),
				})
			}
		}
		for _, x := range neighborList(m) {
			p := neighborPath(x.GetVpc(), x.GetAddress())
			nc := x.GetConfig()
			cv.key(p+"/config/vpc", x.GetVpc(), nc.GetVpc)
			cv.key(p+"/config/address", x.GetAddress(), nc.GetAddress)
			n := controller.BGPNeighbor{
				VPC: x.GetVpc(), Address: cv.addr(p+"/address", x.GetAddress()), Attachment: nc.GetAttachment(),
				PeerAS: nc.GetPeerAs(), LocalAS: nc.GetLocalAs(), HoldTime: nc.GetHoldTime(), Keepalive: nc.GetKeepalive(),
				Password: nc.GetAuthPassword(), MaxPrefixes: nc.GetMaxPrefixes(), GracefulRestart: nc.GetGracefulRestart(),
				Port: nc.GetPort(),
			}
			if x.GetImportFilters() != nil {
				for _, f := range x.GetImportFilters().ImportFilter.Values() {
					fp := p + keyed("/import-filters/import-filter", "prefix", f.GetPrefix())
					cv.key(fp+"/config/prefix", f.GetPrefix(), f.GetConfig().GetPrefix)
					n.Import = append(n.Import, controller.BGPPrefixFilter{
						Prefix: cv.prefix(fp+"/prefix", f.GetPrefix()), GE: f.GetConfig().GetGe(), LE: f.GetConfig().GetLe(),
					})
				}
			}
			b.Neighbors = append(b.Neighbors, n)
		}
		c.BGP = b
	}
	for _, x := range poolList(m) {
		p := poolPath(x.GetName())
		cfg := x.GetConfig()
		cv.key(p+"/config/name", x.GetName(), cfg.GetName)
		ms := func(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }
		c.GatewayPools = append(c.GatewayPools, controller.GatewayPool{
			Name: x.GetName(), Members: cloneSlice(cfg.GetMembers()), VPCs: cloneSlice(cfg.GetVpcs()),
			HealthTimeout: ms(cfg.GetHealthTimeout()), Heartbeat: ms(cfg.GetHeartbeat()),
			PromotePackets: cfg.GetPromotePackets(), PromoteWindow: ms(cfg.GetPromoteWindow()), IdleTimeout: ms(cfg.GetIdleTimeout()),
			DirectAbovePPS: cfg.GetDirectAbovePps(), PoolBelowPPS: cfg.GetPoolBelowPps(),
		})
	}
	if err := errors.Join(cv.errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks d as a whole candidate configuration, as a gNMI Set must
// before it applies anything: first against the YANG schema with ygot
// (types, ranges, patterns, enumerations, lists), then its conversion
// (ToConfig), then the controller's own rules (controller.Config.Validate:
// VNI clashes, overlapping subnets, unknown references, …). It stops at
// the first stage that fails and reports all of that stage's problems,
// each naming its YANG path with keys. References (leafrefs) are checked
// by the controller's rules rather than by ygot: they name what is missing,
// and know that a peer VPC may be another controller's.
func Validate(d *oc.Device) error {
	if d == nil {
		return errors.New("no configuration")
	}
	if err := checkSchema(d); err != nil {
		return err
	}
	c, err := ToConfig(d)
	if err != nil {
		return err
	}
	return ValidateConfig(c)
}

// CheckSchema is the first stage of Validate alone: d against the YANG
// schema, leafrefs left to the controller. It looks at nothing outside d,
// so a tree holding only some list entries can be checked by itself: what
// it reports about an entry is what it reports about the same entry in a
// whole tree.
func CheckSchema(d *oc.Device) error {
	if d == nil {
		return errors.New("no configuration")
	}
	return checkSchema(d)
}

// ValidateConfig is the last stage of Validate alone: the controller's
// rules over c, a whole configuration, with errors naming YANG paths.
func ValidateConfig(c *controller.Config) error {
	if err := c.Validate(); err != nil {
		return translateErrors(c, err)
	}
	return nil
}

// converter gathers what ToConfig cannot convert, by path.
type converter struct{ errs []error }

func (cv *converter) addf(path, format string, args ...any) {
	cv.errs = append(cv.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

// key checks that a config leaf repeating a list key, if set, agrees with
// the key. get is a getter of the config container: a method value, safe
// on a nil container.
func (cv *converter) key(path, key string, get func() string) {
	if v := get(); v != "" && v != key {
		cv.addf(path, "%q differs from the list key %q", v, key)
	}
}

func (cv *converter) addr(path, s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		cv.addf(path, "%q is not an IP address", s)
	}
	return a
}

func (cv *converter) prefix(path, s string) netip.Prefix {
	if s == "" {
		return netip.Prefix{}
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		cv.addf(path, "%q is not an IP prefix (address/length)", s)
	}
	return p
}

func (cv *converter) prefixes(path string, ss []string) []netip.Prefix {
	if ss == nil {
		return nil
	}
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		if s == "" {
			cv.addf(path, "empty prefix")
			continue
		}
		out[i] = cv.prefix(path, s)
	}
	return out
}

func (cv *converter) mac(path, s string) controller.MAC {
	if s == "" {
		return controller.MAC{}
	}
	m, err := controller.ParseMAC(s)
	if err != nil {
		cv.addf(path, "%q is not a MAC address", s)
	}
	return m
}

// enum returns the YANG name of an enumerated value, "" for unset.
func (cv *converter) enum(path string, e ygot.GoEnum) string {
	if reflect.ValueOf(e).Int() == 0 {
		return ""
	}
	name, err := ygot.EnumName(e)
	if err != nil {
		cv.addf(path, "%v", err)
	}
	return name
}

// enumOf returns the value of E named name in the YANG model, the unset
// value for "".
func enumOf[E interface {
	~int64
	ygot.GoEnum
}](name string) (E, bool) {
	var zero E
	if name == "" {
		return zero, true
	}
	for v, def := range zero.ΛMap()[reflect.TypeOf(zero).Name()] {
		if def.Name == name {
			return E(v), true
		}
	}
	return zero, false
}

// str returns a pointer to s, or nil for "" (an unset leaf).
func str(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// text formats an address or prefix, the invalid (unset) one as "".
func text[T interface {
	IsValid() bool
	String() string
}](v T) string {
	if !v.IsValid() {
		return ""
	}
	return v.String()
}

func texts(ps []netip.Prefix) []string {
	if ps == nil {
		return nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = text(p)
	}
	return out
}

func macText(m controller.MAC) string {
	if m.IsZero() {
		return ""
	}
	return m.String()
}

func cloneSlice[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}

// YANG paths of list entries, in gNMI's string form.

func directoryPath(name string) string {
	return keyed("/p4mesh/directory/controllers/controller", "name", name)
}
func vpcPath(name string) string { return keyed("/p4mesh/vpcs/vpc", "name", name) }
func hostPath(id string) string  { return keyed("/p4mesh/hosts/host", "id", id) }
func endpointPath(id string) string {
	return keyed("/p4mesh/endpoints/endpoint", "id", id)
}
func lbPath(name string) string {
	return keyed("/p4mesh/load-balancers/load-balancer", "name", name)
}
func policyPath(name string) string {
	return keyed("/p4mesh/export-policies/export-policy", "name", name)
}
func underlayRoutePath(host, prefix string) string {
	return keyed(hostPath(host)+"/underlay-routes/underlay-route", "prefix", prefix)
}
func backendPath(lb, endpoint string) string {
	return keyed(lbPath(lb)+"/backends/backend", "endpoint", endpoint)
}
func routePath(vpc, prefix, nextHop string) string {
	return keyed("/p4mesh/routes/route", "vpc", vpc, "prefix", prefix, "next-hop", nextHop)
}
func peeringPath(vpc, peer string) string {
	return keyed("/p4mesh/peerings/peering", "vpc", vpc, "peer-vpc", peer)
}
func bgpVPCPath(vpc string) string { return keyed("/p4mesh/bgp/vpcs/vpc", "vpc", vpc) }
func poolPath(name string) string {
	return keyed("/p4mesh/gateway-pools/gateway-pool", "name", name)
}

func neighborPath(vpc, addr string) string {
	return keyed("/p4mesh/bgp/neighbors/neighbor", "vpc", vpc, "address", addr)
}

var keyEscaper = strings.NewReplacer(`\`, `\\`, `]`, `\]`)

// keyed appends [key=value] pairs to a list's path, escaping what the gNMI
// path syntax reserves inside a key value.
func keyed(list string, kv ...string) string {
	var b strings.Builder
	b.WriteString(list)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, "[%s=%s]", kv[i], keyEscaper.Replace(kv[i+1]))
	}
	return b.String()
}

// The entries of each list, in order; none where a container on the way is
// absent. (The generated GetX methods of lists look an entry up by key.)

func directoryList(m *oc.P4Mesh_P4Mesh) []*oc.P4Mesh_P4Mesh_Directory_Controllers_Controller {
	if m.GetDirectory().GetControllers() == nil {
		return nil
	}
	return m.Directory.Controllers.Controller.Values()
}

func vpcList(m *oc.P4Mesh_P4Mesh) []*oc.P4Mesh_P4Mesh_Vpcs_Vpc {
	if m.GetVpcs() == nil {
		return nil
	}
	return m.Vpcs.Vpc.Values()
}

func hostList(m *oc.P4Mesh_P4Mesh) []*oc.P4Mesh_P4Mesh_Hosts_Host {
	if m.GetHosts() == nil {
		return nil
	}
	return m.Hosts.Host.Values()
}

func underlayRouteList(h *oc.P4Mesh_P4Mesh_Hosts_Host) []*oc.P4Mesh_P4Mesh_Hosts_Host_UnderlayRoutes_UnderlayRoute {
	if h.GetUnderlayRoutes() == nil {
		return nil
	}
	return h.UnderlayRoutes.UnderlayRoute.Values()
}

func endpointList(m *oc.P4Mesh_P4Mesh) []*oc.P4Mesh_P4Mesh_Endpoints_Endpoint {
	if m.GetEndpoints() == nil {
		return nil
	}
	return m.Endpoints.Endpoint.Values()
}

func lbList(m *oc.P4Mesh_P4Mesh) []*oc.P4Mesh_P4Mesh_LoadBalancers_LoadBalancer {
	if m.GetLoadBalancers() == nil {
		return nil
	}
	return m.LoadBalancers.LoadBalancer.Values()
}

func backendList(lb *oc.P4Mesh_P4Mesh_LoadBalancers_LoadBalancer) []*oc.P4Mesh_P4Mesh_LoadBalancers_LoadBalancer_Backends_Backend {
	if lb.GetBackends() == nil {
		return nil
	}
	return lb.Backends.Backend.Values()
}

func routeList(m *oc.P4Mesh_P4Mesh) []*oc.P4Mesh_P4Mesh_Routes_Route {
	if m.GetRoutes() == nil {
		return nil
	}
	return m.Routes.Route.Values()
}

func policyList(m *oc.P4Mesh_P4Mesh) []*oc.P4Mesh_P4Mesh_ExportPolicies_ExportPolicy {
	if m.GetExportPolicies() == nil {
		return nil
	}
	return m.ExportPolicies.ExportPolicy.Values()
}

func peeringList(m *oc.P4Mesh_P4Mesh) []*oc.P4Mesh_P4Mesh_Peerings_Peering {
	if m.GetPeerings() == nil {
		return nil
	}
	return m.Peerings.Peering.Values()
}

func neighborList(m *oc.P4Mesh_P4Mesh) []*oc.P4Mesh_P4Mesh_Bgp_Neighbors_Neighbor {
	if m.GetBgp().GetNeighbors() == nil {
		return nil
	}
	return m.Bgp.Neighbors.Neighbor.Values()
}

func poolList(m *oc.P4Mesh_P4Mesh) []*oc.P4Mesh_P4Mesh_GatewayPools_GatewayPool {
	if m.GetGatewayPools() == nil {
		return nil
	}
	return m.GatewayPools.GatewayPool.Values()
}
