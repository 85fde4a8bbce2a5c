package controller

import (
	"context"
	"fmt"
	gomaps "maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// Gateway health and the load trigger (issue 13), from what OHCs report.
//
// Health: a member is live from its first report until its pool's health
// timeout passes without one. The pool loop (runPools) looks at a
// fraction of the shortest health timeout, and at once when a member not
// published live reports, and republishes (refreshPoolsLocked) when the
// live set changed: every host then drops or adds the member in its
// gateway_pool group. Failover time is the health timeout, plus up to a
// loop period, plus propagation to the hosts (and through the peer
// controllers for remote peers).
//
// Load: each host reports, per "S/X", the packets it sent from S to X
// through the pool or promoted entries since its OHC started. The rate of
// each host comes from its reports over at least peerRateWindow (a
// counter that went down is an OHC restart: the new count was sent since,
// within the window);
// this controller sums the rates of its hosts for each peering S->X whose
// peer a pool serves, and decides the mode with the pool's thresholds:
// above direct_above_pps "direct", at or below pool_below_pps back to
// "pool". A host whose last report is older than peerRateStale counts
// for nothing: an OHC that stopped reporting is not sending.

// defaultLoadWarmup is ServerOptions.GatewayLoadWarmup's default.
const defaultLoadWarmup = 5 * time.Second

// modeStore is a Persistence that keeps the modes the load trigger
// chose (ItemStore).
type modeStore interface {
	PoolModes() map[PeeringKey]SavedMode
	CommitModes(set map[PeeringKey]SavedMode, del []PeeringKey) (uint64, error)
}

// peerRateStale is how old a host's last report may be for its rate to
// count in the load trigger.
const peerRateStale = 10 * time.Second

// defaultLoadPeriod is how often the load trigger decides the modes
// when ServerOptions.GatewayLoadPeriod is 0: deciding costs a map lookup
// or two per peering whose peer a pool serves (BenchmarkGatewayPoolLoopIdle),
// and rates are measured over a second anyway.
const defaultLoadPeriod = time.Second

// poolObservations are what OHCs reported that pools depend on. mu
// guards it, as reports come at any time.
type poolObservations struct {
	mu sync.Mutex
	// seen is when each host last reported.
	seen map[string]time.Time
	// samples are each host's last packet counts, by "S/X".
	samples map[string]map[string]packetSample
}

// packetSample is one host's count of one pair at the start of the
// current rate window, and the rate of the window before.
type packetSample struct {
	packets uint64
	at      time.Time
	pps     float64
}

// peerRateWindow is the shortest interval a host's rate is measured over:
// the rate of two reports 100 ms apart is mostly the jitter of when each
// counted, and would cross a threshold back and forth.
const peerRateWindow = time.Second

// observe records host's report at now.
func (o *poolObservations) observe(host string, peerPackets map[string]uint64, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seen[host] = now
	if len(peerPackets) == 0 && o.samples[host] == nil {
		return
	}
	prev := o.samples[host]
	next := make(map[string]packetSample, len(peerPackets))
	for pair, n := range peerPackets {
		p, ok := prev[pair]
		switch {
		case !ok:
			next[pair] = packetSample{packets: n, at: now}
		case now.Sub(p.at) < peerRateWindow && n >= p.packets:
			next[pair] = p // the window goes on
		default:
			sent := n - p.packets
			if n < p.packets {
				// The OHC restarted since the window began: it sent
				// at least n in it.
				sent = n
			}
			next[pair] = packetSample{packets: n, at: now, pps: float64(sent) / now.Sub(p.at).Seconds()}
		}
	}
	o.samples[host] = next
}

// lastSeen is when each host last reported.
func (o *poolObservations) lastSeen() map[string]time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return gomaps.Clone(o.seen)
}

// rates sums the fresh rates of every host by pair.
func (o *poolObservations) rates(now time.Time) map[string]float64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]float64{}
	for host, pairs := range o.samples {
		if now.Sub(o.seen[host]) > peerRateStale {
			continue
		}
		for pair, s := range pairs {
			out[pair] += s.pps
		}
	}
	return out
}

// reportGateway records a report of host for the pools: a member not
// published live wakes the pool loop, so it comes back at once.
func (s *Server) reportGateway(host string, peerPackets map[string]uint64) {
	s.pools.obs.observe(host, peerPackets, time.Now())
	s.mu.Lock()
	wake := false
	for _, p := range s.m.poolsOfHost(host) {
		if !slices.Contains(s.pools.live[p.Name], host) {
			wake = true
		}
	}
	s.mu.Unlock()
	if wake {
		select {
		case s.pools.wake <- struct{}{}:
		default:
		}
	}
}

// liveMembersLocked are the live members of every pool at now.
func (s *Server) liveMembersLocked(seen map[string]time.Time, now time.Time) map[string][]string {
	out := map[string][]string{}
	for _, p := range s.m.base.GatewayPools {
		health, _ := p.Timeouts()
		var live []string
		for _, h := range p.Members {
			at, heard := seen[h]
			switch {
			case heard && now.Sub(at) < health:
				live = append(live, h)
			case !heard && now.Sub(s.pools.started) < health && slices.Contains(s.pools.startMembers[p.Name], h):
				live = append(live, h)
			}
		}
		if live != nil {
			out[p.Name] = sortedMembers(live)
		}
	}
	return out
}

// decideModesLocked decides the mode of every peering whose peer a pool
// serves from the load at now, from the modes published. It returns the
// modes and the load measured of each.
// While warm, a pair is never switched back to its pool: its load may
// be unmeasured rather than low.
func (s *Server) decideModesLocked(rates map[string]float64, warm bool) (map[PeeringKey]pairMode, map[PeeringKey]uint64) {
	modes, pps := make(map[PeeringKey]pairMode, len(s.pools.modes)), make(map[PeeringKey]uint64, len(s.pools.pps))
	local := map[string]*p4meshv1.GatewayPool{} // served VPC → its pool, built once
	// The reason of a pair never switched is the same for every peer of
	// a VPC: said once.
	type reasonKey struct {
		pool, vpc string
		above     uint64
	}
	reasons := map[reasonKey]string{}
	defaultReason := func(k PeeringKey, gp *p4meshv1.GatewayPool) string {
		rk := reasonKey{gp.GetName(), k.PeerVPC, gp.GetDirectAbovePps()}
		r, ok := reasons[rk]
		if !ok {
			r = defaultPoolReason(k, gp)
			reasons[rk] = r
		}
		return r
	}
	for _, p := range s.m.base.Peerings {
		var gp *p4meshv1.GatewayPool
		if s.m.owner[p.PeerVPC] == s.m.base.Controller {
			if s.m.poolServing(p.PeerVPC) == nil {
				continue
			}
			if gp = local[p.PeerVPC]; gp == nil {
				gp = s.localPoolLocked(p.PeerVPC)
				local[p.PeerVPC] = gp
			}
		} else if gp = s.remoteSideLocked(p).GetGatewayPool(); gp == nil {
			continue
		}
		k := p.Key()
		load := uint64(rates[p.VPC+"/"+p.PeerVPC] + 0.5)
		pps[k] = load
		m := s.pools.modeOf(k, gp)
		above, below := gp.GetDirectAbovePps(), gp.GetPoolBelowPps()
		switch {
		case above == 0:
			m = pairMode{reason: defaultReason(k, gp)}
		case !m.direct && load > above:
			m = pairMode{direct: true, switched: true, reason: fmt.Sprintf("%d pps from %s to %s above %d: direct", load, p.VPC, p.PeerVPC, above)}
		case m.direct && load <= below && !warm:
			m = pairMode{switched: true, reason: fmt.Sprintf("%d pps from %s to %s at or below %d: pool", load, p.VPC, p.PeerVPC, below)}
		case !m.switched:
			// Never switched: the reason follows the thresholds.
			m.reason = defaultReason(k, gp)
		}
		modes[k] = m
	}
	return modes, pps
}

// modesToStore are the modes to keep and to forget going from old to
// next: the ones the load trigger chose are kept, so that a restart
// publishes them again; a pair back at its pool's default is forgotten.
func modesToStore(old, next map[PeeringKey]pairMode) (keep map[PeeringKey]SavedMode, forget []PeeringKey) {
	keep = map[PeeringKey]SavedMode{}
	for k, m := range next {
		if o, ok := old[k]; ok && o == m {
			continue
		}
		if m.switched && m.direct {
			keep[k] = SavedMode{Direct: true, Reason: m.reason}
		} else {
			forget = append(forget, k)
		}
	}
	for k := range old {
		if _, ok := next[k]; !ok {
			forget = append(forget, k)
		}
	}
	return keep, forget
}

// poolPeriod is how often the pool loop looks: a quarter of the
// shortest health timeout, so that a member is out within a health
// timeout and a quarter of it; at most the load trigger's period (the
// pools deciding this controller's modes may be other controllers').
func (s *Server) poolPeriod() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	period := s.opts.GatewayLoadPeriod
	for _, p := range s.m.base.GatewayPools {
		health, _ := p.Timeouts()
		period = min(period, health/4)
	}
	return max(period, 5*time.Millisecond)
}

// runPools keeps the pools' live members and the peerings' modes up to
// date until ctx ends.
func (s *Server) runPools(ctx context.Context) {
	t := time.NewTimer(s.poolPeriod())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.pools.wake:
		}
		s.reconcilePools(time.Now())
		t.Reset(s.poolPeriod())
	}
}

// reconcilePools publishes the live members and modes at now if they
// changed, as one runtime change; the load measured is kept for state
// either way.
func (s *Server) reconcilePools(now time.Time) {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	seen := s.pools.obs.lastSeen()
	decide := now.Sub(s.pools.decided) >= s.opts.GatewayLoadPeriod
	var rates map[string]float64
	if decide {
		rates = s.pools.obs.rates(now)
	}
	s.mu.Lock()
	live := s.liveMembersLocked(seen, now)
	modes := s.pools.modes
	if decide {
		modes, s.pools.pps = s.decideModesLocked(rates, now.Sub(s.pools.started) < s.opts.GatewayLoadWarmup)
		s.pools.decided = now
	}
	// (Modes not decided are the ones published: comparing them would
	// cost a look every peering.)
	if gomaps.EqualFunc(live, s.pools.live, slices.Equal) && (!decide || gomaps.Equal(modes, s.pools.modes)) {
		s.mu.Unlock()
		return
	}
	var keep map[PeeringKey]SavedMode
	var forget []PeeringKey
	if decide {
		keep, forget = modesToStore(s.pools.modes, modes)
	}
	s.mu.Unlock()
	var rev uint64
	var err error
	if ms, ok := s.opts.Store.(modeStore); ok && len(keep)+len(forget) > 0 {
		rev, err = ms.CommitModes(keep, forget)
	} else {
		rev, err = s.runtimeRevision()
	}
	if err != nil {
		s.log.Error("gateway pool change not published: no revision", "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.advanceLocked(rev) {
		s.log.Error("gateway pool change not published: the store's revision is not above the tables'", "rev", rev, "tables", s.rev)
		return
	}
	for name, members := range live {
		if old := s.pools.live[name]; !slices.Equal(old, members) {
			s.log.Info("gateway pool members", "pool", name, "live", strings.Join(members, ","), "was", strings.Join(old, ","))
		}
	}
	for name, old := range s.pools.live {
		if _, ok := live[name]; !ok {
			s.log.Warn("gateway pool has no live member", "pool", name, "was", strings.Join(old, ","))
		}
	}
	for k, m := range modes {
		if m.direct != s.pools.modes[k].direct {
			s.log.Info("peering mode", "vpc", k.VPC, "peer_vpc", k.PeerVPC, "mode", m.mode(), "reason", m.reason)
		}
	}
	served, pairs := set[string]{}, set[PeeringKey]{}
	for _, p := range s.m.base.GatewayPools {
		if !slices.Equal(live[p.Name], s.pools.live[p.Name]) {
			for _, v := range p.VPCs {
				served[v] = struct{}{}
			}
		}
	}
	if decide {
		for k, m := range modes {
			if old, ok := s.pools.modes[k]; !ok || old != m {
				pairs[k] = struct{}{}
			}
		}
		for k := range s.pools.modes {
			if _, ok := modes[k]; !ok {
				pairs[k] = struct{}{}
			}
		}
	}
	s.pools.live, s.pools.modes = live, modes
	b := batches{}
	s.refreshPoolsLocked(b, served, pairs)
	s.commitLocked(b)
	s.changedLocked()
}
