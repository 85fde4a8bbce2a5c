package controller

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// BGP is the configuration of the controller's BGP speaker: one embedded
// speaker (GoBGP) for all VPCs owned here, holding one session per VPN or
// interconnect attachment with the on-prem router behind it. A Config
// without it (nil) runs no speaker.
type BGP struct {
	// LocalAS is the speaker's AS, for every session that sets none.
	LocalAS uint32
	// RouterID is the BGP identifier of every session of a VPC that sets
	// none of its own (BGPVPC.RouterID).
	RouterID netip.Addr
	// ListenAddress is where the speaker accepts sessions; unset means
	// every address.
	ListenAddress netip.Addr
	// ListenPort is the TCP port it accepts sessions on: 0 means 179, -1
	// that it does not listen (it still dials every neighbor).
	ListenPort int32
	// VPCs override the speaker's identity per VPC.
	VPCs []BGPVPC
	// Neighbors are the sessions, one per on-prem router.
	Neighbors []BGPNeighbor
}

// BGPVPC overrides the speaker's local AS and router id for the sessions
// of one VPC.
type BGPVPC struct {
	VPC string
	// LocalAS, when not 0, is the local AS of the VPC's sessions that
	// set none of their own.
	LocalAS uint32
	// RouterID, when set, is the BGP identifier of all the VPC's
	// sessions (each VPC has a GoBGP server of its own, package bgp).
	// Changing it restarts the VPC's sessions: its routes are withdrawn
	// and learned again.
	RouterID netip.Addr
}

// BGPNeighbor is one BGP session with an on-prem router, over one
// attachment of a VPC.
type BGPNeighbor struct {
	VPC string
	// Address is the router's address; one speaker has one session per
	// address, so it is unique across VPCs.
	Address netip.Addr
	// Attachment is the id of the VPN or interconnect endpoint of VPC the
	// router sits behind: routes learned go out of its port, and its IP
	// is the next hop advertised to the router.
	Attachment string
	PeerAS     uint32
	// LocalAS overrides the VPC's and the speaker's local AS.
	LocalAS uint32
	// HoldTime and Keepalive in seconds; 0 means 90 s and a third of the
	// hold time.
	HoldTime, Keepalive uint16
	// Password is the TCP MD5 key; empty means none.
	Password string
	// MaxPrefixes, when not 0, ends the session if the router sends more.
	MaxPrefixes uint32
	// Import, when not empty, is the only prefixes accepted.
	Import []BGPPrefixFilter
	// GracefulRestart makes the speaker a graceful-restart helper.
	GracefulRestart bool
	// Port is the router's BGP port; 0 means 179 (tests use others).
	Port uint16
}

// BGPPrefixFilter accepts prefixes inside Prefix with a length from GE
// to LE: 0 means Prefix's length for GE and GE for LE, as in a router's
// "ip prefix-list ... ge ... le".
type BGPPrefixFilter struct {
	Prefix netip.Prefix
	GE, LE uint8
}

// Key identifies a neighbor: its VPC and address.
func (n BGPNeighbor) Key() string { return n.VPC + "/" + n.Address.String() }

// LocalASOf is the local AS of n's session: its own, its VPC's override,
// or the speaker's.
func (b *BGP) LocalASOf(n BGPNeighbor) uint32 {
	if n.LocalAS != 0 {
		return n.LocalAS
	}
	for _, v := range b.VPCs {
		if v.VPC == n.VPC && v.LocalAS != 0 {
			return v.LocalAS
		}
	}
	return b.LocalAS
}

// RouterIDOf is the router id of vpc's sessions: the VPC's override or
// the speaker's.
func (b *BGP) RouterIDOf(vpc string) netip.Addr {
	for _, v := range b.VPCs {
		if v.VPC == vpc && v.RouterID.IsValid() {
			return v.RouterID
		}
	}
	return b.RouterID
}

// Clone returns a deep copy of b.
func (b *BGP) Clone() *BGP {
	if b == nil {
		return nil
	}
	n := *b
	n.VPCs = cloneSlice(b.VPCs)
	n.Neighbors = cloneEach(b.Neighbors, func(x BGPNeighbor) BGPNeighbor {
		x.Import = cloneSlice(x.Import)
		return x
	})
	return &n
}

// bgpAttachments returns the endpoint ids BGP neighbors of c name.
func (c *Config) bgpAttachments() map[string]bool {
	if c == nil || c.BGP == nil {
		return nil
	}
	m := make(map[string]bool, len(c.BGP.Neighbors))
	for _, n := range c.BGP.Neighbors {
		m[n.Attachment] = true
	}
	return m
}

// checkBGP validates the bgp section. It runs after the endpoints are
// indexed.
func (v *validator) checkBGP() {
	b := v.c.BGP
	if b == nil {
		return
	}
	if b.LocalAS == 0 {
		v.addf("bgp.local_as", "local AS is required (and 0 is not an AS number)")
	}
	if !b.RouterID.IsValid() {
		v.addf("bgp.router_id", "router id is required (an IPv4 address)")
	} else {
		v.routerID("bgp.router_id", b.RouterID)
	}
	if b.ListenAddress.IsValid() && !b.ListenAddress.Is4() {
		v.addf("bgp.listen_address", "%s is not IPv4 (IPv6 is not supported yet)", b.ListenAddress)
	}
	if b.ListenPort < -1 || b.ListenPort > 65535 {
		v.addf("bgp.listen_port", "port %d: must be 1..65535, 0 for 179 or -1 for no listening", b.ListenPort)
	}
	seenVPC := map[string]bool{}
	for i, o := range b.VPCs {
		p := "bgp." + item("vpcs", i, o.VPC)
		v.ownedVPC(p+".vpc", o.VPC)
		if seenVPC[o.VPC] {
			v.addf(p, "VPC %s has two entries", o.VPC)
		}
		seenVPC[o.VPC] = true
		if o.RouterID.IsValid() {
			v.routerID(p+".router_id", o.RouterID)
		}
	}
	keys := map[string]bool{}
	addrs := map[netip.Addr]string{}
	byAttachment := map[string]string{}
	for _, n := range b.Neighbors {
		p := fmt.Sprintf("bgp.neighbors[%s]", n.Key())
		vpc := v.ownedVPC(p+".vpc", n.VPC)
		if keys[n.Key()] {
			v.addf(p, "neighbor defined twice")
			continue
		}
		keys[n.Key()] = true
		if v.addr4(p+".address", "address", n.Address) {
			if other, ok := addrs[n.Address]; ok {
				v.addf(p+".address", "%s is also the address of neighbor %s: the speaker has one session per address, across all VPCs", n.Address, other)
			} else {
				addrs[n.Address] = n.Key()
			}
		}
		switch e := v.endpoint(n.Attachment); {
		case n.Attachment == "":
			v.addf(p+".attachment", "attachment is required: the id of a vpn or interconnect endpoint of VPC %s", n.VPC)
		case e == nil:
			v.addf(p+".attachment", "endpoint %q is not defined", n.Attachment)
		case !e.IsAttachment():
			v.addf(p+".attachment", "endpoint %s is of kind %s; a BGP neighbor needs a vpn or interconnect endpoint", e.ID, e.Kind)
		case vpc != nil && e.VPC != n.VPC:
			v.addf(p+".attachment", "endpoint %s is in VPC %s, not %s", e.ID, e.VPC, n.VPC)
		default:
			// Learned routes name their session by attachment.
			if other, ok := byAttachment[e.ID]; ok {
				v.addf(p+".attachment", "attachment %s already has neighbor %s: one BGP session per attachment", e.ID, other)
			}
			byAttachment[e.ID] = n.Key()
		}
		if n.PeerAS == 0 {
			v.addf(p+".peer_as", "peer AS is required (and 0 is not an AS number)")
		}
		if n.HoldTime != 0 && n.HoldTime < 3 {
			v.addf(p+".hold_time", "hold time %ds: must be 0 (90 s) or at least 3 s", n.HoldTime)
		}
		if n.HoldTime != 0 && n.Keepalive >= n.HoldTime {
			v.addf(p+".keepalive", "keepalive %ds must be shorter than the hold time %ds", n.Keepalive, n.HoldTime)
		}
		if len(n.Password) > 80 {
			v.addf(p+".password", "password is %d bytes; TCP MD5 keys are at most 80", len(n.Password))
		}
		filters := map[netip.Prefix]bool{}
		for k, f := range n.Import {
			fp := fmt.Sprintf("%s.import[%d]", p, k)
			if !v.prefix(fp+".prefix", f.Prefix) {
				continue
			}
			if filters[f.Prefix] {
				v.addf(fp, "a second filter for %s: one per prefix (give it ge and le)", f.Prefix)
			}
			filters[f.Prefix] = true
			ge, le := int(f.GE), int(f.LE)
			if ge == 0 {
				ge = f.Prefix.Bits()
			}
			if le == 0 {
				le = ge
			}
			if ge < f.Prefix.Bits() || le > 32 || le < ge {
				v.addf(fp, "%s ge %d le %d: need %d <= ge <= le <= 32", f.Prefix, f.GE, f.LE, f.Prefix.Bits())
			}
		}
	}
}

// routerID checks a BGP identifier: four octets, and not 0.0.0.0, which
// a router refuses in an OPEN (RFC 6286).
func (v *validator) routerID(path string, id netip.Addr) {
	switch {
	case !id.Is4():
		v.addf(path, "router id %s is not an IPv4 address", id)
	case id.IsUnspecified():
		v.addf(path, "router id 0.0.0.0 is not a valid BGP identifier")
	}
}

// bgpDoc is the YAML form of BGP.
type bgpDoc struct {
	LocalAS       uint32           `yaml:"local_as"`
	RouterID      string           `yaml:"router_id"`
	ListenAddress string           `yaml:"listen_address,omitempty"`
	ListenPort    int32            `yaml:"listen_port,omitempty"`
	VPCs          []bgpVPCDoc      `yaml:"vpcs,omitempty"`
	Neighbors     []bgpNeighborDoc `yaml:"neighbors,omitempty"`
}

// bgpGlobalDoc is what the item store keeps under the key "bgp": the
// speaker-wide settings; neighbors are items of their own.
type bgpGlobalDoc struct {
	LocalAS       uint32      `yaml:"local_as"`
	RouterID      string      `yaml:"router_id"`
	ListenAddress string      `yaml:"listen_address,omitempty"`
	ListenPort    int32       `yaml:"listen_port,omitempty"`
	VPCs          []bgpVPCDoc `yaml:"vpcs,omitempty"`
}

type bgpVPCDoc struct {
	VPC      string `yaml:"vpc"`
	LocalAS  uint32 `yaml:"local_as,omitempty"`
	RouterID string `yaml:"router_id,omitempty"`
}

type bgpNeighborDoc struct {
	VPC             string         `yaml:"vpc"`
	Address         string         `yaml:"address"`
	Attachment      string         `yaml:"attachment"`
	PeerAS          uint32         `yaml:"peer_as"`
	LocalAS         uint32         `yaml:"local_as,omitempty"`
	HoldTime        uint16         `yaml:"hold_time,omitempty"`
	Keepalive       uint16         `yaml:"keepalive,omitempty"`
	Password        string         `yaml:"password,omitempty"`
	MaxPrefixes     uint32         `yaml:"max_prefixes,omitempty"`
	Import          []bgpFilterDoc `yaml:"import,omitempty"`
	GracefulRestart bool           `yaml:"graceful_restart,omitempty"`
	Port            uint16         `yaml:"port,omitempty"`
}

type bgpFilterDoc struct {
	Prefix string `yaml:"prefix"`
	GE     uint8  `yaml:"ge,omitempty"`
	LE     uint8  `yaml:"le,omitempty"`
}

func (d *bgpDoc) global() *bgpGlobalDoc {
	return &bgpGlobalDoc{LocalAS: d.LocalAS, RouterID: d.RouterID, ListenAddress: d.ListenAddress, ListenPort: d.ListenPort, VPCs: d.VPCs}
}

func (cv *converter) bgp(d *bgpDoc) *BGP {
	if d == nil {
		return nil
	}
	b := &BGP{
		LocalAS:       d.LocalAS,
		RouterID:      cv.addr("bgp.router_id", d.RouterID),
		ListenAddress: cv.addr("bgp.listen_address", d.ListenAddress),
		ListenPort:    d.ListenPort,
	}
	for i, o := range d.VPCs {
		b.VPCs = append(b.VPCs, BGPVPC{VPC: o.VPC, LocalAS: o.LocalAS, RouterID: cv.addr("bgp."+item("vpcs", i, o.VPC)+".router_id", o.RouterID)})
	}
	for i, n := range d.Neighbors {
		p := "bgp." + item("neighbors", i, n.VPC+"/"+n.Address)
		x := BGPNeighbor{
			VPC: n.VPC, Address: cv.addr(p+".address", n.Address), Attachment: n.Attachment,
			PeerAS: n.PeerAS, LocalAS: n.LocalAS, HoldTime: n.HoldTime, Keepalive: n.Keepalive,
			Password: n.Password, MaxPrefixes: n.MaxPrefixes, GracefulRestart: n.GracefulRestart, Port: n.Port,
		}
		for k, f := range n.Import {
			x.Import = append(x.Import, BGPPrefixFilter{Prefix: cv.prefix(fmt.Sprintf("%s.import[%d].prefix", p, k), f.Prefix), GE: f.GE, LE: f.LE})
		}
		b.Neighbors = append(b.Neighbors, x)
	}
	return b
}

func bgpDocOf(b *BGP) *bgpDoc {
	if b == nil {
		return nil
	}
	d := &bgpDoc{LocalAS: b.LocalAS, RouterID: text(b.RouterID), ListenAddress: text(b.ListenAddress), ListenPort: b.ListenPort}
	for _, o := range b.VPCs {
		d.VPCs = append(d.VPCs, bgpVPCDoc{VPC: o.VPC, LocalAS: o.LocalAS, RouterID: text(o.RouterID)})
	}
	for _, n := range b.Neighbors {
		nd := bgpNeighborDoc{
			VPC: n.VPC, Address: text(n.Address), Attachment: n.Attachment, PeerAS: n.PeerAS, LocalAS: n.LocalAS,
			HoldTime: n.HoldTime, Keepalive: n.Keepalive, Password: n.Password, MaxPrefixes: n.MaxPrefixes,
			GracefulRestart: n.GracefulRestart, Port: n.Port,
		}
		for _, f := range n.Import {
			nd.Import = append(nd.Import, bgpFilterDoc{Prefix: text(f.Prefix), GE: f.GE, LE: f.LE})
		}
		d.Neighbors = append(d.Neighbors, nd)
	}
	return d
}

// touchesBGP reports whether ch puts or deletes an endpoint a BGP neighbor
// of c names as its attachment: such a change is validated and applied as
// the whole configuration it makes, so that the neighbor is checked again.
func (ch *Change) touchesBGP(c *Config) bool {
	att := c.bgpAttachments()
	if len(att) == 0 {
		return false
	}
	return slices.ContainsFunc(ch.DeleteEndpoints, func(id string) bool { return att[id] }) ||
		slices.ContainsFunc(ch.Endpoints, func(e Endpoint) bool { return att[e.ID] })
}

// BGPNeighborStatus is what the BGP speaker reports of one neighbor, for
// gNMI state.
type BGPNeighborStatus struct {
	VPC     string
	Address netip.Addr
	// Attachment is the neighbor's attachment endpoint.
	Attachment string
	// State is the session's BGP FSM state ("established", "active", ...).
	State string
	// Since is when the session was last established; zero if it is not.
	Since time.Time
	// Received and Accepted count the prefixes the neighbor announced
	// and the import filter let in.
	Received, Accepted uint64
	// LastError says why the session last went down, "" if it never did.
	LastError string
}

// bgpStatus holds the speaker's last report; it has its own lock, as
// reports come at any time.
type bgpStatus struct {
	mu sync.Mutex
	ns []BGPNeighborStatus
}

// SetBGPNeighbors records the BGP speaker's view of its neighbors, which
// Stats returns (gNMI state). The slice is the Server's.
func (s *Server) SetBGPNeighbors(ns []BGPNeighborStatus) {
	s.bgp.mu.Lock()
	s.bgp.ns = ns
	s.bgp.mu.Unlock()
}

func (b *bgpStatus) get() []BGPNeighborStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.ns)
}

// AdvertisedPrefixes is what vpc's BGP neighbors are told, sorted: the
// VPC's subnets and, for each of its active peerings, what the peer VPC
// exports to it under its side's export policy. Routes the VPC learned
// (over BGP or from peers) are not passed on.
func (s *Server) AdvertisedPrefixes(vpc string) []netip.Prefix {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.m.base
	v, ok := c.VPC(vpc)
	if !ok {
		return nil
	}
	out := slices.Clone(v.Subnets)
	for _, p := range c.PeeringsOf(vpc) {
		other, active, _ := s.peerStateLocked(p)
		if !active {
			continue
		}
		out = append(out, parsePrefixes(other.GetExportedPrefixes())...)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}
