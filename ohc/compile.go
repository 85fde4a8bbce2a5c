package ohc

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"slices"
	"strings"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/p4rt"
)

// Names of vpc_peering.p4's tables, action profiles and actions, as the
// P4Info aliases them. They are resolved through the schema: an ID is never
// written down here.
const (
	tLocalHost       = "local_host"
	tUnderlayNexthop = "underlay_nexthop"
	tPortVnet        = "port_vnet"
	tVMSourceGuard   = "vm_source_guard"
	tTunnelTerm      = "tunnel_term"
	tVnetSourceCheck = "vnet_source_check"
	tArpProxy        = "arp_proxy"
	tVnetDestination = "vnet_destination"
	tLBFrontend      = "lb_frontend"
	tLBBackend       = "lb_backend"
	tVnetRoute       = "vnet_route"
	tGatewayPool     = "gateway_pool"
	tRouteECMP       = "route_ecmp"
	tAttSourceCheck  = "attachment_source_check"

	pLBSelector      = "lb_selector"
	pGatewaySelector = "gateway_selector"
	pRouteSelector   = "route_selector"

	aSetLocalHost = "set_local_host"
	aSetUnderlay  = "set_underlay"
	aSetVnet      = "set_vnet"
	aSetAttach    = "set_attachment"
	aPermit       = "permit"
	aDecap        = "decap"
	aArpReply     = "arp_reply"
	aToLocalVM    = "to_local_vm"
	aEncapToHost  = "encap_to_host"
	aToLB         = "to_lb"
	aToRouteGroup = "to_route_group"
	aToPool       = "to_gateway_pool"
	aDrop         = "drop"
)

// ownedTables and ownedProfiles are everything the OHC writes on its switch:
// the reconciler reads back and prunes exactly these.
var (
	ownedTables = []string{
		tLocalHost, tUnderlayNexthop, tPortVnet, tVMSourceGuard, tTunnelTerm,
		tVnetSourceCheck, tArpProxy, tVnetDestination, tLBFrontend, tLBBackend,
		tVnetRoute, tGatewayPool, tRouteECMP, tAttSourceCheck,
	}
	ownedProfiles = []string{pLBSelector, pGatewaySelector, pRouteSelector}
)

// Limits of vpc_peering.p4's fields. Ports are the pipeline's: checkPorts
// (target.go) reads them from its P4Info.
const (
	maxVNI = 1<<24 - 1
)

// ErrBadView is wrapped by every error Compile returns for a malformed View,
// so callers can tell a view to fix from a schema that does not fit.
var ErrBadView = errors.New("bad view")

// Compile returns the desired entities of vpc_peering.p4's tables and
// selectors for v: what the switch must hold for the host's endpoints to
// reach their own VPCs and, under each active peering's export policy, their
// peers (directly, and through a peer's gateway pool for what has no direct
// entry), and for the host to forward into each VPC it is a gateway for
// (View.Duties). It is pure and deterministic: the same View always gives
// the same entities in the same order (selector members by id, then
// groups, then table entries table by table, the selector tables first and
// the others in P4Info order, sorted by match). Items that cannot be
// programmed but do not make the View malformed (an unknown route
// next hop, an IPv6 address) are left out; CompileWithWarnings says which.
func Compile(s *p4rt.Schema, v *View) ([]*p4v1.Entity, error) {
	es, _, err := CompileWithWarnings(s, v)
	return es, err
}

// CompileWithWarnings is Compile that also returns one message per item it
// left out or per conflict it resolved, for the OHC to log and count.
func CompileWithWarnings(s *p4rt.Schema, v *View) ([]*p4v1.Entity, []string, error) {
	if s == nil {
		return nil, nil, errors.New("compile: nil schema")
	}
	if v == nil {
		return nil, nil, fmt.Errorf("compile: %w: nil view", ErrBadView)
	}
	if err := validate(v); err != nil {
		return nil, nil, fmt.Errorf("compile: %w: %w", ErrBadView, err)
	}
	c := newCompiler(s, v, nil)
	if err := c.run(); err != nil {
		return nil, nil, fmt.Errorf("compile: %w", err)
	}
	return c.entities(), joinWarnings(c.warnings, c.notLocal), nil
}

// A Compiler compiles views exactly as CompileWithWarnings does, and keeps
// what it compiled for the next view. A whole compile (Compile, or
// CompileChange with ViewChange.Other) reuses the table entries it built
// for earlier views: an entry made from the same table, match and action
// values as one the previous compile made is that same entry, P4Runtime
// encoding and match key included. A change of remote endpoints only
// (CompileChange) recompiles just the entries of the addresses that
// changed (see incremental.go). Entries no compile uses any longer are
// dropped.
//
// The entities returned are shared with later compiles and must not be
// modified. A Compiler is not safe for concurrent use.
type Compiler struct {
	s     *p4rt.Schema
	cache entryCache
	// inc is what the last successful compile left for the next one.
	inc incState
}

// NewCompiler returns a Compiler for schema s.
func NewCompiler(s *p4rt.Schema) *Compiler {
	return &Compiler{s: s, cache: entryCache{entries: map[string]*cachedEntry{}, endpoints: map[endpointEntry]*cachedEntry{}}}
}

// Compile compiles the whole of v, as CompileWithWarnings does, with the
// entries of earlier compiles reused.
func (cc *Compiler) Compile(v *View) ([]*p4v1.Entity, []string, error) {
	warnings, err := cc.CompileChange(v, ViewChange{Other: true})
	if err != nil {
		return nil, nil, err
	}
	return cc.Desired(), warnings, nil
}

// compileWhole is Compile's work: every entry of v, the previous ones
// reused through the cache.
func (cc *Compiler) compileWhole(v *View) (*compiler, []*p4v1.Entity, error) {
	if cc.s == nil {
		return nil, nil, errors.New("compile: nil schema")
	}
	if v == nil {
		return nil, nil, fmt.Errorf("compile: %w: nil view", ErrBadView)
	}
	if err := validate(v); err != nil {
		return nil, nil, fmt.Errorf("compile: %w: %w", ErrBadView, err)
	}
	cc.cache.gen++
	c := newCompiler(cc.s, v, &cc.cache)
	if err := c.run(); err != nil {
		return nil, nil, fmt.Errorf("compile: %w", err)
	}
	cc.cache.sweep()
	return c, c.entities(), nil
}

// entryCache holds table entries by what they were built from.
type entryCache struct {
	entries map[string]*cachedEntry // by appendSpec's encoding
	// endpoints are some of the same entries by endpointEntry.
	endpoints map[endpointEntry]*cachedEntry
	gen       uint64 // the compile running, counted from 1
	filed     int    // the table entries of the last compile
	buf       []byte
}

type cachedEntry struct {
	ent  *p4v1.Entity // a table entry
	key  string       // its matchKey
	spec string       // its key in entries ("" when it has none)
	used uint64       // the last compile that used it
}

// get returns the entry built from table, match and a, building it on a
// miss. Values of a type the cache cannot key are built every time.
func (ec *entryCache) get(s *p4rt.Schema, table string, match []p4rt.Match, a *p4rt.ActionCall) (*cachedEntry, error) {
	b, ok := appendSpec(ec.buf[:0], table, match, a)
	ec.buf = b
	if ok {
		if e := ec.entries[string(b)]; e != nil {
			e.used = ec.gen
			return e, nil
		}
	}
	te, err := s.TableEntry(p4rt.Entry{Table: table, Match: match, Action: a})
	if err != nil {
		return nil, err
	}
	e := &cachedEntry{ent: &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: te}}, key: matchKey(te), used: ec.gen}
	if ok {
		e.spec = string(b)
		ec.entries[e.spec] = e
	}
	return e, nil
}

// sweep drops the entries the last compile did not use.
func (ec *entryCache) sweep() {
	for k, e := range ec.entries {
		if e.used != ec.gen {
			delete(ec.entries, k)
		}
	}
	for k, e := range ec.endpoints {
		if e.used != ec.gen {
			delete(ec.endpoints, k)
		}
	}
}

// appendSpec encodes an entry's description unambiguously: every string
// and value length-prefixed, values tagged with their type. It reports
// false for a value of a type it does not know.
func appendSpec(b []byte, table string, match []p4rt.Match, a *p4rt.ActionCall) ([]byte, bool) {
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	ok := true
	val := func(v p4rt.Value) {
		switch x := v.(type) {
		case nil:
			b = append(b, 0)
		case p4rt.Uint:
			b = append(b, 'u')
			b = binary.BigEndian.AppendUint64(b, uint64(x))
		case p4rt.IP:
			b = append(b, 'i')
			n := len(b)
			b = append(b, 0)
			b, _ = netip.Addr(x).AppendBinary(b)
			if l := len(b) - n - 1; l <= 255 {
				b[n] = byte(l)
			} else {
				ok = false // a zone that long: not worth keying
			}
		case p4rt.MAC:
			b = append(b, 'm')
			str(string(x))
		case p4rt.Bytes:
			b = append(b, 'b')
			str(string(x))
		default:
			ok = false
		}
	}
	str(table)
	b = binary.AppendUvarint(b, uint64(len(match)))
	for _, m := range match {
		str(m.Field)
		b = binary.AppendUvarint(b, uint64(m.Kind))
		b = binary.AppendVarint(b, int64(m.PrefixLen))
		val(m.Value)
		val(m.Mask)
		val(m.High)
	}
	str(a.Name)
	b = binary.AppendUvarint(b, uint64(len(a.Params)))
	for _, p := range a.Params {
		str(p.Name)
		val(p.Value)
	}
	return b, ok
}

// validate refuses what no switch could be programmed from: missing or
// invalid addresses and MACs, VNIs out of range, dangling references, two
// endpoints on one port. It stops at the first problem and names it.
func validate(v *View) error {
	if !v.Host.IP.Is4() {
		return fmt.Errorf("host %q: underlay IP %v is not an IPv4 address", v.Host.ID, v.Host.IP)
	}
	if err := checkMAC(v.Host.MAC); err != nil {
		return fmt.Errorf("host %q: MAC: %w", v.Host.ID, err)
	}
	for i, r := range v.Host.UnderlayRoutes {
		if !r.Prefix.IsValid() || !r.Prefix.Addr().Is4() {
			return fmt.Errorf("host %q: underlay route %d: prefix %v is not an IPv4 prefix", v.Host.ID, i, r.Prefix)
		}
		if err := checkMAC(r.SrcMAC); err != nil {
			return fmt.Errorf("host %q: underlay route %v: source MAC: %w", v.Host.ID, r.Prefix, err)
		}
		if err := checkMAC(r.DstMAC); err != nil {
			return fmt.Errorf("host %q: underlay route %v: destination MAC: %w", v.Host.ID, r.Prefix, err)
		}
	}
	vnis := map[uint32]string{}
	for _, name := range sortedKeys(v.VPCs) {
		x := v.VPCs[name]
		if x.Name != "" && x.Name != name {
			return fmt.Errorf("VPC %q is filed under %q", x.Name, name)
		}
		if err := checkVNI(x.VNI); err != nil {
			return fmt.Errorf("VPC %q: %w", name, err)
		}
		if other, dup := vnis[x.VNI]; dup {
			return fmt.Errorf("VPC %q: VNI %d is also VPC %q's", name, x.VNI, other)
		}
		vnis[x.VNI] = name
		for _, p := range x.Subnets {
			if !p.IsValid() {
				return fmt.Errorf("VPC %q: invalid subnet", name)
			}
		}
		if x.GatewayIP.IsValid() != (x.GatewayMAC != nil) {
			return fmt.Errorf("VPC %q: gateway IP and MAC go together (have %v and %q)", name, x.GatewayIP, x.GatewayMAC.String())
		}
		if x.GatewayMAC != nil {
			if err := checkMAC(x.GatewayMAC); err != nil {
				return fmt.Errorf("VPC %q: gateway MAC: %w", name, err)
			}
		}
	}
	if err := validateLocal(v); err != nil {
		return err
	}
	pairs := map[[2]string]bool{}
	for _, p := range v.Peerings {
		if p.VPC == "" || p.PeerVPC == "" {
			return fmt.Errorf("peering %q-%q: both VPCs must be named", p.VPC, p.PeerVPC)
		}
		if p.VPC == p.PeerVPC {
			return fmt.Errorf("peering of VPC %q with itself", p.VPC)
		}
		if pairs[[2]string{p.VPC, p.PeerVPC}] {
			return fmt.Errorf("peering %s-%s given twice", p.VPC, p.PeerVPC)
		}
		pairs[[2]string{p.VPC, p.PeerVPC}] = true
		if !p.Active {
			continue
		}
		if err := checkVNI(p.PeerVNI); err != nil {
			return fmt.Errorf("peering %s-%s: peer %w", p.VPC, p.PeerVPC, err)
		}
		if x, ok := v.VPCs[p.PeerVPC]; ok && x.VNI != p.PeerVNI {
			return fmt.Errorf("peering %s-%s: peer VNI %d, but VPC %q has VNI %d", p.VPC, p.PeerVPC, p.PeerVNI, p.PeerVPC, x.VNI)
		}
		if x, ok := v.VPCs[p.VPC]; ok && x.VNI == p.PeerVNI {
			return fmt.Errorf("peering %s-%s: peer VNI %d is VPC %q's own", p.VPC, p.PeerVPC, p.PeerVNI, p.VPC)
		}
		for _, pf := range p.PeerPrefixes {
			if !pf.IsValid() {
				return fmt.Errorf("peering %s-%s: invalid peer prefix", p.VPC, p.PeerVPC)
			}
		}
		if err := checkPool(p); err != nil {
			return err
		}
	}
	for _, d := range v.Duties {
		x, ok := v.VPCs[d.VPC]
		if !ok {
			return fmt.Errorf("gateway duty for pool %q: VPC %q is not in the view", d.Pool, d.VPC)
		}
		if d.VNI != 0 && d.VNI != x.VNI {
			return fmt.Errorf("gateway duty for pool %q: VNI %d, but VPC %q has VNI %d", d.Pool, d.VNI, d.VPC, x.VNI)
		}
	}
	for _, name := range sortedKeys(v.Remote) {
		for _, e := range v.Remote[name] {
			if err := checkRemote(v, name, e); err != nil {
				return err
			}
		}
	}
	lbs := map[[2]string]bool{}
	for _, lb := range v.LBs {
		if lb.Name == "" || lb.VPC == "" {
			return fmt.Errorf("load balancer %q in VPC %q: name and VPC are required (its id derives from them)", lb.Name, lb.VPC)
		}
		if lbs[[2]string{lb.VPC, lb.Name}] {
			return fmt.Errorf("load balancer %s/%s given twice", lb.VPC, lb.Name)
		}
		lbs[[2]string{lb.VPC, lb.Name}] = true
		if !lb.VIP.IsValid() {
			return fmt.Errorf("load balancer %s/%s: no VIP", lb.VPC, lb.Name)
		}
		seen := map[netip.Addr]bool{}
		for _, b := range lb.Backends {
			if !b.IP.IsValid() || !b.HostIP.IsValid() {
				return fmt.Errorf("load balancer %s/%s: backend %v on host %v: IP and host IP are required", lb.VPC, lb.Name, b.IP, b.HostIP)
			}
			if err := checkMAC(b.MAC); err != nil {
				return fmt.Errorf("load balancer %s/%s: backend %v: MAC: %w", lb.VPC, lb.Name, b.IP, err)
			}
			if seen[b.IP] {
				return fmt.Errorf("load balancer %s/%s: backend %v given twice", lb.VPC, lb.Name, b.IP)
			}
			seen[b.IP] = true
		}
	}
	for _, r := range v.routeList() {
		if !r.Prefix.IsValid() {
			return fmt.Errorf("route of VPC %q: invalid prefix", r.VPC)
		}
	}
	return nil
}

// validateLocal is validate for the local endpoints (and the ports the
// underlay routes use, which they must not share); the incremental compile
// checks them with it when a local endpoint changed.
func validateLocal(v *View) error {
	ports := map[uint16]string{}
	addrs := map[string]map[netip.Addr]string{}
	for _, e := range v.Local {
		if _, ok := v.VPCs[e.VPC]; !ok {
			return fmt.Errorf("local endpoint %q: VPC %q is not in the view", e.ID, e.VPC)
		}
		if !e.IP.IsValid() {
			return fmt.Errorf("local endpoint %q: no IP address", e.ID)
		}
		if err := checkMAC(e.MAC); err != nil {
			return fmt.Errorf("local endpoint %q: MAC: %w", e.ID, err)
		}
		if e.RouterMAC != nil {
			if err := checkMAC(e.RouterMAC); err != nil {
				return fmt.Errorf("local endpoint %q: router MAC: %w", e.ID, err)
			}
		}
		if other, dup := ports[e.Port]; dup {
			return fmt.Errorf("local endpoint %q: port %d is already endpoint %q's", e.ID, e.Port, other)
		}
		ports[e.Port] = e.ID
		if addrs[e.VPC] == nil {
			addrs[e.VPC] = map[netip.Addr]string{}
		}
		if other, dup := addrs[e.VPC][e.IP]; dup {
			return fmt.Errorf("local endpoint %q: %v in VPC %q is already endpoint %q's", e.ID, e.IP, e.VPC, other)
		}
		addrs[e.VPC][e.IP] = e.ID
	}
	for _, r := range v.Host.UnderlayRoutes {
		if other, dup := ports[r.Port]; dup {
			return fmt.Errorf("underlay route %v: port %d is endpoint %q's", r.Prefix, r.Port, other)
		}
	}
	return nil
}

// checkRemote is validate for one remote endpoint of View.Remote[name]; the
// incremental compile checks the records that changed with it.
func checkRemote(v *View, name string, e RemoteEndpoint) error {
	if e.VPC != "" && e.VPC != name {
		return fmt.Errorf("remote endpoint %v of VPC %q is filed under %q", e.IP, e.VPC, name)
	}
	if !e.IP.IsValid() {
		return fmt.Errorf("remote endpoint of VPC %q: no IP address", name)
	}
	if err := checkMAC(e.MAC); err != nil {
		return fmt.Errorf("remote endpoint %v of VPC %q: MAC: %w", e.IP, name, err)
	}
	if !e.HostIP.IsValid() {
		return fmt.Errorf("remote endpoint %v of VPC %q: no host IP", e.IP, name)
	}
	if e.VNI != 0 {
		if x, ok := v.VPCs[name]; ok && x.VNI != e.VNI {
			return fmt.Errorf("remote endpoint %v of VPC %q: VNI %d, but the VPC has VNI %d", e.IP, name, e.VNI, x.VNI)
		}
	}
	return nil
}

// checkPool is validate for the gateway pool of an active peering: it
// serves the peer, so it carries the peer's VNI, and its name is part of
// its id on the switch (PoolIDs).
func checkPool(p Peering) error {
	if p.Pool == nil {
		return nil
	}
	if p.Pool.Name == "" {
		return fmt.Errorf("peering %s-%s: gateway pool without a name", p.VPC, p.PeerVPC)
	}
	if p.Pool.VNI != 0 && p.Pool.VNI != p.PeerVNI {
		return fmt.Errorf("peering %s-%s: gateway pool %q serves VNI %d, but the peer has VNI %d", p.VPC, p.PeerVPC, p.Pool.Name, p.Pool.VNI, p.PeerVNI)
	}
	if p.Pool.VPC != "" && p.Pool.VPC != p.PeerVPC {
		return fmt.Errorf("peering %s-%s: gateway pool %q serves VPC %q, not the peer", p.VPC, p.PeerVPC, p.Pool.Name, p.Pool.VPC)
	}
	return nil
}

func checkMAC(m net.HardwareAddr) error {
	if len(m) != 6 {
		return fmt.Errorf("%q is not a 48-bit MAC", m.String())
	}
	return nil
}

func checkVNI(vni uint32) error {
	if vni == 0 || vni > maxVNI {
		return fmt.Errorf("VNI %d out of range 1..%d", vni, maxVNI)
	}
	return nil
}

// compiler holds one compilation's indexes and output.
type compiler struct {
	s *p4rt.Schema
	v *View

	// local: the VPCs with an endpoint on this host, by name, each with its
	// endpoints by IP. Only these VPCs get entries: a host programs what
	// its own endpoints can reach, nothing more.
	//
	// A VPC this host is a gateway for (View.Duties) is here too, as if
	// it had an endpoint: the gateway terminates its tunnels, admits its
	// sources and holds its destinations and routes. dutyOnly marks those
	// with no endpoint here: no VM of theirs sends here, so they get no
	// ARP answers, no peer destinations and no pool routes.
	local     map[string]map[netip.Addr]LocalEndpoint
	localVPCs []string // sorted
	dutyOnly  map[string]bool
	// peers: the active peerings of each local VPC, sorted by peer name.
	peers map[string][]Peering

	// routed are the (VNI, prefix) pairs routes filed in vnet_route: a
	// pool route for the same prefix gives way to them.
	routed map[vniPrefix]bool
	// groupIDs are the ECMP groups of routes with their ids, groupUse
	// how many routes use each, and routeWarned the routes that warned:
	// what an incremental compile of a route change reads.
	groupIDs    map[RouteGroupKey]uint16
	groupUse    map[RouteGroupKey]int
	routeWarned map[RouteKey]bool
	// lookup, if set, finds a route's remote next hop in place of the
	// index remoteByIP builds (the incremental compile's binary search).
	lookup func(vpc string, ip netip.Addr) (RemoteEndpoint, bool)

	// cache, when not nil, holds the entries of earlier compiles.
	cache *entryCache
	// remote indexes View.Remote by VPC and address, built when a route
	// first needs a VPC's (see remoteByIP).
	remote map[string]map[netip.Addr]RemoteEndpoint

	// filed are the table entries in the order they were filed, and
	// byMatch finds one by its table and match.
	filed    []built
	byMatch  map[tableMatch]int
	members  []*p4v1.ActionProfileMember
	groups   []*p4v1.ActionProfileGroup
	warnings []string
	// notLocal are the warnings about peer endpoints on this host that
	// are not local endpoints yet (notLocalWarning), kept apart.
	notLocal []notLocalWarning
}

// notLocalWarning is a peer's record that puts its endpoint on this host
// before the host's controller has listed it as a local endpoint. The two
// come on different streams, so this is the usual state for a moment
// whenever a VM of a peered VPC starts here: the address gets no entry
// until the local endpoint comes. These warnings follow all the others,
// in the order the whole compile meets them (local VPC, peer VPC,
// address), so that the incremental compile can replace one address's
// alone, as it replaces its entries, rather than compile the whole view
// twice (once when the record comes, once when the local endpoint does)
// to keep the warnings' order.
type notLocalWarning struct {
	unit addrUnit // the local VPC and the address
	peer string
	text string
}

func compareNotLocal(a, b notLocalWarning) int {
	return cmp.Or(cmp.Compare(a.unit.vpc, b.unit.vpc), cmp.Compare(a.peer, b.peer), a.unit.ip.Compare(b.unit.ip))
}

// joinWarnings is a compile's warnings: the others, then the not-local
// ones.
func joinWarnings(others []string, nl []notLocalWarning) []string {
	if len(nl) == 0 {
		return others
	}
	out := make([]string, 0, len(others)+len(nl))
	out = append(out, others...)
	for _, w := range nl {
		out = append(out, w.text)
	}
	return out
}

// notLocalText is the warning for peer p's record e, on this host, for
// local VPC name.
func notLocalText(name string, p Peering, ip netip.Addr) string {
	return fmt.Sprintf("%s: on this host but not a local endpoint yet; no entry", origin{ip: ip, vpc: p.PeerVPC, peer: name})
}

// built is one table entry and what it was made for, to name both sides of
// a conflict.
type built struct {
	tableMatch
	ent  *p4v1.Entity // holds the entry
	what origin
}

// tableMatch identifies a table entry: its table and its matchKey.
type tableMatch struct {
	table uint32
	key   string
}

// origin names the view item an entry is made for, in errors and
// warnings. An endpoint's name is formatted only when a message needs it:
// compiles run on every change, and messages are rare.
type origin struct {
	name string     // the item's name; or, for an endpoint,
	ip   netip.Addr // its address,
	vpc  string     // its VPC,
	peer string     // and the VPC it is a peer endpoint for ("" for its own)
	// route is a route's prefix (of VPC vpc); name then says what of the
	// route the entry is, after "route P of VPC V".
	route netip.Prefix
}

// named is the origin called name.
func named(name string) origin { return origin{name: name} }

func (o origin) String() string {
	switch {
	case o.route.IsValid():
		return fmt.Sprintf("route %v of VPC %s%s", o.route, o.vpc, o.name)
	case !o.ip.IsValid():
		return o.name
	case o.peer == "":
		return fmt.Sprintf("endpoint %v of VPC %s", o.ip, o.vpc)
	}
	return fmt.Sprintf("endpoint %v of peer %s (for %s)", o.ip, o.vpc, o.peer)
}

func newCompiler(s *p4rt.Schema, v *View, cache *entryCache) *compiler {
	c := &compiler{s: s, v: v, cache: cache, local: map[string]map[netip.Addr]LocalEndpoint{}, peers: map[string][]Peering{},
		dutyOnly: map[string]bool{}, routed: map[vniPrefix]bool{}, byMatch: map[tableMatch]int{}}
	if cache != nil {
		// About as many entries as last time.
		c.filed = make([]built, 0, cache.filed)
		c.byMatch = make(map[tableMatch]int, cache.filed)
	}
	for _, e := range v.Local {
		if c.local[e.VPC] == nil {
			c.local[e.VPC] = map[netip.Addr]LocalEndpoint{}
		}
		c.local[e.VPC][e.IP] = e
	}
	for _, d := range v.Duties {
		if c.local[d.VPC] == nil {
			c.local[d.VPC] = map[netip.Addr]LocalEndpoint{}
			c.dutyOnly[d.VPC] = true
		}
	}
	c.localVPCs = sortedKeys(c.local)
	for _, p := range v.Peerings {
		if p.Active && c.local[p.VPC] != nil {
			c.peers[p.VPC] = append(c.peers[p.VPC], p)
		}
	}
	for _, ps := range c.peers {
		slices.SortFunc(ps, func(a, b Peering) int { return cmp.Compare(a.PeerVPC, b.PeerVPC) })
	}
	return c
}

func (c *compiler) warnf(format string, args ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf(format, args...))
}

func (c *compiler) run() error {
	if err := c.checkPorts(); err != nil {
		return err
	}
	if err := c.hostEntries(); err != nil {
		return err
	}
	for _, e := range sortedLocal(c.v.Local) {
		if err := c.localEndpoint(e); err != nil {
			return err
		}
	}
	for _, name := range c.localVPCs {
		if err := c.vpc(name); err != nil {
			return err
		}
	}
	if err := c.loadBalancers(); err != nil {
		return err
	}
	if err := c.routes(); err != nil {
		return err
	}
	return c.poolRoutes()
}

// hostEntries: the host's identity (the outer source of every tunnel) and
// the underlay next hops tunnels leave by.
func (c *compiler) hostEntries() error {
	h := c.v.Host
	te, err := c.s.DefaultEntry(tLocalHost, p4rt.Call(aSetLocalHost,
		p4rt.P("host_ip", p4rt.IP(h.IP)), p4rt.P("host_mac", p4rt.MAC(h.MAC))))
	if err != nil {
		return fmt.Errorf("host %q: %w", h.ID, err)
	}
	c.put(tLocalHost, named("host "+h.ID), te)
	for _, r := range h.UnderlayRoutes {
		err := c.add(tUnderlayNexthop, named("underlay route "+r.Prefix.String()),
			[]p4rt.Match{p4rt.Prefix("dst_ip", r.Prefix.Masked())},
			p4rt.Call(aSetUnderlay, p4rt.P("port", p4rt.Uint(r.Port)), p4rt.P("smac", p4rt.MAC(r.SrcMAC)), p4rt.P("dmac", p4rt.MAC(r.DstMAC))))
		if err != nil {
			return err
		}
	}
	return nil
}

// localEndpoint: the endpoint's port is a VM port of its VPC, and the VM may
// send only as itself. An attachment's port belongs to the on-prem router
// behind it: ARP answers go to the router's MAC, and what it may send from
// is what is routed out of the port (attachment_source_check, see routes).
// An attachment without a router MAC cannot be told from a VM here: it is
// programmed as one, and routes through it are left out with a warning.
func (c *compiler) localEndpoint(e LocalEndpoint) error {
	if !e.IP.Is4() {
		c.warnf("local endpoint %q: %v is not IPv4; vpc_peering.p4 forwards IPv4 only", e.ID, e.IP)
		return nil
	}
	vni := c.v.VPCs[e.VPC].VNI
	what := named("local endpoint " + e.ID)
	if e.IsAttachment() && e.RouterMAC != nil {
		return c.add(tPortVnet, what, []p4rt.Match{p4rt.Exact("ingress_port", p4rt.Uint(e.Port))},
			p4rt.Call(aSetAttach, p4rt.P("vni", p4rt.Uint(vni)), p4rt.P("router_mac", p4rt.MAC(e.RouterMAC))))
	}
	if err := c.add(tPortVnet, what, []p4rt.Match{p4rt.Exact("ingress_port", p4rt.Uint(e.Port))},
		p4rt.Call(aSetVnet, p4rt.P("vni", p4rt.Uint(vni)), p4rt.P("vm_mac", p4rt.MAC(e.MAC)))); err != nil {
		return err
	}
	return c.add(tVMSourceGuard, what, []p4rt.Match{
		p4rt.Exact("vni", p4rt.Uint(vni)), p4rt.Exact("ingress_port", p4rt.Uint(e.Port)),
		p4rt.Exact("src_ip", p4rt.IP(e.IP)), p4rt.Exact("src_mac", p4rt.MAC(e.MAC)),
	}, p4rt.Call(aPermit))
}

// vpc compiles one VPC with an endpoint on this host: tunnel termination,
// admitted sources, ARP answers and exact destinations.
func (c *compiler) vpc(name string) error {
	x := c.v.VPCs[name]
	vni := p4rt.Uint(x.VNI)

	// Tunnels to this host carry the destination VPC's VNI.
	if err := c.add(tTunnelTerm, named("VPC "+name), []p4rt.Match{
		p4rt.Exact("dst_ip", p4rt.IP(c.v.Host.IP)), p4rt.Exact("vni", vni),
	}, p4rt.Call(aDecap)); err != nil {
		return err
	}

	// A VPC hears from itself and from what each active peer exports to it.
	sources := func(what string, ps []netip.Prefix) error {
		for _, p := range sortedPrefixes(ps) {
			if !p.Addr().Is4() {
				c.warnf("%s: prefix %v is not IPv4; vpc_peering.p4 forwards IPv4 only", what, p)
				continue
			}
			if err := c.add(tVnetSourceCheck, named(what), []p4rt.Match{
				p4rt.Exact("vni", vni), p4rt.Prefix("src_ip", p),
			}, p4rt.Call(aPermit)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := sources("VPC "+name+" subnets", x.Subnets); err != nil {
		return err
	}
	// And, from routes, where it routes to (see routes).
	for _, p := range c.peers[name] {
		if err := sources("peering "+name+"-"+p.PeerVPC, p.PeerPrefixes); err != nil {
			return err
		}
	}

	// ARP: the gateway (the VMs' next hop for everything off-link, peers
	// included) and every endpoint of the VPC. Peer addresses need no
	// entry: they are reached through the gateway's MAC.
	arp := func(what origin, ip netip.Addr, mac net.HardwareAddr) error {
		if !ip.Is4() {
			c.warnf("%s: %v is not IPv4; no ARP entry", what, ip)
			return nil
		}
		if c.dutyOnly[name] {
			return nil // no VM of the VPC here asks
		}
		k, build := arpEntry(vni, ip, mac)
		return c.addEndpoint(k, mac, what, build)
	}
	if x.GatewayIP.IsValid() {
		if err := arp(named("VPC "+name+" gateway"), x.GatewayIP, x.GatewayMAC); err != nil {
			return err
		}
	}
	locals := sortedLocalMap(c.local[name])
	for _, e := range locals {
		if err := arp(named("local endpoint "+e.ID), e.IP, e.MAC); err != nil {
			return err
		}
	}
	remotes := sortedRemote(c.v.Remote[name])
	for _, e := range remotes {
		if err := arp(origin{ip: e.IP, vpc: name}, e.IP, e.MAC); err != nil {
			return err
		}
	}

	// Destinations, keyed by the sender's VPC: its own endpoints here and
	// on other hosts, then each active peer's exported endpoints with the
	// peer's VNI on the wire. Local endpoints come first so that, should a
	// stale remote record disagree (an endpoint moving to this host), the
	// host's own controller wins.
	for _, e := range locals {
		if !e.IP.Is4() {
			continue // warned above
		}
		if err := c.toLocal(vni, e, named("local endpoint "+e.ID)); err != nil {
			return err
		}
	}
	for _, e := range remotes {
		if e.HostIP == c.v.Host.IP || !e.IP.Is4() {
			continue // ours: Local is authoritative; IPv6: warned above
		}
		if err := c.encap(vni, x.VNI, e, origin{ip: e.IP, vpc: name}); err != nil {
			return err
		}
	}
	if c.dutyOnly[name] {
		// Nothing here sends in the VPC: a gateway forwards into it,
		// and its replies go from the destination's host.
		return nil
	}
	for _, p := range c.peers[name] {
		if err := c.peerDestinations(name, vni, p); err != nil {
			return err
		}
	}
	return nil
}

// peerDestinations gives VPC name's endpoints an entry for every endpoint
// peer p exports to it. A peer endpoint on this very host is delivered
// straight to its port (to_local_vm keyed by the sender's VNI): a hairpin
// through the underlay is not guaranteed to come back, and both VMs sit
// behind the same switch, under the same OHC. The cost is that the
// receiving VPC's own source check (what p admits from name) is not
// applied on that path; the peering is active on both sides, so name's
// endpoints are admitted by p, up to p's export filter towards name.
func (c *compiler) peerDestinations(name string, vni p4rt.Uint, p Peering) error {
	for _, e := range sortedRemote(c.v.Remote[p.PeerVPC]) {
		what := origin{ip: e.IP, vpc: p.PeerVPC, peer: name}
		if !e.IP.Is4() {
			c.warnf("%s: not IPv4; vpc_peering.p4 forwards IPv4 only", what)
			continue
		}
		if !inAny(e.IP, p.PeerPrefixes) {
			continue // not exported to us: no entry, by policy
		}
		if e.VNI != 0 && e.VNI != p.PeerVNI {
			return fmt.Errorf("%w: %s: VNI %d, but the peering says %d", ErrBadView, what, e.VNI, p.PeerVNI)
		}
		if e.HostIP == c.v.Host.IP {
			le, ok := c.local[p.PeerVPC][e.IP]
			if !ok {
				c.notLocal = append(c.notLocal, notLocalWarning{addrUnit{name, e.IP}, p.PeerVPC, notLocalText(name, p, e.IP)})
				continue
			}
			if err := c.toLocal(vni, le, what); err != nil {
				return err
			}
			continue
		}
		if err := c.encap(vni, p.PeerVNI, e, what); err != nil {
			return err
		}
	}
	return nil
}

func (c *compiler) toLocal(vni p4rt.Uint, e LocalEndpoint, what origin) error {
	k, build := toLocalEntry(vni, e)
	return c.addEndpoint(k, e.MAC, what, build)
}

func (c *compiler) encap(vni p4rt.Uint, dstVNI uint32, e RemoteEndpoint, what origin) error {
	if !e.HostIP.Is4() {
		c.warnf("%s: host %v is not IPv4; the underlay is IPv4", what, e.HostIP)
		return nil
	}
	k, build := encapEntry(vni, dstVNI, e)
	return c.addEndpoint(k, e.MAC, what, build)
}

// arpEntry, toLocalEntry and encapEntry describe the entries made for an
// endpoint address: its endpointEntry (MAC not yet filled in) and how to
// build it. The whole compile and the incremental one (incremental.go)
// share them, so an address's entry is the same whichever made it.
func arpEntry(vni p4rt.Uint, ip netip.Addr, mac net.HardwareAddr) (endpointEntry, func() (string, []p4rt.Match, p4rt.ActionCall)) {
	return endpointEntry{table: tArpProxy, action: aArpReply, vni: vni, ip: ip}, func() (string, []p4rt.Match, p4rt.ActionCall) {
		return tArpProxy, []p4rt.Match{p4rt.Exact("vni", vni), p4rt.Exact("target_ip", p4rt.IP(ip))},
			p4rt.Call(aArpReply, p4rt.P("mac", p4rt.MAC(mac)))
	}
}

func toLocalEntry(vni p4rt.Uint, e LocalEndpoint) (endpointEntry, func() (string, []p4rt.Match, p4rt.ActionCall)) {
	return endpointEntry{table: tVnetDestination, action: aToLocalVM, vni: vni, ip: e.IP, n: uint64(e.Port)}, func() (string, []p4rt.Match, p4rt.ActionCall) {
		return tVnetDestination, []p4rt.Match{p4rt.Exact("vni", vni), p4rt.Exact("dst_ip", p4rt.IP(e.IP))},
			p4rt.Call(aToLocalVM, p4rt.P("port", p4rt.Uint(e.Port)), p4rt.P("dmac", p4rt.MAC(e.MAC)))
	}
}

func encapEntry(vni p4rt.Uint, dstVNI uint32, e RemoteEndpoint) (endpointEntry, func() (string, []p4rt.Match, p4rt.ActionCall)) {
	return endpointEntry{table: tVnetDestination, action: aEncapToHost, vni: vni, ip: e.IP, n: uint64(dstVNI), host: e.HostIP}, func() (string, []p4rt.Match, p4rt.ActionCall) {
		return tVnetDestination, []p4rt.Match{p4rt.Exact("vni", vni), p4rt.Exact("dst_ip", p4rt.IP(e.IP))},
			encapCall(dstVNI, e.HostIP, e.MAC)
	}
}

func encapCall(dstVNI uint32, host netip.Addr, mac net.HardwareAddr) p4rt.ActionCall {
	return p4rt.Call(aEncapToHost, p4rt.P("dst_vni", p4rt.Uint(dstVNI)), p4rt.P("host_ip", p4rt.IP(host)), p4rt.P("dmac", p4rt.MAC(mac)))
}

// loadBalancers compiles the load balancers visible from a local VPC: its
// own, and a peer's whose VIP the peering exports. Each gets one lb_id, one
// lb_backend entry and one group in lb_selector, shared by every VPC it is
// visible in; the frontends are per VPC.
func (c *compiler) loadBalancers() error {
	ids := LBIDs(c.v.LBs)
	lbs := slices.Clone(c.v.LBs)
	slices.SortFunc(lbs, func(a, b LoadBalancer) int {
		return cmp.Or(cmp.Compare(a.VPC, b.VPC), cmp.Compare(a.Name, b.Name))
	})
	for _, lb := range lbs {
		what := "load balancer " + lb.VPC + "/" + lb.Name
		if !lb.VIP.Is4() {
			c.warnf("%s: VIP %v is not IPv4; vpc_peering.p4 forwards IPv4 only", what, lb.VIP)
			continue
		}
		// Where it is visible, and the VNI of its (the backends') VPC.
		var (
			in     []string
			lbVNI  uint32
			inOwn  = c.local[lb.VPC] != nil
			lbVPCs = c.localVPCs
		)
		if inOwn {
			in = append(in, lb.VPC)
			lbVNI = c.v.VPCs[lb.VPC].VNI
		}
		for _, name := range lbVPCs {
			for _, p := range c.peers[name] {
				if p.PeerVPC == lb.VPC && inAny(lb.VIP, p.PeerPrefixes) {
					in = append(in, name)
					if lbVNI == 0 {
						lbVNI = p.PeerVNI
					}
				}
			}
		}
		if len(in) == 0 {
			continue // not visible from any endpoint on this host
		}
		id := ids[LBKey{VPC: lb.VPC, Name: lb.Name}]
		slices.Sort(in)
		for _, name := range in {
			if err := c.add(tLBFrontend, named(what+" in "+name), []p4rt.Match{
				p4rt.Exact("vni", p4rt.Uint(c.v.VPCs[name].VNI)), p4rt.Exact("vip", p4rt.IP(lb.VIP)),
				p4rt.Exact("protocol", p4rt.Uint(lb.Protocol)), p4rt.Exact("l4_port", p4rt.Uint(lb.Port)),
			}, p4rt.Call(aToLB, p4rt.P("lb_id", p4rt.Uint(id)))); err != nil {
				return err
			}
		}
		if err := c.lbBackends(lb, id, lbVNI, what); err != nil {
			return err
		}
	}
	return nil
}

// lbBackends writes the members and the group of one load balancer, and
// the lb_backend entry that points at the group. A load balancer with no
// usable backend gets neither: its frontend still matches, and the miss in
// lb_backend drops the flow, which is what a VIP without backends should do.
func (c *compiler) lbBackends(lb LoadBalancer, id uint16, lbVNI uint32, what string) error {
	slots := MemberIDs(id, lb.Backends)
	var group []p4rt.GroupMember
	backends := slices.Clone(lb.Backends)
	slices.SortFunc(backends, func(a, b Backend) int { return a.IP.Compare(b.IP) })
	for _, b := range backends {
		bwhat := fmt.Sprintf("%s backend %v", what, b.IP)
		if !b.IP.Is4() || !b.HostIP.Is4() {
			c.warnf("%s on host %v: not IPv4; left out", bwhat, b.HostIP)
			continue
		}
		var call p4rt.ActionCall
		if b.HostIP == c.v.Host.IP {
			le, ok := c.local[lb.VPC][b.IP]
			if !ok {
				c.warnf("%s: on this host but not a local endpoint; left out", bwhat)
				continue
			}
			call = p4rt.Call(aToLocalVM, p4rt.P("port", p4rt.Uint(le.Port)), p4rt.P("dmac", p4rt.MAC(le.MAC)))
		} else {
			call = encapCall(lbVNI, b.HostIP, b.MAC)
		}
		mid := slots[b.IP]
		m, err := c.s.ActionProfileMember(pLBSelector, mid, call)
		if err != nil {
			return fmt.Errorf("%s: %w", bwhat, err)
		}
		c.members = append(c.members, m)
		group = append(group, p4rt.GroupMember{ID: mid, Weight: int32(min(max(b.Weight, 1), 1<<31-1))})
	}
	if len(group) == 0 {
		c.warnf("%s: no usable backend; flows to the VIP are dropped", what)
		return nil
	}
	g, err := c.s.ActionProfileGroup(pLBSelector, uint32(id), group, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	c.groups = append(c.groups, g)
	te, err := c.s.TableEntry(p4rt.Entry{Table: tLBBackend, Group: uint32(id),
		Match: []p4rt.Match{p4rt.Exact("lb_id", p4rt.Uint(id))}})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	c.put(tLBBackend, named(what), te)
	return nil
}

// routes compiles the winning routes of the local VPCs into vnet_route:
// out of a local port (an attachment, with its router's MAC; or an endpoint
// acting as a router), to the host of a remote next hop, to an ECMP group
// in route_ecmp when several next hops tie, or drop when there is no next
// hop. Routes are resolved first and the groups they need given ids after,
// all at once, so that an id depends only on the set of groups (see
// RouteGroupIDs), never on the order routes came in.
func (c *compiler) routes() error {
	rs := slices.Clone(c.v.routeList())
	slices.SortFunc(rs, compareRoutes)
	var (
		out    []resolvedRoute
		groups []RouteGroupKey
		hopsOf = map[RouteGroupKey][]routeHop{}
	)
	c.groupUse = map[RouteGroupKey]int{}
	c.routeWarned = map[RouteKey]bool{}
	for _, r := range rs {
		warned := len(c.warnings)
		x, ok, err := c.resolveRoute(r, c.routeEntry)
		if len(c.warnings) > warned {
			c.routeWarned[RouteKey{r.VPC, r.Prefix.Masked()}] = true
		}
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if x.group != (RouteGroupKey{}) {
			if _, dup := hopsOf[x.group]; !dup {
				groups = append(groups, x.group)
				hopsOf[x.group] = x.hops
			}
			c.groupUse[x.group]++
		}
		out = append(out, x)
	}

	ids := RouteGroupIDs(groups)
	c.groupIDs = ids
	for _, k := range groups {
		if err := c.routeGroup(k, ids[k], hopsOf[k]); err != nil {
			return err
		}
	}
	for _, x := range out {
		k, mac, build := x.vnetRoute(ids)
		if err := c.routeEntry(k, x.prefix, mac, x.what, build); err != nil {
			return err
		}
		c.routed[vniPrefix{x.vni, x.prefix}] = true
	}
	return nil
}

// compareRoutes is the order routes compiles routes in: by VPC, prefix,
// then next hop.
func compareRoutes(a, b Route) int {
	return cmp.Or(cmp.Compare(a.VPC, b.VPC), a.Prefix.Addr().Compare(b.Prefix.Addr()),
		cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()), a.NextHopIP.Compare(b.NextHopIP))
}

// resolvedRoute is a route with its next hops resolved, before its
// vnet_route entry is made.
type resolvedRoute struct {
	what   origin
	vni    p4rt.Uint
	prefix netip.Prefix
	drop   bool
	hops   []routeHop // ≥ 1 unless drop
	group  RouteGroupKey
}

// routeFiler files one entry of a route (compiler.routeEntry, or a
// record of what would be filed).
type routeFiler func(k endpointEntry, p netip.Prefix, mac net.HardwareAddr, what origin, build func() (string, []p4rt.Match, p4rt.ActionCall)) error

// resolveRoute resolves r's next hops and files its source check entries
// with file. ok is false for a route that gets no vnet_route entry: of a
// VPC with no endpoint here, not IPv4, or with every next hop left out
// (each warned about).
func (c *compiler) resolveRoute(r Route, file routeFiler) (resolvedRoute, bool, error) {
	if c.local[r.VPC] == nil {
		return resolvedRoute{}, false, nil // no endpoint here sends in that VPC
	}
	what := origin{route: r.Prefix, vpc: r.VPC}
	if !r.Prefix.Addr().Is4() {
		c.warnf("%s: not IPv4; vpc_peering.p4 forwards IPv4 only", what)
		return resolvedRoute{}, false, nil
	}
	x := resolvedRoute{what: what, vni: p4rt.Uint(c.v.VPCs[r.VPC].VNI), prefix: r.Prefix.Masked()}
	if !r.NextHopIP.IsValid() && len(r.NextHopIPs) == 0 {
		x.drop = true
		return x, true, nil
	}
	if slices.ContainsFunc(r.NextHopIPs, func(a netip.Addr) bool { return !a.IsValid() }) {
		c.warnf("%s: a next hop that is no address is left out", what)
	}
	for _, nh := range r.NextHops() {
		if h, ok := c.nextHop(r.VPC, nh, what); ok {
			x.hops = append(x.hops, h)
		}
	}
	// A host that holds some of the next hops itself uses only those.
	// A packet another host tunnelled here for this route must leave
	// here: that host's group may order the members differently (BMv2
	// orders them by handle, which follows each switch's own write
	// history), so re-hashing could send it on to a third host or back,
	// costing hops and TTL. The VMs here then take the nearest exit,
	// as routers prefer a directly connected next hop.
	if slices.ContainsFunc(x.hops, func(h routeHop) bool { return h.local }) {
		x.hops = slices.DeleteFunc(x.hops, func(h routeHop) bool { return !h.local })
	}
	// A VPC hears from where it routes to: replies from an on-prem
	// network behind an attachment come tunnelled from the
	// attachment's host with the on-prem source, and out of the
	// attachment's own port from its router, which may send from what
	// is routed out of that port.
	if len(x.hops) > 0 {
		src := what
		src.name = " (source)"
		if err := file(endpointEntry{table: tVnetSourceCheck, action: aPermit, vni: x.vni}, x.prefix, nil, src,
			func() (string, []p4rt.Match, p4rt.ActionCall) {
				return tVnetSourceCheck, []p4rt.Match{p4rt.Exact("vni", x.vni), p4rt.Prefix("src_ip", x.prefix)}, p4rt.Call(aPermit)
			}); err != nil {
			return x, false, err
		}
	}
	for _, h := range x.hops {
		if h.attPort < 0 {
			continue
		}
		src := what
		src.name = " (source at its attachment)"
		port := p4rt.Uint(h.attPort)
		if err := file(endpointEntry{table: tAttSourceCheck, action: aPermit, n: uint64(port)}, x.prefix, nil, src,
			func() (string, []p4rt.Match, p4rt.ActionCall) {
				return tAttSourceCheck, []p4rt.Match{p4rt.Exact("ingress_port", port), p4rt.Prefix("src_ip", x.prefix)}, p4rt.Call(aPermit)
			}); err != nil {
			return x, false, err
		}
	}
	switch len(x.hops) {
	case 0:
		return x, false, nil // each next hop was warned about
	case 1:
	default:
		ips := make([]string, len(x.hops))
		for i, h := range x.hops {
			ips[i] = h.ip.String()
		}
		x.group = RouteGroupKey{VPC: r.VPC, NextHops: strings.Join(ips, ",")}
	}
	return x, true, nil
}

// vnetRoute is x's vnet_route entry, its ECMP group (if any) numbered by
// ids.
func (x *resolvedRoute) vnetRoute(ids map[RouteGroupKey]uint16) (endpointEntry, net.HardwareAddr, func() (string, []p4rt.Match, p4rt.ActionCall)) {
	k := endpointEntry{table: tVnetRoute, vni: x.vni}
	var mac net.HardwareAddr
	var call p4rt.ActionCall
	switch {
	case x.drop:
		k.action, call = aDrop, p4rt.Call(aDrop)
	case len(x.hops) == 1:
		h := x.hops[0]
		k.action, k.n, k.host, mac, call = h.action, h.n, h.host, h.mac, h.call
	default:
		id := ids[x.group]
		k.action, k.n, call = aToRouteGroup, uint64(id), p4rt.Call(aToRouteGroup, p4rt.P("group_id", p4rt.Uint(id)))
	}
	vni, prefix := x.vni, x.prefix
	return k, mac, func() (string, []p4rt.Match, p4rt.ActionCall) {
		return tVnetRoute, []p4rt.Match{p4rt.Exact("vni", vni), p4rt.Prefix("dst_ip", prefix)}, call
	}
}

// vniPrefix is a vnet_route match: a sender's VNI and a destination prefix.
type vniPrefix struct {
	vni    p4rt.Uint
	prefix netip.Prefix
}

// poolRoutes compiles the pool path of each local VPC S peered with a VPC
// X that a gateway pool serves: vnet_route(s, each prefix X exports to S)
// -> to_gateway_pool(pool id), and the pool's gateway_selector group with
// one member per live gateway, encap_to_host(x, gateway). vnet_destination
// is looked up first, so a destination with a direct entry never takes
// the pool; vnet_route is LPM, so any longer route of S wins too, and a
// route of S for exactly the prefix keeps it (routes are S's own
// configuration; the pool only catches misses). This holds in either
// mode: in ModeDirect every exported destination has its entry anyway,
// and the pool route catches only what has none yet.
//
// The gateway rewrites the inner destination MAC from its own entry, so
// the members carry none (zero). A member that is this host is left out:
// a tunnel to itself leaves by the uplink and is not guaranteed to come
// back. A pool with no member left gets no route, so destinations
// without a direct entry are dropped, as without a pool.
func (c *compiler) poolRoutes() error {
	type poolUse struct {
		key     PoolKey
		pool    *GatewayPool
		from    string // the peering that brought it, for messages
		members []GatewayMember
	}
	var (
		uses  []*poolUse
		byKey = map[PoolKey]*poolUse{}
		keys  []PoolKey
	)
	type route struct {
		vni    p4rt.Uint
		prefix netip.Prefix
		use    *poolUse
		what   origin
	}
	var routes []route
	for _, name := range c.localVPCs {
		if c.dutyOnly[name] {
			continue
		}
		for _, p := range c.peers[name] {
			if p.Pool == nil {
				continue
			}
			k := PoolKey{Name: p.Pool.Name, VNI: p.PeerVNI}
			u := byKey[k]
			if u == nil {
				u = &poolUse{key: k, pool: p.Pool, from: name + "-" + p.PeerVPC, members: PoolMembers(p.Pool, c.v.Host.IP)}
				for _, m := range p.Pool.Members {
					if !m.IP.Is4() {
						c.warnf("gateway pool %q (peering %s): member %q at %v is not IPv4; left out", k.Name, u.from, m.Host, m.IP)
					}
				}
				byKey[k] = u
				uses = append(uses, u)
				if len(u.members) > 0 {
					keys = append(keys, k)
				} else if len(p.Pool.Members) > 0 {
					c.warnf("gateway pool %q (peering %s): no member but this host; destinations of %s without a direct entry are dropped", k.Name, u.from, p.PeerVPC)
				}
			} else if !slices.Equal(memberIPs(p.Pool.Members), memberIPs(u.pool.Members)) {
				c.warnf("gateway pool %q: peering %s-%s lists other members than peering %s; the latter's are used", k.Name, name, p.PeerVPC, u.from)
			}
			if len(u.members) == 0 {
				continue
			}
			vni := p4rt.Uint(c.v.VPCs[name].VNI)
			for _, pf := range sortedPrefixes(p.PeerPrefixes) {
				if !pf.Addr().Is4() {
					continue // vpc warned about it
				}
				routes = append(routes, route{vni: vni, prefix: pf, use: u,
					what: origin{route: pf, vpc: name, name: " (gateway pool " + k.Name + " of " + p.PeerVPC + ")"}})
			}
		}
	}
	ids := PoolIDs(keys)
	for _, u := range uses {
		if len(u.members) == 0 {
			continue
		}
		if err := c.poolGroup(u.key, ids[u.key], u.members); err != nil {
			return err
		}
	}
	for _, r := range routes {
		if c.routed[vniPrefix{r.vni, r.prefix}] {
			continue // S's own route for the prefix
		}
		id := ids[r.use.key]
		err := c.routeEntry(endpointEntry{table: tVnetRoute, action: aToPool, vni: r.vni, n: uint64(id)}, r.prefix, nil, r.what,
			func() (string, []p4rt.Match, p4rt.ActionCall) {
				return tVnetRoute, []p4rt.Match{p4rt.Exact("vni", r.vni), p4rt.Prefix("dst_ip", r.prefix)},
					p4rt.Call(aToPool, p4rt.P("pool_id", p4rt.Uint(id)))
			})
		if err != nil {
			return err
		}
	}
	return nil
}

// PoolMembers returns the members of pool that a host with underlay
// address host sends to: the live IPv4 gateways other than itself, once
// each. The compiler writes a pool path for a peering exactly when this is
// not empty (and the peering is active, of a VPC with an endpoint on the
// host); without one, a destination of the peer that has no direct entry
// is dropped, so on-demand programming must not hold its entry back then.
func PoolMembers(pool *GatewayPool, host netip.Addr) []GatewayMember {
	if pool == nil {
		return nil
	}
	var out []GatewayMember
	for _, m := range pool.Members {
		if m.IP.Is4() && m.IP != host && !slices.ContainsFunc(out, func(o GatewayMember) bool { return o.IP == m.IP }) {
			out = append(out, m)
		}
	}
	return out
}

// poolGroup writes the gateway_selector members and group of one pool and
// the gateway_pool entry that points at it. Member ids derive from the
// gateways' addresses, so a gateway coming or going rewrites the group and
// its own member only.
func (c *compiler) poolGroup(k PoolKey, id uint16, members []GatewayMember) error {
	what := fmt.Sprintf("gateway pool %q (VNI %d, id %d)", k.Name, k.VNI, id)
	ips := memberIPs(members)
	slots := PoolMemberIDs(id, ips)
	slices.SortFunc(ips, netip.Addr.Compare)
	group := make([]p4rt.GroupMember, 0, len(ips))
	for _, a := range ips {
		m, err := c.s.ActionProfileMember(pGatewaySelector, slots[a], encapCall(k.VNI, a, poolMAC))
		if err != nil {
			return fmt.Errorf("%s: gateway %v: %w", what, a, err)
		}
		c.members = append(c.members, m)
		group = append(group, p4rt.GroupMember{ID: slots[a], Weight: 1})
	}
	g, err := c.s.ActionProfileGroup(pGatewaySelector, uint32(id), group, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	c.groups = append(c.groups, g)
	te, err := c.s.TableEntry(p4rt.Entry{Table: tGatewayPool, Group: uint32(id),
		Match: []p4rt.Match{p4rt.Exact("pool_id", p4rt.Uint(id))}})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	c.put(tGatewayPool, named(what), te)
	return nil
}

// poolMAC is the inner destination MAC a host sends towards a gateway
// with: the gateway looks the destination up and sets the real one.
var poolMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

func memberIPs(ms []GatewayMember) []netip.Addr {
	out := make([]netip.Addr, len(ms))
	for i, m := range ms {
		out[i] = m.IP
	}
	return out
}

// PoolKey identifies a gateway pool as a host sees it: its name and the
// VNI of the VPC it serves.
type PoolKey struct {
	Name string
	VNI  uint32
}

// PoolIDs assigns each gateway pool its pool_id (also its gateway_selector
// group id): FNV-1a of "name\x00vni" folded into 1..65535, next free on a
// collision, pools visited in (name, VNI) order. As with LBIDs, an id
// depends only on the pool's identity, so it survives an OHC restart and
// does not move when other pools come and go or members change.
func PoolIDs(keys []PoolKey) map[PoolKey]uint16 {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(a, b PoolKey) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.VNI, b.VNI)) })
	return assign(keys, func(k PoolKey) []byte { return fmt.Appendf(nil, "%s\x00%d", k.Name, k.VNI) })
}

// PoolMemberIDs assigns the gateway_selector member id of each gateway
// (by underlay address) of pool poolID, as MemberIDs does for a load
// balancer's backends: poolID<<16 | a slot derived from the address.
func PoolMemberIDs(poolID uint16, gateways []netip.Addr) map[netip.Addr]uint32 {
	return memberIDs(poolID, gateways)
}

// routeEntry is addEndpoint for an entry keyed by a prefix: k, completed
// with p, is every input of the entry build makes (mac that of its action,
// or nil). A feed of 100k routes is most of a view's entries, and this
// finds them in the cache without their description being encoded first.
func (c *compiler) routeEntry(k endpointEntry, p netip.Prefix, mac net.HardwareAddr, what origin, build func() (string, []p4rt.Match, p4rt.ActionCall)) error {
	k.ip, k.plen = p.Addr(), p.Bits()
	if mac == nil {
		mac = noMAC
	}
	return c.addEndpoint(k, mac, what, build)
}

// noMAC stands for the MAC of an entry whose action has none, in its
// endpointEntry.
var noMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// remoteByIP is the remote endpoints of vpc by address: of two records for
// one address, the first in sortedRemote's order, as for destinations. A
// feed of 100k routes resolves its next hops here, one map lookup each,
// rather than by a scan of the VPC's endpoints per route.
func (c *compiler) remoteByIP(vpc string) map[netip.Addr]RemoteEndpoint {
	if m, ok := c.remote[vpc]; ok {
		return m
	}
	if c.remote == nil {
		c.remote = map[string]map[netip.Addr]RemoteEndpoint{}
	}
	m := map[netip.Addr]RemoteEndpoint{}
	for _, e := range sortedRemote(c.v.Remote[vpc]) {
		if _, dup := m[e.IP]; !dup && e.HostIP.Is4() {
			m[e.IP] = e
		}
	}
	c.remote[vpc] = m
	return m
}

// routeHop is a route's next hop resolved to what reaches it.
type routeHop struct {
	ip   netip.Addr
	call p4rt.ActionCall // to_local_vm or encap_to_host
	// action, n, host and mac are call's inputs, as in endpointEntry.
	action string
	n      uint64
	host   netip.Addr
	mac    net.HardwareAddr
	local  bool // out of a port of this switch
	// attPort is the port of a local attachment, whose router may send
	// from the route's prefix; -1 for any other next hop.
	attPort int
}

// routeGroup writes the route_selector members and group of one set of
// equal-cost next hops and the route_ecmp entry that points at it. Every
// route with that set shares them.
func (c *compiler) routeGroup(k RouteGroupKey, id uint16, hops []routeHop) error {
	what := fmt.Sprintf("ECMP group %d of VPC %s via %s", id, k.VPC, k.NextHops)
	ips := make([]netip.Addr, len(hops))
	for i, h := range hops {
		ips[i] = h.ip
	}
	slots := RouteMemberIDs(id, ips)
	group := make([]p4rt.GroupMember, 0, len(hops))
	for _, h := range hops {
		m, err := c.s.ActionProfileMember(pRouteSelector, slots[h.ip], h.call)
		if err != nil {
			return fmt.Errorf("%s: next hop %v: %w", what, h.ip, err)
		}
		c.members = append(c.members, m)
		group = append(group, p4rt.GroupMember{ID: slots[h.ip], Weight: 1})
	}
	g, err := c.s.ActionProfileGroup(pRouteSelector, uint32(id), group, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	c.groups = append(c.groups, g)
	te, err := c.s.TableEntry(p4rt.Entry{Table: tRouteECMP, Group: uint32(id),
		Match: []p4rt.Match{p4rt.Exact("group_id", p4rt.Uint(id))}})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	c.put(tRouteECMP, named(what), te)
	return nil
}

// nextHop resolves one next hop of a route of VPC vpc to an endpoint of
// that VPC or of an active peer exporting it: out of its port when it is on
// this host, else to its host.
func (c *compiler) nextHop(vpc string, nh netip.Addr, what origin) (routeHop, bool) {
	if !nh.Is4() {
		c.warnf("%s: next hop %v is not IPv4; left out", what, nh)
		return routeHop{}, false
	}
	find := func(vpc string) (RemoteEndpoint, bool) {
		if c.lookup != nil {
			return c.lookup(vpc, nh)
		}
		e, ok := c.remoteByIP(vpc)[nh]
		return e, ok
	}
	// Local is authoritative for this host's endpoints, as for
	// destinations.
	resolve := func(vpc string, vni uint32) (routeHop, bool, bool) {
		if le, ok := c.local[vpc][nh]; ok {
			h, ok := c.localHop(le, what)
			return h, ok, true
		}
		e, ok := find(vpc)
		if !ok {
			return routeHop{}, false, false
		}
		if e.HostIP == c.v.Host.IP {
			c.warnf("%s: next hop %v is on this host but not a local endpoint yet; left out", what, nh)
			return routeHop{}, false, true
		}
		return routeHop{ip: nh, call: encapCall(vni, e.HostIP, e.MAC), attPort: -1,
			action: aEncapToHost, n: uint64(vni), host: e.HostIP, mac: e.MAC}, true, true
	}
	if h, ok, found := resolve(vpc, c.v.VPCs[vpc].VNI); found {
		return h, ok
	}
	for _, p := range c.peers[vpc] {
		if !inAny(nh, p.PeerPrefixes) {
			continue
		}
		if h, ok, found := resolve(p.PeerVPC, p.PeerVNI); found {
			return h, ok
		}
	}
	c.warnf("%s: next hop %v is no known endpoint of the VPC or an active peer; left out", what, nh)
	return routeHop{}, false
}

// localHop is delivery out of a local endpoint's port. Traffic routed
// through an attachment is for the on-prem router behind it, so it goes to
// the router's MAC; an endpoint that is a router itself (an appliance VM)
// gets it with its own MAC, as any destination on its port does.
func (c *compiler) localHop(e LocalEndpoint, what origin) (routeHop, bool) {
	dmac := e.MAC
	switch {
	case e.RouterMAC != nil:
		dmac = e.RouterMAC
	case e.IsAttachment():
		c.warnf("%s: next hop %v is attachment %q, which has no router MAC; left out", what, e.IP, e.ID)
		return routeHop{}, false
	}
	h := routeHop{ip: e.IP, local: true, attPort: -1, action: aToLocalVM, n: uint64(e.Port), mac: dmac,
		call: p4rt.Call(aToLocalVM, p4rt.P("port", p4rt.Uint(e.Port)), p4rt.P("dmac", p4rt.MAC(dmac)))}
	if e.IsAttachment() {
		h.attPort = int(e.Port)
	}
	return h, true
}

// add builds a table entry, or takes it from the cache, and files it under
// its match.
func (c *compiler) add(table string, what origin, match []p4rt.Match, a p4rt.ActionCall) error {
	if c.cache != nil {
		e, err := c.cache.get(c.s, table, match, &a)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		c.file(table, what, e.ent, e.key)
		return nil
	}
	te, err := c.s.TableEntry(p4rt.Entry{Table: table, Match: match, Action: &a})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	c.put(table, what, te)
	return nil
}

// endpointEntry is, by value, every input of an entry made for an endpoint
// address: its ARP answer or a destination. These are most of a view's
// entries, and a comparable key finds them in the cache without their
// description being built or encoded first.
type endpointEntry struct {
	table, action string
	vni           p4rt.Uint  // of the sender
	ip            netip.Addr // the endpoint
	n             uint64     // dst_vni (encap_to_host), port (to_local_vm, attachment_source_check) or group_id
	host          netip.Addr // host_ip (encap_to_host)
	mac           [6]byte
	plen          int // the prefix length of an LPM entry (a route); 0 for an exact one
}

// addEndpoint is add for the entry k, with k's MAC mac: build describes it
// by name, and is called only when the cache has no entry for k.
func (c *compiler) addEndpoint(k endpointEntry, mac net.HardwareAddr, what origin, build func() (string, []p4rt.Match, p4rt.ActionCall)) error {
	if c.cache == nil || len(mac) != len(k.mac) {
		table, match, a := build()
		return c.add(table, what, match, a)
	}
	copy(k.mac[:], mac)
	e, err := c.cache.endpoint(c.s, k, build)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	c.file(k.table, what, e.ent, e.key)
	return nil
}

// endpoint returns the cached entry for k (its MAC filled in), building it
// with build on a miss, and marks it used by the running compile.
func (ec *entryCache) endpoint(s *p4rt.Schema, k endpointEntry, build func() (string, []p4rt.Match, p4rt.ActionCall)) (*cachedEntry, error) {
	e := ec.endpoints[k]
	if e == nil {
		table, match, a := build()
		var err error
		if e, err = ec.get(s, table, match, &a); err != nil {
			return nil, err
		}
		ec.endpoints[k] = e
	}
	e.used = ec.gen
	return e, nil
}

// evict drops k's entry from the cache: an incremental compile found that
// nothing calls for it any longer, and no whole compile will sweep it.
func (ec *entryCache) evict(k endpointEntry) {
	e := ec.endpoints[k]
	if e == nil {
		return
	}
	delete(ec.endpoints, k)
	if e.spec != "" && ec.entries[e.spec] == e {
		delete(ec.entries, e.spec)
	}
}

// put files te under its match key.
func (c *compiler) put(table string, what origin, te *p4v1.TableEntry) {
	c.file(table, what, &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: te}}, matchKey(te))
}

// file files a table entry under its match key. The first entry for a key
// wins; a later one with another action is a conflict in the view (two
// endpoints claiming one address, an endpoint on the gateway's IP),
// reported as a warning.
func (c *compiler) file(table string, what origin, ent *p4v1.Entity, key string) {
	te := ent.GetTableEntry()
	tm := tableMatch{te.GetTableId(), key}
	if i, dup := c.byMatch[tm]; dup {
		first := c.filed[i]
		if first.ent != ent && !proto.Equal(first.ent.GetTableEntry().GetAction(), te.GetAction()) {
			c.warnf("%s: %s conflicts with %s, which is kept", table, what, first.what)
		}
		return
	}
	c.byMatch[tm] = len(c.filed)
	c.filed = append(c.filed, built{tableMatch: tm, ent: ent, what: what})
}

// matchKey identifies an entry within its table. The builders emit match
// fields in ID order with canonical values, so equal matches marshal equal.
func matchKey(te *p4v1.TableEntry) string {
	if te.GetIsDefaultAction() {
		return "" // sorts first
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&p4v1.TableEntry{Match: te.GetMatch(), Priority: te.GetPriority()})
	return "m" + string(b)
}

// entities returns the output in its deterministic order: members in
// ascending id (the order BMv2 hands out member handles in, which its
// selectors pick by), groups, then table entries by table: the selector
// tables (route_ecmp, lb_backend, gateway_pool) first, then the others in
// P4Info order. A reconcile writes inserts in this order, in as many Writes
// as it takes: an entry that names a group id in its action (vnet_route's
// to_route_group, lb_frontend's to_lb) then never goes in before the
// selector entry that resolves it, when traffic would find nothing there.
func (c *compiler) entities() []*p4v1.Entity {
	out := make([]*p4v1.Entity, 0, len(c.members)+len(c.groups)+len(c.filed))
	slices.SortFunc(c.members, func(a, b *p4v1.ActionProfileMember) int {
		return cmp.Or(cmp.Compare(a.GetActionProfileId(), b.GetActionProfileId()), cmp.Compare(a.GetMemberId(), b.GetMemberId()))
	})
	for _, m := range c.members {
		out = append(out, &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: m}})
	}
	slices.SortFunc(c.groups, func(a, b *p4v1.ActionProfileGroup) int {
		return cmp.Or(cmp.Compare(a.GetActionProfileId(), b.GetActionProfileId()), cmp.Compare(a.GetGroupId(), b.GetGroupId()))
	})
	for _, g := range c.groups {
		out = append(out, &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: g}})
	}
	out = appendFiled(out, c.s, c.filed)
	if c.cache != nil {
		c.cache.filed = len(c.filed)
	}
	return out
}

// appendFiled appends the table entries of filed to out in entities'
// order, leaving out the ones an incremental compile took away (nil).
func appendFiled(out []*p4v1.Entity, s *p4rt.Schema, filed []built) []*p4v1.Entity {
	// Entries are filed mostly in match order already (endpoints by
	// address), which the sort makes use of; it moves indexes, not
	// entries.
	pos := tablePositions(s)
	order := make([]int, 0, len(filed))
	tpos := make([]int, len(filed))
	for i, b := range filed {
		if b.ent != nil {
			order = append(order, i)
			tpos[i] = pos[b.table]
		}
	}
	slices.SortFunc(order, func(i, j int) int {
		return cmp.Or(cmp.Compare(tpos[i], tpos[j]), strings.Compare(filed[i].key, filed[j].key))
	})
	for _, i := range order {
		out = append(out, filed[i].ent)
	}
	return out
}

// tablePositions gives each table its place in entities' order: the
// selector tables first, then the others, each in P4Info order.
func tablePositions(s *p4rt.Schema) map[uint32]int {
	pos := make(map[uint32]int, len(s.Tables()))
	for i, t := range s.Tables() {
		pos[t.ID()] = i
		if t.Profile != nil {
			pos[t.ID()] -= len(s.Tables())
		}
	}
	return pos
}

// LBKey identifies a load balancer: its VPC and name.
type LBKey struct{ VPC, Name string }

// LBIDs assigns each load balancer its lb_id (also its lb_selector group
// id): FNV-1a of "vpc\x00name" folded into 1..65535, taking the next free
// value on a collision, load balancers visited in (VPC, name) order. An id
// depends only on the load balancer's identity, so it is the same after an
// OHC restart and does not move when others come and go (short of a hash
// collision), and the reconciler has nothing to rewrite.
func LBIDs(lbs []LoadBalancer) map[LBKey]uint16 {
	keys := make([]LBKey, 0, len(lbs))
	for _, lb := range lbs {
		keys = append(keys, LBKey{lb.VPC, lb.Name})
	}
	slices.SortFunc(keys, func(a, b LBKey) int { return cmp.Or(cmp.Compare(a.VPC, b.VPC), cmp.Compare(a.Name, b.Name)) })
	return assign(keys, func(k LBKey) []byte { return []byte(k.VPC + "\x00" + k.Name) })
}

// MemberIDs assigns the lb_selector member id of each backend of load
// balancer lbID: lbID<<16 | slot, the slot FNV-1a of the backend's IP folded
// into 1..65535 (next free on a collision, backends in IP order). The high
// half keeps load balancers apart in the one profile, and like LBIDs an id
// depends only on identity, so adding a backend rewrites no other member.
func MemberIDs(lbID uint16, backends []Backend) map[netip.Addr]uint32 {
	ips := make([]netip.Addr, 0, len(backends))
	for _, b := range backends {
		ips = append(ips, b.IP)
	}
	return memberIDs(lbID, ips)
}

// memberIDs is id<<16 | slot for each address, the slot FNV-1a of the
// address folded into 1..65535 (next free on a collision, in address order).
func memberIDs(id uint16, ips []netip.Addr) map[netip.Addr]uint32 {
	ips = slices.Clone(ips)
	slices.SortFunc(ips, netip.Addr.Compare)
	slots := assign(ips, func(a netip.Addr) []byte { return a.AsSlice() })
	out := make(map[netip.Addr]uint32, len(slots))
	for ip, s := range slots {
		out[ip] = uint32(id)<<16 | uint32(s)
	}
	return out
}

// RouteGroupKey identifies an ECMP group of routes: a VPC and the set of
// next hops its routes are spread over, as addresses in ascending order
// joined by ",". Routes of a VPC with the same next hops share one group.
type RouteGroupKey struct{ VPC, NextHops string }

// RouteGroupIDs assigns each group of equal-cost next hops its group id in
// route_selector (also its route_ecmp key and to_route_group's argument):
// FNV-1a of "vpc\x00nexthops" folded into 1..65535, taking the next free
// value on a collision, groups visited in (VPC, next hops) order. As with
// LBIDs, an id depends only on what the group is, so an OHC restart or a
// route coming or going elsewhere does not renumber it.
func RouteGroupIDs(keys []RouteGroupKey) map[RouteGroupKey]uint16 {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(a, b RouteGroupKey) int {
		return cmp.Or(cmp.Compare(a.VPC, b.VPC), cmp.Compare(a.NextHops, b.NextHops))
	})
	return assign(keys, func(k RouteGroupKey) []byte { return []byte(k.VPC + "\x00" + k.NextHops) })
}

// RouteMemberIDs assigns the route_selector member id of each next hop of
// group groupID, as MemberIDs does for a load balancer's backends:
// groupID<<16 | a slot derived from the next hop's address.
func RouteMemberIDs(groupID uint16, nextHops []netip.Addr) map[netip.Addr]uint32 {
	return memberIDs(groupID, nextHops)
}

// assign gives each key a value in 1..65535 from its hash, probing upwards
// on a collision; keys must come sorted, so probing is deterministic.
func assign[K comparable](keys []K, id func(K) []byte) map[K]uint16 {
	out := make(map[K]uint16, len(keys))
	used := map[uint16]bool{}
	for _, k := range keys {
		if _, dup := out[k]; dup {
			continue
		}
		h := fnv.New32a()
		h.Write(id(k))
		v := uint16(h.Sum32()%65535) + 1
		for used[v] {
			v = v%65535 + 1
		}
		used[v] = true
		out[k] = v
	}
	return out
}

func inAny(a netip.Addr, ps []netip.Prefix) bool {
	return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(a) })
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// sortedPrefixes returns ps masked, sorted and without duplicates.
func sortedPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return slices.Compact(out)
}

func sortedLocal(es []LocalEndpoint) []LocalEndpoint {
	out := slices.Clone(es)
	slices.SortFunc(out, func(a, b LocalEndpoint) int { return cmp.Compare(a.Port, b.Port) })
	return out
}

func sortedLocalMap(m map[netip.Addr]LocalEndpoint) []LocalEndpoint {
	out := make([]LocalEndpoint, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b LocalEndpoint) int { return a.IP.Compare(b.IP) })
	return out
}

// sortedRemote orders remote endpoints by address, then host and MAC, so
// that which of two conflicting records wins never depends on the order
// the streams delivered them in.
// Lists that come sorted (as the agent makes them) are not copied.
func sortedRemote(es []RemoteEndpoint) []RemoteEndpoint {
	if slices.IsSortedFunc(es, compareRemote) {
		return es
	}
	out := slices.Clone(es)
	slices.SortFunc(out, compareRemote)
	return out
}

// compareRemote orders remote endpoints by address, then host and MAC.
func compareRemote(a, b RemoteEndpoint) int {
	if c := a.IP.Compare(b.IP); c != 0 {
		return c
	}
	if c := a.HostIP.Compare(b.HostIP); c != 0 {
		return c
	}
	return bytes.Compare(a.MAC, b.MAC)
}
