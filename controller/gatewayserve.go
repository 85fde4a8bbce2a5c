package controller

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// Serving gateway pools (issue 13). The controller of a VPC X served by a
// pool streams each member host a GatewayDuty for X with X's VPC and
// peering items, as if the member had an endpoint in X, and lets it watch
// X's own connectivity (policy ""). It tells the hosts of every VPC S
// peered with X, and the controllers of remote such S (PeerSide), the
// pool with its live members only; the controller of S decides the
// peering's mode (gatewayhealth.go) and tells S's hosts.
//
// What is published of the pools (live members, modes) is the Server's
// poolState, guarded by Server.mu and moved by runtime changes
// (reconcilePools), so that every table derives the same view.

// poolsOfHost are the pools host id is a member of.
func (m *model) poolsOfHost(id string) []*GatewayPool {
	var out []*GatewayPool
	for i := range m.base.GatewayPools {
		if slices.Contains(m.base.GatewayPools[i].Members, id) {
			out = append(out, &m.base.GatewayPools[i])
		}
	}
	return out
}

// poolServing is the pool serving vpc, nil if none.
func (m *model) poolServing(vpc string) *GatewayPool {
	for i := range m.base.GatewayPools {
		if slices.Contains(m.base.GatewayPools[i].VPCs, vpc) {
			return &m.base.GatewayPools[i]
		}
	}
	return nil
}

// gatewayOf reports whether host id is a member of the pool serving vpc.
func (m *model) gatewayOf(id, vpc string) bool {
	p := m.poolServing(vpc)
	return p != nil && slices.Contains(p.Members, id)
}

// tableHostsLocked are the hosts whose tables hold vpc's items: those
// with an endpoint in it, and the members of the pool serving it.
func (s *Server) tableHostsLocked(vpc string) []string {
	hosts := s.m.hostsOf(vpc)
	if p := s.m.poolServing(vpc); p != nil {
		for _, h := range p.Members {
			if !slices.Contains(hosts, h) {
				hosts = append(hosts, h)
			}
		}
	}
	return hosts
}

// gatewayItemsLocked adds to items, host id's table, a duty per VPC each
// of its pools serves, with that VPC's items.
func (s *Server) gatewayItemsLocked(id string, items map[string]proto.Message) {
	for _, p := range s.m.poolsOfHost(id) {
		_, beat := p.Timeouts()
		for _, vpc := range p.VPCs {
			v := s.m.vpcs[vpc]
			if v == nil {
				continue
			}
			items["gateway-duty/"+p.Name+"/"+vpc] = &p4meshv1.GatewayDuty{Pool: p.Name, Vpc: vpc, Vni: v.VNI, HeartbeatMs: uint32(beat / time.Millisecond)}
			for k, it := range s.vpcItems[vpc] {
				items[k] = it
			}
		}
	}
}

// localPoolLocked is the pool serving vpc (owned here) as hosts and peer
// controllers are told it, with its live members; nil if none serves it.
func (s *Server) localPoolLocked(vpc string) *p4meshv1.GatewayPool {
	p := s.m.poolServing(vpc)
	v := s.m.vpcs[vpc]
	if p == nil || v == nil {
		return nil
	}
	gp := &p4meshv1.GatewayPool{
		Name: p.Name, Vpc: vpc, Vni: v.VNI,
		PromotePackets: p.PromotePackets, PromoteWindowMs: uint32(p.PromoteWindow / time.Millisecond), IdleTimeoutMs: uint32(p.IdleTimeout / time.Millisecond),
		DirectAbovePps: p.DirectAbovePPS, PoolBelowPps: p.PoolBelowPPS,
	}
	for _, h := range s.pools.live[p.Name] {
		if !slices.Contains(p.Members, h) {
			continue // left the pool since the loop last looked
		}
		gp.Members = append(gp.Members, &p4meshv1.GatewayMember{Host: h, UnderlayIp: s.m.hostIP(h)})
	}
	return gp
}

// peerPoolLocked is the pool serving p's peer VPC: this controller's own
// when it owns the peer, else what the peer's controller said in its
// side (other).
func (s *Server) peerPoolLocked(p Peering, other *p4meshv1.PeerSide) *p4meshv1.GatewayPool {
	if s.m.owner[p.PeerVPC] == s.m.base.Controller {
		return s.localPoolLocked(p.PeerVPC)
	}
	return other.GetGatewayPool()
}

// setPoolLocked fills the pool and mode of it, peering p as its VPC's
// hosts are told it. A peer served by no pool leaves both empty, which
// OHCs read as "direct": the stream of a network without pools is what
// it was before pools.
func (s *Server) setPoolLocked(p Peering, other *p4meshv1.PeerSide, it *p4meshv1.Peering) {
	gp := s.peerPoolLocked(p, other)
	if gp == nil {
		return
	}
	it.GatewayPool = gp
	m := s.pools.effectiveMode(p.Key(), gp)
	it.Mode, it.ModeReason = m.mode(), m.reason
}

// Peering modes as the protocol spells them.
const (
	modeDirect = "direct"
	modePool   = "pool"
)

// pairMode is the mode decided for one peering with a pool.
type pairMode struct {
	direct bool
	reason string
	// switched: the load trigger chose the mode (reason says why), rather
	// than it being the pool's default.
	switched bool
}

func (m pairMode) mode() string {
	if m.direct {
		return modeDirect
	}
	return modePool
}

// poolState is what the Server publishes of its pools and of its
// peerings' modes. Server.mu guards it, except obs, which reports write.
type poolState struct {
	// live are the members of each pool (by name) published live,
	// sorted.
	live map[string][]string
	// modes are the modes decided of the peerings whose peer a pool
	// serves, by peering; a peering absent is in mode pool. pps is
	// the last load measured of each, for state.
	modes map[PeeringKey]pairMode
	pps   map[PeeringKey]uint64
	// started is when the Server started, and startMembers the members
	// its configuration had then (pool → hosts): those count as live
	// until a health timeout after the start even unheard, so that a
	// controller restart does not take every gateway out of every host's
	// group until the first heartbeats arrive (a restart must not flush
	// switches). A member added later starts live at its first report.
	started      time.Time
	startMembers map[string][]string
	// decided is when the modes were last decided.
	decided time.Time
	// wake tells the pool loop to look again at once: a report came from
	// a member not published live.
	wake chan struct{}
	obs  *poolObservations
}

func newPoolState(c *Config, now time.Time) poolState {
	ps := poolState{
		live: map[string][]string{}, modes: map[PeeringKey]pairMode{}, pps: map[PeeringKey]uint64{},
		started: now, startMembers: map[string][]string{}, wake: make(chan struct{}, 1),
	}
	ps.obs = &poolObservations{seen: map[string]time.Time{}, samples: map[string]map[string]packetSample{}}
	for _, p := range c.GatewayPools {
		ps.startMembers[p.Name] = slices.Clone(p.Members)
	}
	return ps
}

// modeOf is the mode of peering k, whose peer pool gp serves.
func (ps *poolState) modeOf(k PeeringKey, gp *p4meshv1.GatewayPool) pairMode {
	if m, ok := ps.modes[k]; ok {
		return m
	}
	return pairMode{reason: defaultPoolReason(k, gp)}
}

// effectiveMode is the mode peering k is published in: the one decided,
// except that a pool with no live member sends nothing anywhere, so the
// peering is direct until one is live again (adding a pool must not
// blackhole its VPC until its gateways first report).
func (ps *poolState) effectiveMode(k PeeringKey, gp *p4meshv1.GatewayPool) pairMode {
	if len(gp.GetMembers()) == 0 {
		return pairMode{direct: true, reason: fmt.Sprintf("gateway pool %s serving %s has no live member: direct", gp.GetName(), k.PeerVPC)}
	}
	return ps.modeOf(k, gp)
}

func defaultPoolReason(k PeeringKey, gp *p4meshv1.GatewayPool) string {
	if gp.GetDirectAbovePps() == 0 {
		return fmt.Sprintf("gateway pool %s serves %s, load trigger off: pool", gp.GetName(), k.PeerVPC)
	}
	return fmt.Sprintf("gateway pool %s serves %s, direct above %d pps: pool", gp.GetName(), k.PeerVPC, gp.GetDirectAbovePps())
}

// GatewayPoolStatus is one pool's state as this controller sees it.
type GatewayPoolStatus struct {
	Name string
	// Live are the members published live, sorted.
	Live []string
}

// poolStatusLocked is the state of every pool configured.
func (s *Server) poolStatusLocked() []GatewayPoolStatus {
	var out []GatewayPoolStatus
	for _, p := range s.m.base.GatewayPools {
		out = append(out, GatewayPoolStatus{Name: p.Name, Live: slices.Clone(s.pools.live[p.Name])})
	}
	return out
}

// peeringPoolStatusLocked fills the pool part of ps, peering p's state.
func (s *Server) peeringPoolStatusLocked(p Peering, other *p4meshv1.PeerSide, ps *PeeringStatus) {
	gp := s.peerPoolLocked(p, other)
	if gp == nil {
		ps.Mode, ps.ModeReason = modeDirect, fmt.Sprintf("no gateway pool serves %s: direct", p.PeerVPC)
		return
	}
	m := s.pools.effectiveMode(p.Key(), gp)
	ps.GatewayPool, ps.Mode, ps.ModeReason, ps.PPS = gp.GetName(), m.mode(), m.reason, s.pools.pps[p.Key()]
	ps.DirectAbovePPS, ps.PoolBelowPPS = gp.GetDirectAbovePps(), gp.GetPoolBelowPps()
}

// remoteSideLocked is what the controller owning p's peer VPC, another
// one, said of its side of p; nil if nothing (or the peer is owned here).
func (s *Server) remoteSideLocked(p Peering) *p4meshv1.PeerSide {
	return s.remote[s.m.owner[p.PeerVPC]][p.PeerVPC+"/"+p.VPC]
}

// refreshPoolsLocked republishes what reads the pool state after it
// changed: the peer sides of the VPCs in served (whose pool's live
// members changed), and the peering items of the peerings whose peer is
// in served or whose mode changed (pairs), on the tables of the hosts
// that hold them. A peering item is the one published with its pool and
// mode set again (setPoolLocked), which is what peeringItemLocked would
// build (TestGatewayRefreshMatchesRebuild): rebuilding each from scratch
// looks its other side up by scanning the configuration, which made a
// failover cost the square of the peerings.
func (s *Server) refreshPoolsLocked(b batches, served set[string], pairs set[PeeringKey]) {
	m := s.m
	for _, p := range m.base.Peerings {
		if _, ok := served[p.VPC]; ok {
			b.put(s.peers, p.VPC+"/"+p.PeerVPC, s.peerSideLocked(p))
		}
		_, peer := served[p.PeerVPC]
		_, pair := pairs[p.Key()]
		if !peer && !pair {
			continue
		}
		key := "peering/" + p.VPC + "/" + p.PeerVPC
		old, _ := s.vpcItems[p.VPC][key].(*p4meshv1.Peering)
		if old == nil {
			continue
		}
		it := proto.CloneOf(old)
		it.GatewayPool, it.Mode, it.ModeReason = nil, "", ""
		s.setPoolLocked(p, s.remoteSideLocked(p), it)
		if proto.Equal(old, it) {
			continue
		}
		s.vpcItems[p.VPC][key] = it
		for _, h := range s.tableHostsLocked(p.VPC) {
			b.put(s.hostTableLocked(h), key, it)
		}
	}
}

// sortedMembers sorts hosts by id, as GatewayPool.members are.
func sortedMembers(hosts []string) []string {
	out := slices.Clone(hosts)
	slices.SortFunc(out, cmp.Compare[string])
	return slices.Compact(out)
}
