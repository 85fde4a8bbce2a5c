package controller

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// refRoute is the route message a prefix's winner w with next hops hops
// was published as before records: what a record must stand for.
func refRoute(w *Candidate, prefix string, hops []netip.Addr) *p4meshv1.Route {
	out := &p4meshv1.Route{Vpc: w.VPC, Prefix: prefix, Origin: w.Origin.String(), Priority: w.Priority, Reason: w.Reason}
	if len(hops) > 0 {
		out.NextHopIp = hops[0].String()
	}
	if len(hops) > 1 {
		for _, h := range hops {
			out.NextHopIps = append(out.NextHopIps, h.String())
		}
	}
	return out
}

// randomWinner is a winner of every origin a route is published with,
// and next hops of every shape: none (a drop, or none exported), one, an
// ECMP set. Values come from small pools, so that records share next
// hop sets and pairs of them differ in one field or none.
func randomWinner(r *rand.Rand) (Candidate, string, []netip.Addr) {
	vpcs := []string{"blue", "red"}
	reasons := []string{"the only route for its prefix", "ECMP: equal-cost BGP route with a2", "", "local static route via vm1 beats peer route from red"}
	w := Candidate{
		VPC:      vpcs[r.IntN(len(vpcs))],
		Origin:   []Origin{OriginStatic, OriginBGP, OriginPeer}[r.IntN(3)],
		Priority: uint32(r.IntN(3) * 100),
		Reason:   reasons[r.IntN(len(reasons))],
	}
	p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(r.IntN(3)), byte(r.IntN(2)), 0}), 16+8*r.IntN(2)).Masked()
	var hops []netip.Addr
	switch r.IntN(4) {
	case 0:
	case 1, 2:
		hops = []netip.Addr{netip.AddrFrom4([4]byte{10, 9, 0, byte(1 + r.IntN(3))})}
	default:
		for range 2 + r.IntN(3) {
			hops = append(hops, netip.AddrFrom4([4]byte{10, 9, 0, byte(1 + r.IntN(4))}))
		}
		slices.SortFunc(hops, netip.Addr.Compare)
		hops = slices.Compact(hops)
	}
	return w, prefixKey(p), hops
}

// TestRouteRecordsAreTheirMessages checks that a route record marshals
// as the message it replaced, byte for byte, is proto.Equal to it both
// ways and is sent as it, and that EqualItem agrees with proto.Equal of
// the messages, on pairs that mostly differ in one field or none.
func TestRouteRecordsAreTheirMessages(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 4))
	type made struct {
		rec    *routeRec
		ref    *p4meshv1.Route
		w      Candidate
		prefix string
		hops   []netip.Addr
		from   int // the index of the route this one is one field from, -1 if none
	}
	var all []made
	sc := &scratch{}
	shapes := map[[2]int]bool{}
	for i := range 3000 {
		w, prefix, hops := randomWinner(r)
		from := -1
		if len(all) > 0 && r.IntN(2) == 0 {
			// One field of a route made before, or none.
			from = r.IntN(len(all))
			prev := all[from]
			switch r.IntN(7) {
			case 0:
				w.VPC, prefix, hops = prev.w.VPC+"x", prev.prefix, prev.hops
				w.Origin, w.Priority, w.Reason = prev.w.Origin, prev.w.Priority, prev.w.Reason
			case 1:
				w, hops = prev.w, prev.hops
			case 2:
				w, prefix = prev.w, prev.prefix
			case 3:
				w, prefix, hops = prev.w, prev.prefix, prev.hops
				w.Priority++
			case 4:
				w, prefix, hops = prev.w, prev.prefix, prev.hops
				w.Origin = []Origin{OriginStatic, OriginBGP, OriginPeer}[r.IntN(3)]
			case 5:
				w, prefix, hops = prev.w, prev.prefix, prev.hops
				w.Reason += "."
			default:
				w, prefix, hops = prev.w, prev.prefix, prev.hops
			}
		}
		s := sc
		if r.IntN(5) == 0 {
			s = nil // Config.connectivity's items: no pass to share in
		}
		// The candidates' hops live in the pass's arena, reused for the
		// next prefix: the record must not keep them.
		arena := slices.Clone(hops)
		rec := routeRecord(&w, prefix, arena, s)
		for k := range arena {
			arena[k] = netip.Addr{}
		}
		ref := refRoute(&w, prefix, hops)
		shapes[[2]int{int(w.Origin), min(len(hops), 2)}] = true
		if !bytes.Equal(marshal(t, rec), marshal(t, ref)) {
			t.Fatalf("route %d: the record marshals as\n  %v\nnot as\n  %v", i, rec, ref)
		}
		if !proto.Equal(rec, ref) || !proto.Equal(ref, rec) {
			t.Fatalf("route %d: %v is not proto.Equal to %v", i, rec, ref)
		}
		var evGot, evWant p4meshv1.Event
		wrap("k", rec, &evGot)
		wrap("k", ref, &evWant)
		if evGot.GetRoute() == nil || !bytes.Equal(marshal(t, &evGot), marshal(t, &evWant)) {
			t.Fatalf("route %d: sent as %v, not %v", i, &evGot, &evWant)
		}
		// The message is a copy: changing it leaves the record.
		if m := routeOf(rec); len(m.NextHopIps) > 0 {
			m.NextHopIps[0] = "changed"
			if !proto.Equal(rec, ref) {
				t.Fatalf("route %d: changing its message changed the record", i)
			}
		}
		if got, want := routeNextHops(rec), routeNextHops(ref); !slices.Equal(got, want) {
			t.Fatalf("route %d: next hops %v, from its message %v", i, got, want)
		}
		if p, o := routeFields(rec); p != ref.Priority || o != ref.Origin {
			t.Fatalf("route %d: fields %d %q, not %d %q", i, p, o, ref.Priority, ref.Origin)
		}
		all = append(all, made{rec: rec, ref: ref, w: w, prefix: prefix, hops: hops, from: from})
	}
	if len(shapes) != 9 {
		t.Fatalf("shapes (origin, hops) made: %v; want every origin with none, one and several next hops", shapes)
	}
	equal := 0
	for i, a := range all {
		j := a.from
		if j < 0 {
			j = r.IntN(len(all))
		}
		{
			b := all[j]
			want := proto.Equal(a.ref, b.ref)
			if want {
				equal++
			}
			for _, other := range []proto.Message{b.rec, b.ref} {
				if got := a.rec.EqualItem(other); got != want {
					t.Fatalf("route %d: %v EqualItem %v (%T) = %v, proto.Equal of the messages %v", i, a.rec, other, other, got, want)
				}
				if got := routeEqual(other, a.rec); got != want {
					t.Fatalf("route %d: routeEqual(%v, %v) = %v, want %v", i, other, a.rec, got, want)
				}
			}
		}
	}
	if equal < len(all)/20 || equal > len(all)/2 {
		t.Fatalf("%d equal pairs of %d: the pools no longer exercise both answers", equal, len(all))
	}
}
