package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// TestLearnedStore: routes are added, replaced per neighbor, shared by
// neighbors, withdrawn; interned attributes are shared while used and
// freed when not.
func TestLearnedStore(t *testing.T) {
	s := newLearnedStore()
	p1, p2 := netip.MustParsePrefix("11.0.0.0/24"), netip.MustParsePrefix("11.0.1.0/24")
	path := []uint32{65001, 65002}
	a := LearnedRoute{Neighbor: "a", Prefix: p1, NextHop: netip.MustParseAddr("192.0.2.1"), ASPath: path, MED: 5}
	s.set(&a)
	path[1] = 9 // the store holds its own copy
	a2 := a
	a2.Prefix = p2
	a2.ASPath = []uint32{65001, 65002}
	s.set(&a2)
	if len(s.attrIdx) != 1 || s.attrs[0].refs != 2 || !slices.Equal(s.attrs[0].asPath, []uint32{65001, 65002}) {
		t.Fatalf("two routes with the same attributes: %d attribute sets %+v, want one used twice with AS path [65001 65002]", len(s.attrIdx), s.attrs)
	}
	b := LearnedRoute{Neighbor: "b", Prefix: p1, LocalPref: 200}
	s.set(&b)
	var buf [1]lroute
	got := func(p netip.Prefix) []string {
		var out []string
		for _, r := range s.routes(packPrefix(p), &buf) {
			at := s.attrs[r.attr]
			out = append(out, fmt.Sprintf("%s med=%d lp=%d as=%v", s.nbs[r.nb], at.med, at.localPref, at.asPath))
		}
		return out
	}
	if g := got(p1); !slices.Equal(g, []string{"a med=5 lp=0 as=[65001 65002]", "b med=0 lp=200 as=[]"}) {
		t.Errorf("%v: %q", p1, g)
	}
	a.MED, a.ASPath = 7, a2.ASPath
	s.set(&a) // replaces a's route of p1
	if g := got(p1); !slices.Equal(g, []string{"a med=7 lp=0 as=[65001 65002]", "b med=0 lp=200 as=[]"}) {
		t.Errorf("%v after a's replacement: %q", p1, g)
	}
	if s.len() != 2 {
		t.Errorf("len %d, want 2", s.len())
	}
	var ofA []netip.Prefix
	s.of("a", func(p netip.Prefix) { ofA = append(ofA, p) })
	slices.SortFunc(ofA, netip.Prefix.Compare)
	if !slices.Equal(ofA, []netip.Prefix{p1, p2}) {
		t.Errorf("prefixes of a: %v", ofA)
	}
	if s.del("a", p2) != true || s.del("a", p2) != false || s.del("c", p1) != false {
		t.Error("del reports wrongly whether the route was there")
	}
	if !s.del("a", p1) {
		t.Error("a's route of p1 not deleted")
	}
	if g := got(p1); !slices.Equal(g, []string{"b med=0 lp=200 as=[]"}) {
		t.Errorf("%v after a's withdrawal: %q", p1, g)
	}
	s.del("b", p1)
	if s.len() != 0 || len(s.attrIdx) != 0 || len(s.free) != len(s.attrs) {
		t.Errorf("empty store keeps %d prefixes, %d attribute sets in use (%d of %d free)", s.len(), len(s.attrIdx), len(s.free), len(s.attrs))
	}
}

// TestLearnedRoutesPublishedInChunks: a change naming more prefixes than
// publishChunk is published as several revisions of at most that many
// changes each, in one call, and every route arrives.
func TestLearnedRoutesPublishedInChunks(t *testing.T) {
	defer func(n int) { publishChunk = n }(publishChunk)
	publishChunk = 3
	s := ribServer(t, nil)
	t0 := s.services[PublishedService{VPC: "red"}].routes
	from := t0.Revision()
	var rs []LearnedRoute
	for i := range 7 {
		rs = append(rs, bgp("red-vpn1", fmt.Sprintf("11.0.%d.0/24", i), 100, 0))
	}
	learn(t, s, "red", rs...)
	if got := t0.Revision() - from; got != 3 {
		t.Errorf("7 prefixes in chunks of 3 took %d revisions, want 3", got)
	}
	perRev := map[uint64]int{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := errors.New("caught up")
	err := t0.Serve(ctx, from, func(ev *p4meshv1.Event) error {
		if ev.GetType() == p4meshv1.Event_PUT {
			perRev[ev.GetRevision()]++
		}
		if ev.GetRevision() >= t0.Revision() && !ev.GetMore() {
			return stop
		}
		return nil
	}, func(string, proto.Message, *p4meshv1.Event) {})
	if !errors.Is(err, stop) {
		t.Fatal(err)
	}
	var sizes []int
	for _, r := range slices.Sorted(func(yield func(uint64) bool) {
		for r := range perRev {
			if !yield(r) {
				return
			}
		}
	}) {
		sizes = append(sizes, perRev[r])
	}
	if !slices.Equal(sizes, []int{3, 3, 1}) {
		t.Errorf("routes per revision %v, want [3 3 1]", sizes)
	}
	if n := s.PublishedRoutes("red"); n != 7 {
		t.Errorf("%d routes published, want 7", n)
	}
}

// TestWithdrawAllLearned: every VPC's learned routes go, from the RIB and
// the hosts' tables, and nothing else does.
func TestWithdrawAllLearned(t *testing.T) {
	s := ribServer(t, nil)
	learn(t, s, "red", bgp("red-vpn1", "172.16.0.0/16", 100, 0), bgp("red-vpn2", "172.16.0.0/16", 100, 0), bgp("red-vpn1", "172.17.0.0/16", 100, 0))
	learn(t, s, "blue", bgp("blue-vpn", "172.18.0.0/16", 100, 0))
	if hostRoute(s, "red", "172.17.0.0/16") == nil || hostRoute(s, "blue", "172.18.0.0/16") == nil {
		t.Fatal("learned routes not published")
	}
	if err := s.WithdrawAllLearned(); err != nil {
		t.Fatal(err)
	}
	for _, vpc := range []string{"red", "blue"} {
		for _, c := range s.RIB(vpc) {
			if c.Origin == OriginBGP {
				t.Errorf("%s: a learned route stayed: %+v", vpc, c)
			}
		}
	}
	for _, r := range [][2]string{{"red", "172.16.0.0/16"}, {"red", "172.17.0.0/16"}, {"blue", "172.18.0.0/16"}} {
		if hostRoute(s, r[0], r[1]) != nil {
			t.Errorf("%s's hosts still have %s", r[0], r[1])
		}
	}
	if len(candidatesOf(s, "red", "10.1.0.0/16")) != 1 {
		t.Error("red's own subnet went with the learned routes")
	}
}
