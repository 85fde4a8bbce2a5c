package ohc

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/watch"
)

// TestPartRevision: a part's items are rebuilt only after its streams
// change, and its revision moves only when the items do, so the agent
// hands the programmer a view only when something in it changed; and
// the part says what changed: the address of a remote endpoint that
// came, moved or went, or everything for its first items.
func TestPartRevision(t *testing.T) {
	s := newSubscription(subKey{vpc: "red"})
	dest := func(ip string) *p4meshv1.Event {
		return &p4meshv1.Event{Type: p4meshv1.Event_PUT, Key: ip, Value: &p4meshv1.Event_Destination{Destination: &p4meshv1.Destination{Vpc: "red", Ip: ip}}}
	}
	fwd := func(ip, host string) *p4meshv1.Event {
		return &p4meshv1.Event{Type: p4meshv1.Event_PUT, Key: ip, Value: &p4meshv1.Event_Forwarding{Forwarding: &p4meshv1.Forwarding{Vpc: "red", Ip: ip, Mac: "02:00:00:00:00:01", HostIp: host}}}
	}
	k := subKey{vpc: "red"}
	build := func() (rev uint64, remote []RemoteEndpoint) {
		t.Helper()
		s.update(func(f *View) { s.addConnectivity(f, k) })
		return s.rev, s.frag.Remote["red"]
	}
	change := func(v *watch.View, ev *p4meshv1.Event) {
		v.Put(ev.GetKey(), ev)
		s.changes.Add(1)
	}
	// pending takes the part's change and checks it.
	pending := func(what string, other bool, ips ...string) {
		t.Helper()
		ch := s.pending
		s.pending = ViewChange{}
		var got []string
		for _, k := range ch.Remote {
			if k.VPC != "red" {
				t.Errorf("%s: change names VPC %q", what, k.VPC)
			}
			got = append(got, k.IP.String())
		}
		slices.Sort(got)
		got = slices.Compact(got)
		if ch.Other != other || !slices.Equal(got, ips) {
			t.Errorf("%s: change %+v, want other %v and addresses %q", what, ch, other, ips)
		}
	}

	change(s.dest, dest("10.1.0.2"))
	change(s.fwd, fwd("10.1.0.2", "192.168.0.2"))
	rev1, r := build()
	if len(r) != 1 || r[0].HostIP.String() != "192.168.0.2" {
		t.Fatalf("remote = %+v", r)
	}
	pending("first items", true)
	if rev, _ := build(); rev != rev1 {
		t.Errorf("no change: revision %d, then %d", rev1, rev)
	}
	pending("no change", false)
	// A destination whose forwarding has not come: no item, no new view.
	change(s.dest, dest("10.1.0.3"))
	if rev, r := build(); rev != rev1 || len(r) != 1 {
		t.Errorf("destination alone: revision %d (was %d), remote %+v", rev, rev1, r)
	}
	pending("destination alone", false)
	change(s.fwd, fwd("10.1.0.3", "192.168.0.3"))
	rev2, r := build()
	if rev2 == rev1 || len(r) != 2 || r[0].IP.String() != "10.1.0.2" {
		t.Errorf("forwarding came: revision %d (was %d), remote %+v", rev2, rev1, r)
	}
	pending("forwarding came", false, "10.1.0.3")
	// The endpoint moves: a new forwarding event for the same key.
	change(s.fwd, fwd("10.1.0.3", "192.168.0.4"))
	rev3, r := build()
	if rev3 == rev2 || len(r) != 2 || r[1].HostIP.String() != "192.168.0.4" {
		t.Errorf("moved: revision %d (was %d), remote %+v", rev3, rev2, r)
	}
	pending("moved", false, "10.1.0.3")
	// Deleted.
	s.dest.Delete("10.1.0.3", 0)
	s.changes.Add(1)
	if rev, r := build(); rev == rev3 || len(r) != 1 {
		t.Errorf("deleted: revision %d (was %d), remote %+v", rev, rev3, r)
	}
	pending("deleted", false, "10.1.0.3")
	// A load balancer is not a remote endpoint: the whole view.
	change(s.lbs, &p4meshv1.Event{Type: p4meshv1.Event_PUT, Key: "web", Value: &p4meshv1.Event_LoadBalancer{LoadBalancer: &p4meshv1.LoadBalancer{Name: "web", Vpc: "red", Vip: "10.1.0.100"}}})
	build()
	pending("load balancer", true)
}

// TestAssembleBySource: a source that has been whole and is not now (its
// controller re-sends a snapshot after a RESET, or went away mid-snapshot)
// stays in the view as its last whole snapshot; one never whole is missing
// from it, and named.
func TestAssembleBySource(t *testing.T) {
	a, err := NewAgent(AgentOptions{Host: "a", Controllers: []string{"c1", "c2"}, Programmer: &Programmer{}})
	if err != nil {
		t.Fatal(err)
	}
	hp := func(addr string) watch.Handler {
		p := &hostProgramming{view: &watch.View{}}
		a.hosts[addr] = p
		return a.handler(p.view, &p.part)
	}
	h1, _ := hp("c1"), hp("c2")
	put := func(h watch.Handler, key string, ev *p4meshv1.Event) {
		ev.Type, ev.Key = p4meshv1.Event_PUT, key
		h.Put(key, ev)
	}
	put(h1, "host", &p4meshv1.Event{Value: &p4meshv1.Event_Host{Host: &p4meshv1.HostInfo{Id: "a", UnderlayIp: "192.168.0.1", Mac: "02:00:00:00:00:01"}}})
	put(h1, "endpoint/red-1", &p4meshv1.Event{Value: &p4meshv1.Event_LocalEndpoint{LocalEndpoint: &p4meshv1.LocalEndpoint{Id: "red-1", Vpc: "red", Ip: "10.1.0.2", Mac: "02:00:00:00:01:02", Port: 1}}})
	h1.Synced(1)

	as := a.assemble()
	if !as.hasHost || len(as.view.Local) != 1 || !slices.Equal(as.missing, []string{"host-programming@c2"}) || len(as.stale) != 0 {
		t.Fatalf("c1 whole, c2 never: host %v, local %+v, missing %q, stale %q", as.hasHost, as.view.Local, as.missing, as.stale)
	}

	// c1 re-sends: RESET, then part of a snapshot.
	h1.Reset()
	put(h1, "host", &p4meshv1.Event{Value: &p4meshv1.Event_Host{Host: &p4meshv1.HostInfo{Id: "a", UnderlayIp: "192.168.0.1", Mac: "02:00:00:00:00:01"}}})
	again := a.assemble()
	if !again.hasHost || len(again.view.Local) != 1 || !slices.Equal(again.stale, []string{"host-programming@c1"}) {
		t.Errorf("c1 mid-snapshot: host %v, local %+v, stale %q; want the last whole snapshot", again.hasHost, again.view.Local, again.stale)
	}
	if !maps.Equal(again.madeOf, as.madeOf) {
		t.Error("c1 mid-snapshot: the view is not made of what it was")
	}
	h1.Synced(2)
	if whole := a.assemble(); len(whole.view.Local) != 0 || len(whole.stale) != 0 {
		t.Errorf("c1 whole again without red-1: local %+v, stale %q", whole.view.Local, whole.stale)
	}
}

// TestEventsCounted: every event type a controller sends is counted, and
// PROGRESS moves the view's revision without waking the agent to rebuild.
func TestEventsCounted(t *testing.T) {
	a, err := NewAgent(AgentOptions{Host: "a", Controllers: []string{"c1"}, Programmer: &Programmer{}})
	if err != nil {
		t.Fatal(err)
	}
	p := &hostProgramming{view: &watch.View{}}
	h := a.handler(p.view, &p.part)
	for _, ev := range []*p4meshv1.Event{
		{Type: p4meshv1.Event_PUT, Revision: 5, Key: "host", Value: &p4meshv1.Event_Host{Host: &p4meshv1.HostInfo{Id: "a"}}},
		{Type: p4meshv1.Event_SYNCED, Revision: 5},
		{Type: p4meshv1.Event_DELETE, Revision: 6, Key: "host"},
		{Type: p4meshv1.Event_PROGRESS, Revision: 9},
		{Type: p4meshv1.Event_PROGRESS, Revision: 12},
		{Type: p4meshv1.Event_RESET, Revision: 20},
	} {
		h.OnEvent(ev)
		switch ev.GetType() {
		case p4meshv1.Event_PUT:
			h.Put(ev.GetKey(), ev)
		case p4meshv1.Event_DELETE:
			h.Delete(ev.GetKey(), ev.GetRevision())
		case p4meshv1.Event_SYNCED:
			h.Synced(ev.GetRevision())
		case p4meshv1.Event_PROGRESS:
			before := p.changes.Load()
			h.Progress(ev.GetRevision())
			if p.changes.Load() != before || p.view.Revision() != ev.GetRevision() {
				t.Errorf("PROGRESS %d: %d changes, view at %d; want none, at %d", ev.GetRevision(), p.changes.Load()-before, p.view.Revision(), ev.GetRevision())
			}
		}
	}
	want := AgentStats{Puts: 1, Deletes: 1, Synced: 1, Resets: 1, Progress: 2}
	if got := a.Stats(); got.Puts != want.Puts || got.Deletes != want.Deletes || got.Synced != want.Synced || got.Resets != want.Resets || got.Progress != want.Progress {
		t.Errorf("Stats = %+v, want events %+v", got, want)
	}
}

// TestWantsOfReplicaSet: an active peering is pulled from every replica of
// the peer's owner, or, from a controller that predates replica sets (no
// peer_controllers), from its one peer_controller.
func TestWantsOfReplicaSet(t *testing.T) {
	peering := func(p *p4meshv1.Peering) map[string]*p4meshv1.Event {
		return map[string]*p4meshv1.Event{"peering/red/blue": {Type: p4meshv1.Event_PUT, Value: &p4meshv1.Event_Peering{Peering: p}}}
	}
	got := wantsOf("c1:1", peering(&p4meshv1.Peering{Vpc: "red", PeerVpc: "blue", PeerExportPolicy: "all", Active: true,
		PeerController: "c2a:1", PeerControllers: []string{"c2a:1", "c2b:1", "c2c:1"}}))
	want := map[subKey]bool{{addr: "c2a:1,c2b:1,c2c:1", vpc: "blue", policy: "all", peerVPC: "red"}: true}
	if !maps.Equal(got, want) {
		t.Errorf("with peer_controllers: %v, want %v", got, want)
	}
	got = wantsOf("c1:1", peering(&p4meshv1.Peering{Vpc: "red", PeerVpc: "blue", PeerExportPolicy: "all", Active: true, PeerController: "c2a:1"}))
	want = map[subKey]bool{{addr: "c2a:1", vpc: "blue", policy: "all", peerVPC: "red"}: true}
	if !maps.Equal(got, want) {
		t.Errorf("from an older controller: %v, want %v", got, want)
	}
}

// TestParseRouteAndAttachment: the proto fields of issue 10 reach the view:
// an attachment's kind and router MAC, and every next hop of an
// equal-cost route (one that does not parse dropped by NextHops, not
// turning the route into a drop route).
func TestParseRouteAndAttachment(t *testing.T) {
	le, ok := parseHostItem(&p4meshv1.Event{Value: &p4meshv1.Event_LocalEndpoint{LocalEndpoint: &p4meshv1.LocalEndpoint{
		Id: "vpn1", Vpc: "red", Ip: "10.1.0.50", Mac: "02:00:00:01:00:50", Port: 5, Kind: "vpn", RouterMac: "02:ee:00:00:00:01",
	}}}).(LocalEndpoint)
	if !ok || !le.IsAttachment() || le.RouterMAC.String() != "02:ee:00:00:00:01" || le.Port != 5 {
		t.Errorf("local endpoint = %+v", le)
	}
	r, ok := parseRoute(&p4meshv1.Event{Value: &p4meshv1.Event_Route{Route: &p4meshv1.Route{
		Vpc: "red", Prefix: "172.30.0.0/16", NextHopIp: "10.1.0.51", NextHopIps: []string{"10.1.0.52", "10.1.0.51", "bogus"},
	}}}).(Route)
	if !ok {
		t.Fatal("no route")
	}
	var hops []string
	for _, a := range r.NextHops() {
		hops = append(hops, a.String())
	}
	if !slices.Equal(hops, []string{"10.1.0.51", "10.1.0.52"}) {
		t.Errorf("next hops = %q, want 10.1.0.51 and 10.1.0.52", hops)
	}
	if len(r.NextHopIPs) != 3 {
		t.Errorf("NextHopIPs = %v: the bad one must stay visible to the compiler, which warns", r.NextHopIPs)
	}
}

// TestAssemblePatchesRemote: when only remote endpoints changed, the view
// the agent hands over is patched from the one before (patchRemote); it
// must be exactly what merging every part gives, over random changes of
// destinations and forwarding on two services that both carry red (the
// host's own and a peering's).
func TestAssemblePatchesRemote(t *testing.T) {
	a, err := NewAgent(AgentOptions{Host: "a", Controllers: []string{"c1"}, Programmer: &Programmer{}})
	if err != nil {
		t.Fatal(err)
	}
	hp := &hostProgramming{view: &watch.View{}}
	a.hosts["c1"] = hp
	h := a.handler(hp.view, &hp.part)
	h.Put("host", &p4meshv1.Event{Type: p4meshv1.Event_PUT, Key: "host", Value: &p4meshv1.Event_Host{Host: &p4meshv1.HostInfo{Id: "a", UnderlayIp: "192.168.0.1", Mac: "02:00:00:00:00:01"}}})
	h.Synced(1)
	type svc struct {
		s         *subscription
		dest, fwd watch.Handler
		vpcs      []string
		rev       uint64
	}
	var svcs []*svc
	for _, k := range []subKey{{addr: "c1", vpc: "red"}, {addr: "c2", vpc: "blue", policy: "all", peerVPC: "red"}} {
		s := newSubscription(k)
		a.subs[k] = s
		x := &svc{s: s, dest: a.handler(s.dest, &s.part), fwd: a.handler(s.fwd, &s.part), vpcs: []string{"red", k.vpc}}
		for _, w := range []*watch.View{s.dest, s.fwd, s.lbs, s.routes} {
			a.handler(w, &s.part).Synced(1)
		}
		svcs = append(svcs, x)
	}
	rng := rand.New(rand.NewPCG(14, 2))
	var hrev uint64 = 1
	for step := range 300 {
		if rng.IntN(5) == 0 {
			// A local endpoint comes, goes, or changes port or address.
			id := fmt.Sprintf("vm-%d", rng.IntN(3))
			hrev++
			if rng.IntN(3) == 0 {
				h.Delete("endpoint/"+id, hrev)
			} else {
				h.Put("endpoint/"+id, &p4meshv1.Event{Type: p4meshv1.Event_PUT, Key: "endpoint/" + id, Revision: hrev, Value: &p4meshv1.Event_LocalEndpoint{LocalEndpoint: &p4meshv1.LocalEndpoint{
					Id: id, Vpc: "red", Ip: fmt.Sprintf("10.1.0.%d", 1+rng.IntN(8)), Mac: "02:00:00:00:01:02", Port: uint32(1 + rng.IntN(8))}}})
			}
			as := a.assemble()
			want := &View{VPCs: map[string]VPC{}, Remote: map[string][]RemoteEndpoint{}}
			for _, p := range as.parts {
				p.mergeInto(want)
			}
			// In any order: a part lists its local endpoints in the
			// order of its events' map, which the compile sorts.
			byID := func(es []LocalEndpoint) []LocalEndpoint {
				return slices.SortedFunc(slices.Values(es), func(x, y LocalEndpoint) int { return cmp.Compare(x.ID, y.ID) })
			}
			if !reflect.DeepEqual(byID(as.view.Local), byID(want.Local)) || !reflect.DeepEqual(as.view.Remote, want.Remote) {
				t.Fatalf("step %d: patched local\n%v\nwant\n%v", step, as.view.Local, want.Local)
			}
			if step > 0 && as.change.Other {
				t.Fatalf("step %d: a change of local endpoints came as Other", step)
			}
			// Every local endpoint that came or went is named.
			named := func(es, others []LocalEndpoint) {
				for _, e := range es {
					if !slices.ContainsFunc(others, func(o LocalEndpoint) bool { return reflect.DeepEqual(o, e) }) &&
						!slices.Contains(as.change.Local, RemoteKey{VPC: e.VPC, IP: e.IP}) {
						t.Fatalf("step %d: local endpoint %+v changed but the change %+v does not name it", step, e, as.change)
					}
				}
			}
			if a.handedView != nil {
				named(as.view.Local, a.handedView.Local)
				named(a.handedView.Local, as.view.Local)
			}
			for _, p := range as.parts {
				p.pending = ViewChange{}
			}
			a.handedView, a.handedParts = as.view, as.parts
			continue
		}
		x := svcs[rng.IntN(len(svcs))]
		vpc := x.vpcs[rng.IntN(2)]
		ip := fmt.Sprintf("10.%d.0.%d", map[string]int{"red": 1, "blue": 2}[vpc], 1+rng.IntN(8))
		key := vpc + "/" + ip
		x.rev++
		switch rng.IntN(4) {
		case 0:
			x.dest.Delete(key, x.rev)
		case 1:
			x.fwd.Delete(key, x.rev)
		case 2:
			x.dest.Put(key, &p4meshv1.Event{Type: p4meshv1.Event_PUT, Key: key, Revision: x.rev, Value: &p4meshv1.Event_Destination{Destination: &p4meshv1.Destination{Vpc: vpc, Ip: ip}}})
		default:
			x.fwd.Put(key, &p4meshv1.Event{Type: p4meshv1.Event_PUT, Key: key, Revision: x.rev, Value: &p4meshv1.Event_Forwarding{Forwarding: &p4meshv1.Forwarding{Vpc: vpc, Ip: ip,
				Mac: fmt.Sprintf("02:00:00:00:00:%02x", rng.IntN(3)), HostIp: fmt.Sprintf("192.168.0.%d", 1+rng.IntN(3))}}})
		}
		as := a.assemble()
		// What every part merged gives.
		want := &View{VPCs: map[string]VPC{}, Remote: map[string][]RemoteEndpoint{}}
		for _, p := range as.parts {
			p.mergeInto(want)
		}
		if !reflect.DeepEqual(as.view.Remote, want.Remote) {
			t.Fatalf("step %d: patched remote\n%v\nwant\n%v", step, as.view.Remote, want.Remote)
		}
		if step > 0 && as.change.Other {
			t.Fatalf("step %d: a change of remote endpoints came as Other", step)
		}
		// As Run hands it over.
		for _, p := range as.parts {
			p.pending = ViewChange{}
		}
		a.handedView, a.handedParts = as.view, as.parts
	}
}

// TestGatewayDutyWanted: a gateway duty reaches the view (merged like any
// host item), pulls the VPC's own connectivity, and, while the host has no
// endpoint of the VPC, not its peers' (a gateway forwards into the VPC and
// sends nothing from it). An endpoint of the VPC on the host pulls the
// peers as before.
func TestGatewayDutyWanted(t *testing.T) {
	ev := func(key string, e *p4meshv1.Event) *p4meshv1.Event {
		e.Type, e.Key = p4meshv1.Event_PUT, key
		return e
	}
	items := map[string]*p4meshv1.Event{
		"host":         ev("host", &p4meshv1.Event{Value: &p4meshv1.Event_Host{Host: &p4meshv1.HostInfo{Id: "g1", UnderlayIp: "192.168.1.1", Mac: "02:00:00:00:01:01"}}}),
		"vpc/blue":     ev("vpc/blue", &p4meshv1.Event{Value: &p4meshv1.Event_Vpc{Vpc: &p4meshv1.VPC{Name: "blue", Vni: 200, Subnets: []string{"10.2.0.0/16"}}}}),
		"duty/blue-gw": ev("duty/blue-gw", &p4meshv1.Event{Value: &p4meshv1.Event_GatewayDuty{GatewayDuty: &p4meshv1.GatewayDuty{Pool: "blue-gw", Vpc: "blue", Vni: 200, HeartbeatMs: 250}}}),
		"peering/blue/red": ev("peering/blue/red", &p4meshv1.Event{Value: &p4meshv1.Event_Peering{Peering: &p4meshv1.Peering{
			Vpc: "blue", PeerVpc: "red", PeerVni: 100, Active: true, PeerExportPolicy: "all", PeerController: "c2:1", PeerPrefixes: []string{"10.1.0.0/16"}}}}),
	}
	got := wantsOf("c1:1", items)
	want := map[subKey]bool{{addr: "c1:1", vpc: "blue"}: true}
	if !maps.Equal(got, want) {
		t.Errorf("gateway of blue: wants %v, want %v", got, want)
	}
	// Without the VPC event the duty still pulls the VPC.
	noVPC := maps.Clone(items)
	delete(noVPC, "vpc/blue")
	if got := wantsOf("c1:1", noVPC); !maps.Equal(got, want) {
		t.Errorf("duty without the VPC event: wants %v, want %v", got, want)
	}
	withVM := maps.Clone(items)
	withVM["endpoint/blue-vm"] = ev("endpoint/blue-vm", &p4meshv1.Event{Value: &p4meshv1.Event_LocalEndpoint{LocalEndpoint: &p4meshv1.LocalEndpoint{
		Id: "blue-vm", Vpc: "blue", Ip: "10.2.0.9", Mac: "02:00:00:02:00:09", Port: 1}}})
	want[subKey{addr: "c2:1", vpc: "red", policy: "all", peerVPC: "blue"}] = true
	if got := wantsOf("c1:1", withVM); !maps.Equal(got, want) {
		t.Errorf("gateway with a VM of blue: wants %v, want %v", got, want)
	}

	a, err := NewAgent(AgentOptions{Host: "g1", Controllers: []string{"c1:1"}, Programmer: &Programmer{}})
	if err != nil {
		t.Fatal(err)
	}
	p := &hostProgramming{view: &watch.View{}}
	a.hosts["c1:1"] = p
	h := a.handler(p.view, &p.part)
	for k, e := range items {
		h.Put(k, e)
	}
	h.Synced(1)
	as := a.assemble()
	wantDuty := []GatewayDuty{{Pool: "blue-gw", VPC: "blue", VNI: 200, Heartbeat: 250 * time.Millisecond}}
	if !slices.Equal(as.view.Duties, wantDuty) {
		t.Errorf("view duties %+v, want %+v", as.view.Duties, wantDuty)
	}
	if len(as.view.Peerings) != 1 || as.view.Peerings[0].PeerVPC != "red" {
		t.Errorf("view peerings %+v, want blue's with red", as.view.Peerings)
	}
}

// TestWantedFollowsHostProgramming: the union of what the controllers'
// host programming calls for, which the agent keeps between changes,
// follows every change of any controller's stream (a VPC that comes, a
// peering that becomes active, a VPC that goes), and is each time what
// wantsOf of every stream gives.
func TestWantedFollowsHostProgramming(t *testing.T) {
	ev := func(key string, e *p4meshv1.Event) *p4meshv1.Event {
		e.Type, e.Key = p4meshv1.Event_PUT, key
		return e
	}
	vpc := func(name string) *p4meshv1.Event {
		return ev("vpc/"+name, &p4meshv1.Event{Value: &p4meshv1.Event_Vpc{Vpc: &p4meshv1.VPC{Name: name, Vni: 100}}})
	}
	peering := func(v, peer string, active bool) *p4meshv1.Event {
		return ev("peering/"+v+"/"+peer, &p4meshv1.Event{Value: &p4meshv1.Event_Peering{Peering: &p4meshv1.Peering{
			Vpc: v, PeerVpc: peer, Active: active, PeerExportPolicy: "all", PeerController: "c9:1"}}})
	}
	a, err := NewAgent(AgentOptions{Host: "h1", Controllers: []string{"c1:1", "c2:1"}, Programmer: &Programmer{}})
	if err != nil {
		t.Fatal(err)
	}
	streams := map[string]watch.Handler{}
	views := map[string]*watch.View{}
	for _, addr := range []string{"c1:1", "c2:1"} {
		p := &hostProgramming{view: &watch.View{}}
		a.hosts[addr] = p
		streams[addr], views[addr] = a.handler(p.view, &p.part), p.view
	}
	check := func(step string) map[subKey]bool {
		t.Helper()
		want := map[subKey]bool{}
		for addr, v := range views {
			if v.Synced() {
				maps.Copy(want, wantsOf(addr, v.Items()))
			}
		}
		a.mu.Lock()
		got := maps.Clone(a.wantedLocked())
		a.mu.Unlock()
		if !maps.Equal(got, want) {
			t.Fatalf("%s: wanted %v, want %v", step, got, want)
		}
		return got
	}
	check("nothing synced")
	streams["c1:1"].Put("vpc/red", vpc("red"))
	streams["c1:1"].Synced(1)
	check("c1 synced with red")
	streams["c2:1"].Synced(1)
	check("c2 synced empty")
	streams["c2:1"].Put("vpc/blue", vpc("blue"))
	check("blue on c2")
	streams["c1:1"].Put("peering/red/green", peering("red", "green", false))
	check("an inactive peering")
	streams["c1:1"].Put("peering/red/green", peering("red", "green", true))
	check("the peering active")
	streams["c2:1"].Delete("vpc/blue", 2)
	last := check("blue gone")
	// c1 being re-sent after a RESET: its last whole snapshot counts.
	streams["c1:1"].Reset()
	a.mu.Lock()
	got := maps.Clone(a.wantedLocked())
	a.mu.Unlock()
	if !maps.Equal(got, last) {
		t.Fatalf("c1 reset: wanted %v, want its last whole snapshot's %v", got, last)
	}
}

// TestAssembleTakesNewSubscriptions: a service the host programming calls
// for later than the others (a VPC that comes) is part of the next view
// assembled: until its streams sync it is listed missing, by name.
func TestAssembleTakesNewSubscriptions(t *testing.T) {
	ev := func(name string) *p4meshv1.Event {
		return &p4meshv1.Event{Type: p4meshv1.Event_PUT, Key: "vpc/" + name, Value: &p4meshv1.Event_Vpc{Vpc: &p4meshv1.VPC{Name: name, Vni: 100}}}
	}
	a, err := NewAgent(AgentOptions{Host: "h1", Controllers: []string{"127.0.0.1:1"}, Programmer: &Programmer{}})
	if err != nil {
		t.Fatal(err)
	}
	p := &hostProgramming{view: &watch.View{}}
	a.hosts["127.0.0.1:1"] = p
	h := a.handler(p.view, &p.part)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	h.Put("vpc/red", ev("red"))
	h.Synced(1)
	a.subscribe(ctx, &wg)
	red := subKey{addr: "127.0.0.1:1", vpc: "red"}.String()
	if as := a.assemble(); !slices.Contains(as.missing, red) {
		t.Fatalf("missing %v, want red's service among them", as.missing)
	}
	h.Put("vpc/blue", ev("blue"))
	a.subscribe(ctx, &wg)
	blue := subKey{addr: "127.0.0.1:1", vpc: "blue"}.String()
	if as := a.assemble(); !slices.Contains(as.missing, red) || !slices.Contains(as.missing, blue) {
		t.Fatalf("after blue came, missing %v, want red's and blue's services", as.missing)
	}
}
