package ohc

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/p4mesh/p4mesh/p4rt"
)

// On-demand programming (issue 13). A peering in mode "pool" reaches its
// peer through the peer's gateway pool (the compile's pool route): the
// programmer withholds the peer's vnet_destination entries, which the
// compile still makes, and writes one only once the destination is in use.
// The pool path raises a digest (VNI, destination) per packet; a
// destination seen often enough is promoted to its direct entry; a
// promoted entry whose direct counter stops moving is demoted; when the
// table's budget is full the least recently used promoted entry makes room.
//
// The digest is de-duplicated by the switch until it is acknowledged (the
// P4Runtime spec's digest cache: p4mesh-switch's digester does it, and
// BMv2 suppresses repeats until the ack as well),
// and the OHC acknowledges each list as soon as it reads it. So one
// destination yields at most one digest per acknowledgement round trip:
// "PromotePackets digests within PromoteWindow" means at least that many
// packets, each after the OHC heard of the one before: a rate threshold
// for flows slower than the round trip (a ping every 200 ms makes 3 in
// 0.4 s), and "3 round trips" for faster ones.

// Defaults of a pool's promotion parameters (GatewayPool fields left 0).
const (
	// DefaultPromotePackets is how many digests of a destination promote
	// it: 3, so a single probe, a DNS answer or a port scan touching a
	// destination once or twice stays on the pool path, while any flow of
	// a few packets a second is promoted within its first packets.
	DefaultPromotePackets = 3
	// DefaultPromoteWindow is the window the digests must fall in.
	DefaultPromoteWindow = time.Second
	// DefaultIdleTimeout is how long a promoted entry's counter may stay
	// still before it is demoted.
	DefaultIdleTimeout = 30 * time.Second
)

const (
	// maxDemandPoll and minDemandPoll bound how often promoted entries'
	// and pool routes' counters are read: a quarter of the shortest idle
	// timeout, so an idle entry goes within 1.25 idle timeouts, and at
	// least every second, for peer_packets, unless a poll is slow (see
	// pollInterval).
	maxDemandPoll = time.Second
	minDemandPoll = 20 * time.Millisecond
	// counterReadBatch bounds the entities of one counter Read: 10k
	// promoted entries are 3 Reads of well under gRPC's 4 MB.
	counterReadBatch = 4096
	// wildcardAbove is how many promoted entries are read by key; more
	// are read with one wildcard query of vnet_destination's counters
	// (see BenchmarkDemandPoll).
	wildcardAbove = 1024
	// digestInbox bounds the digests waiting for Run; more are dropped
	// (the switch sends them again once acknowledged).
	digestInbox = 16384
	// demandDigest is vpc_peering.p4's digest on the pool path.
	demandDigest     = "gateway_digest_t"
	demandPoolAction = "to_gateway_pool"
)

// gatewayDigestConfig batches digests for at most 1 ms (a scan's burst is
// one list, a lone packet waits 1 ms at most) and 128 per list, and has
// the switch forget a list not acknowledged within a second, so that a
// lost ack does not silence its destinations for good.
var gatewayDigestConfig = &p4v1.DigestEntry_Config{
	MaxTimeoutNs: int64(time.Millisecond), MaxListSize: 128, AckTimeoutNs: int64(time.Second),
}

// DemandStats describe the on-demand programming.
type DemandStats struct {
	// Budget is vnet_destination's budget (its size, or the configured
	// lower one); Required the entries the configuration requires there
	// (never evicted), Promoted the promoted ones, Withheld the pool-mode
	// destinations not programmed.
	Budget, Required, Promoted, Withheld int
	// Direct counts the entries of pairs with a pool in direct mode,
	// whose counters peer_packets sums too.
	Direct int
	// Promotions, Demotions (idle) and Evictions (LRU, to make room)
	// since the start; Adopted the promoted entries found on the switch
	// when the OHC started and kept.
	Promotions, Demotions, Evictions, Adopted uint64
	// Digests counts the digest messages read, Ignored those naming no
	// pool-mode destination of the view (or one already promoted),
	// Dropped those lost to a full inbox, Full the promotions refused
	// because required entries fill the budget.
	Digests, Ignored, Dropped, Full uint64
	// DigestEnabled says the gateway digest is enabled on the switch.
	DigestEnabled bool
	// LastPromotion is how long the last promotion took from the
	// digest's arrival to the entry written.
	LastPromotion time.Duration
}

// destKey is a vnet_destination key: the sender's VNI and the IPv4
// destination, pointer-free so that maps of a million are cheap to hash
// and for the collector to skip.
type destKey struct {
	vni, ip uint32
}

type pairKey struct{ s, x uint32 }

// pairInfo is a (VPC, peer) pair the host reaches through a pool.
type pairInfo struct {
	name    string // "vpc/peer_vpc", peer_packets' key
	pool    bool   // mode pool: on demand
	packets int
	window  time.Duration
	idle    time.Duration
}

type promotedEntry struct {
	k    destKey
	pk   pairKey
	e    *p4v1.Entity
	elem *list.Element
	last int64 // packets last read; -1 before the first read of an adopted entry
	used time.Time
}

type directEntry struct {
	pk   pairKey
	last int64 // packets last read; -1 before the first read
}

type routeKey struct {
	vni uint32
	p   netip.Prefix
}

type poolRoute struct {
	e    *p4v1.Entity
	name string // the pair it carries ("" unknown)
	last int64  // -1 before the first read
}

type digestEvent struct {
	k  destKey
	at time.Time
}

// kinds of entity for the demand filter.
const (
	kindOther = iota
	kindDest  // a vnet_destination entry
	kindRoute // a vnet_route entry to the gateway pool
)

// demand is the programmer's on-demand state. Run's goroutine alone uses
// it, but for the digest inbox (mu).
type demand struct {
	// IDs of what it looks at, from the schema.
	destTable, routeTable, encapID, poolActionID uint32
	vniField, dstField, routeVNI, routeDst       uint32
	dstVNIParam                                  uint32
	digestID                                     uint32
	hasDigest                                    bool

	budget int // vnet_destination's; 0: unlimited
	// pairs are the pairs with a pool in the last view filtered; routes
	// by VNI, their peerings' exported prefixes and pair names, to name
	// the pool routes.
	pairs    map[pairKey]pairInfo
	prefixes map[uint32][]namedPrefix
	// cands are the pool-mode destinations of the compile (withheld or
	// promoted), with their entries as the compile made them.
	cands    map[destKey]*p4v1.Entity
	required int // vnet_destination entries the configuration requires
	promo    map[destKey]*promotedEntry
	lru      *list.List // of *promotedEntry, least recently used first
	seen     map[destKey][]time.Time
	routes   map[routeKey]*poolRoute
	// direct are the entries of pairs with a pool in direct mode: counted
	// in peer_packets, so that the controller sees the pair's rate in
	// direct mode too (its load trigger's way back to pool mode).
	direct   map[destKey]*directEntry
	totals   map[string]uint64 // peer_packets
	polled   bool              // a counter poll has run since the start
	adopting bool              // the first full pass has not run yet
	// evicted are the promoted entries the last filter evicted: in its
	// Gone, and to be deleted before its Came is written (see
	// Programmer.pass), so the table never holds more than its budget.
	evicted  []*p4v1.Entity
	enabled  bool          // digest entry written in this term
	pollCost time.Duration // how long the last counter poll took
	st       DemandStats

	mu    sync.Mutex
	inbox []digestEvent
	drops uint64
	// malformed counts digest entries wider than their fields: Ignored.
	malformed uint64
	wake      chan struct{}
}

type namedPrefix struct {
	p    netip.Prefix
	name string
}

func newDemand(s *p4rt.Schema, budget int) (*demand, error) {
	d := &demand{
		budget: budget, pairs: map[pairKey]pairInfo{}, cands: map[destKey]*p4v1.Entity{},
		promo: map[destKey]*promotedEntry{}, lru: list.New(), seen: map[destKey][]time.Time{},
		routes: map[routeKey]*poolRoute{}, direct: map[destKey]*directEntry{}, totals: map[string]uint64{}, adopting: true,
		wake: make(chan struct{}, 1),
	}
	dt, err := s.Table(tVnetDestination)
	if err != nil {
		return nil, err
	}
	rt, err := s.Table(tVnetRoute)
	if err != nil {
		return nil, err
	}
	enc, err := s.Action(aEncapToHost)
	if err != nil {
		return nil, err
	}
	pool, err := s.Action(demandPoolAction)
	if err != nil {
		return nil, err
	}
	field := func(t *p4rt.Table, n string) (uint32, error) {
		f, err := t.Field(n)
		return f.GetId(), err
	}
	d.destTable, d.routeTable, d.encapID, d.poolActionID = dt.ID(), rt.ID(), enc.ID(), pool.ID()
	if d.vniField, err = field(dt, "vni"); err != nil {
		return nil, err
	}
	if d.dstField, err = field(dt, "dst_ip"); err != nil {
		return nil, err
	}
	if d.routeVNI, err = field(rt, "vni"); err != nil {
		return nil, err
	}
	if d.routeDst, err = field(rt, "dst_ip"); err != nil {
		return nil, err
	}
	p, err := enc.Param("dst_vni")
	if err != nil {
		return nil, err
	}
	d.dstVNIParam = p.GetId()
	if dg, err := s.Digest(demandDigest); err == nil {
		d.digestID, d.hasDigest = dg.GetPreamble().GetId(), true
	}
	d.st.Budget = budget
	return d, nil
}

// classify says what e is to the filter: a vnet_destination entry (k, and
// pk when it encapsulates to a peer), a pool route (rk), or other.
func (d *demand) classify(e *p4v1.Entity) (kind int, k destKey, pk pairKey, rk routeKey) {
	te := e.GetTableEntry()
	if te == nil || te.GetIsDefaultAction() {
		return kindOther, k, pk, rk
	}
	switch te.GetTableId() {
	case d.destTable:
		for _, m := range te.GetMatch() {
			switch m.GetFieldId() {
			case d.vniField:
				k.vni = uint32(decodeUint(m.GetExact().GetValue()))
			case d.dstField:
				k.ip = uint32(decodeUint(m.GetExact().GetValue()))
			}
		}
		if a := te.GetAction().GetAction(); a != nil && a.GetActionId() == d.encapID {
			pk.s = k.vni
			for _, p := range a.GetParams() {
				if p.GetParamId() == d.dstVNIParam {
					pk.x = uint32(decodeUint(p.GetValue()))
				}
			}
		}
		return kindDest, k, pk, rk
	case d.routeTable:
		a := te.GetAction().GetAction()
		if a == nil || a.GetActionId() != d.poolActionID {
			return kindOther, k, pk, rk
		}
		for _, m := range te.GetMatch() {
			switch m.GetFieldId() {
			case d.routeVNI:
				rk.vni = uint32(decodeUint(m.GetExact().GetValue()))
			case d.routeDst:
				if l := m.GetLpm(); l != nil {
					rk.p = netip.PrefixFrom(decodeIPv4(l.GetValue()), int(l.GetPrefixLen()))
				}
			}
		}
		return kindRoute, k, pk, rk
	}
	return kindOther, k, pk, rk
}

// decodeUint reads a value of an entry the compile made (so well formed);
// what the switch sends is checked with p4rt.DecodeUint instead.
func decodeUint(b []byte) uint64 {
	v, _ := p4rt.DecodeUint(b, 64)
	return v
}

// decodeIPv4 reads a canonical (leading zeros stripped) IPv4 value.
func decodeIPv4(b []byte) netip.Addr {
	v := uint32(decodeUint(b))
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// pairsOf lists v's pairs with a pool: active peerings whose peer a pool
// serves, in either mode, with the promotion parameters defaulted. A pool
// with no live member carries nothing (the pool path drops before it
// raises a digest, so nothing would ever be promoted), nor one whose only
// member is this host (the compile gives it no pool path): its pairs are
// programmed as direct until a member is back.
func pairsOf(v *View) (map[pairKey]pairInfo, map[uint32][]namedPrefix) {
	pairs := map[pairKey]pairInfo{}
	prefixes := map[uint32][]namedPrefix{}
	for _, p := range v.Peerings {
		x, ok := v.VPCs[p.VPC]
		if !ok || !p.Active || p.Pool == nil {
			continue
		}
		// PoolMembers, as the compile: a pool whose only gateway is this
		// host has no pool path here either.
		info := pairInfo{name: p.VPC + "/" + p.PeerVPC, pool: p.Mode == ModePool && len(PoolMembers(p.Pool, v.Host.IP)) > 0,
			packets: int(p.Pool.PromotePackets), window: p.Pool.PromoteWindow, idle: p.Pool.IdleTimeout}
		if info.packets <= 0 {
			info.packets = DefaultPromotePackets
		}
		if info.window <= 0 {
			info.window = DefaultPromoteWindow
		}
		if info.idle <= 0 {
			info.idle = DefaultIdleTimeout
		}
		pairs[pairKey{x.VNI, p.PeerVNI}] = info
		for _, pr := range p.PeerPrefixes {
			prefixes[x.VNI] = append(prefixes[x.VNI], namedPrefix{pr.Masked(), info.name})
		}
	}
	return pairs, prefixes
}

// routeName is the pair a pool route of VNI vni to p carries: the peering
// that exports p (or a prefix holding it).
func (d *demand) routeName(rk routeKey) string {
	name := ""
	for _, np := range d.prefixes[rk.vni] {
		if np.p == rk.p {
			return np.name
		}
		if name == "" && np.p.Bits() <= rk.p.Bits() && np.p.Contains(rk.p.Addr()) {
			name = np.name
		}
	}
	return name
}

// withheld says whether a vnet_destination entry of pair pk is left to
// the pool path unless promoted.
func (d *demand) withheld(pk pairKey) bool {
	return d.pairs[pk].pool
}

// filter turns what a compile changed in its desired state into what
// changes on the switch: pool-mode destinations are withheld unless
// promoted, a change of mode brings a pair's destinations in or takes the
// unpromoted ones out (desired is the compile's whole desired state, read
// only then), and promoted entries make room, least recently used first,
// for required ones. It follows the compile: call it for each compile
// that succeeded, in order; whole says the compile was whole (an
// incremental one changes no peering, so the pairs are not looked at
// again: a change costs the delta, not the peerings).
func (d *demand) filter(v *View, in Delta, desired func() []*p4v1.Entity, whole bool) Delta {
	old := d.pairs
	if whole {
		d.pairs, d.prefixes = pairsOf(v)
	}
	if len(old) == 0 && len(d.pairs) == 0 && len(d.cands) == 0 && len(d.promo) == 0 && len(d.routes) == 0 && len(d.direct) == 0 && !d.anyRoute(in.Came) {
		// No pool in sight: everything is required. Count the entries
		// only, at the cost of the delta.
		for _, e := range in.Gone {
			if kind, _, _, _ := d.classify(e); kind == kindDest {
				d.required--
			}
		}
		for _, e := range in.Came {
			if kind, _, _, _ := d.classify(e); kind == kindDest {
				d.required++
			}
		}
		d.publishCounts()
		return in
	}
	out := Delta{Gone: make([]*p4v1.Entity, 0, len(in.Gone)), Came: make([]*p4v1.Entity, 0, len(in.Came))}
	var regone map[destKey]bool // promoted entries that went, maybe to come back changed
	for _, e := range in.Gone {
		kind, k, pk, rk := d.classify(e)
		switch {
		case kind == kindRoute:
			delete(d.routes, rk)
		case kind == kindDest && old[pk].pool:
			delete(d.cands, k)
			if d.promo[k] == nil {
				continue // withheld: not on the switch
			}
			if regone == nil {
				regone = map[destKey]bool{}
			}
			regone[k] = true
		case kind == kindDest:
			d.required--
			d.undirect(k)
		}
		out.Gone = append(out.Gone, e)
	}
	var came map[destKey]bool
	var passed map[destKey]bool // promoted entries the compile changed: in Gone and Came
	// A pair that came, went or changed mode changes how its entries are
	// programmed (pool mode) or counted (direct mode).
	modeChange := !maps.EqualFunc(old, d.pairs, func(a, b pairInfo) bool { return a.pool == b.pool })
	// Entries the compile did not change but whose pair changed mode are
	// found in desired, told apart from those that came by came: unless
	// everything came (a first compile), when there are none.
	scan := modeChange && len(in.Came) < len(desired())
	if scan {
		came = make(map[destKey]bool, len(in.Came))
	}
	if len(d.cands) == 0 {
		d.cands = make(map[destKey]*p4v1.Entity, len(in.Came))
	}
	for _, e := range in.Came {
		kind, k, pk, rk := d.classify(e)
		switch {
		case kind == kindRoute:
			d.routes[rk] = &poolRoute{e: e, name: d.routeName(rk), last: -1}
		case kind == kindDest && d.withheld(pk):
			d.cands[k] = e
			if came != nil {
				came[k] = true
			}
			pr := d.promo[k]
			if pr == nil {
				continue
			}
			pr.e, pr.pk = e, pk
			delete(regone, k)
			if passed == nil {
				passed = map[destKey]bool{}
			}
			passed[k] = true
		case kind == kindDest:
			if came != nil {
				came[k] = true
			}
			d.required++
			if info, ok := d.pairs[pk]; ok && !info.pool {
				d.direct[k] = &directEntry{pk: pk, last: -1}
			}
		}
		out.Came = append(out.Came, e)
	}
	for k := range regone {
		d.unpromote(k)
	}
	if scan {
		for _, e := range desired() {
			kind, k, pk, _ := d.classify(e)
			if kind != kindDest || came[k] {
				continue
			}
			was, now := old[pk].pool, d.pairs[pk].pool
			if info, ok := d.pairs[pk]; ok && !info.pool {
				if d.direct[k] == nil {
					last := int64(-1)
					if pr := d.promo[k]; pr != nil {
						last = pr.last // counted while promoted: go on from there
					}
					d.direct[k] = &directEntry{pk: pk, last: last}
				}
			} else {
				d.undirect(k)
			}
			switch {
			case was == now:
			case now: // direct -> pool: on the switch, required until now
				d.cands[k] = e
				d.required--
				out.Gone = append(out.Gone, e)
			default: // pool -> direct
				delete(d.cands, k)
				if d.promo[k] != nil {
					d.unpromote(k) // on the switch already, now required
				} else {
					out.Came = append(out.Came, e)
				}
				d.required++
			}
		}
	}
	if len(old) != len(d.pairs) || modeChange {
		for rk, r := range d.routes {
			r.name = d.routeName(rk)
		}
	}
	// Required entries first: promoted ones make room.
	d.evicted = nil
	var evicted map[destKey]bool
	for d.budget > 0 && d.required+len(d.promo) > d.budget && d.lru.Len() > 0 {
		pr := d.lru.Front().Value.(*promotedEntry)
		if evicted == nil {
			evicted = map[destKey]bool{}
		}
		evicted[pr.k] = true
		d.evicted = append(d.evicted, pr.e)
		if !passed[pr.k] {
			out.Gone = append(out.Gone, pr.e)
		} // else its old entry is in Gone already, and its new one leaves Came below
		d.unpromote(pr.k)
		d.st.Evictions++
	}
	if evicted != nil {
		// An evicted entry the compile changed must not be written back.
		kept := out.Came[:0]
		for _, e := range out.Came {
			if kind, k, _, _ := d.classify(e); kind == kindDest && evicted[k] {
				continue
			}
			kept = append(kept, e)
		}
		out.Came = kept
	}
	d.publishCounts()
	return out
}

// anyRoute says whether es hold a pool route.
func (d *demand) anyRoute(es []*p4v1.Entity) bool {
	for _, e := range es {
		if te := e.GetTableEntry(); te != nil && te.GetTableId() == d.routeTable {
			if a := te.GetAction().GetAction(); a != nil && a.GetActionId() == d.poolActionID {
				return true
			}
		}
	}
	return false
}

// desired is the compile's desired state as the switch must hold it:
// without the withheld destinations.
func (d *demand) desired(all []*p4v1.Entity) []*p4v1.Entity {
	if len(d.cands) == len(d.promo) {
		return all // nothing withheld
	}
	out := make([]*p4v1.Entity, 0, len(all)-len(d.cands)+len(d.promo))
	for _, e := range all {
		if kind, k, pk, _ := d.classify(e); kind == kindDest && d.withheld(pk) && d.promo[k] == nil {
			continue
		}
		out = append(out, e)
	}
	return out
}

// promoteLocal records k as promoted now (its entry written or to be).
func (d *demand) promoteLocal(k destKey, e *p4v1.Entity, now time.Time, last int64) *promotedEntry {
	_, _, pk, _ := d.classify(e)
	pr := &promotedEntry{k: k, pk: pk, e: e, last: last, used: now}
	pr.elem = d.lru.PushBack(pr)
	d.promo[k] = pr
	return pr
}

// undirect forgets a direct-mode entry.
func (d *demand) undirect(k destKey) {
	if len(d.direct) > 0 {
		delete(d.direct, k)
	}
}

// unpromote forgets a promotion (the entry is gone, or required now).
func (d *demand) unpromote(k destKey) {
	if pr := d.promo[k]; pr != nil {
		d.lru.Remove(pr.elem)
		delete(d.promo, k)
	}
}

func (d *demand) publishCounts() {
	d.st.Required, d.st.Promoted, d.st.Withheld, d.st.Direct = d.required, len(d.promo), len(d.cands)-len(d.promo), len(d.direct)
}

// adopt is the first full pass's keep: a withheld destination's entry
// found on the switch as the compile makes it was promoted by the OHC
// before it restarted, and stays promoted while the budget has room.
func (d *demand) adopt(e *p4v1.Entity, now time.Time) bool {
	kind, k, pk, _ := d.classify(e)
	if kind != kindDest || !d.withheld(pk) || d.promo[k] != nil {
		return false
	}
	want := d.cands[k]
	if want == nil || (d.budget > 0 && d.required+len(d.promo) >= d.budget) {
		return false
	}
	if plan := p4rt.Diff([]*p4v1.Entity{e}, []*p4v1.Entity{want}); len(plan.Modifies)+len(plan.Inserts)+len(plan.Deletes) > 0 {
		return false
	}
	d.promoteLocal(k, want, now, -1)
	d.st.Adopted++
	d.publishCounts()
	return true
}

// readDigests reads the switch's digest lists until ctx ends or the
// client closes, acknowledges each at once and queues its destinations
// for Run.
func (d *demand) readDigests(ctx context.Context, c *p4rt.Client, log *slog.Logger) {
	for {
		var dl *p4v1.DigestList
		var ok bool
		select {
		case <-ctx.Done():
			return
		case dl, ok = <-c.Digests():
			if !ok {
				return
			}
		}
		if err := c.AckDigest(ctx, dl); err != nil {
			if ctx.Err() != nil {
				return
			}
			// The switch's ack timeout releases the list anyway; until
			// then it drops repeats of its digests.
			log.Warn("gateway digest not acknowledged", "list", dl.GetListId(), "err", err)
		}
		if !d.hasDigest || dl.GetDigestId() != d.digestID {
			continue
		}
		now := time.Now()
		d.mu.Lock()
		for _, data := range dl.GetData() {
			m := data.GetStruct().GetMembers()
			if len(m) != 2 {
				continue
			}
			if len(d.inbox) >= digestInbox {
				d.drops++
				continue
			}
			// The switch's word, so checked: a value wider than the
			// digest's field names no destination.
			vni, err1 := p4rt.DecodeUint(m[0].GetBitstring(), 24)
			dst, err2 := p4rt.DecodeUint(m[1].GetBitstring(), 32)
			if err1 != nil || err2 != nil {
				d.malformed++
				continue
			}
			d.inbox = append(d.inbox, digestEvent{k: destKey{uint32(vni), uint32(dst)}, at: now})
		}
		d.mu.Unlock()
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// take empties the inbox.
func (d *demand) take() []digestEvent {
	d.mu.Lock()
	defer d.mu.Unlock()
	evs := d.inbox
	d.inbox = nil
	d.st.Dropped += d.drops
	d.drops = 0
	d.st.Ignored += d.malformed
	d.malformed = 0
	return evs
}

// count adds digests to the windows and returns the destinations that
// reached their pool's threshold.
func (d *demand) count(evs []digestEvent) []digestEvent {
	var ready []digestEvent
	for _, ev := range evs {
		d.st.Digests++
		e := d.cands[ev.k]
		if e == nil || d.promo[ev.k] != nil {
			// Not a pool-mode destination of the view, or already
			// direct (a packet that left before the entry came).
			d.st.Ignored++
			continue
		}
		_, _, pk, _ := d.classify(e)
		info := d.pairs[pk]
		ts := d.seen[ev.k]
		i := 0
		for i < len(ts) && ev.at.Sub(ts[i]) >= info.window {
			i++
		}
		ts = append(ts[i:], ev.at)
		if len(ts) >= info.packets {
			delete(d.seen, ev.k)
			ready = append(ready, ev)
			continue
		}
		d.seen[ev.k] = ts
	}
	return ready
}

// pollInterval is how often counters are read: a quarter of the shortest
// idle timeout, at most every maxDemandPoll.
func (d *demand) pollInterval() time.Duration {
	ivl := maxDemandPoll
	for _, info := range d.pairs {
		if info.pool {
			ivl = min(ivl, info.idle/4)
		}
	}
	// A poll costs CPU on both ends in proportion to the entries read
	// (BenchmarkDemandPoll): at most a tenth of the time goes to it.
	return max(ivl, minDemandPoll, 10*d.pollCost)
}

// forget drops digest windows that ended.
func (d *demand) forget(now time.Time) {
	for k, ts := range d.seen {
		if len(ts) == 0 || now.Sub(ts[len(ts)-1]) > maxDemandPoll+DefaultPromoteWindow {
			delete(d.seen, k)
		}
	}
}

// counterQuery is the direct counter read of a table entry.
func counterQuery(e *p4v1.Entity) *p4v1.Entity {
	te := e.GetTableEntry()
	return &p4v1.Entity{Entity: &p4v1.Entity_DirectCounterEntry{DirectCounterEntry: &p4v1.DirectCounterEntry{
		TableEntry: &p4v1.TableEntry{TableId: te.GetTableId(), Match: te.GetMatch(), Priority: te.GetPriority()},
	}}}
}

// readCounters reads the direct counters of the promoted entries and the
// pool routes: packets by destination and by route.
func (d *demand) readCounters(ctx context.Context, c *p4rt.Client) (map[destKey]int64, map[routeKey]int64, error) {
	query := make([]*p4v1.Entity, 0, min(len(d.promo), wildcardAbove)+len(d.routes)+1)
	if len(d.promo) > wildcardAbove || len(d.direct) > 0 {
		// One query for the whole table: the switch answers it far
		// cheaper per entry than as many keyed queries, and the
		// required entries it returns as well cost less than that.
		query = append(query, &p4v1.Entity{Entity: &p4v1.Entity_DirectCounterEntry{DirectCounterEntry: &p4v1.DirectCounterEntry{
			TableEntry: &p4v1.TableEntry{TableId: d.destTable}}}})
	} else {
		for _, pr := range d.promo {
			query = append(query, counterQuery(pr.e))
		}
	}
	for _, r := range d.routes {
		query = append(query, counterQuery(r.e))
	}
	dests, routes := make(map[destKey]int64, len(d.promo)+len(d.direct)), make(map[routeKey]int64, len(d.routes))
	for len(query) > 0 {
		n := min(len(query), counterReadBatch)
		err := c.Read(ctx, query[:n], func(e *p4v1.Entity) error {
			dc := e.GetDirectCounterEntry()
			if dc == nil {
				return nil
			}
			pkts := dc.GetData().GetPacketCount()
			switch kind, k, _, rk := d.classify(&p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: withPoolAction(dc.GetTableEntry(), d)}}); kind {
			case kindDest:
				if d.promo[k] != nil || d.direct[k] != nil {
					dests[k] = pkts
				}
			case kindRoute:
				routes[rk] = pkts
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		query = query[n:]
	}
	return dests, routes, nil
}

// withPoolAction gives a counter's table entry (match only) the pool
// action when it is vnet_route's, so classify reads its key.
func withPoolAction(te *p4v1.TableEntry, d *demand) *p4v1.TableEntry {
	if te.GetTableId() != d.routeTable {
		return te
	}
	return &p4v1.TableEntry{TableId: te.GetTableId(), Match: te.GetMatch(),
		Action: &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: &p4v1.Action{ActionId: d.poolActionID}}}}
}

// account adds counter readings to peer_packets, moves promoted entries
// whose counter moved to the back of the LRU, and returns the promoted
// entries idle for their pair's idle timeout.
func (d *demand) account(dests map[destKey]int64, routes map[routeKey]int64, now time.Time) []*promotedEntry {
	add := func(name string, last *int64, v int64) {
		switch {
		case *last < 0 && !d.polled:
			// On the switch before the OHC started: counted from now.
		case *last < 0:
			d.totals[name] += uint64(v)
		case v >= *last:
			d.totals[name] += uint64(v - *last)
		default: // the entry was written anew, its counter reset
			d.totals[name] += uint64(v)
		}
		*last = v
	}
	for rk, v := range routes {
		if r := d.routes[rk]; r != nil && r.name != "" {
			add(r.name, &r.last, v)
		}
	}
	for k, de := range d.direct {
		if v, ok := dests[k]; ok {
			add(d.pairs[de.pk].name, &de.last, v)
		}
	}
	var idle []*promotedEntry
	for e := d.lru.Front(); e != nil; {
		next := e.Next()
		pr := e.Value.(*promotedEntry)
		if v, ok := dests[pr.k]; ok {
			before := pr.last
			add(d.pairs[pr.pk].name, &pr.last, v)
			if before >= 0 && v != before || before < 0 && d.polled && v > 0 {
				pr.used = now
				d.lru.MoveToBack(pr.elem)
			}
		}
		if now.Sub(pr.used) >= d.pairs[pr.pk].idle {
			idle = append(idle, pr)
		}
		e = next
	}
	d.polled = true
	return idle
}

// peerPackets is a copy of the totals.
func (d *demand) peerPackets() map[string]uint64 {
	if len(d.totals) == 0 {
		return nil
	}
	out := make(map[string]uint64, len(d.totals))
	for k, v := range d.totals {
		out[k] = v
	}
	return out
}

// enableDigest writes the gateway digest's entry: inserted, or modified
// when the switch has one already (an OHC restart).
func (d *demand) enableDigest(ctx context.Context, s *p4rt.Schema, c *p4rt.Client) error {
	if !d.hasDigest {
		return nil
	}
	de, err := s.DigestEntry(demandDigest, gatewayDigestConfig)
	if err != nil {
		return err
	}
	u, err := p4rt.Update(p4v1.Update_INSERT, de)
	if err != nil {
		return err
	}
	err = c.Write(ctx, []*p4v1.Update{u})
	var we *p4rt.WriteError
	if errors.As(err, &we) && len(we.Failed) == 1 && we.Failed[0].Code == codes.AlreadyExists {
		u.Type = p4v1.Update_MODIFY
		err = c.Write(ctx, []*p4v1.Update{u})
	}
	if err != nil {
		return fmt.Errorf("enable the gateway digest: %w", err)
	}
	return nil
}

// demandDigests handles the digests Run was woken for: counts them and
// promotes the destinations that reached their threshold. It says whether
// a pass must follow (a write failed: the switch is not known any more).
func (p *Programmer) demandDigests(ctx context.Context) bool {
	d := p.dem
	ready := d.count(d.take())
	dirty := false
	if len(ready) > 0 {
		dirty = p.promote(ctx, ready)
	}
	p.publishDemand()
	return dirty
}

// promote writes the direct entries of ready's destinations, evicting the
// least recently used promoted entries when the budget is full. Entries
// the configuration requires are never evicted: with no promoted entry
// left to evict, the promotion waits (DemandStats.Full).
func (p *Programmer) promote(ctx context.Context, ready []digestEvent) bool {
	d := p.dem
	if p.overBudget {
		return false // the switch keeps an older view: nothing is known to fit
	}
	var came, gone []*p4v1.Entity
	var added []digestEvent
	var evicted []*promotedEntry
	next := d.lru.Front()
	for _, ev := range ready {
		e := d.cands[ev.k]
		if e == nil || d.promo[ev.k] != nil || slices.ContainsFunc(added, func(a digestEvent) bool { return a.k == ev.k }) {
			continue
		}
		if d.budget > 0 && d.required+len(d.promo)+len(added)-len(evicted) >= d.budget {
			if next == nil {
				d.st.Full++
				continue
			}
			pr := next.Value.(*promotedEntry)
			next = next.Next()
			evicted = append(evicted, pr)
			gone = append(gone, pr.e)
		}
		added = append(added, ev)
		came = append(came, e)
	}
	if len(came) == 0 {
		return false
	}
	dirty := false
	var res p4rt.Result
	if p.known {
		// Room first: the budget may be the table's very size.
		var err error
		p.touch(gone, came)
		if res, err = p.rec.Apply(ctx, gone, nil); err == nil {
			var r p4rt.Result
			r, err = p.rec.Apply(ctx, nil, came)
			res = mergeResults(res, r)
		}
		if err != nil {
			// The next pass reads the switch back and writes what the
			// promotions recorded below call for.
			p.known, dirty = false, true
			p.log.Warn("promotion write failed; reconciling", "err", err)
		}
	} else {
		dirty = true // the next (full) pass writes them
	}
	now := time.Now()
	for _, pr := range evicted {
		d.unpromote(pr.k)
		d.st.Evictions++
	}
	for _, ev := range added {
		d.promoteLocal(ev.k, d.cands[ev.k], now, 0)
		d.st.Promotions++
		d.st.LastPromotion = now.Sub(ev.at)
	}
	d.publishCounts()
	p.mu.Lock()
	p.count(res)
	p.mu.Unlock()
	p.adjustDestinations(len(came) - len(gone))
	if !res.Empty() {
		p.log.Debug("promoted to direct entries", "promoted", len(came), "evicted", len(gone))
	}
	return dirty
}

// adjustDestinations counts n more (or fewer) vnet_destination entries on
// the switch than the compile's deltas said: promotions and demotions.
func (p *Programmer) adjustDestinations(n int) {
	if n == 0 {
		return
	}
	t, _ := p.schema.Table(tVnetDestination)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.entries[t.Name()] += n
	desired := maps.Clone(p.stats.Desired)
	if desired == nil {
		desired = map[string]int{}
	}
	if desired[tVnetDestination] += n; desired[tVnetDestination] == 0 {
		delete(desired, tVnetDestination)
	}
	p.stats.Desired = desired
}

// pollDemand reads the counters of the promoted entries and pool routes,
// adds them to peer_packets, and demotes the promoted entries idle for
// their pool's idle timeout. It says whether a pass must follow.
func (p *Programmer) pollDemand(ctx context.Context) bool {
	d := p.dem
	now := time.Now()
	d.forget(now)
	if !p.known || (len(d.promo) == 0 && len(d.routes) == 0 && len(d.direct) == 0) {
		return false
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	dests, routes, err := d.readCounters(rctx, p.client)
	cancel()
	d.pollCost = time.Since(now)
	if err != nil {
		p.log.Debug("reading promoted entries' counters failed", "err", err)
		return false
	}
	idle := d.account(dests, routes, now)
	dirty := false
	if len(idle) > 0 {
		gone := make([]*p4v1.Entity, len(idle))
		for i, pr := range idle {
			gone[i] = pr.e
		}
		p.touch(gone)
		res, err := p.rec.Apply(ctx, gone, nil)
		if err != nil {
			p.known, dirty = false, true
			p.log.Warn("demotion write failed; reconciling", "err", err)
		}
		for _, pr := range idle {
			d.unpromote(pr.k)
			d.st.Demotions++
		}
		d.publishCounts()
		p.mu.Lock()
		p.count(res)
		p.mu.Unlock()
		p.adjustDestinations(-len(idle))
		p.log.Debug("idle promoted entries demoted", "count", len(idle))
	}
	p.publishDemand()
	return dirty
}

// publishDemand copies the demand's stats and peer_packets into Stats.
func (p *Programmer) publishDemand() {
	st, pp := p.dem.st, p.dem.peerPackets()
	p.mu.Lock()
	p.stats.Demand, p.stats.PeerPackets = st, pp
	p.mu.Unlock()
}

// demandAfterPass enables the gateway digest once a pass has put the
// pipeline in place, when the view has a pool (a pipeline push, a new
// switch, disables it), and ends adoption after the first full pass.
func (p *Programmer) demandAfterPass(ctx context.Context, full bool) {
	d := p.dem
	if full {
		d.adopting = false
	}
	if !d.polled {
		// The baseline: what the counters held when the OHC started is
		// not counted, everything after is (entries written later start
		// at 0 and count in full).
		p.pollDemand(ctx)
		d.polled = true
	}
	if d.enabled || len(d.pairs) == 0 {
		return
	}
	if err := d.enableDigest(ctx, p.schema, p.client); err != nil {
		p.log.Warn("gateway digest not enabled: destinations stay on the pool path", "err", err)
		return
	}
	d.enabled, d.st.DigestEnabled = true, d.hasDigest
	p.publishDemand()
}

// adoptKeep wraps a full pass's keep: on the OHC's first full pass, a
// withheld destination's entry found on the switch as the compile makes it
// is adopted as promoted (the OHC promoted it before a restart) rather
// than deleted. It returns the keep and how to take the adopted entities
// out of what the pass kept.
func (p *Programmer) adoptKeep(keep func(*p4v1.Entity) bool) (func(*p4v1.Entity) bool, func(kept []*p4v1.Entity) []*p4v1.Entity) {
	d := p.dem
	if !d.adopting || len(d.cands) == 0 {
		return keep, func(kept []*p4v1.Entity) []*p4v1.Entity { return kept }
	}
	now := time.Now()
	adopted := 0
	return func(e *p4v1.Entity) bool {
			if d.adopt(e, now) {
				adopted++
				return true
			}
			return keep != nil && keep(e)
		}, func(kept []*p4v1.Entity) []*p4v1.Entity {
			p.adjustDestinations(adopted)
			if adopted > 0 {
				p.log.Info("promoted entries found on the switch adopted", "count", adopted)
			}
			return slices.DeleteFunc(kept, func(e *p4v1.Entity) bool {
				kind, k, pk, _ := d.classify(e)
				return kind == kindDest && d.withheld(pk) && d.promo[k] != nil
			})
		}
}

// startDigests reads the switch's digests until ctx ends; the function
// returned waits for the reader to stop.
func (p *Programmer) startDigests(ctx context.Context) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.dem.readDigests(ctx, p.client, p.log)
	}()
	return func() { <-done }
}

// applyBudgets lowers caps' table sizes to the configured budgets (caps is
// copied, not changed) and returns vnet_destination's budget. An unknown
// table or a budget below 1 is an error naming it.
func applyBudgets(s *p4rt.Schema, caps *p4rt.Capabilities, budgets map[string]int) (*p4rt.Capabilities, int, error) {
	dt, err := s.Table(tVnetDestination)
	if err != nil {
		return nil, 0, err
	}
	if len(budgets) > 0 {
		c := *caps
		c.TableSize = maps.Clone(caps.TableSize)
		for _, name := range slices.Sorted(maps.Keys(budgets)) {
			n := budgets[name]
			t, err := s.Table(name)
			if err != nil {
				return nil, 0, fmt.Errorf("table budget: %w", err)
			}
			if n < 1 {
				return nil, 0, fmt.Errorf("table budget: %s=%d: a budget is at least 1", name, n)
			}
			if size, ok := c.TableSize[t.Name()]; !ok || size == 0 || int64(n) < size {
				c.TableSize[t.Name()] = int64(n)
			}
		}
		caps = &c
	}
	return caps, int(caps.TableSize[dt.Name()]), nil
}

// ParseTableBudget parses one --table-budget value, "table=entries".
func ParseTableBudget(s string) (string, int, error) {
	name, n, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return "", 0, fmt.Errorf("table budget %q: want table=entries", s)
	}
	v, err := strconv.Atoi(n)
	if err != nil || v < 1 {
		return "", 0, fmt.Errorf("table budget %q: %q is not a number of entries (1 or more)", s, n)
	}
	return name, v, nil
}

// CheckTableBudgets checks configured table budgets against a P4Info: an
// unknown table or a budget below 1 is an error naming it.
func CheckTableBudgets(info *p4configv1.P4Info, budgets map[string]int) error {
	s, err := p4rt.NewSchema(info)
	if err != nil {
		return err
	}
	caps, err := p4rt.FromP4Info(info)
	if err != nil {
		return err
	}
	_, _, err = applyBudgets(s, caps, budgets)
	return err
}

// without returns es less the vnet_destination entries of drop's keys.
func (d *demand) without(es, drop []*p4v1.Entity) []*p4v1.Entity {
	keys := make(map[destKey]bool, len(drop))
	for _, e := range drop {
		_, k, _, _ := d.classify(e)
		keys[k] = true
	}
	out := make([]*p4v1.Entity, 0, len(es))
	for _, e := range es {
		if kind, k, _, _ := d.classify(e); kind == kindDest && keys[k] {
			continue
		}
		out = append(out, e)
	}
	return out
}

// mergeResults adds b's changes to a's.
func mergeResults(a, b p4rt.Result) p4rt.Result {
	if len(a.Changes) == 0 {
		return b
	}
	if len(b.Changes) == 0 {
		return a
	}
	out := p4rt.Result{Changes: maps.Clone(a.Changes)}
	for n, c := range b.Changes {
		t := out.Changes[n]
		t.Inserted += c.Inserted
		t.Modified += c.Modified
		t.Deleted += c.Deleted
		out.Changes[n] = t
	}
	return out
}

// DemandCollector exports a programmer's on-demand programming as
// Prometheus metrics; register it next to the Collector.
type DemandCollector struct {
	prog                                                 *Programmer
	entries, budget, changes, digests, last, peerPackets *prometheus.Desc
}

// NewDemandCollector makes a collector of prog's on-demand programming.
func NewDemandCollector(prog *Programmer) *DemandCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("p4mesh_ohc_demand_"+name, help, labels, nil)
	}
	return &DemandCollector{prog: prog,
		entries:     d("destinations", "vnet_destination entries by state: required (never evicted), promoted, withheld (pool-mode destinations on the pool path).", "state"),
		budget:      d("budget_entries", "vnet_destination's budget: its size, or --table-budget's."),
		changes:     d("changes_total", "Promotions, demotions (idle) and evictions (least recently used, to make room), and promoted entries adopted after a restart.", "change"),
		digests:     d("digests_total", "Gateway digests read, by result: counted, ignored (no pool-mode destination of the view, or promoted already), dropped (inbox full), full (a promotion refused: required entries fill the budget).", "result"),
		last:        d("promotion_last_seconds", "Time from the digest that promoted the last destination to its entry written."),
		peerPackets: d("peer_packets_total", "Packets sent to peers served by a pool, through the pool or promoted entries, by pair.", "pair"),
	}
}

// Describe implements prometheus.Collector.
func (c *DemandCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.entries, c.budget, c.changes, c.digests, c.last, c.peerPackets} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *DemandCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.prog.Stats()
	d := st.Demand
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	count := func(desc *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.entries, float64(d.Required), "required")
	gauge(c.entries, float64(d.Promoted), "promoted")
	gauge(c.entries, float64(d.Withheld), "withheld")
	gauge(c.budget, float64(d.Budget))
	count(c.changes, d.Promotions, "promotion")
	count(c.changes, d.Demotions, "demotion")
	count(c.changes, d.Evictions, "eviction")
	count(c.changes, d.Adopted, "adoption")
	count(c.digests, d.Digests-d.Ignored, "counted")
	count(c.digests, d.Ignored, "ignored")
	count(c.digests, d.Dropped, "dropped")
	count(c.digests, d.Full, "full")
	gauge(c.last, d.LastPromotion.Seconds())
	for pair, n := range st.PeerPackets {
		count(c.peerPackets, n, pair)
	}
}
