package controller

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// The route manager and peer route manager: per VPC owned here, one RIB
// of candidates for each prefix, from four origins, resolved by fixed
// rules (issue 10), in order:
//
//  1. the VPC's own subnets always win; a BGP or peer route equal to or
//     inside a local subnet is refused (an on-prem router or a peer must
//     not take the VPC's own addresses away from it);
//  2. local before peer, and among local routes static before BGP;
//  3. among peer routes, the peering's preference (lower wins);
//  4. the route's own priority (static: lower wins; peer: the priority
//     the peer published), or the BGP best path: local preference higher,
//     AS path shorter, MED lower, then the lowest neighbor id;
//  5. the lowest peer VNI, then the peer's name: a total order, so every
//     controller decides the same.
//
// BGP routes of several attachments that tie on every attribute (local
// preference, AS path, MED) win together as an ECMP set.
//
// Candidates are not stored resolved: a prefix is resolved when one of
// its candidates changes (and again for gNMI state), so the cost of an
// update is the prefixes it names, never the size of the RIB, and a
// resolved RIB costs no memory of its own. Static routes and subnets are
// read from the model; only what is runtime state is held in rib.

// Origin is where a route candidate comes from.
type Origin uint8

// The origins, in the order rule 2 ranks them.
const (
	OriginSubnet Origin = iota
	OriginStatic
	OriginBGP
	OriginPeer
)

var originNames = [...]string{"subnet", "static", "bgp", "peer"}

// String is the origin's name in the API and gNMI ("subnet", "static",
// "bgp", "peer").
func (o Origin) String() string {
	if int(o) < len(originNames) {
		return originNames[o]
	}
	return fmt.Sprintf("origin(%d)", o)
}

// LearnedRoute is a route a BGP session of an attachment learned for a
// VPC: the bgp package's best path from one neighbor. Learned routes are
// runtime state, never persisted: after a restart the sessions come up
// again and the routers announce them again.
type LearnedRoute struct {
	// Neighbor is the id of the attachment endpoint (kind vpn or
	// interconnect) of the VPC the session runs over: the next hop of
	// the route in the VPC.
	Neighbor string
	Prefix   netip.Prefix
	// NextHop is the next hop the router announced (its own address
	// beyond the attachment): shown in state; the VPC forwards to the
	// attachment.
	NextHop netip.Addr
	// ASPath is copied (interned with the other attributes): the
	// caller may reuse it.
	ASPath         []uint32
	MED, LocalPref uint32
}

// Key is what identifies r in its VPC: one route per neighbor and prefix.
func (r LearnedRoute) Key() LearnedRouteKey {
	return LearnedRouteKey{Neighbor: r.Neighbor, Prefix: r.Prefix}
}

// LearnedRouteKey names a learned route, for a withdrawal.
type LearnedRouteKey struct {
	Neighbor string
	Prefix   netip.Prefix
}

// Candidate is one route of a VPC's RIB, resolved against the others of
// its prefix.
type Candidate struct {
	VPC    string
	Prefix netip.Prefix
	Origin Origin
	// Source says which route of its origin it is: the next hop endpoint
	// of a static route ("" drops), the neighbor (attachment) of a BGP
	// route, the peer VPC of a peer route, the VPC of a subnet.
	Source string
	// NextHops are where the route sends to: the endpoint's or
	// attachment's IP in the VPC, or for a peer route the peer's next
	// hops (addresses in the peer VPC). None for a subnet or a drop.
	NextHops []netip.Addr
	// Priority is a static route's, or the one the peer published.
	Priority uint32
	// Preference is the peering's (peer routes).
	Preference int
	// PeerVNI is the peer VPC's VNI (peer routes).
	PeerVNI uint32
	// PeerOrigin is the origin of a peer route in the peer VPC.
	PeerOrigin string
	// BGP attributes (BGP routes): BGPNextHop is the next hop the router
	// announced, beyond the attachment the VPC forwards to.
	LocalPref, MED uint32
	ASPath         []uint32
	BGPNextHop     netip.Addr
	// Chosen: the route is (one of) what the VPC forwards by.
	Chosen bool
	// Reason says, in words, why it was chosen or not.
	Reason string

	// pos is a static route's place in the configuration (ties go to
	// the first configured).
	pos int
	// invalid, if set, refuses the candidate whatever else competes (an
	// unknown attachment).
	invalid string
}

// desc names c in a reason.
func (c *Candidate) desc() string {
	switch c.Origin {
	case OriginSubnet:
		return "own subnet " + c.Prefix.String()
	case OriginStatic:
		if c.Source == "" {
			return "local static drop route"
		}
		return "local static route via " + c.Source
	case OriginBGP:
		return "local BGP route from " + c.Source
	default:
		return "peer route from " + c.Source
	}
}

// refusal says why c can never win whatever competes, "" if it can.
func refusal(c *Candidate, subnets []netip.Prefix) string {
	if c.invalid != "" {
		return "refused: " + c.invalid
	}
	if c.Origin != OriginBGP && c.Origin != OriginPeer {
		return ""
	}
	for _, s := range subnets {
		if s.Bits() <= c.Prefix.Bits() && s.Contains(c.Prefix.Addr()) {
			if s.Bits() == c.Prefix.Bits() {
				return "refused: equal to local subnet " + s.String()
			}
			return "refused: inside local subnet " + s.String()
		}
	}
	return ""
}

// compareCandidates orders two candidates of one prefix that are not
// refused, best first, by the rules.
func compareCandidates(a, b *Candidate) int {
	if c := cmp.Compare(a.Origin, b.Origin); c != 0 {
		return c // rules 1 and 2
	}
	switch a.Origin {
	case OriginStatic:
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.pos, b.pos))
	case OriginBGP:
		return cmp.Or(cmp.Compare(b.LocalPref, a.LocalPref), cmp.Compare(len(a.ASPath), len(b.ASPath)),
			cmp.Compare(a.MED, b.MED), cmp.Compare(a.Source, b.Source))
	case OriginPeer:
		return cmp.Or(cmp.Compare(a.Preference, b.Preference), cmp.Compare(a.Priority, b.Priority),
			cmp.Compare(a.PeerVNI, b.PeerVNI), cmp.Compare(a.Source, b.Source))
	}
	return 0
}

// ecmp reports whether b is an equal-cost alternative to a: BGP routes of
// two attachments with every attribute equal.
func ecmp(a, b *Candidate) bool {
	return a.Origin == OriginBGP && b.Origin == OriginBGP && a.LocalPref == b.LocalPref &&
		a.MED == b.MED && slices.Equal(a.ASPath, b.ASPath)
}

// resolve orders the candidates of one prefix of a VPC with the given
// subnets, best first, and sets each one's Chosen and Reason. It returns
// how many lead cs as winners: 0 (all refused), 1, or an ECMP set.
func resolve(cs []Candidate, subnets []netip.Prefix) int {
	if len(cs) == 1 {
		// Most prefixes of a large RIB have one route: no order to make.
		c := &cs[0]
		if r := refusal(c, subnets); r != "" {
			c.Chosen, c.Reason = false, r
			return 0
		}
		c.Chosen = true
		c.Reason = winReason(cs, []string{""}, 0, 1)
		return 1
	}
	refused := make([]string, len(cs))
	for i := range cs {
		refused[i] = refusal(&cs[i], subnets)
		cs[i].Chosen = false
	}
	// Sort indices so that refusals travel with their candidates.
	idx := make([]int, len(cs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(i, j int) int {
		if ri, rj := refused[i] != "", refused[j] != ""; ri != rj {
			if ri {
				return 1
			}
			return -1
		}
		return compareCandidates(&cs[i], &cs[j])
	})
	sorted := make([]Candidate, len(cs))
	ref := make([]string, len(cs))
	for k, i := range idx {
		sorted[k], ref[k] = cs[i], refused[i]
	}
	copy(cs, sorted)
	n := 0
	if len(cs) > 0 && ref[0] == "" {
		n = 1
		for n < len(cs) && ref[n] == "" && ecmp(&cs[0], &cs[n]) {
			n++
		}
	}
	for i := range cs {
		c := &cs[i]
		switch {
		case ref[i] != "":
			c.Reason = ref[i]
		case i < n:
			c.Chosen = true
			c.Reason = winReason(cs, ref, i, n)
		default:
			c.Reason = loseReason(&cs[0], c)
		}
	}
	return n
}

// winReason says why winner i of cs (n winners, ref their refusals)
// won.
func winReason(cs []Candidate, ref []string, i, n int) string {
	w := &cs[i]
	if n > 1 {
		var others []string
		for k := range n {
			if k != i {
				others = append(others, cs[k].Source)
			}
		}
		return "ECMP: equal-cost BGP route with " + strings.Join(others, ", ")
	}
	statics := 0
	for k := range cs {
		if cs[k].Origin == OriginStatic {
			statics++
		}
	}
	// The runner-up is the best candidate after the winner; refused ones
	// sort last, so if it is refused nothing else competed.
	var runnerUp *Candidate
	if n < len(cs) && ref[n] == "" {
		runnerUp = &cs[n]
	}
	switch {
	case w.Origin == OriginSubnet:
		return "own subnet: always wins"
	case runnerUp == nil:
		return "the only route for its prefix"
	case w.Origin == OriginStatic && statics == len(cs):
		return chosenReason(Route{Priority: w.Priority}, len(cs))
	}
	return beats(w, runnerUp)
}

// beats is the rule by which w, better by the order, beats c.
func beats(w, c *Candidate) string {
	if w.Origin != c.Origin {
		return w.desc() + " beats " + c.desc()
	}
	switch w.Origin {
	case OriginStatic:
		if w.Priority != c.Priority {
			return fmt.Sprintf("priority %d beats %d (via %s); lower wins", w.Priority, c.Priority, sourceName(c))
		}
		return fmt.Sprintf("same priority as the route via %s, configured before it", sourceName(c))
	case OriginBGP:
		switch {
		case w.LocalPref != c.LocalPref:
			return fmt.Sprintf("local preference %d beats %d from %s; higher wins", w.LocalPref, c.LocalPref, c.Source)
		case len(w.ASPath) != len(c.ASPath):
			return fmt.Sprintf("AS path length %d beats %d from %s; shorter wins", len(w.ASPath), len(c.ASPath), c.Source)
		case w.MED != c.MED:
			return fmt.Sprintf("MED %d beats %d from %s; lower wins", w.MED, c.MED, c.Source)
		}
		return fmt.Sprintf("BGP attributes tie but AS paths differ; neighbor %s beats %s (lowest id)", w.Source, c.Source)
	default:
		switch {
		case w.Preference != c.Preference:
			return fmt.Sprintf("peering preference %d of %s beats %d of %s; lower wins", w.Preference, w.Source, c.Preference, c.Source)
		case w.Priority != c.Priority:
			return fmt.Sprintf("priority %d of the route from %s beats %d from %s; lower wins", w.Priority, w.Source, c.Priority, c.Source)
		}
		return fmt.Sprintf("peer VNI %d of %s beats %d of %s; lowest wins", w.PeerVNI, w.Source, c.PeerVNI, c.Source)
	}
}

// loseReason says why c lost to w, the (first) winner.
func loseReason(w, c *Candidate) string {
	if w.Origin == OriginStatic && c.Origin == OriginStatic {
		// The wording static routes have always had.
		if w.Priority == c.Priority {
			return fmt.Sprintf("same priority as the route via %s, configured first", sourceName(w))
		}
		return fmt.Sprintf("priority %d loses to %d (via %s)", c.Priority, w.Priority, sourceName(w))
	}
	why := ""
	switch {
	case w.Origin == OriginSubnet:
		why = " (own subnets always win)"
	case w.Origin != c.Origin && c.Origin == OriginPeer:
		why = " (local before peer)"
	case w.Origin == OriginStatic && c.Origin == OriginBGP:
		why = " (static before BGP)"
	}
	return "loses: " + beats(w, c) + why
}

func sourceName(c *Candidate) string {
	if c.Source == "" {
		return "drop"
	}
	return c.Source
}
