package ohc_test

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/ohc"
	"github.com/p4mesh/p4mesh/p4rt"
)

// TestCompileChangeMatchesCompile is the incremental compile's reference
// test: on random sequences of view edits (remote endpoints added,
// removed, moved to another host or this one, given another MAC, made
// malformed; and now and then a local endpoint, a peering's prefixes, an
// LB or a route), after each edit a Compiler told only what changed gives
// exactly what Compile gives for the whole view — the same error, the
// same warnings, the same entities in the same order — and its Delta,
// written as a reconcile writes it, is exactly the diff between the
// previous desired set and the new one, in dependency order.
func TestCompileChangeMatchesCompile(t *testing.T) {
	s := schema(t)
	var steps, incremental, localSteps, localInc, routeSteps, routeInc uint64
	// Half the seeds compact the compiler's emptied slots at once.
	defer ohc.SetCompactAfter(ohc.SetCompactAfter(1024))
	for seed := range 40 {
		ohc.SetCompactAfter([]int{-1, 1024}[seed%2])
		rng := rand.New(rand.NewPCG(uint64(seed), 14))
		cc := ohc.NewCompiler(s)
		v := testView()
		// A blue VM on this host too, which red's peering to blue
		// reaches straight at its port (to_local_vm keyed by red's VNI).
		v.Local = append(v.Local, ohc.LocalEndpoint{ID: "blue-vm1", VPC: "blue", IP: ip("10.2.1.7"), MAC: mac("02:00:00:0b:00:07"), Port: 7})
		v.Remote["blue"] = append(v.Remote["blue"], ohc.RemoteEndpoint{IP: ip("10.2.1.7"), MAC: mac("02:00:00:0b:00:07"), HostIP: ip(hostA)})
		// A VPN attachment of red on this host: a route through it
		// leaves by its port, to its router, and admits the route's
		// prefix from it (attachment_source_check).
		v.Local = append(v.Local, ohc.LocalEndpoint{ID: "red-vpn", VPC: "red", Kind: ohc.KindVPN, IP: ip("10.1.0.30"), MAC: mac("02:00:00:01:00:30"),
			Port: 8, RouterMAC: mac("02:00:00:0f:00:01")})
		// Blue peered back with red: a route of blue can go through
		// red's attachment here, whose source check a route of red for
		// the same prefix shares.
		v.Peerings = append(v.Peerings, ohc.Peering{VPC: "blue", PeerVPC: "red", PeerVNI: 100, Active: true, PeerPrefixes: []netip.Prefix{pfx("10.1.0.0/24")}})
		// Red's routers elsewhere, the next hops of ECMP routes, which
		// the endpoint edits leave alone (routeEditHops).
		for i := range 3 {
			v.Remote["red"] = append(v.Remote["red"], ohc.RemoteEndpoint{IP: netip.AddrFrom4([4]byte{10, 1, 0, byte(40 + i)}),
				MAC: mac(fmt.Sprintf("02:00:00:01:00:%02x", 0x40+i)), HostIP: ip([]string{hostB, "192.168.0.3"}[i%2])})
		}
		if seed%4 == 3 {
			// A gateway of purple, with red's peering to blue
			// through a pool: edits of purple's records and local
			// endpoints reach a VPC present by its duty alone, and
			// the pool's members and the duty come and go.
			v = withGateway(v)
		}
		v = sortView(v)
		ch := ohc.ViewChange{Other: true}
		var prev []*p4v1.Entity
		for step := range 120 {
			name := fmt.Sprintf("seed %d step %d", seed, step)
			before := ohc.IncrementalCompiles(cc)
			prev = checkStep(t, s, cc, v, ch, prev, name)
			steps++
			if len(ch.Local) > 0 {
				localSteps++
				localInc += ohc.IncrementalCompiles(cc) - before
			}
			if len(ch.Routes) > 0 {
				routeSteps++
				routeInc += ohc.IncrementalCompiles(cc) - before
			}
			if rng.IntN(12) == 0 {
				// A malformed record: the compile fails and the
				// compiler keeps the last good view; the next view
				// drops the record again.
				bad, ch := editRemote(rng, v, true)
				checkStep(t, s, cc, bad, ch, prev, name+" (malformed)")
				steps++
			}
			v, ch = edit(rng, v)
		}
		incremental += ohc.IncrementalCompiles(cc)
	}
	// The test is only worth its name if many edits took the incremental
	// path. Not all can: the pools are small so that records collide,
	// and a conflict, an edit that is not of remote endpoints, a
	// malformed record and the compile after it are compiled whole.
	// (Counted without the route edits, which have their own floor
	// below. With them in the mix, 40% before, more edits meet an
	// address that routes reach through or a whole compile after one,
	// about 36%.)
	if other, otherSteps := incremental-routeInc, steps-routeSteps; other < otherSteps/3 {
		t.Errorf("%d of %d compiles other than of routes were incremental, want at least a third", other, otherSteps)
	}
	// Local endpoint edits too: most keep their VPC's first and last
	// endpoint, collide with nothing and can go incremental.
	if localSteps == 0 || localInc < localSteps/4 {
		t.Errorf("%d of %d local endpoint edits were compiled incrementally, want at least 25%%", localInc, localSteps)
	}
	// Route edits: most name routes that warn for neither view, share
	// no entry and keep their ECMP groups.
	if routeSteps == 0 || routeInc < routeSteps/4 {
		t.Errorf("%d of %d route edits were compiled incrementally, want at least 25%%", routeInc, routeSteps)
	}
	t.Logf("%d of %d compiles incremental; %d of %d local endpoint edits; %d of %d route edits", incremental, steps, localInc, localSteps, routeInc, routeSteps)
}

// checkStep compiles v with cc, told ch, and checks it against Compile and
// prev (the desired set before). It returns the desired set after.
func checkStep(t *testing.T, s *p4rt.Schema, cc *ohc.Compiler, v *ohc.View, ch ohc.ViewChange, prev []*p4v1.Entity, name string) []*p4v1.Entity {
	t.Helper()
	want, wantWarn, wantErr := ohc.CompileWithWarnings(s, v)
	gotWarn, gotErr := cc.CompileChange(v, ch)
	if (wantErr == nil) != (gotErr == nil) || (wantErr != nil && wantErr.Error() != gotErr.Error()) {
		t.Fatalf("%s: error %v, want %v", name, gotErr, wantErr)
	}
	got := cc.Desired()
	if wantErr != nil {
		if !slices.Equal(got, prev) {
			t.Fatalf("%s: a failed compile changed the desired set", name)
		}
		if d := cc.Delta(); len(d.Gone)+len(d.Came) != 0 {
			t.Fatalf("%s: a failed compile has a delta", name)
		}
		return prev
	}
	if !slices.Equal(gotWarn, wantWarn) {
		t.Fatalf("%s: warnings %q, want %q", name, gotWarn, wantWarn)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d entities, want %d", name, len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("%s: entity %d is\n%s\nwant\n%s", name, i, render(t, s, got[i]), render(t, s, want[i]))
		}
	}
	d := cc.Delta()
	if a, b := planOf(t, s, p4rt.Diff(d.Gone, d.Came)), planOf(t, s, p4rt.Diff(prev, got)); !slices.Equal(a, b) {
		t.Fatalf("%s: the delta writes\n%q\nthe diff is\n%q", name, a, b)
	}
	// Came in the order of the desired set (members, groups, selector
	// tables, then the rest); Gone in the reverse of the old one's.
	inOrder(t, name+": came", d.Came, got, 1)
	inOrder(t, name+": gone", d.Gone, prev, -1)
	return got
}

// planOf renders a plan's writes, sorted: what a reconcile of it sends.
func planOf(t *testing.T, s *p4rt.Schema, p p4rt.Plan) []string {
	var out []string
	for _, x := range []struct {
		op string
		es []*p4v1.Entity
	}{{"insert", p.Inserts}, {"modify", p.Modifies}, {"delete", p.Deletes}} {
		for _, e := range x.es {
			out = append(out, x.op+" "+render(t, s, e))
		}
	}
	slices.Sort(out)
	return out
}

// inOrder checks that es appear in set in order (dir 1) or in reverse
// (dir -1), by key.
func inOrder(t *testing.T, name string, es, set []*p4v1.Entity, dir int) {
	t.Helper()
	pos := make(map[string]int, len(set))
	for i, e := range set {
		pos[p4rt.Key(e)] = i * dir
	}
	last := -1 << 62
	for _, e := range es {
		i, ok := pos[p4rt.Key(e)]
		if !ok {
			t.Fatalf("%s: %s is not in the desired set", name, p4rt.Key(e))
		}
		if i < last {
			t.Fatalf("%s: out of order", name)
		}
		last = i
	}
}

// The pools edits draw from: few enough that records collide (two
// records of one address, a peer's address that is also ours, the
// gateway's), with this host among the hosts.
var (
	editVPCs  = []string{"red", "red", "blue", "blue", "green", "purple"}
	editHosts = []string{hostA, hostB, hostB, "192.168.0.3"}
	editMACs  = []string{"02:00:00:0e:00:01", "02:00:00:0e:00:02", redRemMAC}
)

func editAddr(rng *rand.Rand, vpc string) netip.Addr {
	switch vpc {
	case "red":
		return netip.AddrFrom4([4]byte{10, 1, 0, byte(1 + rng.IntN(24))})
	case "blue":
		if rng.IntN(6) == 0 {
			return ip("10.2.2.5") // not exported to red
		}
		if rng.IntN(8) == 0 {
			return ip("10.1.0.9") // also red's
		}
		return netip.AddrFrom4([4]byte{10, 2, 1, byte(4 + rng.IntN(12))})
	case "green":
		return netip.AddrFrom4([4]byte{10, 3, 0, byte(5 + rng.IntN(3))})
	}
	return netip.AddrFrom4([4]byte{10, 9, 0, byte(1 + rng.IntN(3))})
}

// edit returns a new view, v with one random edit, and what changed.
func edit(rng *rand.Rand, v *ohc.View) (*ohc.View, ohc.ViewChange) {
	switch rng.IntN(9) {
	case 0:
	case 1, 2:
		return editLocal(rng, v)
	case 3, 4:
		return editRoutes(rng, v)
	default:
		return editRemote(rng, v, false)
	}
	n := cloneView(v)
	switch rng.IntN(8) {
	case 0: // a local VM comes or goes (and may collide with a remote record)
		if i := slices.IndexFunc(n.Local, func(e ohc.LocalEndpoint) bool { return e.ID == "red-vm3" }); i >= 0 {
			n.Local = slices.Delete(n.Local, i, i+1)
		} else if !slices.ContainsFunc(n.Local, func(e ohc.LocalEndpoint) bool { return e.Port == 4 || e.VPC == "red" && e.IP == ip("10.1.0.4") }) {
			n.Local = append(n.Local, ohc.LocalEndpoint{ID: "red-vm3", VPC: "red", IP: ip("10.1.0.4"), MAC: mac("02:00:00:01:00:04"), Port: 4})
		}
	case 1: // blue exports more, or less
		if len(n.Peerings[0].PeerPrefixes) == 1 && n.Peerings[0].PeerPrefixes[0] == pfx("10.2.1.0/24") {
			n.Peerings[0].PeerPrefixes = []netip.Prefix{pfx("10.2.0.0/16"), pfx("10.1.0.0/28")}
		} else {
			n.Peerings[0].PeerPrefixes = []netip.Prefix{pfx("10.2.1.0/24")}
		}
	case 2: // green's peering comes up or goes down
		n.Peerings[1].Active = !n.Peerings[1].Active
	case 3: // a route to an address the edits move around
		n.Routes = append(n.Routes, ohc.Route{VPC: "red", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, byte(rng.IntN(256)), 0}), 24),
			NextHopIP: editAddr(rng, "red")})
		sortRoutes(n)
	case 4:
		if len(n.Routes) > 0 {
			i := rng.IntN(len(n.Routes))
			n.Routes = slices.Delete(n.Routes, i, i+1)
		}
	case 5:
		n.LBs[0].Backends[0].Weight = uint32(rng.IntN(4))
	case 6: // a gateway of the pool comes or goes
		if p := n.Peerings[0].Pool; p != nil {
			np := *p
			if len(p.Members) == 2 {
				np.Members = p.Members[rng.IntN(2):][:1]
			} else {
				np.Members = bluePool(gw1, gw2).Members
			}
			n.Peerings[0].Pool = &np
		}
	case 7: // the duty ends, or comes back
		if _, ok := n.VPCs["purple"]; ok {
			if len(n.Duties) > 0 {
				n.Duties = nil
			} else {
				n.Duties = purpleDuty()
			}
		}
	}
	return n, ohc.ViewChange{Other: true}
}

func purpleDuty() []ohc.GatewayDuty {
	return []ohc.GatewayDuty{{Pool: "purple-gw", VPC: "purple", VNI: 400}}
}

// withGateway adds to v a duty for purple, a VPC with no endpoint on the
// host, peered with red; and a pool of two gateways on red's peering with
// blue.
func withGateway(v *ohc.View) *ohc.View {
	n := cloneView(v)
	n.VPCs = maps.Clone(v.VPCs)
	n.VPCs["purple"] = ohc.VPC{Name: "purple", VNI: 400, Subnets: []netip.Prefix{pfx("10.9.0.0/16")}, GatewayIP: ip("10.9.0.1"), GatewayMAC: mac("02:00:00:09:00:01")}
	n.Peerings = append(n.Peerings, ohc.Peering{VPC: "purple", PeerVPC: "red", PeerVNI: 100, Active: true, PeerPrefixes: []netip.Prefix{pfx("10.1.0.0/16")}})
	n.Peerings[0].Pool = bluePool(gw1, gw2)
	n.Peerings[0].Mode = ohc.ModePool
	n.Duties = purpleDuty()
	return n
}

// editRemote returns v with one remote record added, removed, moved or
// given another MAC (or, if bad, made malformed), and the addresses
// changed. Now and then it names an address that did not change, too.
func editRemote(rng *rand.Rand, v *ohc.View, bad bool) (*ohc.View, ohc.ViewChange) {
	n := cloneView(v)
	vpc := editVPCs[rng.IntN(len(editVPCs))]
	es := n.Remote[vpc]
	var ch ohc.ViewChange
	op := rng.IntN(4)
	if len(es) == 0 || bad {
		op = 0
	}
	switch op {
	case 0:
		e := ohc.RemoteEndpoint{IP: editAddr(rng, vpc), MAC: mac(editMACs[rng.IntN(len(editMACs))]), HostIP: ip(editHosts[rng.IntN(len(editHosts))])}
		if bad {
			if rng.IntN(2) == 0 {
				e.MAC = nil
			} else {
				e.VNI = 999
			}
		}
		es = append(es, e)
		ch.Remote = append(ch.Remote, ohc.RemoteKey{VPC: vpc, IP: e.IP})
	case 1:
		i := rng.IntN(len(es))
		ch.Remote = append(ch.Remote, ohc.RemoteKey{VPC: vpc, IP: es[i].IP})
		es = slices.Delete(es, i, i+1)
	case 2:
		i := rng.IntN(len(es))
		es[i].HostIP = ip(editHosts[rng.IntN(len(editHosts))])
		ch.Remote = append(ch.Remote, ohc.RemoteKey{VPC: vpc, IP: es[i].IP})
	case 3:
		i := rng.IntN(len(es))
		es[i].MAC = mac(editMACs[rng.IntN(len(editMACs))])
		ch.Remote = append(ch.Remote, ohc.RemoteKey{VPC: vpc, IP: es[i].IP})
	}
	n.Remote[vpc] = es
	if rng.IntN(5) == 0 {
		other := editVPCs[rng.IntN(len(editVPCs))]
		ch.Remote = append(ch.Remote, ohc.RemoteKey{VPC: other, IP: editAddr(rng, other)})
	}
	return sortView(n), ch
}

// editLocal returns v with a local endpoint added, removed, moved to
// another address (or VPC) or given another port or MAC, and the local
// keys changed. Now and then it names a key that did not change, or a
// remote record of the endpoint comes or goes with it.
func editLocal(rng *rand.Rand, v *ohc.View) (*ohc.View, ohc.ViewChange) {
	n := cloneView(v)
	var ch ohc.ViewChange
	key := func(e ohc.LocalEndpoint) { ch.Local = append(ch.Local, ohc.RemoteKey{VPC: e.VPC, IP: e.IP}) }
	vpcs := []string{"red", "blue"}
	if _, ok := n.VPCs["purple"]; ok {
		vpcs = append(vpcs, "purple") // a gateway's duty VPC gains or loses a VM
	}
	free := func(vpc string) (netip.Addr, bool) {
		a := editAddr(rng, vpc)
		return a, !slices.ContainsFunc(n.Local, func(e ohc.LocalEndpoint) bool { return e.VPC == vpc && e.IP == a })
	}
	port := func() (uint16, bool) {
		p := uint16(1 + rng.IntN(9))
		return p, p != 10 && !slices.ContainsFunc(n.Local, func(e ohc.LocalEndpoint) bool { return e.Port == p })
	}
	op := rng.IntN(5)
	if len(n.Local) == 0 {
		op = 0
	}
	switch op {
	case 0: // a VM comes
		vpc := vpcs[rng.IntN(len(vpcs))]
		a, ok1 := free(vpc)
		p, ok2 := port()
		if !ok1 || !ok2 {
			break
		}
		e := ohc.LocalEndpoint{ID: fmt.Sprintf("vm-%d", rng.IntN(1000)), VPC: vpc, IP: a, MAC: mac(editMACs[rng.IntN(len(editMACs))]), Port: p}
		n.Local = append(n.Local, e)
		key(e)
		if vpc == "blue" && rng.IntN(2) == 0 { // and its record, on this host
			n.Remote[vpc] = append(n.Remote[vpc], ohc.RemoteEndpoint{IP: a, MAC: e.MAC, HostIP: ip(hostA)})
			ch.Remote = append(ch.Remote, ohc.RemoteKey{VPC: vpc, IP: a})
		}
	case 1: // a VM goes
		i := rng.IntN(len(n.Local))
		key(n.Local[i])
		n.Local = slices.Delete(n.Local, i, i+1)
	case 2: // a VM moves to another address, maybe of the other VPC
		i := rng.IntN(len(n.Local))
		e := &n.Local[i]
		key(*e)
		vpc := e.VPC
		if rng.IntN(4) == 0 {
			vpc = vpcs[rng.IntN(len(vpcs))]
		}
		a, ok := free(vpc)
		if !ok {
			break
		}
		e.VPC, e.IP = vpc, a
		key(*e)
	case 3: // a VM gets another port
		i := rng.IntN(len(n.Local))
		p, ok := port()
		key(n.Local[i])
		if ok {
			n.Local[i].Port = p
		}
	case 4: // or another MAC, or ID
		i := rng.IntN(len(n.Local))
		key(n.Local[i])
		n.Local[i].MAC = mac(editMACs[rng.IntN(len(editMACs))])
		if rng.IntN(3) == 0 {
			n.Local[i].ID += "x"
		}
	}
	if rng.IntN(6) == 0 {
		vpc := vpcs[rng.IntN(len(vpcs))]
		ch.Local = append(ch.Local, ohc.RemoteKey{VPC: vpc, IP: editAddr(rng, vpc)})
	}
	if len(ch.Local) == 0 {
		ch.Other = true
	}
	return sortView(n), ch
}

// cloneView copies what edits modify, so that views handed over are never
// modified.
func cloneView(v *ohc.View) *ohc.View {
	n := *v
	n.Local = slices.Clone(v.Local)
	n.Peerings = slices.Clone(v.Peerings)
	for i := range n.Peerings {
		n.Peerings[i].PeerPrefixes = slices.Clone(n.Peerings[i].PeerPrefixes)
	}
	n.Remote = make(map[string][]ohc.RemoteEndpoint, len(v.Remote))
	for k, es := range v.Remote {
		n.Remote[k] = slices.Clone(es)
	}
	n.LBs = slices.Clone(v.LBs)
	for i := range n.LBs {
		n.LBs[i].Backends = slices.Clone(n.LBs[i].Backends)
	}
	n.Routes = slices.Clone(v.Routes)
	n.Duties = slices.Clone(v.Duties)
	return &n
}

// routeEditPrefixes are the prefixes route edits draw from: a few
// /24s, so that routes of red and blue share prefixes (and an
// attachment's source check), and what blue exports to red, which a
// gateway pool routes when red's peering has one.
var routeEditPrefixes = []netip.Prefix{pfx("172.16.0.0/24"), pfx("172.16.1.0/24"), pfx("172.16.2.0/24"), pfx("172.16.3.0/24"),
	pfx("10.2.1.0/24"), pfx("10.2.0.0/16")}

// routeEditHops are the next hop sets route edits draw from: none (a
// drop route), one address of red or blue (remote, local, unknown), a
// router elsewhere, the local attachment, and equal-cost sets (ECMP groups) of
// red's remote routers, or with the attachment among them (which, local,
// takes them all).
func routeEditHops(rng *rand.Rand, vpc string) (netip.Addr, []netip.Addr) {
	switch rng.IntN(8) {
	case 0:
		return netip.Addr{}, nil
	case 1:
		return ip("10.1.0.30"), nil // the local attachment red-vpn
	case 2, 6:
		return ip("10.1.0.42"), nil // a router elsewhere
	case 3, 4: // ECMP over two of three remote addresses: few groups
		hs := []netip.Addr{ip("10.1.0.40"), ip("10.1.0.41"), ip("10.1.0.42")}
		i := rng.IntN(3)
		pair := []netip.Addr{hs[i], hs[(i+1)%3]}
		slices.SortFunc(pair, netip.Addr.Compare)
		return pair[0], pair
	case 5:
		pair := []netip.Addr{ip("10.1.0.30"), ip("10.1.0.40")}
		slices.SortFunc(pair, netip.Addr.Compare)
		return pair[0], pair
	}
	return editAddr(rng, vpc), nil
}

// editRoutes returns v with a route of red or blue set (added or given
// other next hops) or withdrawn, now and then two, and the routes named
// in a ViewChange (now and then one that did not change, too).
func editRoutes(rng *rand.Rand, v *ohc.View) (*ohc.View, ohc.ViewChange) {
	n := cloneView(v)
	var ch ohc.ViewChange
	for range 1 + rng.IntN(2) {
		vpc := []string{"red", "red", "blue", "green"}[rng.IntN(4)]
		p := routeEditPrefixes[rng.IntN(len(routeEditPrefixes))]
		n.Routes = slices.DeleteFunc(n.Routes, func(r ohc.Route) bool { return r.VPC == vpc && r.Prefix == p })
		if rng.IntN(3) > 0 {
			nh, nhs := routeEditHops(rng, vpc)
			n.Routes = append(n.Routes, ohc.Route{VPC: vpc, Prefix: p, NextHopIP: nh, NextHopIPs: nhs})
		}
		ch.Routes = append(ch.Routes, ohc.RouteKey{VPC: vpc, Prefix: p})
	}
	if rng.IntN(5) == 0 && len(n.Routes) > 0 {
		r := n.Routes[rng.IntN(len(n.Routes))]
		ch.Routes = append(ch.Routes, ohc.RouteKey{VPC: r.VPC, Prefix: r.Prefix.Masked()})
	}
	sortRoutes(n)
	return n, ch
}

// sortRoutes sorts v's routes as the agent hands them: by VPC, prefix
// (address, then length) and next hop.
func sortRoutes(v *ohc.View) {
	slices.SortFunc(v.Routes, func(a, b ohc.Route) int {
		return cmp.Or(cmp.Compare(a.VPC, b.VPC), a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()),
			a.NextHopIP.Compare(b.NextHopIP))
	})
}

// sortView sorts v's Remote lists as the agent does: by address, host and
// MAC, and its routes as sortRoutes does.
func sortView(v *ohc.View) *ohc.View {
	sortRoutes(v)
	for _, es := range v.Remote {
		slices.SortFunc(es, func(a, b ohc.RemoteEndpoint) int {
			return cmp.Or(a.IP.Compare(b.IP), a.HostIP.Compare(b.HostIP), bytes.Compare(a.MAC, b.MAC))
		})
	}
	return v
}

// TestProgrammerWritesOnlyTheChange: a programmer handed views with what
// changed (UpdateChange), some of them faster than it programs, keeps the
// switch equal to Compile of the latest view, and the writes the switch
// applies for each step are exactly the diff between the desired sets
// before and after: nothing rewritten, nothing missed.
func TestProgrammerWritesOnlyTheChange(t *testing.T) {
	s := schema(t)
	var (
		mu     sync.Mutex
		writes []string
	)
	ts := startSwitchLogged(t, "127.0.0.1:0", func(u *p4v1.Update) {
		mu.Lock()
		defer mu.Unlock()
		writes = append(writes, strings.ToLower(u.GetType().String())+" "+render(t, s, u.GetEntity()))
	})
	o := startOHC(t, ts.addr, 1)
	rng := rand.New(rand.NewPCG(14, 1))
	v := sortView(testView())
	o.converge(t, v)
	prev, err := ohc.Compile(s, v)
	if err != nil {
		t.Fatal(err)
	}
	for step := range 60 {
		mu.Lock()
		writes = nil
		mu.Unlock()
		// One view, or a burst of up to three the programmer may
		// coalesce.
		for range 1 + rng.IntN(3) {
			var ch ohc.ViewChange
			v, ch = edit(rng, v)
			o.p.UpdateChange(v, nil, ch)
		}
		o.wait(t)
		want, err := ohc.Compile(s, v)
		if err != nil {
			t.Fatal(err)
		}
		waitLines(t, s, o.c, wantLines(t, s, v))
		mu.Lock()
		got := slices.Sorted(slices.Values(writes))
		mu.Unlock()
		if diff := planOf(t, s, p4rt.Diff(prev, want)); !slices.Equal(got, diff) {
			t.Fatalf("step %d: the switch was written\n%q\nthe diff is\n%q", step, got, diff)
		}
		prev = want
	}
	// The writes above are only the incremental path's if it was taken;
	// the edits' collisions and bursts with other edits compile whole
	// about as often.
	if st := o.p.Stats(); st.IncrementalCompiles < 10 {
		t.Errorf("%d incremental and %d whole compiles: want at least 10 incremental", st.IncrementalCompiles, st.Compiles)
	}
}

// TestPeerVMStartingHereIsIncremental: a VM of a peered VPC that starts on
// this host reaches the OHC on two streams, the peer's record of it (from
// the connectivity the peer's controller publishes) and the local endpoint
// (from this host's programming), in either order. Neither step compiles
// the whole view (at 100k endpoints a whole compile of a host's view is
// 150–300 ms, twice per such VM before), and each gives what Compile
// gives, warnings included: the record alone gets no entry and a warning,
// the local endpoint then delivers to its port.
func TestPeerVMStartingHereIsIncremental(t *testing.T) {
	s := schema(t)
	vmIP, vmMAC := ip("10.2.1.8"), mac("02:00:00:0b:00:08")
	view := func(record, local bool) *ohc.View {
		v := testView()
		v.Local = append(v.Local, ohc.LocalEndpoint{ID: "blue-vm1", VPC: "blue", IP: ip("10.2.1.7"), MAC: mac("02:00:00:0b:00:07"), Port: 7})
		v.Remote["blue"] = append(v.Remote["blue"], ohc.RemoteEndpoint{IP: ip("10.2.1.7"), MAC: mac("02:00:00:0b:00:07"), HostIP: ip(hostA)})
		if record {
			v.Remote["blue"] = append(v.Remote["blue"], ohc.RemoteEndpoint{IP: vmIP, MAC: vmMAC, HostIP: ip(hostA)})
		}
		if local {
			v.Local = append(v.Local, ohc.LocalEndpoint{ID: "blue-vm2", VPC: "blue", IP: vmIP, MAC: vmMAC, Port: 9})
		}
		return sortView(v)
	}
	key := []ohc.RemoteKey{{VPC: "blue", IP: vmIP}}
	for _, recordFirst := range []bool{true, false} {
		cc := ohc.NewCompiler(s)
		prev := checkStep(t, s, cc, view(false, false), ohc.ViewChange{Other: true}, nil, "start")
		var mid *ohc.View
		var ch ohc.ViewChange
		if recordFirst {
			mid, ch = view(true, false), ohc.ViewChange{Remote: key}
		} else {
			mid, ch = view(false, true), ohc.ViewChange{Local: key}
		}
		name := fmt.Sprintf("record first %v", recordFirst)
		before := ohc.IncrementalCompiles(cc)
		prev = checkStep(t, s, cc, mid, ch, prev, name+": one stream")
		if recordFirst {
			_, warnings, _ := ohc.CompileWithWarnings(s, mid)
			if !slices.ContainsFunc(warnings, func(w string) bool {
				return strings.Contains(w, "10.2.1.8") && strings.Contains(w, "not a local endpoint yet")
			}) {
				t.Errorf("%s: warnings %q, want one about 10.2.1.8 not local yet", name, warnings)
			}
			ch = ohc.ViewChange{Local: key}
		} else {
			ch = ohc.ViewChange{Remote: key}
		}
		checkStep(t, s, cc, view(true, true), ch, prev, name+": both")
		if n := ohc.IncrementalCompiles(cc) - before; n != 2 {
			t.Errorf("%s: %d of 2 steps compiled incrementally", name, n)
		}
	}
}
