package ohc

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/watch"
)

// routeAgent is an agent with one controller's host programming (host a,
// VPCs red and blue with a VM each, a VPN attachment of red) and the two
// VPCs' own connectivity (routers of each elsewhere), its routes streams
// driven through the handlers Run gives them.
type routeAgent struct {
	a      *Agent
	routes map[string]watch.Handler // by VPC
	rev    uint64
}

func newRouteAgent(t *testing.T) *routeAgent {
	t.Helper()
	a, err := NewAgent(AgentOptions{Host: "a", Controllers: []string{"c1"}, Programmer: &Programmer{}})
	if err != nil {
		t.Fatal(err)
	}
	hp := &hostProgramming{view: &watch.View{}}
	a.hosts["c1"] = hp
	h := a.handler(hp.view, &hp.part)
	put := func(h watch.Handler, key string, ev *p4meshv1.Event) {
		ev.Type, ev.Key = p4meshv1.Event_PUT, key
		h.Put(key, ev)
	}
	put(h, "host", &p4meshv1.Event{Value: &p4meshv1.Event_Host{Host: &p4meshv1.HostInfo{Id: "a", UnderlayIp: "192.168.0.1", Mac: "02:00:00:00:00:01"}}})
	for i, vpc := range []string{"red", "blue"} {
		put(h, "vpc/"+vpc, &p4meshv1.Event{Value: &p4meshv1.Event_Vpc{Vpc: &p4meshv1.VPC{Name: vpc, Vni: uint32(100 * (i + 1)),
			GatewayIp: fmt.Sprintf("10.%d.0.1", i+1), GatewayMac: "02:00:00:00:ff:01", Subnets: []string{fmt.Sprintf("10.%d.0.0/24", i+1)}}}})
		put(h, "endpoint/"+vpc+"-vm1", &p4meshv1.Event{Value: &p4meshv1.Event_LocalEndpoint{LocalEndpoint: &p4meshv1.LocalEndpoint{
			Id: vpc + "-vm1", Vpc: vpc, Ip: fmt.Sprintf("10.%d.0.5", i+1), Mac: fmt.Sprintf("02:00:00:0%d:00:05", i+1), Port: uint32(i + 1)}}})
	}
	put(h, "endpoint/red-vpn", &p4meshv1.Event{Value: &p4meshv1.Event_LocalEndpoint{LocalEndpoint: &p4meshv1.LocalEndpoint{
		Id: "red-vpn", Vpc: "red", Kind: "vpn", Ip: "10.1.0.30", Mac: "02:00:00:01:00:30", Port: 8, RouterMac: "02:00:00:0f:00:01"}}})
	h.Synced(1)
	ra := &routeAgent{a: a, routes: map[string]watch.Handler{}}
	for i, vpc := range []string{"red", "blue"} {
		k := subKey{addr: "c1", vpc: vpc}
		s := newSubscription(k)
		a.subs[k] = s
		dest, fwd := a.handler(s.dest, &s.part), a.handler(s.fwd, &s.part)
		for j := range 3 {
			ip := fmt.Sprintf("10.%d.0.%d", i+1, 40+j)
			put(dest, vpc+"/"+ip, &p4meshv1.Event{Value: &p4meshv1.Event_Destination{Destination: &p4meshv1.Destination{Vpc: vpc, Ip: ip}}})
			put(fwd, vpc+"/"+ip, &p4meshv1.Event{Value: &p4meshv1.Event_Forwarding{Forwarding: &p4meshv1.Forwarding{Vpc: vpc, Ip: ip,
				Mac: fmt.Sprintf("02:00:00:0%d:00:%02x", i+1, 0x40+j), HostIp: fmt.Sprintf("192.168.0.%d", 2+j%2)}}})
		}
		a.handler(s.lbs, &s.part).Synced(1)
		dest.Synced(1)
		fwd.Synced(1)
		ra.routes[vpc] = a.routesHandler(s.routes, &s.rpart)
		ra.routes[vpc].Synced(1)
	}
	return ra
}

// putRoute sets (or, with del, withdraws) a route of vpc on its stream.
func (ra *routeAgent) putRoute(vpc, prefix string, del bool, hops ...string) {
	ra.rev++
	key := "route/" + vpc + "/" + prefix
	if del {
		ra.routes[vpc].Delete(key, ra.rev)
		return
	}
	r := &p4meshv1.Route{Vpc: vpc, Prefix: prefix}
	if len(hops) > 0 {
		r.NextHopIp = hops[0]
	}
	if len(hops) > 1 {
		r.NextHopIps = hops
	}
	ra.routes[vpc].Put(key, &p4meshv1.Event{Type: p4meshv1.Event_PUT, Key: key, Revision: ra.rev, Value: &p4meshv1.Event_Route{Route: r}})
}

// randomRoute sets or withdraws a route of red or blue: through a router
// elsewhere, red's attachment here, ECMP over two routers (a group), or
// a drop; a third of the time it withdraws it.
func (ra *routeAgent) randomRoute(rng *rand.Rand) {
	vpc := []string{"red", "red", "blue"}[rng.IntN(3)]
	n := 1
	if vpc == "blue" {
		n = 2
	}
	prefix := fmt.Sprintf("10.9.%d.0/24", rng.IntN(12))
	if rng.IntN(3) == 0 {
		ra.putRoute(vpc, prefix, true)
		return
	}
	r := func(j int) string { return fmt.Sprintf("10.%d.0.%d", n, 40+j) }
	switch i := rng.IntN(3); rng.IntN(5) {
	case 0:
		ra.putRoute(vpc, prefix, false)
	case 1:
		if vpc == "red" {
			ra.putRoute(vpc, prefix, false, "10.1.0.30")
			break
		}
		ra.putRoute(vpc, prefix, false, r(i))
	case 2, 3:
		hops := []string{r(i), r((i + 1) % 3)}
		slices.Sort(hops)
		ra.putRoute(vpc, prefix, false, hops...)
	default:
		ra.putRoute(vpc, prefix, false, r(i))
	}
}

// hand assembles the view as Run does, compiles it with cc as the
// programmer does (CompileChange with the agent's change), and checks
// it: the view is what merging every part whole gives, and the compiled
// entities are Compile's of it. It reports whether the compile was
// incremental.
func (ra *routeAgent) hand(t *testing.T, cc *Compiler, name string) (as assembly, incremental bool) {
	t.Helper()
	a := ra.a
	as = a.assemble()
	want := &View{VPCs: map[string]VPC{}, Remote: map[string][]RemoteEndpoint{}}
	for _, p := range as.parts {
		p.mergeInto(want)
	}
	want.LBs = dedupeLBs(want.LBs)
	slices.SortFunc(want.Routes, compareRoutes)
	if got := as.view.routeList(); !reflect.DeepEqual(got, want.Routes) && len(got)+len(want.Routes) > 0 {
		t.Fatalf("%s: the view's routes\n%v\nwant\n%v", name, got, want.Routes)
	}
	// The chunks are cut between keys, never within one.
	for i := 1; i < len(as.view.routeChunks); i++ {
		if c := as.view.routeChunks[i-1]; len(c) == 0 || len(as.view.routeChunks[i]) == 0 || cmpRouteKey(as.view.routeChunks[i][0], routeKeyOf(c[len(c)-1])) == 0 {
			t.Fatalf("%s: chunk %d empty or a key split between chunks %d and %d", name, i-1, i-1, i)
		}
	}
	before := cc.inc.incremental
	if _, err := cc.CompileChange(as.view, as.change); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	incremental = cc.inc.incremental != before
	whole, err := Compile(cc.s, want)
	if err != nil {
		t.Fatalf("%s: whole compile: %v", name, err)
	}
	got := cc.Desired()
	if len(got) != len(whole) {
		t.Fatalf("%s: %d entities, a whole compile %d", name, len(got), len(whole))
	}
	for i := range whole {
		if !proto.Equal(got[i], whole[i]) {
			t.Fatalf("%s: entity %d is\n%v\na whole compile's\n%v", name, i, got[i], whole[i])
		}
	}
	for _, p := range as.parts {
		p.pending = ViewChange{}
	}
	a.handedView, a.handedParts = as.view, as.parts
	return as, incremental
}

// TestAgentRouteChangesIncremental: routes that come, change (next hop,
// ECMP group, attachment, drop) and are withdrawn on the routes streams
// of two VPCs reach the programmer as a change of those routes alone,
// named by VPC and prefix, in a view whose routes are in the compiler's
// order; the compile of most goes incremental, and every one gives what
// a whole compile of the view gives. A RESET of a routes stream followed
// by a snapshot with one route changed is a change of that route alone.
func TestAgentRouteChangesIncremental(t *testing.T) {
	// Chunks of 2 to 4 routes (chunkRoutes cuts 2, a patch splits past
	// 4): changes split chunks, empty them and meet keys at their edges.
	defer func(n int) { routeChunk = n }(routeChunk)
	for _, n := range []int{2, 256} {
		routeChunk = n
		t.Run(fmt.Sprintf("chunk=%d", n), testAgentRouteChanges)
	}
}

func testAgentRouteChanges(t *testing.T) {
	ra := newRouteAgent(t)
	cc := NewCompiler(demandSchema(t))
	rng := rand.New(rand.NewPCG(10, 14))
	for range 40 {
		ra.randomRoute(rng)
	}
	ra.putRoute("red", "10.8.0.0/16", false, "10.1.0.40", "10.1.0.41")
	ra.putRoute("blue", "10.8.0.0/16", false, "10.2.0.40", "10.2.0.41")
	if as, _ := ra.hand(t, cc, "first"); !as.change.Other || len(as.view.routeList()) == 0 {
		t.Fatalf("first view: change %+v, %d routes", as.change, len(as.view.routeList()))
	}
	var steps, inc int
	for step := range 200 {
		name := fmt.Sprintf("step %d", step)
		for range 1 + rng.IntN(2) {
			ra.randomRoute(rng)
		}
		as, incremental := ra.hand(t, cc, name)
		if as.change.Other || len(as.change.Remote)+len(as.change.Local) > 0 {
			t.Fatalf("%s: a change of routes came as %+v", name, as.change)
		}
		// Every route that came, went or changed is named.
		if len(as.change.Routes) > 0 {
			steps++
			if incremental {
				inc++
			}
		}
	}
	// Not every change can go incremental (an ECMP group that comes or
	// goes, a drop route sharing entries: see incroutes.go), but most do.
	if steps == 0 || inc < steps/2 {
		t.Errorf("%d of %d route changes compiled incrementally, want at least half", inc, steps)
	}
	t.Logf("%d of %d route changes compiled incrementally", inc, steps)

	// Withdrawing a route the stream never had, or putting one unchanged,
	// changes nothing: no view.
	ra.putRoute("red", "10.7.0.0/24", true)
	ra.putRoute("red", "10.8.0.0/16", false, "10.1.0.40", "10.1.0.41")
	if as := ra.a.assemble(); !reflect.DeepEqual(as.madeOf, func() map[*part]uint64 {
		m := map[*part]uint64{}
		for _, p := range ra.a.handedParts {
			m[p] = p.rev
		}
		return m
	}()) || len(as.change.Routes) > 0 {
		t.Fatalf("no change: a new view (change %+v)", as.change)
	}

	// A RESET of red's routes, then the same snapshot but for one route.
	s := ra.a.subs[subKey{addr: "c1", vpc: "red"}]
	items := s.routes.Items()
	h := ra.routes["red"]
	h.Reset()
	for key, ev := range items {
		h.Put(key, ev)
	}
	ra.putRoute("red", "10.8.0.0/16", false, "10.1.0.41", "10.1.0.42")
	h.Synced(ra.rev)
	as, incremental := ra.hand(t, cc, "after a RESET")
	if as.change.Other || !slices.Equal(as.change.Routes, []RouteKey{{VPC: "red", Prefix: netip.MustParsePrefix("10.8.0.0/16")}, {VPC: "red", Prefix: netip.MustParsePrefix("10.8.0.0/16")}}) {
		t.Errorf("after a RESET: change %+v, want the route changed alone", as.change)
	}
	if !incremental {
		t.Error("after a RESET: the one route changed was compiled whole")
	}
}

// TestAgentRoutesFromNone: a host whose VPCs have no route yet learns
// one, loses it and learns one again (the view's route chunks go from
// none to one and back), each a change of that route compiled as a whole
// compile would.
func TestAgentRoutesFromNone(t *testing.T) {
	ra := newRouteAgent(t)
	cc := NewCompiler(demandSchema(t))
	if as, _ := ra.hand(t, cc, "first"); len(as.view.routeList()) != 0 {
		t.Fatalf("first view has %d routes, want none", len(as.view.routeList()))
	}
	for i, step := range []struct {
		del  bool
		hops []string
	}{{hops: []string{"10.1.0.40"}}, {del: true}, {hops: []string{"10.1.0.30"}}, {hops: []string{"10.1.0.40", "10.1.0.41"}}, {del: true}} {
		ra.putRoute("red", "10.9.0.0/24", step.del, step.hops...)
		as, _ := ra.hand(t, cc, fmt.Sprintf("step %d", i))
		if as.change.Other || len(as.change.Routes) == 0 {
			t.Fatalf("step %d: change %+v, want the route alone", i, as.change)
		}
	}
}
